//! Errors of the in-process API. Each says what happened, the likely cause and the fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// [`crate::Coordinator::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to listen on {0}: the test coordinator binds only to loopback; \
         fix: use 127.0.0.1:<port> or [::1]:<port> (port 0 picks a free one)"
    )]
    NotLoopback(SocketAddr),
    #[error(
        "cannot listen on {addr}: {source}; likely cause: the port is in use or not permitted; \
         fix: choose another port, or port 0 for a free one"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot create a temporary directory for served git repositories: {0}; likely cause: the \
         temporary directory is missing, full or read-only; fix: point TMPDIR at a writable directory"
    )]
    RepositoryRoot(#[source] std::io::Error),
}

/// [`crate::Coordinator::enqueue`] refused a job.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(
        "job spec names dependency job {0}, which this coordinator never created; \
         likely cause: an id from another coordinator or a typo; fix: pass an id returned by enqueue()"
    )]
    UnknownDependency(i64),
    #[error(
        "job spec targets runner {0}, which does not exist; likely cause: the runner was never added \
         or was deleted; fix: pass the id returned by add_runner(), or leave runner_id unset"
    )]
    UnknownRunner(i64),
    #[error(
        "job spec's project {project} is served by this coordinator, so its ref and sha must exist \
         there (JobSpec::repository(&project) builds the ref's tip), but {source}"
    )]
    Repository {
        project: String,
        #[source]
        source: ProjectError,
    },
}

/// A served project could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(
        "project path {path:?} is not a GitLab project path ({why}); fix: use `group/project` or \
         `group/subgroup/project`, each part letters, digits, `.`, `_` or `-`, e.g. \"acme/demo\""
    )]
    InvalidPath { path: String, why: &'static str },
    #[error(
        "project {0} already exists on this coordinator; likely cause: add_project was called twice \
         with the same path; fix: reuse the Project the first call returned (Coordinator::project), \
         or pick another path"
    )]
    Exists(String),
    #[error(
        "file path {0:?} is not a relative path inside the repository; fix: write it like \
         \"src/main.rs\": no leading `/`, no `.`, `..` or `.git` parts, no newlines"
    )]
    InvalidFilePath(String),
    #[error(
        "cannot run `git {command}`: {source}; likely cause: git is not installed or not on PATH; \
         fix: install git 2.x (apt-get install git) and make sure `git --version` works"
    )]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`git {command}` failed ({status}): {stderr}; likely cause: the message above from git; \
         fix: correct the fixture (paths, revisions) or run the same git command by hand to see more"
    )]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "`git {command}` did not finish within {waited:?} and was killed; likely cause: a very large \
         fixture or a stuck filesystem; fix: use a smaller fixture directory"
    )]
    Timeout { command: String, waited: Duration },
    #[error(
        "revision {rev:?} does not exist in project {project}; likely cause: a typo, a branch or tag \
         not created yet, or a commit of another project; fix: create it first (Project::commit, \
         Project::branch, Project::tag) or pass a sha that Project::commit returned"
    )]
    UnknownRevision { project: String, rev: String },
    #[error(
        "cannot read fixture directory {path}: {source}; fix: pass an existing, readable directory"
    )]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot create the repository directory {path}: {source}; likely cause: the coordinator's \
         temporary directory was removed or is not writable; fix: keep the Coordinator alive while \
         using its projects"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A wait on the coordinator ended without its condition.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(
        "job {0} does not exist on this coordinator; likely cause: an id from another coordinator; \
         fix: pass an id returned by enqueue()"
    )]
    UnknownJob(i64),
    #[error(
        "timed out after {waited:?} waiting for {what}; last seen: {last}; likely cause: the runner \
         never sent the expected request (check requests() for what it did send); fix: look at the \
         request log, or raise the timeout if the machine is slow"
    )]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
}
