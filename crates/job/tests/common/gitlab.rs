//! A GitLab test coordinator for the get_sources tests: projects served over smart HTTP with job-token
//! auth, jobs taken as a runner takes them (so their tokens open the repositories), and an HTTPS front
//! signed by a test CA.

use glrunner_coordinator::{Coordinator, JobSpec, Options, RunnerSpec};
use glrunner_protocol::JobResponse;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Every feature a runner may advertise except two-phase commit, so a taken job is running at once.
const FEATURES: &[&str] = &[
    "variables",
    "artifacts",
    "cache",
    "fallback_cache_keys",
    "upload_multiple_artifacts",
    "upload_raw_artifacts",
    "refspecs",
    "masking",
    "raw_variables",
    "artifacts_exclude",
    "multi_build_steps",
    "return_exit_code",
    "cancelable",
];

pub struct GitLab {
    pub c: Coordinator,
    runner_token: String,
    http: reqwest::Client,
}

impl GitLab {
    pub async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = Coordinator::start(Options::default())
            .await
            .expect("the coordinator starts on 127.0.0.1");
        let runner = c.add_runner(RunnerSpec::created());
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self {
            runner_token: runner.token.expose().to_owned(),
            c,
            http,
        }
    }

    /// Enqueue `spec` and take it as a runner: the payload of the now running job.
    pub async fn take(&self, spec: JobSpec) -> JobResponse {
        let id = self.c.enqueue(spec).expect("job enqueued");
        let features: serde_json::Map<String, serde_json::Value> = FEATURES
            .iter()
            .map(|f| ((*f).to_owned(), serde_json::Value::Bool(true)))
            .collect();
        let body = serde_json::json!({
            "token": self.runner_token,
            "info": {"name": "glrunner", "version": "0.1.0", "executor": "shell", "features": features},
        });
        let resp = self
            .http
            .post(format!("{}/api/v4/jobs/request", self.c.url()))
            .json(&body)
            .send()
            .await
            .expect("jobs/request answered");
        assert_eq!(resp.status(), 201, "a job for the runner");
        let job: JobResponse = resp.json().await.expect("a job payload");
        assert_eq!(job.id, id);
        job
    }
}

/// A certificate authority and a server certificate for 127.0.0.1 signed by it.
pub struct TestCa {
    pub ca_pem: String,
    server: rustls::ServerConfig,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "glrunner test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf params");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = leaf.signed_by(&key, &issuer).expect("leaf certificate");
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server TLS config");
        Self {
            ca_pem: issuer.pem(),
            server,
        }
    }

    /// An HTTPS front on 127.0.0.1 that forwards each connection to `backend`; at most 64 connections,
    /// each bounded in time.
    pub async fn front(&self, backend: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(self.server.clone()));
        tokio::spawn(async move {
            for _ in 0..64 {
                let Ok(Ok((stream, _))) =
                    tokio::time::timeout(Duration::from_secs(60), listener.accept()).await
                else {
                    break;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(60), async move {
                        let mut tls = acceptor.accept(stream).await.ok()?;
                        let mut plain = tokio::net::TcpStream::connect(backend).await.ok()?;
                        tokio::io::copy_bidirectional(&mut tls, &mut plain)
                            .await
                            .ok()
                    })
                    .await;
                });
            }
        });
        addr
    }
}
