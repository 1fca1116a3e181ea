//! The job payload GitLab returns from `POST /jobs/request` (201), field for field as in GitLab's
//! `Entities::Ci::JobRequest::Response`.

use crate::lenient::{any_string, null_default, string_or_list};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

/// One job as assigned by GitLab.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobResponse {
    pub id: i64,
    /// The job token (`CI_JOB_TOKEN`), used as `Job-Token` on every job endpoint.
    pub token: Secret,
    pub allow_git_fetch: bool,
    #[serde(deserialize_with = "null_default")]
    pub job_info: JobInfo,
    #[serde(deserialize_with = "null_default")]
    pub git_info: GitInfo,
    #[serde(deserialize_with = "null_default")]
    pub runner_info: RunnerInfo,
    #[serde(deserialize_with = "null_default")]
    pub variables: Vec<JobVariable>,
    #[serde(deserialize_with = "null_default")]
    pub steps: Vec<Step>,
    #[serde(deserialize_with = "null_default")]
    pub hooks: Vec<Hook>,
    pub image: Option<Image>,
    #[serde(deserialize_with = "null_default")]
    pub services: Vec<Image>,
    /// `null` when the job has no artifacts.
    pub artifacts: Option<Vec<Artifact>>,
    #[serde(deserialize_with = "null_default")]
    pub cache: Vec<Cache>,
    #[serde(deserialize_with = "null_default")]
    pub credentials: Vec<Credential>,
    #[serde(deserialize_with = "null_default")]
    pub features: JobFeatures,
    #[serde(deserialize_with = "null_default")]
    pub dependencies: Vec<Dependency>,
    /// JSON-encoded step-runner steps, only for jobs using `run:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl JobResponse {
    /// The value of a job variable (last one wins, as in gitlab-runner).
    pub fn variable(&self, key: &str) -> Option<&str> {
        self.variables
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }

    /// The job's timeout in seconds; 0 in the payload means gitlab-runner's default of 2 hours.
    pub fn timeout_seconds(&self) -> u64 {
        match self.runner_info.timeout {
            Some(t) if t > 0 => t,
            _ => DEFAULT_JOB_TIMEOUT_SECONDS,
        }
    }
}

/// gitlab-runner's job timeout when the payload gives none.
pub const DEFAULT_JOB_TIMEOUT_SECONDS: u64 = 7200;

/// The identity of the job, its pipeline and project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobInfo {
    pub id: i64,
    #[serde(deserialize_with = "any_string")]
    pub name: String,
    #[serde(deserialize_with = "any_string")]
    pub stage: String,
    pub pipeline_id: i64,
    pub project_id: i64,
    #[serde(deserialize_with = "any_string")]
    pub project_name: String,
    #[serde(deserialize_with = "any_string")]
    pub project_full_path: String,
    pub namespace_id: Option<i64>,
    pub root_namespace_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub instance_id: Option<serde_json::Value>,
    pub instance_uuid: Option<serde_json::Value>,
    pub user_id: Option<i64>,
    pub scoped_user_id: Option<i64>,
    pub time_in_queue_seconds: Option<f64>,
    pub project_jobs_running_on_instance_runners_count: Option<String>,
    pub queue_size: Option<i64>,
    pub queue_depth: Option<i64>,
}

/// Where the sources come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitInfo {
    /// `https://gitlab-ci-token:<job token>@host/group/project.git`: contains the job token.
    pub repo_url: Secret,
    #[serde(deserialize_with = "any_string")]
    pub r#ref: String,
    #[serde(deserialize_with = "any_string")]
    pub sha: String,
    #[serde(deserialize_with = "any_string")]
    pub before_sha: String,
    pub ref_type: RefType,
    #[serde(deserialize_with = "null_default")]
    pub refspecs: Vec<String>,
    /// Clone depth; 0 means a full clone.
    pub depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_object_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefType {
    #[default]
    Branch,
    Tag,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerInfo {
    /// Job timeout in seconds.
    pub timeout: Option<u64>,
    pub runner_session_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<serde_json::Value>,
}

/// A CI/CD variable. `file` and `raw` are only present on the wire when true. `Debug` hides the value of
/// masked and non-public variables (`CI_JOB_TOKEN`, `CI_REPOSITORY_URL` with its embedded token, …).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobVariable {
    #[serde(deserialize_with = "any_string")]
    pub key: String,
    #[serde(deserialize_with = "any_string")]
    pub value: String,
    pub public: bool,
    pub masked: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub file: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub raw: bool,
}

