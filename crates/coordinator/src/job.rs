//! Jobs: the short description a test enqueues ([`JobSpec`]), the states GitLab moves a job through
//! ([`JobStatus`]) and what the admin side reads back ([`JobSnapshot`]).

use glrunner_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// A job to enqueue, described briefly; the coordinator turns it into the payload GitLab would send
/// (see `payload.rs`). Every field has a realistic default, so `JobSpec::script(["echo hi"])` is a
/// complete job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    pub name: String,
    pub stage: String,
    /// `group/project` path of the project the job belongs to.
    pub project: String,
    /// Branch or tag name.
    pub git_ref: String,
    pub ref_type: RefKind,
    /// The commit to build. For a project this coordinator serves, empty means the tip of
    /// `git_ref` at enqueue; a given sha (short or full) must exist in its repository.
    pub sha: String,
    pub before_sha: String,
    /// Clone depth (`GIT_DEPTH`); 0 = full clone.
    pub depth: u32,
    /// Whether the ref is protected (`git_info.protected`, cache key suffix `-protected`).
    pub protected: bool,
    /// Whether the pipeline's persistent ref exists, which adds `+refs/pipelines/<id>:…` to the
    /// refspecs (GitLab always has one; turn it off for a bare test repository without that ref).
    pub pipeline_ref: bool,
    /// Repository URL without credentials (`http://host/group/project.git`); by default the coordinator's
    /// own URL plus the project path. The job token is inserted as `gitlab-ci-token:<token>@`.
    pub repo_url: Option<String>,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    pub variables: Vec<Variable>,
    /// Job timeout in seconds (`runner_info.timeout`, capped by the runner's maximum timeout).
    pub timeout: u64,
    /// Steps after `script` and before `after_script`, such as `release`.
    pub steps: Vec<StepSpec>,
    pub hooks: Vec<HookSpec>,
    pub image: Option<ImageSpec>,
    pub services: Vec<ServiceSpec>,
    pub artifacts: Vec<ArtifactSpec>,
    pub cache: Vec<CacheSpec>,
    /// Ids of earlier jobs whose artifacts this job downloads.
    pub dependencies: Vec<i64>,
    /// Only this runner may take the job; `None` = any runner.
    pub runner_id: Option<i64>,
    /// Runner features the job needs beyond those derived from its content (see
    /// [`JobSpec::required_features`]).
    pub requires: Vec<String>,
    /// `allow_failure: exit_codes`; makes the job require `return_exit_code`.
    pub allow_failure_exit_codes: Vec<i32>,
    pub pipeline_id: Option<i64>,
    /// JSON merged into the generated payload last (objects merge key by key, anything else replaces).
    /// `id` and `token` always stay the coordinator's; a different job token inside the merged JSON is
    /// rewritten to the real one everywhere, so a conformance payload stays usable.
    pub merge: Option<serde_json::Value>,
}

impl Default for JobSpec {
    fn default() -> Self {
        Self {
            name: "test".to_owned(),
            stage: "test".to_owned(),
            project: "acme/demo".to_owned(),
            git_ref: "main".to_owned(),
            ref_type: RefKind::Branch,
            sha: "5c3f1b0e8d6a4c2f9e7b1a3d5f7c9e1b3a5d7f9c".to_owned(),
            before_sha: "0000000000000000000000000000000000000000".to_owned(),
            depth: 20,
            protected: true,
            pipeline_ref: true,
            repo_url: None,
            before_script: Vec::new(),
            script: Vec::new(),
            after_script: Vec::new(),
            variables: Vec::new(),
            timeout: 3600,
            steps: Vec::new(),
            hooks: Vec::new(),
            image: None,
            services: Vec::new(),
            artifacts: Vec::new(),
            cache: Vec::new(),
            dependencies: Vec::new(),
            runner_id: None,
            requires: Vec::new(),
            allow_failure_exit_codes: Vec::new(),
            pipeline_id: None,
            merge: None,
        }
    }
}

fn lines<I, S>(lines: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    lines.into_iter().map(Into::into).collect()
}

