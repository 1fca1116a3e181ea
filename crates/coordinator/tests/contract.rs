//! The ten contract details of the runner API (runner-api.md §7), each driven with a plain HTTP client
//! over 127.0.0.1, plus the token rules.

mod common;

use common::*;
use glrunner_coordinator::{
    ArtifactSpec, CacheSpec, JobSpec, JobStatus, Options, RunnerKind, RunnerSpec, StepSpec,
};
use glrunner_protocol::checksum_string;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

fn is_cursor(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

// 1 ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_1_job_request_statuses_and_cursor() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose();

    let empty = request_job(&http, &c, token, None, ALL).await;
    assert_eq!(empty.status(), 204);
    let cursor = header(&empty, "X-GitLab-Last-Update").expect("204 carries the cursor");
    assert!(is_cursor(&cursor), "{cursor}");
    assert!(
        header(&empty, "Gitlab-Ci-Builds-Polling").is_none(),
        "no long polling configured"
    );

    let same = request_job(&http, &c, token, Some(&cursor), ALL).await;
    assert_eq!(same.status(), 204);
    assert_eq!(
        header(&same, "X-GitLab-Last-Update").as_deref(),
        Some(cursor.as_str())
    );

    let id = c.enqueue(JobSpec::script(["echo hi"])).unwrap();
    let got = request_job(&http, &c, token, Some(&cursor), ALL).await;
    assert_eq!(got.status(), 201);
    assert_eq!(
        header(&got, "Content-Type").as_deref(),
        Some("application/json")
    );
    assert!(
        header(&got, "X-GitLab-Last-Update").is_none(),
        "201 has no cursor"
    );
    let job: Value = got.json().await.unwrap();
    assert_eq!(job_id(&job), id);

    let after = request_job(&http, &c, token, Some(&cursor), ALL).await;
    assert_eq!(after.status(), 204);
    let next = header(&after, "X-GitLab-Last-Update").unwrap();
    assert!(
        is_cursor(&next) && next != cursor,
        "enqueue ticked the queue"
    );

    let missing = http
        .post(api(&c, "jobs/request"))
        .json(&json!({"info": info(ALL)}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"error": "token is missing"})
    );

    let mismatch = http
        .post(api(&c, "jobs/request"))
        .header("Runner-Token", "glrt-t1_somebodyelse000000")
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        mismatch.status(),
        403,
        "Runner-Token header must equal the body token"
    );

    c.set_paused(runner.id, true);
    c.enqueue(JobSpec::script(["true"])).unwrap();
    let paused = request_job(&http, &c, token, None, ALL).await;
    assert_eq!(paused.status(), 204, "a paused runner gets no job");
    assert!(header(&paused, "X-GitLab-Last-Update").is_some());
}

