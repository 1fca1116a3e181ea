//! glrunner's Kubernetes executor: one pod per job.
//!
//! - [`pod`]: [`PodPlan::build`] makes the Pod, the per-job Secrets and the Services of one job from
//!   `[runners.kubernetes]`, the job payload and the job's variables (design decision 7: masked and
//!   file variables reach the pod only through the job's Secret).
//! - [`permissions`]: the one list of every API permission the executor uses, with the condition
//!   that makes each needed (design decision 5), and the Role, RoleBinding and documentation made
//!   from it.
//! - [`connection`] and [`api`]: reaching the API server (host, kubeconfig context, in-cluster), and
//!   the one wrapper every call goes through (catalogue check, counting, retries, idempotent creates,
//!   403s explained).
//! - [`watch`] and [`diagnose`]: pod state from watches shared by every job of the manager, and what
//!   that state means (pending reasons, failures with their fix).
//! - [`stream`] and [`executor`]: running stages in the pod through one exec and one attach per
//!   container, resumable after broken connections (design decision 6).
//! - [`preflight`] and [`sweep`]: start-up checks (K1–K5) and the cleanup of what a previous run left.
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
