//! How a coordinator behaves: listen address, long polling, trace limits and the timing windows GitLab
//! applies to jobs.

use crate::runner::RunnerKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Settings for [`crate::Coordinator::start`]. Defaults follow GitLab's; tests usually shorten the
/// long-poll duration and the trace update interval.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen. Must be a loopback address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Workhorse long polling of `/jobs/request`: `None` answers at once (Workhorse with polling off).
    pub long_poll: Option<Duration>,
    /// `X-GitLab-Trace-Update-Interval` sent on every accepted trace PATCH, in seconds (GitLab: 60).
    pub trace_update_interval: u64,
    /// Largest stored trace in bytes; a PATCH beyond it fails the job `trace_size_exceeded` (GitLab:
    /// `ci_jobs_trace_size_limit`, 100 MB).
    pub trace_size_limit: u64,
    /// How long a job handed to a two-phase-commit runner waits for `PUT state=running` before it goes
    /// back to the queue (GitLab: 2 minutes).
    pub ack_window: Duration,
    /// A running job with no PUT/PATCH for this long is failed `no_updates_running` (GitLab: 1 hour).
    pub stale_running_after: Duration,
    /// Whether `POST /runners` accepts registration tokens (GitLab 17.0+ defaults to off; the fake
    /// defaults to on so registration can be tested).
    pub registration_enabled: bool,
    /// Which kind of token a registration hands out: `glrtr-` (newest GitLab) or `t1_` (2024).
    pub registered_kind: RunnerKind,
    /// Largest accepted artifact upload (GitLab: `max_artifact_size`, 100 MB).
    pub max_artifact_size: u64,
    /// Container registry announced in job payloads (`CI_REGISTRY*`, `credentials`); `None` = disabled.
    pub registry: Option<String>,
    /// Most connections served at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// Time allowed to send a request's headers before the connection is closed.
    pub header_read_timeout: Duration,
    /// Most request records kept (counts keep counting past it).
    pub request_log_limit: usize,
    /// Longest one git request may take from its start to the last byte of its answer; past it the
    /// `git http-backend` process is killed.
    pub git_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            long_poll: None,
            trace_update_interval: 60,
            trace_size_limit: 100 * 1024 * 1024,
            ack_window: Duration::from_secs(120),
            stale_running_after: Duration::from_secs(3600),
            registration_enabled: true,
            registered_kind: RunnerKind::Registered,
            max_artifact_size: 100 * 1024 * 1024,
            registry: Some("registry.glrunner.test:5050".to_owned()),
            max_connections: 256,
            header_read_timeout: Duration::from_secs(30),
            request_log_limit: 100_000,
            git_timeout: Duration::from_secs(600),
        }
    }
}

impl Options {
    /// Hold `/jobs/request` up to `duration` while the runner's queue is unchanged.
    pub fn long_poll(mut self, duration: Duration) -> Self {
        self.long_poll = Some(duration);
        self
    }

    /// The trace update interval, in seconds, announced to the runner.
    pub fn trace_update_interval(mut self, seconds: u64) -> Self {
        self.trace_update_interval = seconds;
        self
    }

    pub fn trace_size_limit(mut self, bytes: u64) -> Self {
        self.trace_size_limit = bytes;
        self
    }

    pub fn ack_window(mut self, window: Duration) -> Self {
        self.ack_window = window;
        self
    }

    pub fn stale_running_after(mut self, after: Duration) -> Self {
        self.stale_running_after = after;
        self
    }

    pub fn registration_enabled(mut self, enabled: bool) -> Self {
        self.registration_enabled = enabled;
        self
    }

    pub fn registered_kind(mut self, kind: RunnerKind) -> Self {
        self.registered_kind = kind;
        self
    }

    pub fn max_artifact_size(mut self, bytes: u64) -> Self {
        self.max_artifact_size = bytes;
        self
    }

    pub fn git_timeout(mut self, timeout: Duration) -> Self {
        self.git_timeout = timeout;
        self
    }

    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
}
