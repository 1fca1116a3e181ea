//! glrunner's configuration and state.
//!
//! - [`Config`]: config.toml, compatible with gitlab-runner's (every global, runner and
//!   `[runners.kubernetes]` key typed), loaded with [`Config::load`] into a [`Loaded`] that carries
//!   [`ConfigWarning`]s for ignored keys. Errors ([`ConfigError`]) point at `file:line:column` and say
//!   the fix. Secrets (tokens, `bearer_token`, cache keys) are [`Secret`]s and never show in `Debug`.
//! - [`State`]: what the runner learns (system_id, tokens from registration), kept in a state directory
//!   apart from config.toml, which `run` never writes (design decision 1).
//! - [`ConfigEditor`]: format-preserving edits of config.toml for `register` and `unregister`.
//!
//! [`Secret`]: glrunner_protocol::Secret

mod atomic_file;
pub mod cache;
pub mod duration;
pub mod edit;
pub mod environment;
pub mod error;
pub mod expand;
pub mod global;
pub mod kubernetes;
pub mod load;
pub mod paths;
pub mod runner;
pub mod source;
pub mod state;
pub mod timestamp;
pub mod warning;

pub use cache::{CacheAzure, CacheConfig, CacheGcs, CacheS3};
pub use duration::GoDuration;
pub use edit::{ConfigEditor, EditError, RunnerEntry};
pub use environment::Environment;
pub use error::ConfigError;
pub use global::{Config, LogFormat, LogLevel, SessionServer};
pub use kubernetes::KubernetesConfig;
pub use load::Loaded;
pub use paths::{default_certs_dir, default_config_path};
pub use runner::{ArtifactConfig, CustomBuildDir, ExecutorKind, RunnerConfig};
pub use source::Location;
pub use state::{RunnerState, State, StateError, StateLocation, StateOptions, StateWarning};
pub use timestamp::Timestamp;
pub use warning::{ConfigWarning, WarningKind};
