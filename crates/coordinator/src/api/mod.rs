//! The runner API under `/api/v4` (GitLab's Grape endpoints and Workhorse's long polling), plus the
//! gate every request passes: body buffering, fault injection and the request log.

/// The value of a `Result`, or return its refusal as the response.
macro_rules! or_refuse {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(refusal) => return axum::response::IntoResponse::into_response(refusal),
        }
    };
}

mod artifacts;
mod jobs;
mod runners;

use crate::fault::{Action, Endpoint, Stage};
use crate::request_log::{RequestRecord, token_kind_name};
use crate::shared::Shared;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, patch, post, put};
use bytes::Bytes;
use glrunner_protocol::TokenKind;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;

pub(crate) const JOB_STATUS: HeaderName = HeaderName::from_static("job-status");
pub(crate) const LAST_UPDATE: HeaderName = HeaderName::from_static("x-gitlab-last-update");
pub(crate) const TRACE_INTERVAL: HeaderName =
    HeaderName::from_static("x-gitlab-trace-update-interval");
pub(crate) const BUILDS_POLLING: HeaderName = HeaderName::from_static("gitlab-ci-builds-polling");
const RUNNER_TOKEN: HeaderName = HeaderName::from_static("runner-token");
const JOB_TOKEN: HeaderName = HeaderName::from_static("job-token");
const PRIVATE_TOKEN: HeaderName = HeaderName::from_static("private-token");

/// Per-connection facts the handlers need: the peer, and a way to close the connection unanswered.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub drop_connection: Arc<Notify>,
}

/// What a handler tells the gate about its answer, for the request log.
#[derive(Clone, Default)]
pub(crate) struct ReplyMeta {
    pub fault: Option<String>,
    pub long_polled: bool,
    /// The job a request acted for when the path does not name it (git requests: the token's job).
    pub job_id: Option<i64>,
    /// Body bytes read by the handler itself (streamed bodies the gate did not buffer).
    pub body_size: Option<u64>,
}

/// The runner API routes (the gate is added by the server around these and the admin routes).
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/api/v4/runners",
            post(runners::register).delete(runners::delete),
        )
        .route("/api/v4/runners/verify", post(runners::verify))
        .route("/api/v4/runners/managers", delete(runners::delete_manager))
        .route(
            "/api/v4/runners/reset_authentication_token",
            post(runners::reset_token),
        )
        .route("/api/v4/jobs/request", post(jobs::request))
        .route("/api/v4/jobs/{id}", put(jobs::update))
        .route("/api/v4/jobs/{id}/trace", patch(jobs::trace))
        .route(
            "/api/v4/jobs/{id}/artifacts",
            post(artifacts::upload).get(artifacts::download),
        )
        // The gate already bounded the body.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// Largest body accepted per endpoint; beyond it the gate answers 413.
