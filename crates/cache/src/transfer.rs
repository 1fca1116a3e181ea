//! Moving a cache archive to and from a presigned URL: a streamed `PUT` with a known length, a `GET` into
//! a temporary file renamed into place (skipped when the local copy is as new), a timeout per request and
//! 3 attempts for server errors and broken connections. Every failure carries the storage's own words
//! (S3's `<Code>` and `<Message>`) and a fix, so a cache that was not saved is never reported as saved.
//! URLs are shown without their query: a presigned URL's signature lives there.

use crate::storage_error::StorageError;
use glrunner_gitlab::ClientSettings;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use url::Url;

/// Attempts per transfer, the first included (gitlab-runner's cache helpers retry twice).
pub const ATTEMPTS: u32 = 3;
/// gitlab-runner's default cache request timeout (`CACHE_REQUEST_TIMEOUT`, 10 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The first wait between attempts; it doubles.
const RETRY_WAIT: Duration = Duration::from_secs(1);
/// The longest error body read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// `url` without user info, query or fragment.
pub fn clean_url(url: &Url) -> String {
    glrunner_gitlab::artifacts::clean_url(url)
}

/// Which way the bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
    /// A check of the bucket.
    Check,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Upload => "cache upload to",
            Self::Download => "cache download from",
            Self::Check => "cache bucket check of",
        })
    }
}

/// A transfer that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    #[error(
        "{direction} {url} cannot start: {detail}. Fix: check the CA file given with --tls-ca-file"
    )]
    Setup {
        direction: Direction,
        url: String,
        detail: String,
    },

    #[error(
        "cannot read the cache archive {path}: {source}. Likely cause: it was removed while it was \
         uploaded. Fix: make sure nothing else writes the cache directory during the job"
    )]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot write the downloaded cache to {path}: {source}. Likely cause: the disk is full or the \
         directory is not writable. Fix: free space there or fix its permissions"
    )]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "{direction} {url} failed: the storage answered {}{}. {hint}",
        status_text(*.status),
        storage_words(.storage)
    )]
    Refused {
        direction: Direction,
        url: String,
        status: u16,
        /// S3's `<Code>` and `<Message>`, when the body was an error document.
        storage: Option<StorageError>,
        attempts: u32,
        hint: String,
    },

    #[error(
        "{direction} {url} failed: {detail} ({attempts} attempts). Likely cause: the storage server is not \
         reachable from the job (wrong ServerAddress or port, http vs https, DNS, a firewall). Fix: check \
         [runners.cache.s3] ServerAddress and Insecure, and that the job can reach the server"
    )]
    Unreachable {
        direction: Direction,
        url: String,
        detail: String,
        attempts: u32,
    },

    #[error(
        "{direction} {url} failed: no complete answer within {} ({attempts} attempts). Likely cause: the \
         archive is large for the bandwidth, or the storage stalls. Fix: raise the cache timeout \
         (CACHE_REQUEST_TIMEOUT, in minutes) or cache fewer files",
        humanize(*.timeout)
    )]
    TimedOut {
        direction: Direction,
        url: String,
        timeout: Duration,
        attempts: u32,
    },
}

impl TransferError {
    /// The HTTP status the storage answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The storage's error code (`SignatureDoesNotMatch`, `NoSuchBucket`, …), if it sent one.
    pub fn storage_code(&self) -> Option<&str> {
        match self {
            Self::Refused {
                storage: Some(StorageError { code: Some(c), .. }),
                ..
            } => Some(c),
            _ => None,
        }
    }
}

fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

fn storage_words(storage: &Option<StorageError>) -> String {
    match storage {
        Some(s) => format!(" ({s})"),
        None => String::new(),
    }
}

fn humanize(d: Duration) -> String {
    if d.as_secs() >= 60 && d.as_secs().is_multiple_of(60) {
        format!("{} min", d.as_secs() / 60)
    } else {
        format!("{:?}", d)
    }
}