impl JobSpec {
    /// A job running these script lines.
    pub fn script<I, S>(script: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            script: lines(script),
            ..Self::default()
        }
    }

    /// A job whose payload is `payload` (for example the reference example of the runner API), with the
    /// coordinator's job id and token bound in.
    pub fn from_payload(payload: serde_json::Value) -> Self {
        Self {
            merge: Some(payload),
            ..Self::default()
        }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = stage.into();
        self
    }

    pub fn project(mut self, path: impl Into<String>) -> Self {
        self.project = path.into();
        self
    }

    /// Build a project this coordinator serves: the payload's `git_info` and `CI_REPOSITORY_URL`
    /// point at its repository, and the sha is resolved at enqueue from the job's branch or tag
    /// (call [`JobSpec::sha`] after this to pin another commit).
    pub fn repository(mut self, project: &crate::git::Project) -> Self {
        self.project = project.path().to_owned();
        self.sha = String::new();
        self.repo_url = None;
        self
    }

    /// Build a branch.
    pub fn branch(mut self, name: impl Into<String>) -> Self {
        self.git_ref = name.into();
        self.ref_type = RefKind::Branch;
        self
    }

    /// Build a tag.
    pub fn tag(mut self, name: impl Into<String>) -> Self {
        self.git_ref = name.into();
        self.ref_type = RefKind::Tag;
        self
    }

    pub fn sha(mut self, sha: impl Into<String>) -> Self {
        self.sha = sha.into();
        self
    }

    pub fn depth(mut self, depth: u32) -> Self {
        self.depth = depth;
        self
    }

    pub fn protected(mut self, protected: bool) -> Self {
        self.protected = protected;
        self
    }

    pub fn pipeline_ref(mut self, exists: bool) -> Self {
        self.pipeline_ref = exists;
        self
    }

    pub fn repo_url(mut self, url: impl Into<String>) -> Self {
        self.repo_url = Some(url.into());
        self
    }

    pub fn before_script<I, S>(mut self, script: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.before_script = lines(script);
        self
    }

    pub fn after_script<I, S>(mut self, script: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.after_script = lines(script);
        self
    }

    pub fn variable(mut self, variable: Variable) -> Self {
        self.variables.push(variable);
        self
    }

    /// A plain public variable.
    pub fn var(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.variable(Variable::new(key, value))
    }

    pub fn timeout(mut self, seconds: u64) -> Self {
        self.timeout = seconds;
        self
    }

    pub fn step(mut self, step: StepSpec) -> Self {
        self.steps.push(step);
        self
    }

    pub fn hook<I, S>(mut self, name: impl Into<String>, script: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.hooks.push(HookSpec {
            name: name.into(),
            script: lines(script),
        });
        self
    }

    pub fn image(mut self, image: ImageSpec) -> Self {
        self.image = Some(image);
        self
    }

    pub fn service(mut self, service: ServiceSpec) -> Self {
        self.services.push(service);
        self
    }

    pub fn artifact(mut self, artifact: ArtifactSpec) -> Self {
        self.artifacts.push(artifact);
        self
    }

    pub fn cache(mut self, cache: CacheSpec) -> Self {
        self.cache.push(cache);
        self
    }

    pub fn dependency(mut self, job_id: i64) -> Self {
        self.dependencies.push(job_id);
        self
    }

    /// Only the runner with this id may take the job.
    pub fn for_runner(mut self, runner_id: i64) -> Self {
        self.runner_id = Some(runner_id);
        self
    }

    /// Require a runner feature (as advertised in `info.features`).
    pub fn requires(mut self, feature: impl Into<String>) -> Self {
        self.requires.push(feature.into());
        self
    }

    pub fn allow_failure_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.allow_failure_exit_codes = codes.into_iter().collect();
        self
    }

    /// Merge JSON into the generated payload (see [`JobSpec::merge`]).
    pub fn merge(mut self, json: serde_json::Value) -> Self {
        self.merge = Some(json);
        self
    }

    /// The runner features this job needs, as GitLab derives them (`Ci::Build::RUNNER_FEATURES`):
    /// artifact reports → `upload_multiple_artifacts`, a merge-request ref → `refspecs`, artifact
    /// excludes → `artifacts_exclude`, a `release` step → `multi_build_steps`, exit codes in
    /// `allow_failure` → `return_exit_code`, cache fallback keys → `fallback_cache_keys`; plus
    /// [`JobSpec::requires`].
    pub fn required_features(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut need = |f: &str| {
            if !out.iter().any(|x| x == f) {
                out.push(f.to_owned());
            }
        };
        if self.artifacts.iter().any(|a| a.artifact_type != "archive") {
            need("upload_multiple_artifacts");
        }
        if self.git_ref.starts_with("refs/merge-requests/") {
            need("refspecs");
        }
        if self.artifacts.iter().any(|a| !a.exclude.is_empty()) {
            need("artifacts_exclude");
        }
        if self.steps.iter().any(|s| s.name == "release") {
            need("multi_build_steps");
        }
        if !self.allow_failure_exit_codes.is_empty() {
            need("return_exit_code");
        }
        if self.cache.iter().any(|c| !c.fallback_keys.is_empty()) {
            need("fallback_cache_keys");
        }
        for f in &self.requires {
            need(f);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefKind {
    #[default]
    Branch,
    Tag,
}

/// A CI/CD variable as defined in a project or `.gitlab-ci.yml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Variable {
    pub key: String,
    pub value: String,
    pub public: bool,
    pub masked: bool,
    pub file: bool,
    pub raw: bool,
}

impl Variable {
    /// A public variable (as from `variables:` in `.gitlab-ci.yml`).
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            public: true,
            ..Self::default()
        }
    }

    /// A masked project variable (not public).
    pub fn masked(mut self) -> Self {
        self.masked = true;
        self.public = false;
        self
    }

    /// A file-type variable: the runner writes the value to a file and exports its path.
    pub fn file(mut self) -> Self {
        self.file = true;
        self.public = false;
        self
    }

    /// Not expanded (`expand: false`).
    pub fn raw(mut self) -> Self {
        self.raw = true;
        self
    }
}

