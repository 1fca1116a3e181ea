//! The cache and artifact stages carried out by the shell executor itself (helper started directly)
//! against the same stages run as their bash scripts: the same trace, helper calls (arguments, token,
//! directory, environment), exit codes and files, for success, helper failures, fallback keys with
//! `FF_CLEAN_UP_FAILED_CACHE_EXTRACT`, a missing helper, `GITLAB_ENV` and file variables; and a
//! canceled job stops a running helper.

mod common;

use common::*;
use glrunner_job::JobOutcome;
use glrunner_protocol::{Artifact, Cache, JobResponse, JobVariable, STEP_SCRIPT, When};
use std::path::Path;
use std::time::Duration;

/// A job using every cache and artifact stage: a file variable, a value set through `GITLAB_ENV` in
/// its script, a cache with a fallback key and downloads and uploads through GitLab.
fn full_job() -> JobResponse {
    let mut j = job(&[
        "mkdir -p out vendor",
        "echo built > out/app",
        "echo FROM_STEP=from-step >> \"$GITLAB_ENV\"",
        "echo '  DEPS_DIR=vendor  ' >> \"$GITLAB_ENV\"",
    ]);
    j.job_info.name = "build".into();
    j.git_info.r#ref = "main".into();
    j.variables.push(JobVariable {
        file: true,
        ..JobVariable::new("SETTINGS_FILE", "key: 'v' $x \\ `id`")
    });
    j.variables
        .push(JobVariable::new("FF_CLEAN_UP_FAILED_CACHE_EXTRACT", "true"));
    j.cache = vec![Cache {
        key: "deps-$CI_JOB_ID".into(),
        untracked: false,
        policy: "pull-push".into(),
        paths: vec!["vendor/".into()],
        when: When::OnSuccess,
        fallback_keys: vec!["deps-main".into()],
    }];
    j.dependencies = vec![compile_dependency()];
    j.artifacts = Some(vec![Artifact {
        name: "artifacts".into(),
        untracked: None,
        paths: vec!["out/".into()],
        exclude: Vec::new(),
        when: When::Always,
        expire_in: "1 week".into(),
        artifact_type: "archive".into(),
        artifact_format: "zip".into(),
    }]);
    j
}

/// What one run left behind, with the temp dir's path replaced by `<DIR>`.
#[derive(Debug, PartialEq)]
struct Observed {
    outcome: JobOutcome,
    trace: String,
    calls: Vec<String>,
    env: Vec<String>,
    files: Vec<String>,
}

/// Every file below `root` with its content.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(path);
            } else {
                out.push(format!(
                    "{rel} {:?}",
                    std::fs::read_to_string(&path).unwrap_or_default()
                ));
            }
        }
    }
    out.sort();
    out
}

/// Run `job` with the cache and artifact stages carried out (`stage_ops`) or as scripts, after
/// `setup` prepared the helper and the directory.
async fn observe(
    stage_ops: bool,
    job: JobResponse,
    helper_exists: bool,
    setup: impl Fn(&Path, &FakeHelper),
) -> Observed {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    setup(dir.path(), &helper);
    let mut ctx = helper_ctx(dir.path(), &helper);
    if !helper_exists {
        ctx.helper_path = Some(dir.path().join("nowhere/glrunner"));
    }
    let executor = shell().with_stage_ops(stage_ops).with_env_removed(["HOME"]);
    let (outcome, trace) = start(job, ctx, executor).outcome().await;
    let d = dir.path().display().to_string();
    let hide = |s: &str| s.replace(&d, "<DIR>");
    let mut files = files(&dir.path().join("builds"));
    files.extend(files_of(&dir.path().join("cache")));
    Observed {
        outcome,
        trace: hide(&normalise(&trace)),
        calls: helper.calls().iter().map(|c| hide(c)).collect(),
        env: helper.env_log().iter().map(|c| hide(c)).collect(),
        files: files.iter().map(|c| hide(c)).collect(),
    }
}

