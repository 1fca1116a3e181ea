//! The `Executor` trait: where a stage's script runs (a local bash, a container in a pod).

/// An executor runs the stage scripts of one job.
pub trait Executor: Send {}
