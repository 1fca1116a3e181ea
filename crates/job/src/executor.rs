//! The `Executor` trait: where a stage's script runs (a local bash, a container in a pod). Everything
//! else about a job (variables, stage order, scripts, timeouts, cancellation) is decided by `run_job`,
//! so every executor behaves the same.

use crate::context::RunnerContext;
use crate::paths::JobPaths;
use crate::stage::Container;
use crate::variables::Variables;
use glrunner_protocol::request::FeaturesInfo;
use glrunner_protocol::{FailureReason, JobResponse};
use glrunner_trace::Trace;
use std::future::Future;
use std::pin::Pin;
use tokio_util::sync::CancellationToken;

/// The future an executor method returns. Boxed so `dyn Executor` works and a job can run on any
/// tokio worker.
pub type ExecutorFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `prepare` gets: the job and everything derived from it.
#[derive(Clone, Copy)]
pub struct PrepareOptions<'a> {
    pub job: &'a JobResponse,
    pub ctx: &'a RunnerContext,
    pub paths: &'a JobPaths,
    /// The job's final variables (for executors that pass some of them to containers).
    pub variables: &'a Variables,
    pub trace: &'a Trace,
    /// Fires when the job is canceled, aborted or times out while preparing.
    pub cancel: &'a CancellationToken,
}

/// One stage's script, ready to run.
#[derive(Clone, PartialEq, Eq)]
pub struct StageScript {
    /// The stage name (`get_sources`, `step_script`, …).
    pub stage: String,
    pub container: Container,
    /// A complete bash script; it contains secrets, so `Debug` leaves it out.
    pub script: String,
    /// The same work as simple steps, when the stage is made only of those: an executor on the job's
    /// own machine may carry them out itself instead of running `script` (see [`crate::stage_ops`]).
    pub ops: Option<crate::stage_ops::StageOps>,
}

impl std::fmt::Debug for StageScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageScript")
            .field("stage", &self.stage)
            .field("container", &self.container)
            .field("script", &format_args!("<{} bytes>", self.script.len()))
            .field("ops", &self.ops.as_ref().map(|o| o.ops.len()))
            .finish()
    }
}

/// How a stage's script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageExit {
    /// The script exited with this code (128 + N when a signal N killed it).
    Exited(i32),
    /// The cancel token fired and the script was stopped; nothing of it is left running.
    Canceled,
}

/// An executor could not do its part. `reason` is how the job's failure is reported; the message is
/// what happened, the likely cause and the fix, and never holds a secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExecutorError {
    pub reason: FailureReason,
    pub message: String,
}

impl ExecutorError {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// A failure of the machine or the executor itself (`runner_system_failure`).
    pub fn system(message: impl Into<String>) -> Self {
        Self::new(FailureReason::RunnerSystemFailure, message)
    }
}

/// Runs the stage scripts of one job. One instance per job; `run_job` calls `prepare` once, `run` for
/// each stage, and `cleanup` exactly once on every path, even when `prepare` failed.
pub trait Executor: Send {
    /// The `executor` name as in config.toml (`shell`, `kubernetes`).
    fn name(&self) -> &str;

    /// Sets the `FeaturesInfo` bools this executor makes true (on top of the runner core's).
    fn features(&self, features: &mut FeaturesInfo);

    /// Whether every job gets a fresh environment (`CI_DISPOSABLE_ENVIRONMENT`) rather than a shared
    /// one (`CI_SHARED_ENVIRONMENT`).
    fn disposable(&self) -> bool;

    /// Where the job's directories are, as its scripts see them.
    fn job_paths(&self, ctx: &RunnerContext, job: &JobResponse) -> Result<JobPaths, ExecutorError>;

    /// Whether scripts must report their exit code on their output (see `ScriptOptions`).
    fn needs_exit_code_marker(&self) -> bool {
        false
    }

    /// The glrunner binary stage scripts run as `<program> helper …` for cache and artifacts, as the
    /// scripts see it (`RunnerContext::helper_path` overrides it); `None` when this executor cannot
    /// run the helper, so those stages only warn.
    fn helper_program(&self) -> Option<String> {
        None
    }

    /// The local cache directory as the scripts see it (default: `cache_dir` of config.toml).
    fn cache_dir(&self, ctx: &RunnerContext) -> Option<String> {
        ctx.cache_dir
            .as_ref()
            .and_then(|d| d.to_str())
            .map(str::to_owned)
    }

    /// Get ready to run stages: create directories, start containers, …
    fn prepare<'a>(
        &'a mut self,
        options: PrepareOptions<'a>,
    ) -> ExecutorFuture<'a, Result<(), ExecutorError>>;

    /// Run one stage's script, streaming its output (stdout and stderr, in order) into `trace`. When
    /// `cancel` fires, stop the script and everything it started, then return `StageExit::Canceled`
    /// promptly.
    fn run<'a>(
        &'a mut self,
        script: &'a StageScript,
        cancel: &'a CancellationToken,
        trace: &'a Trace,
    ) -> ExecutorFuture<'a, Result<StageExit, ExecutorError>>;

    /// Release everything `prepare` and `run` created. Must be bounded in time.
    fn cleanup<'a>(&'a mut self, trace: &'a Trace) -> ExecutorFuture<'a, ()>;
}

/// The features the executor-agnostic job machinery supports whatever the executor: variables
/// (including raw and masked), artifacts (reports, raw, excludes), cache with fallback keys, multiple
/// steps, refspecs, exit codes and graceful cancel.
pub fn job_features(features: &mut FeaturesInfo) {
    features.variables = true;
    features.artifacts = true;
    features.upload_multiple_artifacts = true;
    features.upload_raw_artifacts = true;
    features.artifacts_exclude = true;
    features.cache = true;
    features.fallback_cache_keys = true;
    features.raw_variables = true;
    features.masking = true;
    features.multi_build_steps = true;
    features.refspecs = true;
    features.return_exit_code = true;
    features.cancelable = true;
    features.cancel_gracefully = true;
}
