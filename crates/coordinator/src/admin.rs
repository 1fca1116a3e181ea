//! The HTTP admin API under `/-/admin/`: the in-process operations as JSON, for the binary, manual runs
//! and benchmarks.
//!
//! | method | path | body / query | answer |
//! |---|---|---|---|
//! | GET | `/-/admin/runners` | | runners with managers |
//! | POST | `/-/admin/runners` | `RunnerSpec` | `{id, token}` |
//! | POST | `/-/admin/runners/revoke` | `{token}` | `{revoked}` |
//! | POST | `/-/admin/runners/{id}/pause` | `{paused}` | `{paused}` |
//! | POST | `/-/admin/registration_tokens` | `{token?}` | `{token}` |
//! | PUT | `/-/admin/registration` | `{enabled}` | `{enabled}` |
//! | GET / POST | `/-/admin/jobs` | `JobSpec` | snapshots / `{id}` |
//! | GET | `/-/admin/jobs/{id}` | | snapshot |
//! | GET | `/-/admin/jobs/{id}/trace` | | stored trace bytes |
//! | GET | `/-/admin/jobs/{id}/payload` | | payload as handed out |
//! | GET | `/-/admin/jobs/{id}/artifacts/{type}` | | artifact bytes |
//! | GET | `/-/admin/jobs/{id}/wait` | `?timeout=30s&status=success` (default: finished) | snapshot, 408 on timeout |
//! | POST | `/-/admin/jobs/{id}/cancel` | `{graceful?}` | `{status}` |
//! | GET / POST / DELETE | `/-/admin/faults` | `Fault` | pending faults |
//! | GET | `/-/admin/requests`, `/-/admin/counts` | | request log, counts |

use crate::fault::Fault;
use crate::job::{JobSpec, JobStatus};
use crate::runner::RunnerSpec;
use crate::server::wait_for_job;
use crate::shared::Shared;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

type AdminState = State<Arc<Shared>>;

pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/-/admin/runners", get(runners).post(add_runner))
        .route("/-/admin/runners/revoke", post(revoke))
        .route("/-/admin/runners/{id}/pause", post(pause))
        .route("/-/admin/registration_tokens", post(add_registration_token))
        .route("/-/admin/registration", put(set_registration))
        .route("/-/admin/jobs", get(jobs).post(enqueue))
        .route("/-/admin/jobs/{id}", get(job))
        .route("/-/admin/jobs/{id}/trace", get(trace))
        .route("/-/admin/jobs/{id}/payload", get(payload))
        .route("/-/admin/jobs/{id}/artifacts/{artifact_type}", get(artifact))
        .route("/-/admin/jobs/{id}/wait", get(wait))
        .route("/-/admin/jobs/{id}/cancel", post(cancel))
        .route("/-/admin/faults", get(faults).post(inject).delete(clear_faults))
        .route("/-/admin/requests", get(requests))
        .route("/-/admin/counts", get(counts))
        .with_state(shared)
}

fn bad_request(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg.to_string()}))).into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": format!("{what} not found")}))).into_response()
}

