//! The coordinator's memory: runners, managers, tokens, jobs, traces, artifacts, faults and the request
//! log, with every rule GitLab applies when they change. Everything here is synchronous and runs under
//! one lock; the HTTP layer only translates outcomes into responses.

use crate::error::EnqueueError;
use crate::fault::{Action, Endpoint, FaultQueue, Stage};
use crate::git::repository::{CommitFacts, Project};
use crate::job::{ArtifactSnapshot, JobSnapshot, JobSpec, JobStatus};
use crate::options::Options;
use crate::payload::{self, DependencyContext, FAILURE_REASONS, PayloadContext, RunnerContext};
use crate::request_log::RequestLog;
use crate::runner::{ManagerSnapshot, RunnerKind, RunnerSnapshot, RunnerSpec};
use crate::tokens;
use glrunner_protocol::{Secret, VersionInfo};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

/// GitLab's `ONLINE_CONTACT_TIMEOUT`.
const ONLINE_CONTACT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
/// The manager name GitLab uses when a runner sends no `system_id`.
pub(crate) const LEGACY_SYSTEM_ID: &str = "<legacy>";

pub(crate) struct Manager {
    info: Value,
    created_at: SystemTime,
    contacted_at: Option<SystemTime>,
    ip: Option<IpAddr>,
}

pub(crate) struct Runner {
    id: i64,
    kind: RunnerKind,
    token: Option<String>,
    token_expires_at: Option<SystemTime>,
    description: String,
    paused: bool,
    tags: Vec<String>,
    maximum_timeout: Option<u64>,
    created_at: SystemTime,
    contacted_at: Option<SystemTime>,
    /// `creation_state: finished`: set by the first `/jobs/request` (or at registration).
    creation_finished: bool,
    managers: BTreeMap<String, Manager>,
    /// The queue cursor (`X-GitLab-Last-Update`); long polls watch it.
    queue: watch::Sender<String>,
}

impl Runner {
    fn tick(&self) {
        self.queue.send_replace(tokens::queue_value());
    }
}

struct Ack {
    deadline: Instant,
}

pub(crate) struct StoredArtifact {
    pub artifact_type: String,
    pub artifact_format: String,
    pub expire_in: Option<String>,
    pub filename: String,
    pub data: bytes::Bytes,
}

pub(crate) struct Job {
    id: i64,
    spec: JobSpec,
    token: String,
    pipeline_id: i64,
    required: Vec<String>,
    status: JobStatus,
    failure_reason: Option<String>,
    exit_code: Option<i32>,
    trace: Vec<u8>,
    /// Set by an injected 412: the next PATCH at offset 0 starts the trace over.
    trace_reset_armed: bool,
    checksum: Option<String>,
    bytesize: Option<u64>,
    runner_id: Option<i64>,
    manager: Option<String>,
    ack: Option<Ack>,
    cancel_gracefully: bool,
    created_at: SystemTime,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    updated_at: Option<SystemTime>,
    last_update: Instant,
    payload: Option<Value>,
    artifacts: Vec<StoredArtifact>,
    final_updates: u32,
    /// The built commit's facts, for a job of a served project.
    commit: Option<CommitFacts>,
}

impl Job {
    fn finish(&mut self, status: JobStatus, now: SystemTime) {
        self.status = status;
        self.ack = None;
        self.finished_at = Some(now);
    }

    fn fail(&mut self, reason: &str, now: SystemTime) {
        self.failure_reason = Some(reason.to_owned());
        self.finish(JobStatus::Failed, now);
    }

    /// Running, canceling, or handed out and awaiting its two-phase acknowledgement.
    fn is_executing(&self) -> bool {
        matches!(self.status, JobStatus::Running | JobStatus::Canceling) || self.ack.is_some()
    }

    fn available(&self) -> bool {
        self.status == JobStatus::Pending && self.ack.is_none()
    }

    fn archive(&self) -> Option<&StoredArtifact> {
        self.artifacts.iter().find(|a| a.artifact_type == "archive")
    }
}

/// The parameters of `POST /jobs/request` the coordinator uses.
pub(crate) struct JobRequestParams<'a> {
    pub token: &'a str,
    pub system_id: Option<&'a str>,
    pub last_update: Option<&'a str>,
    pub info: Option<&'a Value>,
    pub session_url: Option<String>,
}

pub(crate) enum JobRequestOutcome {
    Forbidden,
    /// 204 with `X-GitLab-Last-Update`.
    NoJob {
        last_update: String,
    },
    /// 201 with the payload.
    Job {
        payload: Value,
    },
}

/// A job endpoint refused the request: 403, with `Job-Status` when the token fits but the job is not
/// executing.
pub(crate) struct JobForbidden {
    pub status: Option<JobStatus>,
    pub reason: &'static str,
}