fn body_limit(shared: &Shared, endpoint: Endpoint) -> usize {
    let (artifacts, trace) = shared.read(|s| {
        let o = s.options();
        (o.max_artifact_size, o.trace_size_limit)
    });
    let slack = 1024 * 1024;
    let limit = match endpoint {
        Endpoint::UploadArtifacts => artifacts.saturating_add(slack),
        // Let an oversized PATCH reach the handler, which fails the job as GitLab does.
        Endpoint::PatchTrace => trace.saturating_add(slack),
        Endpoint::Admin => 64 * 1024 * 1024,
        _ => slack,
    };
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// The token a request carries, in GitLab's order: the `token` parameter (query or body), then the
/// token headers.
fn carried_token(
    endpoint: Endpoint,
    headers: &HeaderMap,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<String> {
    // Trace and artifact bodies are data, never parameters.
    let body = match endpoint {
        Endpoint::PatchTrace | Endpoint::UploadArtifacts | Endpoint::DownloadArtifacts => &[][..],
        _ => body,
    };
    if let Ok(p) = Params::parse(query, content_type, body)
        && let Some(t) = p.str("token")
    {
        return Some(t.to_owned());
    }
    [JOB_TOKEN, RUNNER_TOKEN, PRIVATE_TOKEN]
        .iter()
        .find_map(|h| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
}

/// Every request passes here: read the body (bounded; git bodies stream through instead), apply gate
/// faults, run the endpoint, log.
pub(crate) async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let at = SystemTime::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (endpoint, path_job_id) = Endpoint::classify(&method, &path);
    let (parts, body) = req.into_parts();
    let content_range = header_str(&parts.headers, http::header::CONTENT_RANGE).map(str::to_owned);
    let git_protocol =
        header_str(&parts.headers, crate::git::gateway::GIT_PROTOCOL).map(str::to_owned);
    let content_encoding =
        header_str(&parts.headers, http::header::CONTENT_ENCODING).map(str::to_owned);
    let chunked = header_str(&parts.headers, http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let limit = body_limit(&shared, endpoint);
    let logged = endpoint != Endpoint::Admin;
    let record = |status: Option<u16>, token: Option<&str>, body_size: u64, meta: ReplyMeta| {
        if !logged {
            return;
        }
        let record = RequestRecord {
            seq: 0,
            method: method.to_string(),
            path: path.clone(),
            endpoint,
            job_id: path_job_id.or(meta.job_id),
            status,
            token_kind: token.map(|t| token_kind_name(TokenKind::classify(t))),
            content_range: content_range.clone(),
            body_size,
            at,
            duration: started.elapsed(),
            fault: meta.fault,
            long_polled: meta.long_polled,
            git_protocol: git_protocol.clone(),
            content_encoding: content_encoding.clone(),
            chunked,
        };
        shared.update(|s| {
            let limit = s.options().request_log_limit;
            s.log.push(record, limit);
        });
    };

    // Git bodies go to `git http-backend` as they arrive; everything else is read (bounded) first.
    let (bytes, streamed) = if endpoint.is_git() {
        (Bytes::new(), Some(body))
    } else {
        match axum::body::to_bytes(body, limit).await {
            Ok(b) => (b, None),
            Err(_) => {
                record(Some(413), None, limit as u64, ReplyMeta::default());
                return message(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "413 Request Entity Too Large",
                );
            }
        }
    };
    let token = if endpoint.is_git() {
        crate::git::gateway::basic_credentials(&parts.headers).map(|(_, password)| password)
    } else {
        let content_type = header_str(&parts.headers, CONTENT_TYPE);
        carried_token(
            endpoint,
            &parts.headers,
            parts.uri.query(),
            content_type,
            &bytes,
        )
    };

    let mut meta = ReplyMeta::default();
    let action = if logged {
        shared.update(|s| s.faults.take(endpoint, path_job_id, Stage::Gate))
    } else {
        None
    };
    let body_size = bytes.len() as u64;
    if let Some(action) = action {
        meta.fault = Some(action.describe());
        match action {
            Action::Respond {
                status,
                headers,
                body,
            } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut resp = (status, body).into_response();
                let h = resp.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                for (name, value) in headers {
                    if let (Ok(n), Ok(v)) =
                        (HeaderName::try_from(name), HeaderValue::try_from(value))
                    {
                        h.insert(n, v);
                    }
                }
                record(Some(status.as_u16()), token.as_deref(), body_size, meta);
                return resp;
            }
            Action::DropConnection => {
                record(None, token.as_deref(), body_size, meta);
                if let Some(conn) = parts.extensions.get::<ConnInfo>() {
                    conn.drop_connection.notify_one();
                }
                // The connection task drops this request with the socket; nothing is ever written.
                std::future::pending::<()>().await;
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            Action::Delay { millis } => tokio::time::sleep(Duration::from_millis(millis)).await,
            Action::TraceRangeMismatch { .. }
            | Action::FinalUpdateAccepted { .. }
            | Action::FinalUpdateTraceInvalid => {}
        }
    }

    let body = streamed.unwrap_or_else(|| Body::from(bytes));
    let resp = next.run(Request::from_parts(parts, body)).await;
    let mut body_size = body_size;
    if let Some(m) = resp.extensions().get::<ReplyMeta>() {
        meta.long_polled = m.long_polled;
        meta.fault = m.fault.clone().or(meta.fault);
        meta.job_id = m.job_id;
        body_size = m.body_size.unwrap_or(body_size);
    }
    record(
        Some(resp.status().as_u16()),
        token.as_deref(),
        body_size,
        meta,
    );
    resp
}

pub(crate) fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Request parameters as Grape sees them: the query string merged with a JSON or form body.
#[derive(Debug, Default)]
pub(crate) struct Params {
    map: Map<String, Value>,
}

/// A body that claims to be JSON but is not.
#[derive(Debug, thiserror::Error)]
#[error("request body is not valid JSON: {0}")]
pub(crate) struct BadBody(String);

impl Params {
    pub(crate) fn parse(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Self, BadBody> {
        let mut map = Map::new();
        if let Some(q) = query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                map.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        let trimmed = body.trim_ascii_start();
        if ct.contains("json") || (ct.is_empty() && trimmed.starts_with(b"{")) {
            if !trimmed.is_empty() {
                match serde_json::from_slice::<Value>(body) {
                    Ok(Value::Object(obj)) => map.extend(obj),
                    Ok(_) => {}
                    Err(e) => return Err(BadBody(e.to_string())),
                }
            }
        } else if ct.contains("x-www-form-urlencoded") {
            for (k, v) in url::form_urlencoded::parse(body) {
                map.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
        Ok(Self { map })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// An integer given as a number or a numeric string.
    pub(crate) fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A boolean given as `true`/`false` or their string forms.
    pub(crate) fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A list given as an array or a comma-separated string.
    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A request refused before the endpoint's own rules apply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// 400 `{"error": …}`, as Grape answers a missing or malformed parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 403 `{"message":"403 Forbidden"}`.
    #[error("403 Forbidden")]
    Forbidden,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(msg) => error(StatusCode::BAD_REQUEST, &msg),
            Self::Forbidden => forbidden(),
        }
    }
}

/// Parse the parameters of a request (400 for a malformed body, as Grape answers).
pub(crate) fn params(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Params, Refusal> {
    Params::parse(query, header_str(headers, CONTENT_TYPE), body)
        .map_err(|e| Refusal::BadRequest(e.to_string()))
}

/// `{"message": "<msg>"}`: GitLab's `forbidden!`, `not_found!`, `conflict!` bodies.
pub(crate) fn message(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "message": msg }))).into_response()
}

/// `{"error": "<msg>"}`: Grape's `error!` and parameter validation bodies.
pub(crate) fn error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "error": msg }))).into_response()
}