/// What a download came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downloaded {
    /// The archive was saved; `size` bytes.
    Saved { size: u64 },
    /// The local copy is as new as the stored one; nothing was downloaded.
    UpToDate,
    /// The storage has no such object (404): there is no cache yet.
    Missing,
}

/// A client for the presigned URLs of one storage server.
#[derive(Debug, Clone)]
pub struct Transfer {
    client: reqwest::Client,
    timeout: Duration,
}

impl Transfer {
    /// A client for `url`'s server trusting the system roots and `ca_file`, with `timeout` per request.
    pub fn new(
        url: &Url,
        timeout: Duration,
        ca_file: Option<&Path>,
        direction: Direction,
    ) -> Result<Self, TransferError> {
        let setup = |detail: String| TransferError::Setup {
            direction,
            url: clean_url(url),
            detail,
        };
        let host = url.host_str().unwrap_or_default();
        let settings = ClientSettings {
            tls_ca_file: ca_file.map(Path::to_path_buf),
            ..ClientSettings::default()
        };
        let material =
            glrunner_gitlab::tls::client_config(&settings, host, url.scheme() == "https")
                .map_err(|e| setup(e.to_string()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            // A presigned URL answers itself; a redirect would be a misconfigured proxy.
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(material.config)
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(Self { client, timeout })
    }

    /// `PUT`s `file` to the presigned `url`; returns the bytes sent.
    pub async fn upload(&self, url: &Url, file: &Path) -> Result<u64, TransferError> {
        let direction = Direction::Upload;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let read_error = |source| TransferError::ReadFile {
                path: file.to_owned(),
                source,
            };
            let body = tokio::fs::File::open(file).await.map_err(read_error)?;
            let size = body.metadata().await.map_err(read_error)?.len();
            let sent = self
                .client
                .put(url.clone())
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(reqwest::Body::from(body))
                .send()
                .await;
            let failure = match sent {
                Ok(response) if response.status().is_success() => return Ok(size),
                Ok(response) => self.refused(direction, url, response, attempt).await,
                Err(e) => self.failed(direction, url, &e, attempt),
            };
            self.retry_or_fail(failure, attempt).await?;
        }
    }

    /// `GET`s the presigned `url` into `dest`, unless `dest` is already as new as the stored object.
    pub async fn download(&self, url: &Url, dest: &Path) -> Result<Downloaded, TransferError> {
        let direction = Direction::Download;
        let write_error = |source| TransferError::WriteFile {
            path: dest.to_owned(),
            source,
        };
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        tokio::fs::create_dir_all(&dir).await.map_err(write_error)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.client.get(url.clone()).send().await {
                Ok(response) if response.status().as_u16() == 404 => {
                    return Ok(Downloaded::Missing);
                }
                Ok(response) if response.status().is_success() => {
                    let modified = response
                        .headers()
                        .get(reqwest::header::LAST_MODIFIED)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| httpdate::parse_http_date(v).ok());
                    if let Some(modified) = modified
                        && local_is_current(dest, modified)
                    {
                        return Ok(Downloaded::UpToDate);
                    }
                    match save(response, &dir, dest, modified).await {
                        Ok(size) => return Ok(Downloaded::Saved { size }),
                        Err(SaveError::Write(source)) => return Err(write_error(source)),
                        Err(SaveError::Read(e)) => self.failed(direction, url, &e, attempt),
                    }
                }
                Ok(response) => self.refused(direction, url, response, attempt).await,
                Err(e) => self.failed(direction, url, &e, attempt),
            };
            self.retry_or_fail(failure, attempt).await?;
        }
    }

    /// `HEAD`s a presigned bucket URL ([`crate::s3::S3Cache::presign_head_bucket`]): whether the bucket
    /// exists and the keys may use it, for a check at start-up rather than a surprise in every job.
    pub async fn check_bucket(&self, url: &Url) -> Result<(), TransferError> {
        let direction = Direction::Check;
        let response = match self.client.head(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => return Err(self.failed(direction, url, &e, 1).error),
        };
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.refused(direction, url, response, 1).await.error)
    }

    /// Waits before the next attempt, or gives up with `failure`.
    async fn retry_or_fail(&self, failure: Failure, attempt: u32) -> Result<(), TransferError> {
        if !failure.retriable || attempt >= ATTEMPTS {
            return Err(failure.error);
        }
        let wait = RETRY_WAIT * 2u32.pow(attempt - 1);
        tracing::warn!(error = %failure.error, attempt, "retrying in {wait:?}");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    async fn refused(
        &self,
        direction: Direction,
        url: &Url,
        response: reqwest::Response,
        attempt: u32,
    ) -> Failure {
        let status = response.status().as_u16();
        let body = limited_body(response).await;
        let storage = StorageError::parse(&body);
        let retriable = status >= 500 || matches!(status, 408 | 429);
        Failure {
            retriable,
            error: TransferError::Refused {
                direction,
                url: clean_url(url),
                status,
                hint: hint(status, storage.as_ref(), direction, attempt),
                storage,
                attempts: attempt,
            },
        }
    }

    fn failed(&self, direction: Direction, url: &Url, e: &reqwest::Error, attempt: u32) -> Failure {
        let error = if e.is_timeout() {
            TransferError::TimedOut {
                direction,
                url: clean_url(url),
                timeout: self.timeout,
                attempts: attempt,
            }
        } else {
            TransferError::Unreachable {
                direction,
                url: clean_url(url),
                detail: transport_detail(e, url),
                attempts: attempt,
            }
        };
        Failure {
            retriable: true,
            error,
        }
    }
}

