//! The job payload GitLab would send for a local job: predefined variables in GitLab's order, the
//! `script` and `after_script` steps, image and services, artifacts and cache entries, hooks, the
//! jobs whose artifacts it downloads, timeout, and git facts pointing at the local repository.

use crate::artifacts;
use crate::cache::{self, KeyFacts};
use crate::context::LocalContext;
use crate::git::GitFacts;
use crate::job::{ImageSpec, Job, ServiceSpec};
use crate::variables::YamlVariable;
use crate::worktree::Worktree;
use glrunner_protocol::{
    ArtifactsFile, Dependency, GitInfo, Hook, Image, JobFeatures, JobInfo, JobResponse,
    JobVariable, RefType, RunnerInfo, STEP_AFTER_SCRIPT, STEP_SCRIPT, Secret, Step, When,
};
use rand::Rng;
use std::path::PathBuf;
use std::time::SystemTime;

/// What a payload needs beyond the job: facts of the pipeline run it is part of.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// `CI_CONFIG_PATH`.
    pub config_path: String,
    /// `CI_PIPELINE_NAME` (`workflow:name`, expanded).
    pub pipeline_name: Option<String>,
    /// The job's YAML variables when a plan computed them (workflow and rule variables applied);
    /// `None`: the job's own.
    pub variables: Option<Vec<YamlVariable>>,
    /// Jobs whose artifacts this job downloads.
    pub dependencies: Vec<DependencyArtifacts>,
    /// Variables from the dependencies' `dotenv` reports.
    pub dependency_variables: Vec<(String, String)>,
}

/// An earlier job of the run, as a dependency of this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyArtifacts {
    pub id: i64,
    pub name: String,
    /// The archive the earlier job produced, and its size; `None` when it produced none.
    pub archive: Option<(PathBuf, u64)>,
}

/// GitLab's default project timeout, used when neither the job nor `default:` sets one.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 3600;

/// The failure reasons a local run may report (the subset of GitLab's list a runner uses).
const FAILURE_REASONS: &[&str] = &[
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "job_execution_timeout",
    "runner_configuration_error",
    "runner_external_dependency_failure",
    "runner_interrupted",
];

/// Build the payload for `job`, taking the next job id from `ctx`.
pub fn build(job: &Job, ctx: &LocalContext, extras: &Extras) -> JobResponse {
    let id = ctx.next_job_id();
    let token = job_token();
    let timeout = job.timeout.map_or(DEFAULT_TIMEOUT_SECONDS, |t| t.as_secs());
    let repo_url = repo_url(ctx);
    let yaml = extras.variables.as_deref().unwrap_or(&job.variables);
    let variables = variables(job, yaml, id, &token, &repo_url, ctx, extras);
    let depth = yaml
        .iter()
        .rev()
        .find(|v| v.key == "GIT_DEPTH")
        .and_then(|v| v.value.trim().parse().ok())
        .unwrap_or(ctx.git_depth);
    let git = &ctx.git;
    JobResponse {
        id,
        token: Secret::new(token.clone()),
        allow_git_fetch: true,
        job_info: JobInfo {
            id,
            name: job.name.clone(),
            stage: job.stage.clone(),
            pipeline_id: ctx.pipeline_id,
            project_id: ctx.project_id,
            project_name: ctx.project_name().to_owned(),
            project_full_path: ctx.project_path.clone(),
            ..JobInfo::default()
        },
        git_info: GitInfo {
            repo_url: Secret::new(repo_url),
            r#ref: git.ref_name().to_owned(),
            sha: git.sha.clone(),
            before_sha: git.before_sha.clone(),
            ref_type: git.ref_type(),
            refspecs: refspecs(git, ctx.pipeline_id, depth),
            depth,
            repo_object_format: Some(git.object_format.clone()),
            protected: Some(false),
        },
        runner_info: RunnerInfo {
            timeout: Some(timeout),
            ..RunnerInfo::default()
        },
        variables,
        steps: steps(job, timeout),
        hooks: job
            .hooks
            .iter()
            .map(|(name, script)| Hook {
                name: name.clone(),
                script: script.clone(),
            })
            .collect(),
        image: job.image.as_ref().map(image),
        services: job.services.iter().map(service).collect(),
        artifacts: job.artifacts.as_ref().and_then(artifacts::payload),
        cache: cache::payload(
            &job.cache,
            &KeyFacts {
                project_dir: &ctx.project_dir,
                repository: ctx.git.repository,
                worktree: &|| Worktree::list(&ctx.project_dir),
            },
        ),
        dependencies: extras
            .dependencies
            .iter()
            .map(|d| Dependency {
                id: d.id,
                name: d.name.clone(),
                // GitLab hands out the running job's token for downloading dependencies.
                token: Secret::new(token.clone()),
                artifacts_file: d.archive.as_ref().map(|(path, size)| ArtifactsFile {
                    filename: path.display().to_string(),
                    size: *size,
                }),
            })
            .collect(),
        features: JobFeatures {
            trace_sections: true,
            failure_reasons: FAILURE_REASONS.iter().map(|r| (*r).to_owned()).collect(),
            ..JobFeatures::default()
        },
        ..JobResponse::default()
    }
}

