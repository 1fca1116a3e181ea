//! Fault injection: which endpoint misbehaves, how, and how many times. Faults are kept in the order they
//! were injected; a request consumes the first one that matches it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The runner API endpoints, as the request log and faults name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /runners`
    RegisterRunner,
    /// `POST /runners/verify`
    VerifyRunner,
    /// `DELETE /runners`
    DeleteRunner,
    /// `DELETE /runners/managers`
    DeleteManager,
    /// `POST /runners/reset_authentication_token`
    ResetToken,
    /// `POST /jobs/request`
    RequestJob,
    /// `PUT /jobs/:id`
    UpdateJob,
    /// `PATCH /jobs/:id/trace`
    PatchTrace,
    /// `POST /jobs/:id/artifacts`
    UploadArtifacts,
    /// `GET /jobs/:id/artifacts`
    DownloadArtifacts,
    /// `GET /<project>.git/info/refs?service=…` (git over smart HTTP)
    GitInfoRefs,
    /// `POST /<project>.git/git-upload-pack` (fetch and clone)
    GitUploadPack,
    /// `POST /<project>.git/git-receive-pack` (push; refused for job tokens, as on GitLab)
    GitReceivePack,
    /// `/-/admin/…`
    Admin,
    /// Anything else.
    Other,
}

impl Endpoint {
    /// The endpoint and the job id in the path (for job endpoints).
    pub fn classify(method: &http::Method, path: &str) -> (Self, Option<i64>) {
        use http::Method;
        if path.starts_with("/-/admin/") {
            return (Self::Admin, None);
        }
        if let Some((_, tail)) = crate::git::gateway::split_path(path) {
            let endpoint = match tail {
                "info/refs" => Self::GitInfoRefs,
                "git-upload-pack" => Self::GitUploadPack,
                _ => Self::GitReceivePack,
            };
            return (endpoint, None);
        }
        let Some(rest) = path.strip_prefix("/api/v4/") else {
            return (Self::Other, None);
        };
        let rest = rest.trim_end_matches('/');
        let endpoint = match (method, rest) {
            (&Method::POST, "runners") => Self::RegisterRunner,
            (&Method::POST, "runners/verify") => Self::VerifyRunner,
            (&Method::DELETE, "runners") => Self::DeleteRunner,
            (&Method::DELETE, "runners/managers") => Self::DeleteManager,
            (&Method::POST, "runners/reset_authentication_token") => Self::ResetToken,
            (&Method::POST, "jobs/request") => Self::RequestJob,
            _ => {
                let Some(job) = rest.strip_prefix("jobs/") else {
                    return (Self::Other, None);
                };
                let (id, tail) = job.split_once('/').unwrap_or((job, ""));
                let Ok(id) = id.parse::<i64>() else {
                    return (Self::Other, None);
                };
                let endpoint = match (method, tail) {
                    (&Method::PUT, "") => Self::UpdateJob,
                    (&Method::PATCH, "trace") => Self::PatchTrace,
                    (&Method::POST, "artifacts") => Self::UploadArtifacts,
                    (&Method::GET, "artifacts") => Self::DownloadArtifacts,
                    _ => Self::Other,
                };
                return (endpoint, Some(id));
            }
        };
        (endpoint, None)
    }

    /// A git request: its body streams to `git http-backend` instead of being buffered.
    pub fn is_git(self) -> bool {
        matches!(
            self,
            Self::GitInfoRefs | Self::GitUploadPack | Self::GitReceivePack
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RegisterRunner => "register_runner",
            Self::VerifyRunner => "verify_runner",
            Self::DeleteRunner => "delete_runner",
            Self::DeleteManager => "delete_manager",
            Self::ResetToken => "reset_token",
            Self::RequestJob => "request_job",
            Self::UpdateJob => "update_job",
            Self::PatchTrace => "patch_trace",
            Self::UploadArtifacts => "upload_artifacts",
            Self::DownloadArtifacts => "download_artifacts",
            Self::GitInfoRefs => "git_info_refs",
            Self::GitUploadPack => "git_upload_pack",
            Self::GitReceivePack => "git_receive_pack",
            Self::Admin => "admin",
            Self::Other => "other",
        }
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Read the request, then answer with this status, headers and body instead of handling it.
    Respond {
        status: u16,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: String,
    },
    /// Read the request, then close the connection without sending a single response byte.
    DropConnection,
    /// Wait this long, then handle the request normally.
    Delay { millis: u64 },
    /// Trace PATCH only: store nothing and answer 416 with `Range: 0-<reported>` (default: the stored
    /// length, as after a lost response).
    TraceRangeMismatch {
        #[serde(default)]
        reported: Option<u64>,
    },
    /// Final PUT (`success`/`failed`) only: apply nothing, answer 202 with
    /// `X-GitLab-Trace-Update-Interval: <interval>` so the runner retries.
    FinalUpdateAccepted { interval: u64 },
    /// Final PUT only: apply nothing, answer 412 (trace validation failed). The next PATCH starting at 0
    /// resets the stored trace, as GitLab's `trace_reset` does.
    FinalUpdateTraceInvalid,
}

/// Where in the handling of a request an action is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Before the endpoint runs (any endpoint).
    Gate,
    /// Inside the trace handler, after authentication.
    Trace,
    /// Inside the job update handler, for a final state, after authentication.
    FinalUpdate,
}

