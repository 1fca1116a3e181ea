//! Cancellation from GitLab: graceful (`canceling`: after_script still runs) and hard (`canceled`: stop
//! at once, report nothing).

use crate::support::*;
use glrunner_coordinator::{Endpoint, JobStatus};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_cancel_stops_the_script_and_runs_after_script() {
    let env = TestEnv::new().await;
    let mut probe = ProcessProbe::new(env.dir.path(), "graceful.fifo");
    let mut gl = env.start(&env.config());
    let id = env
        .gitlab
        .enqueue(
            job(&[&probe.hold(), "echo sleeping now", "sleep 300"])
                .after_script(["echo \"after_script saw CI_JOB_STATUS=$CI_JOB_STATUS\""]),
        )
        .unwrap();
    probe.wait_up(WAIT).await;
    env.trace_contains(&gl, id, "sleeping now", WAIT).await;
    assert_eq!(env.gitlab.cancel_gracefully(id), Some(JobStatus::Canceling));
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Canceled, "{trace}");
    assert!(
        trace.contains("\nafter_script saw CI_JOB_STATUS=canceled\n"),
        "{trace}"
    );
    assert!(trace.contains("ERROR: Job failed: canceled"), "{trace}");
    assert!(done.checksum_matches(), "{done:?}");
    probe.wait_gone(Duration::from_secs(10)).await.unwrap();
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_cancel_stops_everything_and_reports_nothing() {
    let env = TestEnv::new().await;
    let mut probe = ProcessProbe::new(env.dir.path(), "abort.fifo");
    let marker = env.path("after_script_ran");
    let mut gl = env.start(&env.config());
    let id = env
        .gitlab
        .enqueue(
            job(&[&probe.hold(), "echo sleeping now", "sleep 300"])
                .after_script([format!("touch '{}'", marker.display())]),
        )
        .unwrap();
    probe.wait_up(WAIT).await;
    env.trace_contains(&gl, id, "sleeping now", WAIT).await;
    let before_cancel = env.gitlab.requests().last().map_or(0, |r| r.seq);
    let canceled_at = Instant::now();
    assert_eq!(env.gitlab.cancel(id), Some(JobStatus::Canceled));

    probe.wait_gone(Duration::from_secs(10)).await.unwrap();
    let stopped_after = canceled_at.elapsed();
    gl.wait_for_log("job canceled in GitLab; stopped", WAIT)
        .await;
    assert!(
        stopped_after < Duration::from_secs(5),
        "the job's processes lived {stopped_after:?} after the cancel"
    );
    assert!(!marker.exists(), "after_script ran after a hard cancel");
    let done = env.gitlab.job(id).unwrap();
    assert_eq!(done.status, JobStatus::Canceled);
    assert_eq!(done.final_updates, 0, "{done:?}");
    let puts: Vec<_> = job_requests(&env.gitlab, id)
        .into_iter()
        .filter(|r| r.seq > before_cancel && r.endpoint == Endpoint::UpdateJob)
        .collect();
    assert!(puts.is_empty(), "PUTs after the cancel: {puts:#?}");

    // The runner carries on taking jobs.
    let next = env.gitlab.enqueue(job(&["echo next job"])).unwrap();
    let done = env.finished(&gl, next, WAIT).await;
    assert_eq!(done.status, JobStatus::Success, "{}", done.trace_text());
    gl.stop().await;
}
