//! The artifact endpoints as the helper uses them: `POST /jobs/:id/artifacts` (a multipart upload streamed
//! from a file) and `GET /jobs/:id/artifacts` (a dependency's archive streamed to a file, following a
//! redirect to object storage). They have their own retry rules, gitlab-runner's helper's: an upload gets
//! 3 attempts (6 while GitLab answers 503) and follows a 307/308 to another GitLab address once; a
//! download gets 3 attempts, asks for `direct_download` on the first only, and never sends the job token
//! to object storage.

use crate::client::{GitLabClient, error_chain};
use crate::error::{ApiError, scrub, status_hint};
use crate::retry;
use glrunner_protocol::{Secret, TokenKind, headers};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, Response, StatusCode};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use url::Url;

/// Upload attempts, the first included (gitlab-runner's `defaultTries`).
pub const UPLOAD_ATTEMPTS: u32 = 3;
/// Upload attempts while GitLab answers 503 (`serviceUnavailableTries`).
pub const UPLOAD_ATTEMPTS_UNAVAILABLE: u32 = 6;
/// Download attempts, the first included.
pub const DOWNLOAD_ATTEMPTS: u32 = 3;

/// One artifact archive to upload.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactUpload<'a> {
    pub job_id: i64,
    pub job_token: &'a Secret,
    /// The archive on disk; it is read again for every attempt.
    pub file: &'a Path,
    /// The multipart file name (`glrunner_archive::artifact_file_name`), e.g. `artifacts.zip`.
    pub file_name: &'a str,
    /// `artifact_format`: `zip`, `gzip` or `raw`.
    pub format: &'a str,
    /// `artifact_type`: `archive`, `junit`, `dotenv`, …
    pub artifact_type: &'a str,
    /// `expire_in`, e.g. `1 week`; `None` or empty leaves GitLab's default.
    pub expire_in: Option<&'a str>,
}

/// A successful upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReceipt {
    /// GitLab's status line, e.g. `201 Created`.
    pub status: String,
    /// Bytes sent (the archive's size).
    pub size: u64,
    pub attempts: u32,
    /// The GitLab address a 307/308 moved the upload to, if it did.
    pub retargeted: Option<String>,
}

/// A successful download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadReceipt {
    /// Bytes written to the file.
    pub size: u64,
    pub attempts: u32,
    /// The object storage host GitLab redirected to, if it did.
    pub object_storage: Option<String>,
}

