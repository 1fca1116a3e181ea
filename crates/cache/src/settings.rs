//! What a runner's `[runners.cache]` says, as plain data: the binary fills it from the config crate's
//! `CacheConfig`, so this crate does not depend on the config format.

use glrunner_protocol::Secret;
use std::path::PathBuf;

/// A runner's cache settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSettings {
    /// `Type`: `s3`, `gcs` or `azure`; empty when no distributed cache is configured.
    pub cache_type: String,
    /// `Shared`: one namespace for all runners instead of one per runner token.
    pub shared: bool,
    /// `Path`: a prefix for every object name.
    pub path: String,
    /// `MaxUploadedArchiveSize` in bytes; 0 means no limit.
    pub max_uploaded_archive_size: u64,
    /// `[runners.cache.s3]`.
    pub s3: S3Settings,
    /// The runner's local cache directory (`cache_dir`), used when no distributed cache is configured or
    /// it cannot be used.
    pub local_dir: Option<PathBuf>,
}

/// `[runners.cache.s3]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `ServerAddress`: `host[:port]` of an S3-compatible server (MinIO, Ceph, …), or a URL with a scheme;
    /// empty means AWS S3.
    pub server_address: String,
    /// `AccessKey`: the access key id.
    pub access_key: String,
    /// `SecretKey`.
    pub secret_key: Secret,
    /// `SessionToken` of temporary credentials, if any.
    pub session_token: Option<Secret>,
    /// `BucketName`.
    pub bucket_name: String,
    /// `BucketLocation`: the region; empty means `us-east-1`.
    pub bucket_location: String,
    /// `Insecure`: plain HTTP to `server_address`.
    pub insecure: bool,
    /// `AuthenticationType`: `access-key` or `iam`; empty picks `iam` when no keys are set, like
    /// gitlab-runner.
    pub authentication_type: String,
    /// `PathStyle`: `https://server/bucket/object` instead of `https://bucket.server/object`. Unset means
    /// path style for a custom `server_address` (MinIO and most S3-compatible servers need it) and
    /// virtual-hosted style for AWS.
    pub path_style: Option<bool>,
}
