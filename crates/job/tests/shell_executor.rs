//! `run_job` with the real shell executor: real bash processes, real process groups, real signals.

mod common;

use common::*;
use glrunner_job::shell::pid_alive;
use glrunner_job::{JobOutcome, ShellExecutor};
use glrunner_protocol::{FailureReason, JobVariable, STEP_RELEASE};
use std::time::{Duration, Instant};

fn failed(reason: FailureReason, exit_code: Option<i32>) -> JobOutcome {
    JobOutcome::Failed { reason, exit_code }
}

fn hostname() -> String {
    sh(std::path::Path::new("/"), "echo \"$HOSTNAME\"")
}

#[tokio::test]
async fn success_prints_the_familiar_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, trace) = run(job(&["echo hello"]), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let expected = format!(
        "\x1b[0KRunning with glrunner 0.1.0 (abcdef12)\x1b[0;m\n\
         \x1b[0K  on test-runner tok12345x, system ID: s_0123456789ab\x1b[0;m\n\
         section_start:T:prepare_executor\r\x1b[0K\x1b[0K\x1b[36;1mPreparing the \"shell\" executor\x1b[0;m\x1b[0;m\n\
         \x1b[0KUsing Shell (bash) executor...\x1b[0;m\n\
         section_end:T:prepare_executor\r\x1b[0K\
         section_start:T:prepare_script\r\x1b[0K\x1b[0K\x1b[36;1mPreparing environment\x1b[0;m\x1b[0;m\n\
         Running on {host}...\n\
         section_end:T:prepare_script\r\x1b[0K\
         section_start:T:get_sources\r\x1b[0K\x1b[0K\x1b[36;1mGetting source from Git repository\x1b[0;m\x1b[0;m\n\
         \x1b[32;1mSkipping Git repository setup\x1b[0;m\n\
         section_end:T:get_sources\r\x1b[0K\
         section_start:T:step_script\r\x1b[0K\x1b[0K\x1b[36;1mExecuting \"step_script\" stage of the job script\x1b[0;m\x1b[0;m\n\
         \x1b[32;1m$ echo hello\x1b[0;m\n\
         hello\n\
         section_end:T:step_script\r\x1b[0K\
         section_start:T:cleanup_file_variables\r\x1b[0K\x1b[0K\x1b[36;1mCleaning up project directory and file based variables\x1b[0;m\x1b[0;m\n\
         section_end:T:cleanup_file_variables\r\x1b[0K\
         \x1b[32;1mJob succeeded\x1b[0;m\n",
        host = hostname()
    );
    assert_eq!(normalise(&trace), expected);
    assert!(
        project_dir(dir.path()).is_dir(),
        "the project dir was created"
    );
}

#[tokio::test]
async fn failing_script_reports_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, trace) = run(
        job(&["echo before", "exit 3", "echo after"]),
        ctx(dir.path()),
    )
    .await;
    assert_eq!(outcome, failed(FailureReason::ScriptFailure, Some(3)));
    assert!(trace.contains("before\n"));
    assert!(
        !trace.contains("after\n"),
        "the script stops at the failing command:\n{trace}"
    );
    assert!(
        trace.ends_with("\x1b[31;1mERROR: Job failed: exit code 3\x1b[0;m\n"),
        "{trace}"
    );
}

#[tokio::test]
async fn after_script_sees_the_job_status() {
    let dir = tempfile::tempdir().unwrap();
    let after = ["echo \"status=$CI_JOB_STATUS\""];
    let (outcome, trace) = run(with_after_script(job(&["false"]), &after), ctx(dir.path())).await;
    assert_eq!(outcome, failed(FailureReason::ScriptFailure, Some(1)));
    assert!(trace.contains("Running after_script"), "{trace}");
    assert!(trace.contains("status=failed\n"), "{trace}");

    let (outcome, trace) = run(with_after_script(job(&["true"]), &after), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success);
    assert!(trace.contains("status=success\n"), "{trace}");
}

#[tokio::test]
async fn stdout_and_stderr_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let script = ["echo out1; echo err1 >&2; echo out2; echo err2 >&2"];
    let (outcome, trace) = run(job(&script), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success);
    assert!(trace.contains("out1\nerr1\nout2\nerr2\n"), "{trace}");
}

