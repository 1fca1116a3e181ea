//! The uploader: PATCH the spool to GitLab on the server's interval, resync on 416, keep the job alive,
//! turn `Job-Status` into cancel/abort, and send the final update.

use crate::control::JobControl;
use crate::spool::Trace;
use glrunner_gitlab::GitLabClient;
use glrunner_protocol::Secret;
use glrunner_protocol::request::VersionInfo;

/// The job's final state.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalUpdate {
    pub success: bool,
    /// Already mapped onto what this GitLab accepts.
    pub failure_reason: Option<String>,
    pub exit_code: Option<i32>,
}

/// A running uploader for one job.
pub struct Uploader {
    _private: (),
}

impl Uploader {
    /// Start sending `trace` for job `job_id`. Cancel signals from GitLab fire on `control`.
    pub fn start(
        client: GitLabClient,
        job_id: i64,
        job_token: Secret,
        info: VersionInfo,
        trace: Trace,
        control: JobControl,
        debug_trace: bool,
    ) -> Self {
        let _ = (client, job_id, job_token, info, trace, control, debug_trace);
        todo!()
    }

    /// Send the rest of the trace and the final state; returns once GitLab accepted it or gave up.
    pub async fn finish(self, update: FinalUpdate) -> Result<(), UploadError> {
        let _ = update;
        todo!()
    }
}

/// Why the final update could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    #[error("placeholder")]
    Placeholder,
}
