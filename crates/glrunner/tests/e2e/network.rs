//! GitLab misbehaving on the wire: 5xx and dropped connections, 429 with Retry-After, 409, and long
//! polling.

use crate::support::*;
use glrunner_coordinator::{Endpoint, Fault, JobStatus, RequestRecord};
use std::time::{Duration, Instant};

fn records(env: &TestEnv, endpoint: Endpoint) -> Vec<RequestRecord> {
    env.gitlab
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == endpoint)
        .collect()
}

fn statuses(records: &[RequestRecord]) -> Vec<Option<u16>> {
    records.iter().map(|r| r.status).collect()
}

/// When the request ended, as the coordinator saw it.
fn ended(r: &RequestRecord) -> std::time::SystemTime {
    r.at + r.duration
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_connections_are_retried_to_a_complete_job() {
    let env = TestEnv::new().await;
    let total = 3000;
    let id = env
        .gitlab
        .enqueue(job(&[&format!(
            "for i in $(seq 1 {total}); do echo \"seq-$i\"; if (( i % 1000 == 0 )); then sleep 1.2; fi; done"
        )]))
        .unwrap();
    // Job requests: five 503s use up one request's attempts; then a 502 and a dropped connection.
    env.gitlab
        .inject(Fault::unavailable(Endpoint::RequestJob).times(5));
    env.gitlab.inject(Fault::respond(Endpoint::RequestJob, 502));
    env.gitlab
        .inject(Fault::drop_connection(Endpoint::RequestJob));
    // The acknowledging PUT meets a 503 (retried by the client) and then a dropped connection.
    env.gitlab
        .inject(Fault::unavailable(Endpoint::UpdateJob).job(id));
    env.gitlab
        .inject(Fault::drop_connection(Endpoint::UpdateJob).job(id));
    // Trace PATCHes: 502, 503, then a dropped connection.
    env.gitlab
        .inject(Fault::respond(Endpoint::PatchTrace, 502).job(id));
    env.gitlab
        .inject(Fault::unavailable(Endpoint::PatchTrace).job(id));
    env.gitlab
        .inject(Fault::drop_connection(Endpoint::PatchTrace).job(id));

    let mut gl = env.start(&env.config());
    // Once the job runs, the final PUT meets a dropped connection and then five 503s (one request's
    // attempts): the runner's own final-update retries carry it through.
    if let Err(e) = env
        .gitlab
        .wait_for_status(id, JobStatus::Running, WAIT)
        .await
    {
        panic!("the job never ran: {e}\n{}", gl.output());
    }
    env.gitlab
        .inject(Fault::drop_connection(Endpoint::UpdateJob).job(id));
    env.gitlab
        .inject(Fault::unavailable(Endpoint::UpdateJob).job(id).times(5));
    let done = env.finished(&gl, id, WAIT).await;
    let text = done.trace_text();
    assert_eq!(done.status, JobStatus::Success, "{text}");
    let seq: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("seq-"))
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(seq, (1..=total).collect::<Vec<_>>());
    assert!(text.ends_with("\x1b[32;1mJob succeeded\x1b[0;m\n"));
    assert!(done.checksum_matches());
    assert!(env.gitlab.faults().is_empty(), "{:#?}", env.gitlab.faults());

    let requests = records(&env, Endpoint::RequestJob);
    assert_eq!(
        statuses(&requests)[..8],
        [
            Some(503),
            Some(503),
            Some(503),
            Some(503),
            Some(503),
            Some(502),
            None,
            Some(201)
        ],
        "{requests:#?}"
    );
    // One request gave up after its fifth attempt (a sixth would have met the 502): it was reported
    // once, and the next request waited for check_interval.
    gl.stop().await;
    let log = gl.output();
    assert_eq!(
        log.matches("checking for jobs failed: GitLab answered 503")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("GitLab answered 503; retrying in") && l.contains("jobs/request"))
            .count(),
        4,
        "four retries of the job request: {log}"
    );
    assert!(
        ended(&requests[4]) + Duration::from_secs(1) <= requests[5].at,
        "the request after the give-up came before check_interval"
    );

    let puts = statuses(
        &job_requests(&env.gitlab, id)
            .into_iter()
            .filter(|r| r.endpoint == Endpoint::UpdateJob)
            .collect::<Vec<_>>(),
    );
    // The acknowledgement is tried again after the dropped connection, so the job was started; the
    // final state got through after a dropped connection and a request's five 503s.
    assert_eq!(puts[..3], [Some(503), None, Some(200)], "{puts:?}");
    assert_eq!(
        puts[3..],
        [
            None,
            Some(503),
            Some(503),
            Some(503),
            Some(503),
            Some(503),
            Some(200)
        ],
        "{puts:?}"
    );
    assert_eq!(done.final_updates, 1);
    assert!(done.started_at.is_some(), "the job was never acknowledged");
    let patches = statuses(
        &job_requests(&env.gitlab, id)
            .into_iter()
            .filter(|r| r.endpoint == Endpoint::PatchTrace)
            .collect::<Vec<_>>(),
    );
    assert_eq!(patches[..2], [Some(502), Some(503)], "{patches:?}");
    assert!(patches.contains(&None), "{patches:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_waited_out_as_retry_after_says() {
    let env = TestEnv::new().await;
    let id = env.gitlab.enqueue(job(&["echo rate limited"])).unwrap();
    env.gitlab
        .inject(Fault::rate_limited(Endpoint::RequestJob, 2));
    let mut gl = env.start(&env.config());
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Success, "{}", done.trace_text());
    let requests = records(&env, Endpoint::RequestJob);
    assert_eq!(
        statuses(&requests)[..2],
        [Some(429), Some(201)],
        "{requests:#?}"
    );
    let gap = requests[1]
        .at
        .duration_since(ended(&requests[0]))
        .unwrap_or_default();
    assert!(
        gap >= Duration::from_secs(2),
        "next attempt {gap:?} after the 429 with Retry-After: 2"
    );
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_on_job_request_is_retried() {
    let env = TestEnv::new().await;
    let id = env.gitlab.enqueue(job(&["echo after conflicts"])).unwrap();
    env.gitlab.inject(Fault::conflict().times(2));
    let mut gl = env.start(&env.config());
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Success, "{}", done.trace_text());
    let requests = records(&env, Endpoint::RequestJob);
    assert_eq!(
        statuses(&requests)[..3],
        [Some(409), Some(409), Some(201)],
        "{requests:#?}"
    );
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_picks_a_job_up_far_sooner_than_check_interval() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config().check_interval(10));
    // The first request has no cursor and cannot be held; the second, with the cursor, is held at
    // once rather than after check_interval.
    if let Err(e) = env
        .gitlab
        .wait_for_held_polls(1, Duration::from_secs(5))
        .await
    {
        panic!("no long poll held: {e}\n{}", gl.output());
    }
    let enqueued = Instant::now();
    let id = env.gitlab.enqueue(job(&["echo picked up"])).unwrap();
    let started = env
        .gitlab
        .wait_for(id, |j| j.status != JobStatus::Pending, WAIT)
        .await
        .unwrap();
    let took = enqueued.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "job started {took:?} after it was queued (check_interval is 10 s)"
    );
    assert!(started.started_at.is_some());
    let requests = records(&env, Endpoint::RequestJob);
    let got = requests
        .iter()
        .position(|r| r.status == Some(201))
        .expect("a 201");
    assert!(
        requests[..got].iter().any(|r| r.long_polled),
        "{requests:#?}"
    );
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Success);

    // Right after taking a job the runner is back in a long poll, not idling for check_interval.
    let finished = Instant::now();
    if let Err(e) = env
        .gitlab
        .wait_for_held_polls(1, Duration::from_secs(3))
        .await
    {
        panic!(
            "no long poll held {:?} after the job: {e}\n{}",
            finished.elapsed(),
            gl.output()
        );
    }
    let enqueued = Instant::now();
    let id = env.gitlab.enqueue(job(&["echo second"])).unwrap();
    env.gitlab
        .wait_for(id, |j| j.status != JobStatus::Pending, WAIT)
        .await
        .unwrap();
    assert!(
        enqueued.elapsed() < Duration::from_secs(2),
        "the second job started {:?} after it was queued",
        enqueued.elapsed()
    );
    env.finished(&gl, id, WAIT).await;
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_come_back_at_once_do_not_make_the_runner_spin() {
    let env = TestEnv::with_options(options().long_poll(Duration::from_secs(1))).await;
    let mut gl = env.start(&env.config());
    if let Err(e) = env.gitlab.wait_for_held_polls(1, WAIT).await {
        panic!("no long poll held: {e}\n{}", gl.output());
    }
    // A proxy that answers every job request at once with a bare 204, as a released long poll.
    env.gitlab
        .inject(Fault::respond(Endpoint::RequestJob, 204).times(9));
    let records = env
        .gitlab
        .wait_for_requests(
            |r| r.iter().filter(|r| r.fault.is_some()).count() >= 9,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gl.output()));
    let quick: Vec<&RequestRecord> = records.iter().filter(|r| r.fault.is_some()).collect();
    for w in quick.windows(4) {
        let span = w[3].at.duration_since(w[0].at).unwrap_or_default();
        assert!(
            span >= Duration::from_secs(1),
            "four job requests within {span:?}: the runner spins on instant answers"
        );
    }
    gl.stop().await;
}
