//! Long polling, injected faults (including a dropped connection seen from a raw TCP client), the
//! request log, the HTTP admin API and the binary.

mod common;

use common::*;
use glrunner_coordinator::{Endpoint, Fault, JobSpec, JobStatus, Options, RunnerSpec};
use serde_json::{Value, json};
use std::io::ErrorKind;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

// Long polling -----------------------------------------------------------------------------------

#[tokio::test]
async fn long_poll_is_held_and_released_by_enqueue() {
    let c = start(Options::default().long_poll(Duration::from_secs(60))).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose().to_owned();

    let first = request_job(&http, &c, &token, None, ALL).await;
    assert_eq!(first.status(), 204);
    assert_eq!(
        header(&first, "Gitlab-Ci-Builds-Polling").as_deref(),
        Some("yes")
    );
    let cursor = header(&first, "X-GitLab-Last-Update").unwrap();

    let held = {
        let (http, url, token, cursor) = (
            http.clone(),
            api(&c, "jobs/request"),
            token.clone(),
            cursor.clone(),
        );
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"token": token, "last_update": cursor, "info": info(ALL)}))
                .send()
                .await
        })
    };
    c.wait_for_held_polls(1, WAIT).await.unwrap();
    assert!(!held.is_finished(), "the request is held");

    let started = Instant::now();
    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let released = tokio::time::timeout(WAIT, held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "released by the enqueue, not by the timeout"
    );
    assert_eq!(released.status(), 204);
    assert!(
        header(&released, "X-GitLab-Last-Update").is_none(),
        "Workhorse's bare 204"
    );
    assert_eq!(c.held_polls(), 0);

    // The runner re-requests with its old cursor; it no longer matches, so the job is handed out.
    let job = request_job(&http, &c, &token, Some(&cursor), ALL).await;
    assert_eq!(job.status(), 201);
    assert_eq!(job_id(&job.json().await.unwrap()), id);
    let polled: Vec<_> = c.requests().into_iter().filter(|r| r.long_polled).collect();
    assert_eq!(polled.len(), 1);
    assert_eq!(polled[0].status, Some(204));
}

#[tokio::test]
async fn long_poll_times_out_with_a_bare_204() {
    let window = Duration::from_millis(400);
    let c = start(Options::default().long_poll(window)).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose();
    let cursor = header(
        &request_job(&http, &c, token, None, ALL).await,
        "X-GitLab-Last-Update",
    )
    .unwrap();

    let started = Instant::now();
    let r = request_job(&http, &c, token, Some(&cursor), ALL).await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 204);
    assert!(header(&r, "X-GitLab-Last-Update").is_none());
    assert!(waited >= window, "held for the whole window: {waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test]
async fn long_poll_needs_json_with_token_and_last_update() {
    let c = start(Options::default().long_poll(Duration::from_secs(60))).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose();
    let cursor = header(
        &request_job(&http, &c, token, None, ALL).await,
        "X-GitLab-Last-Update",
    )
    .unwrap();

    // A form body is proxied straight to the queue (which answers from its cursor at once).
    let r = http
        .post(api(&c, "jobs/request"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&last_update={cursor}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "X-GitLab-Last-Update").as_deref(),
        Some(cursor.as_str())
    );
    // A stale cursor is not held either.
    let r = request_job(
        &http,
        &c,
        token,
        Some("0123456789abcdef0123456789abcdef"),
        ALL,
    )
    .await;
    assert_eq!(
        header(&r, "X-GitLab-Last-Update").as_deref(),
        Some(cursor.as_str())
    );
    // An unknown token has no cursor to watch: straight to the 403.
    let r = request_job(&http, &c, "glrt-t1_unknown0000000000", Some(&cursor), ALL).await;
    assert_eq!(r.status(), 403);
    assert_eq!(c.counts().total(Endpoint::RequestJob), 4);
    assert!(c.requests().iter().all(|r| !r.long_polled));
}

// Faults -----------------------------------------------------------------------------------------

#[tokio::test]
async fn injected_statuses_on_job_request() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose();
    c.enqueue(JobSpec::script(["true"])).unwrap();
    c.inject(Fault::conflict().times(2));
    c.inject(Fault::rate_limited(Endpoint::RequestJob, 7));
    c.inject(
        Fault::respond(Endpoint::RequestJob, 503)
            .header("RateLimit-ResetTime", "Wed, 21 Oct 2026 07:28:00 GMT"),
    );

    for _ in 0..2 {
        let r = request_job(&http, &c, token, None, ALL).await;
        assert_eq!(r.status(), 409);
        assert!(header(&r, "X-GitLab-Last-Update").is_none());
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"message": "409 Conflict"})
        );
    }
    let r = request_job(&http, &c, token, None, ALL).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "Retry-After").as_deref(), Some("7"));
    let r = request_job(&http, &c, token, None, ALL).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        header(&r, "RateLimit-ResetTime").as_deref(),
        Some("Wed, 21 Oct 2026 07:28:00 GMT")
    );
    assert!(c.faults().is_empty());
    // Faults answered before the queue: the job is still there for the next request.
    assert_eq!(request_job(&http, &c, token, None, ALL).await.status(), 201);

    let counts = c.counts();
    assert_eq!(counts.status(Endpoint::RequestJob, 409), 2);
    assert_eq!(counts.status(Endpoint::RequestJob, 201), 1);
    let faulted = c.requests().iter().filter(|r| r.fault.is_some()).count();
    assert_eq!(faulted, 4);
}

