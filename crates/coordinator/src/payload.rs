//! The job payload of a 201 from `/jobs/request`, built from a [`JobSpec`] the way GitLab's
//! `BuildRunnerPresenter` and `Entities::Ci::JobRequest::Response` build it: key names, nulls versus
//! absent keys, refspecs, predefined `CI_*` variables, steps, artifacts and the failure reason list.

use crate::git::repository::CommitFacts;
use crate::job::{ArtifactSpec, ImageSpec, JobSpec, RefKind, ServiceSpec, Variable};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

/// Every `failure_reason` key GitLab's `CommitStatus` knows (newest), sent as
/// `features.failure_reasons` and used to map unknown reasons to `unknown_failure`.
pub const FAILURE_REASONS: &[&str] = &[
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
    "forward_deployment_failure",
    "user_blocked",
    "project_deleted",
    "ci_quota_exceeded",
    "pipeline_loop_detected",
    "no_matching_runner",
    "trace_size_exceeded",
    "builds_disabled",
    "environment_creation_failure",
    "deployment_rejected",
    "failed_outdated_deployment_job",
    "job_execution_server_timeout",
    "stuck_pending_with_matching_runners",
    "stuck_pending_no_matching_runners",
    "no_updates_running",
    "no_updates_canceling",
    "server_timeout_running",
    "server_timeout_canceling",
    "runner_configuration_error",
    "runner_external_dependency_failure",
    "runner_interrupted",
    "insufficient_bridge_permissions",
    "downstream_bridge_project_not_found",
    "invalid_bridge_trigger",
    "upstream_bridge_project_not_found",
    "insufficient_upstream_permissions",
    "bridge_pipeline_is_child_pipeline",
    "downstream_pipeline_creation_failed",
    "secrets_provider_not_found",
    "reached_max_descendant_pipelines_depth",
    "ip_restriction_failure",
    "reached_max_pipeline_hierarchy_size",
    "reached_downstream_pipeline_trigger_rate_limit",
    "job_router_failure",
    "job_token_expired",
];

/// The GitLab version the fake claims (`CI_SERVER_VERSION`).
const SERVER_VERSION: (u32, u32, u32) = (18, 5, 0);

/// The runner the job is assigned to, as far as the payload shows it.
pub(crate) struct RunnerContext<'a> {
    pub id: i64,
    pub description: &'a str,
    pub tags: &'a [String],
    pub maximum_timeout: Option<u64>,
    pub session_url: Option<String>,
}

/// A dependency job and its archive, if it has one.
pub(crate) struct DependencyContext {
    pub id: i64,
    pub name: String,
    pub archive: Option<(String, u64)>,
}

/// What a payload is built from besides the spec.
pub(crate) struct PayloadContext<'a> {
    pub job_id: i64,
    pub token: &'a str,
    pub pipeline_id: i64,
    pub spec: &'a JobSpec,
    /// The coordinator's base URL (`http://127.0.0.1:port`).
    pub server_url: &'a str,
    pub registry: Option<&'a str>,
    pub runner: RunnerContext<'a>,
    pub created_at: SystemTime,
    pub started_at: SystemTime,
    pub dependencies: Vec<DependencyContext>,
    pub queue_size: usize,
    /// The real commit of a served project (message, author, time); `None` for a made-up sha.
    pub commit: Option<&'a CommitFacts>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// GitLab's `slugify`: lowercase, anything but `[a-z0-9]` becomes `-`, at most 63 characters, no
/// leading or trailing `-`.
pub(crate) fn slugify(s: &str) -> String {
    let mapped: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    mapped.trim_matches('-').to_owned()
}

/// A stable project id for a path (GitLab would have one in its database).
pub(crate) fn project_id(path: &str) -> i64 {
    i64::from(crc32fast::hash(path.as_bytes()) % 90_000) + 10
}

