//! Every stage of a job in order with the real shell executor: restore_cache, download_artifacts,
//! archive_cache, upload_artifacts and their `glrunner helper` command lines (recorded by a stand-in
//! helper), policies, keys and fallbacks, attempts, the job > cache > artifacts error priority,
//! `GITLAB_ENV`, the predefined variables and the after_script timeout.

mod common;

use common::*;
use glrunner_job::JobOutcome;
use glrunner_protocol::{
    Artifact, ArtifactsFile, Cache, Dependency, FailureReason, JobResponse, JobVariable,
    STEP_RELEASE, When,
};
use std::path::Path;

fn failed(reason: FailureReason, exit_code: Option<i32>) -> JobOutcome {
    JobOutcome::Failed { reason, exit_code }
}

fn cache(key: &str, paths: &[&str], policy: &str, when: When) -> Cache {
    Cache {
        key: key.into(),
        untracked: false,
        policy: policy.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        when,
        fallback_keys: Vec::new(),
    }
}

fn artifact(name: &str, paths: &[&str], when: When, kind: &str, format: &str) -> Artifact {
    Artifact {
        name: name.into(),
        untracked: None,
        paths: paths.iter().map(|p| p.to_string()).collect(),
        exclude: Vec::new(),
        when,
        expire_in: "1 week".into(),
        artifact_type: kind.into(),
        artifact_format: format.into(),
    }
}

fn named(mut job: JobResponse) -> JobResponse {
    job.job_info.name = "build".into();
    job.git_info.r#ref = "main".into();
    job
}

fn cache_file(dir: &Path, key: &str) -> std::path::PathBuf {
    dir.join("cache/acme/demo").join(key).join("cache.zip")
}

/// The recorded line for one call.
fn call(args: &[&str], token: &str, cwd: &Path, from_step: &str) -> String {
    let mut line = "CALL [helper]".to_owned();
    for a in args {
        line.push_str(&format!(" [{a}]"));
    }
    line.push_str(&format!(
        " TOKEN=[{token}] CWD=[{}] FROM_STEP=[{from_step}]",
        cwd.display()
    ));
    line
}

#[tokio::test]
async fn local_artifacts_are_written_and_read_through_files_without_gitlab_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let store = dir.path().join("artifacts");
    let mut j = named(job(&["mkdir -p out", "echo built > out/app"]));
    j.variables.push(JobVariable::new("FLAVOUR", "release"));
    j.dependencies = vec![Dependency {
        artifacts_file: Some(ArtifactsFile {
            filename: "/elsewhere/7/archive/artifacts.zip".into(),
            size: 1,
        }),
        ..compile_dependency()
    }];
    j.artifacts = Some(vec![
        artifact(
            "$FLAVOUR-build",
            &["out/"],
            When::OnSuccess,
            "archive",
            "zip",
        ),
        artifact(".env", &["build.env"], When::Always, "dotenv", "gzip"),
    ]);
    let ctx = glrunner_job::RunnerContext {
        // No GitLab: only the local directory makes the artifact stages run.
        gitlab_url: Some(String::new()),
        local_artifacts: Some(store.clone()),
        ..helper_ctx(dir.path(), &helper)
    };
    let (outcome, trace) = run(j, ctx).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let project = project_dir(dir.path());
    let s = store.display().to_string();
    let expected = [
        call(
            &[
                "artifacts-download",
                "--file",
                "/elsewhere/7/archive/artifacts.zip",
                "--dependency",
                "7",
                "compile",
            ],
            "",
            &project,
            "",
        ),
        call(
            &[
                "artifacts-upload",
                "--file",
                &format!("{s}/1234/archive/release-build.zip"),
                "--path",
                "out/",
                "--artifact-format",
                "zip",
                "--artifact-type",
                "archive",
            ],
            "",
            &project,
            "",
        ),
        call(
            &[
                "artifacts-upload",
                "--file",
                &format!("{s}/1234/dotenv/.env.gz"),
                "--path",
                "build.env",
                "--artifact-format",
                "gzip",
                "--artifact-type",
                "dotenv",
            ],
            "",
            &project,
            "",
        ),
    ];
    assert_eq!(helper.calls(), expected);
    assert!(
        !trace.contains("no GitLab to transfer artifacts"),
        "{trace}"
    );
}

