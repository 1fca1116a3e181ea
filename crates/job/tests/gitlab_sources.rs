//! get_sources against the GitLab test coordinator: real git over smart HTTP authenticated with the job
//! token, as on GitLab. Submodules (normal, recursive, depth, paths, update flags, HTTPS rewrites), a
//! refused token, a shallow fetch deepened by the next job, `clone_url`, and GitLab's CA over HTTPS. The
//! token must reach git and nothing else: not `.git/config`, not a submodule's config, not
//! `.gitmodules`, not the trace.

mod common;

use common::gitlab::{GitLab, TestCa};
use common::*;
use glrunner_coordinator::{JobSpec, Project, ProjectSpec};
use glrunner_job::JobOutcome;
use glrunner_protocol::{FailureReason, JobResponse, Secret};
use std::path::Path;

/// Every git config file under `dir` (the repository's and each submodule's), with its content.
fn git_configs(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join(".git")];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        seen += 1;
        assert!(seen < 10_000, "runaway walk under {}", dir.display());
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "config") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.push((path.display().to_string(), text));
            }
        }
    }
    out
}

/// The token appears nowhere on disk git keeps, nor in the trace.
fn assert_token_nowhere(job: &JobResponse, project: &Path, trace: &str) {
    let token = job.token.expose();
    let token_tail = &token[token.len() - 12..];
    let configs = git_configs(project);
    assert!(!configs.is_empty());
    for (path, text) in &configs {
        assert!(
            !text.contains(token_tail),
            "{path} holds the token:\n{text}"
        );
        assert!(
            !text.contains("helper"),
            "{path} keeps a credential helper:\n{text}"
        );
    }
    if let Ok(modules) = std::fs::read_to_string(project.join(".gitmodules")) {
        assert!(!modules.contains(token_tail), ".gitmodules:\n{modules}");
    }
    assert!(
        !trace.contains(token_tail),
        "the trace shows the token:\n{trace}"
    );
}

fn spec(project: &Project, script: &[&str]) -> JobSpec {
    JobSpec::script(script.iter().copied())
        .repository(project)
        .depth(0)
}

/// Take a job for `spec` and run it in `dir` with the usual context: its payload, outcome and trace.
async fn take_and_run(gl: &GitLab, spec: JobSpec, dir: &Path) -> (JobResponse, JobOutcome, String) {
    let job = gl.take(spec).await;
    let (outcome, trace) = run(job.clone(), ctx(dir)).await;
    (job, outcome, trace)
}

/// A project that lets acme/demo's job token fetch it, as submodules of demo need.
fn open_to_demo(gl: &GitLab, path: &str) -> Project {
    gl.c.add_project(ProjectSpec::new(path).allow_job_tokens_from("acme/demo"))
        .unwrap()
}

/// demo → libs/lib (relative URL) → deep (absolute URL of acme/nested); both allow demo's job token.
async fn projects_with_submodules(gl: &GitLab) -> (Project, Project, Project) {
    let nested = open_to_demo(gl, "acme/nested");
    let nested_sha = nested
        .commit("main")
        .file("nested.txt", "nested\n")
        .create()
        .unwrap();
    let lib = open_to_demo(gl, "acme/lib");
    let lib_sha = lib
        .commit("main")
        .file("lib.txt", "lib\n")
        .submodule("deep", &nested, &nested_sha)
        .create()
        .unwrap();
    let demo = gl.c.add_project(ProjectSpec::new("acme/demo")).unwrap();
    demo.commit("main")
        .file("README.md", "demo\n")
        .submodule_url("libs/lib", "../lib.git", &lib_sha)
        .create()
        .unwrap();
    (demo, lib, nested)
}

