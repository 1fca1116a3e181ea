//! Which cache a runner uses, chosen once from its settings, and where one cache archive goes: a file in
//! the local cache directory or presigned URLs in S3-compatible storage. A distributed cache that cannot
//! be used (an unsupported `Type`, incomplete settings) is a warning, never a failed job: the cache falls
//! back to the local directory, or is skipped.

use crate::s3::S3Cache;
use crate::settings::CacheSettings;
use glrunner_archive::cache::{
    CacheKeyError, ObjectNaming, cache_object_name, cache_project_dir, local_cache_archive,
};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use url::Url;

/// Why the configured distributed cache cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendProblem {
    #[error(
        "[runners.cache] Type = {cache_type:?} is not supported by glrunner yet; only \"s3\" is. Fix: use \
         `Type = \"s3\"` with any S3-compatible storage (MinIO, Ceph, or Google Cloud Storage's \
         interoperability endpoint `ServerAddress = \"storage.googleapis.com\"` with HMAC keys)"
    )]
    UnsupportedType { cache_type: String },
    #[error(
        "[runners.cache.s3] BucketName is empty, so there is nowhere to put caches. Fix: set BucketName to \
         an existing bucket"
    )]
    MissingBucket,
    #[error(
        "[runners.cache.s3] asks for IAM credentials (AuthenticationType = \"iam\", or no AccessKey and \
         SecretKey), which glrunner does not support yet. Fix: set AccessKey and SecretKey (with \
         `AuthenticationType = \"access-key\"`)"
    )]
    IamUnsupported,
    #[error(
        "[runners.cache.s3] AuthenticationType = {value:?} is not known. Fix: use \"access-key\" with \
         AccessKey and SecretKey"
    )]
    UnknownAuthenticationType { value: String },
    #[error(
        "[runners.cache.s3] AuthenticationType = \"access-key\" needs both AccessKey and SecretKey, and one \
         is empty. Fix: set both"
    )]
    MissingKeys,
    #[error(
        "[runners.cache.s3] ServerAddress = {value:?} cannot be used: {problem}. Fix: set ServerAddress to \
         `host:port` of the S3 server (e.g. `minio.example.com:9000`), with `Insecure = true` for plain HTTP"
    )]
    InvalidServerAddress { value: String, problem: String },
}

/// A distributed cache that cannot be used, and what happens instead; for the runner log and the job log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendWarning {
    pub problem: BackendProblem,
    /// The local cache directory caches go to instead, if there is one.
    pub fallback: Option<PathBuf>,
}

impl fmt::Display for BackendWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}. ", self.problem)?;
        match &self.fallback {
            Some(dir) => write!(
                f,
                "Until then caches are not shared: they stay in the local cache directory {}",
                dir.display()
            ),
            None => f.write_str("Until then jobs run without a cache"),
        }
    }
}

impl std::error::Error for BackendWarning {}

/// Where a runner's caches live.
#[derive(Debug, Clone)]
pub enum CacheBackend {
    /// Archives stay in the local cache directory.
    Local { dir: PathBuf },
    /// Archives go to S3-compatible storage through presigned URLs.
    S3 {
        s3: Box<S3Cache>,
        /// `Path`: prefix of every object name.
        prefix: String,
        /// `Shared`.
        shared: bool,
        /// `MaxUploadedArchiveSize`; 0 means no limit.
        max_upload_size: u64,
    },
    /// No cache: nothing configured and no local cache directory.
    Disabled,
}

/// One cache archive of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheObject<'a> {
    /// The key for paths and object names (`glrunner_archive::cache::CacheKey::hashed`).
    pub key: &'a str,
    /// `FF_HASH_CACHE_KEYS`: object names get a two-character shard directory.
    pub hashed_keys: bool,
    /// `CI_PROJECT_ID`.
    pub project_id: i64,
    /// `CI_PROJECT_PATH`, e.g. `group/project` (the local cache directory's layout).
    pub project_path: &'a str,
    /// `GIT_STRATEGY: empty` keeps its caches apart, like gitlab-runner.
    pub empty_git_strategy: bool,
    /// The runner's short token (`glrunner_protocol::short_token`).
    pub short_token: &'a str,
}

/// Where the helper reads and writes one cache archive.
#[derive(Clone, PartialEq, Eq)]
pub enum CacheTarget {
    /// A `cache.zip` in the local cache directory (`--file`).
    File(PathBuf),
    /// Presigned URLs (`--url`): `get` for cache-extract, `put` for cache-archive.
    Url { get: Url, put: Url },
}