/// `http://host/path.git` with `gitlab-ci-token:<token>@` inserted after the scheme.
pub(crate) fn with_credentials(url: &str, token: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://gitlab-ci-token:{token}@{rest}"),
        None => format!("gitlab-ci-token:{token}@{url}"),
    }
}

fn host_port(server_url: &str) -> (String, String, String) {
    let parsed = url::Url::parse(server_url).ok();
    let scheme = parsed
        .as_ref()
        .map_or("http".to_owned(), |u| u.scheme().to_owned());
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = parsed
        .as_ref()
        .and_then(|u| u.port_or_known_default())
        .map_or_else(|| "80".to_owned(), |p| p.to_string());
    (scheme, host, port)
}

/// One variable on the wire: `file`/`raw` only when true.
fn variable_json(v: &Variable) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), v.key.clone().into());
    m.insert("value".into(), v.value.clone().into());
    m.insert("public".into(), v.public.into());
    m.insert("masked".into(), v.masked.into());
    if v.file {
        m.insert("file".into(), true.into());
    }
    if v.raw {
        m.insert("raw".into(), true.into());
    }
    Value::Object(m)
}

fn predefined_variables(ctx: &PayloadContext<'_>) -> Vec<Variable> {
    let spec = ctx.spec;
    let server = ctx.server_url.trim_end_matches('/');
    let (scheme, host, port) = host_port(server);
    let project_url = format!("{server}/{}", spec.project);
    let repo_url = with_credentials(&repo_base(ctx), ctx.token);
    let (namespace, project_name) = spec.project.rsplit_once('/').unwrap_or(("", &spec.project));
    let root_namespace = namespace.split('/').next().unwrap_or("");
    let public = |k: &str, v: String| Variable::new(k, v);
    let secret = |k: &str, v: String| Variable {
        key: k.to_owned(),
        value: v,
        public: false,
        masked: true,
        ..Variable::default()
    };
    let mut vars = vec![
        public("CI_PIPELINE_ID", ctx.pipeline_id.to_string()),
        public(
            "CI_PIPELINE_URL",
            format!("{project_url}/-/pipelines/{}", ctx.pipeline_id),
        ),
        public("CI_JOB_ID", ctx.job_id.to_string()),
        public("CI_JOB_URL", format!("{project_url}/-/jobs/{}", ctx.job_id)),
        secret("CI_JOB_TOKEN", ctx.token.to_owned()),
        public("CI_JOB_STARTED_AT", rfc3339(ctx.started_at)),
    ];
    if ctx.registry.is_some() {
        vars.push(public("CI_REGISTRY_USER", "gitlab-ci-token".to_owned()));
        vars.push(secret("CI_REGISTRY_PASSWORD", ctx.token.to_owned()));
    }
    vars.push(Variable {
        key: "CI_REPOSITORY_URL".to_owned(),
        value: repo_url,
        public: false,
        masked: false,
        ..Variable::default()
    });
    vars.extend([
        public("CI_JOB_NAME", spec.name.clone()),
        public("CI_JOB_NAME_SLUG", slugify(&spec.name)),
        public("CI_JOB_STAGE", spec.stage.clone()),
        public("CI_JOB_TIMEOUT", spec.timeout.to_string()),
        public("CI_NODE_TOTAL", "1".to_owned()),
        public("CI", "true".to_owned()),
        public("GITLAB_CI", "true".to_owned()),
        public("CI_SERVER_URL", server.to_owned()),
        public("CI_SERVER_HOST", host.clone()),
        public("CI_SERVER_PORT", port),
        public("CI_SERVER_PROTOCOL", scheme),
        public("CI_SERVER_SHELL_SSH_HOST", host),
        public("CI_SERVER_NAME", "GitLab".to_owned()),
        public(
            "CI_SERVER_VERSION",
            format!(
                "{}.{}.{}",
                SERVER_VERSION.0, SERVER_VERSION.1, SERVER_VERSION.2
            ),
        ),
        public("CI_SERVER_VERSION_MAJOR", SERVER_VERSION.0.to_string()),
        public("CI_SERVER_VERSION_MINOR", SERVER_VERSION.1.to_string()),
        public("CI_SERVER_VERSION_PATCH", SERVER_VERSION.2.to_string()),
        public("CI_SERVER_REVISION", "0000000000".to_owned()),
        public("GITLAB_FEATURES", String::new()),
        public("CI_PROJECT_ID", project_id(&spec.project).to_string()),
        public("CI_PROJECT_NAME", project_name.to_owned()),
        public("CI_PROJECT_TITLE", project_name.to_owned()),
        public("CI_PROJECT_DESCRIPTION", String::new()),
        public("CI_PROJECT_PATH", spec.project.clone()),
        public("CI_PROJECT_PATH_SLUG", slugify(&spec.project)),
        public("CI_PROJECT_NAMESPACE", namespace.to_owned()),
        public("CI_PROJECT_ROOT_NAMESPACE", root_namespace.to_owned()),
        public("CI_PROJECT_URL", project_url.clone()),
        public("CI_PROJECT_VISIBILITY", "internal".to_owned()),
        public(
            "CI_DEFAULT_BRANCH",
            ctx.commit
                .map_or_else(|| "main".to_owned(), |c| c.default_branch.clone()),
        ),
        public("CI_CONFIG_PATH", ".gitlab-ci.yml".to_owned()),
    ]);
    if let Some(registry) = ctx.registry {
        vars.push(public("CI_REGISTRY", registry.to_owned()));
        vars.push(public(
            "CI_REGISTRY_IMAGE",
            format!("{registry}/{}", spec.project),
        ));
    }
    vars.extend([
        public("CI_API_V4_URL", format!("{server}/api/v4")),
        public("CI_API_GRAPHQL_URL", format!("{server}/api/graphql")),
        public("CI_PIPELINE_IID", (ctx.pipeline_id % 1000 + 1).to_string()),
        public("CI_PIPELINE_SOURCE", "push".to_owned()),
        public("CI_PIPELINE_CREATED_AT", rfc3339(ctx.created_at)),
        public("CI_COMMIT_SHA", spec.sha.clone()),
        public("CI_COMMIT_SHORT_SHA", spec.sha.chars().take(8).collect()),
        public("CI_COMMIT_BEFORE_SHA", spec.before_sha.clone()),
        public("CI_COMMIT_REF_NAME", spec.git_ref.clone()),
        public("CI_COMMIT_REF_SLUG", slugify(&spec.git_ref)),
    ]);
    match spec.ref_type {
        RefKind::Branch => vars.push(public("CI_COMMIT_BRANCH", spec.git_ref.clone())),
        RefKind::Tag => vars.push(public("CI_COMMIT_TAG", spec.git_ref.clone())),
    }
    let (message, title, description, author, timestamp) = match ctx.commit {
        Some(c) => (
            c.message.clone(),
            c.title.clone(),
            c.description.clone(),
            c.author.clone(),
            c.timestamp.clone(),
        ),
        None => (
            "Update .gitlab-ci.yml\n".to_owned(),
            "Update .gitlab-ci.yml".to_owned(),
            String::new(),
            "Administrator <admin@example.com>".to_owned(),
            rfc3339(ctx.created_at),
        ),
    };
    vars.extend([
        public("CI_COMMIT_REF_PROTECTED", spec.protected.to_string()),
        public("CI_COMMIT_MESSAGE", message),
        public("CI_COMMIT_TITLE", title),
        public("CI_COMMIT_DESCRIPTION", description),
        public("CI_COMMIT_AUTHOR", author),
        public("CI_COMMIT_TIMESTAMP", timestamp),
        public("GITLAB_USER_ID", "1".to_owned()),
        public("GITLAB_USER_EMAIL", "admin@example.com".to_owned()),
        public("GITLAB_USER_LOGIN", "root".to_owned()),
        public("GITLAB_USER_NAME", "Administrator".to_owned()),
        public("CI_RUNNER_ID", ctx.runner.id.to_string()),
        public("CI_RUNNER_DESCRIPTION", ctx.runner.description.to_owned()),
        public(
            "CI_RUNNER_TAGS",
            serde_json::to_string(ctx.runner.tags).unwrap_or_else(|_| "[]".to_owned()),
        ),
    ]);
    vars
}

