//! The retry policy against a real HTTP server: which statuses are retried, how many attempts, and that the
//! waits the server asks for are honoured. Transport errors come back at once, explained.

mod support;

use glrunner_gitlab::{ApiError, ClientSettings, GitLabClient, JobRequestOutcome};
use glrunner_protocol::Secret;
use glrunner_protocol::request::{JobRequest, JobState, UpdateJobRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Reply, Server};

fn job_request() -> JobRequest {
    JobRequest {
        token: Secret::new("glrt-retrytest"),
        ..Default::default()
    }
}

#[tokio::test]
async fn retriable_statuses_are_tried_again() {
    for status in [408, 429, 500, 502, 503, 504, 512, 599] {
        let server = Server::http(move |_, index| match index {
            0 => Reply::status(status).header("Retry-After", "0"),
            _ => Reply::status(204),
        })
        .await;
        let reply = server
            .client()
            .request_job(&job_request())
            .await
            .expect("request");
        assert!(
            matches!(reply.outcome, JobRequestOutcome::NoJob),
            "{status}: {reply:?}"
        );
        assert!(reply.saw_retriable, "{status} is recorded as retriable");
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{status} retried once");
        assert_eq!(
            requests[0].header("X-Request-Id"),
            requests[1].header("X-Request-Id"),
            "one request id across attempts"
        );
        assert_eq!(requests[0].body, requests[1].body, "the body is sent again");
    }
}

#[tokio::test]
async fn other_statuses_are_not_retried() {
    for status in [501, 505, 508, 511, 400, 404] {
        let server =
            Server::http(move |_, _| Reply::status(status).header("Retry-After", "0")).await;
        let reply = server
            .client()
            .request_job(&job_request())
            .await
            .expect("request");
        match reply.outcome {
            JobRequestOutcome::Unexpected { status: s, .. } => assert_eq!(s, status),
            other => panic!("{status}: {other:?}"),
        }
        assert!(!reply.saw_retriable, "{status}");
        assert_eq!(server.requests().len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn at_most_five_attempts_with_growing_backoff() {
    let server = Server::http(|_, _| Reply::status(503)).await;
    let reply = server
        .client()
        .request_job(&job_request())
        .await
        .expect("request");
    assert!(
        matches!(
            reply.outcome,
            JobRequestOutcome::Unexpected { status: 503, .. }
        ),
        "{reply:?}"
    );
    assert!(reply.saw_retriable);
    let requests = server.requests();
    assert_eq!(requests.len(), 5, "5 attempts in total");
    for pair in requests.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        // Backoff starts at 100 ms; jitter never goes below it.
        assert!(gap >= Duration::from_millis(95), "gap {gap:?}");
    }
    let total = requests[4].at.duration_since(requests[0].at);
    assert!(
        total < Duration::from_secs(5),
        "backoff stays small for 5 attempts: {total:?}"
    );
}

#[tokio::test]
async fn rate_limited_after_every_attempt_reports_the_wait() {
    let server = Server::http(|_, _| Reply::status(429).header("Retry-After", "0")).await;
    let reply = server
        .client()
        .request_job(&job_request())
        .await
        .expect("request");
    match reply.outcome {
        JobRequestOutcome::RateLimited { retry_after } => {
            assert_eq!(retry_after, Some(Duration::ZERO))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 5);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = Server::http(|_, index| match index {
        0 => Reply::status(429).header("Retry-After", "1"),
        _ => Reply::status(204),
    })
    .await;
    server
        .client()
        .request_job(&job_request())
        .await
        .expect("request");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= Duration::from_secs(1),
        "second attempt came after {gap:?}, Retry-After said 1 s"
    );
}

#[tokio::test]
async fn rate_limit_reset_time_is_honoured_before_retry_after() {
    // Whole seconds, as an HTTP date carries them; at least one second ahead.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let reset = UNIX_EPOCH + Duration::from_secs(now + 2);
    let reset_header = httpdate::fmt_http_date(reset);
    let server = Server::http(move |_, index| match index {
        0 => Reply::status(503)
            .header("RateLimit-ResetTime", &reset_header)
            .header("Retry-After", "0"),
        _ => Reply::status(200).header("Job-Status", "running"),
    })
    .await;
    let req = UpdateJobRequest {
        token: Secret::new("glcbt-x"),
        state: JobState::Running,
        ..Default::default()
    };
    let reply = server.client().update_job(1, &req).await.expect("update");
    assert_eq!(reply.status, 200);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].wall >= reset,
        "second attempt at {:?}, reset time {reset:?}",
        requests[1].wall
    );
}

#[tokio::test]
async fn connection_refused_is_explained_and_not_retried() {
    let addr = support::closed_port().await;
    let client = GitLabClient::new(ClientSettings {
        url: format!("http://{addr}"),
        ..Default::default()
    })
    .expect("client");
    let error = client
        .request_job(&job_request())
        .await
        .expect_err("refused");
    assert!(
        matches!(error, ApiError::ConnectionRefused { .. }),
        "{error:?}"
    );
    assert!(error.is_transport());
    let text = error.to_string();
    for part in [
        "POST /api/v4/jobs/request",
        "refused",
        &addr.to_string(),
        "is `url` right",
    ] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
}

#[tokio::test]
async fn a_dropped_connection_is_one_attempt() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        // Accept and hang up without answering; bounded in count and time.
        for _ in 0..10 {
            match tokio::time::timeout(Duration::from_secs(30), listener.accept()).await {
                Ok(Ok((stream, _))) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
                _ => break,
            }
        }
    });
    let client = GitLabClient::new(ClientSettings {
        url: format!("http://{addr}/"),
        ..Default::default()
    })
    .expect("client");
    let error = client
        .request_job(&job_request())
        .await
        .expect_err("dropped");
    task.abort();
    assert!(matches!(error, ApiError::Connection { .. }), "{error:?}");
    assert!(
        error.to_string().contains("POST /api/v4/jobs/request"),
        "{error}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "transport errors are left to the caller's loop"
    );
}
