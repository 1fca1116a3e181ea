//! Errors of the in-process API. Each says what happened, the likely cause and the fix.

use std::net::SocketAddr;
use std::time::Duration;

/// [`crate::Coordinator::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to listen on {0}: the test coordinator binds only to loopback; \
         fix: use 127.0.0.1:<port> or [::1]:<port> (port 0 picks a free one)"
    )]
    NotLoopback(SocketAddr),
    #[error(
        "cannot listen on {addr}: {source}; likely cause: the port is in use or not permitted; \
         fix: choose another port, or port 0 for a free one"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// [`crate::Coordinator::enqueue`] refused a job.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(
        "job spec names dependency job {0}, which this coordinator never created; \
         likely cause: an id from another coordinator or a typo; fix: pass an id returned by enqueue()"
    )]
    UnknownDependency(i64),
    #[error(
        "job spec targets runner {0}, which does not exist; likely cause: the runner was never added \
         or was deleted; fix: pass the id returned by add_runner(), or leave runner_id unset"
    )]
    UnknownRunner(i64),
}

/// A wait on the coordinator ended without its condition.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(
        "job {0} does not exist on this coordinator; likely cause: an id from another coordinator; \
         fix: pass an id returned by enqueue()"
    )]
    UnknownJob(i64),
    #[error(
        "timed out after {waited:?} waiting for {what}; last seen: {last}; likely cause: the runner \
         never sent the expected request (check requests() for what it did send); fix: look at the \
         request log, or raise the timeout if the machine is slow"
    )]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
}