#[tokio::test]
async fn graceful_cancel_runs_after_script_with_canceled() {
    let dir = tempfile::tempdir().unwrap();
    let job = with_after_script(
        job(&["echo started", "sleep 300"]),
        &["echo \"status=$CI_JOB_STATUS\""],
    );
    let running = start(job, ctx(dir.path()), shell());
    running.output.wait_for("started\n").await;
    let began = Instant::now();
    running.control.cancel.cancel();
    let (outcome, trace) = running.outcome().await;
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "cancel is prompt"
    );
    assert_eq!(outcome, failed(FailureReason::JobCanceled, None));
    assert!(
        trace.contains("WARNING: script canceled externally (UI, API)"),
        "{trace}"
    );
    assert!(trace.contains("status=canceled\n"), "{trace}");
    assert!(trace.contains("Cleaning up project directory"), "{trace}");
    assert!(
        trace.ends_with("ERROR: Job failed: canceled\x1b[0;m\n"),
        "{trace}"
    );
}

#[tokio::test]
async fn abort_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    // A background child that ignores SIGTERM: only SIGKILL to the group stops it.
    let job = with_after_script(
        job(&[
            "(trap '' TERM; exec sleep 300) > /dev/null 2>&1 & echo \"child=$!\"",
            "sleep 300",
        ]),
        &["echo after_script ran"],
    );
    let executor = ShellExecutor::new().with_grace_period(Duration::from_millis(500));
    let running = start(job, ctx(dir.path()), executor);
    // The echo of the next command appears once the first one printed the pid.
    let text = running.output.wait_for("$ sleep 300").await;
    let child: i32 = text
        .rsplit("child=")
        .next()
        .and_then(|s| s.lines().next())
        .and_then(|s| s.trim().parse().ok())
        .expect("child pid in the trace");
    assert!(pid_alive(child), "the child runs before the abort");
    running.control.abort.cancel();
    let (outcome, trace) = running.outcome().await;
    assert_eq!(outcome, JobOutcome::Aborted);
    assert!(!pid_alive(child), "the child of the aborted stage is gone");
    assert!(
        !trace.contains("after_script ran"),
        "abort skips after_script:\n{trace}"
    );
    assert!(
        trace.contains("Cleaning up project directory"),
        "cleanup still runs:\n{trace}"
    );
    assert!(trace.contains("WARNING: Job aborted"), "{trace}");
}

#[tokio::test]
async fn job_timeout_stops_the_script_and_skips_after_script() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = with_after_script(job(&["sleep 300"]), &["echo after_script ran"]);
    job.runner_info.timeout = Some(2);
    let began = Instant::now();
    let (outcome, trace) = run(job, ctx(dir.path())).await;
    assert!(began.elapsed() < Duration::from_secs(15));
    assert_eq!(outcome, failed(FailureReason::JobExecutionTimeout, None));
    assert!(!trace.contains("after_script ran"), "{trace}");
    assert!(
        trace.ends_with("ERROR: Job failed: execution took longer than 2s seconds\x1b[0;m\n"),
        "{trace}"
    );
}

#[tokio::test]
async fn script_timeout_still_runs_after_script_with_timedout() {
    let dir = tempfile::tempdir().unwrap();
    let job = with_after_script(
        with_var(job(&["sleep 300"]), "RUNNER_SCRIPT_TIMEOUT", "1s"),
        &["echo \"status=$CI_JOB_STATUS\""],
    );
    let (outcome, trace) = run(job, ctx(dir.path())).await;
    assert_eq!(outcome, failed(FailureReason::JobExecutionTimeout, None));
    assert!(trace.contains("status=timedout\n"), "{trace}");
    assert!(
        trace.contains("ERROR: Job failed: execution took longer than 1s seconds"),
        "{trace}"
    );
}

#[tokio::test]
async fn allowed_failures_do_not_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = with_after_script(job(&["echo main"]), &["echo in after_script", "exit 5"]);
    let mut release = step(STEP_RELEASE, &["exit 4"]);
    release.allow_failure = true;
    j.steps.insert(1, release);
    let (outcome, trace) = run(j.clone(), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains("Executing \"step_release\" stage of the job script"));
    assert!(
        trace.contains("WARNING: step_release failed with exit code 4"),
        "{trace}"
    );
    assert!(
        trace.contains(
            "WARNING: after_script failed, but job will continue unaffected: exit code 5"
        ),
        "{trace}"
    );
    assert!(trace.ends_with("Job succeeded\x1b[0;m\n"));

    let strict = with_var(j, "AFTER_SCRIPT_IGNORE_ERRORS", "false");
    let (outcome, _) = run(strict, ctx(dir.path())).await;
    assert_eq!(outcome, failed(FailureReason::ScriptFailure, Some(5)));
}