/// Expand `$NAME` and `${NAME}` in every non-raw value, as GitLab's `sort_and_expand_all(keep_undefined:
/// true, expand_file_refs: false, expand_raw_refs: false)` does: references to undefined, file or raw
/// variables stay as written; a reference cycle leaves every value unexpanded.
pub(crate) fn expand_variables(vars: &mut [Variable]) {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, v) in vars.iter().enumerate() {
        index.insert(v.key.clone(), i);
    }
    let mut resolved: HashMap<usize, String> = HashMap::new();
    let mut expanded = Vec::with_capacity(vars.len());
    for i in 0..vars.len() {
        let mut visiting = HashSet::new();
        match resolve(i, vars, &index, &mut resolved, &mut visiting) {
            Some(v) => expanded.push(v),
            None => return,
        }
    }
    for (v, value) in vars.iter_mut().zip(expanded) {
        v.value = value;
    }
}

/// The expanded value of `vars[i]`; `None` on a reference cycle.
fn resolve(
    i: usize,
    vars: &[Variable],
    index: &HashMap<String, usize>,
    resolved: &mut HashMap<usize, String>,
    visiting: &mut HashSet<usize>,
) -> Option<String> {
    if let Some(v) = resolved.get(&i) {
        return Some(v.clone());
    }
    let var = &vars[i];
    if var.raw || var.file {
        return Some(var.value.clone());
    }
    if !visiting.insert(i) {
        return None;
    }
    let out = glrunner_protocol::expand::gitlab_expand(&var.value, |name| {
        let target = index
            .get(name)
            .copied()
            .filter(|&j| !vars[j].file && !vars[j].raw);
        match target {
            Some(j) => resolve(j, vars, index, resolved, visiting)
                .map(Some)
                .ok_or(()),
            None => Ok(None),
        }
    })
    .ok()?;
    visiting.remove(&i);
    resolved.insert(i, out.clone());
    Some(out)
}

