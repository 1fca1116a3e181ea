//! A GitLab test coordinator: a faithful fake of the server side of GitLab's runner API, on loopback,
//! for end-to-end tests (in-process) and manual runs or benchmarks (the `glrunner-coordinator` binary).
//!
//! It reproduces what a runner depends on (`/jobs/request` 201/204/409 with the queue cursor and
//! Workhorse long polling, two-phase commit, feature gating, job-token rules with `Job-Status`, the trace
//! PATCH offset rules with 416 resync, final updates, registration, verify, managers, token reset,
//! artifacts) and lets a test bend it: [`Fault`]s answer with any status, delay, or drop the connection
//! without a byte; jobs can be canceled hard or gracefully.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use glrunner_coordinator::{Coordinator, JobSpec, Options, RunnerSpec};
//! use std::time::Duration;
//! let gitlab = Coordinator::start(Options::default().trace_update_interval(1)).await?;
//! let runner = gitlab.add_runner(RunnerSpec::created());
//! let job = gitlab.enqueue(JobSpec::script(["echo hello"]))?;
//! // … point a runner at gitlab.url() with runner.token …
//! let done = gitlab.wait_until_finished(job, Duration::from_secs(30)).await?;
//! assert!(done.trace_text().contains("hello"));
//! # Ok(()) }
//! ```

mod admin;
mod api;
pub mod error;
pub mod fault;
pub mod job;
pub mod options;
mod payload;
pub mod request_log;
pub mod runner;
mod server;
mod shared;
mod state;
mod tokens;

pub use error::{EnqueueError, StartError, WaitError};
pub use fault::{Action, Endpoint, Fault};
pub use job::{
    ArtifactSnapshot, ArtifactSpec, CacheSpec, HookSpec, ImageSpec, JobSnapshot, JobSpec,
    JobStatus, PortSpec, RefKind, ServiceSpec, StepSpec, Variable,
};
pub use options::Options;
pub use payload::FAILURE_REASONS;
pub use request_log::{Counts, EndpointCounts, RequestRecord};
pub use runner::{ManagerSnapshot, RunnerKind, RunnerSnapshot, RunnerSpec};
pub use server::{AddedRunner, Coordinator};