/// An extra step: `release` or any other name a newer GitLab may send.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StepSpec {
    pub name: String,
    pub script: Vec<String>,
    pub when: String,
    pub allow_failure: bool,
    /// Defaults to the job timeout.
    pub timeout: Option<u64>,
}

impl Default for StepSpec {
    fn default() -> Self {
        Self {
            name: "release".to_owned(),
            script: Vec::new(),
            when: "on_success".to_owned(),
            allow_failure: false,
            timeout: None,
        }
    }
}

impl StepSpec {
    pub fn new<I, S>(name: impl Into<String>, script: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.into(),
            script: lines(script),
            ..Self::default()
        }
    }

    /// A `release:` step (GitLab renders it as a `release-cli` command).
    pub fn release<I, S>(script: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new("release", script)
    }

    pub fn when(mut self, when: impl Into<String>) -> Self {
        self.when = when.into();
        self
    }

    pub fn allow_failure(mut self, allow: bool) -> Self {
        self.allow_failure = allow;
        self
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HookSpec {
    pub name: String,
    pub script: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageSpec {
    pub name: String,
    pub entrypoint: Option<Vec<String>>,
    pub pull_policy: Option<Vec<String>>,
    pub ports: Vec<PortSpec>,
}

impl ImageSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PortSpec {
    pub number: u16,
    pub protocol: String,
    pub name: String,
}

impl Default for PortSpec {
    fn default() -> Self {
        Self {
            number: 80,
            protocol: "http".to_owned(),
            name: "default_port".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceSpec {
    pub image: ImageSpec,
    pub alias: Option<String>,
    pub command: Option<Vec<String>>,
    pub variables: Vec<(String, String)>,
}

impl ServiceSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            image: ImageSpec::new(name),
            ..Self::default()
        }
    }

    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }
}

/// One `artifacts:` entry: the archive or a report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ArtifactSpec {
    /// Defaults to GitLab's: `artifacts` for the archive, the report's file name for reports.
    pub name: Option<String>,
    pub untracked: Option<bool>,
    pub paths: Vec<String>,
    pub exclude: Vec<String>,
    pub when: String,
    pub expire_in: String,
    pub artifact_type: String,
    /// Defaults to GitLab's format for the type.
    pub artifact_format: Option<String>,
}