fn files_of(root: &Path) -> Vec<String> {
    files(root)
        .into_iter()
        .map(|f| format!("cache:{f}"))
        .collect()
}

/// Both forms observed; they must agree, and the carried-out one is returned for checks of its own.
async fn both(
    job: impl Fn() -> JobResponse,
    helper_exists: bool,
    setup: impl Fn(&Path, &FakeHelper),
) -> Observed {
    let scripted = observe(false, job(), helper_exists, &setup).await;
    let native = observe(true, job(), helper_exists, &setup).await;
    assert_eq!(native.outcome, scripted.outcome, "{}", native.trace);
    assert_eq!(native.trace, scripted.trace);
    assert_eq!(native.calls, scripted.calls);
    assert_eq!(native.env, scripted.env);
    assert_eq!(native.files, scripted.files);
    native
}

/// A cache archive for `key` and, in the project, what an earlier job left in `vendor/`.
fn earlier_cache_and_leftovers(dir: &Path, key: &str) {
    let file = dir.join("cache/acme/demo").join(key).join("cache.zip");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "cached deps").unwrap();
    let vendor = project_dir(dir).join("vendor");
    std::fs::create_dir_all(&vendor).unwrap();
    std::fs::write(vendor.join("stale"), "half extracted").unwrap();
}

#[tokio::test]
async fn a_successful_job_is_the_same_either_way() {
    let seen = both(full_job, true, |dir, _| {
        earlier_cache_and_leftovers(dir, "deps-main")
    })
    .await;
    assert_eq!(seen.outcome, JobOutcome::Success, "{}", seen.trace);
    let t = &seen.trace;
    // The first key misses (exit 2): its failure branch cleans up and tries the fallback.
    assert!(t.contains("Failed to extract cache"), "{t}");
    assert!(t.contains("Removing vendor/"), "{t}");
    assert!(t.contains("extracted cached deps"), "{t}");
    assert!(t.contains("Successfully extracted cache"), "{t}");
    assert!(t.contains("Created cache"), "{t}");
    assert!(
        !seen.files.iter().any(|f| f.contains("stale")),
        "{:?}",
        seen.files
    );
    // Every call saw the file variable's content, GITLAB_ENV, and no removed variable; the
    // uploading and archiving ones saw what step_script wrote to GITLAB_ENV.
    assert_eq!(seen.env.len(), 5, "{:?}", seen.env);
    let gitlab_env = "GITLAB_ENV=[<DIR>/builds/tok12345x/0/acme/demo.tmp/gitlab_runner_env]";
    for line in &seen.env {
        // `$x` is expanded (to nothing) as job variables are; the rest is the file's content.
        assert!(
            line.starts_with("ENV SETTINGS=[key: 'v'  \\ `id`]"),
            "{line}"
        );
        assert!(
            line.contains(gitlab_env) && line.ends_with("HOME=[]"),
            "{line}"
        );
    }
    assert!(seen.env[3].contains("DEPS_DIR=[vendor]"), "{:?}", seen.env);
    let archive = seen
        .calls
        .iter()
        .find(|c| c.contains("[cache-archive]"))
        .expect("cache-archive called");
    assert!(archive.contains("FROM_STEP=[from-step]"), "{archive}");
    assert!(
        archive.contains("CWD=[<DIR>/builds/tok12345x/0/acme/demo]"),
        "{archive}"
    );
    // Tokens only in the environment of their call.
    let download = seen
        .calls
        .iter()
        .find(|c| c.contains("[artifacts-download]"))
        .unwrap();
    assert!(
        download.contains(&format!("TOKEN=[{DEP_TOKEN}]")),
        "{download}"
    );
    let upload = seen
        .calls
        .iter()
        .find(|c| c.contains("[artifacts-upload]"))
        .unwrap();
    assert!(upload.contains(&format!("TOKEN=[{JOB_TOKEN}]")), "{upload}");
    for c in &seen.calls {
        let args = c.split(" TOKEN=").next().unwrap();
        assert!(
            !args.contains(JOB_TOKEN) && !args.contains(DEP_TOKEN),
            "{c}"
        );
    }
    assert!(!t.contains(JOB_TOKEN) && !t.contains(DEP_TOKEN), "{t}");
}

