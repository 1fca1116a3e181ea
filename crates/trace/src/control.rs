//! Cancellation signals a running job listens to.

use tokio_util::sync::CancellationToken;

/// GitLab's cancel signals for one job, fired by the uploader from `Job-Status` and 403 answers, and
/// by the manager on shutdown.
#[derive(Debug, Clone, Default)]
pub struct JobControl {
    /// `Job-Status: canceling`: stop the script, still run after_script and on-failure uploads.
    pub cancel: CancellationToken,
    /// `Job-Status: canceled|failed` or 403: stop everything now.
    pub abort: CancellationToken,
}

impl JobControl {
    pub fn new() -> Self {
        Self::default()
    }
}