#[tokio::test]
async fn every_stage_runs_in_order_and_calls_the_helper_as_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let make_job = || {
        let mut j = with_after_script(
            named(job(&[
                "mkdir -p out vendor",
                "echo built > out/app",
                "echo FROM_STEP=from-step >> \"$GITLAB_ENV\"",
            ])),
            &["echo \"after FROM_STEP=$FROM_STEP\""],
        );
        let mut c = cache(
            "deps-$CI_JOB_ID",
            &["vendor/"],
            "pull-push",
            When::OnSuccess,
        );
        c.fallback_keys = vec!["deps-main".into()];
        j.cache = vec![c];
        j.dependencies = vec![
            compile_dependency(),
            Dependency {
                id: 8,
                name: "lint".into(),
                token: DEP_TOKEN.into(),
                artifacts_file: None,
            },
        ];
        let mut archive = artifact("artifacts", &["out/"], When::OnSuccess, "archive", "zip");
        archive.exclude = vec!["out/*.tmp".into()];
        archive.untracked = Some(false);
        j.artifacts = Some(vec![
            archive,
            artifact("junit.xml", &["rspec.xml"], When::Always, "junit", "gzip"),
        ]);
        j
    };
    let (outcome, trace) = run(make_job(), helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
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

    let project = project_dir(dir.path());
    let key_file = cache_file(dir.path(), "deps-1234");
    let fallback_file = cache_file(dir.path(), "deps-main");
    let (k, f) = (
        key_file.display().to_string(),
        fallback_file.display().to_string(),
    );
    let expected = [
        call(
            &["cache-extract", "--file", &k, "--timeout", "10m"],
            "",
            &project,
            "",
        ),
        call(
            &["cache-extract", "--file", &f, "--timeout", "10m"],
            "",
            &project,
            "",
        ),
        call(
            &[
                "artifacts-download",
                "--url",
                "https://gitlab.example.com",
                "--id",
                "7",
            ],
            DEP_TOKEN,
            &project,
            "",
        ),
        call(
            &[
                "cache-archive",
                "--file",
                &k,
                "--path",
                "vendor/",
                "--timeout",
                "10m",
            ],
            "",
            &project,
            "from-step",
        ),
        call(
            &[
                "artifacts-upload",
                "--url",
                "https://gitlab.example.com",
                "--id",
                "1234",
                "--path",
                "out/",
                "--exclude",
                "out/*.tmp",
                "--name",
                "artifacts",
                "--expire-in",
                "1 week",
                "--artifact-format",
                "zip",
                "--artifact-type",
                "archive",
            ],
            JOB_TOKEN,
            &project,
            "from-step",
        ),
        call(
            &[
                "artifacts-upload",
                "--url",
                "https://gitlab.example.com",
                "--id",
                "1234",
                "--path",
                "rspec.xml",
                "--name",
                "junit.xml",
                "--expire-in",
                "1 week",
                "--artifact-format",
                "gzip",
                "--artifact-type",
                "junit",
            ],
            JOB_TOKEN,
            &project,
            "from-step",
        ),
    ];
    assert_eq!(helper.calls(), expected);

    for line in [
        "Checking cache for deps-1234...",
        "WARNING: Cache file does not exist",
        "WARNING: Failed to extract cache",
        "Checking cache for deps-main...",
        "Downloading artifacts for compile (7)...",
        "Creating cache deps-1234...",
        "Created cache",
        "Uploading artifacts...",
        "after FROM_STEP=from-step\n",
    ] {
        assert!(trace.contains(line), "{line:?} missing:\n{trace}");
    }
    assert!(!trace.contains("lint (8)"), "no archive, no download");
    assert_eq!(trace.matches("Uploading artifacts...").count(), 2);
    assert!(!trace.contains(DEP_TOKEN) && !trace.contains(JOB_TOKEN));
    assert!(key_file.is_file(), "the cache was saved locally");

    // The same job again: its own key's archive is there now.
    let (outcome, trace) = run(make_job(), helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains(&format!("extracted archive of {}", project.display())),
        "{trace}"
    );
    assert!(trace.contains("Successfully extracted cache"), "{trace}");
    assert!(
        !trace.contains("Checking cache for deps-main..."),
        "no fallback needed:\n{trace}"
    );
}

