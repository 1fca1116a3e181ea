//! The request log: one record per request (never a token value, only its kind) and counts per endpoint.

use crate::fault::Endpoint;
use glrunner_protocol::TokenKind;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

/// One request as the coordinator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Order of completion, from 1.
    pub seq: u64,
    pub method: String,
    /// Path only: query strings may carry tokens.
    pub path: String,
    pub endpoint: Endpoint,
    pub job_id: Option<i64>,
    /// `None` when the connection was dropped without an answer.
    pub status: Option<u16>,
    /// The kind of token the request authenticated with (`TokenKind` name), never its value.
    pub token_kind: Option<&'static str>,
    pub content_range: Option<String>,
    /// Request body bytes (for git requests: those read when the answer began, before decoding).
    pub body_size: u64,
    pub at: SystemTime,
    pub duration: Duration,
    /// The injected fault that answered or shaped this request.
    pub fault: Option<String>,
    /// Held by long polling before it was answered.
    pub long_polled: bool,
    /// The `Git-Protocol` header (`version=2` for protocol v2).
    pub git_protocol: Option<String>,
    /// The request's `Content-Encoding` (git gzips larger negotiation requests).
    pub content_encoding: Option<String>,
    /// Sent with `Transfer-Encoding: chunked` (git does so for requests beyond `http.postBuffer`).
    pub chunked: bool,
}

/// The stable name of a token kind in the log.
pub fn token_kind_name(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::RunnerAuthentication => "runner_authentication",
        TokenKind::RegisteredRunnerAuthentication => "registered_runner_authentication",
        TokenKind::LegacyRunnerAuthentication => "legacy_runner_authentication",
        TokenKind::Registration => "registration",
        TokenKind::PersonalAccess => "personal_access",
        TokenKind::Job => "job",
        TokenKind::OtherGitLab(_) => "other_gitlab",
        TokenKind::Unknown => "unknown",
    }
}

/// Requests per endpoint and status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointCounts {
    pub total: u64,
    /// Answers by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Connections dropped by a fault.
    pub dropped: u64,
}

/// Counts of every endpoint seen so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub endpoints: BTreeMap<Endpoint, EndpointCounts>,
}

impl Counts {
    /// Requests to `endpoint`, whatever their answer.
    pub fn total(&self, endpoint: Endpoint) -> u64 {
        self.endpoints.get(&endpoint).map_or(0, |c| c.total)
    }

    /// Requests to `endpoint` answered with `status`.
    pub fn status(&self, endpoint: Endpoint, status: u16) -> u64 {
        self.endpoints
            .get(&endpoint)
            .and_then(|c| c.by_status.get(&status))
            .copied()
            .unwrap_or(0)
    }
}

/// The bounded log plus the unbounded counts.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    records: VecDeque<RequestRecord>,
    counts: Counts,
    next_seq: u64,
}

impl RequestLog {
    pub(crate) fn push(&mut self, mut record: RequestRecord, limit: usize) {
        self.next_seq += 1;
        record.seq = self.next_seq;
        let c = self.counts.endpoints.entry(record.endpoint).or_default();
        c.total += 1;
        match record.status {
            Some(s) => *c.by_status.entry(s).or_default() += 1,
            None => c.dropped += 1,
        }
        self.records.push_back(record);
        while self.records.len() > limit.max(1) {
            self.records.pop_front();
        }
    }

    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        self.records.iter().cloned().collect()
    }

    pub(crate) fn records_ref(&self) -> &VecDeque<RequestRecord> {
        &self.records
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts.clone()
    }
}