/// An artifact upload or download that failed; each message says what happened, the likely cause and
/// the fix, and never contains the job token or a presigned URL's signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    #[error(
        "cannot read the artifacts archive {path}: {source}. Likely cause: it was removed or made \
         unreadable before the upload finished. Fix: make sure nothing removes the archive while it is \
         uploaded and that the helper can read its temporary directory"
    )]
    ReadArchive {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot write the downloaded artifacts to {path}: {source}. Likely cause: the disk is full or the \
         directory is not writable. Fix: free space in the temporary directory (TMPDIR) or fix its \
         permissions"
    )]
    WriteArchive {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Api(#[from] ApiError),

    #[error(
        "{endpoint}: GitLab refused the artifacts archive {file_name} ({size}) with 413 Request Entity Too \
         Large{}. Likely cause: the archive is larger than the maximum artifacts size of this GitLab, group \
         or project (`max_artifact_size`, 100 MB by default), or than a proxy in front of GitLab accepts. \
         Fix: upload less (narrow artifacts:paths or add artifacts:exclude), or raise the limit: Admin area \
         > Settings > CI/CD > Continuous Integration and Deployment > Maximum artifacts size (or the \
         project's or group's setting, or the proxy's body limit such as nginx client_max_body_size)",
        quoted(.message)
    )]
    TooLarge {
        endpoint: String,
        file_name: String,
        size: ByteSize,
        message: String,
    },

    #[error(
        "{endpoint}: GitLab answered 403 Forbidden to the job token of job {job_id}{}. Likely cause: the job \
         is no longer running (it was canceled, timed out or already finished), so its token no longer \
         authenticates it. Fix: none needed if the job was canceled; otherwise raise the job's timeout",
        quoted(.message)
    )]
    UploadForbidden {
        endpoint: String,
        job_id: i64,
        message: String,
    },

    #[error(
        "{endpoint}: GitLab refused the {artifact_type} artifact with 400 Bad Request{}. Likely cause: this \
         job already uploaded an artifact of type {artifact_type} (each type is stored once per job). Fix: \
         list each report type once in artifacts:reports, and give only one entry the `archive` type",
        quoted(.message)
    )]
    Duplicate {
        endpoint: String,
        artifact_type: String,
        message: String,
    },

    #[error(
        "{endpoint}: GitLab answered {status} with a redirect that cannot be followed: {problem}. Likely \
         cause: a proxy or load balancer in front of GitLab is misconfigured. Fix: set the runner's `url` to \
         the address GitLab is served at, so no redirect is needed"
    )]
    BadRedirect {
        endpoint: String,
        status: u16,
        problem: String,
    },

    #[error(
        "{endpoint}: GitLab answered 401 Unauthorized: no job token reached it. Likely cause: the token was \
         empty or a proxy removed the Job-Token header. Fix: check that the dependency's token is passed to \
         the helper and that proxies keep the Job-Token header"
    )]
    Unauthorized { endpoint: String },

    #[error(
        "{endpoint}: GitLab answered 403 Forbidden: this job may not read the artifacts of job \
         {job_id}{}. Likely cause: the job token is no longer valid (the job was canceled or finished), \
         the dependency belongs to a project this job's token may not access, or the job token allowlist \
         (CI/CD > Job token permissions) excludes this project. Fix: add this project to the other \
         project's job token allowlist, or check `needs:`/`dependencies:` name a job of this pipeline",
        quoted(.message)
    )]
    DownloadForbidden {
        endpoint: String,
        job_id: i64,
        message: String,
    },

    #[error(
        "{endpoint}: GitLab answered 404 Not Found: the dependency job {job_id} has no artifacts (they \
         expired or were never uploaded). Likely cause: the artifacts passed their `expire_in`, were deleted, \
         or the job uploaded none (it failed before its upload, or its artifacts:paths matched nothing). Fix: \
         run the pipeline again, or raise artifacts:expire_in in the job that makes them"
    )]
    NotFound { endpoint: String, job_id: i64 },

    #[error(
        "{endpoint}: object storage at {host} answered {status} to the download GitLab redirected to{}. \
         Likely cause: the presigned URL expired, the storage clock is skewed, or the storage refuses this \
         network. Fix: check GitLab's object storage settings and that {host} is reachable from the job",
        quoted(.message)
    )]
    ObjectStorage {
        endpoint: String,
        host: String,
        status: u16,
        message: String,
    },

    #[error(
        "{endpoint}: object storage at {host} could not be reached ({detail}). Likely cause: the job cannot \
         reach the storage GitLab redirects artifact downloads to. Fix: allow the job to reach {host}, or \
         set FF_USE_DIRECT_DOWNLOAD=false so artifacts come through GitLab"
    )]
    ObjectStorageUnreachable {
        endpoint: String,
        host: String,
        detail: String,
    },

    #[error("{endpoint}: GitLab answered {status}{} ({attempts} attempts). {hint}", quoted(.message))]
    Unexpected {
        endpoint: String,
        status: u16,
        message: String,
        attempts: u32,
        hint: String,
    },
}

impl ArtifactError {
    /// The HTTP status behind the error, if one was answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::TooLarge { .. } => Some(413),
            Self::UploadForbidden { .. } | Self::DownloadForbidden { .. } => Some(403),
            Self::Duplicate { .. } => Some(400),
            Self::Unauthorized { .. } => Some(401),
            Self::NotFound { .. } => Some(404),
            Self::BadRedirect { status, .. }
            | Self::ObjectStorage { status, .. }
            | Self::Unexpected { status, .. } => Some(*status),
            Self::Api(e) => e.status(),
            _ => None,
        }
    }
}

/// A byte count shown as `12345678 bytes, 11.8 MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = None;
        for u in UNITS {
            if value < 1024.0 {
                break;
            }
            value /= 1024.0;
            unit = Some(u);
        }
        match unit {
            Some(u) => write!(f, "{} bytes, {value:.1} {u}", self.0),
            None => write!(f, "{} bytes", self.0),
        }
    }
}