#[tokio::test]
async fn file_variables_hold_a_path_and_are_removed_in_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let content = "line1\n'quoted' \"double\" $NOT_EXPANDED \\ ✓\n";
    let mut j = job(&[
        "cat \"$MY_FILE\"",
        "echo \"path=$MY_FILE\"",
        "echo \"secret=$MY_SECRET\"",
    ]);
    j.variables.push(JobVariable {
        file: true,
        raw: true,
        ..JobVariable::new("MY_FILE", content)
    });
    j.variables.push(JobVariable {
        masked: true,
        ..JobVariable::new("MY_SECRET", "hunter2-very-secret")
    });
    let (outcome, trace) = run(j, ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(trace.contains(content), "{trace}");
    let tmp = format!("{}.tmp", project_dir(dir.path()).display());
    let path = format!("{tmp}/MY_FILE");
    assert!(trace.contains(&format!("path={path}\n")), "{trace}");
    assert!(
        !std::path::Path::new(&path).exists(),
        "cleanup removed the file"
    );
    assert!(trace.contains("secret=[MASKED]\n"), "{trace}");
    assert!(!trace.contains("hunter2-very-secret"));
    assert!(!trace.contains(JOB_TOKEN));
}

#[tokio::test]
async fn background_process_holding_the_output_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let executor = shell().with_drain_period(Duration::from_millis(300));
    let running = start(
        job(&["sleep 300 & echo \"bg=$!\""]),
        ctx(dir.path()),
        executor,
    );
    let (outcome, trace) = running.outcome().await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let pid: i32 = trace
        .rsplit("bg=")
        .next()
        .and_then(|s| s.lines().next())
        .and_then(|s| s.trim().parse().ok())
        .expect("pid in trace");
    assert!(!pid_alive(pid), "the background sleep was stopped");
    assert!(trace.contains("still held its output"), "{trace}");
}

#[tokio::test]
async fn detached_background_process_survives_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(
        job(&["sleep 300 > /dev/null 2>&1 & echo \"bg=$!\""]),
        ctx(dir.path()),
        shell(),
    );
    let (outcome, trace) = running.outcome().await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let pid: i32 = trace
        .rsplit("bg=")
        .next()
        .and_then(|s| s.lines().next())
        .and_then(|s| s.trim().parse().ok())
        .expect("pid in trace");
    assert!(
        pid_alive(pid),
        "a background process with its own output keeps running"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn unsupported_payloads_fail_with_an_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(&["true"]);
    j.run = Some(r#"[{"name":"hello","script":"echo hi"}]"#.into());
    let (outcome, trace) = run(j, ctx(dir.path())).await;
    assert_eq!(outcome, failed(FailureReason::RunnerUnsupported, None));
    assert!(
        trace.contains("ERROR: Job failed: this job uses the `run:` keyword"),
        "{trace}"
    );
    assert!(!trace.contains("Preparing the"), "nothing ran:\n{trace}");

    let mut c = ctx(dir.path());
    c.shell = "pwsh".into();
    let (outcome, trace) = run(job(&["true"]), c).await;
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerConfigurationError, None)
    );
    assert!(trace.contains("shell \"pwsh\" is not supported"), "{trace}");

    let mut j = job(&["true"]);
    j.steps.clear();
    let (outcome, _) = run(j, ctx(dir.path())).await;
    assert_eq!(outcome, failed(FailureReason::RunnerUnsupported, None));
}

