//! `GitLabClient`: one per `[[runners]]` entry (URL + TLS settings). Sends every runner endpoint with
//! gitlab-runner's headers and bodies, retries per [`crate::retry`], and maps each endpoint's statuses onto
//! [`crate::reply`] types or an explained [`ApiError`].

use crate::error::{ApiError, error_sources, forbidden_advice, redact_quoted, scrub, status_hint};
use crate::reply::*;
use crate::retry;
use crate::tls;
use bytes::Bytes;
use glrunner_protocol::headers;
use glrunner_protocol::request::{
    JobRequest, RegisterRunnerRequest, RemoteJobStatus, ResetTokenResponse, RunnerDetails,
    TokenRequest, UnregisterManagerRequest, UpdateJobRequest, VerifyRunnerRequest,
};
use glrunner_protocol::{JobIdentity, JobResponse, Secret, TokenKind};
use rand::Rng;
use reqwest::Method;
use reqwest::header::{
    ACCEPT, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RANGE,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use url::Url;

/// gitlab-runner's dial timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// gitlab-runner's overall client timeout; long polling holds `/jobs/request` for about 50 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The longest silence while waiting for an answer (gitlab-runner's response-header timeout).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `connection_max_age` when unset.
pub const DEFAULT_CONNECTION_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// `X-GitLab-Trace-Update-Interval` is capped here, as gitlab-runner does.
pub const MAX_UPDATE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The largest response body read; a job payload is far smaller.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Idle connections are closed after this (Go's `IdleConnTimeout`, as gitlab-runner uses it).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How to reach one GitLab instance.
#[derive(Clone, Default)]
pub struct ClientSettings {
    /// The runner's `url` from config.toml; a trailing `/` or `/ci` is stripped, like gitlab-runner.
    pub url: String,
    /// `tls-ca-file`: extra trusted CAs (PEM), added to the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// `tls-cert-file` and `tls-key-file`: client certificate.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// glrunner's `tls_server_name`: verify the server certificate against this name instead of the
    /// URL's host (GitLab reached by IP or an internal name).
    pub tls_server_name: Option<String>,
    /// The certificate directory (`<dir>/<host>.crt`, `<host>.auth.crt`, `<host>.auth.key`), used when
    /// the corresponding file keys are unset.
    pub certs_dir: Option<PathBuf>,
    /// Idle connections older than this are not reused (`connection_max_age`, default 15 min).
    pub connection_max_age: Option<Duration>,
    /// `User-Agent` header, e.g. `glrunner 0.1.0 (linux/amd64)`.
    pub user_agent: String,
}

// By hand: a password in `url` (`https://user:pw@host/`) must not reach a log.
impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("url", &without_user_info(&self.url))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_server_name", &self.tls_server_name)
            .field("certs_dir", &self.certs_dir)
            .field("connection_max_age", &self.connection_max_age)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// A client for the runner endpoints of one GitLab. Cheap to clone.
#[derive(Clone)]
pub struct GitLabClient {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClientSettings,
    /// Where requests go; may carry user info from `url`.
    base: Url,
    /// `base` without user info, for messages.
    base_shown: String,
    /// The URL's host without brackets or port (the name of `<certs_dir>/<host>.crt`).
    host: String,
    /// `host:port`, for "connection refused" messages.
    address: String,
    https: bool,
    max_age: Duration,
    http: Mutex<Http>,
}

/// The inner HTTP client, rebuilt when older than `connection_max_age` so no connection outlives it and
/// rotated CA and certificate files are read again.
struct Http {
    client: reqwest::Client,
    built: Instant,
    ca_file: Option<PathBuf>,
    client_certificate: bool,
}

impl std::fmt::Debug for GitLabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabClient")
            .field("api_base", &self.inner.base_shown)
            .finish()
    }
}

