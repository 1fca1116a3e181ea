//! Executor-agnostic job execution (design decision 5): one place for the variables a job sees, the order
//! of its stages, the bash scripts that run them, and the `Executor` trait every executor implements.
//! The shell executor lives here too; the Kubernetes executor reuses everything but the executor.

pub mod context;
pub mod executor;
pub mod outcome;
pub mod run;
pub mod script;
pub mod shell;
pub mod stage;
pub mod variables;

pub use context::RunnerContext;
pub use executor::Executor;
pub use outcome::JobOutcome;
pub use run::run_job;
