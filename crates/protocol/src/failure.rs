//! Why a job failed, in GitLab's vocabulary, and how a reason is mapped onto the list a given GitLab
//! accepts (`features.failure_reasons` in the payload).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    ScriptFailure,
    RunnerSystemFailure,
    JobExecutionTimeout,
    ImagePullFailure,
    UnknownFailure,
    RunnerConfigurationError,
    RunnerExternalDependencyFailure,
    RunnerInterrupted,
    JobCanceled,
    RunnerUnsupported,
    MissingDependencyFailure,
    ApiFailure,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScriptFailure => "script_failure",
            Self::RunnerSystemFailure => "runner_system_failure",
            Self::JobExecutionTimeout => "job_execution_timeout",
            Self::ImagePullFailure => "image_pull_failure",
            Self::UnknownFailure => "unknown_failure",
            Self::RunnerConfigurationError => "runner_configuration_error",
            Self::RunnerExternalDependencyFailure => "runner_external_dependency_failure",
            Self::RunnerInterrupted => "runner_interrupted",
            Self::JobCanceled => "job_canceled",
            Self::RunnerUnsupported => "runner_unsupported",
            Self::MissingDependencyFailure => "missing_dependency_failure",
            Self::ApiFailure => "api_failure",
        }
    }

    /// The reason to send to a GitLab that accepts `supported` (the payload's
    /// `features.failure_reasons`): the reason itself if accepted, else gitlab-runner's compatibility
    /// mapping, else `unknown_failure`. `script_failure`, `runner_system_failure` and
    /// `job_execution_timeout` are always accepted.
    pub fn for_gitlab(self, supported: &[String]) -> &'static str {
        const ALWAYS: [FailureReason; 3] = [
            FailureReason::ScriptFailure,
            FailureReason::RunnerSystemFailure,
            FailureReason::JobExecutionTimeout,
        ];
        let accepted =
            |r: FailureReason| ALWAYS.contains(&r) || supported.iter().any(|s| s == r.as_str());
        if accepted(self) {
            return self.as_str();
        }
        let fallback = match self {
            Self::ImagePullFailure | Self::RunnerExternalDependencyFailure => {
                Self::RunnerSystemFailure
            }
            Self::RunnerConfigurationError => Self::ScriptFailure,
            _ => Self::UnknownFailure,
        };
        fallback.as_str()
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_onto_what_gitlab_accepts() {
        let newest: Vec<String> = [
            "image_pull_failure",
            "runner_configuration_error",
            "job_canceled",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            FailureReason::ImagePullFailure.for_gitlab(&newest),
            "image_pull_failure"
        );
        assert_eq!(
            FailureReason::ImagePullFailure.for_gitlab(&[]),
            "runner_system_failure"
        );
        assert_eq!(
            FailureReason::RunnerConfigurationError.for_gitlab(&[]),
            "script_failure"
        );
        assert_eq!(
            FailureReason::JobCanceled.for_gitlab(&[]),
            "unknown_failure"
        );
        assert_eq!(
            FailureReason::JobCanceled.for_gitlab(&newest),
            "job_canceled"
        );
        assert_eq!(
            FailureReason::JobExecutionTimeout.for_gitlab(&[]),
            "job_execution_timeout"
        );
    }
}
