//! GitLab's runner API as glrunner speaks it: the job payload, request and response bodies, header names,
//! token kinds and failure reasons. Pure data, no I/O, so the manager, the helper inside job pods and the
//! test coordinator all agree on one definition.
//!
//! Payload types are lenient by design (decision 3): unknown fields are ignored, `null` where a list is
//! expected reads as empty, and unknown enum values are kept as [`When::Unknown`]-style variants, so a
//! newer GitLab can never make a job undecodable after it was assigned.

pub mod expand;
pub mod failure;
pub mod headers;
pub mod job;
pub mod lenient;
pub mod request;
pub mod secret;
pub mod token;

pub use failure::FailureReason;
pub use job::*;
pub use request::*;
pub use secret::Secret;
pub use token::{TokenKind, short_token};