/// A job token shaped like GitLab's: `glcbt-<partition>_<20 random characters>`.
fn job_token() -> String {
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    format!("glcbt-64_{random}")
}

/// `script` = before_script + script; `after_script` only when there is one (always run, failure
/// allowed), as GitLab builds them.
fn steps(job: &Job, timeout: u64) -> Vec<Step> {
    let mut steps = vec![Step {
        name: STEP_SCRIPT.to_owned(),
        script: job
            .before_script
            .iter()
            .chain(&job.script)
            .cloned()
            .collect(),
        timeout: Some(timeout),
        when: When::OnSuccess,
        allow_failure: false,
    }];
    if !job.after_script.is_empty() {
        steps.push(Step {
            name: STEP_AFTER_SCRIPT.to_owned(),
            script: job.after_script.clone(),
            timeout: Some(timeout),
            when: When::Always,
            allow_failure: true,
        });
    }
    steps
}

fn image(spec: &ImageSpec) -> Image {
    Image {
        name: spec.name.clone(),
        entrypoint: spec.entrypoint.clone(),
        pull_policy: spec.pull_policy.clone(),
        executor_opts: spec.executor_opts.clone(),
        ..Image::default()
    }
}

fn service(spec: &ServiceSpec) -> Image {
    Image {
        alias: spec.alias.clone(),
        command: spec.command.clone(),
        variables: spec
            .variables
            .iter()
            .map(|v| JobVariable::new(&v.key, &v.value))
            .collect(),
        ..image(&spec.image)
    }
}

/// The repository URL of a local payload: the project directory as a `file://` URL.
fn repo_url(ctx: &LocalContext) -> String {
    url::Url::from_file_path(&ctx.project_dir)
        .map_or_else(|()| ctx.project_dir.display().to_string(), String::from)
}