struct Failure {
    retriable: bool,
    error: TransferError,
}

/// What went wrong on the wire, outermost cause first, without reqwest's own line (it repeats the URL
/// with its signature).
fn transport_detail(e: &reqwest::Error, url: &Url) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
        if parts.len() >= 8 {
            break;
        }
    }
    let detail = if parts.is_empty() {
        "the connection failed".to_owned()
    } else {
        parts.join(": ")
    };
    detail.replace(url.as_str(), &clean_url(url))
}

/// The likely cause and the fix for a status and storage error code.
fn hint(
    status: u16,
    storage: Option<&StorageError>,
    direction: Direction,
    attempts: u32,
) -> String {
    let code = storage.and_then(|s| s.code.as_deref()).unwrap_or_default();
    let message = storage
        .and_then(|s| s.message.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match code {
        "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AuthorizationQueryParametersError" => {
            "Likely cause: [runners.cache.s3] AccessKey or SecretKey is wrong, BucketLocation is not the \
             bucket's region, or something between the job and the server changed the request (a proxy \
             rewriting Host). Fix: check AccessKey, SecretKey, BucketLocation and ServerAddress in \
             [runners.cache.s3]"
                .to_owned()
        }
        "AccessDenied" if message.contains("expired") => "Likely cause: the presigned URL expired (the job \
             ran past its timeout) or the clocks of the runner and the storage server differ. Fix: keep \
             both clocks in sync (NTP)"
            .to_owned(),
        "RequestTimeTooSkewed" => "Likely cause: the clocks of the runner and the storage server differ. \
             Fix: keep both clocks in sync (NTP)"
            .to_owned(),
        "AccessDenied" | "AllAccessDisabled" => {
            let missing = match direction {
                Direction::Download => {
                    " (on AWS, a missing object also answers 403 when the keys lack s3:ListBucket)"
                }
                Direction::Upload | Direction::Check => "",
            };
            format!(
                "Likely cause: the keys in [runners.cache.s3] may not use this bucket or path{missing}. \
                 Fix: grant s3:GetObject, s3:PutObject and s3:ListBucket on BucketName (and its Path \
                 prefix) to the AccessKey's user"
            )
        }
        "NoSuchBucket" => "Likely cause: [runners.cache.s3] BucketName does not exist on this server. \
             Fix: create the bucket (`mc mb`, `aws s3 mb`) or correct BucketName"
            .to_owned(),
        "EntityTooLarge" => "Likely cause: the archive is larger than the storage accepts in one PUT (5 GB \
             on S3). Fix: cache fewer files or set MaxUploadedArchiveSize in [runners.cache]"
            .to_owned(),
        "" if status == 404 && direction == Direction::Check => "Likely cause: [runners.cache.s3] \
             BucketName does not exist on this server. Fix: create the bucket (`mc mb`, `aws s3 mb`) or \
             correct BucketName"
            .to_owned(),
        "" if status == 403 && direction == Direction::Check => "Likely cause: [runners.cache.s3] \
             AccessKey or SecretKey is wrong, or the keys may not use this bucket. Fix: check AccessKey and \
             SecretKey, and grant s3:ListBucket, s3:GetObject and s3:PutObject on BucketName"
            .to_owned(),
        "" if status == 301 || status == 400 => "Likely cause: BucketLocation is not the bucket's region. \
             Fix: set [runners.cache.s3] BucketLocation to the region the bucket was created in"
            .to_owned(),
        _ if status >= 500 => format!(
            "Likely cause: the storage server failed or is overloaded (tried {attempts} times). Fix: check \
             its health and logs"
        ),
        _ => "Fix: see the storage's message above and check [runners.cache] and [runners.cache.s3]"
            .to_owned(),
    }
}

async fn limited_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = ERROR_BODY_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    body
}

