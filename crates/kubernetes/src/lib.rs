//! glrunner's Kubernetes executor, part one: what a job's pod looks like and what the executor may
//! ask the API server for. No I/O here.
//!
//! - [`pod`]: [`PodPlan::build`] makes the Pod, the per-job Secrets and the Services of one job from
//!   `[runners.kubernetes]`, the job payload and the job's variables (design decision 7: masked and
//!   file variables reach the pod only through the job's Secret).
//! - [`permissions`]: the one list of every API permission the executor uses, with the condition
//!   that makes each needed (design decision 5), and the Role, RoleBinding and documentation made
//!   from it.
//! - [`quantity`], [`names`]: Kubernetes quantities and naming rules.

pub mod api;
pub mod connection;
pub mod diagnose;
pub mod executor;
pub mod names;
pub mod permissions;
pub mod pod;
pub mod preflight;
pub mod quantity;
pub mod stream;
pub mod sweep;
pub mod watch;

pub use permissions::{Permission, required};
pub use pod::{JobContext, PodPlan, SpecError};
pub use quantity::Quantity;