fn repo_base(ctx: &PayloadContext<'_>) -> String {
    ctx.spec.repo_url.clone().unwrap_or_else(|| {
        format!(
            "{}/{}.git",
            ctx.server_url.trim_end_matches('/'),
            ctx.spec.project
        )
    })
}

/// GitLab's refspec rule (`BuildRunnerPresenter#refspecs`).
pub(crate) fn refspecs(spec: &JobSpec, pipeline_id: i64) -> Vec<String> {
    let mut out = Vec::new();
    if spec.pipeline_ref {
        out.push(format!(
            "+refs/pipelines/{pipeline_id}:refs/pipelines/{pipeline_id}"
        ));
    }
    let r = &spec.git_ref;
    if spec.depth > 0 {
        match spec.ref_type {
            _ if r.starts_with("refs/") => out.push(format!("+{r}:refs/remotes/origin/{r}")),
            RefKind::Branch => out.push(format!("+refs/heads/{r}:refs/remotes/origin/{r}")),
            RefKind::Tag => out.push(format!("+refs/tags/{r}:refs/tags/{r}")),
        }
    } else {
        out.push("+refs/heads/*:refs/remotes/origin/*".to_owned());
        out.push("+refs/tags/*:refs/tags/*".to_owned());
    }
    out
}

fn image_json(image: &ImageSpec) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), image.name.clone().into());
    m.insert("entrypoint".into(), json!(image.entrypoint));
    let ports: Vec<Value> = image
        .ports
        .iter()
        .map(|p| json!({"number": p.number, "protocol": p.protocol, "name": p.name}))
        .collect();
    m.insert("ports".into(), Value::Array(ports));
    m.insert("executor_opts".into(), json!({}));
    m.insert("pull_policy".into(), json!(image.pull_policy));
    m
}

