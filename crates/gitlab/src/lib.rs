//! The GitLab runner API client: every runner endpoint with gitlab-runner's headers, bodies, status
//! handling and retry policy, TLS with private CAs, client certificates and `tls_server_name`, and
//! certificate errors that name the host, what the certificate was issued for, and the key that fixes it.
//! [`artifacts`] holds the artifact upload and download the helper uses, with their own retry rules.

pub mod artifacts;
pub mod client;
pub mod error;
pub mod reply;
pub mod retry;
pub mod tls;

pub use artifacts::{ArtifactError, ArtifactUpload, ByteSize, DownloadReceipt, UploadReceipt};
pub use client::{ClientSettings, GitLabClient};
pub use error::{ApiError, forbidden_advice};
pub use reply::*;
pub use tls::{CertificateProblem, CertificateProblemKind, TlsSetupError};