impl std::fmt::Debug for JobVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value: &dyn std::fmt::Debug = if self.masked || !self.public {
            &"[REDACTED]"
        } else {
            &self.value
        };
        f.debug_struct("JobVariable")
            .field("key", &self.key)
            .field("value", value)
            .field("public", &self.public)
            .field("masked", &self.masked)
            .field("file", &self.file)
            .field("raw", &self.raw)
            .finish()
    }
}

impl JobVariable {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            public: true,
            ..Self::default()
        }
    }
}

/// When a step, artifact or cache entry applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    #[default]
    OnSuccess,
    OnFailure,
    Always,
    /// A value this version does not know; treated like `on_success`.
    #[serde(other)]
    Unknown,
}

impl When {
    /// Whether an item with this `when` applies after a job that did or did not fail.
    pub fn applies(self, job_failed: bool) -> bool {
        match self {
            When::Always => true,
            When::OnFailure => job_failed,
            When::OnSuccess | When::Unknown => !job_failed,
        }
    }
}

/// One entry of `steps`: `script` (before_script + script), `after_script`, `release`, or a name a newer
/// GitLab invents (run as a user step named `step_<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Step {
    #[serde(deserialize_with = "any_string")]
    pub name: String,
    #[serde(deserialize_with = "string_or_list")]
    pub script: Vec<String>,
    pub timeout: Option<u64>,
    pub when: When,
    pub allow_failure: bool,
}

pub const STEP_SCRIPT: &str = "script";
pub const STEP_AFTER_SCRIPT: &str = "after_script";
pub const STEP_RELEASE: &str = "release";

/// A runtime hook such as `pre_get_sources_script`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hook {
    #[serde(deserialize_with = "any_string")]
    pub name: String,
    #[serde(deserialize_with = "string_or_list")]
    pub script: Vec<String>,
}