/// Turns a configured `url` into the API base: trailing `/` and `/ci` stripped, then `/api/v4/`.
pub fn api_base_url(configured: &str) -> Result<Url, ApiError> {
    let invalid = |problem: String| ApiError::InvalidUrl {
        value: without_user_info(configured),
        problem,
    };
    let mut trimmed = configured.trim().trim_end_matches('/');
    if let Some(stripped) = trimmed.strip_suffix("/ci") {
        trimmed = stripped;
    }
    if trimmed.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    let mut url = Url::parse(trimmed).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => invalid(format!(
            "it has no scheme; write it as `https://{trimmed}/`"
        )),
        other => invalid(other.to_string()),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme `{}` is not supported, only http and https are",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(invalid("it names no host".to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "it must not contain a query (`?…`) or fragment (`#…`)".to_owned(),
        ));
    }
    let path = format!("{}/api/v4/", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// `value` with any `user:password@` removed from its authority, parsable or not.
fn without_user_info(value: &str) -> String {
    let value = value.trim();
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), value),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}{host}{path}"),
        None => value.to_owned(),
    }
}

fn build_http(settings: &ClientSettings, host: &str, https: bool) -> Result<Http, ApiError> {
    let material = tls::client_config(settings, host, https)?;
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        // A redirect would carry Runner-Token/Job-Token to wherever it points; it is explained instead.
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(material.config);
    if !settings.user_agent.is_empty() {
        builder = builder.user_agent(settings.user_agent.clone());
    }
    let client = builder.build().map_err(|e| ApiError::ClientBuild {
        detail: error_chain(&e),
    })?;
    Ok(Http {
        client,
        built: Instant::now(),
        ca_file: material.ca_file,
        client_certificate: material.client_certificate,
    })
}

/// Which token authenticates a call.
enum Auth<'a> {
    /// `Runner-Token` header (the body carries `token` too).
    Runner(&'a Secret),
    /// `Job-Token` header.
    Job(&'a Secret),
}

enum Payload {
    Json(Bytes),
    Text(Bytes),
}

struct Call<'a> {
    method: Method,
    /// Relative to the API base, e.g. `jobs/request`.
    path: String,
    query: Option<(&'static str, String)>,
    auth: Auth<'a>,
    payload: Payload,
    content_range: Option<String>,
    expect_json: bool,
}

/// The final answer to a call, after retries.
struct Answer {
    endpoint: String,
    request_id: String,
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    saw_retriable: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }

    fn job_status(&self) -> Option<RemoteJobStatus> {
        self.header(headers::JOB_STATUS)
            .filter(|v| !v.is_empty())
            .map(RemoteJobStatus::parse)
    }

    fn update_interval(&self) -> Option<Duration> {
        let secs: i64 = self.header(headers::TRACE_UPDATE_INTERVAL)?.parse().ok()?;
        let secs = u64::try_from(secs).ok().filter(|s| *s > 0)?;
        Some(Duration::from_secs(secs).min(MAX_UPDATE_INTERVAL))
    }

    /// The error for a status the endpoint does not expect.
    fn unexpected(&self, token: &Secret) -> ApiError {
        ApiError::UnexpectedStatus {
            endpoint: self.endpoint.clone(),
            status: self.status,
            body: scrub(&self.body, &[token.expose()]),
            hint: status_hint(
                self.status,
                self.header(LOCATION.as_str()),
                &self.request_id,
            ),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Decode {
            endpoint: self.endpoint.clone(),
            status: self.status,
            detail: redact_quoted(&e.to_string()),
        })
    }

    fn forbidden(&self, token: &Secret, registering: bool) -> ApiError {
        let token_kind = TokenKind::classify(token.expose());
        ApiError::Forbidden {
            endpoint: self.endpoint.clone(),
            token_kind,
            advice: forbidden_advice(token_kind, registering),
        }
    }
}