pub(crate) struct UpdateParams<'a> {
    pub state: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
    pub exit_code: Option<i64>,
    pub checksum: Option<&'a str>,
    pub bytesize: Option<u64>,
}

pub(crate) enum UpdateOutcome {
    Ok(JobStatus),
    /// 202 + `X-GitLab-Trace-Update-Interval`.
    Accepted {
        status: JobStatus,
        interval: u64,
    },
    /// 412: the runner must re-send its whole trace.
    TraceInvalid(JobStatus),
    BadRequest(JobStatus),
    /// 409: two-phase keep-alive or acknowledgement for a job already running.
    Conflict(JobStatus),
}

pub(crate) enum TraceOutcome {
    Accepted {
        len: u64,
        status: JobStatus,
    },
    RangeMismatch {
        len: u64,
    },
    MissingRange,
    BadRange,
    /// Over the trace size limit: the job was failed `trace_size_exceeded`.
    TooLarge,
}

pub(crate) enum UploadOutcome {
    Created,
    TooLarge,
    Duplicate,
}

pub(crate) enum DownloadOutcome {
    Found {
        filename: String,
        data: bytes::Bytes,
    },
    NotFound,
    Unauthorized,
    Forbidden,
}

pub(crate) struct NewArtifact {
    pub artifact_type: String,
    pub artifact_format: String,
    pub expire_in: Option<String>,
    pub filename: String,
    pub data: bytes::Bytes,
}

/// How a git request authenticated (GitLab's `find_for_git_client` and access check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GitAuth {
    /// No or wrong credentials, or the token's job is not running: 401.
    Unauthenticated,
    /// A running job's token, but the project is unknown or not open to that job: 404.
    NotFound,
    /// The running (or canceling) job whose token it is.
    Job(i64),
}

/// A project served over git, and who besides its own jobs may fetch it.
struct ServedProject {
    project: Project,
    job_token_allowlist: Vec<String>,
}

pub(crate) struct State {
    opts: Options,
    base_url: String,
    runners: BTreeMap<i64, Runner>,
    tokens: HashMap<String, i64>,
    registration_tokens: Vec<String>,
    registration_enabled: bool,
    jobs: BTreeMap<i64, Job>,
    pub(crate) faults: FaultQueue,
    pub(crate) log: RequestLog,
    pub(crate) held_polls: usize,
    /// `git http-backend` processes alive now.
    pub(crate) git_backends: usize,
    projects: BTreeMap<String, ServedProject>,
    next_runner_id: i64,
    next_job_id: i64,
    next_pipeline_id: i64,
}

