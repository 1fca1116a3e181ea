//! Git over smart HTTP, driven by real `git` client processes against the coordinator on 127.0.0.1:
//! clone and fetch with the job token and the payload's refspecs, shallow fetches deepened, pipeline
//! refs, GitLab's refusals, protocol v2, submodules, large repositories (gzip and chunked requests),
//! the backend's lifetime, the admin API and the binary.

mod common;

use common::*;
use glrunner_coordinator::{
    Coordinator, Endpoint, EnqueueError, Fault, JobSpec, JobStatus, Options, Project, ProjectError,
    ProjectSpec, RequestRecord, RunnerSpec,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Longest one git client command may take.
const GIT_WAIT: Duration = Duration::from_secs(120);

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Run a git client in `dir`, isolated from the host's configuration, with `env` added.
async fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_CONFIG_PARAMETERS",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(GIT_WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("git {args:?} did not finish within {GIT_WAIT:?}"))
        .expect("git runs");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn git(dir: &Path, args: &[&str]) -> Out {
    git_env(dir, args, &[]).await
}

/// Run git and require success.
async fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args).await;
    assert!(out.ok, "git {args:?} failed: {}", out.stderr);
    out.stdout
}

/// Commit what is staged in `dir`, under a throwaway identity.
async fn commit(dir: &Path, message: &str) {
    git_ok(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            message,
        ],
    )
    .await;
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A small working tree: a README, a source file, an executable script and an ignored build dir.
fn fixture_tree() -> tempfile::TempDir {
    let dir = tmp();
    let p = dir.path();
    std::fs::create_dir_all(p.join("src")).unwrap();
    std::fs::create_dir_all(p.join("target")).unwrap();
    std::fs::write(p.join("README.md"), "# demo\n").unwrap();
    std::fs::write(p.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(p.join(".gitignore"), "target/\n").unwrap();
    std::fs::write(p.join("target/junk.o"), "build output").unwrap();
    std::fs::write(p.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

struct Setup {
    c: Coordinator,
    http: reqwest::Client,
    runner_token: String,
}

async fn setup(options: Options) -> Setup {
    let c = start(options).await;
    let runner = c.add_runner(RunnerSpec::created());
    Setup {
        c,
        http: http(),
        runner_token: runner.token.expose().to_owned(),
    }
}

impl Setup {
    /// Enqueue `spec` and take it as a runner would: the payload of the now running job.
    async fn run(&self, spec: JobSpec) -> Value {
        let id = self.c.enqueue(spec).expect("job enqueued");
        let job = take_job(&self.http, &self.c, &self.runner_token, ALL).await;
        assert_eq!(job_id(&job), id);
        job
    }
}

/// The coordinator with `acme/demo` imported from [`fixture_tree`] (returned to outlive the test).
async fn demo_project() -> (Setup, tempfile::TempDir, Project) {
    let s = setup(Options::default()).await;
    let tree = fixture_tree();
    let project =
        s.c.add_project(ProjectSpec::new("acme/demo").dir(tree.path()))
            .unwrap();
    (s, tree, project)
}

/// The logged requests `keep` accepts, in order.
fn logged(c: &Coordinator, keep: impl Fn(&RequestRecord) -> bool) -> Vec<RequestRecord> {
    c.requests().into_iter().filter(|r| keep(r)).collect()
}

fn repo_url(job: &Value) -> String {
    job["git_info"]["repo_url"]
        .as_str()
        .expect("repo_url")
        .to_owned()
}

fn variable(job: &Value, key: &str) -> Option<String> {
    job["variables"]
        .as_array()?
        .iter()
        .find(|v| v["key"] == key)
        .and_then(|v| v["value"].as_str())
        .map(str::to_owned)
}

fn refspecs(job: &Value) -> Vec<String> {
    job["git_info"]["refspecs"]
        .as_array()
        .expect("refspecs")
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// A project with `n` commits on main, each setting `counter.txt` to its number. Returns the shas.
fn counted(project: &Project, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            project
                .commit("main")
                .file("counter.txt", format!("{i}\n"))
                .message(format!("Commit {i}"))
                .create()
                .expect("commit")
        })
        .collect()
}

/// Fetch as the runner does: init, add the remote, fetch the payload's refspecs.
async fn runner_fetch(dir: &Path, job: &Value, extra: &[&str]) -> Out {
    git_ok(dir, &["init", "--quiet"]).await;
    git_ok(dir, &["remote", "add", "origin", &repo_url(job)]).await;
    let specs = refspecs(job);
    let mut args = vec!["fetch", "origin", "--no-recurse-submodules"];
    args.extend(specs.iter().map(String::as_str));
    args.extend(extra);
    args.extend(["--prune", "--quiet"]);
    git(dir, &args).await
}

// Clone and fetch --------------------------------------------------------------------------------

#[tokio::test]
async fn clone_with_the_job_token_gets_the_built_commit() {
    let (s, _tree, project) = demo_project().await;
    let head = project.rev_parse("main").unwrap();
    let job = s.run(JobSpec::script(["true"]).repository(&project)).await;
    let token = job_token(&job);

    assert_eq!(job["git_info"]["sha"], head.as_str());
    assert_eq!(repo_url(&job), project.url_with_job_token(&token));
    assert!(repo_url(&job).starts_with(&format!(
        "http://gitlab-ci-token:{token}@127.0.0.1:{}/acme/demo.git",
        s.c.addr().port()
    )));
    assert_eq!(variable(&job, "CI_REPOSITORY_URL"), Some(repo_url(&job)));
    assert_eq!(variable(&job, "CI_COMMIT_SHA"), Some(head.clone()));
    assert_eq!(
        variable(&job, "CI_COMMIT_MESSAGE").as_deref(),
        Some("Initial commit\n")
    );
    assert_eq!(
        variable(&job, "CI_COMMIT_AUTHOR").as_deref(),
        Some("Administrator <admin@example.com>")
    );

    let work = tmp();
    git_ok(work.path(), &["clone", "--quiet", &repo_url(&job), "src"]).await;
    let src = work.path().join("src");
    assert_eq!(git_ok(&src, &["rev-parse", "HEAD"]).await, head);
    assert_eq!(
        std::fs::read_to_string(src.join("README.md")).unwrap(),
        "# demo\n"
    );
    assert!(!src.join("target").exists(), ".gitignore applied on import");
    assert!(
        git_ok(&src, &["ls-files", "-s", "run.sh"])
            .await
            .starts_with("100755"),
        "the executable bit survives"
    );

    let git_requests = logged(&s.c, |r| r.endpoint.is_git());
    assert!(
        git_requests
            .iter()
            .any(|r| r.endpoint == Endpoint::GitInfoRefs && r.status == Some(200))
    );
    assert!(
        git_requests
            .iter()
            .any(|r| r.endpoint == Endpoint::GitUploadPack && r.status == Some(200))
    );
    // git sends the URL's credentials only after the 401 challenge, as against GitLab.
    for r in &git_requests {
        match r.status {
            Some(200) => {
                assert_eq!(r.token_kind, Some("job"));
                assert_eq!(r.job_id, Some(job_id(&job)));
            }
            other => {
                assert_eq!(other, Some(401), "{r:?}");
                assert_eq!(r.token_kind, None);
            }
        }
    }
    let log = serde_json::to_string(&s.c.requests()).unwrap();
    assert!(!log.contains(&token), "the request log never holds a token");
    assert_eq!(s.c.git_backends(), 0, "every backend process has ended");
}

#[tokio::test]
async fn fetch_with_payload_refspecs_depth_1_then_deepen_and_unshallow() {
    let s = setup(Options::default()).await;
    let project = s.c.add_project(ProjectSpec::new("acme/deep")).unwrap();
    let shas = counted(&project, 5);
    let job = s
        .run(JobSpec::script(["true"]).repository(&project).depth(1))
        .await;
    let pipeline = job["job_info"]["pipeline_id"].as_i64().unwrap();
    assert_eq!(
        refspecs(&job),
        [
            format!("+refs/pipelines/{pipeline}:refs/pipelines/{pipeline}"),
            "+refs/heads/main:refs/remotes/origin/main".to_owned(),
        ]
    );
    assert_eq!(job["git_info"]["depth"], 1);

    let work = tmp();
    let dir = work.path();
    let fetched = runner_fetch(dir, &job, &["--depth", "1"]).await;
    assert!(fetched.ok, "{}", fetched.stderr);
    let count = |r: &'static str| async move { git_ok(dir, &["rev-list", "--count", r]).await };
    assert_eq!(count("refs/remotes/origin/main").await, "1");
    assert!(dir.join(".git/shallow").exists());
    assert_eq!(
        git_ok(dir, &["rev-parse", &format!("refs/pipelines/{pipeline}")]).await,
        shas[4]
    );
    git_ok(dir, &["checkout", "-f", "-q", &shas[4]]).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("counter.txt")).unwrap(),
        "5\n"
    );

    let specs = refspecs(&job);
    let mut deepen = vec!["fetch", "--deepen=2", "origin"];
    deepen.extend(specs.iter().map(String::as_str));
    git_ok(dir, &deepen).await;
    assert_eq!(count("refs/remotes/origin/main").await, "3");

    let mut unshallow = vec!["fetch", "--unshallow", "origin"];
    unshallow.extend(specs.iter().map(String::as_str));
    git_ok(dir, &unshallow).await;
    assert_eq!(count("refs/remotes/origin/main").await, "5");
    assert!(!dir.join(".git/shallow").exists());
}

