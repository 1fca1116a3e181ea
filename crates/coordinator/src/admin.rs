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
//! | GET / POST | `/-/admin/jobs` | `JobSpec` (for a served project, `"sha": ""` builds the ref's tip) | snapshots / `{id}` |
//! | GET | `/-/admin/jobs/{id}` | | snapshot |
//! | GET | `/-/admin/jobs/{id}/trace` | | stored trace bytes |
//! | GET | `/-/admin/jobs/{id}/payload` | | payload as handed out |
//! | GET | `/-/admin/jobs/{id}/artifacts/{type}` | | artifact bytes |
//! | GET | `/-/admin/jobs/{id}/wait` | `?timeout=30s&status=success` (default: finished) | snapshot, 408 on timeout |
//! | POST | `/-/admin/jobs/{id}/cancel` | `{graceful?}` | `{status}` |
//! | GET / POST / DELETE | `/-/admin/faults` | `Fault` | pending faults |
//! | GET / POST | `/-/admin/projects` | `ProjectSpec` | projects / `{path, url, default_branch, head}` |
//! | POST | `/-/admin/projects/commits` | `{project, branch, files: {path: text}, executables?, remove?, message?}` | `{sha}` |
//! | POST | `/-/admin/projects/branches`, `/-/admin/projects/tags` | `{project, name, target}` | `{sha}` |
//! | GET | `/-/admin/requests`, `/-/admin/counts` | | request log, counts |

use crate::fault::Fault;
use crate::git::{Project, ProjectSpec};
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
        .route(
            "/-/admin/jobs/{id}/artifacts/{artifact_type}",
            get(artifact),
        )
        .route("/-/admin/jobs/{id}/wait", get(wait))
        .route("/-/admin/jobs/{id}/cancel", post(cancel))
        .route(
            "/-/admin/faults",
            get(faults).post(inject).delete(clear_faults),
        )
        .route("/-/admin/projects", get(projects).post(add_project))
        .route("/-/admin/projects/commits", post(commit))
        .route("/-/admin/projects/branches", post(branch))
        .route("/-/admin/projects/tags", post(tag))
        .route("/-/admin/requests", get(requests))
        .route("/-/admin/counts", get(counts))
        .with_state(shared)
}

