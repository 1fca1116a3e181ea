//! Tokens at start-up and when GitLab stops accepting them (catalogue T1–T3).

use crate::support::*;
use glrunner_coordinator::{Endpoint, JobStatus, RequestRecord};
use std::time::Duration;

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

async fn readiness(addr: &str) -> (u16, String) {
    let resp = http()
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .expect("/health/ready answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn forbidden_requests(records: &[RequestRecord]) -> Vec<RequestRecord> {
    records
        .iter()
        .filter(|r| r.endpoint == Endpoint::RequestJob && r.status == Some(403))
        .cloned()
        .collect()
}

/// Time between the end of one request and the start of the next.
fn gap(a: &RequestRecord, b: &RequestRecord) -> Duration {
    b.at.duration_since(a.at + a.duration).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_cannot_take_jobs_are_refused_before_any_request() {
    let env = TestEnv::new().await;
    let cases = [
        (
            "GR1348941aBcDeFgHiJkLmNoPqRsT",
            "runner registration token (GR1348941",
            "glrunner register --url <url> --registration-token",
        ),
        (
            "glpat-aBcDeFgHiJkLmNoPqRsT",
            "personal access token (glpat-)",
            "create a runner in GitLab",
        ),
        (
            "glcbt-64_aBcDeFgHiJkLmNoPqRsT",
            "CI/CD job token (glcbt-)",
            "create a runner in GitLab",
        ),
    ];
    for (token, kind, fix) in cases {
        let cfg = RunConfig::new(env.gitlab.url(), token);
        let mut gl = env.start(&cfg);
        let status = gl.exited(Duration::from_secs(10)).await;
        let out = gl.output();
        assert_eq!(status.code(), Some(78), "{token}: {out}");
        assert!(out.contains(kind), "{token}: {out}");
        assert!(out.contains(fix), "{token}: {out}");
        assert!(out.contains("glrt-"), "{token}: {out}");
        assert!(out.contains("config.toml:"), "names the place: {out}");
        assert!(!out.contains(token), "the token is printed: {out}");
    }
    assert!(
        env.gitlab.requests().is_empty(),
        "{:#?}",
        env.gitlab.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_runner_token_is_explained_and_backed_off_exponentially() {
    let env = TestEnv::new().await;
    let token = "glrt-t1_NotKnownToThisGitLab42";
    let mut gl = env.start(&RunConfig::new(env.gitlab.url(), token));
    let first = gl.wait_for_log("403 Forbidden", WAIT).await;
    let system_id = env.system_id();
    assert!(
        first.contains("GitLab rejected the token (403 Forbidden)"),
        "{first}"
    );
    assert!(
        first.contains("glrt-, created in GitLab"),
        "token kind: {first}"
    );
    assert!(first.contains(&system_id), "system_id {system_id}: {first}");
    assert!(first.contains("does not know this token"), "{first}");
    assert!(first.contains("Fix:"), "{first}");
    assert!(first.contains("Next attempt in 2s"), "{first}");

    let records = env
        .gitlab
        .wait_for_requests(|r| forbidden_requests(r).len() >= 3, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gl.output()));
    let forbidden = forbidden_requests(&records);
    let (g1, g2) = (
        gap(&forbidden[0], &forbidden[1]),
        gap(&forbidden[1], &forbidden[2]),
    );
    assert!(g1 >= Duration::from_secs(2), "first backoff {g1:?}");
    assert!(g2 > g1, "the backoff grows: {g1:?} then {g2:?}");
    assert!(g2 >= Duration::from_secs(4), "second backoff {g2:?}");
    gl.wait_for_log("next attempt in 4s", WAIT).await;
    gl.stop().await;
    assert!(
        !gl.output().contains("NotKnownToThisGitLab42"),
        "token in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revoked_mid_run_is_explained_and_readiness_fails() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config().listen("127.0.0.1:0"));
    let addr = gl.listen_addr().await;
    let id = env
        .gitlab
        .enqueue(job(&["echo before the revocation"]))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Success);
    let (status, body) = readiness(&addr).await;
    assert_eq!(status, 200, "{body}");
    // The manager's system_id labels its metrics (catalogue T6).
    let metrics = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap_or_default();
    assert!(
        metrics.contains(&format!("system_id=\"{}\"", env.system_id())),
        "{metrics}"
    );

    assert!(env.gitlab.revoke_runner(env.token()));
    let text = gl.wait_for_log("403 Forbidden", WAIT).await;
    let system_id = env.system_id();
    assert!(text.contains("The token worked before"), "{text}");
    assert!(text.contains("deleted in GitLab"), "{text}");
    assert!(text.contains("reset"), "{text}");
    assert!(text.contains(&system_id), "{text}");
    assert!(text.contains("Next attempt in"), "{text}");

    let (status, body) = readiness(&addr).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("e2e"), "names the runner: {body}");

    let records = env
        .gitlab
        .wait_for_requests(|r| forbidden_requests(r).len() >= 2, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gl.output()));
    let forbidden = forbidden_requests(&records);
    assert!(
        gap(&forbidden[0], &forbidden[1]) >= Duration::from_secs(2),
        "no backoff after the 403"
    );
    gl.stop().await;
    assert!(!gl.output().contains(env.token()), "token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_a_file_or_the_environment_works_and_never_reaches_jobs() {
    let env = TestEnv::new().await;
    // token_file (a mounted Secret, catalogue S4).
    let token_file = env.path("runner-token");
    std::fs::write(&token_file, format!("{}\n", env.token())).unwrap();
    let mut cfg = env
        .config()
        .runner_line(&format!("token_file = {:?}", path_str(&token_file)));
    cfg.runners[0].token = String::new();
    let mut gl = env.start(&cfg);
    let id = env
        .gitlab
        .enqueue(job(&["echo token from a file"]))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Success, "{}", done.trace_text());
    gl.stop().await;

    // An environment variable named in config.toml; jobs must not inherit it.
    let cfg = RunConfig::new(env.gitlab.url(), "${E2E_RUNNER_TOKEN}");
    let mut gl = env.start_with_env(&cfg, &[("E2E_RUNNER_TOKEN", env.token())]);
    let id = env
        .gitlab
        .enqueue(job(&[
            "echo \"token variable in the job: ${E2E_RUNNER_TOKEN:-absent}\"",
            "echo \"glrt- values in the job's environment: $(env | grep -c glrt-)\"",
        ]))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Success, "{trace}");
    assert!(
        trace.contains("\ntoken variable in the job: absent\n"),
        "{trace}"
    );
    assert!(
        trace.contains("\nglrt- values in the job's environment: 0\n"),
        "{trace}"
    );
    gl.stop().await;
    assert!(!gl.output().contains(env.token()));
}