// By hand: presigned URLs carry a signature that must not reach a log.
impl fmt::Debug for CacheTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Url { get, put } => f
                .debug_struct("Url")
                .field("get", &crate::transfer::clean_url(get))
                .field("put", &crate::transfer::clean_url(put))
                .finish(),
        }
    }
}

impl CacheBackend {
    /// The backend `settings` describe. A distributed cache that cannot be used falls back to the local
    /// cache directory (or none), with the warning that says why.
    pub fn select(settings: &CacheSettings) -> (Self, Option<BackendWarning>) {
        let local = || match &settings.local_dir {
            Some(dir) => Self::Local { dir: dir.clone() },
            None => Self::Disabled,
        };
        let problem = match settings.cache_type.trim().to_ascii_lowercase().as_str() {
            "" => return (local(), None),
            "s3" => match S3Cache::new(&settings.s3) {
                Ok(s3) => {
                    return (
                        Self::S3 {
                            s3: Box::new(s3),
                            prefix: settings.path.trim_matches('/').to_owned(),
                            shared: settings.shared,
                            max_upload_size: settings.max_uploaded_archive_size,
                        },
                        None,
                    );
                }
                Err(problem) => problem,
            },
            _ => BackendProblem::UnsupportedType {
                cache_type: settings.cache_type.clone(),
            },
        };
        let warning = BackendWarning {
            problem,
            fallback: settings.local_dir.clone(),
        };
        (local(), Some(warning))
    }

    /// Where `object` goes, with URLs valid for `valid_for` (the job's timeout) from now; `None` when the
    /// cache is disabled.
    pub fn target(
        &self,
        object: &CacheObject<'_>,
        valid_for: Duration,
    ) -> Result<Option<CacheTarget>, CacheKeyError> {
        self.target_at(object, valid_for, SystemTime::now())
    }

    /// [`Self::target`] with URLs signed as of `now`.
    pub fn target_at(
        &self,
        object: &CacheObject<'_>,
        valid_for: Duration,
        now: SystemTime,
    ) -> Result<Option<CacheTarget>, CacheKeyError> {
        match self {
            Self::Disabled => Ok(None),
            Self::Local { dir } => {
                let project = cache_project_dir(object.project_path, object.empty_git_strategy);
                let path = local_cache_archive(dir, &project, object.key)?;
                Ok(Some(CacheTarget::File(path)))
            }
            Self::S3 {
                s3, prefix, shared, ..
            } => {
                let naming = ObjectNaming {
                    prefix,
                    shared: *shared,
                    short_token: object.short_token,
                    project_id: object.project_id,
                };
                let name = cache_object_name(&naming, object.key, object.hashed_keys)?;
                Ok(Some(CacheTarget::Url {
                    get: s3.presign_get(&name, valid_for, now),
                    put: s3.presign_put(&name, valid_for, now),
                }))
            }
        }
    }