impl GitLabClient {
    /// A client for `settings.url`. Reads the TLS files now, so a bad file is reported at start-up.
    pub fn new(settings: ClientSettings) -> Result<Self, ApiError> {
        let base = api_base_url(&settings.url)?;
        let host = match base.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => {
                return Err(ApiError::InvalidUrl {
                    value: settings.url.clone(),
                    problem: "it names no host".into(),
                });
            }
        };
        let address = format!(
            "{}:{}",
            base.host_str().unwrap_or(&host),
            base.port_or_known_default().unwrap_or(0)
        );
        let https = base.scheme() == "https";
        let base_shown = without_user_info(base.as_str());
        let http = build_http(&settings, &host, https)?;
        let max_age = settings
            .connection_max_age
            .unwrap_or(DEFAULT_CONNECTION_MAX_AGE);
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                base,
                base_shown,
                host,
                address,
                https,
                max_age,
                http: Mutex::new(http),
            }),
        })
    }

    /// The API base, e.g. `https://gitlab.example.com/api/v4/`.
    pub fn api_base(&self) -> &str {
        &self.inner.base_shown
    }

    /// The API base requests go to (may carry user info from `url`).
    pub(crate) fn base(&self) -> &Url {
        &self.inner.base
    }

    /// An HTTP client for object storage a download is redirected to: the same trusted CAs, but no
    /// client certificate and no `tls_server_name`, which belong to GitLab's host only.
    pub(crate) fn storage_http(
        &self,
        host: &str,
        https: bool,
    ) -> Result<reqwest::Client, ApiError> {
        let settings = &self.inner.settings;
        let storage = ClientSettings {
            url: String::new(),
            tls_ca_file: settings.tls_ca_file.clone(),
            certs_dir: settings.certs_dir.clone(),
            user_agent: settings.user_agent.clone(),
            ..ClientSettings::default()
        };
        Ok(build_http(&storage, host, https)?.client)
    }

    /// The CA file trusted beyond the system roots (`tls-ca-file` or `<certs_dir>/<host>.crt`), if any:
    /// what jobs get as `CI_SERVER_TLS_CA_FILE`.
    pub fn tls_ca_file(&self) -> Option<PathBuf> {
        self.inner
            .http
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ca_file
            .clone()
    }

    /// The HTTP client to use now, rebuilt first when older than `connection_max_age`.
    pub(crate) fn http(&self) -> (reqwest::Client, bool) {
        let inner = &self.inner;
        let mut slot = inner.http.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.built.elapsed() >= inner.max_age {
            match build_http(&inner.settings, &inner.host, inner.https) {
                Ok(fresh) => *slot = fresh,
                Err(error) => {
                    // A CA file caught mid-rotation must not stop job updates: keep the working client.
                    tracing::warn!(%error, "could not rebuild the GitLab HTTP client; keeping the previous one");
                    slot.built = Instant::now();
                }
            }
        }
        (slot.client.clone(), slot.client_certificate)
    }

    pub(crate) fn endpoint(&self, method: &Method, path: &str) -> String {
        format!("{method} {}{path}", self.inner.base.path())
    }

    fn json<T: serde::Serialize>(
        &self,
        method: &Method,
        path: &str,
        body: &T,
    ) -> Result<Payload, ApiError> {
        serde_json::to_vec(body)
            .map(|v| Payload::Json(v.into()))
            .map_err(|e| ApiError::Encode {
                endpoint: self.endpoint(method, path),
                detail: e.to_string(),
            })
    }

    /// Sends a call, retrying retriable statuses; transport errors come back at once.
    async fn call(&self, call: Call<'_>) -> Result<Answer, ApiError> {
        let endpoint = self.endpoint(&call.method, &call.path);
        let mut url = self
            .inner
            .base
            .join(&call.path)
            .map_err(|e| ApiError::Encode {
                endpoint: endpoint.clone(),
                detail: e.to_string(),
            })?;
        if let Some((key, value)) = &call.query {
            url.query_pairs_mut().append_pair(key, value);
        }
        let (token_header, secret) = match &call.auth {
            Auth::Runner(s) => (headers::RUNNER_TOKEN, *s),
            Auth::Job(s) => (headers::JOB_TOKEN, *s),
        };
        let mut token_value = HeaderValue::from_str(secret.expose()).map_err(|_| ApiError::Encode {
            endpoint: endpoint.clone(),
            detail: format!(
                "the {} contains characters an HTTP header cannot carry (a line break or quote?); fix the \
                 `token` value",
                TokenKind::classify(secret.expose())
            ),
        })?;
        token_value.set_sensitive(true);
        let request_id = hex::encode(rand::rng().random::<[u8; 16]>());

        let mut saw_retriable = false;
        let mut attempt = 1;
        loop {
            let (http, client_certificate) = self.http();
            let mut request = http
                .request(call.method.clone(), url.clone())
                .header(headers::REQUEST_ID, &request_id)
                .header(token_header, token_value.clone());
            request = match &call.payload {
                Payload::Json(body) => request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone()),
                Payload::Text(body) => request
                    .header(CONTENT_TYPE, "text/plain")
                    .body(body.clone()),
            };
            if call.expect_json {
                request = request.header(ACCEPT, "application/json");
            }
            if let Some(range) = &call.content_range {
                request = request.header(CONTENT_RANGE, range);
            }

            let response = request
                .send()
                .await
                .map_err(|e| self.transport_error(&endpoint, &e, client_certificate))?;
            let status = response.status().as_u16();
            let retriable = retry::is_retriable(status);
            saw_retriable |= retriable;
            let answered_id = response.headers().get(headers::REQUEST_ID);
            tracing::debug!(
                endpoint = %endpoint,
                status,
                attempt,
                request_id = %request_id,
                gitlab_request_id = answered_id.and_then(|v| v.to_str().ok()),
                "GitLab answered"
            );
            if retriable && attempt < retry::MAX_ATTEMPTS {
                let wait = retry::delay(response.headers(), attempt, SystemTime::now());
                tracing::warn!(
                    endpoint = %endpoint,
                    status,
                    attempt,
                    request_id = %request_id,
                    "GitLab answered {status}; retrying in {wait:?}"
                );
                drop(response);
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }

            let headers = response.headers().clone();
            let body = read_body(response).await.map_err(|e| match e {
                BodyError::Transport(e) => self.transport_error(&endpoint, &e, client_certificate),
                BodyError::TooLarge => ApiError::Decode {
                    endpoint: endpoint.clone(),
                    status,
                    detail: format!("the body is larger than {MAX_BODY} bytes"),
                },
            })?;
            return Ok(Answer {
                endpoint,
                request_id,
                status,
                headers,
                body,
                saw_retriable,
            });
        }
    }

    /// Explains a failed exchange: certificate, handshake, refused, DNS, timeout or a broken connection.
    pub(crate) fn transport_error(
        &self,
        endpoint: &str,
        error: &reqwest::Error,
        client_certificate: bool,
    ) -> ApiError {
        let endpoint = endpoint.to_owned();
        if let Some(problem) = tls::find_certificate_problem(error) {
            return ApiError::Certificate {
                endpoint,
                problem: Box::new(problem.clone()),
            };
        }
        if let Some(rustls_error) = tls::find_rustls_error(error) {
            return ApiError::Handshake {
                endpoint,
                host: self.inner.address.clone(),
                detail: rustls_error.to_string(),
                hint: handshake_hint(rustls_error, client_certificate),
            };
        }
        if error.is_timeout() {
            let stage = if error.is_connect() {
                "connecting"
            } else {
                "waiting for GitLab's answer"
            };
            return ApiError::Timeout { endpoint, stage };
        }
        let chain = error_sources(error);
        let refused = chain.iter().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        });
        if refused {
            return ApiError::ConnectionRefused {
                endpoint,
                address: self.inner.address.clone(),
                base: self.inner.base_shown.clone(),
            };
        }
        let detail = error_chain(error);
        if chain.iter().any(|e| e.to_string().starts_with("dns error")) {
            return ApiError::Dns {
                endpoint,
                host: self.inner.host.clone(),
                detail,
            };
        }
        ApiError::Connection { endpoint, detail }
    }

    /// `POST /jobs/request`.
    pub async fn request_job(&self, req: &JobRequest) -> Result<JobRequestReply, ApiError> {
        let path = "jobs/request";
        let answer = self
            .call(Call {
                method: Method::POST,
                path: path.to_owned(),
                query: None,
                auth: Auth::Runner(&req.token),
                payload: self.json(&Method::POST, path, req)?,
                content_range: None,
                expect_json: true,
            })
            .await?;
        let last_update = answer
            .header(headers::LAST_UPDATE)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let outcome = match answer.status {
            201 => decode_job(&answer)?,
            204 => JobRequestOutcome::NoJob,
            403 => JobRequestOutcome::Forbidden,
            409 => JobRequestOutcome::Conflict,
            429 => JobRequestOutcome::RateLimited {
                retry_after: retry::server_wait(&answer.headers, SystemTime::now()),
            },
            status => JobRequestOutcome::Unexpected {
                status,
                body: scrub(&answer.body, &[req.token.expose()]),
            },
        };
        Ok(JobRequestReply {
            outcome,
            last_update,
            saw_retriable: answer.saw_retriable,
        })
    }

    /// `PUT /jobs/:id`.
    pub async fn update_job(
        &self,
        job_id: i64,
        req: &UpdateJobRequest,
    ) -> Result<UpdateJobReply, ApiError> {
        let path = format!("jobs/{job_id}");
        let answer = self
            .call(Call {
                payload: self.json(&Method::PUT, &path, req)?,
                method: Method::PUT,
                path,
                query: None,
                auth: Auth::Job(&req.token),
                content_range: None,
                expect_json: false,
            })
            .await?;
        Ok(UpdateJobReply {
            status: answer.status,
            job_status: answer.job_status(),
            update_interval: answer.update_interval(),
        })
    }

    /// `PATCH /jobs/:id/trace` with `body` starting at byte `offset` of the trace.
    pub async fn patch_trace(
        &self,
        job_id: i64,
        job_token: &Secret,
        offset: u64,
        body: Bytes,
        debug_trace: bool,
    ) -> Result<PatchTraceReply, ApiError> {
        let content_range = headers::content_range(offset, body.len() as u64);
        let answer = self
            .call(Call {
                method: Method::PATCH,
                path: format!("jobs/{job_id}/trace"),
                query: Some(("debug_trace", debug_trace.to_string())),
                auth: Auth::Job(job_token),
                payload: Payload::Text(body),
                content_range: Some(content_range),
                expect_json: false,
            })
            .await?;
        Ok(PatchTraceReply {
            status: answer.status,
            range_end: answer.header(RANGE.as_str()).and_then(headers::range_end),
            job_status: answer.job_status(),
            update_interval: answer.update_interval(),
        })
    }

    /// `POST /runners` (legacy registration with a registration token).
    pub async fn register_runner(
        &self,
        req: &RegisterRunnerRequest,
    ) -> Result<RunnerDetails, ApiError> {
        let answer = self
            .runner_call(Method::POST, "runners", &req.token, req, true)
            .await?;
        match answer.status {
            200 | 201 => answer.decode(),
            403 => Err(answer.forbidden(&req.token, true)),
            410 => Err(ApiError::RegistrationDisabled {
                endpoint: answer.endpoint,
            }),
            _ => Err(answer.unexpected(&req.token)),
        }
    }

    /// `POST /runners/verify`.
    pub async fn verify_runner(&self, req: &VerifyRunnerRequest) -> Result<VerifyReply, ApiError> {
        let answer = self
            .runner_call(Method::POST, "runners/verify", &req.token, req, true)
            .await?;
        match answer.status {
            // Older GitLab answers a plain-text "200"; newer ones the runner's details.
            200 => Ok(VerifyReply::Valid(
                serde_json::from_slice::<RunnerDetails>(&answer.body).ok(),
            )),
            403 => Ok(VerifyReply::Invalid),
            _ => Err(answer.unexpected(&req.token)),
        }
    }

    /// `DELETE /runners`: deletes the whole runner (legacy tokens).
    pub async fn unregister_runner(&self, token: &Secret) -> Result<(), ApiError> {
        let body = TokenRequest {
            token: token.clone(),
        };
        let answer = self
            .runner_call(Method::DELETE, "runners", token, &body, false)
            .await?;
        match answer.status {
            200..=299 => Ok(()),
            403 => Err(answer.forbidden(token, false)),
            _ => Err(answer.unexpected(token)),
        }
    }

    /// `DELETE /runners/managers`: removes only this host's manager of a `glrt-` runner.
    pub async fn unregister_manager(
        &self,
        token: &Secret,
        system_id: &str,
    ) -> Result<(), ApiError> {
        let body = UnregisterManagerRequest {
            token: token.clone(),
            system_id: system_id.to_owned(),
        };
        let answer = self
            .runner_call(Method::DELETE, "runners/managers", token, &body, false)
            .await?;
        match answer.status {
            200..=299 => Ok(()),
            403 => Err(answer.forbidden(token, false)),
            404 => Err(ApiError::ManagerNotFound {
                endpoint: answer.endpoint,
                system_id: system_id.to_owned(),
            }),
            _ => Err(answer.unexpected(token)),
        }
    }

    /// `POST /runners/reset_authentication_token`.
    pub async fn reset_token(&self, token: &Secret) -> Result<ResetTokenReply, ApiError> {
        let body = TokenRequest {
            token: token.clone(),
        };
        let answer = self
            .runner_call(
                Method::POST,
                "runners/reset_authentication_token",
                token,
                &body,
                true,
            )
            .await?;
        match answer.status {
            200 | 201 => answer.decode::<ResetTokenResponse>(),
            403 => Err(answer.forbidden(token, false)),
            _ => Err(answer.unexpected(token)),
        }
    }

    /// A runner-token endpoint with a JSON body (which carries `token` as well).
    async fn runner_call<T: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        token: &Secret,
        body: &T,
        expect_json: bool,
    ) -> Result<Answer, ApiError> {
        self.call(Call {
            payload: self.json(&method, path, body)?,
            method,
            path: path.to_owned(),
            query: None,
            auth: Auth::Runner(token),
            content_range: None,
            expect_json,
        })
        .await
    }
}

