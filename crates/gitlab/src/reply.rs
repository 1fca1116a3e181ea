//! What an endpoint answered, reduced to what the runner acts on.

use glrunner_protocol::request::{RemoteJobStatus, ResetTokenResponse, RunnerDetails};
use glrunner_protocol::{JobIdentity, JobResponse};
use std::time::Duration;

/// The answer to `POST /jobs/request`.
#[derive(Debug)]
pub struct JobRequestReply {
    pub outcome: JobRequestOutcome,
    /// The `X-GitLab-Last-Update` cursor, when the response carried one.
    pub last_update: Option<String>,
    /// A retriable status (429, 5xx …) was seen on any attempt: feeds adaptive request concurrency.
    pub saw_retriable: bool,
}

#[derive(Debug)]
pub enum JobRequestOutcome {
    /// 201 with a payload that decoded.
    Job(Box<JobResponse>),
    /// 201 whose payload did not decode: the job must be failed through the API, never dropped.
    UndecodableJob {
        identity: JobIdentity,
        error: String,
    },
    /// 204.
    NoJob,
    /// 409: a transient conflict; retry.
    Conflict,
    /// 403: the token is not (or no longer) a valid runner authentication token.
    Forbidden,
    /// 429 after every attempt.
    RateLimited { retry_after: Option<Duration> },
    /// Any other status after every attempt.
    Unexpected { status: u16, body: String },
}

/// The answer to `PATCH /jobs/:id/trace`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchTraceReply {
    pub status: u16,
    /// From `Range: 0-<n>`: the server's trace length.
    pub range_end: Option<u64>,
    pub job_status: Option<RemoteJobStatus>,
    /// `X-GitLab-Trace-Update-Interval`.
    pub update_interval: Option<Duration>,
}

/// The answer to `PUT /jobs/:id`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateJobReply {
    pub status: u16,
    pub job_status: Option<RemoteJobStatus>,
    pub update_interval: Option<Duration>,
}

/// The answer to `POST /runners/verify`.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyReply {
    /// 200; newer GitLab returns the runner's details.
    Valid(Option<RunnerDetails>),
    /// 403: the runner was deleted or the token is invalid.
    Invalid,
}

pub type ResetTokenReply = ResetTokenResponse;
