//! The running coordinator: the listener, one hyper HTTP/1 connection task per socket (so a fault can
//! close a socket without answering), the timer task, and the in-process admin API tests call.

use crate::admin;
use crate::api::{self, ConnInfo};
use crate::error::{EnqueueError, ProjectError, StartError, WaitError};
use crate::fault::Fault;
use crate::git::{Project, ProjectSpec};
use crate::job::{JobSnapshot, JobSpec, JobStatus};
use crate::options::Options;
use crate::request_log::{Counts, RequestRecord};
use crate::runner::{RunnerSnapshot, RunnerSpec};
use crate::shared::Shared;
use crate::state::State;
use axum::Router;
use glrunner_protocol::Secret;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tower::ServiceExt;

/// A runner created by [`Coordinator::add_runner`].
#[derive(Debug, Clone)]
pub struct AddedRunner {
    pub id: i64,
    pub token: Secret,
}

/// A GitLab test coordinator listening on loopback. Dropping it stops the server and closes every
/// connection.
pub struct Coordinator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    url: String,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// Served projects' repositories; removed when the coordinator is dropped.
    _repositories: tempfile::TempDir,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Bind to `options.listen` (loopback only) and start serving.
    pub async fn start(options: Options) -> Result<Self, StartError> {
        if !options.listen.ip().is_loopback() {
            return Err(StartError::NotLoopback(options.listen));
        }
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: options.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: options.listen,
            source,
        })?;
        let url = format!("http://{addr}");
        let repositories = tempfile::Builder::new()
            .prefix("glrunner-coordinator-git-")
            .tempdir()
            .map_err(StartError::RepositoryRoot)?;
        let shared = Arc::new(Shared::new(
            State::new(options.clone(), url.clone()),
            repositories.path().to_owned(),
        ));
        let app = app(shared.clone());
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, app, shared.clone(), rx, options));
        tracing::debug!(%url, "coordinator listening");
        Ok(Self {
            shared,
            addr,
            url,
            shutdown,
            task: Some(task),
            _repositories: repositories,
        })
    }

    /// The base URL runners use (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, close all connections and wait (briefly) for the server task to end.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    // ------------------------------------------------------------ runners

    /// Create a runner; its token is returned once (as GitLab shows it once).
    pub fn add_runner(&self, spec: RunnerSpec) -> AddedRunner {
        let (id, token) = self.shared.update(|s| s.add_runner(&spec));
        AddedRunner {
            id,
            token: Secret::new(token),
        }
    }

    /// Add a registration token (`GR1348941…`) that `POST /runners` accepts.
    pub fn add_registration_token(&self) -> Secret {
        Secret::new(self.shared.update(|s| s.add_registration_token(None)))
    }

    /// Accept this exact registration token.
    pub fn add_registration_token_value(&self, token: &str) -> Secret {
        Secret::new(
            self.shared
                .update(|s| s.add_registration_token(Some(token.to_owned()))),
        )
    }

    /// Refuse registration (410 Gone), as GitLab 17+ does by default; or allow it again.
    pub fn set_registration_enabled(&self, enabled: bool) {
        self.shared.update(|s| s.set_registration_enabled(enabled));
    }

    /// Make a runner token unknown from now on (as deleting the runner or resetting its token in the UI
    /// does): every request with it gets 403. Returns whether the token was current.
    pub fn revoke_runner(&self, token: &str) -> bool {
        self.shared.update(|s| s.revoke_token(token))
    }

    pub fn set_paused(&self, runner_id: i64, paused: bool) -> bool {
        self.shared.update(|s| s.set_paused(runner_id, paused))
    }

    pub fn runners(&self) -> Vec<RunnerSnapshot> {
        self.shared.read(|s| s.runner_snapshots())
    }

    pub fn runner(&self, id: i64) -> Option<RunnerSnapshot> {
        self.runners().into_iter().find(|r| r.id == id)
    }

    // ------------------------------------------------------------ projects

    /// Create a project served over git at `<url>/<path>.git`, filled from `spec.dir` if given.
    /// Runs `git`; the repository lives in the coordinator's temporary directory.
    pub fn add_project(&self, spec: ProjectSpec) -> Result<Project, ProjectError> {
        add_project(&self.shared, &spec)
    }

    /// `git http-backend` processes running now (each git request has one while it is served).
    pub fn git_backends(&self) -> usize {
        self.shared.read(|s| s.git_backends)
    }

    /// Wait until exactly `n` `git http-backend` processes are running.
    pub async fn wait_for_git_backends(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        self.shared
            .wait_until(timeout, |s| (s.git_backends == n).then_some(()))
            .await
            .ok_or_else(|| WaitError::Timeout {
                what: format!("{n} running git http-backend processes"),
                waited: timeout,
                last: format!("{} running", self.git_backends()),
            })
    }

    // ------------------------------------------------------------ jobs

    /// Queue a job; runners allowed to take it see a new queue cursor (long polls are released).
    /// For a served project (see [`JobSpec::repository`]) the sha is resolved and
    /// `refs/pipelines/<id>` is created first, which runs `git` briefly.
    pub fn enqueue(&self, spec: JobSpec) -> Result<i64, EnqueueError> {
        enqueue(&self.shared, spec)
    }

    pub fn job(&self, id: i64) -> Option<JobSnapshot> {
        self.shared.read(|s| s.snapshot(id))
    }

    pub fn jobs(&self) -> Vec<JobSnapshot> {
        self.shared.read(|s| {
            s.job_ids()
                .into_iter()
                .filter_map(|id| s.snapshot(id))
                .collect()
        })
    }

    /// The payload handed out for the job (after assignment), exactly as sent.
    pub fn job_payload(&self, id: i64) -> Option<serde_json::Value> {
        self.shared.read(|s| s.job_payload(id))
    }

    /// The job token, for tests that call job endpoints themselves.
    pub fn job_token(&self, id: i64) -> Option<Secret> {
        self.shared.read(|s| s.job_token(id))
    }

    /// An uploaded artifact's bytes by type (`archive`, `junit`, …).
    pub fn artifact(&self, job_id: i64, artifact_type: &str) -> Option<Vec<u8>> {
        self.shared
            .read(|s| s.artifact_data(job_id, artifact_type))
            .map(|b| b.to_vec())
    }

    /// Wait until `predicate` holds for the job, waking on every change; at most `timeout`.
    pub async fn wait_for(
        &self,
        id: i64,
        predicate: impl FnMut(&JobSnapshot) -> bool,
        timeout: Duration,
    ) -> Result<JobSnapshot, WaitError> {
        wait_for_job(&self.shared, id, predicate, timeout).await
    }

    /// Wait until the job is `success`, `failed` or `canceled`.
    pub async fn wait_until_finished(
        &self,
        id: i64,
        timeout: Duration,
    ) -> Result<JobSnapshot, WaitError> {
        self.wait_for(id, |j| j.status.is_finished(), timeout).await
    }

    /// Wait until the job has this status.
    pub async fn wait_for_status(
        &self,
        id: i64,
        status: JobStatus,
        timeout: Duration,
    ) -> Result<JobSnapshot, WaitError> {
        self.wait_for(id, |j| j.status == status, timeout).await
    }

    /// Hard cancel: the job becomes `canceled`; the runner's next PATCH/PUT gets 403 +
    /// `Job-Status: canceled`.
    pub fn cancel(&self, id: i64) -> Option<JobStatus> {
        self.shared.update(|s| s.cancel(id))
    }

    /// Graceful cancel: `canceling` when the runner advertised `cancel_gracefully`, else `canceled`.
    pub fn cancel_gracefully(&self, id: i64) -> Option<JobStatus> {
        self.shared.update(|s| s.cancel_gracefully(id))
    }

    // ------------------------------------------------------------ faults and the request log

    /// Add a fault after those already waiting.
    pub fn inject(&self, fault: Fault) {
        self.shared.update(|s| s.faults.push(fault));
    }

    /// Faults not yet used up.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.read(|s| s.faults.pending())
    }

    pub fn clear_faults(&self) {
        self.shared.update(|s| s.faults.clear());
    }

    /// The request log (most recent `request_log_limit` requests, oldest first).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.read(|s| s.log.records())
    }

    pub fn counts(&self) -> Counts {
        self.shared.read(|s| s.log.counts())
    }

    /// Wait until `predicate` holds for the request log.
    pub async fn wait_for_requests(
        &self,
        mut predicate: impl FnMut(&[RequestRecord]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<RequestRecord>, WaitError> {
        let found = self
            .shared
            .wait_until(timeout, |s| {
                let records: Vec<RequestRecord> = s.log.records_ref().iter().cloned().collect();
                predicate(&records).then_some(records)
            })
            .await;
        found.ok_or_else(|| WaitError::Timeout {
            what: "a condition on the request log".to_owned(),
            waited: timeout,
            last: format!("{} requests logged", self.requests().len()),
        })
    }

    /// Requests currently held by long polling.
    pub fn held_polls(&self) -> usize {
        self.shared.read(|s| s.held_polls)
    }

    /// Wait until at least `n` requests are held by long polling.
    pub async fn wait_for_held_polls(&self, n: usize, timeout: Duration) -> Result<(), WaitError> {
        self.shared
            .wait_until(timeout, |s| (s.held_polls >= n).then_some(()))
            .await
            .ok_or_else(|| WaitError::Timeout {
                what: format!("{n} held long polls"),
                waited: timeout,
                last: format!("{} held", self.held_polls()),
            })
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Create and register a served project.
pub(crate) fn add_project(shared: &Shared, spec: &ProjectSpec) -> Result<Project, ProjectError> {
    if shared.read(|s| s.project(&spec.path).is_some()) {
        return Err(ProjectError::Exists(spec.path.clone()));
    }
    let base_url = shared.read(|s| s.base_url().to_owned());
    let project = Project::create(&shared.git_root, &base_url, spec)?;
    shared.update(|s| s.add_project(project.clone(), spec.job_token_allowlist.clone()));
    Ok(project)
}

/// Enqueue a job; for a served project, resolve its commit and create `refs/pipelines/<id>` before
/// the job becomes visible, so a runner that takes it at once can fetch that ref.
pub(crate) fn enqueue(shared: &Shared, mut spec: JobSpec) -> Result<i64, EnqueueError> {
    let served = if spec.repo_url.is_none() {
        shared.read(|s| s.project(&spec.project))
    } else {
        None
    };
    let Some(project) = served else {
        return shared.update(|s| s.enqueue(spec, None));
    };
    shared.read(|s| s.check_enqueue(&spec))?;
    let in_repo = |source| EnqueueError::Repository {
        project: spec.project.clone(),
        source,
    };
    let sha = project
        .resolve_job_commit(&spec.git_ref, spec.ref_type, &spec.sha)
        .map_err(in_repo)?;
    let facts = project.commit_facts(&sha).map_err(in_repo)?;
    let pipeline_id = match spec.pipeline_id {
        Some(p) => p,
        None => shared.update(|s| s.next_pipeline_id()),
    };
    if spec.pipeline_ref {
        project
            .set_ref(&format!("refs/pipelines/{pipeline_id}"), &sha)
            .map_err(in_repo)?;
    }
    spec.sha = sha;
    spec.pipeline_id = Some(pipeline_id);
    shared.update(|s| s.enqueue(spec, Some(facts)))
}

pub(crate) async fn wait_for_job(
    shared: &Shared,
    id: i64,
    mut predicate: impl FnMut(&JobSnapshot) -> bool,
    timeout: Duration,
) -> Result<JobSnapshot, WaitError> {
    if shared.read(|s| s.snapshot(id)).is_none() {
        return Err(WaitError::UnknownJob(id));
    }
    let found = shared
        .wait_until(timeout, |s| s.snapshot(id).filter(|j| predicate(j)))
        .await;
    found.ok_or_else(|| {
        let last = shared
            .read(|s| s.snapshot(id))
            .map(|j| {
                format!(
                    "status {}, failure_reason {:?}, {} trace bytes",
                    j.status, j.failure_reason, j.trace_len
                )
            })
            .unwrap_or_default();
        WaitError::Timeout {
            what: format!("a condition on job {id}"),
            waited: timeout,
            last,
        }
    })
}

/// The whole HTTP application: runner API and admin API behind the gate.
fn app(shared: Arc<Shared>) -> Router {
    let git = shared.clone();
    api::routes(shared.clone())
        .merge(admin::routes(shared.clone()))
        .fallback(move |req: axum::extract::Request| {
            crate::git::gateway::fallback(git.clone(), req)
        })
        .layer(axum::middleware::from_fn_with_state(shared, api::gate))
}

async fn serve(
    listener: TcpListener,
    app: Router,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    options: Options,
) {
    let mut tasks = JoinSet::new();
    tasks.spawn(timers(shared, shutdown.clone()));
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    // Ends on shutdown (or when the coordinator is dropped and this task aborted).
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        while tasks.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                tasks.spawn(connection(
                    stream,
                    peer,
                    app.clone(),
                    shutdown.clone(),
                    options.header_read_timeout,
                    permit,
                ));
            }
            Err(e) => {
                // Out of descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serve one connection until it closes, a fault drops it, or the server shuts down. Dropping the
/// hyper connection closes the socket without writing anything.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    header_read_timeout: Duration,
    _slot: OwnedSemaphorePermit,
) {
    let drop_connection = Arc::new(Notify::new());
    let info = ConnInfo {
        peer,
        drop_connection: drop_connection.clone(),
    };
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info.clone());
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = drop_connection.notified() => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

/// Apply deadlines (two-phase acknowledgement windows, stale running jobs) when they pass.
async fn timers(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    // Ends on shutdown; each turn waits for a deadline or a change.
    loop {
        let next = shared.read(|s| s.next_deadline());
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = shared.timers.notified() => {}
            _ = due => {
                let now = Instant::now();
                if shared.read(|s| s.next_deadline().is_some_and(|d| d <= now)) {
                    shared.update(|s| s.sweep(now));
                }
            }
        }
    }
}
