//! Git over smart HTTP: projects the coordinator serves as bare repositories (filled by real `git`),
//! GitLab's job-token authentication in front of them, and `git http-backend` answering the protocol.

mod backend;
pub(crate) mod command;
pub(crate) mod gateway;
pub(crate) mod repository;

pub use repository::{CommitBuilder, Project, ProjectSpec};