impl Action {
    pub(crate) fn stage(&self) -> Stage {
        match self {
            Self::Respond { .. } | Self::DropConnection | Self::Delay { .. } => Stage::Gate,
            Self::TraceRangeMismatch { .. } => Stage::Trace,
            Self::FinalUpdateAccepted { .. } | Self::FinalUpdateTraceInvalid => Stage::FinalUpdate,
        }
    }

    /// A short description for the request log.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Respond { status, .. } => format!("respond {status}"),
            Self::DropConnection => "drop connection".to_owned(),
            Self::Delay { millis } => format!("delay {millis}ms"),
            Self::TraceRangeMismatch { .. } => "trace range mismatch (416)".to_owned(),
            Self::FinalUpdateAccepted { interval } => {
                format!("final update accepted (202, {interval}s)")
            }
            Self::FinalUpdateTraceInvalid => "final update trace invalid (412)".to_owned(),
        }
    }
}

fn one() -> u32 {
    1
}

/// A fault: a matcher (endpoint, optional job id), an action and how many requests it applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub endpoint: Endpoint,
    #[serde(default)]
    pub job_id: Option<i64>,
    #[serde(default = "one")]
    pub times: u32,
    pub action: Action,
}

impl Fault {
    pub fn new(endpoint: Endpoint, action: Action) -> Self {
        Self {
            endpoint,
            job_id: None,
            times: 1,
            action,
        }
    }

    /// Answer `status` with an empty body.
    pub fn respond(endpoint: Endpoint, status: u16) -> Self {
        Self::new(
            endpoint,
            Action::Respond {
                status,
                headers: Vec::new(),
                body: String::new(),
            },
        )
    }