#[tokio::test]
async fn wrong_kinds_of_token_get_403_and_a_missing_token_400() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let registration = c.add_registration_token();
    let revoked = c.add_runner(RunnerSpec::registered());
    assert!(c.revoke_runner(revoked.token.expose()));
    let expired = c.add_runner(RunnerSpec::legacy().expires_in(0));
    let job = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job_token = c.job_token(job).unwrap();

    let bad = [
        (
            "personal access token",
            "glpat-aaaaaaaaaaaaaaaaaaaa".to_owned(),
        ),
        ("registration token", registration.expose().to_owned()),
        ("job token", job_token.expose().to_owned()),
        ("revoked runner token", revoked.token.expose().to_owned()),
        ("expired runner token", expired.token.expose().to_owned()),
        ("unknown token", "glrt-t1_neverissued00000000".to_owned()),
    ];
    let endpoints = [
        (reqwest::Method::POST, "jobs/request"),
        (reqwest::Method::POST, "runners/verify"),
        (reqwest::Method::DELETE, "runners"),
        (reqwest::Method::POST, "runners/reset_authentication_token"),
    ];
    for (method, path) in &endpoints {
        for (what, token) in &bad {
            let resp = http
                .request(method.clone(), api(&c, path))
                .json(&json!({"token": token, "system_id": "s_0123456789ab"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{what} on {method} {path}");
            assert_eq!(
                resp.json::<Value>().await.unwrap(),
                json!({"message": "403 Forbidden"})
            );
        }
        let missing = http
            .request(method.clone(), api(&c, path))
            .json(&json!({"system_id": "s_0123456789ab"}))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 400, "missing token on {method} {path}");
    }
    // The runner itself still works, and was never touched by the refused requests.
    assert_eq!(
        request_job(&http, &c, runner.token.expose(), None, ALL)
            .await
            .status(),
        201
    );
    // The log names token kinds, never values.
    let log = c.requests();
    let kinds: Vec<_> = log.iter().filter_map(|r| r.token_kind).collect();
    for kind in [
        "personal_access",
        "registration",
        "job",
        "runner_authentication",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let dump = format!("{log:?}");
    assert!(!dump.contains(runner.token.expose()) && !dump.contains(job_token.expose()));
}

// 2 ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_2_payload_shape() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(
        RunnerSpec::created()
            .maximum_timeout(1800)
            .description("box"),
    );
    let build = c
        .enqueue(
            JobSpec::script(["make"])
                .name("build")
                .artifact(ArtifactSpec::archive(["out/"])),
        )
        .unwrap();
    let lint = c.enqueue(JobSpec::script(["lint"]).name("lint")).unwrap();
    // Let `build` run and upload its archive so the dependency carries `artifacts_file`.
    let b = take_job(&http, &c, runner.token.expose(), ALL).await;
    assert_eq!(job_id(&b), build);
    let up = upload(&http, &c, build, &job_token(&b), "archive", b"zipbytes").await;
    assert_eq!(up.status(), 201);

    let spec = JobSpec::script(["bundle exec rspec"])
        .name("rspec 1/2")
        .before_script(["bundle install"])
        .after_script(["echo done"])
        .timeout(3600)
        .var("DATABASE_URL", "postgres://db/test")
        .variable(glrunner_coordinator::Variable::new("KUBECONFIG", "apiVersion: v1").file())
        .variable(glrunner_coordinator::Variable::new("LITERAL", "$NOT_EXPANDED").raw())
        .variable(glrunner_coordinator::Variable::new("SECRET", "s3cr3t-value").masked())
        .var("EXPANDED", "${DATABASE_URL}/x")
        .step(StepSpec::release(["release-cli create --tag v1"]))
        .step(StepSpec::new("custom_step", ["echo custom"]))
        .artifact(
            ArtifactSpec::archive(["coverage/"])
                .name("coverage")
                .expire_in("1 week"),
        )
        .artifact(ArtifactSpec::report("junit", ["rspec.xml"]))
        .cache(CacheSpec::new("gems", ["vendor/bundle"]).fallback_keys(["gems-default"]))
        .hook("pre_get_sources_script", ["git config --global x y"])
        .image(glrunner_coordinator::ImageSpec::new("ruby:3.3"))
        .service(glrunner_coordinator::ServiceSpec::new("postgres:16").alias("db"))
        .dependency(build)
        .dependency(lint);
    let id = c.enqueue(spec).unwrap();
    c.cancel(lint);
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    assert_eq!(job_id(&job), id);
    let token = job_token(&job);
    assert!(token.starts_with("glcbt-"), "job token prefix");

    for key in [
        "id",
        "token",
        "allow_git_fetch",
        "job_info",
        "git_info",
        "runner_info",
        "variables",
        "steps",
        "hooks",
        "image",
        "services",
        "artifacts",
        "cache",
        "credentials",
        "features",
        "dependencies",
    ] {
        assert!(job.get(key).is_some(), "top-level key {key}");
    }
    assert!(job.get("run").is_none(), "run only for run: jobs");

    let info = &job["job_info"];
    assert_eq!(info["id"], id);
    assert_eq!(info["name"], "rspec 1/2");
    assert_eq!(info["stage"], "test");
    assert_eq!(info["project_full_path"], "acme/demo");
    assert!(info["pipeline_id"].is_i64() && info["scoped_user_id"].is_null());

    let git = &job["git_info"];
    let repo = git["repo_url"].as_str().unwrap();
    assert_eq!(
        repo,
        format!("http://gitlab-ci-token:{token}@{}/acme/demo.git", c.addr())
    );
    assert_eq!(git["ref_type"], "branch");
    assert!(git["depth"].is_u64(), "depth is an int");
    let pid = info["pipeline_id"].as_i64().unwrap();
    assert_eq!(
        git["refspecs"],
        json!([
            format!("+refs/pipelines/{pid}:refs/pipelines/{pid}"),
            "+refs/heads/main:refs/remotes/origin/main"
        ])
    );
    assert_eq!(
        job["runner_info"],
        json!({"timeout": 1800, "runner_session_url": null})
    );

    let vars = job["variables"].as_array().unwrap();
    let var = |k: &str| {
        vars.iter()
            .rev()
            .find(|v| v["key"] == k)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        var("CI_JOB_TOKEN"),
        json!({"key": "CI_JOB_TOKEN", "value": token, "public": false, "masked": true})
    );
    assert_eq!(var("CI_JOB_ID")["value"], id.to_string());
    assert_eq!(var("CI_SERVER_URL")["value"], c.url());
    assert_eq!(
        var("CI_JOB_URL")["value"],
        format!("{}/acme/demo/-/jobs/{id}", c.url())
    );
    assert_eq!(var("CI_PROJECT_PATH")["value"], "acme/demo");
    assert_eq!(var("CI_PIPELINE_ID")["value"], pid.to_string());
    assert_eq!(var("CI_JOB_NAME")["value"], "rspec 1/2");
    assert_eq!(var("CI_JOB_STAGE")["value"], "test");
    assert_eq!(var("CI_COMMIT_SHA")["value"], git["sha"]);
    assert_eq!(var("CI_REGISTRY_USER")["value"], "gitlab-ci-token");
    assert_eq!(var("CI_REGISTRY_PASSWORD")["masked"], true);
    assert_eq!(var("CI_RUNNER_DESCRIPTION")["value"], "box");
    assert!(
        var("CI_REPOSITORY_URL")["value"]
            .as_str()
            .unwrap()
            .contains(&format!("gitlab-ci-token:{token}@"))
    );
    assert_eq!(
        var("KUBECONFIG"),
        json!({"key": "KUBECONFIG", "value": "apiVersion: v1", "public": false, "masked": false, "file": true})
    );
    assert_eq!(var("LITERAL")["raw"], true);
    assert_eq!(var("LITERAL")["value"], "$NOT_EXPANDED");
    assert_eq!(var("SECRET")["masked"], true);
    assert_eq!(
        var("EXPANDED")["value"],
        "postgres://db/test/x",
        "expanded server-side"
    );
    assert!(
        vars.iter()
            .all(|v| v.get("file") != Some(&json!(false)) && v.get("raw") != Some(&json!(false))),
        "file/raw only when true"
    );

    let steps = job["steps"].as_array().unwrap();
    let names: Vec<_> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["script", "release", "custom_step", "after_script"]);
    assert_eq!(
        steps[0]["script"],
        json!(["bundle install", "bundle exec rspec"])
    );
    assert_eq!(steps[0]["when"], "on_success");
    assert_eq!(
        steps[3],
        json!({"name": "after_script", "script": ["echo done"], "timeout": 1800, "when": "always", "allow_failure": true})
    );

    assert_eq!(
        job["hooks"],
        json!([{"name": "pre_get_sources_script", "script": ["git config --global x y"]}])
    );
    assert_eq!(
        job["image"],
        json!({"name": "ruby:3.3", "entrypoint": null, "ports": [], "executor_opts": {}, "pull_policy": null})
    );
    assert_eq!(job["services"][0]["alias"], "db");
    assert_eq!(job["services"][0]["command"], Value::Null);
    assert_eq!(job["services"][0]["variables"], json!([]));

    let artifacts = job["artifacts"].as_array().unwrap();
    assert_eq!(
        artifacts[0],
        json!({"name": "coverage", "untracked": false, "paths": ["coverage/"], "when": "on_success", "expire_in": "1 week", "artifact_type": "archive", "artifact_format": "zip"})
    );
    assert_eq!(artifacts[1]["name"], "junit.xml");
    assert_eq!(artifacts[1]["when"], "always");
    assert_eq!(artifacts[1]["artifact_format"], "gzip");
    assert!(artifacts[1].get("untracked").is_none() && artifacts[1].get("exclude").is_none());

    assert_eq!(
        job["cache"],
        json!([{"key": "gems-protected", "untracked": false, "policy": "pull-push", "paths": ["vendor/bundle"], "when": "on_success", "fallback_keys": ["gems-default-protected"]}])
    );
    assert_eq!(job["credentials"][0]["type"], "registry");
    assert_eq!(job["credentials"][0]["password"], token);
    assert_eq!(job["features"]["trace_sections"], true);
    let reasons = job["features"]["failure_reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), glrunner_coordinator::FAILURE_REASONS.len());
    for r in [
        "unknown_failure",
        "script_failure",
        "runner_system_failure",
        "job_execution_timeout",
        "trace_size_exceeded",
    ] {
        assert!(reasons.contains(&json!(r)), "{r}");
    }

    let deps = job["dependencies"].as_array().unwrap();
    assert_eq!(
        deps[0],
        json!({"id": build, "name": "build", "token": token, "artifacts_file": {"filename": "artifacts.zip", "size": 8}})
    );
    assert_eq!(
        deps[1],
        json!({"id": lint, "name": "lint", "token": token}),
        "no artifacts_file without an archive"
    );

    // The shared protocol types read it back.
    let typed: glrunner_protocol::JobResponse = serde_json::from_value(job.clone()).unwrap();
    assert_eq!(typed.id, id);
    assert_eq!(typed.steps.len(), 4);
    assert_eq!(c.job_payload(id), Some(job));
}