#[tokio::test]
async fn dropped_connection_sends_no_bytes() {
    let c = start(Options::default()).await;
    let runner = c.add_runner(RunnerSpec::created());
    c.inject(Fault::drop_connection(Endpoint::RequestJob));

    let body = json!({"token": runner.token.expose()}).to_string();
    let request = format!(
        "POST /api/v4/jobs/request HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        c.addr(),
        body.len()
    );
    let mut tcp = TcpStream::connect(c.addr()).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut received))
        .await
        .expect("closed in time");
    match read {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(
        received.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&received)
    );
    let log = c.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, None);
    assert_eq!(log[0].fault.as_deref(), Some("drop connection"));
    assert_eq!(c.counts().endpoints[&Endpoint::RequestJob].dropped, 1);

    // The fault is used up: the same request on a new connection is answered.
    let mut tcp = TcpStream::connect(c.addr()).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut status_line = String::new();
    BufReader::new(tcp)
        .read_line(&mut status_line)
        .await
        .unwrap();
    assert!(status_line.starts_with("HTTP/1.1 204"), "{status_line}");
}

#[tokio::test]
async fn delayed_answer() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let delay = Duration::from_millis(300);
    c.inject(Fault::delay(Endpoint::VerifyRunner, delay));
    let started = Instant::now();
    let r = http
        .post(api(&c, "runners/verify"))
        .json(&json!({"token": runner.token.expose()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= delay);
    assert_eq!(c.requests()[0].fault.as_deref(), Some("delay 300ms"));
}

#[tokio::test]
async fn injected_416_stores_nothing_and_runner_resyncs() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let jt = job_token(&job);
    assert_eq!(
        patch(&http, &c, id, &jt, Some("0-2"), b"abc")
            .await
            .status(),
        202
    );
    c.inject(Fault::trace_range_mismatch().job(id));
    let r = patch(&http, &c, id, &jt, Some("3-5"), b"def").await;
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "Range").as_deref(), Some("0-3"));
    assert_eq!(c.job(id).unwrap().trace, b"abc");
    let r = patch(&http, &c, id, &jt, Some("3-5"), b"def").await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "Range").as_deref(), Some("0-6"));
}

#[tokio::test]
async fn final_update_202_until_accepted() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let jt = job_token(&job);
    c.inject(Fault::final_update_accepted(2).job(id).times(2));

    // A running heartbeat does not consume the final-update fault.
    assert_eq!(
        put(&http, &c, id, &jt, json!({"state": "running"}))
            .await
            .status(),
        200
    );
    for _ in 0..2 {
        let r = put(&http, &c, id, &jt, json!({"state": "success"})).await;
        assert_eq!(r.status(), 202);
        assert_eq!(
            header(&r, "X-GitLab-Trace-Update-Interval").as_deref(),
            Some("2")
        );
        assert_eq!(header(&r, "Job-Status").as_deref(), Some("running"));
        assert_eq!(r.text().await.unwrap(), "202");
        assert_eq!(
            c.job(id).unwrap().status,
            JobStatus::Running,
            "nothing applied yet"
        );
    }
    let r = put(&http, &c, id, &jt, json!({"state": "success"})).await;
    assert_eq!(r.status(), 200);
    let snap = c.job(id).unwrap();
    assert_eq!(snap.status, JobStatus::Success);
    assert_eq!(snap.final_updates, 3);
}

