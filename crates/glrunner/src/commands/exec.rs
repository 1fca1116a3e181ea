//! `glrunner exec`: run one job of a local `.gitlab-ci.yml` with the shell executor, in the project
//! directory itself, with the same stage machinery as `run`. Output goes to the terminal; the exit code
//! is the job's.

use super::Failure;
use crate::cli::ExecArgs;
use crate::version;
use glrunner_job::paths::JobPaths;
use glrunner_job::shell::ShellExecutor;
use glrunner_job::{JobOutcome, RunnerContext, run_job};
use glrunner_pipeline::{LocalContext, Pipeline};
use glrunner_protocol::JobVariable;
use glrunner_protocol::token::MASKED_TOKEN_PREFIXES;
use glrunner_trace::{JobControl, Trace, TraceConfig};
use std::path::PathBuf;
use std::process::ExitCode;

pub async fn exec(args: ExecArgs) -> Result<ExitCode, Failure> {
    if args.executor != "shell" {
        return Err(Failure::config(format!(
            "glrunner exec runs jobs with the shell executor only for now, not {:?}\n  fix: drop --executor or pass --executor shell",
            args.executor
        )));
    }
    let dir = match &args.directory {
        Some(d) => d.clone(),
        None => std::env::current_dir()
            .map_err(|e| Failure::other(format!("no current directory: {e}")))?,
    };
    let dir = std::fs::canonicalize(&dir).map_err(|e| {
        Failure::config(format!(
            "project directory {} cannot be used: {e}",
            dir.display()
        ))
    })?;
    let file = dir.join(&args.file);
    let pipeline = Pipeline::load(&file).map_err(Failure::config)?;
    let Some(job_name) = args.job.clone() else {
        println!(
            "Jobs in {} (run one with `glrunner exec <job>`):",
            file.display()
        );
        for stage in pipeline.stages() {
            let jobs: Vec<&str> = pipeline
                .job_names()
                .into_iter()
                .filter(|n| pipeline.job(n).is_ok_and(|j| &j.stage == stage))
                .collect();
            if !jobs.is_empty() {
                println!("  {stage}: {}", jobs.join(", "));
            }
        }
        return Ok(ExitCode::SUCCESS);
    };

    let local = LocalContext::discover(&dir);
    if let Some(note) = &local.git.note {
        eprintln!("note: {note}");
    }
    let mut job = pipeline
        .job_payload(&job_name, &local)
        .map_err(Failure::config)?;
    for kv in &args.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            Failure::config(format!(
                "--env {kv:?} is not KEY=VALUE\n  fix: write it as --env NAME=value"
            ))
        })?;
        job.variables.push(JobVariable::new(k, v));
    }
    // The job runs in the working tree itself: never let get_sources fetch, check out or clean there.
    job.variables.push(JobVariable::new("GIT_STRATEGY", "none"));

    let tmp = tempfile::Builder::new()
        .prefix("glrunner-exec-")
        .tempdir()
        .map_err(|e| Failure::other(format!("cannot create a temporary directory: {e}")))?;
    let paths = JobPaths {
        builds_dir: path_string(
            dir.parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.clone()),
        )?,
        project_dir: path_string(dir.clone())?,
        tmp_dir: path_string(tmp.path().join("project.tmp"))?,
    };

    let mut masked = glrunner_job::variables::masked_values(&job);
    masked.retain(|v| !v.is_empty());
    let trace = Trace::new(TraceConfig {
        masked_values: masked,
        token_prefixes: MASKED_TOKEN_PREFIXES
            .iter()
            .map(|p| p.to_string())
            .collect(),
        limit_bytes: u64::MAX,
        mirror: Some(Box::new(std::io::stdout())),
    })
    .map_err(|e| Failure::other(format!("cannot create the job log spool: {e}")))?;

    let ctx = RunnerContext {
        name: "local".to_owned(),
        short_token: "local".to_owned(),
        system_id: "local".to_owned(),
        version: version::VERSION.to_owned(),
        revision: version::REVISION.to_owned(),
        executor: "shell".to_owned(),
        shell: "bash".to_owned(),
        // No GitLab: artifact stages are skipped with a warning instead of uploading somewhere.
        gitlab_url: Some(String::new()),
        ..RunnerContext::default()
    };
    let control = JobControl::new();
    cancel_on_ctrl_c(control.clone());
    let mut executor = ShellExecutor::new().with_paths(paths);
    let outcome = run_job(&job, &ctx, &mut executor, &trace, &control).await;
    trace.finish();
    Ok(match outcome {
        JobOutcome::Success => ExitCode::SUCCESS,
        JobOutcome::Failed {
            exit_code: Some(code),
            ..
        } => ExitCode::from(u8::try_from(code.clamp(1, 255)).unwrap_or(1)),
        JobOutcome::Failed { .. } => ExitCode::from(1),
        JobOutcome::Aborted => ExitCode::from(130),
    })
}

fn path_string(p: PathBuf) -> Result<String, Failure> {
    p.into_os_string().into_string().map_err(|p| {
        Failure::config(format!(
            "path {p:?} is not UTF-8; glrunner exec needs UTF-8 paths"
        ))
    })
}

/// First Ctrl-C cancels gracefully (after_script still runs), the second aborts.
fn cancel_on_ctrl_c(control: JobControl) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncanceling the job (press Ctrl-C again to abort)");
            control.cancel.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                control.abort.cancel();
            }
        }
    });
}
