//! Job endpoints: `POST /jobs/request` (with Workhorse long polling), `PUT /jobs/:id` and
//! `PATCH /jobs/:id/trace`.

use super::{
    BUILDS_POLLING, ConnInfo, JOB_STATUS, LAST_UPDATE, Refusal, ReplyMeta, TRACE_INTERVAL, error,
    forbidden, job_token, json_reply, message, params, runner_token, with_header, with_meta,
};
use crate::job::JobStatus;
use crate::shared::Shared;
use crate::state::{
    JobForbidden, JobRequestOutcome, JobRequestParams, TraceOutcome, UpdateOutcome, UpdateParams,
};
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::Value;
use std::sync::Arc;

/// A job id from the path, or Grape's 400 for a non-integer.
pub(super) fn job_id(raw: &str) -> Result<i64, Refusal> {
    raw.parse()
        .map_err(|_| Refusal::BadRequest("id is invalid".to_owned()))
}

/// GitLab's 403 for job endpoints, with `Job-Status` when the token fits but the job is not executing.
pub(super) fn job_forbidden(f: &JobForbidden) -> Response {
    let resp = message(StatusCode::FORBIDDEN, f.reason);
    match f.status {
        Some(status) => with_header(resp, JOB_STATUS, status.as_str()),
        None => resp,
    }
}

fn status_text(code: StatusCode, body: &'static str, status: JobStatus) -> Response {
    with_header(super::text(code, body), JOB_STATUS, status.as_str())
}

/// Counts a long poll as held for as long as it lives (also when the connection goes away).
struct HeldPoll(Arc<Shared>);

impl HeldPoll {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.update(|s| s.held_polls += 1);
        Self(shared.clone())
    }
}

impl Drop for HeldPoll {
    fn drop(&mut self) {
        self.0
            .update(|s| s.held_polls = s.held_polls.saturating_sub(1));
    }
}

/// `POST /jobs/request`.
pub(super) async fn request(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let long_poll = shared.read(|s| s.options().long_poll);
    let resp = request_inner(&shared, &conn, &headers, query.as_deref(), &body, long_poll).await;
    if long_poll.is_some() {
        // Workhorse marks every answer that went through its long-polling handler.
        with_header(resp, BUILDS_POLLING, "yes")
    } else {
        resp
    }
}