/// `image` or one of `services`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Image {
    #[serde(deserialize_with = "any_string")]
    pub name: String,
    #[serde(deserialize_with = "string_or_list")]
    pub entrypoint: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub ports: Vec<Port>,
    #[serde(deserialize_with = "null_default")]
    pub executor_opts: serde_json::Map<String, serde_json::Value>,
    #[serde(deserialize_with = "string_or_list")]
    pub pull_policy: Vec<String>,
    /// Services only; may hold several aliases separated by spaces or commas.
    pub alias: Option<String>,
    #[serde(deserialize_with = "string_or_list")]
    pub command: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub variables: Vec<JobVariable>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Port {
    pub number: u16,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Artifact {
    #[serde(deserialize_with = "any_string")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untracked: Option<bool>,
    #[serde(deserialize_with = "null_default")]
    pub paths: Vec<String>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exclude: Vec<String>,
    pub when: When,
    #[serde(deserialize_with = "any_string")]
    pub expire_in: String,
    #[serde(deserialize_with = "any_string")]
    pub artifact_type: String,
    #[serde(deserialize_with = "any_string")]
    pub artifact_format: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cache {
    #[serde(deserialize_with = "any_string")]
    pub key: String,
    pub untracked: bool,
    #[serde(deserialize_with = "any_string")]
    pub policy: String,
    #[serde(deserialize_with = "null_default")]
    pub paths: Vec<String>,
    pub when: When,
    #[serde(deserialize_with = "null_default")]
    pub fallback_keys: Vec<String>,
}

/// Registry credentials for pulling images.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Credential {
    #[serde(deserialize_with = "any_string")]
    pub r#type: String,
    #[serde(deserialize_with = "any_string")]
    pub url: String,
    #[serde(deserialize_with = "any_string")]
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobFeatures {
    pub trace_sections: bool,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub token_mask_prefixes: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub failure_reasons: Vec<String>,
}

/// A job whose artifacts this job downloads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dependency {
    pub id: i64,
    #[serde(deserialize_with = "any_string")]
    pub name: String,
    pub token: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts_file: Option<ArtifactsFile>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArtifactsFile {
    #[serde(deserialize_with = "any_string")]
    pub filename: String,
    pub size: u64,
}

/// The least a 201 body must contain for glrunner to report a failure back: the job id and token.
/// Used when the full payload does not decode, so the job is failed through the API, never dropped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobIdentity {
    pub id: i64,
    pub token: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../tests/fixtures/job_example.json");

    #[test]
    fn decodes_the_reference_example() {
        let job: JobResponse = serde_json::from_str(EXAMPLE).unwrap();
        assert_eq!(job.id, 8412);
        assert_eq!(job.job_info.name, "rspec 1/2");
        assert_eq!(job.git_info.depth, 20);
        assert_eq!(job.git_info.refspecs.len(), 2);
        assert_eq!(job.runner_info.timeout, Some(3600));
        assert_eq!(job.steps[1].name, STEP_AFTER_SCRIPT);
        assert_eq!(job.steps[1].when, When::Always);
        assert!(
            job.variables
                .iter()
                .any(|v| v.key == "KUBECONFIG" && v.file)
        );
        assert!(job.variables.iter().any(|v| v.key == "LITERAL" && v.raw));
        assert_eq!(job.services[0].alias.as_deref(), Some("db"));
        assert_eq!(job.artifacts.as_ref().unwrap()[1].artifact_type, "junit");
        assert_eq!(job.cache[0].fallback_keys, ["gems-default-1-protected"]);
        assert!(job.dependencies[1].artifacts_file.is_none());
        assert_eq!(job.variable("CI_JOB_STAGE"), Some("test"));
    }

    #[test]
    fn tolerates_nulls_unknown_fields_and_values() {
        let job: JobResponse = serde_json::from_str(
            r#"{"id":1,"token":"t","variables":null,"steps":[{"name":"deploy_new","script":"echo hi",
               "when":"on_timeout","timeout":null}],"brand_new_field":{"x":1},"image":null,
               "services":null,"cache":null,"dependencies":null,"features":null,"job_info":null}"#,
        )
        .unwrap();
        assert!(job.variables.is_empty());
        assert_eq!(job.steps[0].script, ["echo hi"]);
        assert_eq!(job.steps[0].when, When::Unknown);
        assert!(job.image.is_none());
    }

    #[test]
    fn file_and_raw_only_serialised_when_true() {
        let v = JobVariable::new("A", "1");
        let s = serde_json::to_string(&v).unwrap();
        assert!(!s.contains("file") && !s.contains("raw"), "{s}");
    }

    #[test]
    fn debug_hides_masked_and_non_public_values() {
        let mut v = JobVariable::new("CI_JOB_TOKEN", "glcbt-64_secret");
        assert!(format!("{v:?}").contains("glcbt-64_secret"));
        v.masked = true;
        assert!(!format!("{v:?}").contains("glcbt-64_secret"), "{v:?}");
        v.masked = false;
        v.public = false;
        assert!(!format!("{v:?}").contains("glcbt-64_secret"), "{v:?}");
    }

    #[test]
    fn job_timeout_defaults_to_two_hours() {
        let mut job = JobResponse::default();
        assert_eq!(job.timeout_seconds(), 7200);
        job.runner_info.timeout = Some(60);
        assert_eq!(job.timeout_seconds(), 60);
    }
}