#[tokio::test]
async fn detail_2_nulls_for_a_plain_job_and_full_clone_refspecs() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    c.enqueue(JobSpec::script(["true"]).tag("v1.0").depth(0))
        .unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    assert_eq!(job["image"], Value::Null);
    assert_eq!(job["artifacts"], Value::Null);
    assert_eq!(job["services"], json!([]));
    assert_eq!(job["cache"], json!([]));
    assert_eq!(job["hooks"], json!([]));
    assert_eq!(job["dependencies"], json!([]));
    assert_eq!(job["git_info"]["ref_type"], "tag");
    let refspecs = job["git_info"]["refspecs"].as_array().unwrap();
    assert_eq!(
        refspecs[1..],
        [
            json!("+refs/heads/*:refs/remotes/origin/*"),
            json!("+refs/tags/*:refs/tags/*")
        ]
    );
    let steps = job["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "no after_script step without after_script");
    assert_eq!(job["runner_info"]["timeout"], 3600);
}

#[tokio::test]
async fn conformance_payload_is_served_with_the_real_id_and_token() {
    let example: Value = serde_json::from_str(include_str!(
        "../../protocol/tests/fixtures/job_example.json"
    ))
    .unwrap();
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let id = c.enqueue(JobSpec::from_payload(example.clone())).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let token = job_token(&job);
    assert_eq!(job_id(&job), id);
    assert_ne!(token, example["token"]);
    assert_eq!(job["job_info"]["id"], id);
    assert_eq!(job["job_info"]["name"], "rspec 1/2");
    assert_eq!(job["services"], example["services"]);
    assert_eq!(job["artifacts"], example["artifacts"]);
    let old = example["token"].as_str().unwrap();
    let text = job.to_string();
    assert!(
        !text.contains(old),
        "the example's token was rebound everywhere"
    );
    assert!(
        job["git_info"]["repo_url"]
            .as_str()
            .unwrap()
            .contains(&token)
    );
    // Usable: the real token updates the job.
    let resp = put(&http, &c, id, &token, json!({"state": "success"})).await;
    assert_eq!(resp.status(), 200);
}

