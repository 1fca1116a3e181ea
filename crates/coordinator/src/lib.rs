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
//!
//! It also serves real git over smart HTTP (`git http-backend`) for projects added with
//! [`Coordinator::add_project`], authenticated as GitLab does for CI: user `gitlab-ci-token`, password
//! the token of a running job of that project. A job built with [`JobSpec::repository`] gets a
//! `git_info` (and `CI_REPOSITORY_URL`) pointing at it, the real sha of its ref, and a
//! `refs/pipelines/<id>` ref created at enqueue, so GitLab's refspecs work unchanged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use glrunner_coordinator::{Coordinator, JobSpec, Options, ProjectSpec};
//! let gitlab = Coordinator::start(Options::default()).await?;
//! let project = gitlab.add_project(ProjectSpec::new("acme/demo").dir("fixtures/demo"))?;
//! let sha = project.commit("main").file("README.md", "# demo\n").message("Docs").create()?;
//! let job = gitlab.enqueue(JobSpec::script(["cat README.md"]).repository(&project))?;
//! // The runner clones gitlab.job_payload(job)'s repo_url at `sha` with the job token.
//! # let _ = (sha, job); Ok(()) }
//! ```

mod admin;
mod api;
pub mod error;
pub mod fault;
pub mod git;
pub mod job;
pub mod options;
mod payload;
pub mod request_log;
pub mod runner;
mod server;
mod shared;
mod state;
mod tokens;

pub use error::{EnqueueError, ProjectError, StartError, WaitError};
pub use fault::{Action, Endpoint, Fault};
pub use git::{CommitBuilder, Project, ProjectSpec};
pub use job::{
    ArtifactSnapshot, ArtifactSpec, CacheSpec, HookSpec, ImageSpec, JobSnapshot, JobSpec,
    JobStatus, PortSpec, RefKind, ServiceSpec, StepSpec, Variable,
};
pub use options::Options;
pub use payload::FAILURE_REASONS;
pub use request_log::{Counts, EndpointCounts, RequestRecord};
pub use runner::{ManagerSnapshot, RunnerKind, RunnerSnapshot, RunnerSpec};
pub use server::{AddedRunner, Coordinator};
