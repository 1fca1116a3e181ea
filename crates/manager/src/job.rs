//! One job from the moment GitLab hands it over to the final update: accept it (two-phase commit), open its
//! trace and uploader, run it with the entry's executor, and report how it ended. Every path ends with a
//! final update unless GitLab itself canceled the job — a job is never left "running" (decision 3).

use crate::metrics::Metrics;
use crate::settings::RunnerEntry;
use glrunner_gitlab::reply::UpdateJobReply;
use glrunner_job::{JobOutcome, run_job};
use glrunner_protocol::request::{JobState, RemoteJobStatus, UpdateJobRequest};
use glrunner_protocol::{FailureReason, JobIdentity, JobResponse};
use glrunner_trace::format;
use glrunner_trace::upload::{UploadJob, UploadSettings};
use glrunner_trace::{FinalUpdate, JobControl, Trace, TraceConfig, Uploader};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs one job to its final update.
pub(crate) async fn run_assigned_job(
    entry: Arc<RunnerEntry>,
    job: Box<JobResponse>,
    concurrent_id: usize,
    abort_jobs: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let started = Instant::now();
    let runner = &entry.identity.name;
    tracing::info!(job = job.id, runner = %runner, project = job.job_info.project_id, "job received");

    let trace = match Trace::new(trace_config(&entry, &job)) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(job = job.id, "cannot create the job's trace spool: {e}");
            fail_without_trace(
                &entry,
                job.id,
                &job.token,
                FailureReason::RunnerSystemFailure,
            )
            .await;
            return;
        }
    };

    match accept(&entry, &job).await {
        Acceptance::Run => {}
        Acceptance::Gone(status) => {
            tracing::warn!(job = job.id, status = %status, "GitLab withdrew the job before it started; not running it");
            return;
        }
        Acceptance::Canceling => {
            let control = JobControl::new();
            let uploader = start_uploader(&entry, &job, &trace, &control);
            format::error(&trace, "Job failed: canceled before it started");
            finish(
                job.id,
                uploader,
                FailureReason::JobCanceled.into_update(&job),
            )
            .await;
            return;
        }
    }

    let control = JobControl::new();
    let uploader = start_uploader(&entry, &job, &trace, &control);
    metrics.job_started(runner);

    // A forceful shutdown aborts the job; remember that it was us so it is reported, not dropped.
    let interrupted = CancellationToken::new();
    let watcher = {
        let (abort_jobs, control, interrupted) =
            (abort_jobs.clone(), control.clone(), interrupted.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = abort_jobs.cancelled() => { interrupted.cancel(); control.abort.cancel(); }
                _ = control.abort.cancelled() => {}
            }
        })
    };

    let mut ctx = entry.context.clone();
    ctx.concurrent_id = concurrent_id;
    let outcome = match entry.executor.create(&job, &ctx) {
        Ok(mut executor) => run_job(&job, &ctx, executor.as_mut(), &trace, &control).await,
        Err(why) => {
            format::error(&trace, &format!("Job failed (system failure): {why}"));
            JobOutcome::Failed {
                reason: FailureReason::RunnerConfigurationError,
                exit_code: None,
            }
        }
    };
    watcher.abort();

    let update = match outcome {
        JobOutcome::Success => FinalUpdate {
            success: true,
            failure_reason: None,
            exit_code: None,
        },
        JobOutcome::Failed { reason, exit_code } => FinalUpdate {
            exit_code,
            ..reason.into_update(&job)
        },
        JobOutcome::Aborted if interrupted.is_cancelled() => {
            format::error(
                &trace,
                "Job failed (system failure): glrunner is shutting down and interrupted the job",
            );
            FailureReason::RunnerInterrupted.into_update(&job)
        }
        JobOutcome::Aborted => {
            tracing::info!(job = job.id, "job canceled in GitLab; stopped");
            metrics.job_finished(runner, Some("job_canceled"));
            drop(uploader);
            return;
        }
    };
    let reason = update.failure_reason.clone();
    finish(job.id, uploader, update).await;
    metrics.job_finished(runner, reason.as_deref());
    tracing::info!(
        job = job.id,
        runner = %runner,
        duration_s = started.elapsed().as_secs_f64(),
        failure_reason = reason.as_deref().unwrap_or(""),
        "job finished"
    );
}

trait IntoUpdate {
    fn into_update(self, job: &JobResponse) -> FinalUpdate;
}

impl IntoUpdate for FailureReason {
    fn into_update(self, job: &JobResponse) -> FinalUpdate {
        FinalUpdate {
            success: false,
            failure_reason: Some(self.for_gitlab(&job.features.failure_reasons).to_owned()),
            exit_code: None,
        }
    }
}

/// Values masked in this job's trace: masked variables, the job token, and every other credential the
/// payload carries, whatever their variable flags say.
fn trace_config(entry: &RunnerEntry, job: &JobResponse) -> TraceConfig {
    let mut masked = glrunner_job::variables::masked_values(job);
    masked.extend(
        job.credentials
            .iter()
            .map(|c| c.password.expose().to_owned()),
    );
    masked.extend(job.dependencies.iter().map(|d| d.token.expose().to_owned()));
    masked.push(entry.token.expose().to_owned());
    // The masker drops empty values and duplicates and adds the built-in token prefixes itself.
    TraceConfig {
        masked_values: masked,
        token_prefixes: job.features.token_mask_prefixes.clone(),
        limit_bytes: entry.output_limit_bytes,
        mirror: None,
    }
}