#[tokio::test]
async fn a_failed_job_saves_and_uploads_for_failure_and_keeps_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let mut j = named(job(&[
        "mkdir -p logs && echo oops > logs/out.log",
        "exit 3",
    ]));
    j.cache = vec![
        cache("always", &["logs/"], "pull-push", When::Always),
        cache("success-only", &["vendor/"], "pull-push", When::OnSuccess),
    ];
    j.artifacts = Some(vec![
        artifact("logs", &["logs/"], When::OnFailure, "archive", "zip"),
        artifact("dist", &["dist/"], When::OnSuccess, "archive", "zip"),
    ]);
    // The upload fails too: the job's own error still wins.
    helper.fail("artifacts-upload", None);
    let (outcome, trace) = run(j, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(
        outcome,
        failed(FailureReason::ScriptFailure, Some(3)),
        "{trace}"
    );
    assert_eq!(
        sections(&trace),
        [
            "prepare_executor",
            "prepare_script",
            "get_sources",
            "restore_cache",
            "step_script",
            "archive_cache_on_failure",
            "upload_artifacts_on_failure",
            "cleanup_file_variables",
        ],
        "{trace}"
    );
    let calls = helper.calls();
    let archived: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains("cache-archive"))
        .collect();
    assert_eq!(archived.len(), 1, "{calls:#?}");
    assert!(archived[0].contains("[logs/]"));
    let uploads: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains("artifacts-upload"))
        .collect();
    assert_eq!(uploads.len(), 1, "{calls:#?}");
    assert!(uploads[0].contains("[--name] [logs]"));
    assert!(trace.contains("ERROR: Job failed: exit code 3"), "{trace}");
}

#[tokio::test]
async fn cache_failures_only_warn_but_a_failed_upload_fails_a_successful_job() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let make_job = || {
        let mut j = named(job(&["mkdir -p vendor out"]));
        j.cache = vec![cache("deps", &["vendor/"], "", When::OnSuccess)];
        j.artifacts = Some(vec![artifact(
            "out",
            &["out/"],
            When::OnSuccess,
            "archive",
            "zip",
        )]);
        j
    };
    helper.fail("cache-extract", None);
    helper.fail("cache-archive", None);
    let (outcome, trace) = run(make_job(), helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("WARNING: Failed to extract cache"),
        "{trace}"
    );
    assert!(trace.contains("WARNING: Failed to create cache"), "{trace}");
    assert!(trace.contains("Job succeeded"), "{trace}");

    helper.fail("artifacts-upload", None);
    let (outcome, trace) = run(make_job(), helper_ctx(dir.path(), &helper)).await;
    assert_eq!(
        outcome,
        failed(FailureReason::ScriptFailure, Some(1)),
        "an artifact error fails a job that succeeded:\n{trace}"
    );
    assert!(
        trace.contains("ERROR: fake artifacts-upload failure"),
        "{trace}"
    );
    assert!(trace.contains("ERROR: Job failed: exit code 1"), "{trace}");
}

