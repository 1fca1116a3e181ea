//! `[runners.cache]` from config.toml as the cache crate's plain settings (glrunner-cache does not know
//! the config format).

use glrunner_cache::{CacheSettings, S3Settings};
use glrunner_config::CacheConfig;

/// The cache settings of one `[[runners]]` entry. The local directory is left to the executor.
pub fn from_config(config: &CacheConfig) -> CacheSettings {
    let s3 = config.s3.clone().unwrap_or_default();
    CacheSettings {
        cache_type: config.r#type.clone().unwrap_or_default(),
        shared: config.shared.unwrap_or(false),
        path: config.path.clone().unwrap_or_default(),
        max_uploaded_archive_size: config
            .max_uploaded_archive_size
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        s3: S3Settings {
            server_address: s3.server_address.unwrap_or_default(),
            access_key: s3
                .access_key
                .map(|k| k.expose().to_owned())
                .unwrap_or_default(),
            secret_key: s3.secret_key.unwrap_or_default(),
            session_token: s3.session_token,
            bucket_name: s3.bucket_name.unwrap_or_default(),
            bucket_location: s3.bucket_location.unwrap_or_default(),
            insecure: s3.insecure.unwrap_or(false),
            authentication_type: s3.authentication_type.unwrap_or_default(),
            path_style: s3.path_style,
        },
        local_dir: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_cache::{CacheBackend, CacheTarget};

    #[test]
    fn an_s3_section_becomes_presigned_targets() {
        let config = CacheConfig {
            r#type: Some("s3".into()),
            shared: Some(true),
            path: Some("ci".into()),
            max_uploaded_archive_size: Some(1024),
            s3: Some(glrunner_config::CacheS3 {
                server_address: Some("minio.example.com:9000".into()),
                access_key: Some("AKIAEXAMPLE".into()),
                secret_key: Some("s3cr3t-key".into()),
                bucket_name: Some("runner-cache".into()),
                bucket_location: Some("eu-west-1".into()),
                insecure: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let settings = from_config(&config);
        assert_eq!(settings.s3.bucket_location, "eu-west-1");
        assert!(!format!("{settings:?}").contains("s3cr3t-key"));
        let (backend, warning) = CacheBackend::select(&settings);
        assert!(warning.is_none(), "{warning:?}");
        assert_eq!(backend.max_upload_size(), Some(1024));
        let object = glrunner_cache::CacheObject {
            key: "k",
            hashed_keys: false,
            project_id: 3,
            project_path: "g/p",
            empty_git_strategy: false,
            short_token: "abcd1234",
        };
        match backend.target(&object, std::time::Duration::from_secs(60)) {
            Ok(Some(CacheTarget::Url { put, .. })) => {
                assert!(
                    put.as_str()
                        .starts_with("http://minio.example.com:9000/runner-cache/ci/project/3/k?"),
                    "{put}"
                );
                assert!(put.as_str().contains("%2Feu-west-1%2Fs3%2F"), "{put}");
            }
            other => panic!("expected URLs, got {other:?}"),
        }
    }

    #[test]
    fn no_section_means_no_distributed_cache() {
        let settings = from_config(&CacheConfig::default());
        assert_eq!(settings, CacheSettings::default());
    }
}
