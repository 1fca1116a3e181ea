//! The job payload GitLab would send for a local job: predefined variables in GitLab's order, the
//! `script` and `after_script` steps, image, timeout, and git facts pointing at the local repository.

use crate::context::LocalContext;
use crate::git::GitFacts;
use crate::job::{ImageSpec, Job};
use glrunner_protocol::{
    GitInfo, Image, JobFeatures, JobInfo, JobResponse, JobVariable, RefType, RunnerInfo,
    STEP_AFTER_SCRIPT, STEP_SCRIPT, Secret, Step, When,
};
use rand::Rng;
use std::time::SystemTime;

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

/// Build the payload for `job`. `config_path` is the pipeline file relative to the project directory.
pub fn build(job: &Job, config_path: &str, ctx: &LocalContext) -> JobResponse {
    let id = ctx.next_job_id();
    let token = job_token();
    let timeout = job.timeout.map_or(DEFAULT_TIMEOUT_SECONDS, |t| t.as_secs());
    let repo_url = url::Url::from_file_path(&ctx.project_dir)
        .map_or_else(|()| ctx.project_dir.display().to_string(), String::from);
    let variables = variables(job, id, &token, &repo_url, config_path, ctx);
    let depth = job
        .variables
        .iter()
        .rev()
        .find(|v| v.key == "GIT_DEPTH")
        .and_then(|v| v.value.trim().parse().ok())
        .unwrap_or(ctx.git_depth);
    let git = &ctx.git;
    JobResponse {
        id,
        token: Secret::new(token),
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
        image: job.image.as_ref().map(image),
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
/// ones, the YAML variables, then the user's. Later duplicates win in the runner.
fn variables(
    job: &Job,
    id: i64,
    token: &str,
    repo_url: &str,
    config_path: &str,
    ctx: &LocalContext,
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
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let created = humantime::format_rfc3339_seconds(ctx.pipeline_created_at).to_string();
    let (title, description) = title_and_description(&git.commit_message);
    let ref_name = git.ref_name();

    let mut vars = vec![
        pv("CI_PIPELINE_ID", &ctx.pipeline_id.to_string()),
        pv(
            "CI_PIPELINE_URL",
            &format!("{project_url}/-/pipelines/{}", ctx.pipeline_id),
        ),
        pv("CI_JOB_ID", &id.to_string()),
        pv("CI_JOB_URL", &format!("{project_url}/-/jobs/{id}")),
        hidden("CI_JOB_TOKEN", token, true),
        pv("CI_JOB_STARTED_AT", &now),
        hidden("CI_REPOSITORY_URL", repo_url, false),
        pv("CI_JOB_NAME", &job.name),
        pv("CI_JOB_NAME_SLUG", &slugify(&job.name)),
        pv("CI_JOB_STAGE", &job.stage),
        pv("CI_NODE_TOTAL", "1"),
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
        pv("CI_PIPELINE_SOURCE", "push"),
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
    for var in &job.variables {
        vars.push(JobVariable {
            raw: var.raw,
            ..pv(&var.key, &var.value)
        });
    }
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