/// A plain-text body such as `200` (GitLab's `content_type :txt`).
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

pub(crate) fn json_reply(status: StatusCode, value: &Value) -> Response {
    // GitLab's pre-serialised job JSON and Grape entities are both `application/json`.
    let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn with_header(mut resp: Response, name: HeaderName, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

pub(crate) fn with_meta(mut resp: Response, meta: ReplyMeta) -> Response {
    resp.extensions_mut().insert(meta);
    resp
}

pub(crate) fn forbidden() -> Response {
    message(StatusCode::FORBIDDEN, "403 Forbidden")
}

/// The runner token of a runner endpoint: the `token` parameter (400 when missing), which must equal
/// the `Runner-Token` header when that is sent too (403 otherwise).
pub(crate) fn runner_token<'a>(p: &'a Params, headers: &HeaderMap) -> Result<&'a str, Refusal> {
    let Some(token) = p.str("token") else {
        return Err(Refusal::BadRequest("token is missing".to_owned()));
    };
    match header_str(headers, RUNNER_TOKEN) {
        Some(h) if h != token => Err(Refusal::Forbidden),
        _ => Ok(token),
    }
}

/// The job token of a job endpoint: the `token` parameter, else the `Job-Token` header.
pub(crate) fn job_token<'a>(p: &'a Params, headers: &'a HeaderMap) -> Option<&'a str> {
    p.str("token").or_else(|| header_str(headers, JOB_TOKEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_merge_query_and_body() {
        let p = Params::parse(
            Some("artifact_type=junit&token=q"),
            Some("application/json"),
            br#"{"token":"b","n":"5","tags":"a, b"}"#,
        )
        .unwrap();
        assert_eq!(p.str("token"), Some("b"));
        assert_eq!(p.str("artifact_type"), Some("junit"));
        assert_eq!(p.int("n"), Some(5));
        assert_eq!(p.list("tags"), ["a", "b"]);
        let form = Params::parse(
            None,
            Some("application/x-www-form-urlencoded"),
            b"token=f&paused=true",
        )
        .unwrap();
        assert_eq!(form.str("token"), Some("f"));
        assert_eq!(form.bool("paused"), Some(true));
        assert!(Params::parse(None, Some("application/json"), b"{not json").is_err());
    }
}
