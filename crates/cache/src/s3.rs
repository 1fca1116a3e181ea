//! S3-compatible storage: where the bucket is (AWS or a custom `ServerAddress`, path or virtual-hosted
//! style) and SigV4 presigned GET/PUT URLs for one object, so the helper that moves the bytes never holds
//! the credentials.

use crate::backend::BackendProblem;
use crate::settings::S3Settings;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::time::{Duration, SystemTime};
use url::Url;

/// The region used when `BucketLocation` is empty.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The shortest and longest validity S3 accepts for a presigned URL.
pub const MIN_VALIDITY: Duration = Duration::from_secs(1);
pub const MAX_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// One bucket and the credentials that sign for it.
#[derive(Debug, Clone)]
pub struct S3Cache {
    bucket: Bucket,
    credentials: Credentials,
}

impl S3Cache {
    /// Checks the settings and works out the bucket's address.
    pub fn new(settings: &S3Settings) -> Result<Self, BackendProblem> {
        let bucket_name = settings.bucket_name.trim();
        if bucket_name.is_empty() {
            return Err(BackendProblem::MissingBucket);
        }
        let keys_set = !settings.access_key.trim().is_empty() && !settings.secret_key.is_empty();
        match settings
            .authentication_type
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "iam" => return Err(BackendProblem::IamUnsupported),
            "" if !keys_set => return Err(BackendProblem::IamUnsupported),
            "" | "access-key" | "access_key" | "accesskey" => {}
            other => {
                return Err(BackendProblem::UnknownAuthenticationType {
                    value: other.to_owned(),
                });
            }
        }
        if !keys_set {
            return Err(BackendProblem::MissingKeys);
        }
        let region = match settings.bucket_location.trim() {
            "" => DEFAULT_REGION,
            r => r,
        };
        let (endpoint, custom) = endpoint(settings, region)?;
        let style = match settings.path_style.unwrap_or(custom) {
            true => UrlStyle::Path,
            false => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(
            endpoint.clone(),
            style,
            bucket_name.to_owned(),
            region.to_owned(),
        )
        .map_err(|e| BackendProblem::InvalidServerAddress {
            value: settings.server_address.clone(),
            problem: match style {
                UrlStyle::VirtualHost => format!(
                    "{e}: the bucket name must fit in a host name for virtual-hosted style (an IP address \
                     cannot take one); set `PathStyle = true`"
                ),
                UrlStyle::Path => e.to_string(),
            },
        })?;
        let key = settings.access_key.trim().to_owned();
        let secret = settings.secret_key.expose().to_owned();
        let credentials = match &settings.session_token {
            Some(token) if !token.is_empty() => {
                Credentials::new_with_token(key, secret, token.expose())
            }
            _ => Credentials::new(key, secret),
        };
        Ok(Self {
            bucket,
            credentials,
        })
    }

    /// The bucket's address, e.g. `http://127.0.0.1:9000/runner-cache/`.
    pub fn bucket_url(&self) -> &Url {
        self.bucket.base_url()
    }

    /// A presigned `GET` for `object`, valid for `valid_for` from `now`.
    pub fn presign_get(&self, object: &str, valid_for: Duration, now: SystemTime) -> Url {
        self.bucket
            .get_object(Some(&self.credentials), object)
            .sign_with_time(clamp(valid_for), &timestamp(now))
    }

    /// A presigned `PUT` for `object`, valid for `valid_for` from `now`.
    pub fn presign_put(&self, object: &str, valid_for: Duration, now: SystemTime) -> Url {
        self.bucket
            .put_object(Some(&self.credentials), object)
            .sign_with_time(clamp(valid_for), &timestamp(now))
    }

    /// A presigned `HEAD` of the bucket: answers 200 when the bucket exists and the keys may use it.
    pub fn presign_head_bucket(&self, valid_for: Duration, now: SystemTime) -> Url {
        self.bucket
            .head_bucket(Some(&self.credentials))
            .sign_with_time(clamp(valid_for), &timestamp(now))
    }
}

fn clamp(valid_for: Duration) -> Duration {
    valid_for.clamp(MIN_VALIDITY, MAX_VALIDITY)
}

fn timestamp(now: SystemTime) -> jiff::Timestamp {
    // Only a clock before 1970 or past year 9999 fails; signing "now" is then the best answer.
    jiff::Timestamp::try_from(now).unwrap_or_else(|_| jiff::Timestamp::now())
}