// 3 ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_3_job_token_rules() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let a = c.enqueue(JobSpec::script(["a"])).unwrap();
    let b = c.enqueue(JobSpec::script(["b"])).unwrap();
    let job_a = take_job(&http, &c, runner.token.expose(), ALL).await;
    assert_eq!(job_id(&job_a), a);
    let token_a = job_token(&job_a);
    let token_b = c.job_token(b).unwrap();

    // Token of another job, a runner token, and an unknown job id: 403, never 404, no Job-Status.
    let cases = [
        (a, token_b.expose().to_owned()),
        (a, runner.token.expose().to_owned()),
        (999_999, token_a.clone()),
    ];
    for (id, token) in &cases {
        let r = put(&http, &c, *id, token, json!({"state": "running"})).await;
        assert_eq!(r.status(), 403);
        assert!(header(&r, "Job-Status").is_none());
        let r = patch(&http, &c, *id, token, Some("0-0"), b"x").await;
        assert_eq!(r.status(), 403);
        let r = upload(&http, &c, *id, token, "archive", b"zip").await;
        assert_eq!(r.status(), 403);
    }
    // The token travels as `token` in the query too.
    let via_query = http
        .patch(format!(
            "{}?token={token_a}",
            api(&c, &format!("jobs/{a}/trace"))
        ))
        .header("Content-Range", "0-1")
        .body("ok")
        .send()
        .await
        .unwrap();
    assert_eq!(via_query.status(), 202);
    // A pending job's own token: 403 with Job-Status pending.
    let r = put(&http, &c, b, token_b.expose(), json!({"state": "running"})).await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("pending"));
    // A finished job: 403 with its final status.
    assert_eq!(
        put(&http, &c, a, &token_a, json!({"state": "success"}))
            .await
            .status(),
        200
    );
    let r = patch(&http, &c, a, &token_a, Some("2-2"), b"x").await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("success"));
    let r = upload(&http, &c, a, &token_a, "archive", b"zip").await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("success"));
}