async fn request_inner(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    long_poll: Option<std::time::Duration>,
) -> Response {
    let p = or_refuse!(params(headers, query, body));

    // Workhorse: only a JSON body carrying both `token` and `last_update` is held, and only while the
    // runner's queue cursor still equals `last_update`.
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if let (Some(duration), true, Some(token), Some(last)) =
        (long_poll, is_json, p.str("token"), p.str("last_update"))
        && let Some(mut cursor) = shared.read(|s| s.queue_watch(token))
        && *cursor.borrow_and_update() == last
    {
        let _held = HeldPoll::new(shared);
        // A tick or the timeout both end in a bare 204: the runner re-requests with its old cursor, which
        // no longer matches after a tick, so that request reaches the queue.
        let _ = tokio::time::timeout(duration, cursor.changed()).await;
        return with_meta(
            StatusCode::NO_CONTENT.into_response(),
            ReplyMeta {
                long_polled: true,
                ..ReplyMeta::default()
            },
        );
    }

    let token = or_refuse!(runner_token(&p, headers));
    let session_url = p
        .get("session")
        .and_then(|s| s.get("url"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    let req = JobRequestParams {
        token,
        system_id: p.str("system_id"),
        last_update: p.str("last_update"),
        info: p.get("info"),
        session_url,
    };
    match shared.update(|s| s.request_job(&req, Some(conn.peer.ip()))) {
        JobRequestOutcome::Forbidden => forbidden(),
        JobRequestOutcome::NoJob { last_update } => with_header(
            StatusCode::NO_CONTENT.into_response(),
            LAST_UPDATE,
            &last_update,
        ),
        JobRequestOutcome::Job { payload } => json_reply(StatusCode::CREATED, &payload),
    }
}

/// `PUT /jobs/:id`.
pub(super) async fn update(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<ConnInfo>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let id = or_refuse!(job_id(&raw_id));
    let p = or_refuse!(params(&headers, query.as_deref(), &body));
    let Some(token) = job_token(&p, &headers) else {
        return error(StatusCode::BAD_REQUEST, "token is missing");
    };
    let output = p.get("output");
    let up = UpdateParams {
        state: p.str("state"),
        failure_reason: p.str("failure_reason"),
        exit_code: p.int("exit_code"),
        checksum: output
            .and_then(|o| o.get("checksum"))
            .and_then(Value::as_str)
            .or_else(|| p.str("checksum")),
        bytesize: output
            .and_then(|o| o.get("bytesize"))
            .and_then(Value::as_u64),
    };
    let result = shared.update(|s| {
        s.authenticate_job(id, Some(token), Some(conn.peer.ip()), true)?;
        Ok::<_, JobForbidden>(s.update_job(id, &up))
    });
    let (outcome, fault) = match result {
        Ok(r) => r,
        Err(f) => return job_forbidden(&f),
    };
    let resp = match outcome {
        UpdateOutcome::Ok(status) => status_text(StatusCode::OK, "200", status),
        UpdateOutcome::Accepted { status, interval } => with_header(
            status_text(StatusCode::ACCEPTED, "202", status),
            TRACE_INTERVAL,
            &interval.to_string(),
        ),
        UpdateOutcome::TraceInvalid(status) => {
            status_text(StatusCode::PRECONDITION_FAILED, "412", status)
        }
        UpdateOutcome::BadRequest(status) => status_text(StatusCode::BAD_REQUEST, "400", status),
        UpdateOutcome::Conflict(status) => status_text(StatusCode::CONFLICT, "409", status),
    };
    with_meta(
        resp,
        ReplyMeta {
            fault,
            ..ReplyMeta::default()
        },
    )
}

/// `PATCH /jobs/:id/trace`.
pub(super) async fn trace(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<ConnInfo>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let id = or_refuse!(job_id(&raw_id));
    // The body is the trace itself, never parameters.
    let p = or_refuse!(params(&HeaderMap::new(), query.as_deref(), &[]));
    let token = job_token(&p, &headers);
    let range = headers.get(CONTENT_RANGE).and_then(|v| v.to_str().ok());
    let result = shared.update(|s| {
        s.authenticate_job(id, token, Some(conn.peer.ip()), true)?;
        let interval = s.options().trace_update_interval;
        Ok::<_, JobForbidden>((s.append_trace(id, range, &body), interval))
    });
    let ((outcome, fault), interval) = match result {
        Ok(r) => r,
        Err(f) => return job_forbidden(&f),
    };
    let resp = match outcome {
        TraceOutcome::Accepted { len, status } => {
            let mut resp = StatusCode::ACCEPTED.into_response();
            let h: [(HeaderName, String); 3] = [
                (JOB_STATUS, status.as_str().to_owned()),
                (http::header::RANGE, format!("0-{len}")),
                (TRACE_INTERVAL, interval.to_string()),
            ];
            for (name, value) in h {
                resp = with_header(resp, name, &value);
            }
            resp
        }
        TraceOutcome::RangeMismatch { len } => with_header(
            error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "416 Range Not Satisfiable",
            ),
            http::header::RANGE,
            &format!("0-{len}"),
        ),
        TraceOutcome::MissingRange => {
            error(StatusCode::BAD_REQUEST, "400 Missing header Content-Range")
        }
        TraceOutcome::BadRange => {
            error(StatusCode::BAD_REQUEST, "400 Invalid header Content-Range")
        }
        TraceOutcome::TooLarge => with_header(
            error(StatusCode::FORBIDDEN, "403 Forbidden"),
            JOB_STATUS,
            JobStatus::Failed.as_str(),
        ),
    };
    with_meta(
        resp,
        ReplyMeta {
            fault,
            ..ReplyMeta::default()
        },
    )
}
