//! What the manager runs with: built by the binary from config.toml, state and the command line.

use crate::health::RunnerIdentity;
use glrunner_gitlab::GitLabClient;
use glrunner_job::{Executor, RunnerContext};
use glrunner_protocol::request::{FeaturesInfo, VersionInfo};
use glrunner_protocol::{JobResponse, Secret};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Global settings of one manager process.
pub struct ManagerSettings {
    /// `concurrent`: jobs running plus job requests in flight, across all runner entries.
    pub concurrent: usize,
    /// `check_interval`: pause between job requests of one runner entry when GitLab had nothing.
    pub check_interval: Duration,
    /// `shutdown_timeout`: how long aborted jobs get to report back on a forceful shutdown.
    pub shutdown_timeout: Duration,
    pub system_id: String,
    /// `listen_address`: metrics and health endpoints.
    pub listen_address: Option<SocketAddr>,
    pub runners: Vec<RunnerEntry>,
}

/// One `[[runners]]` entry, ready to poll.
pub struct RunnerEntry {
    pub identity: RunnerIdentity,
    pub token: Secret,
    pub client: GitLabClient,
    /// `info` sent with every request, its `features` already set to what this entry supports.
    pub info: VersionInfo,
    /// `limit`: 0 = no per-entry limit.
    pub limit: usize,
    /// `request_concurrency` (a maximum when adaptive).
    pub request_concurrency: usize,
    pub adaptive_request_concurrency: bool,
    /// The longest pause between job requests after repeated 403s (`unhealthy_interval`).
    pub unhealthy_interval: Duration,
    /// `output_limit` in bytes.
    pub output_limit_bytes: u64,
    /// `job_status_final_update_retry_limit`.
    pub final_update_retry_limit: u32,
    pub debug_trace_disabled: bool,
    pub context: RunnerContext,
    pub executor: Arc<dyn ExecutorFactory>,
}

/// Creates one executor per job.
pub trait ExecutorFactory: Send + Sync {
    /// The `executor` name, e.g. `shell`.
    fn name(&self) -> &str;
    /// The features this executor adds to what the runner core supports.
    fn features(&self, features: &mut FeaturesInfo);
    /// An executor for `job`, or why none can be made (reported as the job's failure).
    fn create(&self, job: &JobResponse, ctx: &RunnerContext) -> Result<Box<dyn Executor>, String>;
}

/// The features every runner entry supports whatever its executor: the trace protocol and two-phase
/// commit (manager) plus what the shared job machinery supports.
pub fn core_features() -> FeaturesInfo {
    let mut features = FeaturesInfo {
        trace_reset: true,
        trace_checksum: true,
        trace_size: true,
        two_phase_job_commit: true,
        ..FeaturesInfo::default()
    };
    glrunner_job::executor::job_features(&mut features);
    features
}
