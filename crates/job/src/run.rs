//! `run_job`: the job's stages in order, with the familiar header and footer lines, timeouts and the
//! two kinds of cancellation.
//!
//! Semantics, as gitlab-runner's `Build.Run`:
//! - the job timeout (`runner_info.timeout`) bounds everything but cleanup; when it fires the running
//!   stage is stopped and after_script does not run;
//! - `RUNNER_SCRIPT_TIMEOUT` bounds the user steps together; when it fires after_script still runs with
//!   `CI_JOB_STATUS=timedout`. The footer names the limit that fired (gitlab-runner always names the
//!   job timeout, which misleads);
//! - user steps stop at the first failure; a failing step with `allow_failure: true` only warns and the
//!   next step runs;
//! - after_script runs after success, failure and graceful cancel, bounded by
//!   `RUNNER_AFTER_SCRIPT_TIMEOUT`; its failure only warns unless `AFTER_SCRIPT_IGNORE_ERRORS=false`;
//! - graceful cancel (`control.cancel`) stops the user steps; before they start it stops the job
//!   without after_script, as gitlab-runner does;
//! - abort (`control.abort`) stops everything at once; only cleanup runs;
//! - get_sources, restore_cache and download_artifacts are tried `GET_SOURCES_ATTEMPTS`,
//!   `RESTORE_CACHE_ATTEMPTS` and `ARTIFACT_DOWNLOAD_ATTEMPTS` times; clear_worktree runs before the
//!   second try of get_sources. When one of them fails, the user steps and after_script are skipped but
//!   the on-failure cache and artifact stages still run;
//! - archive_cache or archive_cache_on_failure, then upload_artifacts_on_success or
//!   upload_artifacts_on_failure run after the steps, even after a graceful cancel or a script timeout;
//!   the job's error wins over the cache stage's, which wins over the artifact stage's (a failed upload
//!   fails a job that otherwise succeeded);
//! - the file-variable cleanup stage runs whenever the executor was prepared, and the executor's own
//!   cleanup runs on every path.

use crate::context::RunnerContext;
use crate::executor::{Executor, ExecutorError, PrepareOptions, StageExit, StageScript};
use crate::helper::HelperSetup;
use crate::outcome::JobOutcome;
use crate::paths::JobPaths;
use crate::script::{ScriptContext, ScriptError, ScriptOptions, StageBody};
use crate::settings::{JobSettings, format_go_duration};
use crate::stage::{Stage, StageKind, StagePlan, Work};
use crate::variables::{self, FEATURE_FLAGS, VariableSources, Variables};
use glrunner_cache::CacheBackend;
use glrunner_protocol::{FailureReason, JobResponse};
use glrunner_trace::{JobControl, Trace, format};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long the cleanup stage may take; it runs after the job's own deadline too.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
/// First wait between attempts of a retried stage; it grows by half each time, up to five minutes.
const RETRY_BACKOFF_START: Duration = Duration::from_secs(5);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Run `job` to completion with `executor`, writing everything to `trace`, honouring `control`.
pub async fn run_job(
    job: &JobResponse,
    ctx: &RunnerContext,
    executor: &mut dyn Executor,
    trace: &Trace,
    control: &JobControl,
) -> JobOutcome {
    let job_timeout = Duration::from_secs(job.timeout_seconds());
    let run = JobRun {
        job,
        ctx,
        log: Log(trace),
        control,
        job_deadline: Instant::now() + job_timeout,
        job_timeout,
    };
    let mut state = State::default();
    let result = run.execute(executor, &mut state).await;
    run.cleanup(executor, &state).await;
    // Only the kind of error: its message may quote a masked value (a cache key, say).
    tracing::debug!(
        job = job.id,
        result = result.as_ref().map_or_else(JobError::kind, |()| "success"),
        "job finished"
    );
    run.footer(result)
}

/// Why a job did not succeed.
#[derive(Debug)]
enum JobError {
    /// A script exited non-zero.
    Exit(i32),
    /// Graceful cancel.
    Canceled,
    /// A time limit fired: the job timeout (`job_level`) or a stage limit.
    Timeout { limit: Duration, job_level: bool },
    /// GitLab canceled the job outright, or glrunner is shutting down.
    Aborted,
    /// The executor or the machine failed.
    System(ExecutorError),
    /// The job cannot run here (payload or configuration).
    Refused {
        reason: FailureReason,
        message: String,
    },
}