#[tokio::test]
async fn final_update_412_then_trace_reset() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let id = c.enqueue(JobSpec::script(["true"])).unwrap();
    let job = take_job(&http, &c, runner.token.expose(), ALL).await;
    let jt = job_token(&job);
    assert_eq!(
        patch(&http, &c, id, &jt, Some("0-4"), b"GARBL")
            .await
            .status(),
        202
    );
    c.inject(Fault::final_update_trace_invalid());
    let r = put(
        &http,
        &c,
        id,
        &jt,
        json!({"state": "success", "output": {"checksum": "crc32:00000000", "bytesize": 5}}),
    )
    .await;
    assert_eq!(r.status(), 412);
    assert_eq!(c.job(id).unwrap().status, JobStatus::Running);
    // The runner re-sends its whole trace from 0, which replaces what was stored.
    let r = patch(&http, &c, id, &jt, Some("0-4"), b"clean").await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "Range").as_deref(), Some("0-5"));
    let crc = glrunner_protocol::checksum_string(crc32fast::hash(b"clean"));
    let r = put(
        &http,
        &c,
        id,
        &jt,
        json!({"state": "success", "output": {"checksum": crc, "bytesize": 5}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let snap = c.job(id).unwrap();
    assert_eq!(snap.trace, b"clean");
    assert!(snap.checksum_matches());
    // Only once: a later PATCH at 0 is an ordinary offset mismatch again.
    assert_eq!(snap.status, JobStatus::Success);
}

#[tokio::test]
async fn faults_can_target_one_job() {
    let c = start(Options::default()).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let a = c.enqueue(JobSpec::script(["a"])).unwrap();
    let b = c.enqueue(JobSpec::script(["b"])).unwrap();
    let ja = take_job(&http, &c, runner.token.expose(), ALL).await;
    let jb = take_job(&http, &c, runner.token.expose(), ALL).await;
    c.inject(Fault::respond(Endpoint::PatchTrace, 500).job(b));
    assert_eq!(
        patch(&http, &c, a, &job_token(&ja), Some("0-0"), b"a")
            .await
            .status(),
        202
    );
    assert_eq!(
        patch(&http, &c, b, &job_token(&jb), Some("0-0"), b"b")
            .await
            .status(),
        500
    );
    assert_eq!(
        patch(&http, &c, b, &job_token(&jb), Some("0-0"), b"b")
            .await
            .status(),
        202
    );
}

// Admin API and binary ---------------------------------------------------------------------------

#[tokio::test]
async fn admin_http_api_drives_a_job() {
    let c = start(Options::default()).await;
    let http = http();
    let admin = |p: &str| format!("{}/-/admin/{p}", c.url());

    let r = http
        .post(admin("runners"))
        .json(&json!({"kind": "created", "description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let runner: Value = r.json().await.unwrap();
    let token = runner["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("glrt-"));

    let r = http
        .post(admin("jobs"))
        .json(&json!({"script": ["echo hi"], "name": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let r = http
        .post(admin("jobs"))
        .json(&json!({"dependencies": [1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("dependency job 1"));

    let r = http
        .post(admin("faults"))
        .json(&json!({"endpoint": "request_job", "times": 1, "action": {"kind": "respond", "status": 409}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        request_job(&http, &c, &token, None, ALL).await.status(),
        409
    );

    let job = take_job(&http, &c, &token, ALL).await;
    assert_eq!(job_id(&job), id);
    let jt = job_token(&job);
    assert_eq!(
        patch(&http, &c, id, &jt, Some("0-2"), b"hi\n")
            .await
            .status(),
        202
    );

    let waiter = {
        let (http, url) = (http.clone(), admin(&format!("jobs/{id}/wait?timeout=10s")));
        tokio::spawn(async move { http.get(url).send().await })
    };
    assert_eq!(
        put(&http, &c, id, &jt, json!({"state": "success"}))
            .await
            .status(),
        200
    );
    let done: Value = waiter.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(done["status"], "success");
    assert!(done.get("token").is_none(), "no token in admin snapshots");

    let trace = http
        .get(admin(&format!("jobs/{id}/trace")))
        .send()
        .await
        .unwrap();
    assert_eq!(trace.text().await.unwrap(), "hi\n");
    let payload: Value = http
        .get(admin(&format!("jobs/{id}/payload")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(payload["job_info"]["name"], "admin");
    let runners: Value = http
        .get(admin("runners"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runners[0]["managers"][0]["system_id"], "s_0123456789ab");
    let counts: Value = http
        .get(admin("counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["endpoints"]["request_job"]["by_status"]["409"], 1);
    let requests: Value = http
        .get(admin("requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !requests.to_string().contains(&jt),
        "the log never holds token values"
    );

    let id2 = c.enqueue(JobSpec::script(["sleep 100"])).unwrap();
    let r: Value = http
        .post(admin(&format!("jobs/{id2}/cancel")))
        .json(&json!({"graceful": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "canceled", "pending jobs cancel outright");
    let r = http.get(admin("jobs/99999")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(admin(&format!("jobs/{id}/wait?timeout=soon")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn binary_prints_its_url_and_tokens_and_serves() {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--runner-token",
        "glrt-t1_binarytesttoken0000",
        "--long-poll",
        "0",
        "--trace-interval",
        "3",
    ]
    .map(String::from);
    // Three lines: URL, admin URL, the runner token.
    let (mut child, lines) = start_binary(&args, 3).await;
    let mut url = None;
    let mut token_line = None;
    for line in lines {
        if let Some(u) = line.strip_prefix("glrunner-coordinator listening on ") {
            url = Some(u.to_owned());
        }
        if line.contains("token:") {
            token_line = Some(line);
        }
    }
    let url = url.expect("URL printed");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(token_line.unwrap().ends_with("glrt-t1_binarytesttoken0000"));

    let http = http();
    let r = http
        .post(format!("{url}/-/admin/jobs"))
        .json(&json!({"script": ["echo from binary"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{url}/api/v4/jobs/request"))
        .json(&json!({"token": "glrt-t1_binarytesttoken0000", "info": info(ALL)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["steps"][0]["script"], json!(["echo from binary"]));
    let r = http
        .patch(format!("{url}/api/v4/jobs/{}/trace", job_id(&job)))
        .header("Job-Token", job_token(&job))
        .header("Content-Range", "0-0")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "X-GitLab-Trace-Update-Interval").as_deref(),
        Some("3")
    );

    child.start_kill().unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
}

#[tokio::test]
async fn refuses_to_listen_beyond_loopback() {
    let err = glrunner_coordinator::Coordinator::start(
        Options::default().listen("0.0.0.0:0".parse().unwrap()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn dropping_the_coordinator_closes_the_port() {
    let c = start(Options::default().long_poll(Duration::from_secs(60))).await;
    let http = http();
    let runner = c.add_runner(RunnerSpec::created());
    let token = runner.token.expose().to_owned();
    let cursor = header(
        &request_job(&http, &c, &token, None, ALL).await,
        "X-GitLab-Last-Update",
    )
    .unwrap();
    let held = {
        let (http, url) = (http.clone(), api(&c, "jobs/request"));
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"token": token, "last_update": cursor}))
                .send()
                .await
        })
    };
    c.wait_for_held_polls(1, WAIT).await.unwrap();
    let addr = c.addr();
    drop(c);
    let result = tokio::time::timeout(WAIT, held)
        .await
        .expect("held request ends")
        .unwrap();
    assert!(result.is_err(), "the held request's connection was closed");
    let refused = tokio::time::timeout(WAIT, async {
        // The listener closes when the server task ends; bounded retries while the abort lands.
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    })
    .await
    .unwrap();
    assert!(refused, "nothing listens after drop");
}
