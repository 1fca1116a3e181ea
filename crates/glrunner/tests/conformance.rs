//! Job conformance: realistic payloads (the runner API reference example among them) run end to end by
//! the real `glrunner run` binary with the shell executor against the GitLab test coordinator, with
//! the cache and artifact stages going through the real `glrunner helper`. Checked from GitLab's side:
//! the stage order in the stored trace, the variables the script saw, the files checked out, the
//! artifacts stored, the cache carried from one job to the next, the failure paths, and that masked
//! values never reach the trace from any stage.

mod support;

use glrunner_coordinator::{
    ArtifactSpec, CacheSpec, Endpoint, Fault, JobSnapshot, JobSpec, JobStatus, Project,
    ProjectSpec, Variable,
};
use serde_json::{Value, json};
use support::*;

const EXAMPLE: &str = include_str!("../../protocol/tests/fixtures/job_example.json");
const SECRET: &str = "Sup3r-S3cret-Value-4711";

/// Section names of a stored trace, in the order they started.
fn sections(trace: &str) -> Vec<String> {
    trace
        .split("section_start:")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.split_once(':')?.1;
            let end = rest.find(['\r', '['])?;
            Some(rest[..end].to_owned())
        })
        .collect()
}

async fn demo_project(env: &TestEnv) -> Project {
    let project = env
        .gitlab
        .add_project(ProjectSpec::new("acme/demo"))
        .expect("the coordinator serves acme/demo");
    project
        .commit("main")
        .file("README.md", "# demo from the coordinator\n")
        .file("Gemfile", "source 'https://rubygems.org'\n")
        .create()
        .expect("a commit");
    project
}

fn home(env: &TestEnv) {
    // The harness points HOME here; git config --global (the example's hook) writes into it.
    std::fs::create_dir_all(env.path("home")).expect("home dir");
}

async fn finished_ok(env: &TestEnv, gl: &Glrunner, id: i64) -> JobSnapshot {
    let done = env.finished(gl, id, WAIT).await;
    assert_eq!(
        done.status,
        JobStatus::Success,
        "{}\n--- glrunner ---\n{}",
        done.trace_text(),
        gl.output()
    );
    done
}