/// What stopped a stage before its script ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Abort,
    Cancel,
    JobTimeout,
    /// `RUNNER_SCRIPT_TIMEOUT`, `RUNNER_AFTER_SCRIPT_TIMEOUT` or the cleanup limit, with its value.
    StageTimeout(Duration),
}

/// When a stage must be stopped.
#[derive(Debug, Clone, Copy)]
struct Limits {
    deadline: Instant,
    /// What reaching `deadline` means.
    at_deadline: Stop,
    /// Stop on graceful cancel.
    cancelable: bool,
    /// Stop on abort.
    abortable: bool,
}

enum StageEnd {
    Exit(i32),
    Stopped(Stop),
    Error(ExecutorError),
}

/// What is known once the job is set up.
struct Prepared {
    paths: JobPaths,
    variables: Variables,
    settings: JobSettings,
    plan: StagePlan,
    options: ScriptOptions,
    helper: HelperSetup,
}

impl JobError {
    /// Errors after which nothing but cleanup runs: GitLab or glrunner stopped the job, or its time
    /// is up.
    fn ends_job(&self) -> bool {
        matches!(
            self,
            JobError::Aborted
                | JobError::Timeout {
                    job_level: true,
                    ..
                }
        )
    }

    /// What kind of error this is, for glrunner's own log (which does not mask job secrets).
    fn kind(&self) -> &'static str {
        match self {
            JobError::Exit(_) => "script exit code",
            JobError::Canceled => "canceled",
            JobError::Timeout { .. } => "timeout",
            JobError::Aborted => "aborted",
            JobError::System(_) => "system failure",
            JobError::Refused { .. } => "refused",
        }
    }

    fn script(e: ScriptError) -> Self {
        JobError::Refused {
            reason: FailureReason::ScriptFailure,
            message: e.to_string(),
        }
    }
}

#[derive(Default)]
struct State {
    prepared: Option<Prepared>,
    /// The executor's `prepare` succeeded, so stage scripts can run.
    executor_ready: bool,
}

/// The parts of a running job that do not change.
struct JobRun<'a> {
    job: &'a JobResponse,
    ctx: &'a RunnerContext,
    log: Log<'a>,
    control: &'a JobControl,
    job_deadline: Instant,
    job_timeout: Duration,
}