/// Whether `dest` exists and is at least as new as `modified` (gitlab-runner's "is up to date").
fn local_is_current(dest: &Path, modified: SystemTime) -> bool {
    std::fs::metadata(dest)
        .and_then(|m| m.modified())
        .is_ok_and(|local| modified <= local)
}

enum SaveError {
    Read(reqwest::Error),
    Write(io::Error),
}

/// Streams the body into a temporary file in `dir`, gives it the stored object's time, and renames it
/// over `dest` once complete.
async fn save(
    mut response: reqwest::Response,
    dir: &Path,
    dest: &Path,
    modified: Option<SystemTime>,
) -> Result<u64, SaveError> {
    let tmp = tempfile_in(dir).map_err(SaveError::Write)?;
    let (std_file, tmp_path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut size = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(SaveError::Read)? {
        file.write_all(&chunk).await.map_err(SaveError::Write)?;
        size += chunk.len() as u64;
    }
    file.flush().await.map_err(SaveError::Write)?;
    let std_file = file.into_std().await;
    if let Some(modified) = modified {
        std_file.set_modified(modified).map_err(SaveError::Write)?;
    }
    std_file.sync_all().map_err(SaveError::Write)?;
    tmp_path
        .persist(dest)
        .map_err(|e| SaveError::Write(e.error))?;
    Ok(size)
}

fn tempfile_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().prefix("cache_").tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(code: &str, message: &str) -> StorageError {
        StorageError {
            code: Some(code.to_owned()),
            message: Some(message.to_owned()),
        }
    }

    #[test]
    fn hints_follow_the_storage_code() {
        let cases = [
            (
                403,
                "InvalidAccessKeyId",
                "",
                "AccessKey or SecretKey is wrong",
            ),
            (403, "AccessDenied", "Request has expired", "NTP"),
            (403, "AccessDenied", "Access Denied", "s3:PutObject"),
            (404, "NoSuchBucket", "", "create the bucket"),
            (403, "RequestTimeTooSkewed", "", "clocks"),
            (400, "EntityTooLarge", "", "MaxUploadedArchiveSize"),
            (503, "SlowDown", "", "tried 3 times"),
        ];
        for (status, code, message, part) in cases {
            let text = hint(status, Some(&storage(code, message)), Direction::Upload, 3);
            assert!(text.contains(part), "{code}: {part:?} missing: {text}");
        }
        assert!(hint(404, None, Direction::Check, 1).contains("BucketName does not exist"));
        assert!(hint(403, None, Direction::Check, 1).contains("AccessKey or SecretKey"));
        assert!(
            hint(
                403,
                Some(&storage("AccessDenied", "x")),
                Direction::Download,
                1
            )
            .contains("s3:ListBucket")
        );
    }
}