fn service_json(service: &ServiceSpec) -> Value {
    let mut m = image_json(&service.image);
    m.insert("alias".into(), json!(service.alias));
    m.insert("command".into(), json!(service.command));
    let vars: Vec<Value> = service
        .variables
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    m.insert("variables".into(), Value::Array(vars));
    Value::Object(m)
}

/// GitLab's default file name of a report type (`Enums::Ci::JobArtifact::DEFAULT_FILE_NAMES`).
fn default_file_name(artifact_type: &str) -> String {
    let name = match artifact_type {
        "archive" => "artifacts",
        "junit" => "junit.xml",
        "cobertura" => "cobertura-coverage.xml",
        "jacoco" => "jacoco.xml",
        "dotenv" => ".env",
        "metrics" => "metrics.txt",
        "sast" => "gl-sast-report.json",
        "dependency_scanning" => "gl-dependency-scanning-report.json",
        "container_scanning" => "gl-container-scanning-report.json",
        "dast" => "gl-dast-report.json",
        "secret_detection" => "gl-secret-detection-report.json",
        "codequality" => "gl-code-quality-report.json",
        "terraform" => "tfplan.json",
        "accessibility" => "gl-accessibility.json",
        "lsif" => "lsif.json",
        "cyclonedx" => "gl-sbom.cdx.json",
        "annotations" => "gl-annotations.json",
        "requirements" => "requirements.json",
        "load_performance" => "load-performance.json",
        "browser_performance" => "browser-performance.json",
        other => return format!("{other}.json"),
    };
    name.to_owned()
}

/// GitLab's format of an artifact type (`type_and_format_pairs`).
fn default_format(artifact_type: &str) -> &'static str {
    match artifact_type {
        "archive" | "lsif" => "zip",
        "metadata" | "junit" | "cobertura" | "jacoco" | "dotenv" | "metrics" | "cyclonedx"
        | "annotations" => "gzip",
        _ => "raw",
    }
}

fn artifact_json(a: &ArtifactSpec) -> Value {
    let mut m = Map::new();
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| default_file_name(&a.artifact_type));
    m.insert("name".into(), name.into());
    if let Some(untracked) = a.untracked {
        m.insert("untracked".into(), untracked.into());
    }
    m.insert("paths".into(), json!(a.paths));
    if !a.exclude.is_empty() {
        m.insert("exclude".into(), json!(a.exclude));
    }
    m.insert("when".into(), a.when.clone().into());
    m.insert("expire_in".into(), a.expire_in.clone().into());
    m.insert("artifact_type".into(), a.artifact_type.clone().into());
    let format = a
        .artifact_format
        .clone()
        .unwrap_or_else(|| default_format(&a.artifact_type).to_owned());
    m.insert("artifact_format".into(), format.into());
    Value::Object(m)
}

