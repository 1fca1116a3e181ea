//! `[runners.cache]` with its `s3`, `gcs` and `azure` tables (gitlab-runner's CamelCase keys).

use glrunner_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[runners.cache]`: where jobs' caches are stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// `Type`: `s3`, `gcs` or `azure`.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// `Path`: a prefix added to every cache key.
    #[serde(rename = "Path", skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Shared`: one cache for all runners instead of one per runner token.
    #[serde(rename = "Shared", skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// `MaxUploadedArchiveSize` in bytes; 0 means unlimited.
    #[serde(
        rename = "MaxUploadedArchiveSize",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_uploaded_archive_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<CacheS3>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs: Option<CacheGcs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<CacheAzure>,
}

/// `[runners.cache.s3]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CacheS3 {
    /// `ServerAddress`: `host[:port]` of an S3-compatible server; empty means AWS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_location: Option<String>,
    /// `Insecure`: plain HTTP to `ServerAddress`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// `AuthenticationType`: `access-key` or `iam`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<String>,
    /// `ServerSideEncryption`: `S3`, `KMS` or `DSSE-KMS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<String>,
    #[serde(
        rename = "ServerSideEncryptionKeyID",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_side_encryption_key_id: Option<String>,
    /// `DualStack` (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dual_stack: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerate: Option<bool>,
    #[serde(rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(rename = "UploadRoleARN", skip_serializing_if = "Option::is_none")]
    pub upload_role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assume_role_max_concurrency: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_assume_role_credentials_caching: Option<bool>,
}

/// `[runners.cache.gcs]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CacheGcs {
    #[serde(rename = "AccessID", skip_serializing_if = "Option::is_none")]
    pub access_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub universe_domain: Option<String>,
}

/// `[runners.cache.azure]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CacheAzure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_domain: Option<String>,
}