/// The server's base URL and whether it is a custom (non-AWS) server.
fn endpoint(settings: &S3Settings, region: &str) -> Result<(Url, bool), BackendProblem> {
    let address = settings.server_address.trim().trim_end_matches('/');
    if address.is_empty() {
        let host = if region == DEFAULT_REGION {
            "s3.amazonaws.com".to_owned()
        } else {
            format!("s3.{region}.amazonaws.com")
        };
        let url = Url::parse(&format!("https://{host}/")).map_err(|e| {
            BackendProblem::InvalidServerAddress {
                value: format!("(AWS for BucketLocation {region:?})"),
                problem: e.to_string(),
            }
        })?;
        return Ok((url, false));
    }
    let invalid = |problem: String| BackendProblem::InvalidServerAddress {
        value: settings.server_address.clone(),
        problem,
    };
    let with_scheme = if address.contains("://") {
        address.to_owned()
    } else if settings.insecure {
        format!("http://{address}")
    } else {
        format!("https://{address}")
    };
    // The url crate drops a default port (`:443` for https), so the signed host matches the Host header
    // an HTTP client sends; signing `host:443` is what breaks presigned URLs for some servers.
    let url = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme `{}` is not supported; write `host:port` and set `Insecure` for plain HTTP",
            url.scheme()
        )));
    }
    if url.host_str().is_none() {
        return Err(invalid("it names no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "it must not contain user or password; put the keys in AccessKey and SecretKey"
                .to_owned(),
        ));
    }
    Ok((url, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_protocol::Secret;

    fn settings(address: &str) -> S3Settings {
        S3Settings {
            server_address: address.to_owned(),
            access_key: "AKIAEXAMPLE".to_owned(),
            secret_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            bucket_name: "runner-cache".to_owned(),
            ..S3Settings::default()
        }
    }

    #[test]
    fn custom_servers_use_path_style_and_drop_default_ports() {
        let s3 = S3Cache::new(&settings("minio.example.com:443")).expect("s3");
        assert_eq!(
            s3.bucket_url().as_str(),
            "https://minio.example.com/runner-cache/"
        );
        let s3 = S3Cache::new(&S3Settings {
            insecure: true,
            ..settings("127.0.0.1:9000")
        })
        .expect("s3");
        assert_eq!(
            s3.bucket_url().as_str(),
            "http://127.0.0.1:9000/runner-cache/"
        );
        let s3 = S3Cache::new(&settings("http://minio:9000/")).expect("scheme given");
        assert_eq!(s3.bucket_url().as_str(), "http://minio:9000/runner-cache/");
    }

    #[test]
    fn aws_uses_virtual_hosted_style_in_its_region() {
        let s3 = S3Cache::new(&settings("")).expect("aws");
        assert_eq!(
            s3.bucket_url().as_str(),
            "https://runner-cache.s3.amazonaws.com/"
        );
        let s3 = S3Cache::new(&S3Settings {
            bucket_location: "eu-central-1".into(),
            ..settings("")
        })
        .expect("aws region");
        assert_eq!(
            s3.bucket_url().as_str(),
            "https://runner-cache.s3.eu-central-1.amazonaws.com/"
        );
        let s3 = S3Cache::new(&S3Settings {
            path_style: Some(true),
            ..settings("")
        })
        .expect("aws path style");
        assert_eq!(
            s3.bucket_url().as_str(),
            "https://s3.amazonaws.com/runner-cache/"
        );
    }

    #[test]
    fn presigned_urls_carry_sigv4_and_the_validity() {
        let s3 = S3Cache::new(&settings("minio:9000")).expect("s3");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let put = s3.presign_put("runner/abc/project/1/key", Duration::from_secs(3600), now);
        let query: Vec<(String, String)> = put.query_pairs().into_owned().collect();
        let get = |k: &str| {
            query
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(put.path(), "/runner-cache/runner/abc/project/1/key");
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(get("X-Amz-Expires"), Some("3600"));
        assert_eq!(get("X-Amz-Date"), Some("20270115T080000Z"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("AKIAEXAMPLE/20270115/us-east-1/s3/aws4_request")
        );
        assert!(get("X-Amz-Signature").is_some_and(|s| s.len() == 64));
        assert!(!put.as_str().contains("wJalrXUtnFEMI"), "{put}");
        let get_url = s3.presign_get("k", Duration::from_secs(30 * 24 * 3600), now);
        assert!(
            get_url.as_str().contains("X-Amz-Expires=604800"),
            "validity is capped at 7 days: {get_url}"
        );
    }

    #[test]
    fn unusable_settings_are_refused_with_their_reason() {
        let cases = [
            (
                S3Settings {
                    bucket_name: String::new(),
                    ..settings("minio:9000")
                },
                "BucketName",
            ),
            (
                S3Settings {
                    authentication_type: "iam".into(),
                    ..settings("minio:9000")
                },
                "iam",
            ),
            (
                S3Settings {
                    access_key: String::new(),
                    secret_key: Secret::default(),
                    ..settings("minio:9000")
                },
                "iam",
            ),
            (
                S3Settings {
                    authentication_type: "access-key".into(),
                    secret_key: Secret::default(),
                    ..settings("minio:9000")
                },
                "SecretKey",
            ),
            (settings("ftp://minio:21"), "scheme `ftp`"),
            (settings("http://user:pw@minio"), "user or password"),
            (
                S3Settings {
                    path_style: Some(false),
                    ..settings("127.0.0.1:9000")
                },
                "PathStyle = true",
            ),
        ];
        for (s, part) in cases {
            let problem = S3Cache::new(&s).expect_err(part).to_string();
            assert!(problem.contains(part), "{part:?} missing: {problem}");
            assert!(problem.contains("Fix:"), "{problem}");
        }
    }
}
