//! glrunner's cache backends. The manager side picks a [`CacheBackend`] from a runner's
//! `[runners.cache]` ([`CacheSettings`]) and, for each cache archive of a job, gets a [`CacheTarget`]:
//! a `cache.zip` in the local cache directory, or presigned S3 GET/PUT URLs valid for the job's timeout,
//! so the helper inside the job never sees the S3 credentials. The helper moves the bytes with
//! [`transfer::Transfer`], whose failures carry the storage's own error text.
//!
//! - [`settings`]: the plain-data settings; [`backend`]: the choice and the targets, with a warning
//!   (never a failure) for a distributed cache that cannot be used;
//! - [`s3`]: bucket addressing (AWS or a custom `ServerAddress`, path or virtual-hosted style) and SigV4
//!   presigning;
//! - [`transfer`]: PUT and GET of presigned URLs; [`storage_error`]: S3's error documents.

pub mod backend;
pub mod s3;
pub mod settings;
pub mod storage_error;
#[cfg(feature = "test-server")]
pub mod test_server;
pub mod transfer;

pub use backend::{BackendProblem, BackendWarning, CacheBackend, CacheObject, CacheTarget};
pub use settings::{CacheSettings, S3Settings};
pub use storage_error::StorageError;
pub use transfer::{Downloaded, Transfer, TransferError};
