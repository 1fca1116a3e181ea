//! How a job ended.

use glrunner_protocol::FailureReason;

/// The result of running one job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Success,
    /// The job failed; `reason` is glrunner's own, mapped onto GitLab's list when reported.
    Failed {
        reason: FailureReason,
        exit_code: Option<i32>,
    },
    /// GitLab canceled the job outright (`Job-Status: canceled`/403): nothing is reported back.
    Aborted,
}