// 4 ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_4_trace_offsets() {
    let c = start(Options::default().trace_update_interval(1)).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let token = job_token(&job);

    let r = patch(&http, &c, id, &token, Some("0-4"), b"hello").await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "Range").as_deref(), Some("0-5"));
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("running"));
    assert_eq!(
        header(&r, "X-GitLab-Trace-Update-Interval").as_deref(),
        Some("1")
    );

    for bad in ["3-7", "9-12", "0-2"] {
        let r = patch(&http, &c, id, &token, Some(bad), b"XYZ").await;
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(header(&r, "Range").as_deref(), Some("0-5"), "{bad}");
    }
    assert_eq!(c.job(id).unwrap().trace, b"hello", "a 416 stores nothing");

    // Only the start counts (the runner's end is off by one), `a-b/total` is accepted.
    let r = patch(&http, &c, id, &token, Some("5-5/6"), b" world").await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "Range").as_deref(), Some("0-11"));

    let r = patch(&http, &c, id, &token, None, b"!").await;
    assert_eq!(r.status(), 400, "Content-Range is required");

    let r = patch(&http, &c, id, &token, Some("11-11"), b"").await;
    assert_eq!(r.status(), 202, "empty body is a keep-alive");
    assert_eq!(header(&r, "Range").as_deref(), Some("0-11"));

    // The job token is masked server-side, length preserved.
    let line = format!("\ntoken={token}\n");
    let r = patch(&http, &c, id, &token, Some("11-11"), line.as_bytes()).await;
    assert_eq!(r.status(), 202);
    let stored = c.job(id).unwrap().trace_text();
    assert_eq!(
        stored,
        format!("hello world\ntoken={}\n", "x".repeat(token.len()))
    );
}

// 5 ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_5_cancel_signalling() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose();

    // Graceful: canceling keeps PATCH at 202 and says so; the final state becomes canceled.
    let graceful = c.enqueue(JobSpec::script(["sleep 100"])).unwrap();
    let job = take_job(&http, &c, token, ALL).await;
    let jt = job_token(&job);
    assert_eq!(c.cancel_gracefully(graceful), Some(JobStatus::Canceling));
    let r = patch(&http, &c, graceful, &jt, Some("0-0"), b"x").await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("canceling"));
    let r = put(&http, &c, graceful, &jt, json!({"state": "running"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("canceling"));
    let r = put(
        &http,
        &c,
        graceful,
        &jt,
        json!({"state": "failed", "failure_reason": "script_failure"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("canceled"));
    let r = patch(&http, &c, graceful, &jt, Some("1-1"), b"y").await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("canceled"));

    // Hard: 403 with Job-Status canceled at once.
    let hard = c.enqueue(JobSpec::script(["sleep 100"])).unwrap();
    let job = take_job(&http, &c, token, ALL).await;
    let jt = job_token(&job);
    assert_eq!(c.cancel(hard), Some(JobStatus::Canceled));
    let r = patch(&http, &c, hard, &jt, Some("0-0"), b"x").await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("canceled"));
    let r = put(&http, &c, hard, &jt, json!({"state": "running"})).await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("canceled"));

    // A runner without `cancel_gracefully` cannot be asked nicely: canceled outright.
    let plain = c.enqueue(JobSpec::script(["sleep 100"])).unwrap();
    let no_graceful: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|f| *f != "cancel_gracefully")
        .collect();
    take_job(&http, &c, token, &no_graceful).await;
    assert_eq!(c.cancel_gracefully(plain), Some(JobStatus::Canceled));
}

