//! The uploader: PATCH the spool to GitLab on the server's interval, resync on 416, keep the job alive,
//! turn `Job-Status` into cancel/abort, and send the final update.
//!
//! One task per job owns the upload state (`sent`, the interval, the last contact). `finish` hands that
//! task the final state, so the incremental PATCHes and the final sequence never race each other.

use crate::control::JobControl;
use crate::spool::{Snapshot, Trace};
use bytes::Bytes;
use glrunner_gitlab::{ApiError, GitLabClient, PatchTraceReply, UpdateJobReply};
use glrunner_protocol::Secret;
use glrunner_protocol::request::{
    JobState, RemoteJobStatus, TraceOutput, UpdateJobRequest, VersionInfo, checksum_string,
};
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

/// gitlab-runner's update interval until GitLab sends `X-GitLab-Trace-Update-Interval`.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(3);
/// The largest interval GitLab may ask for.
pub const MAX_UPDATE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// With nothing PATCHed for this long, a `PUT state=running` keeps the job alive (GitLab drops running
/// jobs without updates after an hour).
pub const FORCE_SEND_INTERVAL: Duration = Duration::from_secs(30);
/// The largest PATCH body.
pub const MAX_PATCH_BYTES: usize = 1024 * 1024;
/// Trace bytes held in memory for in-flight PATCHes, across all jobs of this process: 100 jobs never
/// hold 100 MiB of log at once.
pub const PATCH_MEMORY_BUDGET: usize = 8 * 1024 * 1024;
/// `job_status_final_update_retry_limit` when unset.
pub const DEFAULT_FINAL_UPDATE_RETRY_LIMIT: u32 = 10;
/// The first wait after a failed final update; it doubles up to [`FINAL_RETRY_BACKOFF_MAX`].
pub const FINAL_RETRY_BACKOFF: Duration = Duration::from_secs(1);
pub const FINAL_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long to keep answering 202 on the final update (GitLab applies the state after 5 minutes).
pub const ACCEPTED_WAIT_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The shortest tick, whatever the settings say: an interval of zero must not spin.
const MIN_TICK: Duration = Duration::from_millis(5);
/// Budget unit: one permit per KiB.
const BUDGET_UNIT: usize = 1024;
const BUDGET_PERMITS: usize = PATCH_MEMORY_BUDGET / BUDGET_UNIT;
static PATCH_BUDGET: Semaphore = Semaphore::const_new(BUDGET_PERMITS);
/// 416 answers tolerated in one flush of the final update before it counts as a failure.
const MAX_RESYNCS_PER_FLUSH: u32 = 10;
/// 202 answers tolerated on the final update (besides [`UploadSettings::accepted_wait_limit`]).
const MAX_ACCEPTED_ROUNDS: u32 = 600;

/// Bytes of the patch budget free right now (for metrics and tests).
pub fn patch_budget_available() -> usize {
    PATCH_BUDGET.available_permits() * BUDGET_UNIT
}

/// The job's final state.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalUpdate {
    pub success: bool,
    /// Already mapped onto what this GitLab accepts.
    pub failure_reason: Option<String>,
    pub exit_code: Option<i32>,
}

/// Which job the uploader reports for.
#[derive(Debug, Clone)]
pub struct UploadJob {
    pub id: i64,
    pub token: Secret,
    /// Sent in every PUT.
    pub info: VersionInfo,
    /// `?debug_trace=` on PATCHes (`CI_DEBUG_TRACE`).
    pub debug_trace: bool,
}