#[tokio::test]
async fn submodules_normal_then_recursive_with_the_job_token_and_nothing_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let gl = GitLab::start().await;
    let (demo, _, _) = projects_with_submodules(&gl).await;
    let project = project_dir(dir.path());
    let script = [
        "cat libs/lib/lib.txt",
        "ls -A libs/lib/deep | wc -l | sed 's/^/deep entries=/'",
        "git -C libs/lib fetch origin",
        "git fetch origin",
        "echo fetched-in-script",
    ];

    let (job, outcome, trace) = take_and_run(
        &gl,
        spec(&demo, &script).var("GIT_SUBMODULE_STRATEGY", "normal"),
        dir.path(),
    )
    .await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("Updating/initializing submodules..."),
        "{trace}"
    );
    assert!(trace.contains("Updated submodules"), "{trace}");
    assert!(trace.contains("\nlib\n"), "{trace}");
    assert!(
        trace.contains("deep entries=0\n"),
        "normal does not recurse:\n{trace}"
    );
    assert!(
        trace.contains("fetched-in-script\n"),
        "git in the job's script authenticates like get_sources:\n{trace}"
    );
    assert_token_nowhere(&job, &project, &trace);

    let (job, outcome, trace) = take_and_run(
        &gl,
        spec(&demo, &["cat libs/lib/deep/nested.txt"]).var("GIT_SUBMODULE_STRATEGY", "recursive"),
        dir.path(),
    )
    .await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("Updating/initializing submodules recursively..."),
        "{trace}"
    );
    assert!(trace.contains("\nnested\n"), "{trace}");
    assert_token_nowhere(&job, &project, &trace);
    assert!(
        !project
            .with_extension("tmp")
            .join(".glrunner-git.conf")
            .exists(),
        "cleanup removed the credential helper's config"
    );
}

#[tokio::test]
async fn submodule_depth_paths_and_update_flags() {
    let dir = tempfile::tempdir().unwrap();
    let gl = GitLab::start().await;
    let lib = open_to_demo(&gl, "acme/lib");
    let mut lib_shas = Vec::new();
    for i in 1..=3 {
        lib_shas.push(
            lib.commit("main")
                .file("lib.txt", format!("v{i}\n"))
                .create()
                .unwrap(),
        );
    }
    let other = open_to_demo(&gl, "acme/other");
    let other_sha = other.commit("main").file("o.txt", "o\n").create().unwrap();
    let demo = gl.c.add_project(ProjectSpec::new("acme/demo")).unwrap();
    demo.commit("main")
        .file("README.md", "demo\n")
        .submodule("libs/lib", &lib, &lib_shas[1])
        .submodule("libs/other", &other, &other_sha)
        .create()
        .unwrap();
    let script = [
        "cat libs/lib/lib.txt",
        "echo \"lib commits=$(git -C libs/lib rev-list --count HEAD)\"",
        "ls -A libs/other | wc -l | sed 's/^/other entries=/'",
    ];

    let (_, outcome, trace) = take_and_run(
        &gl,
        spec(&demo, &script)
            .var("GIT_SUBMODULE_STRATEGY", "normal")
            .var("GIT_SUBMODULE_DEPTH", "1")
            .var("GIT_SUBMODULE_PATHS", "libs/lib"),
        dir.path(),
    )
    .await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("Updating/initializing submodules with git depth set to 1..."),
        "{trace}"
    );
    assert!(trace.contains("\nv2\n"), "the pinned commit:\n{trace}");
    assert!(trace.contains("lib commits=1\n"), "depth 1:\n{trace}");
    assert!(
        trace.contains("other entries=0\n"),
        "GIT_SUBMODULE_PATHS left it out:\n{trace}"
    );

    let (_, outcome, trace) = take_and_run(
        &gl,
        spec(&demo, &script)
            .var("GIT_STRATEGY", "clone")
            .var("GIT_SUBMODULE_STRATEGY", "normal")
            .var("GIT_SUBMODULE_UPDATE_FLAGS", "--remote"),
        dir.path(),
    )
    .await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("\nv3\n"),
        "--remote takes the branch tip:\n{trace}"
    );
    assert!(trace.contains("lib commits=3\n"), "{trace}");
    assert!(
        trace.contains("other entries=2\n"),
        "o.txt and .git:\n{trace}"
    );

    let (_, outcome, trace) = take_and_run(
        &gl,
        spec(&demo, &script)
            .var("GIT_SUBMODULE_STRATEGY", "normal")
            .var("GIT_SUBMODULE_UPDATE_FLAGS", "--no-such-flag"),
        dir.path(),
    )
    .await;
    assert!(
        matches!(outcome, JobOutcome::Failed { reason: FailureReason::ScriptFailure, exit_code: Some(c) } if c != 0),
        "{outcome:?}\n{trace}"
    );
    assert!(
        trace.contains("Updating submodules failed. Retrying..."),
        "{trace}"
    );
    assert!(
        trace.contains("ERROR: updating the submodules failed"),
        "{trace}"
    );
}

