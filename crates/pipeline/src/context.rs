//! What a local run knows that GitLab would know: the project directory and its git facts, the server
//! and project the remote names, and the ids GitLab would hand out.

use crate::git::GitFacts;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

/// The server named in local payloads when the remote URL names none.
pub const FALLBACK_SERVER_URL: &str = "http://localhost";

/// The namespace of a project whose remote URL gives none.
pub const FALLBACK_NAMESPACE: &str = "local";

/// GitLab's default clone depth for new projects.
pub const DEFAULT_GIT_DEPTH: u32 = 20;

/// Everything about a local run that is not in the pipeline file. One context serves one pipeline:
/// each [`crate::Pipeline::job_payload`] call takes the next job id from it.
#[derive(Debug)]
pub struct LocalContext {
    /// The project's directory (absolute); the payload's repository URL points here.
    pub project_dir: PathBuf,
    pub git: GitFacts,
    /// `https://gitlab.example.com` (from the remote URL, else [`FALLBACK_SERVER_URL`]).
    pub server_url: String,
    /// `group/project` (from the remote URL, else `local/<directory name>`).
    pub project_path: String,
    pub project_id: i64,
    pub pipeline_id: i64,
    pub pipeline_created_at: SystemTime,
    /// Clone depth unless the job sets `GIT_DEPTH`; 0 means a full clone.
    pub git_depth: u32,
    /// `CI_PIPELINE_SOURCE`: `push` unless set (e.g. `web`, `schedule`, `merge_request_event` to see
    /// which jobs such a pipeline would run).
    pub pipeline_source: String,
    /// Variables the user passes for this run, like variables given when running a pipeline in GitLab:
    /// visible to `rules:` and `workflow:rules`, and last (so winning) in every payload.
    pub variables: Vec<(String, String)>,
    next_job_id: AtomicI64,
}

impl LocalContext {
    /// Read the git facts of `project_dir` (running `git`) and derive the rest. Never fails: a directory
    /// that is not a repository gets fallbacks (see [`GitFacts::note`]).
    pub fn discover(project_dir: impl AsRef<Path>) -> Self {
        let dir = absolute(project_dir.as_ref());
        let git = GitFacts::discover(&dir);
        Self::new(dir, git)
    }

    /// A context from facts gathered elsewhere.
    pub fn new(project_dir: PathBuf, git: GitFacts) -> Self {
        let (server_url, project_path) = match &git.remote {
            Some(remote) => (remote.server_url.clone(), remote.path.clone()),
            None => (
                FALLBACK_SERVER_URL.to_owned(),
                format!("{FALLBACK_NAMESPACE}/{}", project_slug(&project_dir)),
            ),
        };
        Self {
            project_dir,
            git,
            server_url,
            project_path,
            project_id: 1,
            pipeline_id: 1,
            pipeline_created_at: SystemTime::now(),
            git_depth: DEFAULT_GIT_DEPTH,
            pipeline_source: "push".to_owned(),
            variables: Vec::new(),
            next_job_id: AtomicI64::new(1),
        }
    }

    /// Start job ids at `first` (e.g. to keep ids unique across runs).
    pub fn with_first_job_id(self, first: i64) -> Self {
        self.next_job_id.store(first, Ordering::Relaxed);
        self
    }

    /// Add a variable for this run (see [`LocalContext::variables`]).
    pub fn with_variable(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.push((key.into(), value.into()));
        self
    }

    /// Run as a pipeline of another source (see [`LocalContext::pipeline_source`]).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.pipeline_source = source.into();
        self
    }

    /// The id for the next job payload.
    pub fn next_job_id(&self) -> i64 {
        self.next_job_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The last path segment: GitLab's `CI_PROJECT_NAME`.
    pub fn project_name(&self) -> &str {
        self.project_path
            .rsplit('/')
            .next()
            .unwrap_or(&self.project_path)
    }

    /// Everything before the last path segment: `CI_PROJECT_NAMESPACE`.
    pub fn project_namespace(&self) -> &str {
        self.project_path
            .rsplit_once('/')
            .map_or(FALLBACK_NAMESPACE, |(ns, _)| ns)
    }
}

fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// A directory name as a GitLab project path: letters, digits, `_`, `-` and `.`; anything else becomes `-`.
fn project_slug(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        "project".to_owned()
    } else {
        slug.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_project_from_directory_name() {
        let ctx = LocalContext::new(PathBuf::from("/work/My Tool!"), GitFacts::fallback("test"));
        assert_eq!(ctx.project_path, "local/My-Tool");
        assert_eq!(ctx.project_name(), "My-Tool");
        assert_eq!(ctx.project_namespace(), "local");
        assert_eq!(ctx.server_url, FALLBACK_SERVER_URL);
    }

    #[test]
    fn job_ids_count_up() {
        let ctx =
            LocalContext::new(PathBuf::from("/p"), GitFacts::fallback("test")).with_first_job_id(7);
        assert_eq!(ctx.next_job_id(), 7);
        assert_eq!(ctx.next_job_id(), 8);
    }
}