#[tokio::test]
async fn policies_expanded_keys_fallback_keys_and_cache_fallback_key() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let mut j = named(job(&["mkdir -p a b c"]));
    let mut sanitized = cache("$CI_JOB_ID/../deps ", &["c/"], "pull-push", When::OnSuccess);
    sanitized.fallback_keys = vec!["fb-$CI_JOB_ID".into(), "".into()];
    j.cache = vec![
        cache("pull-only", &["a/"], "pull", When::OnSuccess),
        cache("push-only", &["b/"], "$PUSH_POLICY", When::OnSuccess),
        sanitized,
        cache("nothing", &[], "pull-push", When::OnSuccess),
    ];
    j.variables.push(JobVariable::new("PUSH_POLICY", "push"));
    j.variables
        .push(JobVariable::new("CACHE_FALLBACK_KEY", "shared-protected"));
    let fallback = cache_file(dir.path(), "fb-1234");
    std::fs::create_dir_all(fallback.parent().unwrap()).unwrap();
    std::fs::write(&fallback, "fallback").unwrap();

    let (outcome, trace) = run(j, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    for line in [
        "Checking cache for pull-only...",
        "Not downloading cache push-only due to policy",
        "WARNING: cache key \"1234/../deps \" sanitized to \"deps\"",
        "WARNING: CACHE_FALLBACK_KEY \"shared-protected\" not allowed to end in \"-protected\"",
        "Checking cache for deps...",
        "Checking cache for fb-1234...",
        "extracted fallback",
        "Successfully extracted cache",
        "Not uploading cache pull-only due to policy",
        "Creating cache push-only...",
        "Creating cache deps...",
    ] {
        assert!(trace.contains(line), "{line:?} missing:\n{trace}");
    }
    assert!(!trace.contains("Checking cache for nothing"), "{trace}");
    assert!(!trace.contains("shared-protected..."), "{trace}");
    let archived: Vec<String> = helper
        .calls()
        .into_iter()
        .filter(|c| c.contains("cache-archive"))
        .collect();
    assert_eq!(archived.len(), 2, "{archived:#?}");
    assert!(archived[0].contains(&cache_file(dir.path(), "push-only").display().to_string()));
    assert!(archived[1].contains(&cache_file(dir.path(), "deps").display().to_string()));
}