#[tokio::test]
async fn variables_reach_the_script_expanded_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(&[
        "echo \"greeting=$GREETING\"",
        "echo \"literal=$LITERAL\"",
        "echo \"project=$CI_PROJECT_DIR\"",
        "echo \"pwd=$PWD\"",
        "echo \"shared=$CI_SHARED_ENVIRONMENT\"",
        "echo \"ff=$FF_SCRIPT_SECTIONS\"",
    ]);
    j.variables.push(JobVariable::new("NAME", "world"));
    j.variables
        .push(JobVariable::new("GREETING", "hello $NAME $$HOME"));
    j.variables.push(JobVariable {
        raw: true,
        ..JobVariable::new("LITERAL", "$NAME")
    });
    let mut c = ctx(dir.path());
    c.feature_flags.insert("FF_SCRIPT_SECTIONS".into(), false);
    j.variables
        .push(JobVariable::new("FF_SCRIPT_SECTIONS", "true"));
    let (outcome, trace) = run(j, c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let project = project_dir(dir.path());
    assert!(trace.contains("greeting=hello world $HOME\n"), "{trace}");
    assert!(trace.contains("literal=$NAME\n"), "{trace}");
    assert!(
        trace.contains(&format!("project={}\n", project.display())),
        "{trace}"
    );
    assert!(
        trace.contains(&format!("pwd={}\n", project.display())),
        "{trace}"
    );
    assert!(trace.contains("shared=true\n"));
    assert!(
        trace.contains("ff=false\n"),
        "config.toml wins over the job: {trace}"
    );
}

#[tokio::test]
async fn debug_trace_shows_commands_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = with_var(
        job(&["echo \"$MY_SECRET\" > /dev/null"]),
        "CI_DEBUG_TRACE",
        "true",
    );
    j.variables.push(JobVariable {
        masked: true,
        ..JobVariable::new("MY_SECRET", "hunter2-very-secret")
    });
    let (outcome, trace) = run(j.clone(), ctx(dir.path())).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("+ echo [MASKED]\n"),
        "bash xtrace is on:\n{trace}"
    );
    assert!(!trace.contains("hunter2-very-secret"));

    let mut c = ctx(dir.path());
    c.debug_trace_disabled = true;
    let (outcome, trace) = run(j, c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains("WARNING: CI_DEBUG_TRACE: usage is disabled on this runner"),
        "{trace}"
    );
    assert!(!trace.contains("+ echo"), "{trace}");
}

#[tokio::test]
async fn build_hooks_wrap_every_user_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ctx(dir.path());
    c.pre_build_script = Some("echo pre-build".into());
    c.post_build_script = Some("echo post-build".into());
    let mut j = with_after_script(job(&["echo main"]), &["echo after"]);
    j.steps.insert(1, step(STEP_RELEASE, &["echo release"]));
    let (outcome, trace) = run(j, c).await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let order: Vec<&str> = trace
        .lines()
        .filter(|l| ["pre-build", "post-build", "main", "release", "after"].contains(l))
        .collect();
    assert_eq!(
        order,
        [
            "pre-build",
            "main",
            "post-build",
            "pre-build",
            "release",
            "post-build",
            "after"
        ],
        "{trace}"
    );
}

#[tokio::test]
async fn stages_of_simple_steps_start_no_shell_unless_bash_must_trace_them() {
    let dir = tempfile::tempdir().unwrap();
    // A bash that notes the script it was given, then is the real bash.
    let log = dir.path().join("bash-calls.log");
    let wrapper = dir.path().join("logging-bash");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do last=\"$a\"; done\necho \"${{last##*/}}\" >> '{}'\nexec bash \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut j = job(&["echo hello"]);
    j.variables.push(JobVariable {
        file: true,
        ..JobVariable::new("MY_FILE", "content\n")
    });
    let (outcome, trace) = start(j.clone(), ctx(dir.path()), shell().with_bash(&wrapper))
        .outcome()
        .await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    assert!(
        trace.contains(&format!("Running on {}...\n", hostname())),
        "{trace}"
    );
    assert!(trace.contains("Cleaning up project directory"), "{trace}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["get_sources.sh", "step_script.sh"],
        "prepare_script and cleanup_file_variables ran without bash"
    );
    let tmp = format!("{}.tmp", project_dir(dir.path()).display());
    assert!(
        !std::path::Path::new(&format!("{tmp}/MY_FILE")).exists(),
        "cleanup still removed the file variable"
    );

    // Under CI_DEBUG_TRACE every stage runs in bash, which prints what it runs.
    std::fs::remove_file(&log).unwrap();
    let j = with_var(j, "CI_DEBUG_TRACE", "true");
    let (outcome, trace) = start(j, ctx(dir.path()), shell().with_bash(&wrapper))
        .outcome()
        .await;
    assert_eq!(outcome, JobOutcome::Success, "{trace}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("prepare_script.sh") && calls.contains("cleanup_file_variables.sh"),
        "{calls}"
    );
    assert!(
        trace.contains("+ rm -f"),
        "xtrace shows cleanup's rm:\n{trace}"
    );
}
