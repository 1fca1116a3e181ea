//! Labels and annotations. Every object a job creates carries the identity labels (the manager's
//! system_id, the job id, the pod name: design decision 7) so part of glrunner can find and delete what
//! a crashed manager left. The pod also gets gitlab-runner's labels and annotations, then the
//! variable-expanded `pod_labels`/`pod_annotations` and the job overwrites allowed for them; keys under
//! `runner.gitlab.com/` and `glrunner/` are glrunner's own and cannot be set by either.

use super::error::SpecError;
use super::placement::overwrite_pairs;
use crate::names::{is_label_value, label_key_problem, sanitize_label_value};
use glrunner_config::KubernetesConfig;
use glrunner_job::Variables;
use glrunner_protocol::JobResponse;
use std::collections::BTreeMap;

/// The manager's system_id.
pub const LABEL_SYSTEM_ID: &str = "glrunner/system-id";
/// The GitLab job id.
pub const LABEL_JOB_ID: &str = "glrunner/job-id";
/// The job's pod name, also on the Secrets and Services that belong to it.
pub const LABEL_POD: &str = "glrunner/pod";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "glrunner";

pub const POD_LABELS_PREFIX: &str = "KUBERNETES_POD_LABELS_";
pub const POD_ANNOTATIONS_PREFIX: &str = "KUBERNETES_POD_ANNOTATIONS_";

type Map = BTreeMap<String, String>;

/// Whether a label or annotation key belongs to glrunner.
pub fn is_protected(key: &str) -> bool {
    let prefix = key.split_once('/').map_or("", |(p, _)| p);
    prefix == "runner.gitlab.com"
        || prefix.ends_with(".runner.gitlab.com")
        || prefix == "glrunner"
        || key == LABEL_MANAGED_BY
}

/// The labels on every object of one job.
pub fn identity(system_id: &str, job_id: i64, pod_name: &str) -> Map {
    Map::from([
        (LABEL_SYSTEM_ID.to_owned(), sanitize_label_value(system_id)),
        (LABEL_JOB_ID.to_owned(), job_id.to_string()),
        (LABEL_POD.to_owned(), pod_name.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
    ])
}

/// What the pod's metadata is made from.
pub struct Inputs<'a> {
    pub config: &'a KubernetesConfig,
    pub job: &'a JobResponse,
    pub vars: &'a Variables,
    pub unique_name: &'a str,
    pub runner_name: &'a str,
    pub short_token: &'a str,
    pub redact: &'a dyn Fn(&str) -> String,
}

/// One kind of user-set metadata: labels or annotations.
struct UserKind<'a> {
    configured: &'a Map,
    what: &'static str,
    config_key: &'static str,
    overwrite_key: &'static str,
    pattern: Option<&'a str>,
    prefix: &'static str,
}

/// The user's entries (key, expanded value, where it came from), overwrites applied.
fn user_entries(
    inputs: &Inputs<'_>,
    kind: UserKind<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String, String)>, SpecError> {
    let UserKind {
        configured,
        what,
        config_key,
        overwrite_key,
        pattern,
        prefix,
    } = kind;
    let mut out = Vec::new();
    for (k, v) in configured {
        out.push((
            k.clone(),
            inputs.vars.expand_value(v),
            format!("`{config_key}` in [runners.kubernetes]"),
        ));
    }
    let overwrites = overwrite_pairs(
        inputs.vars,
        prefix,
        overwrite_key,
        pattern,
        inputs.redact,
        warnings,
    )?;
    for (variable, k, v) in overwrites {
        out.retain(|(existing, _, _)| existing != k);
        out.push((
            k.to_owned(),
            v.to_owned(),
            format!("the job variable {variable}"),
        ));
    }
    for (k, _, source) in &out {
        if is_protected(k) {
            return Err(SpecError::ProtectedKey {
                source_name: source.clone(),
                what: what.to_owned(),
                key: k.clone(),
            });
        }
    }
    Ok(out)
}

