//! `glrunner helper`: the subcommands job scripts run for artifacts and caches (design decision 8), on
//! the host for the shell executor and inside job pods for Kubernetes. [`HelperArgs`] is the clap
//! subcommand the binary mounts; [`run`] executes one and returns the exit code the script checks:
//! 0 done, 1 failed (after an `ERROR:` or `WARNING:` line that says why and how to fix it), 2 for
//! `cache-extract` when there is no cache. Job tokens come from `GLRUNNER_JOB_TOKEN`, never from the
//! command line, and are never printed. Artifacts can also stay on this machine (`--file`, for
//! `glrunner exec`): written to a local archive and extracted from one, without GitLab or a token.

pub mod args;
pub mod artifacts;
pub mod cache;
pub mod error;
pub mod logs;
pub mod output;

pub use args::HelperArgs;
pub use error::HelperError;
pub use output::Output;

use glrunner_archive::Message;
use glrunner_protocol::Secret;
use std::path::{Path, PathBuf};

/// The environment variable holding the job token (for `artifacts-download`: the dependency's token).
pub const JOB_TOKEN_ENV: &str = "GLRUNNER_JOB_TOKEN";

/// How a subcommand ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    Failure,
    /// `cache-extract` found no cache (so the script can try the next key).
    CacheMissing,
    /// `read-logs`: the log file was deleted while it was followed (gitlab-runner's code).
    LogFileGone,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::CacheMissing => 2,
            Self::LogFileGone => 100,
        }
    }
}

/// Runs one subcommand, printing its lines to `out`.
pub async fn run(args: HelperArgs, out: &mut Output<'_>) -> Exit {
    let result = match &args {
        // Streams on the process's own stdin, stdout and stderr.
        HelperArgs::ReadLogs(a) => {
            return logs::read_logs(
                a,
                tokio::io::stdin(),
                tokio::io::stdout(),
                tokio::io::stderr(),
            )
            .await;
        }
        // Artifacts kept on this machine need no token.
        HelperArgs::ArtifactsUpload(a) if a.file.is_some() => {
            artifacts::save(a, out).map(|()| Exit::Success)
        }
        HelperArgs::ArtifactsDownload(a) if !a.file.is_empty() => {
            artifacts::extract_local(a, out).map(|()| Exit::Success)
        }
        HelperArgs::ArtifactsUpload(a) => async { artifacts::upload(a, &job_token()?, out).await }
            .await
            .map(|()| Exit::Success),
        HelperArgs::ArtifactsDownload(a) => {
            async { artifacts::download(a, &job_token()?, out).await }
                .await
                .map(|()| Exit::Success)
        }
        HelperArgs::CacheArchive(a) => cache::archive(a, out).await,
        HelperArgs::CacheExtract(a) => cache::extract(a, out).await,
    };
    match result {
        Ok(exit) => exit,
        Err(error) => {
            // A cache that cannot be moved does not fail the job: gitlab-runner warns, and so do we.
            let line = match error {
                HelperError::Transfer(_) => Message::warning(error.to_string()),
                _ => Message::error(error.to_string()),
            };
            out.message(&line);
            Exit::Failure
        }
    }
}

fn job_token() -> Result<Secret, HelperError> {
    match std::env::var(JOB_TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => Ok(Secret::new(token.trim())),
        _ => Err(HelperError::MissingToken {
            variable: JOB_TOKEN_ENV,
        }),
    }
}

/// `--project-dir`, else the current directory.
fn project_dir(args: &args::ProjectArgs) -> Result<PathBuf, HelperError> {
    match &args.project_dir {
        Some(dir) => Ok(dir.clone()),
        None => std::env::current_dir().map_err(|source| HelperError::ProjectDir {
            dir: PathBuf::from("."),
            source,
        }),
    }
}

/// `$VAR` and `${VAR}` from the job's environment, as gitlab-runner's helper expands paths and names.
fn expand_env(value: &str) -> String {
    glrunner_config::expand::expand_env(value, &|name| std::env::var(name).ok()).value
}

fn expand_all(values: &[String]) -> Vec<String> {
    values.iter().map(|v| expand_env(v)).collect()
}

/// The files `--path`, `--exclude` and `--untracked` select, variables expanded.
fn selection_spec(args: &args::SelectionArgs) -> glrunner_archive::Spec {
    glrunner_archive::Spec {
        paths: expand_all(&args.paths),
        exclude: expand_all(&args.exclude),
        untracked: args.untracked,
    }
}

fn staging_root(dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

/// A temporary file for an archive, removed when dropped.
fn staging_file(dir: Option<&Path>, prefix: &str) -> Result<tempfile::NamedTempFile, HelperError> {
    let root = staging_root(dir);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(&root)
        .map_err(|source| HelperError::Staging { dir: root, source })
}

/// A temporary directory, removed when dropped.
fn staging_dir(prefix: &str) -> Result<tempfile::TempDir, HelperError> {
    let root = staging_root(None);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&root)
        .map_err(|source| HelperError::Staging { dir: root, source })
}
