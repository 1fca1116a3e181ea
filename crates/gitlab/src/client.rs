//! `GitLabClient`: one per `[[runners]]` entry (URL + TLS settings).

use crate::error::ApiError;
use crate::reply::*;
use bytes::Bytes;
use glrunner_protocol::Secret;
use glrunner_protocol::request::{
    JobRequest, RegisterRunnerRequest, RunnerDetails, UpdateJobRequest, VerifyRunnerRequest,
};
use std::path::PathBuf;
use std::time::Duration;

/// How to reach one GitLab instance.
#[derive(Debug, Clone, Default)]
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

/// A client for the runner endpoints of one GitLab. Cheap to clone.
#[derive(Clone)]
pub struct GitLabClient {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    _settings: ClientSettings,
}

impl GitLabClient {
    pub fn new(settings: ClientSettings) -> Result<Self, ApiError> {
        let _ = settings;
        todo!("build reqwest client with rustls config")
    }

    /// The API base, e.g. `https://gitlab.example.com/api/v4/`.
    pub fn api_base(&self) -> &str {
        let _ = &self.inner;
        todo!()
    }

    /// `POST /jobs/request`.
    pub async fn request_job(&self, req: &JobRequest) -> Result<JobRequestReply, ApiError> {
        let _ = req;
        todo!()
    }

    /// `PUT /jobs/:id`.
    pub async fn update_job(&self, job_id: i64, req: &UpdateJobRequest) -> Result<UpdateJobReply, ApiError> {
        let _ = (job_id, req);
        todo!()
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
        let _ = (job_id, job_token, offset, body, debug_trace);
        todo!()
    }

    /// `POST /runners` (legacy registration with a registration token).
    pub async fn register_runner(&self, req: &RegisterRunnerRequest) -> Result<RunnerDetails, ApiError> {
        let _ = req;
        todo!()
    }

    /// `POST /runners/verify`.
    pub async fn verify_runner(&self, req: &VerifyRunnerRequest) -> Result<VerifyReply, ApiError> {
        let _ = req;
        todo!()
    }

    /// `DELETE /runners`: deletes the whole runner (legacy tokens).
    pub async fn unregister_runner(&self, token: &Secret) -> Result<(), ApiError> {
        let _ = token;
        todo!()
    }

    /// `DELETE /runners/managers`: removes only this host's manager of a `glrt-` runner.
    pub async fn unregister_manager(&self, token: &Secret, system_id: &str) -> Result<(), ApiError> {
        let _ = (token, system_id);
        todo!()
    }

    /// `POST /runners/reset_authentication_token`.
    pub async fn reset_token(&self, token: &Secret) -> Result<ResetTokenReply, ApiError> {
        let _ = token;
        todo!()
    }
}
