//! `[[runners]]`: one runner entry — credentials, settings and executor tables.

use crate::cache::CacheConfig;
use crate::duration::GoDuration;
use crate::environment::Environment;
use crate::kubernetes::KubernetesConfig;
use crate::timestamp::{self, Timestamp};
use glrunner_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One `[[runners]]` entry. Keys keep gitlab-runner's names (including the hyphenated `tls-*-file`);
/// `tls_server_name` and `token_file` are glrunner's additions. Optional keys with a default are
/// `Option`s here and have an accessor returning the effective value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// GitLab's URL; `$VAR`/`${VAR}` are expanded at load.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    pub id: Option<i64>,
    /// The runner authentication token; `$VAR`/`${VAR}` are expanded at load. When `token_file` is
    /// set, this holds the file's (trimmed) contents after loading.
    pub token: Option<Secret>,
    /// A file holding the token (e.g. a mounted Kubernetes Secret); relative to config.toml's directory.
    pub token_file: Option<PathBuf>,
    #[serde(
        serialize_with = "timestamp::as_toml_datetime",
        deserialize_with = "timestamp::deserialize_optional"
    )]
    pub token_obtained_at: Option<Timestamp>,
    #[serde(
        serialize_with = "timestamp::as_toml_datetime",
        deserialize_with = "timestamp::deserialize_optional"
    )]
    pub token_expires_at: Option<Timestamp>,
    #[serde(rename = "tls-ca-file")]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(rename = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(rename = "tls-key-file")]
    pub tls_key_file: Option<PathBuf>,
    /// Verify GitLab's certificate against this name instead of the URL's host.
    pub tls_server_name: Option<String>,

    /// `shell` or `kubernetes` (validated at load).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub executor: String,
    /// `bash` (default) or `sh`.
    pub shell: Option<String>,
    /// Jobs at once for this entry; 0 or unset means only `concurrent` limits.
    pub limit: Option<i64>,
    /// Trace size limit in KiB (default 4096).
    pub output_limit: Option<i64>,
    /// Parallel `jobs/request` long polls (default 1).
    pub request_concurrency: Option<i64>,
    pub strict_check_interval: Option<bool>,
    /// 403s in a row before the runner counts as unhealthy (default 3).
    pub unhealthy_requests_limit: Option<i64>,
    /// How long an unhealthy runner stops requesting jobs (default 60m).
    pub unhealthy_interval: Option<GoDuration>,
    /// Retries of the final job update (default 10).
    pub job_status_final_update_retry_limit: Option<i64>,

    pub builds_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub clone_url: Option<String>,
    /// `KEY=VALUE` entries added to every job.
    #[serde(skip_serializing_if = "Environment::is_empty")]
    pub environment: Environment,
    pub pre_get_sources_script: Option<String>,
    pub post_get_sources_script: Option<String>,
    pub pre_build_script: Option<String>,
    pub post_build_script: Option<String>,
    pub prepare_timeout: Option<GoDuration>,
    pub get_sources_timeout: Option<GoDuration>,
    pub debug_trace_disabled: Option<bool>,
    pub safe_directory_checkout: Option<bool>,
    pub clean_git_config: Option<bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    pub custom_build_dir: Option<CustomBuildDir>,
    pub cache: Option<CacheConfig>,
    pub artifact: Option<ArtifactConfig>,
    /// Feature flags; they win over job variables of the same name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_flags: BTreeMap<String, bool>,
    pub kubernetes: Option<KubernetesConfig>,
}

/// The executors glrunner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    Shell,
    Kubernetes,
}

impl ExecutorKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "shell" => Some(Self::Shell),
            "kubernetes" => Some(Self::Kubernetes),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shell => "shell",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// Executors gitlab-runner has that glrunner does not run yet.
pub(crate) const OTHER_GITLAB_EXECUTORS: &[&str] = &[
    "docker",
    "docker-windows",
    "docker+machine",
    "docker-autoscaler",
    "docker-ssh",
    "docker-ssh+machine",
    "instance",
    "custom",
    "ssh",
    "parallels",
    "virtualbox",
];

impl RunnerConfig {
    /// The token to authenticate with (from `token` or `token_file`), if any.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref().filter(|t| !t.is_empty())
    }

    /// Whether the token comes from `token_file` (after loading, `token` holds the file's contents).
    pub fn token_from_file(&self) -> bool {
        self.token_file.is_some()
    }

    /// The executor; always `Some` for a loaded config (validation refuses others).
    pub fn executor_kind(&self) -> Option<ExecutorKind> {
        ExecutorKind::parse(&self.executor)
    }

    /// `shell`, defaulting to `bash`.
    pub fn shell(&self) -> &str {
        self.shell
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("bash")
    }

    /// `limit`: `None` when unlimited (unset or 0).
    pub fn limit(&self) -> Option<usize> {
        self.limit
            .filter(|n| *n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// `output_limit` in bytes (default 4096 KiB).
    pub fn output_limit_bytes(&self) -> u64 {
        self.output_limit
            .filter(|n| *n > 0)
            .unwrap_or(4096)
            .unsigned_abs()
            * 1024
    }

    /// The configured `request_concurrency`, or 1 (gitlab-runner's default) when unset or not positive.
    /// The manager decides any policy above this.
    pub fn effective_request_concurrency(&self) -> usize {
        self.request_concurrency
            .filter(|n| *n > 0)
            .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// `unhealthy_requests_limit` (default 3).
    pub fn unhealthy_requests_limit(&self) -> u32 {
        self.unhealthy_requests_limit
            .filter(|n| *n > 0)
            .map_or(3, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// `unhealthy_interval` (default 60 min).
    pub fn unhealthy_interval(&self) -> Duration {
        self.unhealthy_interval
            .map_or(Duration::from_secs(3600), |d| d.0)
    }

    /// `job_status_final_update_retry_limit` (default 10).
    pub fn job_status_final_update_retry_limit(&self) -> u32 {
        self.job_status_final_update_retry_limit
            .filter(|n| *n > 0)
            .map_or(10, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Whether `FF_NAME` is set in `[runners.feature_flags]` (`None` when not mentioned).
    pub fn feature_flag(&self, name: &str) -> Option<bool> {
        self.feature_flags.get(name).copied()
    }

    /// The labels GitLab sees for this runner: global labels overridden by the entry's own.
    pub fn computed_labels(&self, global: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = global.clone();
        out.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// The key the state file uses for this runner: its name and URL.
    pub fn state_key(&self) -> (&str, &str) {
        (&self.name, &self.url)
    }
}

/// `[runners.custom_build_dir]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomBuildDir {
    /// Allow `GIT_CLONE_PATH` in jobs.
    pub enabled: Option<bool>,
}

/// `[runners.artifact]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArtifactConfig {
    /// Default 1h.
    pub upload_timeout: Option<GoDuration>,
    /// Default 10m.
    pub response_header_timeout: Option<GoDuration>,
}