#[tokio::test]
async fn ssh_submodule_urls_are_fetched_over_https_when_forced() {
    let dir = tempfile::tempdir().unwrap();
    let gl = GitLab::start().await;
    let lib = open_to_demo(&gl, "acme/lib");
    let lib_sha = lib
        .commit("main")
        .file("lib.txt", "lib\n")
        .create()
        .unwrap();
    let demo = gl.c.add_project(ProjectSpec::new("acme/demo")).unwrap();
    demo.commit("main")
        .file("README.md", "demo\n")
        .submodule_url("lib", "git@127.0.0.1:acme/lib.git", &lib_sha)
        .create()
        .unwrap();
    // ssh must never be tried for real: it would fail at once.
    let base = spec(&demo, &["cat lib/lib.txt"])
        .var("GIT_SUBMODULE_STRATEGY", "normal")
        .var("GIT_SSH_COMMAND", "false");

    let (job, outcome, trace) = take_and_run(
        &gl,
        base.clone().var("GIT_SUBMODULE_FORCE_HTTPS", "true"),
        dir.path(),
    )
    .await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("\nlib\n"), "{trace}");
    assert_token_nowhere(&job, &project_dir(dir.path()), &trace);

    let (_, outcome, trace) =
        take_and_run(&gl, base.var("GIT_STRATEGY", "clone"), dir.path()).await;
    assert!(
        matches!(outcome, JobOutcome::Failed { .. }),
        "without the rewrite git tries ssh:\n{trace}"
    );
}

#[tokio::test]
async fn a_refused_token_fails_clearly_and_stays_secret() {
    let dir = tempfile::tempdir().unwrap();
    let gl = GitLab::start().await;
    let demo = gl.c.add_project(ProjectSpec::new("acme/demo")).unwrap();
    demo.commit("main")
        .file("README.md", "demo\n")
        .create()
        .unwrap();
    let secret = gl.c.add_project(ProjectSpec::new("acme/secret")).unwrap();
    let secret_sha = secret.commit("main").file("s.txt", "s\n").create().unwrap();

    let mut job = gl.take(spec(&demo, &["echo never"])).await;
    let wrong = "glcbt-64_notthejobtoken00000";
    job.git_info.repo_url = Secret::new(demo.url_with_job_token(wrong));
    let (outcome, trace) = run(job, ctx(dir.path())).await;
    assert!(
        matches!(outcome, JobOutcome::Failed { reason: FailureReason::ScriptFailure, exit_code: Some(c) } if c != 0),
        "{outcome:?}\n{trace}"
    );
    assert!(
        trace.contains("Authentication failed"),
        "git says why:\n{trace}"
    );
    assert!(
        trace.contains("ERROR: fetching the repository failed"),
        "glrunner says what to do:\n{trace}"
    );
    assert!(!trace.contains("notthejobtoken"), "{trace}");
    assert!(!trace.contains("echo never"), "{trace}");

    // A submodule in a project that does not allow this job's token.
    demo.commit("main")
        .submodule("secret", &secret, &secret_sha)
        .create()
        .unwrap();
    let (job, outcome, trace) = take_and_run(
        &gl,
        spec(&demo, &["echo never"]).var("GIT_SUBMODULE_STRATEGY", "normal"),
        dir.path(),
    )
    .await;
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{trace}");
    assert!(
        trace.contains("ERROR: updating the submodules failed"),
        "{trace}"
    );
    assert!(trace.contains("job token"), "{trace}");
    assert!(!trace.contains(&job.token.expose()[8..]), "{trace}");
}

