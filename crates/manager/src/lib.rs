//! The runner manager: asks GitLab for jobs within `concurrent`, `limit` and `request_concurrency`,
//! runs each one with its entry's executor, keeps the trace flowing, reports how it ended, explains a
//! rejected token instead of going silent, and serves metrics and health.

pub mod concurrency;
pub mod health;
mod job;
pub mod manager;
pub mod metrics;
mod poller;
pub mod settings;

pub use health::RunnerIdentity;
pub use manager::{ManagerError, Shutdown, run};
pub use settings::{ExecutorFactory, ManagerSettings, RunnerEntry, core_features};