/// The pod's labels: gitlab-runner's, the user's, then the identity labels (which always win).
pub fn pod_labels(
    inputs: &Inputs<'_>,
    identity: &Map,
    warnings: &mut Vec<String>,
) -> Result<Map, SpecError> {
    let c = inputs.config;
    let info = &inputs.job.job_info;
    let mut labels = Map::new();
    let kind = UserKind {
        configured: &c.pod_labels,
        what: "the label",
        config_key: "pod_labels",
        overwrite_key: "pod_labels_overwrite_allowed",
        pattern: c.pod_labels_overwrite_allowed.as_deref(),
        prefix: POD_LABELS_PREFIX,
    };
    for (k, v, source) in user_entries(inputs, kind, warnings)? {
        let shown = (inputs.redact)(&v);
        if let Some(problem) = label_key_problem(&k) {
            return Err(SpecError::Label {
                source_name: source,
                key: k,
                value: shown,
                problem: format!("the key is invalid: {problem}"),
            });
        }
        if !is_label_value(&v) {
            return Err(SpecError::Label {
                source_name: source,
                key: k,
                value: shown,
                problem:
                    "label values are at most 63 letters, digits, `-`, `_` or `.`, starting and \
                          ending with a letter or digit (after expanding variables)"
                        .into(),
            });
        }
        labels.insert(k, v);
    }
    let (namespace, _) = info
        .project_full_path
        .rsplit_once('/')
        .unwrap_or(("", info.project_full_path.as_str()));
    let root = namespace.split('/').next().unwrap_or_default();
    let unique = sanitize_label_value(inputs.unique_name);
    let mut ours = vec![
        ("pod", unique.clone()),
        ("job.runner.gitlab.com/pod", unique),
        ("project.runner.gitlab.com/id", info.project_id.to_string()),
        (
            "project.runner.gitlab.com/name",
            sanitize_label_value(&info.project_name),
        ),
        (
            "project.runner.gitlab.com/namespace",
            sanitize_label_value(namespace),
        ),
        (
            "project.runner.gitlab.com/root-namespace",
            sanitize_label_value(root),
        ),
        (
            "manager.runner.gitlab.com/name",
            sanitize_label_value(inputs.runner_name),
        ),
        (
            "manager.runner.gitlab.com/id-short",
            sanitize_label_value(inputs.short_token),
        ),
    ];
    if let Some(id) = info.namespace_id {
        ours.push(("project.runner.gitlab.com/namespace-id", id.to_string()));
    }
    if let Some(id) = info.root_namespace_id {
        ours.push((
            "project.runner.gitlab.com/root-namespace-id",
            id.to_string(),
        ));
    }
    for (k, v) in ours {
        labels.insert(k.to_owned(), v);
    }
    labels.extend(identity.clone());
    Ok(labels)
}

/// The pod's annotations: gitlab-runner's job annotations, then the user's.
pub fn pod_annotations(inputs: &Inputs<'_>, warnings: &mut Vec<String>) -> Result<Map, SpecError> {
    let c = inputs.config;
    let job = inputs.job;
    let timeout = std::time::Duration::from_secs(job.timeout_seconds());
    let mut annotations = Map::from([
        ("job.runner.gitlab.com/id".to_owned(), job.id.to_string()),
        (
            "job.runner.gitlab.com/sha".to_owned(),
            job.git_info.sha.clone(),
        ),
        (
            "job.runner.gitlab.com/before_sha".to_owned(),
            job.git_info.before_sha.clone(),
        ),
        (
            "job.runner.gitlab.com/ref".to_owned(),
            job.git_info.r#ref.clone(),
        ),
        (
            "job.runner.gitlab.com/name".to_owned(),
            job.job_info.name.clone(),
        ),
        (
            "job.runner.gitlab.com/timeout".to_owned(),
            glrunner_job::settings::format_go_duration(timeout),
        ),
        (
            "project.runner.gitlab.com/id".to_owned(),
            job.job_info.project_id.to_string(),
        ),
    ]);
    if let Some(url) = inputs.vars.value("CI_JOB_URL").filter(|u| !u.is_empty()) {
        annotations.insert("job.runner.gitlab.com/url".to_owned(), url.to_owned());
    }
    let kind = UserKind {
        configured: &c.pod_annotations,
        what: "the annotation",
        config_key: "pod_annotations",
        overwrite_key: "pod_annotations_overwrite_allowed",
        pattern: c.pod_annotations_overwrite_allowed.as_deref(),
        prefix: POD_ANNOTATIONS_PREFIX,
    };
    for (k, v, source) in user_entries(inputs, kind, warnings)? {
        if let Some(problem) = label_key_problem(&k) {
            return Err(SpecError::Label {
                source_name: source,
                key: k,
                value: (inputs.redact)(&v),
                problem: format!("the annotation key is invalid: {problem}"),
            });
        }
        annotations.insert(k, v);
    }
    Ok(annotations)
}
