//! Request bodies the runner sends and the small response bodies it reads, plus the remote job status
//! carried by the `Job-Status` header.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every runner feature key GitLab knows. All keys are always sent; glrunner sets only what works.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeaturesInfo {
    pub variables: bool,
    pub image: bool,
    pub services: bool,
    pub artifacts: bool,
    pub cache: bool,
    pub fallback_cache_keys: bool,
    pub shared: bool,
    pub upload_multiple_artifacts: bool,
    pub upload_raw_artifacts: bool,
    pub session: bool,
    pub terminal: bool,
    pub refspecs: bool,
    pub masking: bool,
    pub proxy: bool,
    pub raw_variables: bool,
    pub artifacts_exclude: bool,
    pub multi_build_steps: bool,
    pub trace_reset: bool,
    pub trace_checksum: bool,
    pub trace_size: bool,
    pub vault_secrets: bool,
    pub cancelable: bool,
    pub return_exit_code: bool,
    pub service_variables: bool,
    pub service_multiple_aliases: bool,
    pub image_executor_opts: bool,
    pub service_executor_opts: bool,
    pub cancel_gracefully: bool,
    pub native_steps_integration: bool,
    pub two_phase_job_commit: bool,
    pub job_inputs: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigInfo {
    pub gpus: String,
}

/// `info`: sent with register, verify, every job request and every job update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
    pub revision: String,
    pub platform: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub executor: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub shell: String,
    pub features: FeaturesInfo,
    pub config: ConfigInfo,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionInfo {
    pub url: String,
    pub certificate: String,
    pub authorization: String,
}

/// Body of `POST /jobs/request`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobRequest {
    pub info: VersionInfo,
    pub token: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
}

/// The state a runner reports for a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Two-phase commit keep-alive.
    Pending,
    #[default]
    Running,
    Success,
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceOutput {
    /// `crc32:` + 8 lowercase hex digits of the exact bytes sent.
    pub checksum: String,
    pub bytesize: u64,
}

/// Body of `PUT /jobs/:id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateJobRequest {
    pub info: VersionInfo,
    pub token: Secret,
    pub state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Deprecated duplicate of `output.checksum`, still sent for older GitLab versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<TraceOutput>,
    /// Omitted when 0, like gitlab-runner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Body of `POST /runners` (legacy registration with a registration token).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterRunnerRequest {
    pub token: Secret,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub maintenance_note: String,
    /// Comma-separated tags.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag_list: String,
    pub run_untagged: bool,
    pub locked: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub access_level: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub maximum_timeout: u64,
    pub paused: bool,
    pub info: VersionInfo,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Answer of `POST /runners`, and (newer GitLab) of `POST /runners/verify`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerDetails {
    pub id: i64,
    pub token: Secret,
    pub token_expires_at: Option<String>,
}

/// Body of `POST /runners/verify`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyRunnerRequest {
    pub token: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    pub info: VersionInfo,
}

/// Body of `DELETE /runners` and `POST /runners/reset_authentication_token`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenRequest {
    pub token: Secret,
}

/// Body of `DELETE /runners/managers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnregisterManagerRequest {
    pub token: Secret,
    pub system_id: String,
}

/// Answer of `POST /runners/reset_authentication_token`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResetTokenResponse {
    pub token: Secret,
    pub token_expires_at: Option<String>,
}

/// A job's state on the GitLab side, from the `Job-Status` response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteJobStatus {
    Pending,
    Running,
    /// Graceful cancel: stop the script, still run after_script and on-failure uploads.
    Canceling,
    Canceled,
    Success,
    Failed,
    Other(String),
}

impl RemoteJobStatus {
    pub fn parse(value: &str) -> Self {
        match value.trim() {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "canceling" => Self::Canceling,
            "canceled" => Self::Canceled,
            "success" => Self::Success,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Canceling => "canceling",
            Self::Canceled => "canceled",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Other(s) => s,
        }
    }

    /// `canceled` or `failed`: the runner must abort the job at once.
    pub fn is_abort(&self) -> bool {
        matches!(self, Self::Canceled | Self::Failed)
    }
}

impl fmt::Display for RemoteJobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `crc32:` + 8 lowercase hex digits, the checksum format of the final update.
pub fn checksum_string(crc: u32) -> String {
    format!("crc32:{crc:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_request_omits_zero_exit_code_and_absent_fields() {
        let req = UpdateJobRequest {
            token: "t".into(),
            state: JobState::Success,
            ..Default::default()
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["state"], "success");
        assert!(
            v.get("exit_code").is_none() && v.get("failure_reason").is_none(),
            "{v}"
        );
    }

    #[test]
    fn features_serialise_every_key() {
        let v = serde_json::to_value(FeaturesInfo::default()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 31);
    }

    #[test]
    fn remote_status_parses() {
        assert!(RemoteJobStatus::parse("canceled").is_abort());
        assert!(!RemoteJobStatus::parse("canceling").is_abort());
        assert_eq!(RemoteJobStatus::parse("weird").as_str(), "weird");
        assert_eq!(checksum_string(0x1a2b), "crc32:00001a2b");
    }
}