#[tokio::test]
async fn helper_failures_are_the_same_either_way() {
    // Cache failures warn and move on; a failed upload fails the job with the helper's exit code.
    let seen = both(full_job, true, |dir, helper| {
        earlier_cache_and_leftovers(dir, "deps-main");
        helper.fail("cache-extract", None);
        helper.fail("cache-archive", None);
        helper.fail("artifacts-upload", None);
    })
    .await;
    assert!(
        matches!(
            seen.outcome,
            JobOutcome::Failed {
                exit_code: Some(1),
                ..
            }
        ),
        "{:?}\n{}",
        seen.outcome,
        seen.trace
    );
    let t = &seen.trace;
    assert_eq!(t.matches("Failed to extract cache").count(), 2, "{t}");
    assert!(t.contains("Failed to create cache"), "{t}");
    assert!(t.contains("ERROR: fake artifacts-upload failure"), "{t}");

    // A failed download stops the job before its script.
    let seen = both(full_job, true, |_, helper| {
        helper.fail("artifacts-download", None)
    })
    .await;
    assert!(
        matches!(seen.outcome, JobOutcome::Failed { .. }),
        "{:?}",
        seen.outcome
    );
    assert!(!seen.trace.contains("built"), "{}", seen.trace);
}

#[tokio::test]
async fn a_missing_helper_warns_the_same_either_way() {
    let seen = both(full_job, false, |_, _| {}).await;
    assert_eq!(seen.outcome, JobOutcome::Success, "{}", seen.trace);
    for action in [
        "Extracting cache",
        "Artifacts downloading",
        "Creating cache",
        "Uploading artifacts",
    ] {
        assert!(
            seen.trace.contains(&format!(
                "WARNING: Missing <DIR>/nowhere/glrunner. {action} is disabled."
            )),
            "{action}: {}",
            seen.trace
        );
    }
    assert!(seen.calls.is_empty());
}

#[tokio::test]
async fn a_bad_gitlab_env_line_fails_the_stage_either_way() {
    let job = || {
        let mut j = full_job();
        j.steps[0]
            .script
            .push("echo '1BAD=x' >> \"$GITLAB_ENV\"".into());
        j
    };
    let scripted = observe(false, job(), true, |_, _| {}).await;
    let native = observe(true, job(), true, |_, _| {}).await;
    assert_eq!(native.outcome, scripted.outcome);
    assert_eq!(native.calls, scripted.calls);
    assert!(
        matches!(native.outcome, JobOutcome::Failed { .. }),
        "{:?}",
        native.outcome
    );
    // bash says so on stderr, glrunner in an ERROR line.
    assert!(
        native.trace.contains("`1BAD=x': not a valid identifier"),
        "{}",
        native.trace
    );
}

#[tokio::test]
async fn canceling_the_job_stops_a_running_helper() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    helper.block("cache-extract");
    let mut job = full_job();
    job.steps.retain(|s| s.name == STEP_SCRIPT);
    let running = start(job, helper_ctx(dir.path(), &helper), shell());
    running.output.wait_for("blocking in cache-extract").await;
    let pid: i32 = std::fs::read_to_string(helper.dir.join("pid-cache-extract"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(glrunner_job::shell::pid_alive(pid));
    running.control.cancel.cancel();
    let started = tokio::time::Instant::now();
    let (outcome, trace) = running.outcome().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the stage ends promptly"
    );
    assert!(
        matches!(outcome, JobOutcome::Failed { .. }),
        "{outcome:?}\n{trace}"
    );
    assert!(!glrunner_job::shell::pid_alive(pid), "the helper is gone");
    assert!(!trace.contains("built"), "the script never ran: {trace}");
}