impl JobRun<'_> {
    fn job_limits(&self) -> Limits {
        Limits {
            deadline: self.job_deadline,
            at_deadline: Stop::JobTimeout,
            cancelable: true,
            abortable: true,
        }
    }

    fn stop_error(&self, stop: Stop) -> JobError {
        match stop {
            Stop::Abort => JobError::Aborted,
            Stop::Cancel => JobError::Canceled,
            Stop::JobTimeout => JobError::Timeout {
                limit: self.job_timeout,
                job_level: true,
            },
            Stop::StageTimeout(limit) => JobError::Timeout {
                limit,
                job_level: false,
            },
        }
    }

    fn scripts<'b>(&'b self, p: &'b Prepared) -> ScriptContext<'b> {
        ScriptContext {
            job: self.job,
            ctx: self.ctx,
            variables: &p.variables,
            paths: &p.paths,
            settings: &p.settings,
            options: p.options,
            helper: &p.helper,
        }
    }

    /// Limits of the stages after the user steps: the job's deadline, not stopped by a graceful
    /// cancel (their point is to save what the canceled job produced).
    fn finishing_limits(&self) -> Limits {
        Limits {
            cancelable: false,
            ..self.job_limits()
        }
    }

    /// Everything up to (not including) cleanup.
    async fn execute(&self, ex: &mut dyn Executor, state: &mut State) -> Result<(), JobError> {
        let ctx = self.ctx;
        self.log.plain(&format!(
            "Running with glrunner {} ({})",
            ctx.version, ctx.revision
        ));
        if !ctx.short_token.is_empty() {
            self.log.plain(&format!(
                "  on {} {}, system ID: {}",
                ctx.name, ctx.short_token, ctx.system_id
            ));
        }
        let p = state.prepared.insert(self.setup(&*ex)?);

        self.prepare_executor(ex, p).await?;
        state.executor_ready = true;

        let stage = stage_named(&p.plan, "prepare_script")?;
        let script = self.scripts(p).prepare_script();
        self.run_predefined(ex, &stage, script, self.job_limits())
            .await?;

        let mut result = self.sources_cache_and_dependencies(ex, p).await;
        if let Err(e) = &result
            && (e.ends_job() || matches!(e, JobError::Canceled))
        {
            // Stopped before the script: as gitlab-runner, nothing else runs.
            return result;
        }
        if result.is_ok() {
            result = self.user_steps(ex, p).await;
            if result.as_ref().is_err_and(JobError::ends_job) {
                return result;
            }
            result = self.after_script(ex, p, result).await;
            if result.as_ref().is_err_and(JobError::ends_job) {
                return result;
            }
        }

        let failed = result.is_err();
        let cache = self.archive_cache(ex, p, failed).await;
        if cache.as_ref().is_err_and(JobError::ends_job) {
            return cache;
        }
        let artifacts = self.upload_artifacts(ex, p, failed).await;
        if artifacts.as_ref().is_err_and(JobError::ends_job) {
            return artifacts;
        }
        // gitlab-runner's priority: the job's own error, then the cache's, then the artifacts'.
        result.and(cache).and(artifacts)
    }

    /// get_sources, restore_cache and download_artifacts, each with its attempts.
    async fn sources_cache_and_dependencies(
        &self,
        ex: &mut dyn Executor,
        p: &Prepared,
    ) -> Result<(), JobError> {
        let scripts = self.scripts(p);
        let get_sources = scripts.get_sources().map_err(JobError::script)?;
        let stage = stage_named(&p.plan, "get_sources")?;
        self.run_attempts(
            ex,
            p,
            &stage,
            &get_sources,
            p.settings.get_sources_attempts,
            true,
        )
        .await?;

        let stage = stage_named(&p.plan, "restore_cache")?;
        if stage.work == Work::Run {
            let script = scripts.restore_cache().map_err(JobError::script)?;
            self.run_attempts(
                ex,
                p,
                &stage,
                &script,
                p.settings.restore_cache_attempts,
                false,
            )
            .await?;
        }

        let stage = stage_named(&p.plan, "download_artifacts")?;
        if stage.work == Work::Run && self.can_transfer_artifacts(p, &stage) {
            let script = scripts.download_artifacts();
            let attempts = p.settings.artifact_download_attempts;
            self.run_attempts(ex, p, &stage, &script, attempts, false)
                .await?;
        }
        Ok(())
    }

    /// archive_cache or archive_cache_on_failure, if the job has a cache to save.
    async fn archive_cache(
        &self,
        ex: &mut dyn Executor,
        p: &Prepared,
        failed: bool,
    ) -> Result<(), JobError> {
        let Some(stage) = p
            .plan
            .to_run(&StageKind::ArchiveCache { on_failure: failed })
        else {
            return Ok(());
        };
        let script = self
            .scripts(p)
            .archive_cache(failed)
            .map_err(JobError::script)?;
        self.run_predefined(ex, stage, script, self.finishing_limits())
            .await
    }

    /// upload_artifacts_on_success or upload_artifacts_on_failure, if the job has artifacts for it.
    async fn upload_artifacts(
        &self,
        ex: &mut dyn Executor,
        p: &Prepared,
        failed: bool,
    ) -> Result<(), JobError> {
        let Some(stage) = p
            .plan
            .to_run(&StageKind::UploadArtifacts { on_failure: failed })
        else {
            return Ok(());
        };
        if !self.can_transfer_artifacts(p, stage) {
            return Ok(());
        }
        let script = self.scripts(p).upload_artifacts(failed);
        self.run_predefined(ex, stage, script, self.finishing_limits())
            .await
    }

    /// Plan, paths, variables and settings; the feature-flag header line and setting warnings.
    fn setup(&self, ex: &dyn Executor) -> Result<Prepared, JobError> {
        let (job, ctx) = (self.job, self.ctx);
        let plan = StagePlan::for_job(job).map_err(|e| JobError::Refused {
            reason: FailureReason::RunnerUnsupported,
            message: e.to_string(),
        })?;
        if !matches!(ctx.shell.as_str(), "" | "bash") {
            return Err(JobError::Refused {
                reason: FailureReason::RunnerConfigurationError,
                message: format!(
                    "shell {:?} is not supported: glrunner runs job scripts with bash. Set `shell = \"bash\"` \
                     (or remove `shell`) in the [[runners]] section of config.toml",
                    ctx.shell
                ),
            });
        }
        let paths = ex.job_paths(ctx, job).map_err(JobError::System)?;
        let ca_chain = match &ctx.tls_ca_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| JobError::Refused {
                reason: FailureReason::RunnerConfigurationError,
                message: format!(
                    "the CA file {} (`tls-ca-file` in config.toml) could not be read: {e}. Jobs need it to \
                     clone from GitLab; fix the path or the file's permissions",
                    path.display()
                ),
            })?),
            None => None,
        };
        let (variables, mut warnings) = variables::build(&VariableSources {
            job,
            ctx,
            paths: &paths,
            disposable: ex.disposable(),
            ca_chain: ca_chain.as_deref(),
        });
        let settings = JobSettings::from_variables(&variables, job.allow_git_fetch, ctx);

        let changed: Vec<String> = FEATURE_FLAGS
            .iter()
            .filter_map(|(name, default)| {
                let on = variables.bool(name).unwrap_or(*default);
                (on != *default).then(|| format!("{name}:{on}"))
            })
            .collect();
        if !changed.is_empty() {
            self.log
                .plain(&format!("  feature flags: {}", changed.join(", ")));
        }
        warnings.extend(settings.warnings.iter().cloned());
        for w in &warnings {
            self.log.warning(w);
        }

        let mut options = ScriptOptions::from_settings(&settings);
        options.exit_code_marker = ex.needs_exit_code_marker();
        let helper = HelperSetup {
            program: match &ctx.helper_path {
                Some(path) => path.to_str().map(str::to_owned),
                None => ex.helper_program(),
            },
            gitlab_url: ctx
                .gitlab_url
                .clone()
                .or_else(|| variables.value("CI_SERVER_URL").map(str::to_owned))
                .unwrap_or_default(),
            cache: self.cache_backend(ex),
            url_lifetime: self.job_timeout,
            local_artifacts: ctx
                .local_artifacts
                .as_ref()
                .and_then(|d| d.to_str())
                .map(str::to_owned),
        };
        Ok(Prepared {
            paths,
            variables,
            settings,
            plan,
            options,
            helper,
        })
    }

    /// Artifacts move only with a GitLab URL or a local artifacts directory; without either the stage
    /// is skipped, as gitlab-runner does when its runner has no URL.
    fn can_transfer_artifacts(&self, p: &Prepared, stage: &Stage) -> bool {
        if p.helper.gitlab_url.is_empty() && p.helper.local_artifacts.is_none() {
            self.log.warning(&format!(
                "{}: skipped, there is no GitLab to transfer artifacts with (set `url` in the \
                 [[runners]] section of config.toml)",
                stage.name
            ));
            return false;
        }
        true
    }

    /// The cache backend of `[runners.cache]`, with the executor's local cache directory; a distributed
    /// cache that cannot be used is a warning in the log of a job that uses a cache.
    fn cache_backend(&self, ex: &dyn Executor) -> CacheBackend {
        let mut settings = self.ctx.cache.clone().unwrap_or_default();
        if let Some(dir) = ex.cache_dir(self.ctx) {
            settings.local_dir = Some(dir.into());
        }
        let (backend, warning) = CacheBackend::select(&settings);
        if let Some(w) = warning
            && (crate::cache::restores(self.job)
                || crate::cache::archives(self.job, false)
                || crate::cache::archives(self.job, true))
        {
            self.log.warning(&w.to_string());
        }
        backend
    }

    async fn prepare_executor(&self, ex: &mut dyn Executor, p: &Prepared) -> Result<(), JobError> {
        let limits = self.job_limits();
        if let Some(stop) = self.already_stopped(&limits) {
            return Err(self.stop_error(stop));
        }
        let stage = stage_named(&p.plan, "prepare_executor")?;
        self.log
            .section_start(&stage.name, &stage.description(ex.name()));
        let token = CancellationToken::new();
        let options = PrepareOptions {
            job: self.job,
            ctx: self.ctx,
            paths: &p.paths,
            variables: &p.variables,
            trace: self.log.0,
            cancel: &token,
        };
        let mut prepare = ex.prepare(options);
        let result = tokio::select! {
            res = &mut prepare => res.map_err(JobError::System),
            stop = self.watch(limits) => {
                token.cancel();
                let _ = prepare.await;
                Err(self.stop_error(stop))
            }
        };
        self.log.section_end(&stage.name);
        result
    }

    /// Run a predefined stage up to `attempts` times while it fails (a script exit or a system error),
    /// with a growing wait in between unless `FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY` is off;
    /// `clear_worktree` before the second try when `clear` is set.
    async fn run_attempts(
        &self,
        ex: &mut dyn Executor,
        p: &Prepared,
        stage: &Stage,
        body: &StageBody,
        attempts: u32,
        clear: bool,
    ) -> Result<(), JobError> {
        let limits = self.job_limits();
        let attempts = attempts.max(1);
        let mut backoff = RETRY_BACKOFF_START;
        let mut attempt = 1;
        loop {
            match self.run_predefined(ex, stage, body.clone(), limits).await {
                Ok(()) => return Ok(()),
                Err(e @ (JobError::Exit(_) | JobError::System(_))) if attempt < attempts => {
                    tracing::info!(
                        job = self.job.id,
                        stage = %stage.name,
                        attempt,
                        "stage failed ({}), retrying",
                        e.kind()
                    );
                }
                Err(e) => return Err(e),
            }
            if p.settings.stage_retry_backoff {
                self.log
                    .info(&format!("Retrying in {}", format_go_duration(backoff)));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    stop = self.watch(limits) => return Err(self.stop_error(stop)),
                }
                backoff = backoff.mul_f64(1.5).min(RETRY_BACKOFF_MAX);
            }
            if clear && attempt == 1 {
                let script = StageBody::script(self.scripts(p).clear_worktree());
                let stage = StagePlan::clear_worktree();
                // A failed clean-up only means the next attempt starts from what is there.
                if let Err(e) = self.run_predefined(ex, &stage, script, limits).await {
                    if e.ends_job() || matches!(e, JobError::Canceled) {
                        return Err(e);
                    }
                    self.log.warning(&format!(
                        "deleting the files before the next attempt failed ({}); trying anyway",
                        e.kind()
                    ));
                }
            }
            attempt += 1;
        }
    }

    async fn user_steps(&self, ex: &mut dyn Executor, p: &Prepared) -> Result<(), JobError> {
        let start = Instant::now();
        let limits = match p.settings.script_timeout {
            Some(t) if start + t < self.job_deadline => Limits {
                deadline: start + t,
                at_deadline: Stop::StageTimeout(t),
                ..self.job_limits()
            },
            _ => self.job_limits(),
        };
        for stage in &p.plan.stages {
            let StageKind::Step {
                script,
                allow_failure,
            } = &stage.kind
            else {
                continue;
            };
            if stage.work != Work::Run {
                continue;
            }
            let text = StageBody::script(self.scripts(p).user_step(script));
            match self.run_stage(ex, stage, text, limits).await {
                StageEnd::Exit(0) => {}
                StageEnd::Exit(code) if *allow_failure => self.log.warning(&format!(
                    "{} failed with exit code {code}, but the step allows failure; the job goes on",
                    stage.name
                )),
                StageEnd::Exit(code) => return Err(JobError::Exit(code)),
                StageEnd::Stopped(Stop::Cancel) => {
                    self.log.warning("script canceled externally (UI, API)");
                    return Err(JobError::Canceled);
                }
                StageEnd::Stopped(stop) => return Err(self.stop_error(stop)),
                StageEnd::Error(e) => return Err(JobError::System(e)),
            }
        }
        Ok(())
    }

    /// Runs after_script if the job has one; returns the job's result with after_script's folded in.
    async fn after_script(
        &self,
        ex: &mut dyn Executor,
        p: &Prepared,
        result: Result<(), JobError>,
    ) -> Result<(), JobError> {
        let Some(stage) = p
            .plan
            .stages
            .iter()
            .find(|s| matches!(s.kind, StageKind::AfterScript { .. }))
        else {
            return result;
        };
        let StageKind::AfterScript { script } = &stage.kind else {
            return result;
        };
        if stage.work != Work::Run {
            return result;
        }
        let status = match &result {
            Ok(()) => "success",
            Err(JobError::Canceled) => "canceled",
            Err(JobError::Timeout { .. }) => "timedout",
            Err(_) => "failed",
        };
        let limit = p.settings.after_script_timeout;
        let own_deadline = Instant::now() + limit;
        let limits = if own_deadline < self.job_deadline {
            Limits {
                deadline: own_deadline,
                at_deadline: Stop::StageTimeout(limit),
                cancelable: false,
                abortable: true,
            }
        } else {
            Limits {
                cancelable: false,
                ..self.job_limits()
            }
        };
        let text = StageBody::script(self.scripts(p).after_script(script, status));
        let (error, what) = match self.run_stage(ex, stage, text, limits).await {
            StageEnd::Exit(0) => return result,
            StageEnd::Exit(code) => (JobError::Exit(code), format!("exit code {code}")),
            StageEnd::Stopped(stop @ (Stop::Abort | Stop::JobTimeout)) => {
                return Err(self.stop_error(stop));
            }
            StageEnd::Stopped(stop) => (
                self.stop_error(stop),
                format!(
                    "execution took longer than {} seconds",
                    format_go_duration(limit)
                ),
            ),
            StageEnd::Error(e) => {
                let what = e.to_string();
                (JobError::System(e), what)
            }
        };
        if p.settings.after_script_ignore_errors {
            self.log.warning(&format!(
                "after_script failed, but job will continue unaffected: {what}"
            ));
            result
        } else {
            result.and(Err(error))
        }
    }

    /// The file-variable cleanup stage (when the executor is ready) and the executor's own cleanup.
    async fn cleanup(&self, ex: &mut dyn Executor, state: &State) {
        if let (true, Some(p)) = (state.executor_ready, state.prepared.as_ref())
            && let Some(stage) = p
                .plan
                .stages
                .iter()
                .find(|s| s.kind == StageKind::CleanupFileVariables)
        {
            let limits = Limits {
                deadline: Instant::now() + CLEANUP_TIMEOUT,
                at_deadline: Stop::StageTimeout(CLEANUP_TIMEOUT),
                cancelable: false,
                abortable: false,
            };
            let script = self.scripts(p).cleanup();
            match self.run_stage(ex, stage, script, limits).await {
                StageEnd::Exit(0) => {}
                StageEnd::Exit(code) => self.log.warning(&format!(
                    "removing the file based variables failed with exit code {code}; their files may remain in {}",
                    p.paths.tmp_dir
                )),
                StageEnd::Stopped(_) => self.log.warning(&format!(
                    "removing the file based variables took longer than {}; their files may remain in {}",
                    format_go_duration(CLEANUP_TIMEOUT),
                    p.paths.tmp_dir
                )),
                StageEnd::Error(e) => self.log.warning(&format!("removing the file based variables failed: {e}")),
            }
        }
        ex.cleanup(self.log.0).await;
    }

    fn footer(&self, result: Result<(), JobError>) -> JobOutcome {
        let failed = |reason, exit_code| JobOutcome::Failed { reason, exit_code };
        match result {
            Ok(()) => {
                self.log.info("Job succeeded");
                JobOutcome::Success
            }
            Err(JobError::Exit(code)) => {
                self.log.error(&format!("Job failed: exit code {code}"));
                failed(FailureReason::ScriptFailure, Some(code))
            }
            Err(JobError::Canceled) => {
                self.log.error("Job failed: canceled");
                failed(FailureReason::JobCanceled, None)
            }
            Err(JobError::Timeout { limit, .. }) => {
                self.log.error(&format!(
                    "Job failed: execution took longer than {} seconds",
                    format_go_duration(limit)
                ));
                failed(FailureReason::JobExecutionTimeout, None)
            }
            Err(JobError::Aborted) => {
                self.log
                    .warning("Job aborted: the running stage was stopped and only cleanup ran");
                JobOutcome::Aborted
            }
            Err(JobError::System(e)) if e.reason == FailureReason::RunnerSystemFailure => {
                self.log.error(&format!("Job failed (system failure): {e}"));
                failed(e.reason, None)
            }
            Err(JobError::System(e)) => {
                self.log.error(&format!("Job failed: {e}"));
                failed(e.reason, None)
            }
            Err(JobError::Refused { reason, message }) => {
                self.log.error(&format!("Job failed: {message}"));
                failed(reason, None)
            }
        }
    }

    async fn run_predefined(
        &self,
        ex: &mut dyn Executor,
        stage: &Stage,
        body: StageBody,
        limits: Limits,
    ) -> Result<(), JobError> {
        match self.run_stage(ex, stage, body, limits).await {
            StageEnd::Exit(0) => Ok(()),
            StageEnd::Exit(code) => Err(JobError::Exit(code)),
            StageEnd::Stopped(stop) => Err(self.stop_error(stop)),
            StageEnd::Error(e) => Err(JobError::System(e)),
        }
    }

    /// One stage inside its section; stopped when `limits` say so.
    async fn run_stage(
        &self,
        ex: &mut dyn Executor,
        stage: &Stage,
        body: StageBody,
        limits: Limits,
    ) -> StageEnd {
        if let Some(stop) = self.already_stopped(&limits) {
            return StageEnd::Stopped(stop);
        }
        self.log
            .section_start(&stage.name, &stage.description(ex.name()));
        let token = CancellationToken::new();
        let script = StageScript {
            stage: stage.name.clone(),
            container: stage.container,
            script: body.script,
            ops: body.ops,
        };
        let end = {
            let mut run = ex.run(&script, &token, self.log.0);
            tokio::select! {
                res = &mut run => match res {
                    Ok(StageExit::Exited(code)) => StageEnd::Exit(code),
                    // The executor stopped on its own (it lost its environment): a system failure.
                    Ok(StageExit::Canceled) => StageEnd::Error(ExecutorError::system(format!(
                        "the executor stopped stage {} without being asked to", stage.name
                    ))),
                    Err(e) => StageEnd::Error(e),
                },
                stop = self.watch(limits) => {
                    token.cancel();
                    if let Err(e) = run.await {
                        tracing::warn!(job = self.job.id, stage = %stage.name, "stopping the stage failed: {e}");
                    }
                    StageEnd::Stopped(stop)
                }
            }
        };
        // Job output may end mid-way through what could be a secret; release it before the next line.
        self.log.0.finish();
        self.log.section_end(&stage.name);
        end
    }

    fn already_stopped(&self, limits: &Limits) -> Option<Stop> {
        if limits.abortable && self.control.abort.is_cancelled() {
            Some(Stop::Abort)
        } else if limits.cancelable && self.control.cancel.is_cancelled() {
            Some(Stop::Cancel)
        } else if Instant::now() >= limits.deadline {
            Some(limits.at_deadline)
        } else {
            None
        }
    }

    /// Resolves when a stage under `limits` must stop, and says why.
    async fn watch(&self, limits: Limits) -> Stop {
        tokio::select! {
            biased;
            _ = self.control.abort.cancelled(), if limits.abortable => Stop::Abort,
            _ = self.control.cancel.cancelled(), if limits.cancelable => Stop::Cancel,
            _ = tokio::time::sleep_until(limits.deadline) => limits.at_deadline,
        }
    }
}

fn stage_named(plan: &StagePlan, name: &str) -> Result<Stage, JobError> {
    plan.get(name).cloned().ok_or_else(|| {
        JobError::System(ExecutorError::system(format!(
            "the stage plan has no {name} stage; this is a bug in glrunner"
        )))
    })
}

/// Runner-side lines in the trace.
struct Log<'a>(&'a Trace);

impl Log<'_> {
    fn plain(&self, text: &str) {
        format::line(self.0, text);
    }

    fn info(&self, text: &str) {
        format::info(self.0, text);
    }

    fn warning(&self, text: &str) {
        format::warning(self.0, text);
    }

    fn error(&self, text: &str) {
        format::error(self.0, text);
    }

    fn section_start(&self, name: &str, header: &str) {
        format::section_start(self.0, name, header);
    }

    fn section_end(&self, name: &str) {
        format::section_end(self.0, name);
    }
}