// 6 ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_6_final_update() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let id = c.enqueue(JobSpec::script(["false"])).unwrap();
    let other = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let jt = job_token(&job);

    let r = put(&http, &c, id, &jt, json!({"state": "running"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("running"));
    assert!(header(&r, "X-GitLab-Trace-Update-Interval").is_none());
    assert_eq!(r.text().await.unwrap(), "200");

    assert_eq!(
        patch(&http, &c, id, &jt, Some("0-3"), b"boom")
            .await
            .status(),
        202
    );
    let crc = checksum_string(crc32fast::hash(b"boom"));
    let r = put(
        &http,
        &c,
        id,
        &jt,
        json!({
            "state": "failed", "failure_reason": "made_up_reason", "exit_code": 3,
            "checksum": crc, "output": {"checksum": crc, "bytesize": 4}, "brand_new": {"x": 1}
        }),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("failed"));
    assert_eq!(r.text().await.unwrap(), "200");
    let snap = c.job(id).unwrap();
    assert_eq!(snap.status, JobStatus::Failed);
    assert_eq!(snap.failure_reason.as_deref(), Some("unknown_failure"));
    assert_eq!(snap.exit_code, Some(3));
    assert_eq!(snap.bytesize, Some(4));
    assert!(snap.checksum_matches(), "{snap:?}");
    assert!(snap.finished_at.is_some());

    let r = put(&http, &c, id, &jt, json!({"state": "success"})).await;
    assert_eq!(r.status(), 403, "a finished job takes no more updates");
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("failed"));

    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let jt = job_token(&job);
    let r = put(&http, &c, other, &jt, json!({"state": "exploded"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(c.job(other).unwrap().status, JobStatus::Running);
    let r = put(
        &http,
        &c,
        other,
        &jt,
        json!({"state": "failed", "failure_reason": "script_failure", "exit_code": 70000}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let snap = c.job(other).unwrap();
    assert_eq!(snap.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(
        snap.exit_code,
        Some(32767),
        "exit codes are clamped like GitLab's"
    );
}

// 7 ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_7_runner_lifecycle() {
    let c = start(Options::default()).await;
    let http = http();
    let registration = c.add_registration_token();

    let r = http
        .post(api(&c, "runners"))
        .json(
            &json!({"token": registration.expose(), "description": "ci box", "tag_list": "a,b",
                      "paused": false, "info": info(&[])}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("glrtr-"), "{created}");
    assert!(created["id"].is_i64() && created["token_expires_at"].is_null());
    let rid = created["id"].as_i64().unwrap();
    assert_eq!(c.runner(rid).unwrap().tags, ["a", "b"]);

    let glrt = c.add_runner(RunnerSpec::created());
    let r = http
        .post(api(&c, "runners"))
        .json(&json!({"token": glrt.token.expose()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a runner token cannot register");

    // verify creates managers: <legacy> without system_id, one per system_id otherwise.
    let verify = |system_id: Option<&str>| {
        let mut body = json!({"token": token, "info": info(&["cancel_gracefully"])});
        if let Some(s) = system_id {
            body["system_id"] = s.into();
        }
        http.post(api(&c, "runners/verify"))
            .header("Runner-Token", &token)
            .json(&body)
            .send()
    };
    let r = verify(None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": rid, "token": token, "token_expires_at": null})
    );
    assert_eq!(verify(Some("s_aaaaaaaaaaaa")).await.unwrap().status(), 200);
    assert_eq!(verify(Some("r_bbbbbbbbbbbb")).await.unwrap().status(), 200);
    let runner = c.runner(rid).unwrap();
    let ids: Vec<_> = runner
        .managers
        .iter()
        .map(|m| m.system_id.as_str())
        .collect();
    assert_eq!(ids, ["<legacy>", "r_bbbbbbbbbbbb", "s_aaaaaaaaaaaa"]);
    let m = &runner.managers[2];
    assert!(m.features.contains("cancel_gracefully") && m.info.version == "18.5.0");
    assert_eq!(m.ip_address, Some("127.0.0.1".parse().unwrap()));

    let del = |system_id: &str| {
        http.delete(api(&c, "runners/managers"))
            .json(&json!({"token": token, "system_id": system_id}))
            .send()
    };
    assert_eq!(del("r_bbbbbbbbbbbb").await.unwrap().status(), 204);
    assert_eq!(del("r_bbbbbbbbbbbb").await.unwrap().status(), 404);
    let r = http
        .delete(api(&c, "runners/managers"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "system_id is required");

    let r = http
        .post(api(&c, "runners/reset_authentication_token"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reset: Value = r.json().await.unwrap();
    let new_token = reset["token"].as_str().unwrap().to_owned();
    assert!(new_token.starts_with("glrtr-") && new_token != token);
    assert!(reset.get("token_expires_at").is_some());
    assert_eq!(
        verify(None).await.unwrap().status(),
        403,
        "the old token is dead at once"
    );
    let r = http
        .post(api(&c, "runners/verify"))
        .json(&json!({"token": new_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = http
        .delete(api(&c, "runners"))
        .json(&json!({"token": new_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .post(api(&c, "runners/verify"))
        .json(&json!({"token": new_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a deleted runner is gone");

    c.set_registration_enabled(false);
    let r = http
        .post(api(&c, "runners"))
        .json(&json!({"token": registration.expose()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let r = http
        .post(api(&c, "runners"))
        .json(&json!({"token": "GR1348941nothing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        410,
        "with registration off every token gets 410"
    );
}

#[tokio::test]
async fn registration_can_hand_out_2024_style_tokens() {
    let c = start(Options::default().registered_kind(RunnerKind::Legacy)).await;
    let http = http();
    let registration = c.add_registration_token();
    let r = http
        .post(api(&c, "runners"))
        .json(&json!({"token": registration.expose()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert!(body["token"].as_str().unwrap().starts_with("t1_"), "{body}");
    let r = http
        .post(api(&c, "runners"))
        .json(&json!({"token": "GR1348941wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

// 8 ------------------------------------------------------------------------------------------------

pub async fn upload(
    http: &reqwest::Client,
    c: &glrunner_coordinator::Coordinator,
    id: i64,
    token: &str,
    artifact_type: &str,
    data: &[u8],
) -> reqwest::Response {
    let form = Form::new().part(
        "file",
        Part::bytes(data.to_vec()).file_name("artifacts.zip"),
    );
    http.post(format!(
        "{}?artifact_format=zip&artifact_type={artifact_type}&expire_in=1+week",
        api(c, &format!("jobs/{id}/artifacts"))
    ))
    .header("Job-Token", token)
    .multipart(form)
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn detail_8_artifacts() {
    let c = start(Options::default().max_artifact_size(1024)).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let build = c
        .enqueue(JobSpec::script(["make"]).artifact(ArtifactSpec::archive(["out/"])))
        .unwrap();
    let nothing = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let bt = job_token(&job);

    let r = upload(&http, &c, build, &bt, "archive", b"PK-archive").await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "201");
    assert_eq!(
        upload(&http, &c, build, &bt, "archive", b"PK-archive")
            .await
            .status(),
        201,
        "identical re-upload"
    );
    assert_eq!(
        upload(&http, &c, build, &bt, "archive", b"PK-other")
            .await
            .status(),
        400,
        "duplicate type"
    );
    assert_eq!(
        upload(&http, &c, build, &bt, "junit", b"<xml/>")
            .await
            .status(),
        201
    );
    assert_eq!(
        upload(&http, &c, build, &bt, "dotenv", &[b'x'; 2048])
            .await
            .status(),
        413
    );
    let no_file = http
        .post(api(&c, &format!("jobs/{build}/artifacts")))
        .header("Job-Token", &bt)
        .multipart(Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_file.status(), 400);
    let snap = c.job(build).unwrap();
    assert_eq!(snap.artifacts.len(), 2);
    assert_eq!(snap.artifacts[0].expire_in.as_deref(), Some("1 week"));
    assert_eq!(c.artifact(build, "junit").unwrap(), b"<xml/>");
    assert_eq!(
        put(&http, &c, build, &bt, json!({"state": "success"}))
            .await
            .status(),
        200
    );

    // A later job downloads with its own (running) token.
    let test = c
        .enqueue(
            JobSpec::script(["test"])
                .dependency(build)
                .dependency(nothing),
        )
        .unwrap();
    let n = take_job(&http, &c, runner.token.expose(), ALL).await;
    assert_eq!(job_id(&n), nothing);
    let t = take_job(&http, &c, runner.token.expose(), ALL).await;
    assert_eq!(job_id(&t), test);
    let tt = job_token(&t);
    assert_eq!(t["dependencies"][0]["artifacts_file"]["size"], 10);
    assert!(t["dependencies"][1].get("artifacts_file").is_none());
    let get = |id: i64, token: Option<&str>| {
        let mut req = http.get(api(&c, &format!("jobs/{id}/artifacts")));
        if let Some(t) = token {
            req = req.header("Job-Token", t);
        }
        req.send()
    };
    let r = get(build, Some(&tt)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"PK-archive");
    assert_eq!(get(nothing, Some(&tt)).await.unwrap().status(), 404);
    assert_eq!(get(build, None).await.unwrap().status(), 401);
    assert_eq!(
        get(build, Some("glcbt-64_notarealtoken"))
            .await
            .unwrap()
            .status(),
        403
    );
    // The dependency's own token works too (older GitLab), even though that job is finished.
    assert_eq!(get(build, Some(&bt)).await.unwrap().status(), 200);
}

// 9 ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_9_feature_gating() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose();
    let cases: Vec<(&str, JobSpec)> = vec![
        (
            "upload_multiple_artifacts",
            JobSpec::script(["t"]).artifact(ArtifactSpec::report("junit", ["r.xml"])),
        ),
        (
            "refspecs",
            JobSpec::script(["t"]).branch("refs/merge-requests/7/head"),
        ),
        (
            "artifacts_exclude",
            JobSpec::script(["t"]).artifact(ArtifactSpec::archive(["a/"]).exclude(["a/tmp"])),
        ),
        (
            "multi_build_steps",
            JobSpec::script(["t"]).step(StepSpec::release(["release-cli create"])),
        ),
        (
            "return_exit_code",
            JobSpec::script(["t"]).allow_failure_exit_codes([3]),
        ),
        (
            "fallback_cache_keys",
            JobSpec::script(["t"]).cache(CacheSpec::new("k", ["c/"]).fallback_keys(["f"])),
        ),
    ];
    for (feature, spec) in cases {
        let id = c.enqueue(spec).unwrap();
        let without: Vec<&str> = ALL.iter().copied().filter(|f| *f != feature).collect();
        let r = request_job(&http, &c, token, None, &without).await;
        assert_eq!(r.status(), 204, "{feature}: the runner gets nothing");
        let snap = c.job(id).unwrap();
        assert_eq!(snap.status, JobStatus::Failed, "{feature}");
        assert_eq!(
            snap.failure_reason.as_deref(),
            Some("runner_unsupported"),
            "{feature}"
        );
        // With the feature the same kind of job is handed out.
        let again = c.enqueue(JobSpec::script(["t"]).requires(feature)).unwrap();
        let job = take_job(&http, &c, token, ALL).await;
        assert_eq!(job_id(&job), again, "{feature}");
    }
}

#[tokio::test]
async fn detail_9_two_phase_commit() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose();
    let mut features = ALL.to_vec();
    features.push("two_phase_job_commit");

    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, token, &features).await;
    let jt = job_token(&job);
    let snap = c.job(id).unwrap();
    assert_eq!(snap.status, JobStatus::Pending);
    assert!(snap.awaiting_ack);
    assert_eq!(
        request_job(&http, &c, token, None, &features)
            .await
            .status(),
        204,
        "reserved"
    );
    let r = patch(&http, &c, id, &jt, Some("0-0"), b"x").await;
    assert_eq!(
        r.status(),
        202,
        "a job awaiting its acknowledgement takes trace"
    );
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("pending"));

    let r = put(&http, &c, id, &jt, json!({"state": "pending"})).await;
    assert_eq!(r.status(), 200, "keep-alive");
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("pending"));
    let r = put(&http, &c, id, &jt, json!({"state": "running"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("running"));
    assert!(c.job(id).unwrap().started_at.is_some());
    let r = put(&http, &c, id, &jt, json!({"state": "pending"})).await;
    assert_eq!(r.status(), 409, "already running");
}

#[tokio::test]
async fn detail_9_unacknowledged_job_returns_to_the_queue() {
    let c = start(Options::default().ack_window(Duration::from_millis(200))).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose();
    let mut features = ALL.to_vec();
    features.push("two_phase_job_commit");

    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let first = take_job(&http, &c, token, &features).await;
    assert_eq!(job_id(&first), id);
    let back = c.wait_for(id, |j| !j.awaiting_ack, WAIT).await.unwrap();
    assert_eq!(back.status, JobStatus::Pending);
    assert!(back.manager.is_none());
    let r = put(
        &http,
        &c,
        id,
        &job_token(&first),
        json!({"state": "running"}),
    )
    .await;
    assert_eq!(r.status(), 403, "the window closed");
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("pending"));
    let again = take_job(&http, &c, token, ALL).await;
    assert_eq!(job_id(&again), id, "handed out again");
    assert_eq!(c.job(id).unwrap().status, JobStatus::Running);
}

// 10 -----------------------------------------------------------------------------------------------

#[tokio::test]
async fn detail_10_liveness_and_limits() {
    let c = start(
        Options::default()
            .trace_size_limit(16)
            .stale_running_after(Duration::from_millis(400)),
    )
    .await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    assert_eq!(c.runner(runner.id).unwrap().status, "never_contacted");
    let before = SystemTime::now();
    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let jt = job_token(&job);
    let snap = c.runner(runner.id).unwrap();
    assert_eq!(snap.status, "online");
    assert!(snap.contacted_at.unwrap() >= before);
    let m = &snap.managers[0];
    assert_eq!(m.system_id, "s_0123456789ab");
    assert_eq!(m.info.executor, "shell");
    assert_eq!(
        c.job(id).unwrap().manager.as_deref(),
        Some("s_0123456789ab")
    );

    // A PATCH is a heartbeat for the runner and its manager.
    let contacted = snap.contacted_at.unwrap();
    let r = patch(&http, &c, id, &jt, Some("0-9"), b"0123456789").await;
    assert_eq!(r.status(), 202);
    let after = c.runner(runner.id).unwrap();
    assert!(after.contacted_at.unwrap() >= contacted);

    // Past the trace size limit: 403 and the job fails trace_size_exceeded.
    let r = patch(&http, &c, id, &jt, Some("10-19"), b"0123456789").await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "Job-Status").as_deref(), Some("failed"));
    let snap = c.job(id).unwrap();
    assert_eq!(snap.failure_reason.as_deref(), Some("trace_size_exceeded"));
    assert_eq!(snap.trace_len, 10);

    // A running job nobody updates is dropped.
    let quiet = c.enqueue(JobSpec::script(["true"])).unwrap();
    take_job(&http, &c, runner.token.expose(), ALL).await;
    let dropped = c.wait_until_finished(quiet, WAIT).await.unwrap();
    assert_eq!(
        dropped.failure_reason.as_deref(),
        Some("no_updates_running")
    );
}

#[tokio::test]
async fn debug_output_never_shows_tokens() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let c = start(Options::default()).await;
    send_sync(&c);
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let jt = job_token(&job);
    let shown = format!(
        "{runner:?} {:?} {:?} {:?} {c:?}",
        c.job(id),
        c.runners(),
        c.requests()
    );
    assert!(!shown.contains(runner.token.expose()), "{shown}");
    assert!(!shown.contains(&jt), "{shown}");
    assert!(shown.contains("[REDACTED]"));
    let err = c
        .wait_for(id, |_| false, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(&jt) && err.to_string().contains("timed out"));
}
