//! Runner lifecycle endpoints: register, verify, delete, delete manager, reset token.

use super::{
    ConnInfo, Params, Refusal, error, forbidden, json_reply, message, params, runner_token,
};
use crate::runner::RunnerSpec;
use crate::shared::Shared;
use crate::state::{DeleteManagerOutcome, RegisterOutcome, RunnerDetails};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::json;
use std::sync::Arc;

fn details_json(d: &RunnerDetails) -> serde_json::Value {
    json!({"id": d.id, "token": d.token, "token_expires_at": d.token_expires_at})
}

fn parse(headers: &HeaderMap, query: Option<String>, body: &Bytes) -> Result<Params, Refusal> {
    params(headers, query.as_deref(), body)
}

/// `POST /runners`: register with a registration token.
pub(super) async fn register(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let p = or_refuse!(parse(&headers, query, &body));
    let token = or_refuse!(runner_token(&p, &headers));
    let paused = p.bool("paused").or_else(|| p.bool("active").map(|a| !a));
    let spec = RunnerSpec {
        description: p.str("description").unwrap_or_default().to_owned(),
        paused: paused.unwrap_or(false),
        tags: p.list("tag_list"),
        maximum_timeout: p.int("maximum_timeout").and_then(|t| u64::try_from(t).ok()),
        ..RunnerSpec::default()
    };
    match shared.update(|s| s.register_runner(token, &spec)) {
        RegisterOutcome::Created(d) => json_reply(StatusCode::CREATED, &details_json(&d)),
        RegisterOutcome::Forbidden => forbidden(),
        RegisterOutcome::Gone => message(
            StatusCode::GONE,
            "410 Gone - runner registration disallowed",
        ),
    }
}

/// `POST /runners/verify`: 200 with the runner's details; creates or updates the manager.
pub(super) async fn verify(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let p = or_refuse!(parse(&headers, query, &body));
    let token = or_refuse!(runner_token(&p, &headers));
    let system_id = p.str("system_id");
    let info = p.get("info");
    match shared.update(|s| s.verify_runner(token, system_id, info, Some(conn.peer.ip()))) {
        Some(d) => json_reply(StatusCode::OK, &details_json(&d)),
        None => forbidden(),
    }
}

/// `DELETE /runners`: delete the runner and all its managers.
pub(super) async fn delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let p = or_refuse!(parse(&headers, query, &body));
    let token = or_refuse!(runner_token(&p, &headers));
    if shared.update(|s| s.delete_runner(token)) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        forbidden()
    }
}

/// `DELETE /runners/managers`: delete one manager (`system_id`) of a runner.
pub(super) async fn delete_manager(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let p = or_refuse!(parse(&headers, query, &body));
    let token = or_refuse!(runner_token(&p, &headers));
    let Some(system_id) = p.str("system_id") else {
        return error(StatusCode::BAD_REQUEST, "system_id is missing");
    };
    match shared.update(|s| s.delete_manager(token, system_id)) {
        DeleteManagerOutcome::Deleted => StatusCode::NO_CONTENT.into_response(),
        DeleteManagerOutcome::Forbidden => forbidden(),
        DeleteManagerOutcome::NotFound => {
            message(StatusCode::NOT_FOUND, "404 Runner manager Not Found")
        }
    }
}

/// `POST /runners/reset_authentication_token`: a new token; the old one is refused from now on.
pub(super) async fn reset_token(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let p = or_refuse!(parse(&headers, query, &body));
    let token = or_refuse!(runner_token(&p, &headers));
    match shared.update(|s| s.reset_token(token, Some(conn.peer.ip()))) {
        Some(d) => json_reply(
            StatusCode::CREATED,
            &json!({"token": d.token, "token_expires_at": d.token_expires_at}),
        ),
        None => forbidden(),
    }
}