/// The complete 201 body for a job.
pub(crate) fn build(ctx: &PayloadContext<'_>) -> Value {
    let spec = ctx.spec;
    let (namespace, project_name) = spec.project.rsplit_once('/').unwrap_or(("", &spec.project));
    let namespace_id = project_id(namespace);
    let root_namespace_id = project_id(namespace.split('/').next().unwrap_or(""));
    let timeout = match ctx.runner.maximum_timeout {
        Some(max) => spec.timeout.min(max),
        None => spec.timeout,
    };
    let queued = ctx
        .started_at
        .duration_since(ctx.created_at)
        .map_or(0, |d| d.as_secs());

    let mut vars = predefined_variables(ctx);
    vars.extend(spec.variables.iter().cloned());
    expand_variables(&mut vars);

    let mut steps = vec![json!({
        "name": "script",
        "script": spec.before_script.iter().chain(&spec.script).collect::<Vec<_>>(),
        "timeout": timeout,
        "when": "on_success",
        "allow_failure": false,
    })];
    for step in &spec.steps {
        steps.push(json!({
            "name": step.name,
            "script": step.script,
            "timeout": step.timeout.unwrap_or(timeout),
            "when": step.when,
            "allow_failure": step.allow_failure,
        }));
    }
    if !spec.after_script.is_empty() {
        steps.push(json!({
            "name": "after_script",
            "script": spec.after_script,
            "timeout": timeout,
            "when": "always",
            "allow_failure": true,
        }));
    }

    let protected_suffix = if spec.protected {
        "protected"
    } else {
        "non_protected"
    };
    let cache: Vec<Value> = spec
        .cache
        .iter()
        .map(|c| {
            json!({
                "key": format!("{}-{protected_suffix}", c.key),
                "untracked": c.untracked,
                "policy": c.policy,
                "paths": c.paths,
                "when": c.when,
                "fallback_keys": c.fallback_keys.iter()
                    .map(|k| format!("{k}-{protected_suffix}")).collect::<Vec<_>>(),
            })
        })
        .collect();

    let credentials: Vec<Value> = ctx
        .registry
        .map(|r| {
            json!({"type": "registry", "url": r, "username": "gitlab-ci-token", "password": ctx.token})
        })
        .into_iter()
        .collect();

    let dependencies: Vec<Value> = ctx
        .dependencies
        .iter()
        .map(|d| {
            let mut m = Map::new();
            m.insert("id".into(), d.id.into());
            m.insert("name".into(), d.name.clone().into());
            m.insert("token".into(), ctx.token.into());
            if let Some((filename, size)) = &d.archive {
                m.insert(
                    "artifacts_file".into(),
                    json!({"filename": filename, "size": size}),
                );
            }
            Value::Object(m)
        })
        .collect();

    let artifacts = if spec.artifacts.is_empty() {
        Value::Null
    } else {
        Value::Array(spec.artifacts.iter().map(artifact_json).collect())
    };

    let mut payload = json!({
        "id": ctx.job_id,
        "token": ctx.token,
        "allow_git_fetch": true,
        "job_info": {
            "id": ctx.job_id,
            "name": spec.name,
            "stage": spec.stage,
            "pipeline_id": ctx.pipeline_id,
            "project_id": project_id(&spec.project),
            "project_name": project_name,
            "project_full_path": spec.project,
            "namespace_id": namespace_id,
            "root_namespace_id": root_namespace_id,
            "organization_id": 1,
            "instance_id": "glrunner-coordinator",
            "instance_uuid": "00000000-0000-4000-8000-000000000000",
            "user_id": 1,
            "scoped_user_id": null,
            "time_in_queue_seconds": queued,
            "project_jobs_running_on_instance_runners_count": "0",
            "queue_size": ctx.queue_size,
            "queue_depth": ctx.queue_size,
        },
        "git_info": {
            "repo_url": with_credentials(&repo_base(ctx), ctx.token),
            "ref": spec.git_ref,
            "sha": spec.sha,
            "before_sha": spec.before_sha,
            "ref_type": match spec.ref_type { RefKind::Branch => "branch", RefKind::Tag => "tag" },
            "refspecs": refspecs(spec, ctx.pipeline_id),
            "depth": spec.depth,
            "repo_object_format": "sha1",
            "protected": spec.protected,
        },
        "runner_info": {
            "timeout": timeout,
            "runner_session_url": ctx.runner.session_url,
        },
        "variables": vars.iter().map(variable_json).collect::<Vec<_>>(),
        "steps": steps,
        "hooks": spec.hooks.iter().map(|h| json!({"name": h.name, "script": h.script})).collect::<Vec<_>>(),
        "image": spec.image.as_ref().map(|i| Value::Object(image_json(i))),
        "services": spec.services.iter().map(service_json).collect::<Vec<_>>(),
        "artifacts": artifacts,
        "cache": cache,
        "credentials": credentials,
        "features": {
            "trace_sections": true,
            "failure_reasons": FAILURE_REASONS,
        },
        "dependencies": dependencies,
    });
    if let Some(extra) = &spec.merge {
        apply_merge(&mut payload, extra, ctx.job_id, ctx.token);
    }
    payload
}