/// Timing and limits; the defaults are gitlab-runner's.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Until GitLab sends `X-GitLab-Trace-Update-Interval`.
    pub update_interval: Duration,
    pub force_send_interval: Duration,
    /// Capped at [`MAX_PATCH_BYTES`].
    pub max_patch_bytes: usize,
    /// `job_status_final_update_retry_limit`: failed final-update attempts before giving up (at least 1).
    pub final_update_retry_limit: u32,
    pub final_retry_backoff: Duration,
    pub final_retry_backoff_max: Duration,
    pub accepted_wait_limit: Duration,
    /// While the job prints nothing, send an empty PATCH (GitLab's keep-alive) every update interval, so
    /// a cancel is seen within one interval instead of at the next keep-alive PUT. Off by default
    /// (gitlab-runner's behaviour: a silent job learns of a cancel only after `force_send_interval`).
    pub check_status_when_idle: bool,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            update_interval: DEFAULT_UPDATE_INTERVAL,
            force_send_interval: FORCE_SEND_INTERVAL,
            max_patch_bytes: MAX_PATCH_BYTES,
            final_update_retry_limit: DEFAULT_FINAL_UPDATE_RETRY_LIMIT,
            final_retry_backoff: FINAL_RETRY_BACKOFF,
            final_retry_backoff_max: FINAL_RETRY_BACKOFF_MAX,
            accepted_wait_limit: ACCEPTED_WAIT_LIMIT,
            check_status_when_idle: false,
        }
    }
}

/// The two job endpoints the uploader needs; [`GitLabClient`] is the real one.
pub trait TraceApi: Send + Sync + 'static {
    type Error: fmt::Display + Send;

    /// `PATCH /jobs/:id/trace` with `body` starting at byte `offset`.
    fn patch_trace(
        &self,
        job_id: i64,
        job_token: &Secret,
        offset: u64,
        body: Bytes,
        debug_trace: bool,
    ) -> impl Future<Output = Result<PatchTraceReply, Self::Error>> + Send;

    /// `PUT /jobs/:id`.
    fn update_job(
        &self,
        job_id: i64,
        req: &UpdateJobRequest,
    ) -> impl Future<Output = Result<UpdateJobReply, Self::Error>> + Send;
}

impl TraceApi for GitLabClient {
    type Error = ApiError;

    fn patch_trace(
        &self,
        job_id: i64,
        job_token: &Secret,
        offset: u64,
        body: Bytes,
        debug_trace: bool,
    ) -> impl Future<Output = Result<PatchTraceReply, ApiError>> + Send {
        GitLabClient::patch_trace(self, job_id, job_token, offset, body, debug_trace)
    }

    fn update_job(
        &self,
        job_id: i64,
        req: &UpdateJobRequest,
    ) -> impl Future<Output = Result<UpdateJobReply, ApiError>> + Send {
        GitLabClient::update_job(self, job_id, req)
    }
}

/// A running uploader for one job.
pub struct Uploader {
    job_id: i64,
    trace: Trace,
    final_tx: oneshot::Sender<FinalUpdate>,
    task: JoinHandle<Result<(), UploadError>>,
}

impl fmt::Debug for Uploader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uploader")
            .field("job_id", &self.job_id)
            .finish()
    }
}

impl Uploader {
    /// Start sending `trace` for job `job_id`. Cancel signals from GitLab fire on `control`. Must be called
    /// inside a Tokio runtime.
    pub fn start(
        client: GitLabClient,
        job_id: i64,
        job_token: Secret,
        info: VersionInfo,
        trace: Trace,
        control: JobControl,
        debug_trace: bool,
    ) -> Self {
        let job = UploadJob {
            id: job_id,
            token: job_token,
            info,
            debug_trace,
        };
        Self::start_with(client, job, trace, control, UploadSettings::default())
    }

    /// Start with any [`TraceApi`] and explicit settings (`job_status_final_update_retry_limit`, …).
    /// Must be called inside a Tokio runtime.
    pub fn start_with<A: TraceApi>(
        api: A,
        job: UploadJob,
        trace: Trace,
        control: JobControl,
        settings: UploadSettings,
    ) -> Self {
        let (final_tx, final_rx) = oneshot::channel();
        let job_id = job.id;
        let worker = Worker {
            api,
            job,
            trace: trace.clone(),
            control,
            settings,
        };
        let task = tokio::spawn(worker.run(final_rx));
        Self {
            job_id,
            trace,
            final_tx,
            task,
        }
    }

