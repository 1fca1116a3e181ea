//! `glrunner exec`: run a local `.gitlab-ci.yml` (the whole pipeline, or one job and optionally what it
//! needs) with the shell executor (or, with `--executor kubernetes`, in pods of a cluster: see
//! `crate::kubernetes::Exec`) and the same stage machinery as `run`, without GitLab.
//!
//! Each job runs as on gitlab-runner's shell executor: in a fresh checkout (its get_sources stage
//! fetches a snapshot of the project's working tree, see [`source`]) under exec's state directory (see
//! [`state`]), never in the project directory itself, so jobs see only the files git would commit plus
//! what `cache:` and their dependencies' artifacts bring; caches stay in a local cache directory and
//! artifacts under the state directory, moved by the same `glrunner helper` stages as with GitLab. The
//! pipeline crate decides which jobs run and in which order, and hands each job the artifacts and
//! dotenv variables of the jobs it depends on. Output: each job's log with its name in front of every
//! line, then a summary; the exit code is 0 when the pipeline passed.

mod source;
mod state;
mod summary;
mod terminal;

use super::Failure;
use crate::cli::ExecArgs;
use crate::version;
use glrunner_job::local_artifacts::StoredArtifacts;
use glrunner_job::shell::ShellExecutor;
use glrunner_job::{Executor, JobOutcome, PreparedCheckout, RunnerContext, run_job};
use glrunner_pipeline::rules::JobWhen;
use glrunner_pipeline::{
    JobResult, JobStatus, LocalArtifacts, LocalContext, Next, Pipeline, Plan, PlannedJob, Selection,
};
use glrunner_protocol::{FailureReason, JobResponse, Secret};
use glrunner_trace::{JobControl, Trace, TraceConfig};
use state::ExecState;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use summary::{Record, Status};
use tokio::task::JoinSet;

/// The exit code after Ctrl-C, as a shell reports SIGINT.
const EXIT_INTERRUPTED: u8 = 130;
/// Job names longer than this are not padded further in line prefixes.
const MAX_PREFIX_WIDTH: usize = 32;