/// Why an admin request failed; rendered as `{"error": …}` with a fitting status.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("invalid JSON body: {0}; fix: send a JSON object of the documented shape")]
    Body(#[from] serde_json::Error),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Project(#[from] crate::error::ProjectError),
    #[error("the git work was interrupted: {0}; fix: retry the request")]
    Interrupted(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Body(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Project(crate::error::ProjectError::Exists(_)) => StatusCode::CONFLICT,
            Self::Project(
                crate::error::ProjectError::InvalidPath { .. }
                | crate::error::ProjectError::InvalidFilePath(_)
                | crate::error::ProjectError::UnknownRevision { .. }
                | crate::error::ProjectError::Directory { .. },
            ) => StatusCode::BAD_REQUEST,
            Self::Project(_) | Self::Interrupted(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

type Reply = Result<Response, AdminError>;

/// A JSON body; an empty body means the defaults.
fn body<T: for<'de> Deserialize<'de> + Default>(raw: &[u8]) -> Result<T, AdminError> {
    if raw.trim_ascii().is_empty() {
        return Ok(T::default());
    }
    Ok(serde_json::from_slice(raw)?)
}

async fn runners(State(shared): AdminState) -> Response {
    Json(shared.read(|s| s.runner_snapshots())).into_response()
}

async fn add_runner(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let spec: RunnerSpec = body(&raw)?;
    let (id, token) = shared.update(|s| s.add_runner(&spec));
    Ok((StatusCode::CREATED, Json(json!({"id": id, "token": token}))).into_response())
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct TokenBody {
    token: Option<String>,
}

async fn revoke(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let b: TokenBody = body(&raw)?;
    let token = b.token.ok_or_else(|| {
        AdminError::BadRequest("body must be {\"token\": \"<runner token>\"}".to_owned())
    })?;
    let revoked = shared.update(|s| s.revoke_token(&token));
    Ok(Json(json!({"revoked": revoked})).into_response())
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PauseBody {
    paused: Option<bool>,
}

async fn pause(State(shared): AdminState, Path(id): Path<i64>, raw: bytes::Bytes) -> Reply {
    let b: PauseBody = body(&raw)?;
    let paused = b.paused.unwrap_or(true);
    if !shared.update(|s| s.set_paused(id, paused)) {
        return Err(AdminError::NotFound("runner"));
    }
    Ok(Json(json!({"paused": paused})).into_response())
}

async fn add_registration_token(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let b: TokenBody = body(&raw)?;
    let token = shared.update(|s| s.add_registration_token(b.token));
    Ok((StatusCode::CREATED, Json(json!({"token": token}))).into_response())
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct EnabledBody {
    enabled: bool,
}

async fn set_registration(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let b: EnabledBody = body(&raw)?;
    shared.update(|s| s.set_registration_enabled(b.enabled));
    Ok(Json(json!({"enabled": b.enabled})).into_response())
}

async fn jobs(State(shared): AdminState) -> Response {
    let all: Vec<_> = shared.read(|s| {
        s.job_ids()
            .into_iter()
            .filter_map(|id| s.snapshot(id))
            .collect()
    });
    Json(all).into_response()
}

/// Run repository work (real git processes) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AdminError::Interrupted(e.to_string()))?
}

async fn enqueue(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let spec: JobSpec = body(&raw)?;
    let id = blocking(move || {
        crate::server::enqueue(&shared, spec).map_err(|e| AdminError::BadRequest(e.to_string()))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

fn project_json(p: &Project) -> serde_json::Value {
    json!({"path": p.path(), "url": p.url(), "default_branch": p.default_branch()})
}

async fn projects(State(shared): AdminState) -> Response {
    let all: Vec<_> = shared
        .read(|s| s.projects())
        .iter()
        .map(project_json)
        .collect();
    Json(all).into_response()
}

async fn add_project(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let spec: ProjectSpec = body(&raw)?;
    let (project, head) = blocking(move || {
        let project = crate::server::add_project(&shared, &spec)?;
        let head = project.rev_parse(project.default_branch()).ok();
        Ok((project, head))
    })
    .await?;
    let mut out = project_json(&project);
    out["head"] = json!(head);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

fn served(shared: &Shared, path: &str) -> Result<Project, AdminError> {
    shared
        .read(|s| s.project(path))
        .ok_or(AdminError::NotFound("project"))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CommitBody {
    project: String,
    branch: Option<String>,
    files: std::collections::BTreeMap<String, String>,
    executables: std::collections::BTreeMap<String, String>,
    remove: Vec<String>,
    message: Option<String>,
}

async fn commit(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let b: CommitBody = body(&raw)?;
    let project = served(&shared, &b.project)?;
    let sha = blocking(move || {
        let branch = b
            .branch
            .unwrap_or_else(|| project.default_branch().to_owned());
        let mut commit = project.commit(branch);
        for (path, text) in &b.files {
            commit = commit.file(path, text);
        }
        for (path, text) in &b.executables {
            commit = commit.executable(path, text);
        }
        for path in &b.remove {
            commit = commit.remove(path);
        }
        if let Some(m) = &b.message {
            commit = commit.message(m);
        }
        Ok(commit.create()?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"sha": sha}))).into_response())
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RefBody {
    project: String,
    name: String,
    target: String,
}

async fn branch(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let b: RefBody = body(&raw)?;
    let project = served(&shared, &b.project)?;
    let sha = blocking(move || Ok(project.branch(&b.name, &b.target)?)).await?;
    Ok((StatusCode::CREATED, Json(json!({"sha": sha}))).into_response())
}

async fn tag(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let b: RefBody = body(&raw)?;
    let project = served(&shared, &b.project)?;
    let sha = blocking(move || Ok(project.tag(&b.name, &b.target)?)).await?;
    Ok((StatusCode::CREATED, Json(json!({"sha": sha}))).into_response())
}

async fn job(State(shared): AdminState, Path(id): Path<i64>) -> Reply {
    let snap = shared
        .read(|s| s.snapshot(id))
        .ok_or(AdminError::NotFound("job"))?;
    Ok(Json(snap).into_response())
}

async fn trace(State(shared): AdminState, Path(id): Path<i64>) -> Reply {
    let snap = shared
        .read(|s| s.snapshot(id))
        .ok_or(AdminError::NotFound("job"))?;
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        snap.trace,
    )
        .into_response())
}

async fn payload(State(shared): AdminState, Path(id): Path<i64>) -> Reply {
    let payload = shared
        .read(|s| s.job_payload(id))
        .ok_or(AdminError::NotFound(
            "payload (job unknown or not yet assigned)",
        ))?;
    Ok(Json(payload).into_response())
}

async fn artifact(
    State(shared): AdminState,
    Path((id, artifact_type)): Path<(i64, String)>,
) -> Reply {
    let data = shared
        .read(|s| s.artifact_data(id, &artifact_type))
        .ok_or(AdminError::NotFound("artifact"))?;
    Ok((
        [(http::header::CONTENT_TYPE, "application/octet-stream")],
        data,
    )
        .into_response())
}

#[derive(Deserialize)]
struct WaitQuery {
    timeout: Option<String>,
    status: Option<JobStatus>,
}

async fn wait(State(shared): AdminState, Path(id): Path<i64>, Query(q): Query<WaitQuery>) -> Reply {
    let timeout = match q.timeout.as_deref().map(humantime::parse_duration) {
        None => Duration::from_secs(30),
        Some(Ok(d)) => d.min(Duration::from_secs(600)),
        Some(Err(e)) => {
            return Err(AdminError::BadRequest(format!(
                "timeout: {e}; fix: write it like 30s or 2m"
            )));
        }
    };
    let status = q.status;
    let done = |j: &crate::JobSnapshot| status.map_or(j.status.is_finished(), |s| j.status == s);
    match wait_for_job(&shared, id, done, timeout).await {
        Ok(j) => Ok(Json(j).into_response()),
        Err(crate::WaitError::UnknownJob(_)) => Err(AdminError::NotFound("job")),
        Err(e) => Err(AdminError::Timeout(e.to_string())),
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CancelBody {
    graceful: bool,
}

async fn cancel(State(shared): AdminState, Path(id): Path<i64>, raw: bytes::Bytes) -> Reply {
    let b: CancelBody = body(&raw)?;
    let status = shared
        .update(|s| {
            if b.graceful {
                s.cancel_gracefully(id)
            } else {
                s.cancel(id)
            }
        })
        .ok_or(AdminError::NotFound("job"))?;
    Ok(Json(json!({"status": status})).into_response())
}

async fn faults(State(shared): AdminState) -> Response {
    Json(shared.read(|s| s.faults.pending())).into_response()
}

async fn inject(State(shared): AdminState, raw: bytes::Bytes) -> Reply {
    let fault: Fault = serde_json::from_slice(&raw)?;
    let pending = shared.update(|s| {
        s.faults.push(fault);
        s.faults.pending()
    });
    Ok((StatusCode::CREATED, Json(pending)).into_response())
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