    /// Send the rest of the trace and the final state; returns once GitLab accepted it or gave up.
    /// Write every line (e.g. `Job succeeded`) before calling this: the final checksum covers the trace
    /// as it is now, and later writes are not sent.
    pub async fn finish(self, update: FinalUpdate) -> Result<(), UploadError> {
        self.trace.finish();
        // If the task is gone, awaiting it below reports why.
        let _ = self.final_tx.send(update);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(UploadError::Crashed {
                job_id: self.job_id,
                detail: e.to_string(),
            }),
        }
    }
}

/// Why the final update could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    #[error(
        "GitLab did not accept the final state of job {job_id} after {attempts} attempts (last: {last}); \
         the job may show as running in GitLab until it times out. \
         Likely cause: GitLab was unreachable or failing while the job ended. \
         Fix: check that this host reaches GitLab (`glrunner verify`), and raise \
         `job_status_final_update_retry_limit` under [[runners]] in config.toml to ride out longer outages"
    )]
    FinalUpdateFailed {
        job_id: i64,
        attempts: u32,
        last: String,
    },
    #[error(
        "GitLab kept answering 202 (accepted, not yet applied) to the final state of job {job_id} for \
         {waited_secs} s; the job may show as running in GitLab for a while. \
         Likely cause: GitLab is slow to persist the live trace (busy Sidekiq or object storage). \
         Fix: check GitLab's background jobs (Admin area > Monitoring > Background jobs); nothing to change in glrunner"
    )]
    StillAccepted { job_id: i64, waited_secs: u64 },
    #[error(
        "GitLab no longer accepts updates for job {job_id} ({answer}): the job was canceled, erased or \
         failed on GitLab's side, so glrunner's final state was not recorded. \
         Nothing to fix unless this is unexpected; then look at the job's page in GitLab"
    )]
    JobGone { job_id: i64, answer: String },
    #[error(
        "the trace uploader of job {job_id} stopped unexpectedly ({detail}); the job may show as running in \
         GitLab. This is a glrunner bug: please report it with the runner's log"
    )]
    Crashed { job_id: i64, detail: String },
}

impl UploadError {
    /// GitLab itself ended the job (canceled, erased, failed): not a runner or network problem.
    pub fn is_job_gone(&self) -> bool {
        matches!(self, Self::JobGone { .. })
    }
}

/// Upload progress, owned by the job's task.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Bytes GitLab holds (as far as we know).
    sent: u64,
    interval: Duration,
    last_contact: Instant,
    /// GitLab refused the job (403, 404, canceled/failed): stop the incremental updates.
    stopped: bool,
}

impl Progress {
    fn apply_interval(&mut self, from_server: Option<Duration>) {
        if let Some(i) = from_server.filter(|i| !i.is_zero()) {
            self.interval = i.min(MAX_UPDATE_INTERVAL);
        }
    }
}

/// One PATCH's outcome.
enum Patch {
    Sent,
    Resynced,
    Gone(String),
    Failed(String),
}

/// One round of the final update.
enum Round {
    Done,
    Gone(String),
    /// 202: wait this long and repeat.
    Accepted(Duration),
    /// 412: resend the whole trace.
    Reset,
    Failed(String),
}

struct Worker<A> {
    api: A,
    job: UploadJob,
    trace: Trace,
    control: JobControl,
    settings: UploadSettings,
}

impl<A: TraceApi> Worker<A> {
    async fn run(self, mut final_rx: oneshot::Receiver<FinalUpdate>) -> Result<(), UploadError> {
        let mut p = Progress {
            sent: 0,
            interval: self.settings.update_interval,
            last_contact: Instant::now(),
            stopped: false,
        };
        let update = loop {
            let message = tokio::select! {
                biased;
                m = &mut final_rx => Some(m),
                () = tokio::time::sleep(p.interval.max(MIN_TICK)) => None,
            };
            let message = match message {
                Some(m) => m,
                None if p.stopped => continue,
                None => {
                    // A final update interrupts a tick; a PATCH cut short is resynced by the next 416.
                    let mut next = p;
                    let m = tokio::select! {
                        biased;
                        m = &mut final_rx => Some(m),
                        () = self.tick(&mut next) => None,
                    };
                    match m {
                        Some(m) => m,
                        None => {
                            p = next;
                            continue;
                        }
                    }
                }
            };
            match message {
                Ok(update) => break update,
                // The uploader was dropped without a final update: nothing more to do.
                Err(_) => return Ok(()),
            }
        };
        self.final_update(&mut p, update).await
    }