#[tokio::test]
async fn pipeline_refs_tags_and_pinned_commits() {
    let s = setup(Options::default()).await;
    let project = s.c.add_project(ProjectSpec::new("acme/refs")).unwrap();
    let shas = counted(&project, 2);
    project.tag("v1.0", &shas[0]).unwrap();

    // A pinned (short) sha resolves to the full one; each job's pipeline ref points at its commit.
    let pinned =
        s.c.enqueue(
            JobSpec::script(["true"])
                .repository(&project)
                .sha(&shas[0][..10]),
        )
        .unwrap();
    let tip =
        s.c.enqueue(JobSpec::script(["true"]).repository(&project))
            .unwrap();
    let job = take_job(&s.http, &s.c, &s.runner_token, ALL).await;
    assert_eq!(job_id(&job), pinned);
    assert_eq!(job["git_info"]["sha"], shas[0].as_str());
    let tip_job = take_job(&s.http, &s.c, &s.runner_token, ALL).await;
    assert_eq!(job_id(&tip_job), tip);
    assert_eq!(tip_job["git_info"]["sha"], shas[1].as_str());

    let refs = project.refs().unwrap();
    let pipeline_of = |j: &Value| j["job_info"]["pipeline_id"].as_i64().unwrap();
    assert_eq!(
        refs.get(&format!("refs/pipelines/{}", pipeline_of(&job))),
        Some(&shas[0])
    );
    assert_eq!(
        refs.get(&format!("refs/pipelines/{}", pipeline_of(&tip_job))),
        Some(&shas[1])
    );

    // Both pipeline refs are advertised and fetchable with either running job's token.
    let work = tmp();
    let listed = git_ok(work.path(), &["ls-remote", &repo_url(&tip_job)]).await;
    assert!(listed.contains(&format!(
        "{}\trefs/pipelines/{}",
        shas[0],
        pipeline_of(&job)
    )));
    assert!(listed.contains(&format!("{}\trefs/tags/v1.0", shas[0])));
    let fetched = runner_fetch(work.path(), &job, &["--depth", "20"]).await;
    assert!(fetched.ok, "{}", fetched.stderr);
    assert_eq!(
        git_ok(
            work.path(),
            &[
                "rev-parse",
                &format!("refs/pipelines/{}", pipeline_of(&job))
            ]
        )
        .await,
        shas[0]
    );

    // A tag job: GitLab's tag refspec, fetched as written.
    let tag_job = s
        .run(JobSpec::script(["true"]).repository(&project).tag("v1.0"))
        .await;
    assert_eq!(tag_job["git_info"]["ref_type"], "tag");
    assert_eq!(tag_job["git_info"]["sha"], shas[0].as_str());
    assert_eq!(refspecs(&tag_job)[1], "+refs/tags/v1.0:refs/tags/v1.0");
    let tag_dir = tmp();
    let fetched = runner_fetch(tag_dir.path(), &tag_job, &["--depth", "20"]).await;
    assert!(fetched.ok, "{}", fetched.stderr);
    assert_eq!(
        git_ok(tag_dir.path(), &["rev-parse", "refs/tags/v1.0"]).await,
        shas[0]
    );

    // Refs that do not exist are refused at enqueue, with the fix, and leave no pipeline ref.
    let before = project.refs().unwrap();
    let err =
        s.c.enqueue(
            JobSpec::script(["true"])
                .repository(&project)
                .branch("nope"),
        )
        .unwrap_err();
    assert!(matches!(err, EnqueueError::Repository { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("refs/heads/nope") && text.contains("fix:"),
        "{text}"
    );
    assert_eq!(project.refs().unwrap(), before);
    let err =
        s.c.enqueue(JobSpec::script(["true"]).project("acme/refs"))
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("5c3f1b0e8d6a4c2f9e7b1a3d5f7c9e1b3a5d7f9c"),
        "a made-up sha is refused for a served project: {err}"
    );
}

// Refusals ----------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_or_missing_credentials_get_gitlabs_401() {
    let (s, _tree, project) = demo_project().await;
    let job = s.run(JobSpec::script(["true"]).repository(&project)).await;
    let token = job_token(&job);

    let wrong = project.url_with_job_token("glcbt-64_notTheTokenOfAnyJob000");
    let work = tmp();
    let out = git(work.path(), &["clone", "--quiet", &wrong, "x"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("Authentication failed"),
        "git reports the 401: {}",
        out.stderr
    );
    assert!(!work.path().join("x").exists());

    let info_refs = format!("{}/info/refs?service=git-upload-pack", project.url());
    let none = s.http.get(&info_refs).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(
        header(&none, "WWW-Authenticate").as_deref(),
        Some("Basic realm=\"GitLab\"")
    );
    assert!(
        none.text()
            .await
            .unwrap()
            .starts_with("HTTP Basic: Access denied.")
    );
    let other_user = s
        .http
        .get(&info_refs)
        .basic_auth("root", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other_user.status(),
        401,
        "only gitlab-ci-token goes with a job token"
    );
    let right = s
        .http
        .get(&info_refs)
        .basic_auth("gitlab-ci-token", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        header(&right, "Content-Type").as_deref(),
        Some("application/x-git-upload-pack-advertisement")
    );

    let denied = logged(&s.c, |r| {
        r.endpoint == Endpoint::GitInfoRefs && r.status == Some(401)
    });
    assert!(denied.len() >= 3, "{denied:?}");
    assert!(denied.iter().any(|r| r.token_kind.is_none()));
    let log = serde_json::to_string(&s.c.requests()).unwrap();
    assert!(!log.contains("notTheTokenOfAnyJob") && !log.contains(&token));
}

#[tokio::test]
async fn tokens_of_finished_pending_or_canceled_jobs_are_refused() {
    let (s, _tree, project) = demo_project().await;
    let clone = |url: String| async move {
        let work = tmp();
        git(work.path(), &["clone", "--quiet", &url, "x"]).await
    };

    let job = s.run(JobSpec::script(["true"]).repository(&project)).await;
    assert!(clone(repo_url(&job)).await.ok);
    let r = put(
        &s.http,
        &s.c,
        job_id(&job),
        &job_token(&job),
        json!({"state": "success", "exit_code": 0}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let out = clone(repo_url(&job)).await;
    assert!(
        !out.ok && out.stderr.contains("Authentication failed"),
        "{}",
        out.stderr
    );

    // Queued but not yet taken by a runner: not running, so refused.
    let pending =
        s.c.enqueue(JobSpec::script(["true"]).repository(&project))
            .unwrap();
    let pending_token = s.c.job_token(pending).unwrap();
    let out = clone(project.url_with_job_token(pending_token.expose())).await;
    assert!(
        !out.ok && out.stderr.contains("Authentication failed"),
        "{}",
        out.stderr
    );

    // Canceling still fetches (after_script may); canceled does not.
    let running = take_job(&s.http, &s.c, &s.runner_token, ALL).await;
    assert_eq!(job_id(&running), pending);
    assert_eq!(s.c.cancel_gracefully(pending), Some(JobStatus::Canceling));
    assert!(clone(repo_url(&running)).await.ok);
    assert_eq!(s.c.cancel(pending), Some(JobStatus::Canceled));
    let out = clone(repo_url(&running)).await;
    assert!(
        !out.ok && out.stderr.contains("Authentication failed"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn other_projects_need_the_job_token_allowlist_and_pushes_are_refused() {
    let s = setup(Options::default()).await;
    let app = s.c.add_project(ProjectSpec::new("acme/app")).unwrap();
    counted(&app, 1);
    let lib =
        s.c.add_project(ProjectSpec::new("acme/lib").allow_job_tokens_from("acme/app"))
            .unwrap();
    counted(&lib, 1);
    let secret = s.c.add_project(ProjectSpec::new("acme/secret")).unwrap();
    counted(&secret, 1);
    let job = s.run(JobSpec::script(["true"]).repository(&app)).await;
    let token = job_token(&job);

    let work = tmp();
    let ok = git(
        work.path(),
        &["clone", "-q", &lib.url_with_job_token(&token), "lib"],
    )
    .await;
    assert!(ok.ok, "an allowlisted project is readable: {}", ok.stderr);
    let refused = git(
        work.path(),
        &["clone", "-q", &secret.url_with_job_token(&token), "secret"],
    )
    .await;
    assert!(!refused.ok);
    assert!(refused.stderr.contains("not found"), "{}", refused.stderr);

    for url in [
        format!("{}/info/refs?service=git-upload-pack", secret.url()),
        format!(
            "{}/acme/missing.git/info/refs?service=git-upload-pack",
            s.c.url()
        ),
    ] {
        let r = s
            .http
            .get(&url)
            .basic_auth("gitlab-ci-token", Some(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{url}");
        assert!(
            r.text()
                .await
                .unwrap()
                .starts_with("The project you were looking for could not be found")
        );
    }

    let push = s
        .http
        .get(format!("{}/info/refs?service=git-receive-pack", app.url()))
        .basic_auth("gitlab-ci-token", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), 403);
    assert_eq!(
        push.text().await.unwrap(),
        "You are not allowed to upload code."
    );
    let clone = work.path().join("app");
    git_ok(work.path(), &["clone", "-q", &repo_url(&job), "app"]).await;
    std::fs::write(clone.join("new.txt"), "x").unwrap();
    git_ok(&clone, &["add", "new.txt"]).await;
    commit(&clone, "x").await;
    let pushed = git(&clone, &["push", "origin", "HEAD:main"]).await;
    assert!(!pushed.ok, "a job token cannot push");
    assert_eq!(
        app.refs().unwrap().len(),
        2,
        "main and the pipeline ref only"
    );
}

#[tokio::test]
async fn injected_faults_reach_git_requests() {
    let (s, _tree, project) = demo_project().await;
    let job = s.run(JobSpec::script(["true"]).repository(&project)).await;
    s.c.inject(Fault::unavailable(Endpoint::GitUploadPack));
    let work = tmp();
    let failed = git(work.path(), &["clone", "-q", &repo_url(&job), "a"]).await;
    assert!(!failed.ok, "the 503 fails the clone");
    assert!(failed.stderr.contains("503"), "{}", failed.stderr);
    assert!(s.c.faults().is_empty(), "the fault was used up");
    git_ok(work.path(), &["clone", "-q", &repo_url(&job), "b"]).await;
    let faulted = logged(&s.c, |r| r.fault.is_some());
    assert_eq!(faulted.len(), 1);
    assert_eq!(faulted[0].endpoint, Endpoint::GitUploadPack);
    assert_eq!(faulted[0].status, Some(503));
}

// Protocol ----------------------------------------------------------------------------------------

#[tokio::test]
async fn protocol_v2_is_negotiated_and_v0_still_works() {
    let (s, _tree, project) = demo_project().await;
    let job = s.run(JobSpec::script(["true"]).repository(&project)).await;

    let work = tmp();
    let v2 = git_env(
        work.path(),
        &[
            "-c",
            "protocol.version=2",
            "clone",
            "-q",
            &repo_url(&job),
            "v2",
        ],
        &[("GIT_TRACE_PACKET", "1")],
    )
    .await;
    assert!(v2.ok, "{}", v2.stderr);
    assert!(
        v2.stderr.contains("version 2"),
        "the server answered in protocol v2"
    );
    let v2_requests = logged(&s.c, |r| r.endpoint.is_git());
    assert!(v2_requests.len() >= 2);
    assert!(
        v2_requests
            .iter()
            .all(|r| r.git_protocol.as_deref() == Some("version=2")),
        "{v2_requests:?}"
    );

    let seen = s.c.requests().len();
    let v0 = git(
        work.path(),
        &[
            "-c",
            "protocol.version=0",
            "clone",
            "-q",
            &repo_url(&job),
            "v0",
        ],
    )
    .await;
    assert!(v0.ok, "{}", v0.stderr);
    let v0_requests: Vec<_> = s.c.requests().into_iter().skip(seen).collect();
    assert!(
        v0_requests
            .iter()
            .any(|r| r.endpoint == Endpoint::GitUploadPack && r.status == Some(200))
    );
    assert!(v0_requests.iter().all(|r| r.git_protocol.is_none()));
    assert_eq!(
        git_ok(&work.path().join("v0"), &["rev-parse", "HEAD"]).await,
        git_ok(&work.path().join("v2"), &["rev-parse", "HEAD"]).await
    );
}

#[tokio::test]
async fn submodules_clone_with_the_job_token() {
    let s = setup(Options::default()).await;
    let lib =
        s.c.add_project(ProjectSpec::new("acme/lib").allow_job_tokens_from("acme/app"))
            .unwrap();
    let pinned = lib.commit("main").file("lib.txt", "v1\n").create().unwrap();
    lib.commit("main").file("lib.txt", "v2\n").create().unwrap();
    let app = s.c.add_project(ProjectSpec::new("acme/app")).unwrap();
    app.commit("main")
        .file("app.txt", "app\n")
        .submodule("libs/abs", &lib, &pinned)
        .submodule_url("libs/rel", "../lib.git", &pinned)
        .message("Add submodules")
        .create()
        .unwrap();
    let job = s.run(JobSpec::script(["true"]).repository(&app)).await;
    let token = job_token(&job);

    let work = tmp();
    git_ok(work.path(), &["clone", "-q", &repo_url(&job), "app"]).await;
    let dir = work.path().join("app");
    let gitmodules = std::fs::read_to_string(dir.join(".gitmodules")).unwrap();
    assert!(
        gitmodules.contains(&format!("url = {}", lib.url())),
        "{gitmodules}"
    );
    assert!(!gitmodules.contains(&token));

    // The relative URL inherits the superproject's credentials; the absolute one needs them.
    git_ok(&dir, &["submodule", "update", "--init", "libs/rel"]).await;
    let bare = git(&dir, &["submodule", "update", "--init", "libs/abs"]).await;
    assert!(
        !bare.ok && bare.stderr.contains("could not read Username"),
        "challenged with 401 and no credentials to give: {}",
        bare.stderr
    );
    assert!(
        s.c.requests()
            .iter()
            .any(|r| r.path.starts_with("/acme/lib.git/") && r.status == Some(401))
    );

    // As the runner does: rewrite the server's URL to one carrying the job token.
    let config = work.path().join("gitconfig");
    let base = format!("http://127.0.0.1:{}/", s.c.addr().port());
    std::fs::write(
        &config,
        format!(
            "[url \"http://gitlab-ci-token:{token}@127.0.0.1:{}/\"]\n\tinsteadOf = {base}\n",
            s.c.addr().port()
        ),
    )
    .unwrap();
    let with_token = git_env(
        &dir,
        &["submodule", "update", "--init"],
        &[("GIT_CONFIG_GLOBAL", config.to_str().unwrap())],
    )
    .await;
    assert!(with_token.ok, "{}", with_token.stderr);
    for sub in ["libs/abs", "libs/rel"] {
        assert_eq!(
            std::fs::read_to_string(dir.join(sub).join("lib.txt")).unwrap(),
            "v1\n",
            "{sub} is checked out at the pinned commit"
        );
    }
}

// Large repositories --------------------------------------------------------------------------------

/// Incompressible bytes (xorshift), so pack data stays as large as the files.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `branches` branches `b/NN` and `tags` tags `t/NNNN`, each on its own root commit, written with
/// `git fast-import` into the project's repository.
async fn many_refs(project: &Project, branches: usize, tags: usize) {
    let mut stream = String::new();
    let names = (0..branches)
        .map(|i| format!("refs/heads/b/{i:02}"))
        .chain((0..tags).map(|i| format!("refs/tags/t/{i:04}")));
    for (i, name) in names.enumerate() {
        let body = format!("{name}\n");
        stream.push_str(&format!(
            "commit {name}\ncommitter A <a@example.com> {} +0000\ndata {}\n{body}\nM 644 inline f\ndata {}\n{body}\n",
            1_700_000_000 + i,
            body.len(),
            body.len(),
        ));
    }
    let mut child = tokio::process::Command::new("git")
        .arg(format!("--git-dir={}", project.git_dir().display()))
        .args(["fast-import", "--quiet"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(stream.as_bytes()).await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(GIT_WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn large_repository_streams_with_gzip_and_chunked_requests() {
    let s = setup(Options::default()).await;
    let tree = tmp();
    let mut sums = Vec::new();
    for i in 0..6 {
        let data = noise(768 * 1024, 0x9e37_79b9 + i);
        sums.push((format!("blob{i}.bin"), crc32fast::hash(&data)));
        std::fs::write(tree.path().join(format!("blob{i}.bin")), data).unwrap();
    }
    let project =
        s.c.add_project(ProjectSpec::new("acme/big").dir(tree.path()))
            .unwrap();
    many_refs(&project, 40, 1500).await;

    // Full clone refspecs (depth 0): ~1540 wants, beyond git's 64 KiB post buffer, so chunked.
    let job = s
        .run(JobSpec::script(["true"]).repository(&project).depth(0))
        .await;
    let work = tmp();
    let full = work.path().join("full");
    std::fs::create_dir(&full).unwrap();
    git_ok(&full, &["init", "-q"]).await;
    git_ok(&full, &["remote", "add", "origin", &repo_url(&job)]).await;
    // Just above the smallest post buffer git allows (64 KiB), so the ~77 KB of wants go chunked.
    let mut args = vec!["-c", "http.postBuffer=65600", "fetch", "-q", "origin"];
    let specs = refspecs(&job);
    args.extend(specs.iter().map(String::as_str));
    git_ok(&full, &args).await;
    let tags = git_ok(&full, &["tag", "--list", "t/*"]).await;
    assert_eq!(tags.lines().count(), 1500);
    let branches = git_ok(&full, &["branch", "-r", "--list", "origin/b/*"]).await;
    assert_eq!(branches.lines().count(), 40);
    git_ok(
        &full,
        &[
            "checkout",
            "-f",
            "-q",
            job["git_info"]["sha"].as_str().unwrap(),
        ],
    )
    .await;
    for (name, sum) in &sums {
        let data = std::fs::read(full.join(name)).unwrap();
        assert_eq!(data.len(), 768 * 1024);
        assert_eq!(crc32fast::hash(&data), *sum, "{name} arrived intact");
    }

    // Forty wants: more than 1 KiB, so git gzips the request body.
    let some = work.path().join("some");
    std::fs::create_dir(&some).unwrap();
    git_ok(&some, &["init", "-q"]).await;
    git_ok(
        &some,
        &[
            "fetch",
            "-q",
            &repo_url(&job),
            "+refs/heads/b/*:refs/remotes/origin/b/*",
        ],
    )
    .await;
    assert_eq!(git_ok(&some, &["branch", "-r"]).await.lines().count(), 40);

    let posts = logged(&s.c, |r| r.endpoint == Endpoint::GitUploadPack);
    assert!(
        posts
            .iter()
            .any(|r| r.chunked && r.status == Some(200) && r.body_size > 64 * 1024),
        "a chunked request body was served: {posts:?}"
    );
    assert!(
        posts
            .iter()
            .any(|r| r.content_encoding.as_deref() == Some("gzip") && r.status == Some(200)),
        "a gzip request body was served: {posts:?}"
    );
}

// The backend's lifetime --------------------------------------------------------------------------

/// A pkt-line.
fn pkt(line: &str) -> String {
    format!("{:04x}{line}", line.len() + 4)
}

fn basic(token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("gitlab-ci-token:{token}"))
}

#[tokio::test]
async fn a_client_that_goes_away_mid_response_kills_the_backend() {
    let s = setup(Options::default()).await;
    let tree = tmp();
    // 16 MB of pack: more than loopback socket buffers (4 MB send buffer at most) can absorb, so
    // the backend is still writing when the client hangs up.
    for i in 0..16 {
        std::fs::write(tree.path().join(format!("f{i}")), noise(1024 * 1024, 7 + i)).unwrap();
    }
    let project =
        s.c.add_project(ProjectSpec::new("acme/big").dir(tree.path()))
            .unwrap();
    let job = s.run(JobSpec::script(["true"]).repository(&project)).await;
    let head = project.rev_parse("main").unwrap();

    // A protocol v0 stateless request for the whole history, sent by hand; the client reads the
    // response head and then hangs up while megabytes of pack are still to come.
    let body = format!("{}0000{}", pkt(&format!("want {head}\n")), pkt("done\n"));
    let request = format!(
        "POST /acme/big.git/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\n\
         Content-Type: application/x-git-upload-pack-request\r\nContent-Length: {}\r\n\r\n{body}",
        basic(&job_token(&job)),
        body.len()
    );
    let stream = tokio::net::TcpStream::connect(s.c.addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    write.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(read);
    let mut status = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut status))
        .await
        .unwrap()
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut first = [0u8; 64];
    tokio::time::timeout(WAIT, reader.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.c.git_backends(), 1, "the backend is still sending");
    drop(reader);
    drop(write);
    s.c.wait_for_git_backends(0, WAIT)
        .await
        .expect("the backend is killed once the client is gone");
}

#[tokio::test]
async fn a_stalled_request_is_cut_off_at_the_git_timeout() {
    let s = setup(Options::default().git_timeout(Duration::from_millis(500))).await;
    let project = s.c.add_project(ProjectSpec::new("acme/slow")).unwrap();
    counted(&project, 1);
    let job = s.run(JobSpec::script(["true"]).repository(&project)).await;

    // Announce a body and never send it: the backend waits for input until the deadline.
    let request = format!(
        "POST /acme/slow.git/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\n\
         Content-Type: application/x-git-upload-pack-request\r\nContent-Length: 1000\r\n\r\n",
        basic(&job_token(&job)),
    );
    let mut stream = tokio::net::TcpStream::connect(s.c.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    s.c.wait_for_git_backends(1, WAIT).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut status))
        .await
        .expect("answered at the deadline, not held forever")
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 504"), "{status}");
    s.c.wait_for_git_backends(0, WAIT).await.unwrap();
    let logged =
        s.c.requests()
            .into_iter()
            .find(|r| r.endpoint == Endpoint::GitUploadPack)
            .unwrap();
    assert_eq!(logged.status, Some(504));
}

// Fixtures, admin API, binary ------------------------------------------------------------------------

#[tokio::test]
async fn commit_builder_writes_modes_removals_tags_and_pushes() {
    let s = setup(Options::default()).await;
    let project = s.c.add_project(ProjectSpec::new("acme/fixture")).unwrap();
    let first = project
        .commit("main")
        .file("docs/a.md", "a")
        .file("docs/b.md", "b")
        .executable("bin/tool", "#!/bin/sh\n")
        .symlink("link", "docs/a.md")
        .message("First\n\nWith a body.")
        .author("Jane Doe", "jane@example.com")
        .create()
        .unwrap();
    let second = project
        .commit("main")
        .remove("docs")
        .file("new.txt", "n")
        .create()
        .unwrap();
    let tree = |rev: String| {
        let dir = project.git_dir().to_owned();
        async move { git_ok(&dir, &["ls-tree", "-r", &rev]).await }
    };
    let first_tree = tree(first.clone()).await;
    assert!(first_tree.contains("100755 blob") && first_tree.contains("\tbin/tool"));
    assert!(first_tree.contains("120000 blob") && first_tree.contains("\tlink"));
    let second_tree = tree(second.clone()).await;
    assert!(!second_tree.contains("docs/") && second_tree.contains("\tnew.txt"));
    assert_eq!(
        git_ok(project.git_dir(), &["rev-parse", &format!("{second}^")]).await,
        first
    );

    project.branch("feature", &first).unwrap();
    assert_eq!(
        project.annotated_tag("v2", "main", "Release 2").unwrap(),
        second
    );
    let refs = project.refs().unwrap();
    assert_eq!(refs.get("refs/heads/feature"), Some(&first));
    assert_ne!(
        refs.get("refs/tags/v2"),
        Some(&second),
        "an annotated tag object"
    );
    assert_eq!(project.rev_parse("v2").unwrap(), second);

    // A push from a local repository with its own history.
    let local = tmp();
    git_ok(local.path(), &["init", "-q", "-b", "topic"]).await;
    std::fs::write(local.path().join("x"), "x").unwrap();
    git_ok(local.path(), &["add", "x"]).await;
    commit(local.path(), "local").await;
    let local_head = git_ok(local.path(), &["rev-parse", "HEAD"]).await;
    project.push_from(local.path(), &["topic"]).unwrap();
    assert_eq!(project.rev_parse("topic").unwrap(), local_head);

    // The job sees the real commit's message and author.
    let job = s
        .run(JobSpec::script(["true"]).repository(&project).sha(&first))
        .await;
    assert_eq!(
        variable(&job, "CI_COMMIT_MESSAGE").as_deref(),
        Some("First\n\nWith a body.\n")
    );
    assert_eq!(variable(&job, "CI_COMMIT_TITLE").as_deref(), Some("First"));
    assert_eq!(
        variable(&job, "CI_COMMIT_DESCRIPTION").as_deref(),
        Some("With a body.")
    );
    assert_eq!(
        variable(&job, "CI_COMMIT_AUTHOR").as_deref(),
        Some("Jane Doe <jane@example.com>")
    );

    // Refusals say what to do.
    for (result, needle) in [
        (
            s.c.add_project(ProjectSpec::new("demo")).map(|_| ()),
            "group/project",
        ),
        (
            s.c.add_project(ProjectSpec::new("acme/fixture"))
                .map(|_| ()),
            "already exists",
        ),
        (
            project
                .commit("main")
                .file("../escape", "x")
                .create()
                .map(|_| ()),
            "relative path",
        ),
        (
            project.rev_parse("no-such-branch").map(|_| ()),
            "does not exist",
        ),
    ] {
        let err: ProjectError = result.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(needle) && text.contains("fix:"), "{text}");
    }
}

#[tokio::test]
async fn admin_api_creates_projects_commits_and_jobs() {
    let s = setup(Options::default()).await;
    let admin = |path: &str| format!("{}/-/admin/{path}", s.c.url());
    let r = s
        .http
        .post(admin("projects"))
        .json(&json!({"path": "acme/web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["url"], format!("{}/acme/web.git", s.c.url()));
    assert_eq!(created["head"], Value::Null);
    let r = s
        .http
        .post(admin("projects"))
        .json(&json!({"path": "acme/web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let r = s
        .http
        .post(admin("projects/commits"))
        .json(&json!({"project": "acme/web", "files": {"index.html": "<h1>hi</h1>"}, "message": "Site"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let sha = r.json::<Value>().await.unwrap()["sha"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .http
        .post(admin("projects/tags"))
        .json(&json!({"project": "acme/web", "name": "v1", "target": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["sha"], sha.as_str());
    let listed: Value = s
        .http
        .get(admin("projects"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["path"], "acme/web");

    let r = s
        .http
        .post(admin("jobs"))
        .json(&json!({"project": "acme/web", "sha": "", "script": ["true"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job = take_job(&s.http, &s.c, &s.runner_token, ALL).await;
    assert_eq!(job["git_info"]["sha"], sha.as_str());
    let work = tmp();
    git_ok(work.path(), &["clone", "-q", &repo_url(&job), "web"]).await;
    assert_eq!(
        std::fs::read_to_string(work.path().join("web/index.html")).unwrap(),
        "<h1>hi</h1>"
    );
}

#[tokio::test]
async fn binary_serves_a_project_directory() {
    let tree = fixture_tree();
    let mut args = [
        "--listen",
        "127.0.0.1:0",
        "--runner-token",
        "glrt-t1_binarygittoken00000",
        "--long-poll",
        "0",
        "--project",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("acme/demo={}", tree.path().display()));
    // URL, admin URL, runner token, project.
    let (mut child, lines) = start_binary(&args, 4).await;
    let (mut url, mut project_line) = (None, None);
    for line in lines {
        if let Some(u) = line.strip_prefix("glrunner-coordinator listening on ") {
            url = Some(u.to_owned());
        }
        if line.starts_with("project acme/demo: ") {
            project_line = Some(line);
        }
    }
    let url = url.expect("URL printed");
    let project_line = project_line.expect("project printed");
    assert!(
        project_line.contains(&format!("{url}/acme/demo.git")),
        "{project_line}"
    );

    let http = http();
    let r = http
        .post(format!("{url}/-/admin/jobs"))
        .json(&json!({"project": "acme/demo", "sha": "", "script": ["true"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{url}/api/v4/jobs/request"))
        .json(&json!({"token": "glrt-t1_binarygittoken00000", "info": info(ALL)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    let work = tmp();
    git_ok(work.path(), &["clone", "-q", &repo_url(&job), "demo"]).await;
    assert!(
        project_line.contains(job["git_info"]["sha"].as_str().unwrap()),
        "{project_line}"
    );
    assert!(work.path().join("demo/src/main.rs").exists());

    child.start_kill().unwrap();
    tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn repositories_are_removed_with_the_coordinator() {
    let c = start(Options::default()).await;
    let project = c.add_project(ProjectSpec::new("acme/gone")).unwrap();
    let dir: PathBuf = project.git_dir().to_owned();
    assert!(dir.join("HEAD").exists());
    drop(c);
    assert!(
        !dir.exists(),
        "the temporary repositories went with the coordinator"
    );
    assert!(project.rev_parse("main").is_err());
}