#[tokio::test]
async fn hashed_cache_keys_and_an_unknown_policy() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let mut j = named(job(&["mkdir -p vendor"]));
    j.cache = vec![cache("my key", &["vendor/"], "pull-push", When::OnSuccess)];
    j.variables
        .push(JobVariable::new("FF_HASH_CACHE_KEYS", "true"));
    let (outcome, trace) = run(j, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let hashed = sh(dir.path(), "printf 'my key' | sha256sum | cut -d' ' -f1");
    let file = cache_file(dir.path(), &hashed).display().to_string();
    let calls = helper.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(
        calls
            .iter()
            .all(|c| c.contains(&format!("[--file] [{file}]"))),
        "the archive is named by the key's SHA-256: {calls:#?}"
    );
    assert!(
        trace.contains("Checking cache for my key..."),
        "the log shows the key as written:\n{trace}"
    );

    let mut j = named(job(&["echo never"]));
    j.cache = vec![cache("k", &["vendor/"], "$POLICY", When::OnSuccess)];
    j.variables.push(JobVariable::new("POLICY", "sometimes"));
    let (outcome, trace) = run(j, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(
        outcome,
        failed(FailureReason::ScriptFailure, None),
        "{trace}"
    );
    assert!(
        trace.contains("cache:policy \"sometimes\" of cache \"k\""),
        "{trace}"
    );
    assert!(
        !trace.contains("never\n"),
        "the script did not run:\n{trace}"
    );
}

#[tokio::test]
async fn a_missing_helper_only_warns() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ctx(dir.path());
    let missing = dir.path().join("no-such-glrunner");
    c.helper_path = Some(missing.clone());
    c.cache_dir = Some(dir.path().join("cache"));
    c.gitlab_url = Some("https://gitlab.example.com".into());
    let mut j = named(job(&["mkdir -p vendor out"]));
    j.cache = vec![cache("deps", &["vendor/"], "pull-push", When::OnSuccess)];
    j.artifacts = Some(vec![artifact(
        "out",
        &["out/"],
        When::OnSuccess,
        "archive",
        "zip",
    )]);
    let (outcome, trace) = run(j, c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let m = missing.display();
    for line in [
        format!("WARNING: Missing {m}. Extracting cache is disabled."),
        format!("WARNING: Missing {m}. Creating cache is disabled."),
        format!("WARNING: Missing {m}. Uploading artifacts is disabled."),
    ] {
        assert!(trace.contains(&line), "{line:?} missing:\n{trace}");
    }
}

#[tokio::test]
async fn artifact_downloads_are_retried_and_a_failed_download_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let make_job = || {
        let mut j = named(job(&["echo script ran"]));
        j.dependencies = vec![compile_dependency()];
        j.artifacts = Some(vec![artifact(
            "log",
            &["log/"],
            When::Always,
            "archive",
            "zip",
        )]);
        j.variables.push(JobVariable::new(
            "FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY",
            "false",
        ));
        j
    };
    helper.fail("artifacts-download", Some(1));
    let j = with_var(make_job(), "ARTIFACT_DOWNLOAD_ATTEMPTS", "2");
    let (outcome, trace) = run(j, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert_eq!(
        sections(&trace)
            .iter()
            .filter(|s| *s == "download_artifacts")
            .count(),
        2,
        "{trace}"
    );

    helper.fail("artifacts-download", None);
    let (outcome, trace) = run(make_job(), helper_ctx(dir.path(), &helper)).await;
    assert_eq!(
        outcome,
        failed(FailureReason::ScriptFailure, Some(1)),
        "{trace}"
    );
    assert!(!trace.contains("script ran"), "{trace}");
    assert_eq!(
        sections(&trace),
        [
            "prepare_executor",
            "prepare_script",
            "get_sources",
            "download_artifacts",
            "upload_artifacts_on_failure",
            "cleanup_file_variables",
        ],
        "on-failure uploads still run:\n{trace}"
    );
}

#[tokio::test]
async fn gitlab_env_carries_values_to_later_stages_of_the_same_job_only() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let mut j = with_after_script(
        named(job(&[
            "echo \"before=${FROM_STEP:-unset}\"",
            "echo \"FROM_STEP=one two=three\" >> \"$GITLAB_ENV\"",
            "echo >> \"$GITLAB_ENV\"",
            "printf 'LAST=no newline' >> \"$GITLAB_ENV\"",
            "echo \"env file=$GITLAB_ENV\"",
        ])),
        &["echo \"after: $FROM_STEP / $LAST\""],
    );
    j.steps.insert(
        1,
        step(STEP_RELEASE, &["echo \"release: $FROM_STEP / $LAST\""]),
    );
    j.artifacts = Some(vec![artifact(
        "out",
        &["out/"],
        When::OnSuccess,
        "archive",
        "zip",
    )]);
    let (outcome, trace) = run(j.clone(), helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let env_file = dir
        .path()
        .join("builds/tok12345x/0/acme/demo.tmp/gitlab_runner_env");
    assert!(trace.contains("before=unset\n"), "{trace}");
    assert!(
        trace.contains(&format!("env file={}\n", env_file.display())),
        "{trace}"
    );
    assert!(
        trace.contains("release: one two=three / no newline\n"),
        "{trace}"
    );
    assert!(
        trace.contains("after: one two=three / no newline\n"),
        "{trace}"
    );
    assert!(
        helper.calls()[0].ends_with("FROM_STEP=[one two=three]"),
        "the helper stages see it too: {:?}",
        helper.calls()
    );
    assert!(!env_file.exists(), "cleanup removed it");

    // A new job starts without what the last one wrote, even if the file was left behind.
    std::fs::write(&env_file, "FROM_STEP=stale\n").unwrap();
    let (outcome, trace) = run(j, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("before=unset\n"), "{trace}");

    // A line bash cannot export fails the next stage, as with gitlab-runner.
    let mut bad = named(job(&["echo '1BAD=x' >> \"$GITLAB_ENV\""]));
    bad.steps
        .push(step(STEP_RELEASE, &["echo release never runs"]));
    let (outcome, trace) = run(bad, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(
        outcome,
        failed(FailureReason::ScriptFailure, Some(1)),
        "{trace}"
    );
    assert!(trace.contains("not a valid identifier"), "{trace}");
    assert!(!trace.contains("release never runs\n"), "{trace}");
}

#[tokio::test]
async fn predefined_variables_reach_every_script() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "CI_BUILDS_DIR",
        "CI_PROJECT_DIR",
        "CI_CONCURRENT_ID",
        "CI_CONCURRENT_PROJECT_ID",
        "CI_SERVER",
        "CI_JOB_STATUS",
        "CI_JOB_TIMEOUT",
        "CI_JOB_IMAGE",
        "CI_RUNNER_SHORT_TOKEN",
        "CI_RUNNER_VERSION",
        "CI_RUNNER_REVISION",
        "CI_RUNNER_EXECUTABLE_ARCH",
        "CI_SHARED_ENVIRONMENT",
        "RUNNER_TEMP_PROJECT_DIR",
        "GITLAB_ENV",
        "FROM_CONFIG",
        "OVERRIDDEN",
        "FF_TIMESTAMPS",
        "FF_ENABLE_BASH_EXIT_CODE_CHECK",
    ];
    let script: Vec<String> = names
        .iter()
        .map(|n| format!("echo \"{n}=${{{n}-<unset>}}\""))
        .collect();
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let mut j = job(&script);
    j.image = Some(glrunner_protocol::Image {
        name: "ruby:3.3".into(),
        ..Default::default()
    });
    j.variables.push(JobVariable::new("OVERRIDDEN", "from-job"));
    j.variables
        .push(JobVariable::new("FF_ENABLE_BASH_EXIT_CODE_CHECK", "true"));
    j.variables.push(JobVariable::new("FF_TIMESTAMPS", "false"));
    let mut c = ctx(dir.path());
    c.environment = vec![
        "FROM_CONFIG=$CI_JOB_ID-config".into(),
        "OVERRIDDEN=from-config".into(),
    ];
    c.concurrent_id = 2;
    c.feature_flags
        .insert("FF_ENABLE_BASH_EXIT_CODE_CHECK".into(), false);
    let (outcome, trace) = run(j, c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let project = dir.path().join("builds/tok12345x/2/acme/demo");
    let p = project.display();
    let expected = [
        format!("CI_BUILDS_DIR={}", dir.path().join("builds").display()),
        format!("CI_PROJECT_DIR={p}"),
        "CI_CONCURRENT_ID=2".into(),
        "CI_CONCURRENT_PROJECT_ID=2".into(),
        "CI_SERVER=yes".into(),
        "CI_JOB_STATUS=running".into(),
        "CI_JOB_TIMEOUT=120".into(),
        "CI_JOB_IMAGE=ruby:3.3".into(),
        "CI_RUNNER_SHORT_TOKEN=tok12345x".into(),
        "CI_RUNNER_VERSION=0.1.0".into(),
        "CI_RUNNER_REVISION=abcdef12".into(),
        format!(
            "CI_RUNNER_EXECUTABLE_ARCH={}",
            glrunner_job::variables::executable_arch()
        ),
        "CI_SHARED_ENVIRONMENT=true".into(),
        format!("RUNNER_TEMP_PROJECT_DIR={p}.tmp"),
        format!("GITLAB_ENV={p}.tmp/gitlab_runner_env"),
        "FROM_CONFIG=1234-config".into(),
        "OVERRIDDEN=from-job".into(),
        "FF_TIMESTAMPS=false".into(),
        "FF_ENABLE_BASH_EXIT_CODE_CHECK=false".into(),
    ];
    for line in expected {
        assert!(
            trace.contains(&format!("\n{line}\n")),
            "{line:?} missing:\n{trace}"
        );
    }
}

#[tokio::test]
async fn after_script_timeout_warns_unless_errors_count() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let make_job = || {
        let mut j = with_after_script(job(&["echo main"]), &["sleep 60"]);
        j.variables
            .push(JobVariable::new("RUNNER_AFTER_SCRIPT_TIMEOUT", "1s"));
        j.artifacts = Some(vec![artifact(
            "out",
            &["out/"],
            When::Always,
            "archive",
            "zip",
        )]);
        j
    };
    let (outcome, trace) = run(make_job(), helper_ctx(dir.path(), &helper)).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains(
            "WARNING: after_script failed, but job will continue unaffected: execution took longer than 1s seconds"
        ),
        "{trace}"
    );
    assert!(
        sections(&trace).contains(&"upload_artifacts_on_success".to_owned()),
        "{trace}"
    );

    let j = with_var(make_job(), "AFTER_SCRIPT_IGNORE_ERRORS", "false");
    let (outcome, trace) = run(j, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(
        outcome,
        failed(FailureReason::JobExecutionTimeout, None),
        "{trace}"
    );
    assert!(
        sections(&trace).contains(&"upload_artifacts_on_failure".to_owned()),
        "{trace}"
    );
}