    /// `MaxUploadedArchiveSize` for the helper's `--max-size`, when a limit applies.
    pub fn max_upload_size(&self) -> Option<u64> {
        match self {
            Self::S3 {
                max_upload_size, ..
            } if *max_upload_size > 0 => Some(*max_upload_size),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::S3Settings;
    use glrunner_protocol::Secret;
    use std::path::Path;

    fn object(key: &str) -> CacheObject<'_> {
        CacheObject {
            key,
            hashed_keys: false,
            project_id: 42,
            project_path: "group/app",
            empty_git_strategy: false,
            short_token: "t9Wkyj-HG",
        }
    }

    fn s3_settings() -> CacheSettings {
        CacheSettings {
            cache_type: "s3".into(),
            path: "/ci/".into(),
            s3: S3Settings {
                server_address: "127.0.0.1:9000".into(),
                insecure: true,
                access_key: "AKIAEXAMPLE".into(),
                secret_key: Secret::new("very-secret-key"),
                bucket_name: "cache".into(),
                ..S3Settings::default()
            },
            local_dir: Some("/var/cache/glrunner".into()),
            ..CacheSettings::default()
        }
    }

    #[test]
    fn no_type_means_the_local_directory_or_nothing() {
        let settings = CacheSettings {
            local_dir: Some("/cache".into()),
            ..CacheSettings::default()
        };
        let (backend, warning) = CacheBackend::select(&settings);
        assert!(warning.is_none());
        let target = backend
            .target(&object("build/main"), Duration::from_secs(60))
            .expect("target");
        assert_eq!(
            target,
            Some(CacheTarget::File(
                Path::new("/cache/group/app/build/main/cache.zip").into()
            ))
        );
        let (backend, _) = CacheBackend::select(&CacheSettings::default());
        assert!(matches!(backend, CacheBackend::Disabled));
        assert_eq!(
            backend.target(&object("k"), Duration::from_secs(60)),
            Ok(None)
        );
    }

    #[test]
    fn s3_targets_are_presigned_object_names() {
        let (backend, warning) = CacheBackend::select(&s3_settings());
        assert!(warning.is_none(), "{warning:?}");
        let Some(CacheTarget::Url { get, put }) = backend
            .target(&object("build/main"), Duration::from_secs(600))
            .expect("target")
        else {
            panic!("expected URLs")
        };
        let name = "/cache/ci/runner/t9Wkyj-HG/project/42/build/main";
        assert_eq!((get.path(), put.path()), (name, name));
        assert_ne!(get, put, "GET and PUT are signed apart");
        let shown = format!(
            "{:?}",
            CacheTarget::Url {
                get: get.clone(),
                put
            }
        );
        assert!(!shown.contains("X-Amz-Signature"), "{shown}");

        let shared = CacheSettings {
            shared: true,
            ..s3_settings()
        };
        let (backend, _) = CacheBackend::select(&shared);
        let hashed = glrunner_archive::cache::hash_cache_key("build/main");
        let Some(CacheTarget::Url { get, .. }) = backend
            .target(
                &CacheObject {
                    key: &hashed,
                    hashed_keys: true,
                    ..object("")
                },
                Duration::from_secs(600),
            )
            .expect("target")
        else {
            panic!("expected URLs")
        };
        assert_eq!(
            get.path(),
            format!("/cache/ci/project/42/{}/{hashed}", &hashed[..2])
        );
    }

    #[test]
    fn unusable_distributed_caches_warn_and_fall_back() {
        let gcs = CacheSettings {
            cache_type: "gcs".into(),
            local_dir: Some("/cache".into()),
            ..CacheSettings::default()
        };
        let (backend, warning) = CacheBackend::select(&gcs);
        assert!(matches!(backend, CacheBackend::Local { .. }));
        let text = warning.expect("warning").to_string();
        assert!(text.contains("\"gcs\" is not supported"), "{text}");
        assert!(
            text.contains("stay in the local cache directory /cache"),
            "{text}"
        );

        let azure = CacheSettings {
            cache_type: "azure".into(),
            ..CacheSettings::default()
        };
        let (backend, warning) = CacheBackend::select(&azure);
        assert!(matches!(backend, CacheBackend::Disabled));
        assert!(
            warning
                .expect("warning")
                .to_string()
                .ends_with("jobs run without a cache")
        );

        let mut no_bucket = s3_settings();
        no_bucket.s3.bucket_name.clear();
        let (backend, warning) = CacheBackend::select(&no_bucket);
        assert!(matches!(backend, CacheBackend::Local { .. }));
        assert_eq!(
            warning.map(|w| w.problem),
            Some(BackendProblem::MissingBucket)
        );
    }

    #[test]
    fn max_upload_size_applies_to_s3_only() {
        let mut settings = s3_settings();
        settings.max_uploaded_archive_size = 1024;
        assert_eq!(
            CacheBackend::select(&settings).0.max_upload_size(),
            Some(1024)
        );
        settings.max_uploaded_archive_size = 0;
        assert_eq!(CacheBackend::select(&settings).0.max_upload_size(), None);
        settings.cache_type.clear();
        settings.max_uploaded_archive_size = 1024;
        assert_eq!(CacheBackend::select(&settings).0.max_upload_size(), None);
    }

    #[test]
    fn debug_never_shows_the_secret_key() {
        let (backend, _) = CacheBackend::select(&s3_settings());
        let shown = format!("{backend:?} {:?}", s3_settings());
        assert!(!shown.contains("very-secret-key"), "{shown}");
    }

    #[test]
    fn keys_leaving_the_namespace_are_refused() {
        let (backend, _) = CacheBackend::select(&s3_settings());
        assert!(
            backend
                .target(&object("../../x"), Duration::from_secs(60))
                .is_err()
        );
    }
}