    /// `409 {"message":"409 Conflict"}` on `/jobs/request`, as GitLab answers a concurrent assignment.
    pub fn conflict() -> Self {
        Self::respond(Endpoint::RequestJob, 409).body(r#"{"message":"409 Conflict"}"#)
    }

    /// `429` with `Retry-After: <seconds>`, as GitLab's rate limits and migration backoff answer.
    pub fn rate_limited(endpoint: Endpoint, retry_after_secs: u64) -> Self {
        Self::respond(endpoint, 429)
            .header("Retry-After", retry_after_secs.to_string())
            .body(r#"{"message":"Retry later"}"#)
    }

    /// `503 Service Unavailable`.
    pub fn unavailable(endpoint: Endpoint) -> Self {
        Self::respond(endpoint, 503).body(r#"{"message":"503 Service Unavailable"}"#)
    }

    /// Close the connection after reading the request, with no response bytes.
    pub fn drop_connection(endpoint: Endpoint) -> Self {
        Self::new(endpoint, Action::DropConnection)
    }

    /// Handle the request only after `delay`.
    pub fn delay(endpoint: Endpoint, delay: Duration) -> Self {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        Self::new(endpoint, Action::Delay { millis })
    }

    /// A 416 on the trace PATCH that stores nothing (see [`Action::TraceRangeMismatch`]).
    pub fn trace_range_mismatch() -> Self {
        Self::new(
            Endpoint::PatchTrace,
            Action::TraceRangeMismatch { reported: None },
        )
    }

    /// 202 on the final PUT (see [`Action::FinalUpdateAccepted`]).
    pub fn final_update_accepted(interval: u64) -> Self {
        Self::new(
            Endpoint::UpdateJob,
            Action::FinalUpdateAccepted { interval },
        )
    }

    /// 412 on the final PUT (see [`Action::FinalUpdateTraceInvalid`]).
    pub fn final_update_trace_invalid() -> Self {
        Self::new(Endpoint::UpdateJob, Action::FinalUpdateTraceInvalid)
    }

    /// Apply to this many requests (default 1).
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    /// Apply only to requests for this job.
    pub fn job(mut self, job_id: i64) -> Self {
        self.job_id = Some(job_id);
        self
    }

    /// Add a response header (for [`Action::Respond`]).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Action::Respond { headers, .. } = &mut self.action {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Set the response body (for [`Action::Respond`]).
    pub fn body(mut self, text: impl Into<String>) -> Self {
        if let Action::Respond { body, .. } = &mut self.action {
            *body = text.into();
        }
        self
    }

    pub(crate) fn matches(&self, endpoint: Endpoint, job_id: Option<i64>, stage: Stage) -> bool {
        self.endpoint == endpoint
            && self.action.stage() == stage
            && (self.job_id.is_none() || self.job_id == job_id)
    }
}

/// Injected faults, in order, each with the number of uses left.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    slots: Vec<Fault>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, fault: Fault) {
        if fault.times > 0 {
            self.slots.push(fault);
        }
    }

    /// Consume one use of the first fault that matches.
    pub(crate) fn take(
        &mut self,
        endpoint: Endpoint,
        job_id: Option<i64>,
        stage: Stage,
    ) -> Option<Action> {
        let i = self
            .slots
            .iter()
            .position(|f| f.matches(endpoint, job_id, stage))?;
        let slot = &mut self.slots[i];
        slot.times -= 1;
        let action = slot.action.clone();
        if slot.times == 0 {
            self.slots.remove(i);
        }
        Some(action)
    }

    pub(crate) fn pending(&self) -> Vec<Fault> {
        self.slots.clone()
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn classifies_paths() {
        assert_eq!(
            Endpoint::classify(&Method::POST, "/api/v4/jobs/request"),
            (Endpoint::RequestJob, None)
        );
        assert_eq!(
            Endpoint::classify(&Method::PATCH, "/api/v4/jobs/12/trace"),
            (Endpoint::PatchTrace, Some(12))
        );
        assert_eq!(
            Endpoint::classify(&Method::PUT, "/api/v4/jobs/7"),
            (Endpoint::UpdateJob, Some(7))
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/api/v4/jobs/7/artifacts"),
            (Endpoint::DownloadArtifacts, Some(7))
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/api/v4/jobs/x"),
            (Endpoint::Other, None)
        );
        assert_eq!(
            Endpoint::classify(&Method::DELETE, "/api/v4/runners/managers"),
            (Endpoint::DeleteManager, None)
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/acme/demo.git/info/refs"),
            (Endpoint::GitInfoRefs, None)
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/a/b/c.git/git-upload-pack"),
            (Endpoint::GitUploadPack, None)
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/acme/demo.git/git-receive-pack"),
            (Endpoint::GitReceivePack, None)
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/acme/demo.git/HEAD"),
            (Endpoint::Other, None)
        );
        assert!(Endpoint::GitUploadPack.is_git() && !Endpoint::Admin.is_git());
        assert_eq!(
            Endpoint::classify(&Method::GET, "/-/admin/jobs"),
            (Endpoint::Admin, None)
        );
    }

    #[test]
    fn faults_are_consumed_in_order_and_counted() {
        let mut q = FaultQueue::default();
        q.push(Fault::conflict().times(2));
        q.push(Fault::rate_limited(Endpoint::RequestJob, 3));
        q.push(Fault::final_update_accepted(1).job(5));
        let status = |a: Option<Action>| match a {
            Some(Action::Respond { status, .. }) => status,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(status(q.take(Endpoint::RequestJob, None, Stage::Gate)), 409);
        assert_eq!(status(q.take(Endpoint::RequestJob, None, Stage::Gate)), 409);
        assert_eq!(status(q.take(Endpoint::RequestJob, None, Stage::Gate)), 429);
        assert_eq!(q.take(Endpoint::RequestJob, None, Stage::Gate), None);
        // The final-update fault is not a gate action and is bound to job 5.
        assert_eq!(q.take(Endpoint::UpdateJob, Some(5), Stage::Gate), None);
        assert_eq!(
            q.take(Endpoint::UpdateJob, Some(6), Stage::FinalUpdate),
            None
        );
        assert_eq!(
            q.take(Endpoint::UpdateJob, Some(5), Stage::FinalUpdate),
            Some(Action::FinalUpdateAccepted { interval: 1 })
        );
        assert!(q.pending().is_empty());
    }
}
