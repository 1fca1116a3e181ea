//! Executor-agnostic job execution (design decision 5): one place for the variables a job sees, the order
//! of its stages, the bash scripts that run them, and the `Executor` trait every executor implements.
//! The shell executor lives here too; the Kubernetes executor reuses everything but the executor.

pub mod artifacts;
pub mod cache;
pub mod checkout;
pub mod context;
pub mod executor;
pub mod helper;
pub mod local_artifacts;
pub mod outcome;
pub mod paths;
pub mod run;
pub mod script;
pub mod settings;
pub mod shell;
pub mod sources;
pub mod stage;
pub mod stage_ops;
pub mod variables;

pub use checkout::PreparedCheckout;
pub use context::RunnerContext;
pub use executor::{
    Executor, ExecutorError, ExecutorFuture, PrepareOptions, StageExit, StageScript, job_features,
};
pub use helper::{HelperCommand, HelperSetup};
pub use outcome::JobOutcome;
pub use paths::JobPaths;
pub use run::run_job;
pub use shell::ShellExecutor;
pub use stage::{Container, Stage, StageKind, StagePlan};
pub use variables::{Variables, masked_values};
