//! The GitLab runner API client: every runner endpoint with gitlab-runner's headers, bodies, status
//! handling and retry policy, TLS with private CAs, client certificates and `tls_server_name`, and
//! certificate errors that name the host, what the certificate was issued for, and the key that fixes it.

pub mod client;
pub mod error;
pub mod reply;
pub mod retry;
pub mod tls;

pub use client::{ClientSettings, GitLabClient};
pub use error::{ApiError, forbidden_advice};
pub use reply::*;
pub use tls::{CertificateProblem, CertificateProblemKind, TlsSetupError};
