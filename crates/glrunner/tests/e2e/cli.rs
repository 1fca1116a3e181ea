//! The command line around jobs: `exec` on the demo project, exit codes, and signals to `run`.

use crate::support::*;
use glrunner_coordinator::JobStatus;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_the_demo_test_job() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = demo_dir();
    let out = run_command(tmp.path(), &["exec", "-C", path_str(&demo), "test"]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    assert!(
        out.output
            .contains("Hello from glrunner, running the smoke suite of demo"),
        "{}",
        out.output
    );
    assert!(out.output.contains("3 checks passed"), "{}", out.output);
    assert!(
        out.output
            .contains("after_script sees CI_JOB_STATUS=success"),
        "{}",
        out.output
    );
    assert!(out.output.contains("Job succeeded"), "{}", out.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_propagates_a_failing_jobs_exit_code() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join(".gitlab-ci.yml"),
        "fails:\n  script:\n    - echo about to fail\n    - exit 7\n",
    )
    .unwrap();
    let out = run_command(
        project.path(),
        &["exec", "-C", path_str(project.path()), "fails"],
    )
    .await;
    assert_eq!(out.code(), Some(7), "{}", out.output);
    assert!(out.output.contains("about to fail"), "{}", out.output);
    assert!(
        out.output.contains("ERROR: Job failed: exit code 7"),
        "{}",
        out.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_the_running_job_as_interrupted_and_exits_in_time() {
    let env = TestEnv::new().await;
    let mut probe = ProcessProbe::new(env.dir.path(), "sigterm.fifo");
    let mut gl = env.start(&env.config().shutdown_timeout(10));
    let id = env
        .gitlab
        .enqueue(job(&[&probe.hold(), "echo sleeping now", "sleep 300"]))
        .unwrap();
    probe.wait_up(WAIT).await;
    env.trace_contains(&gl, id, "sleeping now", WAIT).await;
    let signalled = Instant::now();
    gl.signal(Signal::SIGTERM);
    gl.exited(Duration::from_secs(10)).await;
    assert!(signalled.elapsed() < Duration::from_secs(10));
    let done = env.gitlab.job(id).unwrap();
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}\n{}", gl.output());
    assert_eq!(done.failure_reason.as_deref(), Some("runner_interrupted"));
    assert!(trace.contains("interrupted the job"), "{trace}");
    assert!(done.checksum_matches());
    probe.wait_gone(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_lets_the_running_job_finish_and_takes_no_new_ones() {
    let env = TestEnv::new().await;
    let barrier = env.path("release");
    let mut gl = env.start(&env.config());
    let id = env
        .gitlab
        .enqueue(job(&[
            "echo waiting for the barrier",
            &format!(
                "for n in $(seq 1 600); do [ -e '{b}' ] && break; sleep 0.1; done; [ -e '{b}' ]",
                b = barrier.display()
            ),
            "echo finished after SIGQUIT",
        ]))
        .unwrap();
    env.trace_contains(&gl, id, "waiting for the barrier\n", WAIT)
        .await;
    gl.signal(Signal::SIGQUIT);
    gl.wait_for_log("no longer requesting jobs", WAIT).await;
    let later = env.gitlab.enqueue(job(&["echo must not run"])).unwrap();
    std::fs::write(&barrier, b"go").unwrap();
    let status = gl.exited(WAIT).await;
    assert!(status.success(), "{status:?}\n{}", gl.output());
    let done = env.gitlab.job(id).unwrap();
    assert_eq!(done.status, JobStatus::Success, "{}", done.trace_text());
    assert!(done.trace_text().contains("\nfinished after SIGQUIT\n"));
    assert_eq!(env.gitlab.job(later).unwrap().status, JobStatus::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_has_no_colour_codes_when_not_on_a_terminal() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config());
    gl.wait_for_log("runner configured", WAIT).await;
    gl.stop().await;
    let log = gl.output();
    assert!(!log.contains('\x1b'), "{log:?}");
    assert!(log.contains(" INFO "), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_shutdown_timeout_even_when_gitlab_fails_the_final_update() {
    use glrunner_coordinator::{Endpoint, Fault};
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config().shutdown_timeout(3));
    let id = env
        .gitlab
        .enqueue(job(&["echo sleeping now", "sleep 300"]))
        .unwrap();
    env.trace_contains(&gl, id, "sleeping now", WAIT).await;
    // From now on GitLab fails every job update.
    env.gitlab
        .inject(Fault::unavailable(Endpoint::UpdateJob).job(id).times(1000));
    env.gitlab
        .inject(Fault::unavailable(Endpoint::PatchTrace).job(id).times(1000));
    let signalled = Instant::now();
    gl.signal(Signal::SIGTERM);
    gl.exited(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "exited {took:?} after SIGTERM with shutdown_timeout = 3"
    );
    let log = gl.output();
    assert!(
        log.contains("did not report back within shutdown_timeout"),
        "{log}"
    );
    assert_eq!(env.gitlab.job(id).unwrap().status, JobStatus::Running);
}