impl Default for ArtifactSpec {
    fn default() -> Self {
        Self {
            name: None,
            untracked: None,
            paths: Vec::new(),
            exclude: Vec::new(),
            when: "on_success".to_owned(),
            expire_in: "30 days".to_owned(),
            artifact_type: "archive".to_owned(),
            artifact_format: None,
        }
    }
}

impl ArtifactSpec {
    /// The artifacts archive with these paths.
    pub fn archive<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            paths: lines(paths),
            untracked: Some(false),
            ..Self::default()
        }
    }

    /// A report (`junit`, `dotenv`, `cobertura`, …); reports are uploaded `when: always`.
    pub fn report<I, S>(artifact_type: impl Into<String>, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            paths: lines(paths),
            artifact_type: artifact_type.into(),
            when: "always".to_owned(),
            ..Self::default()
        }
    }

    pub fn exclude<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude = lines(patterns);
        self
    }

    pub fn when(mut self, when: impl Into<String>) -> Self {
        self.when = when.into();
        self
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn expire_in(mut self, expire_in: impl Into<String>) -> Self {
        self.expire_in = expire_in.into();
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSpec {
    pub key: String,
    pub paths: Vec<String>,
    pub untracked: bool,
    pub policy: String,
    pub when: String,
    pub fallback_keys: Vec<String>,
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self {
            key: "default".to_owned(),
            paths: Vec::new(),
            untracked: false,
            policy: "pull-push".to_owned(),
            when: "on_success".to_owned(),
            fallback_keys: Vec::new(),
        }
    }
}

impl CacheSpec {
    pub fn new<I, S>(key: impl Into<String>, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            key: key.into(),
            paths: lines(paths),
            ..Self::default()
        }
    }

    pub fn policy(mut self, policy: impl Into<String>) -> Self {
        self.policy = policy.into();
        self
    }

    pub fn fallback_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fallback_keys = lines(keys);
        self
    }
}

/// A job's state on the GitLab side (the `Job-Status` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    /// Graceful cancel requested: the runner still runs `after_script` and reports a final state.
    Canceling,
    Canceled,
    Success,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Canceling => "canceling",
            Self::Canceled => "canceled",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    /// Success, failed or canceled: nothing changes it any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Canceled | Self::Success | Self::Failed)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An uploaded artifact as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactSnapshot {
    pub artifact_type: String,
    pub artifact_format: String,
    pub expire_in: Option<String>,
    pub filename: String,
    pub size: u64,
}

/// Everything the coordinator knows about a job, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct JobSnapshot {
    pub id: i64,
    pub name: String,
    pub pipeline_id: i64,
    pub status: JobStatus,
    pub failure_reason: Option<String>,
    pub exit_code: Option<i32>,
    /// The job token (`Debug` shows `[REDACTED]`).
    #[serde(skip)]
    pub token: Secret,
    /// The stored trace, after server-side masking.
    #[serde(skip)]
    pub trace: Vec<u8>,
    pub trace_len: u64,
    /// CRC-32 (IEEE) of the stored trace.
    pub trace_crc32: u32,
    /// `output.checksum` of the last final update (`crc32:xxxxxxxx`).
    pub checksum: Option<String>,
    /// `output.bytesize` of the last final update.
    pub bytesize: Option<u64>,
    pub runner_id: Option<i64>,
    /// `system_id` of the manager that took the job.
    pub manager: Option<String>,
    /// Handed to a two-phase-commit runner that has not yet acknowledged it.
    pub awaiting_ack: bool,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// Last PUT or PATCH from the runner.
    pub updated_at: Option<SystemTime>,
    pub artifacts: Vec<ArtifactSnapshot>,
    /// PUT requests with a final state that changed the job or were answered 202/412.
    pub final_updates: u32,
}

impl JobSnapshot {
    /// The stored trace as text (invalid UTF-8 replaced).
    pub fn trace_text(&self) -> String {
        String::from_utf8_lossy(&self.trace).into_owned()
    }

    /// Whether the runner's reported `crc32:` checksum and byte size match the stored trace.
    pub fn checksum_matches(&self) -> bool {
        let want = glrunner_protocol::checksum_string(self.trace_crc32);
        self.checksum.as_deref() == Some(want.as_str()) && self.bytesize == Some(self.trace_len)
    }
}