/// A 201 payload: the job, or — when it does not decode — its id and token so it can be failed.
fn decode_job(answer: &Answer) -> Result<JobRequestOutcome, ApiError> {
    let error = match serde_json::from_slice::<JobResponse>(&answer.body) {
        Ok(job) => return Ok(JobRequestOutcome::Job(Box::new(job))),
        Err(e) => redact_quoted(&e.to_string()),
    };
    let identity = serde_json::from_slice::<JobIdentity>(&answer.body)
        .ok()
        .or_else(|| identity_from_value(&answer.body))
        .filter(|id| id.id > 0 && !id.token.is_empty());
    match identity {
        Some(identity) => {
            tracing::warn!(job_id = identity.id, %error, "GitLab assigned a job whose payload does not decode");
            Ok(JobRequestOutcome::UndecodableJob { identity, error })
        }
        None => Err(ApiError::UndecodableJobIdentity {
            endpoint: answer.endpoint.clone(),
            detail: error,
        }),
    }
}

/// The id and token from any JSON object, whatever the other fields hold (`id` may be a string).
fn identity_from_value(body: &[u8]) -> Option<JobIdentity> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = match value.get("id")? {
        serde_json::Value::Number(n) => n.as_i64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let token = value.get("token")?.as_str()?;
    Some(JobIdentity {
        id,
        token: Secret::new(token),
    })
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

async fn read_body(mut response: reqwest::Response) -> Result<Bytes, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

fn handshake_hint(error: &rustls::Error, client_certificate: bool) -> String {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::AlertReceived(
            Alert::CertificateRequired | Alert::HandshakeFailure | Alert::BadCertificate | Alert::UnknownCA,
        ) if !client_certificate => "Likely cause: GitLab (or a proxy before it) requires a client certificate. \
             Fix: set `tls-cert-file` and `tls-key-file` in this [[runners]] entry (or put `<host>.auth.crt` and \
             `<host>.auth.key` in the certificate directory)"
            .to_owned(),
        rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied,
        ) => "Likely cause: the server rejected glrunner's client certificate. Fix: use a `tls-cert-file` \
             issued by a CA the server trusts, still valid, with its matching `tls-key-file`"
            .to_owned(),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => "Likely cause: the port \
             does not speak TLS (http vs https in `url`?) or something intercepts the connection. Fix: check the \
             scheme and port in `url`"
            .to_owned(),
        _ => "Fix: check the TLS setup of GitLab and of any proxy before it, e.g. with `openssl s_client \
             -connect <host>:<port>`"
            .to_owned(),
    }
}