/// The reference example, adapted: its sources and dependency come from the coordinator, GitLab's URL
/// is the coordinator's, and its Ruby commands become shell that produces what they would.
fn adapted_example(server_url: &str) -> Value {
    let mut p: Value = serde_json::from_str(EXAMPLE).expect("the reference example parses");
    let obj = p.as_object_mut().expect("an object");
    // Sources, dependencies and the project's identity are the coordinator's own.
    for key in ["git_info", "dependencies", "job_info"] {
        obj.remove(key);
    }
    let vars = obj["variables"].as_array_mut().expect("variables");
    for v in vars.iter_mut() {
        if v["key"] == "CI_SERVER_URL" {
            v["value"] = server_url.into();
        }
    }
    vars.push(json!({"key": "SECRET_PASSWORD", "value": SECRET, "public": false, "masked": true}));
    obj["steps"][0]["script"] = json!([
        "echo \"db=$DATABASE_URL literal=$LITERAL\"",
        "echo \"kubeconfig=$(head -n1 \"$KUBECONFIG\") at $KUBECONFIG\"",
        "echo \"job=$CI_JOB_ID name=$CI_JOB_NAME stage=$CI_JOB_STAGE\"",
        "cat README.md",
        "echo \"head=$(git rev-parse HEAD)\"",
        "echo \"dependency: $(cat dist/app.txt)\"",
        "echo \"cached: $(cat vendor/bundle/gem.txt 2>/dev/null || echo none)\"",
        "mkdir -p coverage vendor/bundle && echo '<html>covered</html>' > coverage/index.html",
        "echo \"gem from $CI_JOB_ID\" > vendor/bundle/gem.txt",
        "echo '<testsuite tests=\"1\"/>' > rspec.xml",
        "echo \"secret=$SECRET_PASSWORD\"",
    ]);
    obj["steps"][1]["script"] = json!(["echo \"done: $CI_JOB_STATUS $SECRET_PASSWORD\""]);
    // Masked values where the helper stages print them: a cache key and an artifact path.
    obj["cache"].as_array_mut().expect("cache").push(
        json!({"key": "$SECRET_PASSWORD", "untracked": false, "policy": "pull",
                     "paths": ["nothing/"], "when": "on_success", "fallback_keys": []}),
    );
    obj["artifacts"].as_array_mut().expect("artifacts").push(
        json!({"name": "logs", "paths": ["$SECRET_PASSWORD/*.log"], "when": "always",
                     "expire_in": "1 day", "artifact_type": "metrics", "artifact_format": "gzip"}),
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_payload_runs_end_to_end() {
    let env = TestEnv::new().await;
    home(&env);
    let project = demo_project(&env).await;
    let mut gl = env.start(&env.config());

    let build = env
        .gitlab
        .enqueue(
            JobSpec::script([
                "mkdir -p dist",
                "echo 'built by the build job' > dist/app.txt",
            ])
            .name("build")
            .repository(&project)
            .artifact(ArtifactSpec::archive(["dist/"])),
        )
        .unwrap();
    finished_ok(&env, &gl, build).await;

    let spec = || {
        JobSpec::from_payload(adapted_example(env.gitlab.url()))
            .repository(&project)
            .dependency(build)
    };
    let first = env.gitlab.enqueue(spec()).unwrap();
    let done = finished_ok(&env, &gl, first).await;
    let trace = done.trace_text();

    assert_eq!(
        sections(&trace),
        [
            "prepare_executor",
            "prepare_script",
            "get_sources",
            "restore_cache",
            "download_artifacts",
            "step_script",
            "after_script",
            "archive_cache",
            "upload_artifacts_on_success",
            "cleanup_file_variables",
        ],
        "{trace}"
    );
    // Variables as the script saw them.
    assert!(
        trace.contains("\ndb=postgres://db/test literal=$NOT_EXPANDED\n"),
        "{trace}"
    );
    assert!(trace.contains("kubeconfig=apiVersion: v1 at "), "{trace}");
    assert!(trace.contains("acme/demo.tmp/KUBECONFIG\n"), "{trace}");
    assert!(
        trace.contains(&format!("\njob={first} name=rspec 1/2 stage=test\n")),
        "{trace}"
    );
    // Files checked out at the commit GitLab named, the dependency's artifacts extracted.
    let payload = env.gitlab.job_payload(first).expect("payload");
    let sha = payload["git_info"]["sha"].as_str().unwrap_or_default();
    assert_eq!(sha.len(), 40);
    assert!(trace.contains("\n# demo from the coordinator\n"), "{trace}");
    assert!(trace.contains(&format!("\nhead={sha}\n")), "{trace}");
    assert!(
        trace.contains("Downloading artifacts for build ("),
        "{trace}"
    );
    assert!(
        trace.contains("\ndependency: built by the build job\n"),
        "{trace}"
    );
    assert!(trace.contains("\ncached: none\n"), "{trace}");
    assert!(
        trace.contains("Checking cache for gems-1-protected..."),
        "{trace}"
    );
    assert!(
        trace.contains("Checking cache for gems-default-1-protected..."),
        "the fallback key is tried:\n{trace}"
    );
    assert!(
        trace.contains("Creating cache gems-1-protected..."),
        "{trace}"
    );
    assert!(trace.contains("Created cache"), "{trace}");
    assert!(trace.contains("\ndone: success "), "{trace}");

    // Artifacts stored in GitLab: the archive (zip) and the junit report (gzip), each with its expiry.
    let kinds: Vec<(String, String, Option<String>)> = done
        .artifacts
        .iter()
        .map(|a| {
            (
                a.artifact_type.clone(),
                a.artifact_format.clone(),
                a.expire_in.clone(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("archive".into(), "zip".into(), Some("1 week".into()))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("junit".into(), "gzip".into(), Some("1 week".into()))),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.len(),
        2,
        "the empty logs entry uploads nothing: {kinds:?}"
    );
    let zip = env
        .gitlab
        .artifact(first, "archive")
        .expect("archive stored");
    assert!(zip.starts_with(b"PK"), "a zip");
    assert!(
        zip.windows(b"coverage/index.html".len())
            .any(|w| w == b"coverage/index.html"),
        "the coverage report is in the archive"
    );
    let junit = env.gitlab.artifact(first, "junit").expect("junit stored");
    assert!(junit.starts_with(&[0x1f, 0x8b]), "gzip");

    // Masked values and tokens never reach the trace, whichever stage printed them.
    assert!(!trace.contains(SECRET), "{trace}");
    assert!(trace.contains("secret=[MASKED]"), "{trace}");
    assert!(
        trace.contains("Checking cache for [MASKED]..."),
        "the key shown by restore_cache is masked:\n{trace}"
    );
    assert!(
        trace.contains("[MASKED]/*.log"),
        "the helper's warning about the path is masked:\n{trace}"
    );
    assert!(!trace.contains(done.token.expose()), "{trace}");

    // The same payload again: the cache comes back.
    let second = env.gitlab.enqueue(spec()).unwrap();
    let done = finished_ok(&env, &gl, second).await;
    let trace = done.trace_text();
    assert!(trace.contains("Successfully extracted cache"), "{trace}");
    assert!(
        trace.contains(&format!("\ncached: gem from {first}\n")),
        "{trace}"
    );
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_round_trips_across_jobs_with_policies_and_fallback_keys() {
    let env = TestEnv::new().await;
    let project = demo_project(&env).await;
    let mut gl = env.start(&env.config());
    let job = |script: &[&str], cache: CacheSpec| {
        JobSpec::script(script.iter().copied())
            .repository(&project)
            .var("GIT_STRATEGY", "clone")
            .cache(cache)
    };

    let first = env
        .gitlab
        .enqueue(job(
            &["mkdir -p deps", "echo v1 > deps/lib.txt"],
            CacheSpec::new("deps-$CI_COMMIT_REF_SLUG", ["deps/"]).policy("push"),
        ))
        .unwrap();
    let trace = finished_ok(&env, &gl, first).await.trace_text();
    assert!(
        trace.contains("Not downloading cache deps-main-protected due to policy"),
        "{trace}"
    );
    assert!(
        trace.contains("Creating cache deps-main-protected..."),
        "{trace}"
    );
    assert!(
        env.path("cache/acme/demo/deps-main-protected/cache.zip")
            .is_file(),
        "the local cache archive exists"
    );

    // Pull-only, under another key that falls back to the first one.
    let second = env
        .gitlab
        .enqueue(job(
            &["cat deps/lib.txt", "echo v2 > deps/lib.txt"],
            CacheSpec::new("other", ["deps/"])
                .policy("pull")
                .fallback_keys(["deps-main"]),
        ))
        .unwrap();
    let trace = finished_ok(&env, &gl, second).await.trace_text();
    assert!(
        trace.contains("Checking cache for other-protected..."),
        "{trace}"
    );
    assert!(trace.contains("Failed to extract cache"), "{trace}");
    assert!(
        trace.contains("Checking cache for deps-main-protected..."),
        "{trace}"
    );
    assert!(trace.contains("Successfully extracted cache"), "{trace}");
    assert!(
        trace.contains("\nv1\n"),
        "restored from the fallback:\n{trace}"
    );
    assert!(
        trace.contains("Not uploading cache other-protected due to policy"),
        "{trace}"
    );

    // No cache anywhere: only warnings, the job succeeds.
    let third = env
        .gitlab
        .enqueue(job(
            &["test ! -e deps/lib.txt && echo no cache"],
            CacheSpec::new("never-written", ["deps/"]).policy("pull"),
        ))
        .unwrap();
    let trace = finished_ok(&env, &gl, third).await.trace_text();
    assert!(
        trace.contains("WARNING: Failed to extract cache"),
        "{trace}"
    );
    assert!(trace.contains("\nno cache\n"), "{trace}");
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_failures_fail_the_job_after_the_jobs_own_error() {
    let env = TestEnv::with_options(options().max_artifact_size(64)).await;
    let mut gl = env.start(&env.config());

    // A successful job whose upload GitLab refuses (too large) fails with the upload's error.
    let id = env
        .gitlab
        .enqueue(
            job(&["head -c 100000 /dev/urandom > big.bin"])
                .artifact(ArtifactSpec::archive(["big.bin"])),
        )
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}");
    assert_eq!(done.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(done.exit_code, Some(1));
    assert!(trace.contains("Uploading artifacts..."), "{trace}");
    assert!(trace.contains("ERROR:"), "the helper says why:\n{trace}");
    assert!(
        sections(&trace).contains(&"upload_artifacts_on_success".to_owned()),
        "{trace}"
    );

    // A failing job keeps its own exit code; its on_failure artifacts are still attempted.
    let id = env
        .gitlab
        .enqueue(
            job(&["head -c 100000 /dev/urandom > big.bin", "exit 7"])
                .artifact(ArtifactSpec::archive(["big.bin"]).when("on_failure")),
        )
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.exit_code, Some(7), "{trace}");
    assert!(
        sections(&trace).contains(&"upload_artifacts_on_failure".to_owned()),
        "{trace}"
    );
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_whose_artifacts_are_gone_fails_the_job_before_its_script() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config());
    let build = env
        .gitlab
        .enqueue(
            job(&["mkdir -p dist", "echo app > dist/app.txt"])
                .name("build")
                .artifact(ArtifactSpec::archive(["dist/"])),
        )
        .unwrap();
    finished_ok(&env, &gl, build).await;

    // The archive vanishes between assignment and download (expired): GitLab answers 404.
    env.gitlab
        .inject(Fault::respond(Endpoint::DownloadArtifacts, 404));
    let id = env
        .gitlab
        .enqueue(job(&["echo script ran"]).dependency(build))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}");
    assert_eq!(done.failure_reason.as_deref(), Some("script_failure"));
    assert!(
        trace.contains("Downloading artifacts for build ("),
        "{trace}"
    );
    assert!(!trace.contains("\nscript ran\n"), "{trace}");
    assert!(
        trace.contains("404"),
        "the helper names GitLab's answer:\n{trace}"
    );
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_values_never_reach_the_trace_from_any_stage() {
    let env = TestEnv::new().await;
    let project = demo_project(&env).await;
    let mut gl = env.start(&env.config());
    let spec = JobSpec::script([
        "echo \"script: $SECRET_PASSWORD\"",
        "echo \"SEEN=$SECRET_PASSWORD\" >> \"$GITLAB_ENV\"",
        "git ls-remote \"http://user:${SECRET_PASSWORD}@127.0.0.1:1/x.git\" || true",
        "git rev-parse \"$SECRET_PASSWORD\" || true",
    ])
    .repository(&project)
    .variable(Variable::new("SECRET_PASSWORD", SECRET).masked())
    .var("CI_DEBUG_TRACE", "true")
    .hook(
        "pre_get_sources_script",
        ["echo \"hook: $SECRET_PASSWORD\""],
    )
    .after_script(["echo \"after: $SEEN\" >&2"])
    .cache(CacheSpec::new("$SECRET_PASSWORD", ["cached/"]))
    .artifact(ArtifactSpec::archive(["$SECRET_PASSWORD/out"]).when("always"));
    let id = env.gitlab.enqueue(spec).unwrap();
    let done = finished_ok(&env, &gl, id).await;
    let trace = done.trace_text();
    assert!(!trace.contains(SECRET), "{trace}");
    assert!(
        !trace.contains(&SECRET[..12]),
        "no partial leak either:\n{trace}"
    );
    for line in [
        "hook: [MASKED]",
        "script: [MASKED]",
        "after: [MASKED]",
        "Checking cache for [MASKED]-protected...",
        "Creating cache [MASKED]-protected...",
        "[MASKED]/out: no matching files",
    ] {
        assert!(trace.contains(line), "{line:?} missing:\n{trace}");
    }
    assert!(
        trace
            .lines()
            .any(|l| l.starts_with("fatal:") && l.contains("[MASKED]")),
        "git's own error quotes the value, masked:\n{trace}"
    );
    assert!(!trace.contains(done.token.expose()), "{trace}");
    gl.stop().await;
}

/// `[runners.cache]` lines for an S3 cache on `s3`, with `secret` as the secret key.
fn s3_cache_config(
    env: &TestEnv,
    s3: &glrunner_cache::test_server::S3Server,
    secret: &str,
) -> RunConfig {
    env.config()
        .runner_line("[runners.cache]")
        .runner_line("Type = \"s3\"")
        .runner_line("Path = \"ci\"")
        .runner_line("[runners.cache.s3]")
        .runner_line(&format!("ServerAddress = {:?}", s3.address()))
        .runner_line(&format!("AccessKey = {:?}", s3.access_key()))
        .runner_line(&format!("SecretKey = {secret:?}"))
        .runner_line("BucketName = \"runner-cache\"")
        .runner_line("Insecure = true")
}

/// Files under `dir` whose name is `name`, at any depth.
fn find_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                found.push(p);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_cache_round_trips_across_jobs_through_presigned_urls() {
    let s3 = glrunner_cache::test_server::S3Server::start()
        .await
        .expect("S3 server");
    s3.create_bucket("runner-cache").expect("bucket");
    let env = TestEnv::new().await;
    let project = demo_project(&env).await;
    let mut gl = env.start(&s3_cache_config(&env, &s3, s3.secret_key()));
    let job = |script: &[&str]| {
        JobSpec::script(script.iter().copied())
            .repository(&project)
            .var("GIT_STRATEGY", "clone")
            .cache(CacheSpec::new("s3-deps", ["deps/"]))
    };

    let first = env
        .gitlab
        .enqueue(job(&["mkdir -p deps", "echo from-s3 > deps/lib.txt"]))
        .unwrap();
    let trace = finished_ok(&env, &gl, first).await.trace_text();
    assert!(trace.contains("Created cache"), "{trace}");
    let objects = find_named(s3.root(), "s3-deps-protected");
    assert_eq!(objects.len(), 1, "one object in the bucket: {objects:?}");
    assert!(
        objects[0].to_string_lossy().contains("/ci/runner/"),
        "object under Path and the runner's prefix: {objects:?}"
    );
    assert!(
        !env.path("cache/acme/demo/s3-deps-protected/cache.zip")
            .exists(),
        "S3 is used instead of the local cache directory"
    );

    let second = env.gitlab.enqueue(job(&["cat deps/lib.txt"])).unwrap();
    let trace = finished_ok(&env, &gl, second).await.trace_text();
    assert!(trace.contains("Successfully extracted cache"), "{trace}");
    assert!(trace.contains("\nfrom-s3\n"), "restored from S3:\n{trace}");
    assert!(
        !trace.contains("X-Amz-Signature=") || trace.contains("X-Amz-Signature=[MASKED]"),
        "presigned signatures never reach the trace:\n{trace}"
    );
    assert!(!trace.contains(s3.secret_key()), "{trace}");
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_s3_cache_is_a_visible_warning_with_the_s3_error() {
    let s3 = glrunner_cache::test_server::S3Server::start()
        .await
        .expect("S3 server");
    s3.create_bucket("runner-cache").expect("bucket");
    let env = TestEnv::new().await;
    let project = demo_project(&env).await;
    let mut gl = env.start(&s3_cache_config(&env, &s3, "not-the-secret-key"));
    let id = env
        .gitlab
        .enqueue(
            JobSpec::script(["mkdir -p deps", "echo x > deps/lib.txt"])
                .repository(&project)
                .var("GIT_STRATEGY", "clone")
                .cache(CacheSpec::new("s3-deps", ["deps/"])),
        )
        .unwrap();
    let trace = finished_ok(&env, &gl, id).await.trace_text();
    assert!(trace.contains("WARNING:"), "{trace}");
    assert!(
        trace.contains("SignatureDoesNotMatch") || trace.contains("403"),
        "the S3 error reaches the trace:\n{trace}"
    );
    assert!(
        !trace.contains("Created cache"),
        "a failed upload is never reported as created:\n{trace}"
    );
    assert!(find_named(s3.root(), "s3-deps-protected").is_empty());
    gl.stop().await;
}
