//! Where a job's files live: the builds dir, the project dir inside it, and the project's `.tmp`
//! sibling for file variables and git's template. Paths are strings as the job's shell sees them (a
//! local path for the shell executor, a container path for Kubernetes).

use crate::context::RunnerContext;
use glrunner_protocol::JobResponse;

/// The variable that holds the temp dir; file variables live in it.
pub const TEMP_PROJECT_DIR_VARIABLE: &str = "RUNNER_TEMP_PROJECT_DIR";

/// The directories of one job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobPaths {
    /// `CI_BUILDS_DIR`.
    pub builds_dir: String,
    /// `CI_PROJECT_DIR`: where the sources are checked out and user scripts run.
    pub project_dir: String,
    /// `<project dir>.tmp` (`RUNNER_TEMP_PROJECT_DIR`).
    pub tmp_dir: String,
}

impl JobPaths {
    /// For executors whose builds dir is shared between jobs (shell), like gitlab-runner:
    /// `<builds dir>/<runner short token>/<concurrent id>/<project path>`, so concurrent jobs of the
    /// same project never share a checkout.
    pub fn shared(builds_dir: &str, ctx: &RunnerContext, job: &JobResponse) -> Self {
        let token = sanitize_segment(&ctx.short_token).unwrap_or_else(|| "runner".to_owned());
        let project = format!(
            "{token}/{}/{}{}",
            ctx.concurrent_id,
            project_path(job),
            empty_suffix(job, ctx)
        );
        Self::under(builds_dir, &project)
    }

    /// For executors that give every job a fresh filesystem (Kubernetes): `<builds dir>/<project path>`.
    pub fn isolated(builds_dir: &str, ctx: &RunnerContext, job: &JobResponse) -> Self {
        let project = format!("{}{}", project_path(job), empty_suffix(job, ctx));
        Self::under(builds_dir, &project)
    }

    fn under(builds_dir: &str, project: &str) -> Self {
        let builds_dir = match builds_dir.trim_end_matches('/') {
            "" => "/".to_owned(),
            b => b.to_owned(),
        };
        let project_dir = format!("{}/{project}", builds_dir.trim_end_matches('/'));
        let tmp_dir = format!("{project_dir}.tmp");
        Self {
            builds_dir,
            project_dir,
            tmp_dir,
        }
    }
}

/// `-empty` for `GIT_STRATEGY: empty`, as gitlab-runner, so an empty checkout never replaces the
/// project's real one (the job's variables win over config.toml's `environment`, as for any variable).
fn empty_suffix(job: &JobResponse, ctx: &RunnerContext) -> &'static str {
    let from_config = ctx
        .environment
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("GIT_STRATEGY="));
    match job.variable("GIT_STRATEGY").or(from_config) {
        Some("empty") => "-empty",
        _ => "",
    }
}

/// A path segment that cannot climb out of its parent, or `None`.
fn sanitize_segment(s: &str) -> Option<String> {
    let ok = !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0', '\\']);
    ok.then(|| s.to_owned())
}

/// A relative path of safe segments, or `None`.
fn safe_relative(path: &str) -> Option<String> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(sanitize_segment)
        .collect::<Option<_>>()?;
    (!segments.is_empty()).then(|| segments.join("/"))
}

/// The project's path under the builds dir: `job_info.project_full_path` (`group/project`), else the
/// repository URL's path without `.git`, else `project-<id>`; never anything with `..` in it.
pub fn project_path(job: &JobResponse) -> String {
    if let Some(p) = safe_relative(&job.job_info.project_full_path) {
        return p;
    }
    let from_url = url::Url::parse(job.git_info.repo_url.expose())
        .ok()
        .filter(|u| u.host_str().is_some())
        .and_then(|u| safe_relative(u.path().trim_end_matches(".git")));
    from_url.unwrap_or_else(|| format!("project-{}", job.job_info.project_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(full_path: &str, url: &str) -> JobResponse {
        let mut job = JobResponse::default();
        job.job_info.project_id = 42;
        job.job_info.project_full_path = full_path.into();
        job.git_info.repo_url = url.into();
        job
    }

    #[test]
    fn shared_layout_like_gitlab_runner_shell() {
        let ctx = RunnerContext {
            short_token: "abc123xyz".into(),
            concurrent_id: 2,
            ..RunnerContext::default()
        };
        let p = JobPaths::shared("/home/ci/builds/", &ctx, &job("acme/demo", ""));
        assert_eq!(p.builds_dir, "/home/ci/builds");
        assert_eq!(p.project_dir, "/home/ci/builds/abc123xyz/2/acme/demo");
        assert_eq!(p.tmp_dir, "/home/ci/builds/abc123xyz/2/acme/demo.tmp");
    }

    #[test]
    fn isolated_layout() {
        let ctx = RunnerContext::default();
        let p = JobPaths::isolated("/builds", &ctx, &job("acme/sub/demo", ""));
        assert_eq!(p.project_dir, "/builds/acme/sub/demo");
    }

    #[test]
    fn empty_strategy_gets_its_own_directory() {
        let mut j = job("acme/demo", "");
        j.variables
            .push(glrunner_protocol::JobVariable::new("GIT_STRATEGY", "empty"));
        let ctx = RunnerContext {
            short_token: "abc123xyz".into(),
            ..RunnerContext::default()
        };
        let p = JobPaths::shared("/b", &ctx, &j);
        assert_eq!(p.project_dir, "/b/abc123xyz/0/acme/demo-empty");
        assert_eq!(p.tmp_dir, "/b/abc123xyz/0/acme/demo-empty.tmp");
        j.variables.clear();
        let ctx = RunnerContext {
            environment: vec!["GIT_STRATEGY=empty".into()],
            ..ctx
        };
        assert_eq!(
            JobPaths::isolated("/b", &ctx, &j).project_dir,
            "/b/acme/demo-empty"
        );
    }

    #[test]
    fn project_path_never_escapes() {
        assert_eq!(project_path(&job("../../etc", "")), "project-42");
        assert_eq!(
            project_path(&job(
                "",
                "https://gitlab-ci-token:t@gitlab.example.com/acme/demo.git"
            )),
            "acme/demo"
        );
        assert_eq!(
            project_path(&job("", "https://h/a/../b.git")),
            "b",
            "url crate normalises dots"
        );
        assert_eq!(project_path(&job("a//b", "")), "project-42");
        assert_eq!(project_path(&job("", "not a url")), "project-42");
    }
}
