//! Runners and runner managers as GitLab keeps them: one runner per authentication token, one manager per
//! `system_id` that used it.

use glrunner_protocol::{Secret, VersionInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::SystemTime;

/// How a runner came to exist, which decides the shape of its token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerKind {
    /// Created in the UI or API: `glrt-t1_…` (new workflow; verified with a `system_id`).
    #[default]
    Created,
    /// Registered with a registration token on a current GitLab: `glrtr-…`.
    Registered,
    /// Registered with a registration token on a 2024 GitLab: `t1_…`.
    Legacy,
}

impl RunnerKind {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Created => "glrt-t1_",
            Self::Registered => "glrtr-",
            Self::Legacy => "t1_",
        }
    }
}

/// What [`crate::Coordinator::add_runner`] creates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerSpec {
    pub kind: RunnerKind,
    pub description: String,
    /// A paused runner gets 204 from `/jobs/request` and never a job.
    pub paused: bool,
    pub tags: Vec<String>,
    /// Caps `runner_info.timeout` of the jobs it takes (GitLab's `maximum_timeout`).
    pub maximum_timeout: Option<u64>,
    /// The token expires this many seconds from now (expired = unknown = 403).
    pub expires_in: Option<u64>,
    /// Use this token instead of a generated one. It must be unused; a token already in use is ignored
    /// and a generated one returned instead.
    pub token: Option<Secret>,
}

impl RunnerSpec {
    pub fn new(kind: RunnerKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// A `glrt-` runner as created in GitLab's UI.
    pub fn created() -> Self {
        Self::new(RunnerKind::Created)
    }

    /// A `glrtr-` runner as registered with a registration token.
    pub fn registered() -> Self {
        Self::new(RunnerKind::Registered)
    }

    /// A `t1_` runner as registered on a 2024 GitLab.
    pub fn legacy() -> Self {
        Self::new(RunnerKind::Legacy)
    }

    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn maximum_timeout(mut self, seconds: u64) -> Self {
        self.maximum_timeout = Some(seconds);
        self
    }

    pub fn expires_in(mut self, seconds: u64) -> Self {
        self.expires_in = Some(seconds);
        self
    }

    pub fn token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// A runner as seen by the admin side.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerSnapshot {
    pub id: i64,
    pub kind: RunnerKind,
    pub description: String,
    pub paused: bool,
    pub tags: Vec<String>,
    pub maximum_timeout: Option<u64>,
    /// False once the runner was deleted or its token revoked/reset.
    pub active_token: bool,
    pub created_at: SystemTime,
    /// Last request authenticated with the runner's token (or a job it runs).
    pub contacted_at: Option<SystemTime>,
    /// `never_contacted` until the first `/jobs/request`, then `online` (contacted within 2 h) or
    /// `offline`.
    pub status: &'static str,
    pub managers: Vec<ManagerSnapshot>,
}

/// A runner manager: one host (`system_id`) using a runner's token.
#[derive(Debug, Clone, Serialize)]
pub struct ManagerSnapshot {
    pub system_id: String,
    /// The last `info` the manager sent, read leniently.
    pub info: VersionInfo,
    /// Feature names the manager advertised as true.
    pub features: BTreeSet<String>,
    pub created_at: SystemTime,
    pub contacted_at: Option<SystemTime>,
    pub ip_address: Option<IpAddr>,
}
