//! Helpers shared by the coordinator's integration tests: a plain reqwest client and the request bodies
//! a runner sends.
#![allow(dead_code)]

use glrunner_coordinator::{Coordinator, Options};
use reqwest::{Client, Response};
use serde_json::{Value, json};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(10);

pub async fn start(options: Options) -> Coordinator {
    Coordinator::start(options)
        .await
        .expect("coordinator starts on loopback")
}

pub fn http() -> Client {
    // reqwest is built without a default crypto provider; plain HTTP does not use it, but the
    // client builder wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// `info` as gitlab-runner sends it, with exactly these features true.
pub fn info(features: &[&str]) -> Value {
    let features: serde_json::Map<String, Value> = features
        .iter()
        .map(|f| ((*f).to_owned(), Value::Bool(true)))
        .collect();
    json!({
        "name": "gitlab-runner", "version": "18.5.0", "revision": "abcd1234",
        "platform": "linux", "architecture": "amd64", "executor": "shell", "shell": "bash",
        "features": features, "config": {"gpus": ""}
    })
}

/// Everything a current runner advertises except two-phase commit.
pub const ALL: &[&str] = &[
    "variables",
    "image",
    "services",
    "artifacts",
    "cache",
    "fallback_cache_keys",
    "upload_multiple_artifacts",
    "upload_raw_artifacts",
    "refspecs",
    "masking",
    "raw_variables",
    "artifacts_exclude",
    "multi_build_steps",
    "trace_reset",
    "trace_checksum",
    "trace_size",
    "cancelable",
    "return_exit_code",
    "cancel_gracefully",
];

pub fn api(c: &Coordinator, path: &str) -> String {
    format!("{}/api/v4/{path}", c.url())
}

pub async fn request_job(
    http: &Client,
    c: &Coordinator,
    token: &str,
    last_update: Option<&str>,
    features: &[&str],
) -> Response {
    let mut body = json!({"token": token, "system_id": "s_0123456789ab", "info": info(features)});
    if let Some(l) = last_update {
        body["last_update"] = l.into();
    }
    http.post(api(c, "jobs/request"))
        .header("Runner-Token", token)
        .json(&body)
        .send()
        .await
        .expect("jobs/request answered")
}

/// Request a job and expect one (201).
pub async fn take_job(http: &Client, c: &Coordinator, token: &str, features: &[&str]) -> Value {
    let resp = request_job(http, c, token, None, features).await;
    assert_eq!(resp.status(), 201, "expected a job");
    resp.json().await.expect("job JSON")
}

pub async fn put(
    http: &Client,
    c: &Coordinator,
    id: i64,
    token: &str,
    mut body: Value,
) -> Response {
    body["token"] = token.into();
    http.put(api(c, &format!("jobs/{id}")))
        .header("Job-Token", token)
        .json(&body)
        .send()
        .await
        .expect("PUT answered")
}

pub async fn patch(
    http: &Client,
    c: &Coordinator,
    id: i64,
    token: &str,
    range: Option<&str>,
    data: &[u8],
) -> Response {
    let mut req = http
        .patch(api(c, &format!("jobs/{id}/trace")))
        .header("Job-Token", token)
        .header("Content-Type", "text/plain")
        .body(data.to_vec());
    if let Some(r) = range {
        req = req.header("Content-Range", r);
    }
    req.send().await.expect("PATCH answered")
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub fn job_id(job: &Value) -> i64 {
    job["id"].as_i64().expect("job id")
}

pub fn job_token(job: &Value) -> String {
    job["token"].as_str().expect("job token").to_owned()
}

/// Start the `glrunner-coordinator` binary with `args` and read the first `lines` lines it prints
/// (each within [`WAIT`]). The child is killed when dropped.
pub async fn start_binary(args: &[String], lines: usize) -> (tokio::process::Child, Vec<String>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_glrunner-coordinator"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::with_capacity(lines);
    for _ in 0..lines {
        let line = tokio::time::timeout(WAIT, out.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        printed.push(line);
    }
    (child, printed)
}
