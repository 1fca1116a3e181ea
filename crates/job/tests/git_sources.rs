//! get_sources against real repositories: a bare repo over `file://`, and one served by
//! `git http-backend` behind HTTP basic auth on 127.0.0.1 to prove the job token reaches git without
//! landing in `.git/config` or the trace.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::*;
use glrunner_job::JobOutcome;
use glrunner_protocol::{GitInfo, Hook, JobResponse, RefType};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;

/// A bare repository `origin.git` in `dir` with three commits on `main`; returns their shas, oldest first.
fn make_repo(dir: &Path) -> Vec<String> {
    sh(
        dir,
        "git init -q --bare -b main origin.git && git init -q -b main work && cd work && \
         for i in 1 2 3; do echo v$i > file.txt && git add file.txt && git commit -q -m c$i; done && \
         git push -q ../origin.git main",
    );
    sh(dir, "cd work && git rev-list --reverse main")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn git_job(url: &str, sha: &str, depth: u32) -> JobResponse {
    let mut j = job(&[
        "echo \"head=$(git rev-parse HEAD)\"",
        "echo \"count=$(git rev-list --count HEAD)\"",
        "cat file.txt",
    ]);
    j.variables.retain(|v| v.key != "GIT_STRATEGY");
    j.git_info = GitInfo {
        repo_url: url.into(),
        r#ref: "main".into(),
        sha: sha.into(),
        before_sha: "0000000000000000000000000000000000000000".into(),
        ref_type: RefType::Branch,
        refspecs: vec!["+refs/heads/main:refs/remotes/origin/main".into()],
        depth,
        ..GitInfo::default()
    };
    j
}

#[tokio::test]
async fn shallow_fetch_at_a_sha_then_a_deeper_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let shas = make_repo(dir.path());
    let url = format!("file://{}/origin.git", dir.path().display());
    let project = project_dir(dir.path());

    let (outcome, trace) = run(git_job(&url, &shas[2], 1), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("Fetching changes with git depth set to 1..."),
        "{trace}"
    );
    assert!(trace.contains("Created fresh repository."), "{trace}");
    assert!(
        trace.contains(&format!(
            "Checking out {} as detached HEAD (ref is main)...",
            &shas[2][..8]
        )),
        "{trace}"
    );
    assert!(trace.contains("Skipping Git submodules setup"), "{trace}");
    assert!(trace.contains(&format!("head={}\n", shas[2])), "{trace}");
    assert!(
        trace.contains("count=1\n"),
        "depth 1 gives one commit:\n{trace}"
    );
    assert!(trace.contains("\nv3\n"), "{trace}");
    assert!(project.join(".git/shallow").exists());

    // The same project dir again (GIT_STRATEGY fetch): a full fetch unshallows, an older sha checks out.
    let (outcome, trace) = run(git_job(&url, &shas[1], 0), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("Fetching changes...\x1b"), "{trace}");
    assert!(
        !trace.contains("Created fresh repository."),
        "the repository is reused:\n{trace}"
    );
    assert!(trace.contains(&format!("head={}\n", shas[1])), "{trace}");
    assert!(trace.contains("count=2\n"), "{trace}");
    assert!(trace.contains("\nv2\n"), "{trace}");
    assert!(!project.join(".git/shallow").exists(), "unshallowed");
}