pub async fn exec(args: ExecArgs) -> Result<ExitCode, Failure> {
    let kubernetes = match args.executor.as_str() {
        "shell" => false,
        "kubernetes" => true,
        other => {
            return Err(Failure::config(format!(
                "glrunner exec runs jobs with the shell or the kubernetes executor, not {other:?}\n  fix: pass --executor shell or --executor kubernetes"
            )));
        }
    };
    let dir = match &args.directory {
        Some(d) => d.clone(),
        None => std::env::current_dir()
            .map_err(|e| Failure::other(format!("no current directory: {e}")))?,
    };
    let dir = std::fs::canonicalize(&dir).map_err(|e| {
        Failure::config(format!(
            "project directory {} cannot be used: {e}\n  fix: pass an existing directory with -C",
            dir.display()
        ))
    })?;
    require_utf8(&dir)?;
    let mut ctx = LocalContext::discover(&dir);
    for kv in &args.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            Failure::config(format!(
                "--env {kv:?} is not KEY=VALUE\n  fix: write it as --env NAME=value"
            ))
        })?;
        ctx = ctx.with_variable(k, v);
    }
    if let Some(note) = &ctx.git.note {
        eprintln!("note: {note}");
    }
    if !ctx.git.repository && ctx.git.branch.is_none() && ctx.git.tag.is_none() {
        // GitLab always runs a pipeline for a branch or tag; a plain directory stands for the default
        // branch, so the default `only: [branches, tags]` and branch rules behave as on a push.
        ctx.git.branch = Some(ctx.git.default_branch.clone());
        eprintln!(
            "note: running as branch `{}`, the default branch",
            ctx.git.default_branch
        );
    }
    let file = dir.join(&args.file);
    let pipeline = Pipeline::load_with(&file, &ctx).map_err(Failure::config)?;
    let selection = match &args.job {
        Some(name) => Selection::Job {
            name: name.clone(),
            with_needs: args.needs,
        },
        None => Selection::All,
    };
    let mut plan = pipeline.plan(&ctx, &selection).map_err(Failure::config)?;
    let file_name = args.file.display().to_string();
    if args.list {
        print!("{}", summary::list(&plan, &file_name, &ctx));
        return Ok(ExitCode::SUCCESS);
    }
    if plan.jobs().is_empty() {
        return Err(Failure::other(format!(
            "no job of {file_name} runs for {}: {} job(s) are left out by their rules\n  fix: see why with `glrunner exec --list`, or pass the variables the rules test with --env KEY=VALUE",
            summary::describe(&ctx),
            plan.excluded().len()
        )));
    }
    play_manual_jobs(&pipeline, &mut plan, &args)?;

    let concurrency = args
        .concurrency
        .map_or_else(default_concurrency, std::num::NonZeroUsize::get);
    let state = ExecState::open(&dir, args.state_dir.as_deref())?;
    let snapshot = source::take(&dir, &ctx.git, &state.source()).map_err(Failure::other)?;
    let colour = terminal::colours();
    println!(
        "glrunner exec: {} job(s) of {file_name} for {}, up to {concurrency} at a time; checkouts, caches and artifacts in {}",
        plan.jobs().len(),
        summary::describe(&ctx),
        state.root().display()
    );
    if snapshot.differs_from_head && ctx.git.repository {
        println!(
            "glrunner exec: jobs check out commit {} (the project as git would commit it now, HEAD is {})",
            short(&snapshot.commit),
            short(&ctx.git.sha)
        );
    }

    let k8s = if kubernetes {
        let mut k = crate::kubernetes::Exec::connect(&crate::kubernetes::ExecSettings {
            context: args.kube_context.clone(),
            namespace: args.kube_namespace.clone(),
            image: args.kube_image.clone(),
            helper_image: args.kube_helper_image.clone(),
        })
        .await?;
        k.bundle_sources(&state.source())?;
        Some(Arc::new(k))
    } else {
        None
    };
    let mut runner = RunnerContext {
        name: "local".to_owned(),
        short_token: "local".to_owned(),
        system_id: "local".to_owned(),
        version: version::VERSION.to_owned(),
        revision: version::REVISION.to_owned(),
        executor: "shell".to_owned(),
        shell: "bash".to_owned(),
        builds_dir: Some(state.builds()),
        cache_dir: Some(state.cache()),
        // No GitLab: artifacts stay under the state directory.
        gitlab_url: Some(String::new()),
        local_artifacts: Some(state.artifacts()),
        ..RunnerContext::default()
    };
    if let Some(k) = &k8s {
        runner = k.runner_context(&runner);
    }
    let width = summary::widest(plan.jobs().iter().map(|j| j.name.as_str())).min(MAX_PREFIX_WIDTH);
    let control = JobControl::new();
    cancel_on_ctrl_c(control.clone());
    let started = Instant::now();
    let mut records: Vec<Record> = Vec::new();
    // Jobs the plan handed out to run, waiting for a free slot, in run order.
    let mut queue: VecDeque<String> = VecDeque::new();
    // Free slots (`CI_CONCURRENT_ID`, and the checkout directory); the lowest is taken first.
    let mut free: BinaryHeap<Reverse<usize>> = (0..concurrency).map(Reverse).collect();
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut checkout_tried = false;
    loop {
        let stopping = control.cancel.is_cancelled() || control.abort.is_cancelled();
        if !stopping {
            for step in plan.ready() {
                match step {
                    Next::Skip { name, reason } => {
                        let stage = stage_of(&plan, &name);
                        records.push(Record::skipped(name, stage, reason));
                    }
                    Next::Run(name) => queue.push_back(name),
                }
            }
            while !queue.is_empty() && !free.is_empty() {
                let (Some(name), Some(slot)) = (queue.pop_front(), free.pop().map(|Reverse(s)| s))
                else {
                    break;
                };
                let prefix = terminal::prefix(&name, width, colour);
                let mut payload = match plan.payload(&name, &ctx) {
                    Ok(p) => p,
                    Err(e) => {
                        // Stop what runs before giving up: its processes must not outlive the run.
                        control.abort.cancel();
                        while running.join_next().await.is_some() {}
                        return Err(Failure::config(e));
                    }
                };
                point_at_snapshot(&mut payload, &snapshot, ctx.pipeline_id);
                if let Some(k) = &k8s {
                    k.point_at_sources(&mut payload);
                }
                // The first job that fetches with the pipeline's depth makes the checkout the others
                // copy (on this machine: pods fetch from the sources sent to them).
                if k8s.is_none() && !checkout_tried && payload.git_info.depth == ctx.git_depth {
                    checkout_tried = true;
                    runner.prepared_checkout = prepare_checkout(&state, &payload, &runner).await;
                }
                if k8s.is_none() {
                    for warning in ignored_keys(&payload) {
                        println!("{prefix}WARNING: {warning}");
                    }
                }
                let job_runner = RunnerContext {
                    concurrent_id: slot,
                    ..runner.clone()
                };
                let job_control = control.clone();
                let executor: Box<dyn Executor> = match &k8s {
                    Some(k) => k.executor(),
                    None => Box::new(ShellExecutor::new()),
                };
                running.spawn(async move {
                    let job_started = Instant::now();
                    let outcome = run_one(
                        &payload,
                        &job_runner,
                        executor,
                        &job_control,
                        prefix.clone(),
                        colour,
                    )
                    .await;
                    Finished {
                        name,
                        slot,
                        payload,
                        prefix,
                        outcome,
                        duration: job_started.elapsed(),
                    }
                });
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let done = joined.map_err(|e| {
            Failure::other(format!(
                "a job of the pipeline stopped unexpectedly ({e}); this is a bug in glrunner"
            ))
        })?;
        free.push(Reverse(done.slot));
        let (result, mut record) = result_of(&done.payload, &state, done.outcome, &done.prefix);
        let allowed = result.status == JobStatus::Failed
            && planned(&plan, &done.name).is_some_and(|j| j.allow_failure.allows(result.exit_code));
        if allowed {
            record.status = Status::Warned;
            record.detail = format!("{}, allowed to fail", record.detail);
        }
        record.name = done.name.clone();
        record.stage = stage_of(&plan, &done.name);
        record.duration = Some(done.duration);
        records.push(record);
        plan.record(&done.name, result).map_err(Failure::other)?;
    }
    let interrupted = control.cancel.is_cancelled() || control.abort.is_cancelled();
    if interrupted {
        for j in plan.jobs() {
            if !records.iter().any(|r| r.name == j.name) {
                records.push(Record::skipped(
                    j.name.clone(),
                    j.stage.clone(),
                    "not run: the pipeline was interrupted".to_owned(),
                ));
            }
        }
    }
    // The summary (and the exit code: the first failed job's) follows run order, not finishing order.
    records.sort_by_key(|r| plan.jobs().iter().position(|j| j.name == r.name));
    let passed = plan.succeeded() && !interrupted;
    print!(
        "{}",
        summary::render(&records, started.elapsed(), passed, colour)
    );
    if records
        .iter()
        .any(|r| matches!(r.status, Status::Passed | Status::Warned | Status::Failed))
    {
        println!("artifacts of this run: {}", state.artifacts().display());
    }
    Ok(if interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if passed {
        ExitCode::SUCCESS
    } else {
        // The first failed job's exit code, so a single job run exits as its script did.
        let code = records
            .iter()
            .find(|r| r.status == Status::Failed)
            .and_then(|r| r.exit_code)
            .and_then(|c| u8::try_from(c.clamp(1, 255)).ok())
            .unwrap_or(1);
        ExitCode::from(code)
    })
}

/// The checkout jobs copy instead of fetching (see `glrunner_job::checkout`), or `None` with a note
/// when it cannot be made: the jobs then fetch as usual.
async fn prepare_checkout(
    state: &ExecState,
    job: &JobResponse,
    runner: &RunnerContext,
) -> Option<PreparedCheckout> {
    let (dir, job, runner) = (state.checkout(), job.clone(), runner.clone());
    let made =
        tokio::task::spawn_blocking(move || PreparedCheckout::create(&dir, &job, &runner)).await;
    match made {
        Ok(Ok(checkout)) => Some(checkout),
        Ok(Err(e)) => {
            eprintln!("note: {e}");
            None
        }
        Err(e) => {
            eprintln!(
                "note: the checkout for all jobs could not be prepared ({e}); each job fetches its own"
            );
            None
        }
    }
}

/// A job that ended, with what is needed to report it.
struct Finished {
    name: String,
    /// The slot it ran in, free again.
    slot: usize,
    payload: JobResponse,
    prefix: String,
    outcome: Result<JobOutcome, Failure>,
    duration: std::time::Duration,
}

fn planned<'a>(plan: &'a Plan<'_>, name: &str) -> Option<&'a PlannedJob> {
    plan.jobs().iter().find(|j| j.name == name)
}

fn stage_of(plan: &Plan<'_>, name: &str) -> String {
    planned(plan, name)
        .map(|j| j.stage.clone())
        .unwrap_or_default()
}

/// Jobs at once by default: one per core, as the jobs of a local pipeline mostly wait for processes.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `--manual` starts every manual job; a manual job named on the command line always runs.
fn play_manual_jobs(
    pipeline: &Pipeline,
    plan: &mut Plan<'_>,
    args: &ExecArgs,
) -> Result<(), Failure> {
    let named = |name: &str| {
        args.job.as_deref().is_some_and(|wanted| {
            name == wanted || pipeline.job(name).is_ok_and(|j| j.base_name == wanted)
        })
    };
    let manual: Vec<String> = plan
        .jobs()
        .iter()
        .filter(|j| j.when == JobWhen::Manual && (args.manual || named(&j.name)))
        .map(|j| j.name.clone())
        .collect();
    for name in manual {
        plan.play(&name).map_err(Failure::other)?;
    }
    Ok(())
}

/// The job fetches the snapshot instead of the project directory (GitLab's repository).
fn point_at_snapshot(job: &mut JobResponse, snapshot: &source::Snapshot, pipeline_id: i64) {
    job.git_info.repo_url = Secret::new(snapshot.url.clone());
    job.git_info.sha = snapshot.commit.clone();
    if job.git_info.refspecs.is_empty() {
        // A project that is no repository has no branch to fetch: only the snapshot's HEAD.
        job.git_info.refspecs = vec![format!("+HEAD:refs/pipelines/{pipeline_id}")];
    }
}

/// What the shell executor cannot honour: `image` and `services` need containers.
fn ignored_keys(job: &JobResponse) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(image) = job.image.as_ref().filter(|i| !i.name.is_empty()) {
        warnings.push(format!(
            "`image: {}` is ignored: glrunner exec runs jobs with the shell executor, on this machine's tools",
            image.name
        ));
    }
    if !job.services.is_empty() {
        let names: Vec<&str> = job.services.iter().map(|s| s.name.as_str()).collect();
        warnings.push(format!(
            "`services: [{}]` are ignored: the shell executor starts no service containers; start them \
             yourself (and point the job at them with --env) if the job needs them",
            names.join(", ")
        ));
    }
    warnings
}

