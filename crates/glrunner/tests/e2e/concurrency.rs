//! `concurrent`: how many jobs run at once.

use crate::support::*;
use glrunner_coordinator::{JobSnapshot, JobStatus};
use std::path::Path;
use std::time::SystemTime;

/// A script line that blocks until `barrier` exists (bounded at 60 s, then fails).
fn wait_for_file(barrier: &Path) -> String {
    format!(
        "for n in $(seq 1 600); do [ -e '{b}' ] && break; sleep 0.1; done; [ -e '{b}' ]",
        b = barrier.display()
    )
}

/// The most jobs that were between `started_at` and `finished_at` at the same moment.
fn max_overlap(jobs: &[JobSnapshot]) -> usize {
    let mut events: Vec<(SystemTime, i32)> = Vec::new();
    for j in jobs {
        events.push((j.started_at.expect("started"), 1));
        events.push((j.finished_at.expect("finished"), -1));
    }
    // Ends before starts at the same instant.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    usize::try_from(max).unwrap_or(0)
}

/// Wait until each of `ids` runs.
async fn wait_running(env: &TestEnv, gl: &Glrunner, ids: &[i64]) {
    for id in ids {
        if let Err(e) = env
            .gitlab
            .wait_for_status(*id, JobStatus::Running, WAIT)
            .await
        {
            panic!("job {id} never ran: {e}\n{}", gl.output());
        }
    }
}

/// Release `barrier` and wait for every job of `ids` to succeed; their snapshots, in order.
async fn release(env: &TestEnv, gl: &Glrunner, barrier: &Path, ids: &[i64]) -> Vec<JobSnapshot> {
    std::fs::write(barrier, b"go").unwrap();
    let mut done = Vec::new();
    for id in ids {
        let j = env.finished(gl, *id, WAIT).await;
        assert_eq!(j.status, JobStatus::Success, "{}", j.trace_text());
        done.push(j);
    }
    done
}

/// Enqueue `n` jobs that wait for `barrier`.
fn enqueue_waiting(env: &TestEnv, barrier: &Path, n: usize) -> Vec<i64> {
    (0..n)
        .map(|_| env.gitlab.enqueue(job(&[&wait_for_file(barrier)])).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_jobs_run_at_the_same_time_with_concurrent_20() {
    let env = TestEnv::new().await;
    let barrier = env.path("release-20");
    let mut gl = env.start(&env.config().concurrent(20));
    let ids: Vec<i64> = (0..20)
        .map(|i| {
            env.gitlab
                .enqueue(job(&[
                    &wait_for_file(&barrier),
                    &format!("echo job {i} released"),
                ]))
                .unwrap()
        })
        .collect();
    wait_running(&env, &gl, &ids).await;
    // None can finish before the barrier is released, so one snapshot shows them all.
    let running = env
        .gitlab
        .jobs()
        .into_iter()
        .filter(|j| j.status == JobStatus::Running)
        .count();
    assert_eq!(running, 20);

    let done = release(&env, &gl, &barrier, &ids).await;
    for (i, j) in done.iter().enumerate() {
        assert!(j.trace_text().contains(&format!("\njob {i} released\n")));
    }
    assert_eq!(max_overlap(&done), 20);
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_2_never_runs_more_than_two_jobs() {
    let env = TestEnv::new().await;
    let barrier = env.path("release-2");
    let mut gl = env.start(&env.config().concurrent(2));
    let ids = enqueue_waiting(&env, &barrier, 5);
    // The queue hands jobs out in order: the first two start, the rest must wait.
    wait_running(&env, &gl, &ids[..2]).await;
    let snapshot = env.gitlab.jobs();
    let count = |s: JobStatus| snapshot.iter().filter(|j| j.status == s).count();
    assert_eq!(count(JobStatus::Running), 2, "{snapshot:#?}");
    assert_eq!(count(JobStatus::Pending), 3, "{snapshot:#?}");

    let done = release(&env, &gl, &barrier, &ids).await;
    assert_eq!(max_overlap(&done), 2);
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_limit_caps_its_jobs_below_concurrent() {
    let env = TestEnv::new().await;
    let barrier = env.path("release-limit");
    let mut gl = env.start(&env.config().concurrent(4).runner_line("limit = 1"));
    let ids = enqueue_waiting(&env, &barrier, 3);
    wait_running(&env, &gl, &ids[..1]).await;
    let done = release(&env, &gl, &barrier, &ids).await;
    assert_eq!(max_overlap(&done), 1);
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_below_the_number_of_runners_is_explained_and_enough_keeps_pickup_prompt() {
    let env = TestEnv::new().await;
    let second = env
        .gitlab
        .add_runner(glrunner_coordinator::RunnerSpec::created().description("second"));
    let mut cfg = env.config().concurrent(1);
    let mut other = cfg.runners[0].clone();
    other.name = "second".to_owned();
    other.token = second.token.expose().to_owned();
    cfg.runners.push(other);

    let mut gl = env.start(&cfg);
    let text = gl
        .wait_for_log("is lower than the number of [[runners]]", WAIT)
        .await;
    assert!(
        text.contains("concurrent (1) is lower than the number of [[runners]] (2)"),
        "{text}"
    );
    assert!(text.contains("Fix: set concurrent = 2"), "{text}");
    gl.stop().await;

    // With concurrent = 2 both runners long-poll at once: a job for either starts at once.
    let mut gl = env.start(&cfg.concurrent(2).check_interval(10));
    if let Err(e) = env.gitlab.wait_for_held_polls(2, WAIT).await {
        panic!(
            "both runners never long-polled together: {e}\n{}",
            gl.output()
        );
    }
    assert!(
        !gl.output()
            .contains("is lower than the number of [[runners]]")
    );
    for runner in [env.runner.id, second.id] {
        let queued = std::time::Instant::now();
        let id = env
            .gitlab
            .enqueue(job(&["echo picked up"]).for_runner(runner))
            .unwrap();
        let done = env.finished(&gl, id, WAIT).await;
        assert_eq!(done.status, JobStatus::Success);
        assert!(
            queued.elapsed() < std::time::Duration::from_secs(3),
            "runner {runner}: the job took {:?}",
            queued.elapsed()
        );
        assert_eq!(done.runner_id, Some(runner));
        if let Err(e) = env.gitlab.wait_for_held_polls(2, WAIT).await {
            panic!(
                "the runners did not go back to long polling: {e}\n{}",
                gl.output()
            );
        }
    }
    gl.stop().await;
}