#[tokio::test]
async fn clone_strategy_starts_from_scratch_and_clean_removes_untracked_files() {
    let dir = tempfile::tempdir().unwrap();
    let shas = make_repo(dir.path());
    let url = format!("file://{}/origin.git", dir.path().display());
    let project = project_dir(dir.path());
    let (outcome, trace) = run(git_job(&url, &shas[2], 0), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    std::fs::write(project.join("untracked.txt"), "x").unwrap();

    let clone = with_var(git_job(&url, &shas[2], 0), "GIT_STRATEGY", "clone");
    let (outcome, trace) = run(clone, ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("Created fresh repository."), "{trace}");
    assert!(!project.join("untracked.txt").exists());

    std::fs::write(project.join("untracked.txt"), "x").unwrap();
    let (outcome, trace) = run(git_job(&url, &shas[2], 0), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        !project.join("untracked.txt").exists(),
        "git clean -ffdx ran"
    );

    let mut empty = with_var(git_job(&url, &shas[2], 0), "GIT_STRATEGY", "empty");
    empty.steps[0].script = vec!["ls -A | wc -l".into()];
    let (outcome, trace) = run(empty, ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("Skipping Git repository setup and creating an empty build directory"));
    assert!(
        trace.contains("\n0\n"),
        "the project dir is empty:\n{trace}"
    );
}

#[tokio::test]
async fn get_sources_hooks_run_in_order_and_checkout_can_be_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let shas = make_repo(dir.path());
    let url = format!("file://{}/origin.git", dir.path().display());
    let mut c = ctx(dir.path());
    c.pre_get_sources_script = Some("echo config-pre".into());
    c.post_get_sources_script = Some("echo config-post".into());
    let mut j = with_var(git_job(&url, &shas[2], 0), "GIT_CHECKOUT", "false");
    j.steps[0].script = vec!["ls -A".into()];
    j.hooks = vec![
        Hook {
            name: "pre_get_sources_script".into(),
            script: vec!["echo job-pre".into()],
        },
        Hook {
            name: "post_get_sources_script".into(),
            script: vec!["echo job-post".into()],
        },
    ];
    let (outcome, trace) = run(j, c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let order: Vec<&str> = trace
        .lines()
        .filter(|l| l.ends_with("-pre") || l.ends_with("-post"))
        .filter(|l| !l.contains('$'))
        .collect();
    assert_eq!(
        order,
        ["config-pre", "job-pre", "job-post", "config-post"],
        "{trace}"
    );
    assert!(trace.contains("Skipping Git checkout"), "{trace}");
    assert!(
        !trace.contains("file.txt"),
        "nothing was checked out:\n{trace}"
    );
}

#[tokio::test]
async fn failed_fetch_is_retried_then_fails_the_job_with_gits_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/missing.git", dir.path().display());
    let j = with_var(
        git_job(&url, "0123456789abcdef", 0),
        "GET_SOURCES_ATTEMPTS",
        "2",
    );
    let j = with_var(j, "FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", "false");
    let (outcome, trace) = run(j, ctx(dir.path())).await;
    assert!(
        matches!(outcome, JobOutcome::Failed { exit_code: Some(c), .. } if c != 0),
        "{outcome:?}\n{trace}"
    );
    assert_eq!(
        trace.matches("Getting source from Git repository").count(),
        2,
        "two attempts:\n{trace}"
    );
    assert!(
        !trace.contains("Executing \"step_script\""),
        "user steps never ran:\n{trace}"
    );
}

/// A smart-HTTP git server: `git http-backend` as CGI behind basic auth for `gitlab-ci-token:<token>`.
struct GitServer {
    root: PathBuf,
    expected_auth: String,
    authorized: AtomicUsize,
    refused: AtomicUsize,
}

fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn git_backend(
    State(srv): State<Arc<GitServer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(srv.expected_auth.as_str()) {
        srv.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
            "",
        )
            .into_response();
    }
    srv.authorized.fetch_add(1, Ordering::SeqCst);
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &srv.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header_str(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header_str(header::CONTENT_ENCODING),
        )
        .env(
            "GIT_PROTOCOL",
            headers
                .get("git-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
        .env("REMOTE_USER", "gitlab-ci-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        });
    }
    let Ok(out) = child.wait_with_output().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let raw = out.stdout;
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in String::from_utf8_lossy(&raw[..split]).lines() {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("status") {
                let code = value.split_whitespace().next().and_then(|c| c.parse().ok());
                status = code
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
            } else {
                builder = builder.header(name.trim(), value);
            }
        }
    }
    builder
        .status(status)
        .body(axum::body::Body::from(raw[split + 4..].to_vec()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

#[tokio::test]
async fn job_token_reaches_git_but_not_git_config_or_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let shas = make_repo(dir.path());
    let srv = Arc::new(GitServer {
        root: dir.path().to_path_buf(),
        expected_auth: format!(
            "Basic {}",
            base64(format!("gitlab-ci-token:{JOB_TOKEN}").as_bytes())
        ),
        authorized: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(git_backend)
        .with_state(srv.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = tokio::time::timeout(LIMIT, stopped).await;
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });

    let url = format!(
        "http://gitlab-ci-token:{JOB_TOKEN}@127.0.0.1:{}/origin.git",
        addr.port()
    );
    let mut j = git_job(&url, &shas[2], 2);
    j.steps[0]
        .script
        .push("git config --list --show-origin".into());
    let (outcome, trace) = run(j, ctx(dir.path())).await;
    let _ = stop.send(());
    let _ = server.await;

    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains(&format!("head={}\n", shas[2])), "{trace}");
    assert!(trace.contains("count=2\n"), "{trace}");
    assert!(
        srv.refused.load(Ordering::SeqCst) >= 1,
        "git first asked without credentials"
    );
    assert!(
        srv.authorized.load(Ordering::SeqCst) >= 1,
        "the credential helper answered with the token"
    );

    let config = std::fs::read_to_string(project_dir(dir.path()).join(".git/config")).unwrap();
    assert!(
        !config.contains(JOB_TOKEN),
        ".git/config holds the token:\n{config}"
    );
    assert!(
        !config.contains("helper"),
        "no credential helper stays behind:\n{config}"
    );
    assert!(
        config.contains(&format!(
            "url = http://127.0.0.1:{}/origin.git",
            addr.port()
        )),
        "{config}"
    );
    assert!(
        !trace.contains(JOB_TOKEN),
        "the trace shows the token:\n{trace}"
    );
    assert!(!trace.contains("64_testjobtoken"), "{trace}");
}

#[tokio::test]
async fn clear_worktree_runs_before_the_second_get_sources_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let shas = make_repo(dir.path());
    let url = format!("file://{}/origin.git", dir.path().display());
    let project = project_dir(dir.path());
    let (outcome, trace) = run(git_job(&url, &shas[2], 0), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    std::fs::write(project.join("untracked.txt"), "left over").unwrap();

    // The first attempt of get_sources fails once (a marker in the builds dir remembers it).
    let mut c = ctx(dir.path());
    c.pre_get_sources_script = Some(
        "if [ ! -e attempt-marker ]; then touch attempt-marker; echo first attempt fails; exit 1; fi"
            .into(),
    );
    let make_job = || {
        let j = with_var(git_job(&url, &shas[2], 0), "GIT_CLEAN_FLAGS", "none");
        with_var(j, "FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", "false")
    };
    let (outcome, trace) = run(make_job(), c.clone()).await;
    assert!(
        matches!(
            outcome,
            JobOutcome::Failed {
                exit_code: Some(1),
                ..
            }
        ),
        "one attempt, no clean-up: {outcome:?}\n{trace}"
    );
    assert!(!trace.contains("Deleting tracked"), "{trace}");
    assert!(project.join("untracked.txt").exists());

    std::fs::remove_file(dir.path().join("builds/attempt-marker")).unwrap();
    let (outcome, trace) = run(with_var(make_job(), "GET_SOURCES_ATTEMPTS", "2"), c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert_eq!(
        sections(&trace)[2..5],
        ["get_sources", "clear_worktree", "get_sources"],
        "{trace}"
    );
    assert!(
        trace.contains("Deleting all tracked and untracked files due to source fetch failure"),
        "{trace}"
    );
    assert!(trace.contains("Deleting tracked and untracked files..."));
    assert!(
        !project.join("untracked.txt").exists(),
        "clear_worktree removed what GIT_CLEAN_FLAGS=none keeps"
    );
    assert!(trace.contains("\nv3\n"), "checked out again:\n{trace}");
}

#[tokio::test]
async fn clean_and_fetch_flags_reach_git() {
    let dir = tempfile::tempdir().unwrap();
    let shas = make_repo(dir.path());
    let url = format!("file://{}/origin.git", dir.path().display());
    let project = project_dir(dir.path());
    let (outcome, trace) = run(git_job(&url, &shas[2], 0), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    std::fs::write(project.join("keep.txt"), "x").unwrap();

    let j = with_var(git_job(&url, &shas[2], 0), "GIT_CLEAN_FLAGS", "none");
    let j = with_var(j, "GIT_FETCH_EXTRA_FLAGS", "--no-tags --quiet");
    let (outcome, trace) = run(j, ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(project.join("keep.txt").exists(), "no git clean");

    let j = with_var(
        git_job(&url, &shas[2], 0),
        "GIT_FETCH_EXTRA_FLAGS",
        "--no-such-flag",
    );
    let (outcome, trace) = run(j, ctx(dir.path())).await;
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{trace}");
    assert!(
        trace.contains("unknown option `no-such-flag'"),
        "git names the flag:\n{trace}"
    );
}