#[tokio::test]
async fn script_timeout_still_saves_the_cache_for_failure() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let mut j = named(with_var(
        job(&["mkdir -p vendor", "sleep 60"]),
        "RUNNER_SCRIPT_TIMEOUT",
        "1s",
    ));
    j.cache = vec![cache("deps", &["vendor/"], "pull-push", When::Always)];
    let (outcome, trace) = run(j, helper_ctx(dir.path(), &helper)).await;
    assert_eq!(
        outcome,
        failed(FailureReason::JobExecutionTimeout, None),
        "{trace}"
    );
    assert!(
        sections(&trace).contains(&"archive_cache_on_failure".to_owned()),
        "{trace}"
    );
    assert!(cache_file(dir.path(), "deps").is_file());
}

#[tokio::test]
async fn s3_caches_get_presigned_urls_and_an_unusable_cache_falls_back_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let make_job = || {
        let mut j = named(job(&["mkdir -p vendor"]));
        j.job_info.project_id = 42;
        j.cache = vec![cache("deps", &["vendor/"], "pull-push", When::OnSuccess)];
        j
    };
    let secret_key = "s3cr3t-k3y-never-shown";
    let settings = glrunner_cache::CacheSettings {
        cache_type: "s3".into(),
        path: "ci".into(),
        max_uploaded_archive_size: 1000,
        s3: glrunner_cache::S3Settings {
            server_address: "127.0.0.1:9000".into(),
            access_key: "AKIDEXAMPLE".into(),
            secret_key: secret_key.into(),
            bucket_name: "runner-cache".into(),
            insecure: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut c = helper_ctx(dir.path(), &helper);
    c.cache = Some(settings.clone());
    let (outcome, trace) = run(make_job(), c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let calls = helper.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let object = "http://127.0.0.1:9000/runner-cache/ci/runner/tok12345x/project/42/deps?";
    assert!(
        calls[0].starts_with(&format!("CALL [helper] [cache-extract] [--url] [{object}")),
        "{calls:#?}"
    );
    assert!(calls[0].contains("X-Amz-Signature="), "{calls:#?}");
    assert!(
        calls[1].starts_with(&format!("CALL [helper] [cache-archive] [--url] [{object}")),
        "{calls:#?}"
    );
    assert!(
        calls[1].contains("[--max-size] [1000] [--timeout] [10m]"),
        "{calls:#?}"
    );
    assert!(!calls.iter().any(|c| c.contains(secret_key)));
    assert!(!trace.contains(secret_key) && !trace.contains("X-Amz-Signature"));

    // A cache type glrunner cannot use: the job says why and keeps its caches locally.
    let mut c = helper_ctx(dir.path(), &helper);
    c.cache = Some(glrunner_cache::CacheSettings {
        cache_type: "azure".into(),
        ..settings
    });
    let (outcome, trace) = run(make_job(), c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace
            .contains("WARNING: [runners.cache] Type = \"azure\" is not supported by glrunner yet"),
        "{trace}"
    );
    assert!(
        helper.calls()[2].contains(&format!(
            "[--file] [{}]",
            cache_file(dir.path(), "deps").display()
        )),
        "{:#?}",
        helper.calls()
    );
}

#[tokio::test]
async fn without_a_gitlab_url_artifacts_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let mut j = named(job(&["mkdir -p out"]));
    j.artifacts = Some(vec![artifact(
        "out",
        &["out/"],
        When::Always,
        "archive",
        "zip",
    )]);
    j.dependencies = vec![compile_dependency()];
    let mut c = helper_ctx(dir.path(), &helper);
    c.gitlab_url = Some(String::new());
    let (outcome, trace) = run(j.clone(), c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("WARNING: download_artifacts: skipped, there is no GitLab"),
        "{trace}"
    );
    assert!(
        trace.contains("WARNING: upload_artifacts_on_success: skipped, there is no GitLab"),
        "{trace}"
    );
    assert!(helper.calls().is_empty(), "{:#?}", helper.calls());

    // Without `url` in the context, the job's CI_SERVER_URL is GitLab.
    j.variables.push(JobVariable::new(
        "CI_SERVER_URL",
        "https://from-the-job.example",
    ));
    let mut c = helper_ctx(dir.path(), &helper);
    c.gitlab_url = None;
    let (outcome, trace) = run(j, c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let calls = helper.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(
        calls
            .iter()
            .all(|c| c.contains("[--url] [https://from-the-job.example]")),
        "{calls:#?}"
    );
}

#[tokio::test]
async fn restore_cache_is_tried_restore_cache_attempts_times() {
    let dir = tempfile::tempdir().unwrap();
    let helper = FakeHelper::new(dir.path());
    let mut c = helper_ctx(dir.path(), &helper);
    // A line bash cannot export, left for the next stage: restore_cache fails however often it runs.
    c.post_get_sources_script = Some("echo '1BAD=x' >> \"$GITLAB_ENV\"".into());
    // The hook runs only when there are sources to get.
    sh(
        dir.path(),
        "git init -q --bare -b main origin.git && git init -q -b main work && cd work && \
         echo x > f && git add f && git commit -q -m c && git push -q ../origin.git main",
    );
    let mut j = named(job(&["echo script ran"]));
    j.variables.retain(|v| v.key != "GIT_STRATEGY");
    j.git_info.repo_url = format!("file://{}/origin.git", dir.path().display()).into();
    j.git_info.sha = sh(dir.path(), "git -C work rev-parse HEAD");
    let mut j = with_var(j, "RESTORE_CACHE_ATTEMPTS", "3");
    j.variables.push(JobVariable::new(
        "FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY",
        "false",
    ));
    j.cache = vec![cache("deps", &["vendor/"], "pull-push", When::Always)];
    let (outcome, trace) = run(j, c).await;
    assert_eq!(
        outcome,
        failed(FailureReason::ScriptFailure, Some(1)),
        "{trace}"
    );
    let stages = sections(&trace);
    assert_eq!(
        stages.iter().filter(|s| *s == "restore_cache").count(),
        3,
        "{trace}"
    );
    assert!(!trace.contains("script ran\n"), "{trace}");
    assert!(
        stages.contains(&"archive_cache_on_failure".to_owned()),
        "the on-failure cache stage still runs:\n{trace}"
    );
}