/// A JSON body, or 400 saying what is wrong with it.
fn body<T: for<'de> Deserialize<'de> + Default>(raw: &[u8]) -> Result<T, Response> {
    if raw.trim_ascii().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(raw).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

async fn runners(State(shared): AdminState) -> Response {
    Json(shared.read(|s| s.runner_snapshots())).into_response()
}

async fn add_runner(State(shared): AdminState, raw: bytes::Bytes) -> Response {
    let spec: RunnerSpec = match body(&raw) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (id, token) = shared.update(|s| s.add_runner(&spec));
    (StatusCode::CREATED, Json(json!({"id": id, "token": token}))).into_response()
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct TokenBody {
    token: Option<String>,
}

async fn revoke(State(shared): AdminState, raw: bytes::Bytes) -> Response {
    let b: TokenBody = match body(&raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(token) = b.token else {
        return bad_request("body must be {\"token\": \"<runner token>\"}");
    };
    let revoked = shared.update(|s| s.revoke_token(&token));
    Json(json!({"revoked": revoked})).into_response()
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PauseBody {
    paused: Option<bool>,
}

async fn pause(State(shared): AdminState, Path(id): Path<i64>, raw: bytes::Bytes) -> Response {
    let b: PauseBody = match body(&raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let paused = b.paused.unwrap_or(true);
    if shared.update(|s| s.set_paused(id, paused)) {
        Json(json!({"paused": paused})).into_response()
    } else {
        not_found("runner")
    }
}

async fn add_registration_token(State(shared): AdminState, raw: bytes::Bytes) -> Response {
    let b: TokenBody = match body(&raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = shared.update(|s| s.add_registration_token(b.token));
    (StatusCode::CREATED, Json(json!({"token": token}))).into_response()
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct EnabledBody {
    enabled: bool,
}

async fn set_registration(State(shared): AdminState, raw: bytes::Bytes) -> Response {
    let b: EnabledBody = match body(&raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    shared.update(|s| s.set_registration_enabled(b.enabled));
    Json(json!({"enabled": b.enabled})).into_response()
}

async fn jobs(State(shared): AdminState) -> Response {
    let all: Vec<_> = shared.read(|s| s.job_ids().into_iter().filter_map(|id| s.snapshot(id)).collect());
    Json(all).into_response()
}

async fn enqueue(State(shared): AdminState, raw: bytes::Bytes) -> Response {
    let spec: JobSpec = match body(&raw) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match shared.update(|s| s.enqueue(spec)) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn job(State(shared): AdminState, Path(id): Path<i64>) -> Response {
    match shared.read(|s| s.snapshot(id)) {
        Some(j) => Json(j).into_response(),
        None => not_found("job"),
    }
}

async fn trace(State(shared): AdminState, Path(id): Path<i64>) -> Response {
    match shared.read(|s| s.snapshot(id)) {
        Some(j) => ([(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], j.trace).into_response(),
        None => not_found("job"),
    }
}

async fn payload(State(shared): AdminState, Path(id): Path<i64>) -> Response {
    match shared.read(|s| s.job_payload(id)) {
        Some(p) => Json(p).into_response(),
        None => not_found("payload (job unknown or not yet assigned)"),
    }
}

async fn artifact(State(shared): AdminState, Path((id, artifact_type)): Path<(i64, String)>) -> Response {
    match shared.read(|s| s.artifact_data(id, &artifact_type)) {
        Some(data) => ([(http::header::CONTENT_TYPE, "application/octet-stream")], data).into_response(),
        None => not_found("artifact"),
    }
}

#[derive(Deserialize)]
struct WaitQuery {
    timeout: Option<String>,
    status: Option<JobStatus>,
}

async fn wait(State(shared): AdminState, Path(id): Path<i64>, Query(q): Query<WaitQuery>) -> Response {
    let timeout = match q.timeout.as_deref().map(humantime::parse_duration) {
        None => Duration::from_secs(30),
        Some(Ok(d)) => d.min(Duration::from_secs(600)),
        Some(Err(e)) => return bad_request(format!("timeout: {e} (write it like 30s or 2m)")),
    };
    let status = q.status;
    let result = wait_for_job(
        &shared,
        id,
        |j| status.map_or(j.status.is_finished(), |s| j.status == s),
        timeout,
    )
    .await;
    match result {
        Ok(j) => Json(j).into_response(),
        Err(crate::WaitError::UnknownJob(_)) => not_found("job"),
        Err(e) => (StatusCode::REQUEST_TIMEOUT, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CancelBody {
    graceful: bool,
}

async fn cancel(State(shared): AdminState, Path(id): Path<i64>, raw: bytes::Bytes) -> Response {
    let b: CancelBody = match body(&raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let status = shared.update(|s| if b.graceful { s.cancel_gracefully(id) } else { s.cancel(id) });
    match status {
        Some(status) => Json(json!({"status": status})).into_response(),
        None => not_found("job"),
    }
}

async fn faults(State(shared): AdminState) -> Response {
    Json(shared.read(|s| s.faults.pending())).into_response()
}

async fn inject(State(shared): AdminState, raw: bytes::Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&raw) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("invalid fault: {e}")),
    };
    let pending = shared.update(|s| {
        s.faults.push(fault);
        s.faults.pending()
    });
    (StatusCode::CREATED, Json(pending)).into_response()
}

async fn clear_faults(State(shared): AdminState) -> Response {
    shared.update(|s| s.faults.clear());
    StatusCode::NO_CONTENT.into_response()
}

async fn requests(State(shared): AdminState) -> Response {
    Json(shared.read(|s| s.log.records())).into_response()
}

async fn counts(State(shared): AdminState) -> Response {
    Json(shared.read(|s| s.log.counts())).into_response()
}