enum Acceptance {
    Run,
    Canceling,
    Gone(String),
}

/// Attempts of the acknowledging PUT when the connection fails (HTTP errors are retried by the client).
const ACK_ATTEMPTS: u32 = 3;
/// Wait before the second attempt; it doubles for each further one.
const ACK_RETRY_WAIT: Duration = Duration::from_secs(1);

/// `PUT state=running` right after the job arrives: the acknowledgement of two-phase commit. A lost
/// acknowledgement leaves the job pending in GitLab, which hands it to another runner when its window
/// closes, so a failed connection is retried a few times before the job runs unacknowledged.
async fn accept(entry: &RunnerEntry, job: &JobResponse) -> Acceptance {
    let req = UpdateJobRequest {
        info: entry.info.clone(),
        token: job.token.clone(),
        state: JobState::Running,
        ..UpdateJobRequest::default()
    };
    let mut wait = ACK_RETRY_WAIT;
    for attempt in 1..=ACK_ATTEMPTS {
        match entry.client.update_job(job.id, &req).await {
            Ok(UpdateJobReply {
                job_status: Some(RemoteJobStatus::Canceling),
                ..
            }) => return Acceptance::Canceling,
            Ok(UpdateJobReply {
                job_status: Some(s),
                ..
            }) if s.is_abort() => return Acceptance::Gone(s.to_string()),
            Ok(UpdateJobReply { status: 403, .. }) => {
                return Acceptance::Gone("403 Forbidden".into());
            }
            Ok(_) => return Acceptance::Run,
            Err(e) if attempt < ACK_ATTEMPTS => {
                tracing::warn!(
                    job = job.id,
                    "acknowledging the job failed (attempt {attempt} of {ACK_ATTEMPTS}); trying again in {}: {e}",
                    crate::health::humanize(wait)
                );
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                // As gitlab-runner: a failed acknowledgement does not stop the job; the trace loop will tell.
                tracing::warn!(
                    job = job.id,
                    "acknowledging the job failed; running it anyway: {e}"
                );
            }
        }
    }
    Acceptance::Run
}

fn start_uploader(
    entry: &RunnerEntry,
    job: &JobResponse,
    trace: &Trace,
    control: &JobControl,
) -> Uploader {
    let debug_trace = !entry.debug_trace_disabled && job.variable("CI_DEBUG_TRACE") == Some("true");
    Uploader::start_with(
        entry.client.clone(),
        UploadJob {
            id: job.id,
            token: job.token.clone(),
            info: entry.info.clone(),
            debug_trace,
        },
        trace.clone(),
        control.clone(),
        UploadSettings {
            final_update_retry_limit: entry.final_update_retry_limit,
            // A cancel must stop a job promptly even while it prints nothing.
            check_status_when_idle: true,
            ..UploadSettings::default()
        },
    )
}

async fn finish(job_id: i64, uploader: Uploader, update: FinalUpdate) {
    match uploader.finish(update).await {
        Ok(()) => {}
        Err(e) if e.is_job_gone() => tracing::info!(job = job_id, "{e}"),
        Err(e) => tracing::error!(
            job = job_id,
            "the job's final update did not reach GitLab: {e}"
        ),
    }
}

/// A job whose payload did not decode: fail it through the API with an explanation, never drop it.
pub(crate) async fn fail_undecodable(
    entry: Arc<RunnerEntry>,
    identity: JobIdentity,
    error: String,
) {
    tracing::error!(
        job = identity.id,
        "GitLab sent a job glrunner cannot read: {error}"
    );
    let job = JobResponse {
        id: identity.id,
        token: identity.token,
        ..JobResponse::default()
    };
    let trace = match Trace::new(trace_config(&entry, &job)) {
        Ok(t) => t,
        Err(_) => {
            fail_without_trace(
                &entry,
                job.id,
                &job.token,
                FailureReason::RunnerSystemFailure,
            )
            .await;
            return;
        }
    };
    let control = JobControl::new();
    let uploader = start_uploader(&entry, &job, &trace, &control);
    format::error(
        &trace,
        &format!(
            "Job failed (system failure): this job's description from GitLab could not be read by glrunner {}: {error}. \
             Upgrade glrunner, or report the payload shape to its maintainers.",
            entry.info.version
        ),
    );
    finish(
        job.id,
        uploader,
        FailureReason::RunnerSystemFailure.into_update(&job),
    )
    .await;
}

/// Last resort when not even a spool file can be made.
async fn fail_without_trace(
    entry: &RunnerEntry,
    id: i64,
    token: &glrunner_protocol::Secret,
    reason: FailureReason,
) {
    let req = UpdateJobRequest {
        info: entry.info.clone(),
        token: token.clone(),
        state: JobState::Failed,
        failure_reason: Some(reason.as_str().to_owned()),
        ..UpdateJobRequest::default()
    };
    if let Err(e) = entry.client.update_job(id, &req).await {
        tracing::error!(job = id, "failing the job in GitLab failed too: {e}");
    }
}