#[tokio::test]
async fn a_shallow_checkout_is_deepened_by_the_next_job() {
    let dir = tempfile::tempdir().unwrap();
    let gl = GitLab::start().await;
    let demo = gl.c.add_project(ProjectSpec::new("acme/demo")).unwrap();
    for i in 1..=4 {
        demo.commit("main")
            .file("v.txt", format!("v{i}\n"))
            .create()
            .unwrap();
    }
    let script = ["echo \"count=$(git rev-list --count HEAD)\""];
    let (_, outcome, trace) = take_and_run(&gl, spec(&demo, &script).depth(1), dir.path()).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("Fetching changes with git depth set to 1..."));
    assert!(trace.contains("count=1\n"), "{trace}");

    let (_, outcome, trace) = take_and_run(&gl, spec(&demo, &script).depth(3), dir.path()).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        !trace.contains("Created fresh repository."),
        "reused:\n{trace}"
    );
    assert!(trace.contains("count=3\n"), "{trace}");

    let (_, outcome, trace) = take_and_run(&gl, spec(&demo, &script), dir.path()).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("count=4\n"), "depth 0 unshallows:\n{trace}");
}

#[tokio::test]
async fn clone_url_replaces_the_host_gitlab_sent() {
    let dir = tempfile::tempdir().unwrap();
    let gl = GitLab::start().await;
    let demo = gl.c.add_project(ProjectSpec::new("acme/demo")).unwrap();
    demo.commit("main")
        .file("README.md", "via clone_url\n")
        .create()
        .unwrap();
    let mut job = gl.take(spec(&demo, &["cat README.md"])).await;
    // The host GitLab names is not reachable from here; clone_url is.
    job.git_info.repo_url = Secret::new(
        job.git_info
            .repo_url
            .expose()
            .replace("127.0.0.1", "gitlab.invalid"),
    );
    let mut c = ctx(dir.path());
    c.clone_url = Some(gl.c.url().to_owned());
    let (outcome, trace) = run(job.clone(), c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("via clone_url"), "{trace}");
    assert_token_nowhere(&job, &project_dir(dir.path()), &trace);

    let (outcome, trace) = run(job, ctx(dir.path())).await;
    assert!(
        matches!(outcome, JobOutcome::Failed { .. }),
        "without clone_url the payload's host is used:\n{trace}"
    );
}

#[tokio::test]
async fn git_trusts_gitlabs_ca_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let gl = GitLab::start().await;
    let demo = gl.c.add_project(ProjectSpec::new("acme/demo")).unwrap();
    demo.commit("main")
        .file("README.md", "over https\n")
        .create()
        .unwrap();
    let ca = TestCa::new();
    let front = ca.front(gl.c.addr()).await;
    let ca_file = dir.path().join("gitlab-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();

    let https = |job: &mut JobResponse| {
        let url = job
            .git_info
            .repo_url
            .expose()
            .replace("http://gitlab-ci-token:", "https://gitlab-ci-token:")
            .replace(&gl.c.addr().to_string(), &front.to_string());
        job.git_info.repo_url = Secret::new(url);
    };
    // This machine's own CA setting would override the job's.
    let shell = || shell().with_env_removed(["GIT_SSL_CAINFO", "GIT_SSL_CAPATH"]);
    let mut job = gl.take(spec(&demo, &["cat README.md"])).await;
    https(&mut job);
    let mut c = ctx(dir.path());
    c.tls_ca_file = Some(ca_file.clone());
    let (outcome, trace) = start(job, c, shell()).outcome().await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("over https"), "{trace}");

    let mut job = gl
        .take(spec(&demo, &["cat README.md"]).var("GIT_STRATEGY", "clone"))
        .await;
    https(&mut job);
    let (outcome, trace) = start(job, ctx(dir.path()), shell()).outcome().await;
    assert!(
        matches!(outcome, JobOutcome::Failed { .. }),
        "without the CA git refuses the certificate:\n{trace}"
    );
    assert!(trace.contains("certificate"), "{trace}");
}
