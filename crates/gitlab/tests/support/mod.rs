//! Test servers for the client: plain HTTP and TLS on 127.0.0.1 that record every request and answer from a
//! script, and a small PKI made with rcgen. Every loop is bounded in count and time.
#![allow(dead_code)]

use bytes::Bytes;
use glrunner_gitlab::{ClientSettings, GitLabClient};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Connections one test server accepts before it stops.
const MAX_CONNECTIONS: usize = 200;
/// How long a test server waits for a connection, and how long one connection may live.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    pub wall: SystemTime,
    pub peer: SocketAddr,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: serde_json::Value) -> Self {
        Self::status(status)
            .header("Content-Type", "application/json")
            .body(value.to_string())
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

type Script = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

struct State {
    requests: Mutex<Vec<Recorded>>,
    script: Box<Script>,
}

/// A test server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Plain HTTP; `script(request, index)` answers the `index`-th request (0-based).
    pub async fn http(script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(None, Box::new(script)).await
    }

    /// HTTPS with the given server configuration.
    pub async fn https(
        config: Arc<rustls::ServerConfig>,
        script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start(Some(config), Box::new(script)).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>, script: Box<Script>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            script,
        });
        let is_tls = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let serving = state.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            for _ in 0..MAX_CONNECTIONS {
                let Ok(Ok((stream, peer))) =
                    tokio::time::timeout(IDLE_LIMIT, listener.accept()).await
                else {
                    break;
                };
                let state = serving.clone();
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let _ = tokio::time::timeout(IDLE_LIMIT, async move {
                        match acceptor {
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    serve(TokioIo::new(stream), peer, state).await;
                                }
                            }
                            None => serve(TokioIo::new(stream), peer, state).await,
                        }
                    })
                    .await;
                });
            }
            while connections.join_next().await.is_some() {}
        });
        Self {
            addr,
            tls: is_tls,
            state,
            task,
        }
    }

    /// `http(s)://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("requests").clone()
    }

    /// A client for this server with `user_agent` set.
    pub fn client(&self) -> GitLabClient {
        GitLabClient::new(self.settings()).expect("client")
    }

    pub fn settings(&self) -> ClientSettings {
        ClientSettings {
            url: self.url(),
            user_agent: "glrunner-test 0.0.1 (linux/amd64)".into(),
            ..Default::default()
        }
    }
}

async fn serve<I>(io: I, peer: SocketAddr, state: Arc<State>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let recorded = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body,
                at: Instant::now(),
                wall: SystemTime::now(),
                peer,
            };
            let index = {
                let mut requests = state.requests.lock().expect("requests");
                requests.push(recorded.clone());
                requests.len() - 1
            };
            let reply = (state.script)(&recorded, index);
            let mut response = hyper::Response::builder().status(reply.status);
            for (name, value) in &reply.headers {
                response = response.header(name, value);
            }
            let response = response
                .body(Full::new(Bytes::from(reply.body)))
                .expect("response");
            Ok::<_, hyper::Error>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// A port on 127.0.0.1 where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// A token long and random enough that finding it anywhere means it leaked.
pub fn random_token(prefix: &str) -> String {
    let tail: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

/// A certificate authority for tests.
pub struct Ca {
    pub name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        Self {
            name: name.to_owned(),
            issuer,
        }
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose, expired: bool) -> Leaf {
        let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(owned).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![purpose];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses; the first is also the CN).
    pub fn server_cert(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    pub fn expired_server_cert(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    pub fn client_cert(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }
}

/// A TLS server configuration presenting `leaf`; with `client_ca`, a client certificate from it is required.
pub fn server_tls(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).expect("client CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(
        builder
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .expect("server certificate"),
    )
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}