fn features_of(info: Option<&Value>) -> BTreeSet<String> {
    info.and_then(|i| i.get("features"))
        .and_then(Value::as_object)
        .map(|f| {
            f.iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl State {
    pub(crate) fn new(opts: Options, base_url: String) -> Self {
        Self {
            registration_enabled: opts.registration_enabled,
            opts,
            base_url,
            runners: BTreeMap::new(),
            tokens: HashMap::new(),
            registration_tokens: Vec::new(),
            jobs: BTreeMap::new(),
            faults: FaultQueue::default(),
            log: RequestLog::default(),
            held_polls: 0,
            git_backends: 0,
            projects: BTreeMap::new(),
            next_runner_id: 1,
            next_job_id: 1001,
            next_pipeline_id: 501,
        }
    }

    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    // ---------------------------------------------------------------- projects

    pub(crate) fn add_project(&mut self, project: Project, job_token_allowlist: Vec<String>) {
        self.projects.insert(
            project.path().to_owned(),
            ServedProject {
                project,
                job_token_allowlist,
            },
        );
    }

    pub(crate) fn project(&self, path: &str) -> Option<Project> {
        self.projects.get(path).map(|p| p.project.clone())
    }

    pub(crate) fn projects(&self) -> Vec<Project> {
        self.projects.values().map(|p| p.project.clone()).collect()
    }

    /// Authenticate a git request for `path` with HTTP Basic `creds`, as GitLab does for CI: user
    /// `gitlab-ci-token`, password the token of a running or canceling job, whose project is `path`
    /// or on `path`'s job token allowlist.
    pub(crate) fn git_auth(&self, path: &str, creds: Option<(&str, &str)>) -> GitAuth {
        let Some((user, password)) = creds else {
            return GitAuth::Unauthenticated;
        };
        if user != crate::git::gateway::CI_USER || password.is_empty() {
            return GitAuth::Unauthenticated;
        }
        let Some(job) = self.jobs.values().find(|j| {
            j.token == password && matches!(j.status, JobStatus::Running | JobStatus::Canceling)
        }) else {
            return GitAuth::Unauthenticated;
        };
        let Some(served) = self.projects.get(path) else {
            return GitAuth::NotFound;
        };
        if job.spec.project != path && !served.job_token_allowlist.contains(&job.spec.project) {
            return GitAuth::NotFound;
        }
        GitAuth::Job(job.id)
    }

    // ---------------------------------------------------------------- runners

    fn create_runner(&mut self, spec: &RunnerSpec, creation_finished: bool) -> (i64, String) {
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let token = match &spec.token {
            Some(t) if !t.is_empty() && !self.tokens.contains_key(t.expose()) => {
                t.expose().to_owned()
            }
            _ => format!("{}{}", spec.kind.prefix(), tokens::friendly(20)),
        };
        let now = SystemTime::now();
        let runner = Runner {
            id,
            kind: spec.kind,
            token: Some(token.clone()),
            token_expires_at: spec.expires_in.map(|s| now + Duration::from_secs(s)),
            description: spec.description.clone(),
            paused: spec.paused,
            tags: spec.tags.clone(),
            maximum_timeout: spec.maximum_timeout,
            created_at: now,
            contacted_at: None,
            creation_finished,
            managers: BTreeMap::new(),
            queue: watch::Sender::new(tokens::queue_value()),
        };
        self.tokens.insert(token.clone(), id);
        self.runners.insert(id, runner);
        (id, token)
    }

    pub(crate) fn add_runner(&mut self, spec: &RunnerSpec) -> (i64, String) {
        // Runners created in the UI stay "never contacted" until their first job request.
        let finished = spec.kind != RunnerKind::Created;
        self.create_runner(spec, finished)
    }

    pub(crate) fn add_registration_token(&mut self, token: Option<String>) -> String {
        let token = token
            .filter(|t| !t.is_empty())
            .unwrap_or_else(tokens::registration_token);
        if !self.registration_tokens.contains(&token) {
            self.registration_tokens.push(token.clone());
        }
        token
    }

    pub(crate) fn set_registration_enabled(&mut self, enabled: bool) {
        self.registration_enabled = enabled;
    }

    /// The runner a token authenticates, if it is current and not expired.
    pub(crate) fn runner_for(&self, token: &str) -> Option<i64> {
        let id = *self.tokens.get(token)?;
        let runner = self.runners.get(&id)?;
        match runner.token_expires_at {
            Some(at) if at <= SystemTime::now() => None,
            _ => Some(id),
        }
    }

    /// Revoke a runner token (as deleting the runner or resetting its token in the UI does).
    pub(crate) fn revoke_token(&mut self, token: &str) -> bool {
        let Some(id) = self.tokens.remove(token) else {
            return false;
        };
        if let Some(r) = self.runners.get_mut(&id) {
            r.token = None;
            // Held long polls of this runner end now.
            r.tick();
        }
        true
    }

    pub(crate) fn set_paused(&mut self, runner_id: i64, paused: bool) -> bool {
        match self.runners.get_mut(&runner_id) {
            Some(r) => {
                r.paused = paused;
                true
            }
            None => false,
        }
    }

    /// Record contact: the runner, and the manager for `system_id` (created if new) with its `info`.
    fn heartbeat(
        &mut self,
        runner_id: i64,
        system_id: Option<&str>,
        info: Option<&Value>,
        ip: Option<IpAddr>,
        ensure_manager: bool,
    ) {
        let now = SystemTime::now();
        let Some(runner) = self.runners.get_mut(&runner_id) else {
            return;
        };
        runner.contacted_at = Some(now);
        if !ensure_manager {
            return;
        }
        let system_id = system_id
            .filter(|s| !s.is_empty())
            .unwrap_or(LEGACY_SYSTEM_ID);
        let manager = runner
            .managers
            .entry(system_id.to_owned())
            .or_insert_with(|| Manager {
                info: Value::Null,
                created_at: now,
                contacted_at: None,
                ip: None,
            });
        manager.contacted_at = Some(now);
        manager.ip = ip.or(manager.ip);
        if let Some(info) = info.filter(|i| i.is_object()) {
            manager.info = info.clone();
        }
    }

    pub(crate) fn register_runner(&mut self, token: &str, params: &RunnerSpec) -> RegisterOutcome {
        if !self.registration_enabled {
            return RegisterOutcome::Gone;
        }
        if !self.registration_tokens.iter().any(|t| t == token) {
            return RegisterOutcome::Forbidden;
        }
        let spec = RunnerSpec {
            kind: self.opts.registered_kind,
            token: None,
            ..params.clone()
        };
        let (id, token) = self.create_runner(&spec, true);
        RegisterOutcome::Created(self.details(id, token))
    }

    fn details(&self, id: i64, token: String) -> RunnerDetails {
        let expires = self.runners.get(&id).and_then(|r| r.token_expires_at);
        RunnerDetails {
            id,
            token,
            token_expires_at: expires.map(rfc3339_millis),
        }
    }

    pub(crate) fn verify_runner(
        &mut self,
        token: &str,
        system_id: Option<&str>,
        info: Option<&Value>,
        ip: Option<IpAddr>,
    ) -> Option<RunnerDetails> {
        let id = self.runner_for(token)?;
        self.heartbeat(id, system_id, info, ip, true);
        Some(self.details(id, token.to_owned()))
    }

    pub(crate) fn delete_runner(&mut self, token: &str) -> bool {
        let Some(id) = self.runner_for(token) else {
            return false;
        };
        if let Some(r) = self.runners.remove(&id) {
            if let Some(t) = &r.token {
                self.tokens.remove(t);
            }
            r.tick();
        }
        true
    }

    pub(crate) fn delete_manager(&mut self, token: &str, system_id: &str) -> DeleteManagerOutcome {
        let Some(id) = self.runner_for(token) else {
            return DeleteManagerOutcome::Forbidden;
        };
        match self
            .runners
            .get_mut(&id)
            .and_then(|r| r.managers.remove(system_id))
        {
            Some(_) => DeleteManagerOutcome::Deleted,
            None => DeleteManagerOutcome::NotFound,
        }
    }

    pub(crate) fn reset_token(&mut self, token: &str, ip: Option<IpAddr>) -> Option<RunnerDetails> {
        let id = self.runner_for(token)?;
        self.heartbeat(id, None, None, ip, false);
        let runner = self.runners.get_mut(&id)?;
        let new_token = format!("{}{}", runner.kind.prefix(), tokens::friendly(20));
        runner.token = Some(new_token.clone());
        self.tokens.remove(token);
        self.tokens.insert(new_token.clone(), id);
        Some(self.details(id, new_token))
    }

    /// The queue cursor of the runner a token belongs to, for long polling (Workhorse watches the key
    /// by token, so an unknown token has no cursor and is never held).
    pub(crate) fn queue_watch(&self, token: &str) -> Option<watch::Receiver<String>> {
        let id = self.runner_for(token)?;
        self.runners.get(&id).map(|r| r.queue.subscribe())
    }

    pub(crate) fn runner_snapshots(&self) -> Vec<RunnerSnapshot> {
        let now = SystemTime::now();
        self.runners
            .values()
            .map(|r| {
                let status = match r.contacted_at {
                    _ if !r.creation_finished => "never_contacted",
                    None => "never_contacted",
                    Some(at)
                        if now.duration_since(at).unwrap_or_default() < ONLINE_CONTACT_TIMEOUT =>
                    {
                        "online"
                    }
                    Some(_) => "offline",
                };
                RunnerSnapshot {
                    id: r.id,
                    kind: r.kind,
                    description: r.description.clone(),
                    paused: r.paused,
                    tags: r.tags.clone(),
                    maximum_timeout: r.maximum_timeout,
                    active_token: r.token.is_some(),
                    created_at: r.created_at,
                    contacted_at: r.contacted_at,
                    status,
                    managers: r
                        .managers
                        .iter()
                        .map(|(system_id, m)| ManagerSnapshot {
                            system_id: system_id.clone(),
                            info: lenient_info(&m.info),
                            features: features_of(Some(&m.info)),
                            created_at: m.created_at,
                            contacted_at: m.contacted_at,
                            ip_address: m.ip,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    // ---------------------------------------------------------------- jobs

    /// Take the next pipeline id (for a job whose pipeline ref must exist before it is queued).
    pub(crate) fn next_pipeline_id(&mut self) -> i64 {
        let p = self.next_pipeline_id;
        self.next_pipeline_id += 1;
        p
    }

    /// The refusals [`State::enqueue`] would give, checked before any repository work.
    pub(crate) fn check_enqueue(&self, spec: &JobSpec) -> Result<(), EnqueueError> {
        if let Some(dep) = spec
            .dependencies
            .iter()
            .find(|d| !self.jobs.contains_key(d))
        {
            return Err(EnqueueError::UnknownDependency(*dep));
        }
        if let Some(r) = spec.runner_id.filter(|r| !self.runners.contains_key(r)) {
            return Err(EnqueueError::UnknownRunner(r));
        }
        Ok(())
    }

    pub(crate) fn enqueue(
        &mut self,
        spec: JobSpec,
        commit: Option<CommitFacts>,
    ) -> Result<i64, EnqueueError> {
        self.check_enqueue(&spec)?;
        let id = self.next_job_id;
        self.next_job_id += 1;
        let pipeline_id = match spec.pipeline_id {
            Some(p) => p,
            None => self.next_pipeline_id(),
        };
        let target = spec.runner_id;
        let job = Job {
            id,
            required: spec.required_features(),
            spec,
            token: tokens::job_token(),
            pipeline_id,
            status: JobStatus::Pending,
            failure_reason: None,
            exit_code: None,
            trace: Vec::new(),
            trace_reset_armed: false,
            checksum: None,
            bytesize: None,
            runner_id: None,
            manager: None,
            ack: None,
            cancel_gracefully: false,
            created_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            updated_at: None,
            last_update: Instant::now(),
            payload: None,
            artifacts: Vec::new(),
            final_updates: 0,
            commit,
        };
        self.jobs.insert(id, job);
        self.tick_for(target);
        Ok(id)
    }

    /// New queue cursors for the runners that could take a job targeted at `target`.
    fn tick_for(&self, target: Option<i64>) {
        for r in self
            .runners
            .values()
            .filter(|r| target.is_none_or(|t| t == r.id))
        {
            r.tick();
        }
    }

    pub(crate) fn request_job(
        &mut self,
        p: &JobRequestParams<'_>,
        ip: Option<IpAddr>,
    ) -> JobRequestOutcome {
        let Some(runner_id) = self.runner_for(p.token) else {
            return JobRequestOutcome::Forbidden;
        };
        self.heartbeat(runner_id, p.system_id, p.info, ip, true);
        let Some(runner) = self.runners.get_mut(&runner_id) else {
            return JobRequestOutcome::Forbidden;
        };
        runner.creation_finished = true;
        let current = runner.queue.borrow().clone();
        if runner.paused {
            return JobRequestOutcome::NoJob {
                last_update: current,
            };
        }
        if p.last_update == Some(current.as_str()) {
            return JobRequestOutcome::NoJob {
                last_update: current,
            };
        }

        let features = features_of(p.info);
        let now = SystemTime::now();
        let candidates: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| j.available() && j.spec.runner_id.is_none_or(|t| t == runner_id))
            .map(|j| j.id)
            .collect();
        let queue_size = candidates.len();
        for id in candidates {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.required.iter().any(|f| !features.contains(f)) {
                // GitLab drops a job the runner cannot run instead of handing it out.
                job.fail("runner_unsupported", now);
                continue;
            }
            let payload = self.present(id, runner_id, p, queue_size, now);
            let system_id = p
                .system_id
                .filter(|s| !s.is_empty())
                .unwrap_or(LEGACY_SYSTEM_ID);
            let two_phase = features.contains("two_phase_job_commit");
            let ack_window = self.opts.ack_window;
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            job.runner_id = Some(runner_id);
            job.manager = Some(system_id.to_owned());
            job.cancel_gracefully = features.contains("cancel_gracefully");
            job.payload = Some(payload.clone());
            job.last_update = Instant::now();
            if two_phase {
                job.ack = Some(Ack {
                    deadline: Instant::now() + ack_window,
                });
            } else {
                job.status = JobStatus::Running;
                job.started_at = Some(now);
            }
            return JobRequestOutcome::Job { payload };
        }
        JobRequestOutcome::NoJob {
            last_update: current,
        }
    }

    /// The payload for job `id` assigned to `runner_id` now.
    fn present(
        &self,
        id: i64,
        runner_id: i64,
        p: &JobRequestParams<'_>,
        queue_size: usize,
        now: SystemTime,
    ) -> Value {
        let (Some(job), Some(runner)) = (self.jobs.get(&id), self.runners.get(&runner_id)) else {
            return Value::Null;
        };
        let dependencies = job
            .spec
            .dependencies
            .iter()
            .filter_map(|d| self.jobs.get(d))
            .map(|d| DependencyContext {
                id: d.id,
                name: d.spec.name.clone(),
                archive: d
                    .archive()
                    .map(|a| (a.filename.clone(), a.data.len() as u64)),
            })
            .collect();
        payload::build(&PayloadContext {
            job_id: job.id,
            token: &job.token,
            pipeline_id: job.pipeline_id,
            spec: &job.spec,
            server_url: &self.base_url,
            registry: self.opts.registry.as_deref(),
            runner: RunnerContext {
                id: runner.id,
                description: &runner.description,
                tags: &runner.tags,
                maximum_timeout: runner.maximum_timeout,
                session_url: p.session_url.clone(),
            },
            created_at: job.created_at,
            started_at: now,
            dependencies,
            queue_size,
            commit: job.commit.as_ref(),
        })
    }

    /// GitLab's `authenticate_job!`: the job must exist, the token must be its token, and it must be
    /// executing. With `heartbeat`, the runner and the job's manager are marked as contacted.
    pub(crate) fn authenticate_job(
        &mut self,
        id: i64,
        token: Option<&str>,
        ip: Option<IpAddr>,
        heartbeat: bool,
    ) -> Result<(), JobForbidden> {
        let Some(job) = self.jobs.get(&id) else {
            return Err(JobForbidden {
                status: None,
                reason: "403 Forbidden",
            });
        };
        if token != Some(job.token.as_str()) {
            return Err(JobForbidden {
                status: None,
                reason: "403 Forbidden",
            });
        }
        if !job.is_executing() {
            return Err(JobForbidden {
                status: Some(job.status),
                reason: "403 Forbidden - Job is not running",
            });
        }
        if heartbeat && let (Some(r), Some(m)) = (job.runner_id, job.manager.clone()) {
            let now = SystemTime::now();
            if let Some(runner) = self.runners.get_mut(&r) {
                runner.contacted_at = Some(now);
                if let Some(manager) = runner.managers.get_mut(&m) {
                    manager.contacted_at = Some(now);
                    manager.ip = ip.or(manager.ip);
                }
            }
        }
        Ok(())
    }

    fn touch(&mut self, id: i64) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.updated_at = Some(SystemTime::now());
            job.last_update = Instant::now();
        }
    }

    /// `PUT /jobs/:id` after authentication. Returns the outcome and the injected fault that shaped it.
    pub(crate) fn update_job(
        &mut self,
        id: i64,
        p: &UpdateParams<'_>,
    ) -> (UpdateOutcome, Option<String>) {
        self.touch(id);
        let ack_window = self.opts.ack_window;
        let state = p.state.unwrap_or("");
        let is_final = matches!(state, "success" | "failed");
        let fault = if is_final {
            self.faults
                .take(Endpoint::UpdateJob, Some(id), Stage::FinalUpdate)
        } else {
            None
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return (UpdateOutcome::BadRequest(JobStatus::Failed), None);
        };
        let now = SystemTime::now();
        if let Some(action) = fault {
            job.final_updates += 1;
            let desc = Some(action.describe());
            return match action {
                Action::FinalUpdateAccepted { interval } => (
                    UpdateOutcome::Accepted {
                        status: job.status,
                        interval,
                    },
                    desc,
                ),
                _ => {
                    job.trace_reset_armed = true;
                    (UpdateOutcome::TraceInvalid(job.status), desc)
                }
            };
        }
        let outcome = match state {
            "pending" => match job.ack.as_mut() {
                Some(ack) => {
                    ack.deadline = Instant::now() + ack_window;
                    UpdateOutcome::Ok(job.status)
                }
                None => UpdateOutcome::Conflict(job.status),
            },
            "running" => {
                if job.ack.take().is_some() {
                    job.status = JobStatus::Running;
                    job.started_at = Some(now);
                }
                UpdateOutcome::Ok(job.status)
            }
            "success" | "failed" => {
                job.final_updates += 1;
                job.exit_code = p.exit_code.map(|c| c.clamp(0, 32767) as i32);
                if let Some(c) = p.checksum {
                    job.checksum = Some(c.to_owned());
                }
                if p.bytesize.is_some() {
                    job.bytesize = p.bytesize;
                }
                if job.status == JobStatus::Canceling {
                    job.finish(JobStatus::Canceled, now);
                } else if state == "success" {
                    job.finish(JobStatus::Success, now);
                } else {
                    let reason = p
                        .failure_reason
                        .filter(|r| FAILURE_REASONS.contains(r))
                        .unwrap_or("unknown_failure");
                    job.fail(reason, now);
                }
                UpdateOutcome::Ok(job.status)
            }
            _ => UpdateOutcome::BadRequest(job.status),
        };
        (outcome, None)
    }

    /// `PATCH /jobs/:id/trace` after authentication.
    pub(crate) fn append_trace(
        &mut self,
        id: i64,
        content_range: Option<&str>,
        body: &[u8],
    ) -> (TraceOutcome, Option<String>) {
        let Some(range) = content_range else {
            return (TraceOutcome::MissingRange, None);
        };
        let Some(start) = glrunner_protocol::headers::content_range_start(range) else {
            return (TraceOutcome::BadRange, None);
        };
        self.touch(id);
        let limit = self.opts.trace_size_limit;
        let fault = self
            .faults
            .take(Endpoint::PatchTrace, Some(id), Stage::Trace);
        let secrets: Vec<String> = self.registration_tokens.clone();
        let Some(job) = self.jobs.get_mut(&id) else {
            return (TraceOutcome::BadRange, None);
        };
        if let Some(Action::TraceRangeMismatch { reported }) = &fault {
            let len = reported.unwrap_or(job.trace.len() as u64);
            return (
                TraceOutcome::RangeMismatch { len },
                fault.map(|f| f.describe()),
            );
        }
        if start.saturating_add(body.len() as u64) > limit {
            job.fail("trace_size_exceeded", SystemTime::now());
            return (TraceOutcome::TooLarge, None);
        }
        if job.trace_reset_armed && start == 0 {
            job.trace.clear();
            job.trace_reset_armed = false;
        }
        let len = job.trace.len() as u64;
        if start != len {
            return (TraceOutcome::RangeMismatch { len }, None);
        }
        let mut chunk = body.to_vec();
        let mut masks: Vec<&str> = secrets.iter().map(String::as_str).collect();
        masks.push(&job.token);
        tokens::mask_in_place(&mut chunk, &masks);
        job.trace.extend_from_slice(&chunk);
        (
            TraceOutcome::Accepted {
                len: job.trace.len() as u64,
                status: job.status,
            },
            None,
        )
    }

    pub(crate) fn upload_artifact(&mut self, id: i64, artifact: NewArtifact) -> UploadOutcome {
        if artifact.data.len() as u64 > self.opts.max_artifact_size {
            return UploadOutcome::TooLarge;
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return UploadOutcome::Duplicate;
        };
        if let Some(existing) = job
            .artifacts
            .iter()
            .find(|a| a.artifact_type == artifact.artifact_type)
        {
            // Re-uploading identical content is a no-op success, like GitLab's sha256 check.
            return if existing.data == artifact.data {
                UploadOutcome::Created
            } else {
                UploadOutcome::Duplicate
            };
        }
        job.artifacts.push(StoredArtifact {
            artifact_type: artifact.artifact_type,
            artifact_format: artifact.artifact_format,
            expire_in: artifact.expire_in,
            filename: artifact.filename,
            data: artifact.data,
        });
        UploadOutcome::Created
    }

    /// `GET /jobs/:id/artifacts`: with the token of a running job (dependent job), or the job's own token.
    pub(crate) fn download_artifact(&self, id: i64, token: Option<&str>) -> DownloadOutcome {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return DownloadOutcome::Unauthorized;
        };
        let by_running_job = self
            .jobs
            .values()
            .any(|j| j.token == token && j.is_executing());
        let Some(job) = self.jobs.get(&id) else {
            return DownloadOutcome::Forbidden;
        };
        if !by_running_job && job.token != token {
            return DownloadOutcome::Forbidden;
        }
        match job.archive() {
            Some(a) => DownloadOutcome::Found {
                filename: a.filename.clone(),
                data: a.data.clone(),
            },
            None => DownloadOutcome::NotFound,
        }
    }

    pub(crate) fn artifact_data(&self, id: i64, artifact_type: &str) -> Option<bytes::Bytes> {
        let job = self.jobs.get(&id)?;
        job.artifacts
            .iter()
            .find(|a| a.artifact_type == artifact_type)
            .map(|a| a.data.clone())
    }

    /// Hard cancel: the job is `canceled` at once; the runner learns it from its next 403.
    pub(crate) fn cancel(&mut self, id: i64) -> Option<JobStatus> {
        let job = self.jobs.get_mut(&id)?;
        if !job.status.is_finished() {
            job.finish(JobStatus::Canceled, SystemTime::now());
        }
        Some(job.status)
    }

    /// Graceful cancel: a running job whose runner advertised `cancel_gracefully` becomes `canceling`;
    /// otherwise (as in GitLab) the job is canceled outright.
    pub(crate) fn cancel_gracefully(&mut self, id: i64) -> Option<JobStatus> {
        let job = self.jobs.get_mut(&id)?;
        match job.status {
            JobStatus::Running if job.cancel_gracefully => job.status = JobStatus::Canceling,
            JobStatus::Pending | JobStatus::Running => {
                job.finish(JobStatus::Canceled, SystemTime::now())
            }
            _ => {}
        }
        Some(job.status)
    }

    pub(crate) fn job_payload(&self, id: i64) -> Option<Value> {
        self.jobs.get(&id)?.payload.clone()
    }

    pub(crate) fn job_token(&self, id: i64) -> Option<Secret> {
        self.jobs.get(&id).map(|j| Secret::new(j.token.clone()))
    }

    pub(crate) fn snapshot(&self, id: i64) -> Option<JobSnapshot> {
        let job = self.jobs.get(&id)?;
        Some(JobSnapshot {
            id: job.id,
            name: job.spec.name.clone(),
            pipeline_id: job.pipeline_id,
            status: job.status,
            failure_reason: job.failure_reason.clone(),
            exit_code: job.exit_code,
            token: Secret::new(job.token.clone()),
            trace: job.trace.clone(),
            trace_len: job.trace.len() as u64,
            trace_crc32: crc32fast::hash(&job.trace),
            checksum: job.checksum.clone(),
            bytesize: job.bytesize,
            runner_id: job.runner_id,
            manager: job.manager.clone(),
            awaiting_ack: job.ack.is_some(),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            updated_at: job.updated_at,
            artifacts: job
                .artifacts
                .iter()
                .map(|a| ArtifactSnapshot {
                    artifact_type: a.artifact_type.clone(),
                    artifact_format: a.artifact_format.clone(),
                    expire_in: a.expire_in.clone(),
                    filename: a.filename.clone(),
                    size: a.data.len() as u64,
                })
                .collect(),
            final_updates: job.final_updates,
        })
    }

    pub(crate) fn job_ids(&self) -> Vec<i64> {
        self.jobs.keys().copied().collect()
    }

    // ---------------------------------------------------------------- timers

    /// The next moment [`State::sweep`] has work: an acknowledgement window or a stale running job.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let stale = self.opts.stale_running_after;
        self.jobs
            .values()
            .filter_map(|j| match (&j.ack, j.status) {
                (Some(ack), _) => Some(ack.deadline),
                (None, JobStatus::Running | JobStatus::Canceling) => Some(j.last_update + stale),
                _ => None,
            })
            .min()
    }

    /// Apply expired windows: unacknowledged jobs go back to the queue; running jobs without updates for
    /// too long are failed. Returns whether anything changed.
    pub(crate) fn sweep(&mut self, now: Instant) -> bool {
        let stale = self.opts.stale_running_after;
        let wall = SystemTime::now();
        let mut requeued = Vec::new();
        let mut changed = false;
        for job in self.jobs.values_mut() {
            if job.ack.as_ref().is_some_and(|a| a.deadline <= now) {
                job.ack = None;
                job.runner_id = None;
                job.manager = None;
                job.payload = None;
                requeued.push(job.spec.runner_id);
                changed = true;
            } else if job.ack.is_none() && job.last_update + stale <= now {
                match job.status {
                    JobStatus::Running => job.fail("no_updates_running", wall),
                    JobStatus::Canceling => job.fail("no_updates_canceling", wall),
                    _ => continue,
                }
                changed = true;
            }
        }
        for target in requeued {
            self.tick_for(target);
        }
        changed
    }
}

/// `info` as sent, read into the protocol type where the shapes agree.
fn lenient_info(info: &Value) -> VersionInfo {
    serde_json::from_value(info.clone()).unwrap_or_else(|_| {
        let text = |k: &str| {
            info.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        VersionInfo {
            name: text("name"),
            version: text("version"),
            revision: text("revision"),
            platform: text("platform"),
            architecture: text("architecture"),
            executor: text("executor"),
            shell: text("shell"),
            ..VersionInfo::default()
        }
    })
}

/// Answer of `POST /runners` and `/runners/verify` and of a token reset.
pub(crate) struct RunnerDetails {
    pub id: i64,
    pub token: String,
    pub token_expires_at: Option<String>,
}

pub(crate) enum RegisterOutcome {
    Created(RunnerDetails),
    Forbidden,
    Gone,
}

pub(crate) enum DeleteManagerOutcome {
    Deleted,
    Forbidden,
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> State {
        State::new(Options::default(), "http://127.0.0.1:1".to_owned())
    }

    fn request<'a>(token: &'a str, info: &'a Value) -> JobRequestParams<'a> {
        JobRequestParams {
            token,
            system_id: Some("s_000000000001"),
            last_update: None,
            info: Some(info),
            session_url: None,
        }
    }

    #[test]
    fn unsupported_job_is_failed_and_next_job_is_given() {
        let mut s = state();
        let (_, token) = s.add_runner(&RunnerSpec::created());
        let gated = s
            .enqueue(
                JobSpec::script(["true"])
                    .artifact(crate::job::ArtifactSpec::report("junit", ["r.xml"])),
                None,
            )
            .unwrap();
        let plain = s.enqueue(JobSpec::script(["true"]), None).unwrap();
        let info = json!({"features": {"upload_multiple_artifacts": false}});
        match s.request_job(&request(&token, &info), None) {
            JobRequestOutcome::Job { payload } => assert_eq!(payload["id"], plain),
            _ => panic!("expected the plain job"),
        }
        let gated = s.snapshot(gated).unwrap();
        assert_eq!(gated.status, JobStatus::Failed);
        assert_eq!(gated.failure_reason.as_deref(), Some("runner_unsupported"));
    }

    #[test]
    fn ack_window_requeues_and_stale_jobs_fail() {
        let mut s = state();
        let (_, token) = s.add_runner(&RunnerSpec::created());
        let id = s.enqueue(JobSpec::script(["true"]), None).unwrap();
        let info = json!({"features": {"two_phase_job_commit": true}});
        assert!(matches!(
            s.request_job(&request(&token, &info), None),
            JobRequestOutcome::Job { .. }
        ));
        assert!(s.snapshot(id).unwrap().awaiting_ack);
        let deadline = s.next_deadline().unwrap();
        assert!(s.sweep(deadline));
        let snap = s.snapshot(id).unwrap();
        assert!(!snap.awaiting_ack && snap.status == JobStatus::Pending && snap.manager.is_none());

        let plain = json!({"features": {}});
        assert!(matches!(
            s.request_job(&request(&token, &plain), None),
            JobRequestOutcome::Job { .. }
        ));
        assert_eq!(s.snapshot(id).unwrap().status, JobStatus::Running);
        let deadline = s.next_deadline().unwrap();
        assert!(s.sweep(deadline));
        let snap = s.snapshot(id).unwrap();
        assert_eq!(snap.failure_reason.as_deref(), Some("no_updates_running"));
    }
}