/// Run one job with `executor`, its log mirrored to the terminal.
async fn run_one(
    job: &JobResponse,
    runner: &RunnerContext,
    mut executor: Box<dyn Executor>,
    control: &JobControl,
    prefix: String,
    colour: bool,
) -> Result<JobOutcome, Failure> {
    let log = terminal::JobLog::new(std::io::stdout(), prefix, colour);
    // The trace drops empty values and always masks the built-in token prefixes.
    let trace = Trace::new(TraceConfig {
        masked_values: glrunner_job::variables::masked_values(job),
        token_prefixes: Vec::new(),
        limit_bytes: u64::MAX,
        mirror: Some(Box::new(log)),
    })
    .map_err(|e| Failure::other(format!("cannot create the job log spool: {e}")))?;
    let outcome = run_job(job, runner, executor.as_mut(), &trace, control).await;
    trace.finish();
    Ok(outcome)
}

/// The plan's view of a finished job (status, exit code, its archive and dotenv variables) and its
/// line in the summary. A dotenv report GitLab would refuse fails the job, so it shows here rather
/// than as missing variables later.
fn result_of(
    job: &JobResponse,
    state: &ExecState,
    outcome: Result<JobOutcome, Failure>,
    prefix: &str,
) -> (JobResult, Record) {
    let mut record = Record {
        name: String::new(),
        stage: String::new(),
        status: Status::Passed,
        duration: None,
        exit_code: None,
        detail: String::new(),
    };
    let mut result = match outcome {
        Ok(JobOutcome::Success) => JobResult::new(JobStatus::Success),
        Ok(JobOutcome::Failed {
            reason: FailureReason::JobCanceled,
            ..
        })
        | Ok(JobOutcome::Aborted) => {
            record.status = Status::Canceled;
            record.detail = "canceled".to_owned();
            JobResult::new(JobStatus::Canceled)
        }
        Ok(JobOutcome::Failed { reason, exit_code }) => {
            record.status = Status::Failed;
            record.exit_code = exit_code;
            record.detail = match exit_code {
                Some(code) => format!("exit code {code}"),
                None => reason.as_str().to_owned(),
            };
            JobResult {
                exit_code,
                ..JobResult::new(JobStatus::Failed)
            }
        }
        Err(f) => {
            println!("{prefix}ERROR: {}", f.message);
            record.status = Status::Failed;
            record.detail = "could not start".to_owned();
            JobResult::new(JobStatus::Failed)
        }
    };
    match StoredArtifacts::read(&state.artifacts(), job.id) {
        Ok(stored) => {
            result.artifacts = stored.archive.as_ref().map(|a| LocalArtifacts {
                path: a.path.clone(),
                size: a.size,
            });
            match stored.dotenv() {
                Some(Ok(variables)) => result.dotenv = variables,
                Some(Err(e)) => {
                    println!("{prefix}ERROR: {e}");
                    if result.status == JobStatus::Success {
                        result.status = JobStatus::Failed;
                        record.status = Status::Failed;
                        record.detail = "dotenv report refused".to_owned();
                    }
                }
                None => {}
            }
        }
        Err(e) => println!(
            "{prefix}WARNING: the job's artifacts under {} could not be read ({e}); later jobs do not get them",
            state.artifacts().display()
        ),
    }
    (result, record)
}

fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

fn require_utf8(p: &Path) -> Result<(), Failure> {
    match p.to_str() {
        Some(_) => Ok(()),
        None => Err(Failure::config(format!(
            "path {} is not UTF-8; glrunner exec needs UTF-8 paths\n  fix: run it in a directory whose path is UTF-8",
            p.display()
        ))),
    }
}

/// First Ctrl-C cancels the running job gracefully (after_script and on-failure uploads still run)
/// and runs no further jobs; the second aborts.
fn cancel_on_ctrl_c(control: JobControl) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncanceling the pipeline (press Ctrl-C again to abort)");
            control.cancel.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                control.abort.cancel();
            }
        }
    });
}