/// Merge `extra` into `payload`, keep the real id and token, and rewrite a foreign job token found in
/// `extra` to the real one.
fn apply_merge(payload: &mut Value, extra: &Value, job_id: i64, token: &str) {
    let foreign = extra
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && *t != token)
        .map(str::to_owned);
    merge(payload, extra);
    if let Some(foreign) = foreign {
        replace_strings(payload, &foreign, token);
    }
    if let Some(obj) = payload.as_object_mut() {
        obj.insert("id".into(), job_id.into());
        obj.insert("token".into(), token.into());
        if let Some(info) = obj.get_mut("job_info").and_then(Value::as_object_mut) {
            info.insert("id".into(), job_id.into());
        }
        if let Some(vars) = obj.get_mut("variables").and_then(Value::as_array_mut) {
            for v in vars
                .iter_mut()
                .filter(|v| v.get("key") == Some(&json!("CI_JOB_ID")))
            {
                v["value"] = job_id.to_string().into();
            }
        }
    }
}

/// Objects merge key by key (recursively); anything else in `extra` replaces.
pub(crate) fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, e) => *slot = e.clone(),
    }
}

fn replace_strings(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, from, to)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_strings(x, from, to)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(vars: &[Variable], key: &str) -> String {
        vars.iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.clone())
            .unwrap_or_default()
    }

    #[test]
    fn expands_like_gitlab() {
        let mut vars = vec![
            Variable::new("A", "a"),
            Variable::new("B", "${A}-$A-$UNDEFINED-$$"),
            Variable::new("F", "content").file(),
            Variable::new("R", "$A").raw(),
            Variable::new("C", "$B/$F/$R/${A"),
        ];
        expand_variables(&mut vars);
        assert_eq!(value(&vars, "B"), "a-a-$UNDEFINED-$$");
        assert_eq!(value(&vars, "R"), "$A");
        assert_eq!(value(&vars, "C"), "a-a-$UNDEFINED-$$/$F/$R/${A");
    }

    #[test]
    fn a_cycle_leaves_values_alone() {
        let mut vars = vec![
            Variable::new("X", "$Y"),
            Variable::new("Y", "$X"),
            Variable::new("Z", "$X"),
        ];
        expand_variables(&mut vars);
        assert_eq!(value(&vars, "X"), "$Y");
        assert_eq!(value(&vars, "Z"), "$X");
    }

    #[test]
    fn refspecs_follow_depth_and_ref_type() {
        let spec = JobSpec::default();
        assert_eq!(
            refspecs(&spec, 7),
            [
                "+refs/pipelines/7:refs/pipelines/7",
                "+refs/heads/main:refs/remotes/origin/main"
            ]
        );
        let tag = JobSpec::default().tag("v1");
        assert_eq!(refspecs(&tag, 7)[1], "+refs/tags/v1:refs/tags/v1");
        let full = JobSpec::default().depth(0);
        assert_eq!(
            refspecs(&full, 7)[1..],
            [
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*"
            ]
        );
    }

    #[test]
    fn slugs_and_credentials() {
        assert_eq!(slugify("Feature/Add_Thing!"), "feature-add-thing");
        assert_eq!(
            with_credentials("http://127.0.0.1:1/a/b.git", "glcbt-x"),
            "http://gitlab-ci-token:glcbt-x@127.0.0.1:1/a/b.git"
        );
    }

    #[test]
    fn merge_is_deep() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        merge(&mut base, &json!({"a": {"c": 3}, "d": [9]}));
        assert_eq!(base, json!({"a": {"b": 1, "c": 3}, "d": [9]}));
    }
}