/// What to fetch from the local repository. GitLab's `refs/pipelines/<id>` does not exist locally, so
/// HEAD is fetched into it instead; then the branch or tag as GitLab adds them.
fn refspecs(git: &GitFacts, pipeline_id: i64, depth: u32) -> Vec<String> {
    if !git.repository {
        return Vec::new();
    }
    let mut refspecs = vec![format!("+HEAD:refs/pipelines/{pipeline_id}")];
    if depth == 0 {
        refspecs.push("+refs/heads/*:refs/remotes/origin/*".to_owned());
        refspecs.push("+refs/tags/*:refs/tags/*".to_owned());
    } else if let Some(branch) = &git.branch {
        refspecs.push(format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"));
    } else if let Some(tag) = &git.tag {
        refspecs.push(format!("+refs/tags/{tag}:refs/tags/{tag}"));
    }
    refspecs
}

/// The variables in GitLab's order: the job's persisted ones, job, project and pipeline predefined
/// ones, the YAML variables, the dependencies' dotenv variables, then the user's (pipeline variables).
/// Later duplicates win in the runner.
fn variables(
    job: &Job,
    yaml: &[YamlVariable],
    id: i64,
    token: &str,
    repo_url: &str,
    ctx: &LocalContext,
    extras: &Extras,
) -> Vec<JobVariable> {
    let mut vars = vec![
        pv("CI_PIPELINE_ID", &ctx.pipeline_id.to_string()),
        pv(
            "CI_PIPELINE_URL",
            &format!("{}/-/pipelines/{}", project_url(ctx), ctx.pipeline_id),
        ),
        pv("CI_JOB_ID", &id.to_string()),
        pv("CI_JOB_URL", &format!("{}/-/jobs/{id}", project_url(ctx))),
        hidden("CI_JOB_TOKEN", token, true),
        pv(
            "CI_JOB_STARTED_AT",
            &humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        ),
        hidden("CI_REPOSITORY_URL", repo_url, false),
    ];
    vars.extend(job_predefined(job));
    vars.extend(pipeline_predefined(
        ctx,
        &extras.config_path,
        extras.pipeline_name.as_deref(),
    ));
    for var in yaml {
        vars.push(JobVariable {
            raw: var.raw,
            ..pv(&var.key, &var.value)
        });
    }
    for (key, value) in &extras.dependency_variables {
        vars.push(pv(key, value));
    }
    vars.extend(user_identity(ctx));
    for (key, value) in &ctx.variables {
        vars.push(pv(key, value));
    }
    vars
}

/// `CI_JOB_NAME`, `CI_JOB_STAGE`, `CI_NODE_*`: known before the job exists, so `rules:` see them.
pub fn job_predefined(job: &Job) -> Vec<JobVariable> {
    let mut vars = vec![
        pv("CI_JOB_NAME", &job.name),
        pv("CI_JOB_NAME_SLUG", &slugify(&job.name)),
        pv("CI_JOB_STAGE", &job.stage),
    ];
    if let Some((index, _)) = job.node {
        vars.push(pv("CI_NODE_INDEX", &index.to_string()));
    }
    vars.push(pv(
        "CI_NODE_TOTAL",
        &job.node.map_or(1, |(_, total)| total).to_string(),
    ));
    vars
}

fn project_url(ctx: &LocalContext) -> String {
    format!("{}/{}", ctx.server_url, ctx.project_path)
}

/// `GITLAB_USER_*` from the local git identity.
fn user_identity(ctx: &LocalContext) -> Vec<JobVariable> {
    let git = &ctx.git;
    let mut vars = Vec::new();
    if let Some(email) = &git.user_email {
        vars.push(pv("GITLAB_USER_EMAIL", email));
        if let Some((login, _)) = email.split_once('@') {
            vars.push(pv("GITLAB_USER_LOGIN", login));
        }
    }
    if let Some(name) = &git.user_name {
        vars.push(pv("GITLAB_USER_NAME", name));
    }
    vars
}

/// The server, project, pipeline and commit variables every job of the pipeline shares.
pub fn pipeline_predefined(
    ctx: &LocalContext,
    config_path: &str,
    pipeline_name: Option<&str>,
) -> Vec<JobVariable> {
    let git = &ctx.git;
    let server = &ctx.server_url;
    let project_url = format!("{server}/{}", ctx.project_path);
    let (host, port, protocol) = match url::Url::parse(server) {
        Ok(u) => (
            u.host_str().unwrap_or_default().to_owned(),
            u.port_or_known_default()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            u.scheme().to_owned(),
        ),
        Err(_) => Default::default(),
    };
    let fqdn = server
        .split_once("://")
        .map_or(server.as_str(), |(_, rest)| rest);
    let created = humantime::format_rfc3339_seconds(ctx.pipeline_created_at).to_string();
    let (title, description) = title_and_description(&git.commit_message);
    let ref_name = git.ref_name();

    let mut vars = vec![
        pv("CI", "true"),
        pv("GITLAB_CI", "true"),
        pv("CI_SERVER_FQDN", fqdn),
        pv("CI_SERVER_URL", server),
        pv("CI_SERVER_HOST", &host),
        pv("CI_SERVER_PORT", &port),
        pv("CI_SERVER_PROTOCOL", &protocol),
        pv("CI_SERVER_NAME", "GitLab"),
        pv("CI_PROJECT_ID", &ctx.project_id.to_string()),
        pv("CI_PROJECT_NAME", ctx.project_name()),
        pv("CI_PROJECT_TITLE", ctx.project_name()),
        pv("CI_PROJECT_PATH", &ctx.project_path),
        pv("CI_PROJECT_PATH_SLUG", &slugify(&ctx.project_path)),
        pv("CI_PROJECT_NAMESPACE", ctx.project_namespace()),
        pv(
            "CI_PROJECT_ROOT_NAMESPACE",
            ctx.project_path.split('/').next().unwrap_or_default(),
        ),
        pv("CI_PROJECT_URL", &project_url),
        pv("CI_PROJECT_VISIBILITY", "private"),
        pv("CI_DEFAULT_BRANCH", &git.default_branch),
        pv("CI_CONFIG_PATH", config_path),
        pv("CI_API_V4_URL", &format!("{server}/api/v4")),
        pv("CI_PIPELINE_IID", &ctx.pipeline_id.to_string()),
        pv("CI_PIPELINE_SOURCE", &ctx.pipeline_source),
        pv("CI_PIPELINE_CREATED_AT", &created),
        pv("CI_COMMIT_SHA", &git.sha),
        pv("CI_COMMIT_SHORT_SHA", git.sha.get(..8).unwrap_or(&git.sha)),
        pv("CI_COMMIT_BEFORE_SHA", &git.before_sha),
        pv("CI_COMMIT_REF_NAME", ref_name),
        pv("CI_COMMIT_REF_SLUG", &slugify(ref_name)),
    ];
    match (git.ref_type(), &git.branch, &git.tag) {
        (RefType::Tag, _, Some(tag)) => vars.push(pv("CI_COMMIT_TAG", tag)),
        (_, Some(branch), _) => vars.push(pv("CI_COMMIT_BRANCH", branch)),
        _ => {}
    }
    vars.extend([
        pv("CI_COMMIT_MESSAGE", &git.commit_message),
        pv("CI_COMMIT_TITLE", &title),
        pv("CI_COMMIT_DESCRIPTION", &description),
        pv("CI_COMMIT_REF_PROTECTED", "false"),
        pv("CI_COMMIT_TIMESTAMP", &git.commit_timestamp),
        pv("CI_COMMIT_AUTHOR", &git.commit_author),
    ]);
    if let Some(name) = pipeline_name {
        let at = vars
            .iter()
            .position(|v| v.key == "CI_PIPELINE_CREATED_AT")
            .map_or(vars.len(), |i| i + 1);
        vars.insert(at, pv("CI_PIPELINE_NAME", name));
    }
    vars
}

/// A public, unmasked variable.
fn pv(key: &str, value: &str) -> JobVariable {
    JobVariable::new(key, value)
}

/// A variable hidden from the job's public view, and masked in its log when `masked`.
fn hidden(key: &str, value: &str, masked: bool) -> JobVariable {
    JobVariable {
        key: key.to_owned(),
        value: value.to_owned(),
        public: false,
        masked,
        ..JobVariable::default()
    }
}

/// GitLab's slug: lowercase, every character but `a-z0-9` replaced by `-`, at most 63 characters, no
/// `-` at either end.
pub fn slugify(text: &str) -> String {
    let slug: String = text
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    slug.trim_matches('-').to_owned()
}

/// GitLab's commit title (first line, cut at 100 characters) and description (the rest, or the whole
/// message when the title was cut).
fn title_and_description(message: &str) -> (String, String) {
    let (first, rest) = message.split_once('\n').unwrap_or((message, ""));
    if first.chars().count() > 100 {
        let cut: String = first.chars().take(80).collect();
        (format!("{cut}…"), message.to_owned())
    } else {
        (first.to_owned(), rest.trim_start_matches('\n').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_like_gitlab() {
        assert_eq!(slugify("Feature/ABC_12"), "feature-abc-12");
        assert_eq!(slugify("rspec:test 1"), "rspec-test-1");
        assert_eq!(slugify("--x--"), "x");
        assert_eq!(slugify(&"a".repeat(70)).len(), 63);
    }

    #[test]
    fn commit_title_and_description() {
        assert_eq!(
            title_and_description("Fix it\n\nBecause.\n"),
            ("Fix it".to_owned(), "Because.\n".to_owned())
        );
        let long = "x".repeat(120);
        let (title, description) = title_and_description(&long);
        assert_eq!(title.chars().count(), 81);
        assert_eq!(description, long);
    }

    #[test]
    fn refspecs_follow_gitlab_with_head_standing_in_for_the_pipeline_ref() {
        let mut git = GitFacts::fallback("test");
        assert!(
            refspecs(&git, 5, 20).is_empty(),
            "no repository, nothing to fetch"
        );
        git.repository = true;
        git.branch = Some("main".into());
        assert_eq!(
            refspecs(&git, 5, 20),
            [
                "+HEAD:refs/pipelines/5",
                "+refs/heads/main:refs/remotes/origin/main"
            ]
        );
        assert_eq!(
            refspecs(&git, 5, 0),
            [
                "+HEAD:refs/pipelines/5",
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*"
            ]
        );
        git.branch = None;
        git.tag = Some("v1".into());
        assert_eq!(
            refspecs(&git, 5, 20),
            ["+HEAD:refs/pipelines/5", "+refs/tags/v1:refs/tags/v1"]
        );
    }

    #[test]
    fn tokens_look_like_gitlab_job_tokens() {
        let a = job_token();
        assert!(a.starts_with("glcbt-64_") && a.len() == 29, "{a}");
        assert_ne!(a, job_token());
        assert_eq!(
            glrunner_protocol::TokenKind::classify(&a),
            glrunner_protocol::TokenKind::Job
        );
    }
}
