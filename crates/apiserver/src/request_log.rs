//! Request accounting for tests and benchmarks: a counter per (verb, resource, subresource) and a
//! bounded log of recent requests.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// What a counter counts: a resource request as its RBAC attributes name it, or a non-resource
/// request as (method verb, path, "").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    pub verb: String,
    /// `pods`, `roles` (group not included), or the path of a non-resource request (`/version`).
    pub resource: String,
    pub subresource: String,
}

impl RequestKey {
    pub fn new(verb: &str, resource: &str, subresource: &str) -> Self {
        Self {
            verb: verb.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
        }
    }
}

/// Counts per [`RequestKey`].
pub type Counts = BTreeMap<RequestKey, u64>;

/// One request as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The user it ran as (after impersonation); empty when authentication failed.
    pub user: String,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The response status (for watches: the status of the stream's start).
    pub status: u16,
    pub duration: Duration,
}

#[derive(Debug)]
pub(crate) struct RequestLog {
    limit: usize,
    counts: Counts,
    records: VecDeque<RequestRecord>,
}

impl RequestLog {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            counts: Counts::new(),
            records: VecDeque::new(),
        }
    }

    pub fn record(&mut self, r: RequestRecord) {
        let key = if r.resource.is_empty() {
            RequestKey::new(&r.verb, &r.path, "")
        } else {
            RequestKey::new(&r.verb, &r.resource, &r.subresource)
        };
        *self.counts.entry(key).or_default() += 1;
        self.records.push_back(r);
        while self.records.len() > self.limit {
            self.records.pop_front();
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.clone()
    }

    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.counts.clear();
        self.records.clear();
    }
}