    async fn tick(&self, p: &mut Progress) {
        let len = self.trace.len();
        if len > p.sent {
            match self.patch(p, len).await {
                Patch::Sent | Patch::Resynced => {}
                Patch::Gone(answer) => {
                    tracing::info!(job_id = self.job.id, %answer, "GitLab refused the job's trace; stopping trace updates");
                    p.stopped = true;
                }
                Patch::Failed(why) => {
                    tracing::debug!(job_id = self.job.id, %why, "trace update failed; retrying on the next tick");
                }
            }
        } else if p.last_contact.elapsed() >= self.settings.force_send_interval {
            self.keep_alive(p).await;
        } else if self.settings.check_status_when_idle {
            self.check_status(p).await;
        }
    }

    /// An empty PATCH at the current offset: stores nothing, answers with the job's status.
    async fn check_status(&self, p: &mut Progress) {
        let reply = self
            .api
            .patch_trace(
                self.job.id,
                &self.job.token,
                p.sent,
                Bytes::new(),
                self.job.debug_trace,
            )
            .await;
        match reply {
            Ok(r) => {
                p.apply_interval(r.update_interval);
                if let Some(answer) = self.observe(r.status, r.job_status.as_ref()) {
                    tracing::info!(job_id = self.job.id, %answer, "GitLab refused the job's status check; stopping trace updates");
                    p.stopped = true;
                }
            }
            Err(e) => tracing::debug!(job_id = self.job.id, error = %e, "status check failed"),
        }
    }

    /// Fires cancel/abort from an answer; returns why the job is gone, if it is.
    fn observe(&self, status: u16, job_status: Option<&RemoteJobStatus>) -> Option<String> {
        if let Some(remote) = job_status {
            if remote.is_abort() {
                self.control.abort.cancel();
                return Some(format!("HTTP {status}, Job-Status: {remote}"));
            }
            if *remote == RemoteJobStatus::Canceling {
                self.control.cancel.cancel();
            }
        }
        if status == 403 {
            self.control.abort.cancel();
            return Some("HTTP 403 Forbidden".to_owned());
        }
        None
    }