/// The messages of an error's sources, outermost first, without reqwest's own line (it repeats the URL).
pub(crate) fn error_chain(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in error_sources(error).into_iter().skip(1) {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        parts.push(error.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_strips_slash_and_ci_like_gitlab_runner() {
        let cases = [
            (
                "https://gitlab.example.com",
                "https://gitlab.example.com/api/v4/",
            ),
            (
                "https://gitlab.example.com/",
                "https://gitlab.example.com/api/v4/",
            ),
            (
                "https://gitlab.example.com/ci",
                "https://gitlab.example.com/api/v4/",
            ),
            (
                "https://gitlab.example.com/ci/",
                "https://gitlab.example.com/api/v4/",
            ),
            (
                "  http://10.0.0.5:8080/gitlab/ ",
                "http://10.0.0.5:8080/gitlab/api/v4/",
            ),
            (
                "https://gitlab.example.com/sub/ci",
                "https://gitlab.example.com/sub/api/v4/",
            ),
            ("https://[::1]:8443", "https://[::1]:8443/api/v4/"),
        ];
        for (configured, base) in cases {
            assert_eq!(
                api_base_url(configured).expect(configured).as_str(),
                base,
                "{configured}"
            );
        }
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        for (configured, part) in [
            ("ftp://gitlab.example.com", "scheme `ftp`"),
            ("gitlab.example.com", "no scheme"),
            ("", "empty"),
            ("https://gitlab.example.com/?x=1", "query"),
            ("unix:/run/gitlab.sock", "scheme `unix`"),
        ] {
            let error = api_base_url(configured).expect_err(configured).to_string();
            assert!(
                error.contains(part) && error.contains("`url"),
                "{configured}: {error}"
            );
        }
    }

    #[test]
    fn user_info_never_reaches_messages() {
        let client = GitLabClient::new(ClientSettings {
            url: "https://runner:s3cr3tpw@gitlab.example.com/".into(),
            ..Default::default()
        })
        .expect("client");
        assert_eq!(client.api_base(), "https://gitlab.example.com/api/v4/");
        assert!(!format!("{client:?}").contains("s3cr3tpw"));
        let settings = ClientSettings {
            url: "https://u:s3cr3tpw@h/".into(),
            ..Default::default()
        };
        assert!(
            !format!("{settings:?}").contains("s3cr3tpw"),
            "{settings:?}"
        );
        let error = api_base_url("ftp://u:s3cr3tpw@host/")
            .expect_err("ftp")
            .to_string();
        assert!(!error.contains("s3cr3tpw"), "{error}");
        let error = api_base_url("u:s3cr3tpw@host")
            .expect_err("no scheme")
            .to_string();
        assert!(!error.contains("s3cr3tpw"), "{error}");
    }

    #[test]
    fn identity_is_read_from_any_object() {
        let id =
            identity_from_value(br#"{"id":"42","token":"glcbt-x","steps":7}"#).expect("identity");
        assert_eq!((id.id, id.token.expose()), (42, "glcbt-x"));
        assert!(identity_from_value(b"not json").is_none());
    }
}