fn quoted(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// What one upload attempt came to.
enum Attempt<T> {
    Done(T),
    /// Worth another attempt after `wait`; `limit` is the attempt budget this failure allows.
    Retry {
        error: ArtifactError,
        wait: Duration,
        limit: u32,
    },
    Fatal(ArtifactError),
}

impl GitLabClient {
    /// `POST /jobs/:id/artifacts`: streams `upload.file` as the multipart field `file`.
    pub async fn upload_artifact(
        &self,
        upload: &ArtifactUpload<'_>,
    ) -> Result<UploadReceipt, ArtifactError> {
        let size = tokio::fs::metadata(upload.file)
            .await
            .map_err(|source| ArtifactError::ReadArchive {
                path: upload.file.to_owned(),
                source,
            })?
            .len();
        let token = job_token_value(self, &Method::POST, upload.job_token)?;
        let mut base = self.base().clone();
        let mut retargeted: Option<String> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self
                .upload_once(upload, &token, &base, size, attempt)
                .await?;
            let (error, wait, limit) = match outcome {
                UploadOutcome::Created(status) => {
                    return Ok(UploadReceipt {
                        status,
                        size,
                        attempts: attempt,
                        retargeted,
                    });
                }
                UploadOutcome::Redirected { status, location } => {
                    let endpoint = self.endpoint(&Method::POST, &artifacts_path(upload.job_id));
                    let bad = |problem: String| ArtifactError::BadRedirect {
                        endpoint: endpoint.clone(),
                        status,
                        problem,
                    };
                    if retargeted.is_some() {
                        return Err(bad(
                            "GitLab redirected the upload a second time; it is followed once"
                                .into(),
                        ));
                    }
                    let Some(location) = location else {
                        return Err(bad("the answer has no Location header".into()));
                    };
                    let target = base
                        .join(&location)
                        .map_err(|e| bad(format!("Location is not a URL ({e})")))?;
                    let origin = retarget_base(&target).ok_or_else(|| {
                        bad(format!(
                            "Location {} is not an http(s) address",
                            clean_url(&target)
                        ))
                    })?;
                    tracing::info!(
                        new_base = %clean_url(&origin),
                        "artifact upload redirected; sending it to the new address"
                    );
                    retargeted = Some(clean_url(&origin));
                    base = origin;
                    if attempt >= UPLOAD_ATTEMPTS {
                        return Err(bad(format!("no attempt was left after {attempt} attempts")));
                    }
                    continue;
                }
                UploadOutcome::Again { error, wait, limit } => (error, wait, limit),
                UploadOutcome::Failed(error) => return Err(error),
            };
            if attempt >= limit {
                return Err(error);
            }
            tracing::warn!(attempt, %error, "artifact upload failed; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }

    async fn upload_once(
        &self,
        upload: &ArtifactUpload<'_>,
        token: &HeaderValue,
        base: &Url,
        size: u64,
        attempt: u32,
    ) -> Result<UploadOutcome, ArtifactError> {
        let path = artifacts_path(upload.job_id);
        let endpoint = self.endpoint(&Method::POST, &path);
        let mut url = base.join(&path).map_err(|e| ApiError::Encode {
            endpoint: endpoint.clone(),
            detail: e.to_string(),
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(expire_in) = upload.expire_in.filter(|e| !e.is_empty()) {
                query.append_pair("expire_in", expire_in);
            }
            if !upload.format.is_empty() {
                query.append_pair("artifact_format", upload.format);
            }
            if !upload.artifact_type.is_empty() {
                query.append_pair("artifact_type", upload.artifact_type);
            }
        }
        let file = tokio::fs::File::open(upload.file).await.map_err(|source| {
            ArtifactError::ReadArchive {
                path: upload.file.to_owned(),
                source,
            }
        })?;
        let part = Part::stream_with_length(reqwest::Body::from(file), size)
            .file_name(upload.file_name.to_owned())
            .mime_str("application/octet-stream")
            .map_err(|e| ApiError::Encode {
                endpoint: endpoint.clone(),
                detail: e.to_string(),
            })?;
        let (http, client_certificate) = self.http();
        let request_id = request_id();
        let sent = http
            .post(url)
            .header(headers::REQUEST_ID, &request_id)
            .header(headers::JOB_TOKEN, token.clone())
            .multipart(Form::new().part("file", part))
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Ok(UploadOutcome::Again {
                    error: self
                        .transport_error(&endpoint, &e, client_certificate)
                        .into(),
                    wait: retry::backoff(attempt),
                    limit: UPLOAD_ATTEMPTS,
                });
            }
        };
        let status = response.status();
        let response_headers = response.headers().clone();
        let location = header(&response_headers, LOCATION.as_str()).map(str::to_owned);
        let message = gitlab_message(response, upload.job_token).await;
        tracing::debug!(%endpoint, status = status.as_u16(), attempt, "artifact upload answered");
        Ok(match status.as_u16() {
            200..=299 => UploadOutcome::Created(status_line(status)),
            307 | 308 => UploadOutcome::Redirected {
                status: status.as_u16(),
                location,
            },
            403 => UploadOutcome::Failed(ArtifactError::UploadForbidden {
                endpoint,
                job_id: upload.job_id,
                message,
            }),
            413 => UploadOutcome::Failed(ArtifactError::TooLarge {
                endpoint,
                file_name: upload.file_name.to_owned(),
                size: ByteSize(size),
                message,
            }),
            400 if message.contains("already exists") => {
                UploadOutcome::Failed(ArtifactError::Duplicate {
                    endpoint,
                    artifact_type: upload.artifact_type.to_owned(),
                    message,
                })
            }
            code => {
                let error = ArtifactError::Unexpected {
                    hint: status_hint(code, location.as_deref(), &request_id),
                    endpoint,
                    status: code,
                    message,
                    attempts: attempt,
                };
                if retry::is_retriable(code) {
                    UploadOutcome::Again {
                        error,
                        wait: retry::delay(&response_headers, attempt, SystemTime::now()),
                        limit: if code == 503 {
                            UPLOAD_ATTEMPTS_UNAVAILABLE
                        } else {
                            UPLOAD_ATTEMPTS
                        },
                    }
                } else {
                    UploadOutcome::Failed(error)
                }
            }
        })
    }

    /// `GET /jobs/:id/artifacts` with `job_token` (the dependency's token from the payload), written to
    /// `dest` (created or truncated). With `direct_download`, the first attempt asks GitLab for a redirect
    /// to object storage (`?direct_download=true`), which is followed without the job token.
    pub async fn download_artifacts(
        &self,
        job_id: i64,
        job_token: &Secret,
        dest: &Path,
        direct_download: bool,
    ) -> Result<DownloadReceipt, ArtifactError> {
        let token = job_token_value(self, &Method::GET, job_token)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let direct = direct_download && attempt == 1;
            match self
                .download_once(job_id, job_token, &token, dest, direct, attempt)
                .await?
            {
                Attempt::Done(mut receipt) => {
                    receipt.attempts = attempt;
                    return Ok(receipt);
                }
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { error, wait, limit } => {
                    if attempt >= limit {
                        return Err(error);
                    }
                    tracing::warn!(attempt, %error, "artifact download failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn download_once(
        &self,
        job_id: i64,
        job_token: &Secret,
        token: &HeaderValue,
        dest: &Path,
        direct: bool,
        attempt: u32,
    ) -> Result<Attempt<DownloadReceipt>, ArtifactError> {
        let path = artifacts_path(job_id);
        let endpoint = self.endpoint(&Method::GET, &path);
        let mut url = self.base().join(&path).map_err(|e| ApiError::Encode {
            endpoint: endpoint.clone(),
            detail: e.to_string(),
        })?;
        if direct {
            url.query_pairs_mut().append_pair("direct_download", "true");
        }
        let retry_later = |error: ArtifactError, wait: Duration| Attempt::Retry {
            error,
            wait,
            limit: DOWNLOAD_ATTEMPTS,
        };
        let (http, client_certificate) = self.http();
        let request_id = request_id();
        let response = match http
            .get(url.clone())
            .header(headers::REQUEST_ID, &request_id)
            .header(headers::JOB_TOKEN, token.clone())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let error = self.transport_error(&endpoint, &e, client_certificate);
                return Ok(retry_later(error.into(), retry::backoff(attempt)));
            }
        };
        let status = response.status().as_u16();
        tracing::debug!(%endpoint, status, attempt, direct, "artifact download answered");
        match status {
            200 => {
                return match save(response, dest).await {
                    Ok(size) => Ok(Attempt::Done(DownloadReceipt {
                        size,
                        attempts: attempt,
                        object_storage: None,
                    })),
                    Err(SaveError::Write(source)) => Err(ArtifactError::WriteArchive {
                        path: dest.to_owned(),
                        source,
                    }),
                    Err(SaveError::Read(e)) => Ok(retry_later(
                        self.transport_error(&endpoint, &e, client_certificate)
                            .into(),
                        retry::backoff(attempt),
                    )),
                };
            }
            301 | 302 | 303 | 307 | 308 => {}
            401 => return Ok(Attempt::Fatal(ArtifactError::Unauthorized { endpoint })),
            403 => {
                let message = gitlab_message(response, job_token).await;
                return Ok(Attempt::Fatal(ArtifactError::DownloadForbidden {
                    endpoint,
                    job_id,
                    message,
                }));
            }
            404 => return Ok(Attempt::Fatal(ArtifactError::NotFound { endpoint, job_id })),
            code => {
                let response_headers = response.headers().clone();
                let message = gitlab_message(response, job_token).await;
                let error = ArtifactError::Unexpected {
                    hint: status_hint(code, None, &request_id),
                    endpoint,
                    status: code,
                    message,
                    attempts: attempt,
                };
                let wait = retry::delay(&response_headers, attempt, SystemTime::now());
                return Ok(retry_later(error, wait));
            }
        }

        // A redirect, normally to object storage with a presigned URL.
        let bad = |problem: String| {
            Attempt::Fatal(ArtifactError::BadRedirect {
                endpoint: endpoint.clone(),
                status,
                problem,
            })
        };
        let Some(location) = header(response.headers(), LOCATION.as_str()) else {
            return Ok(bad("the answer has no Location header".into()));
        };
        let target = match url.join(location) {
            Ok(t) if matches!(t.scheme(), "http" | "https") && t.host_str().is_some() => t,
            Ok(t) => {
                return Ok(bad(format!(
                    "Location {} is not an http(s) address",
                    clean_url(&t)
                )));
            }
            Err(e) => return Ok(bad(format!("Location is not a URL ({e})"))),
        };
        drop(response);
        let host = target.host_str().unwrap_or_default().to_owned();
        tracing::info!(%host, "direct download from object storage");
        let storage = self.storage_http(&host, target.scheme() == "https")?;
        let response = match storage.get(target.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                let error = ArtifactError::ObjectStorageUnreachable {
                    endpoint,
                    host,
                    detail: scrub(error_chain(&e).as_bytes(), &[target.as_str()]),
                };
                return Ok(retry_later(error, retry::backoff(attempt)));
            }
        };
        let status = response.status().as_u16();
        if status != 200 {
            let retriable = retry::is_retriable(status);
            let wait = retry::delay(response.headers(), attempt, SystemTime::now());
            let message = storage_message(response, &target).await;
            let error = ArtifactError::ObjectStorage {
                endpoint,
                host,
                status,
                message,
            };
            return Ok(if retriable {
                retry_later(error, wait)
            } else {
                Attempt::Fatal(error)
            });
        }
        match save(response, dest).await {
            Ok(size) => Ok(Attempt::Done(DownloadReceipt {
                size,
                attempts: attempt,
                object_storage: Some(host),
            })),
            Err(SaveError::Write(source)) => Err(ArtifactError::WriteArchive {
                path: dest.to_owned(),
                source,
            }),
            Err(SaveError::Read(e)) => Ok(retry_later(
                ArtifactError::ObjectStorageUnreachable {
                    endpoint,
                    host,
                    detail: scrub(error_chain(&e).as_bytes(), &[target.as_str()]),
                },
                retry::backoff(attempt),
            )),
        }
    }
}

enum UploadOutcome {
    Created(String),
    Redirected {
        status: u16,
        location: Option<String>,
    },
    Again {
        error: ArtifactError,
        wait: Duration,
        limit: u32,
    },
    Failed(ArtifactError),
}

fn artifacts_path(job_id: i64) -> String {
    format!("jobs/{job_id}/artifacts")
}

fn request_id() -> String {
    hex::encode(rand::rng().random::<[u8; 16]>())
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn job_token_value(
    client: &GitLabClient,
    method: &Method,
    token: &Secret,
) -> Result<HeaderValue, ApiError> {
    let mut value = HeaderValue::from_str(token.expose()).map_err(|_| ApiError::Encode {
        endpoint: client.endpoint(method, "jobs/:id/artifacts"),
        detail: format!(
            "the {} contains characters an HTTP header cannot carry (a line break?); pass the job's token \
             unchanged",
            TokenKind::classify(token.expose())
        ),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `201 Created`-style status line.
fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The longest error body read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

async fn limited_body(mut response: Response) -> Vec<u8> {
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

/// GitLab's `{"message": …}` (a string or an object of lists), else the body, scrubbed of the token.
async fn gitlab_message(response: Response, token: &Secret) -> String {
    let body = limited_body(response).await;
    let text = match serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").cloned())
    {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => return scrub(&body, &[token.expose()]),
    };
    scrub(text.as_bytes(), &[token.expose()])
}

/// An object storage error body (S3's `<Error><Code>…</Code><Message>…</Message>`), never showing the
/// presigned URL or its signature.
async fn storage_message(response: Response, target: &Url) -> String {
    let body = limited_body(response).await;
    let signature: Vec<String> = target
        .query_pairs()
        .filter(|(k, _)| k.to_ascii_lowercase().contains("signature"))
        .map(|(_, v)| v.into_owned())
        .collect();
    let mut secrets: Vec<&str> = signature.iter().map(String::as_str).collect();
    let full = target.as_str();
    secrets.push(full);
    scrub(&body, &secrets)
}

/// `target`'s scheme, host and port with the path `/api/v4/`: where a 307 moves the upload (gitlab-runner
/// keeps only the origin of the Location).
fn retarget_base(target: &Url) -> Option<Url> {
    if !matches!(target.scheme(), "http" | "https") || target.host_str().is_none() {
        return None;
    }
    let mut base = target.clone();
    base.set_query(None);
    base.set_fragment(None);
    base.set_path("/api/v4/");
    Some(base)
}

/// A URL for messages: no user info, no query (a presigned URL's signature lives there).
pub fn clean_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

enum SaveError {
    Read(reqwest::Error),
    Write(io::Error),
}

/// Streams a response body into `dest`, replacing what was there.
async fn save(mut response: Response, dest: &Path) -> Result<u64, SaveError> {
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(SaveError::Write)?;
    let mut size = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(SaveError::Read)? {
        file.write_all(&chunk).await.map_err(SaveError::Write)?;
        size += chunk.len() as u64;
    }
    file.flush().await.map_err(SaveError::Write)?;
    file.sync_all().await.map_err(SaveError::Write)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(ByteSize(512).to_string(), "512 bytes");
        assert_eq!(ByteSize(2048).to_string(), "2048 bytes, 2.0 KiB");
        assert_eq!(
            ByteSize(150 * 1024 * 1024).to_string(),
            "157286400 bytes, 150.0 MiB"
        );
    }

    #[test]
    fn retargeting_keeps_only_the_origin() {
        let target = Url::parse("https://u:p@gitlab2.example.com:8443/some/path?x=1#f").unwrap();
        assert_eq!(
            retarget_base(&target).unwrap().as_str(),
            "https://u:p@gitlab2.example.com:8443/api/v4/"
        );
        assert!(retarget_base(&Url::parse("ftp://x/").unwrap()).is_none());
    }

    #[test]
    fn clean_urls_have_no_signature_or_user_info() {
        let url = Url::parse(
            "https://user:pw@s3.example.com/bucket/obj?X-Amz-Signature=abc123&X-Amz-Credential=k",
        )
        .unwrap();
        let shown = clean_url(&url);
        assert_eq!(shown, "https://s3.example.com/bucket/obj");
    }
}