    /// PATCH the next bytes below `upto`.
    async fn patch(&self, p: &mut Progress, upto: u64) -> Patch {
        let max = self.settings.max_patch_bytes.clamp(1, MAX_PATCH_BYTES);
        let want = usize::try_from(upto.saturating_sub(p.sent)).map_or(max, |n| n.min(max));
        let permits =
            u32::try_from(want.div_ceil(BUDGET_UNIT).clamp(1, BUDGET_PERMITS)).unwrap_or(1);
        let Ok(_permit) = PATCH_BUDGET.acquire_many(permits).await else {
            return Patch::Failed("the patch memory budget is closed".to_owned());
        };
        let offset = p.sent;
        let trace = self.trace.clone();
        let body = match tokio::task::spawn_blocking(move || trace.read_at(offset, want)).await {
            Ok(Ok(body)) if !body.is_empty() => body,
            Ok(Ok(_)) => {
                return Patch::Failed(format!("the trace spool has no bytes at offset {offset}"));
            }
            Ok(Err(e)) => return Patch::Failed(format!("reading the trace spool failed: {e}")),
            Err(e) => return Patch::Failed(format!("reading the trace spool failed: {e}")),
        };
        let n = body.len() as u64;
        let reply = self
            .api
            .patch_trace(
                self.job.id,
                &self.job.token,
                offset,
                Bytes::from(body),
                self.job.debug_trace,
            )
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return Patch::Failed(format!("PATCH failed: {e}")),
        };
        p.apply_interval(reply.update_interval);
        if let Some(answer) = self.observe(reply.status, reply.job_status.as_ref()) {
            return Patch::Gone(answer);
        }
        match reply.status {
            200..=299 => {
                p.sent = offset + n;
                p.last_contact = Instant::now();
                Patch::Sent
            }
            404 => Patch::Gone("HTTP 404 Not Found".to_owned()),
            416 => match reply.range_end {
                Some(end) => {
                    let len = self.trace.len();
                    if end > len {
                        tracing::warn!(
                            job_id = self.job.id,
                            server = end,
                            local = len,
                            "GitLab reports more trace than was written"
                        );
                    }
                    p.sent = end.min(len);
                    p.last_contact = Instant::now();
                    Patch::Resynced
                }
                None => Patch::Failed("HTTP 416 without a Range header".to_owned()),
            },
            s => Patch::Failed(format!("PATCH answered HTTP {s}")),
        }
    }

    fn request(&self, state: JobState, snap: Snapshot) -> UpdateJobRequest {
        UpdateJobRequest {
            info: self.job.info.clone(),
            token: self.job.token.clone(),
            state,
            output: Some(TraceOutput {
                checksum: checksum_string(snap.crc32),
                bytesize: snap.len,
            }),
            ..Default::default()
        }
    }

    async fn keep_alive(&self, p: &mut Progress) {
        let req = self.request(JobState::Running, self.trace.snapshot());
        match self.api.update_job(self.job.id, &req).await {
            Ok(r) => {
                p.apply_interval(r.update_interval);
                if let Some(answer) = self.observe(r.status, r.job_status.as_ref()) {
                    tracing::info!(job_id = self.job.id, %answer, "GitLab refused the job's keep-alive; stopping trace updates");
                    p.stopped = true;
                } else if (200..300).contains(&r.status) {
                    p.last_contact = Instant::now();
                } else {
                    tracing::debug!(
                        job_id = self.job.id,
                        status = r.status,
                        "keep-alive update not accepted"
                    );
                }
            }
            Err(e) => tracing::debug!(job_id = self.job.id, error = %e, "keep-alive update failed"),
        }
    }

    /// Send everything below `upto`, resyncing on 416.
    async fn flush(&self, p: &mut Progress, upto: u64) -> Result<(), Round> {
        let mut resyncs = 0;
        while p.sent < upto {
            match self.patch(p, upto).await {
                Patch::Sent => {}
                Patch::Resynced => {
                    resyncs += 1;
                    if resyncs > MAX_RESYNCS_PER_FLUSH {
                        return Err(Round::Failed(format!(
                            "GitLab answered 416 to {resyncs} trace updates in a row"
                        )));
                    }
                }
                Patch::Gone(answer) => return Err(Round::Gone(answer)),
                Patch::Failed(why) => return Err(Round::Failed(why)),
            }
        }
        Ok(())
    }

    async fn final_round(&self, p: &mut Progress, upto: u64, req: &UpdateJobRequest) -> Round {
        if let Err(round) = self.flush(p, upto).await {
            return round;
        }
        let r = match self.api.update_job(self.job.id, req).await {
            Ok(r) => r,
            Err(e) => return Round::Failed(format!("PUT failed: {e}")),
        };
        if let Some(answer) = self.observe(r.status, r.job_status.as_ref()) {
            return Round::Gone(answer);
        }
        match r.status {
            202 => Round::Accepted(
                r.update_interval
                    .filter(|i| !i.is_zero())
                    .unwrap_or(DEFAULT_UPDATE_INTERVAL)
                    .min(MAX_UPDATE_INTERVAL),
            ),
            200..=299 => Round::Done,
            404 => Round::Gone("HTTP 404 Not Found".to_owned()),
            412 => Round::Reset,
            s => Round::Failed(format!("PUT answered HTTP {s}")),
        }
    }

    async fn final_update(&self, p: &mut Progress, update: FinalUpdate) -> Result<(), UploadError> {
        let job_id = self.job.id;
        let snap = self.trace.snapshot();
        let mut req = self.request(
            if update.success {
                JobState::Success
            } else {
                JobState::Failed
            },
            snap,
        );
        req.checksum = Some(snap.checksum());
        if !update.success {
            req.failure_reason = Some(
                update
                    .failure_reason
                    .unwrap_or_else(|| "script_failure".to_owned()),
            );
        }
        req.exit_code = update.exit_code.filter(|c| *c != 0);

        let limit = self.settings.final_update_retry_limit.max(1);
        let mut failures = 0u32;
        let mut backoff = self.settings.final_retry_backoff;
        let mut accepted = 0u32;
        let started = Instant::now();
        // Every round either returns, counts a failure (at most `limit`) or counts a 202.
        for _ in 0..=limit.saturating_add(MAX_ACCEPTED_ROUNDS) {
            match self.final_round(p, snap.len, &req).await {
                Round::Done => {
                    tracing::debug!(job_id, bytes = snap.len, "final update accepted");
                    return Ok(());
                }
                Round::Gone(answer) => return Err(UploadError::JobGone { job_id, answer }),
                Round::Accepted(wait) => {
                    accepted += 1;
                    if accepted > MAX_ACCEPTED_ROUNDS
                        || started.elapsed() + wait > self.settings.accepted_wait_limit
                    {
                        return Err(UploadError::StillAccepted {
                            job_id,
                            waited_secs: started.elapsed().as_secs(),
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
                Round::Reset => {
                    failures += 1;
                    if failures >= limit {
                        return Err(UploadError::FinalUpdateFailed {
                            job_id,
                            attempts: failures,
                            last: "HTTP 412: GitLab rejected the trace after resending it"
                                .to_owned(),
                        });
                    }
                    tracing::info!(
                        job_id,
                        "GitLab rejected the trace checksum (412); resending the whole trace"
                    );
                    p.sent = 0;
                }
                Round::Failed(last) => {
                    failures += 1;
                    if failures >= limit {
                        return Err(UploadError::FinalUpdateFailed {
                            job_id,
                            attempts: failures,
                            last,
                        });
                    }
                    tracing::warn!(job_id, attempt = failures, %last, retry_in = ?backoff, "final update failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.settings.final_retry_backoff_max);
                }
            }
        }
        Err(UploadError::FinalUpdateFailed {
            job_id,
            attempts: failures,
            last: "too many rounds".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_from_server_is_capped_and_zero_ignored() {
        let mut p = Progress {
            sent: 0,
            interval: DEFAULT_UPDATE_INTERVAL,
            last_contact: Instant::now(),
            stopped: false,
        };
        p.apply_interval(Some(Duration::ZERO));
        assert_eq!(p.interval, DEFAULT_UPDATE_INTERVAL);
        p.apply_interval(None);
        assert_eq!(p.interval, DEFAULT_UPDATE_INTERVAL);
        p.apply_interval(Some(Duration::from_secs(60)));
        assert_eq!(p.interval, Duration::from_secs(60));
        p.apply_interval(Some(Duration::from_secs(3600)));
        assert_eq!(p.interval, MAX_UPDATE_INTERVAL);
    }

    #[test]
    fn errors_explain_and_hide_nothing_secret() {
        let e = UploadError::FinalUpdateFailed {
            job_id: 42,
            attempts: 10,
            last: "PUT answered HTTP 502".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("job 42") && text.contains("HTTP 502") && text.contains("running"),
            "{text}"
        );
        assert!(
            text.contains("job_status_final_update_retry_limit"),
            "{text}"
        );
        assert!(!e.is_job_gone());
        assert!(
            UploadError::JobGone {
                job_id: 1,
                answer: "HTTP 403 Forbidden".into()
            }
            .is_job_gone()
        );
        let job = UploadJob {
            id: 1,
            token: Secret::new("glcbt-secret-token"),
            info: VersionInfo::default(),
            debug_trace: false,
        };
        assert!(!format!("{job:?}").contains("secret-token"));
    }
}
