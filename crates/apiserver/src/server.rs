//! The running server: HTTPS (and optionally plain HTTP) listeners on loopback, one hyper HTTP/1
//! connection task per socket (with upgrades, for exec/attach websockets), and the request pipeline
//! every request goes through — authentication, impersonation, RBAC authorization, accounting,
//! dispatch — plus the in-process API tests use.

use crate::MutexExt as _;
use crate::api::{self, Call, error_response};
use crate::auth::{Authenticator, Credential, Identity, UserInfo, impersonate};
use crate::bootstrap;
use crate::discovery::KubeVersion;
use crate::error::{ApplyError, ClientError, IdentityError, StartError};
use crate::kubeconfig;
use crate::pki::{self, Pki};
use crate::rbac::{self, Attributes, Authorizer};
use crate::request::{self, Query, RequestInfo};
use crate::request_log::{Counts, RequestKey, RequestLog, RequestRecord};
use crate::resource;
use crate::status::{ApiError, GroupResource};
use crate::store::{Store, StoreOptions, WriteOptions, str_at};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Response bodies (buffered or streamed).
pub type Body = axum::body::Body;
/// A response.
pub type Response = http::Response<Body>;

/// A request for a streaming pod subresource (`log`, `exec`, `attach`, `portforward`), already
/// authenticated and authorized, for the pod named; the raw request is kept so a handler can
/// upgrade it to a websocket (`hyper::upgrade::on`).
pub struct SubresourceRequest {
    pub request: http::Request<Incoming>,
    pub user: UserInfo,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub store: Arc<Store>,
}

/// Serves a streaming subresource; registered with [`Options::subresource_handler`].
pub trait SubresourceHandler: Send + Sync + 'static {
    fn handle(&self, request: SubresourceRequest)
    -> Pin<Box<dyn Future<Output = Response> + Send>>;
}

/// How to run the server.
#[derive(Clone)]
pub struct Options {
    /// HTTPS listen address (loopback only).
    pub listen: SocketAddr,
    /// Also serve plain HTTP here (loopback only; bearer tokens only).
    pub http_listen: Option<SocketAddr>,
    /// The version `/version` reports.
    pub version: KubeVersion,
    /// Changes kept for watches resuming from an older resourceVersion.
    pub history_limit: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// The longest a watch stays open (kube-apiserver's `--min-request-timeout` is 1800 s).
    pub max_watch_timeout: Duration,
    /// Requests kept in the request log.
    pub request_log_limit: usize,
    /// Open connections at most.
    pub max_connections: usize,
    handlers: HashMap<(String, String), Arc<dyn SubresourceHandler>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("listen", &self.listen)
            .field("http_listen", &self.http_listen)
            .field("version", &self.version)
            .field("history_limit", &self.history_limit)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: None,
            version: KubeVersion::default(),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(10),
            max_watch_timeout: Duration::from_secs(1800),
            request_log_limit: 10_000,
            max_connections: 512,
            handlers: HashMap::new(),
        }
    }
}

impl Options {
    /// Also serve plain HTTP on a free loopback port.
    pub fn with_http(mut self) -> Self {
        self.http_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }

    pub fn history_limit(mut self, n: usize) -> Self {
        self.history_limit = n;
        self
    }

    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }

    /// Serve `resource/subresource` (e.g. `pods`, `exec`) with `handler`.
    pub fn subresource_handler(
        mut self,
        resource: &str,
        subresource: &str,
        handler: Arc<dyn SubresourceHandler>,
    ) -> Self {
        self.handlers
            .insert((resource.to_owned(), subresource.to_owned()), handler);
        self
    }
}

/// State every request sees.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub authn: Authenticator,
    pub options: Options,
    pub handlers: HashMap<(String, String), Arc<dyn SubresourceHandler>>,
    pub server_address: String,
    pub shutdown: watch::Receiver<bool>,
    pub log: Mutex<RequestLog>,
}

type CertSubject = Option<Arc<(String, Vec<String>)>>;

/// A Kubernetes API test server on loopback. Dropping it stops the listeners, closes every
/// connection and ends every watch.
pub struct ApiServer {
    shared: Arc<Shared>,
    pki: Pki,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    admin: Identity,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workdir: tempfile::TempDir,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    if !addr.ip().is_loopback() {
        return Err(StartError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, local))
}

impl ApiServer {
    /// Bind and start serving; the store starts with the bootstrap namespaces and roles.
    pub async fn start(options: Options) -> Result<Self, StartError> {
        let pki = Pki::new()?;
        let (listener, addr) = bind(options.listen).await?;
        let http = match options.http_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let workdir = tempfile::Builder::new()
            .prefix("glrunner-apiserver-")
            .tempdir()
            .map_err(StartError::WorkDir)?;
        let store = Arc::new(Store::new(StoreOptions {
            history_limit: options.history_limit,
            ca_pem: pki.ca_pem().to_owned(),
        }));
        bootstrap::populate(&store);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            authn: Authenticator::default(),
            handlers: options.handlers.clone(),
            server_address: addr.to_string(),
            shutdown: shutdown_rx.clone(),
            log: Mutex::new(RequestLog::new(options.request_log_limit)),
            options: options.clone(),
        });
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config()?));
        let limit = Arc::new(Semaphore::new(options.max_connections.max(1)));
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            Some(tls),
            shared.clone(),
            shutdown_rx.clone(),
            limit.clone(),
        ))];
        let http_addr = match http {
            Some((l, a)) => {
                tasks.push(tokio::spawn(accept_loop(
                    l,
                    None,
                    shared.clone(),
                    shutdown_rx,
                    limit,
                )));
                Some(a)
            }
            None => None,
        };
        let cert = pki
            .issue_client("kubernetes-admin", &["system:masters".to_owned()])
            .map_err(|source| StartError::Certificate {
                what: "admin client",
                source,
            })?;
        let admin = Identity {
            user: UserInfo::new("kubernetes-admin", &["system:masters"]),
            credential: Credential::ClientCertificate(cert),
        };
        tracing::debug!(%addr, "Kubernetes API test server listening");
        Ok(Self {
            shared,
            pki,
            addr,
            http_addr,
            admin,
            shutdown,
            tasks,
            workdir,
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` when plain HTTP is served.
    pub fn http_url(&self) -> Option<String> {
        self.http_addr.map(|a| format!("http://{a}"))
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        self.pki.ca_pem()
    }

    /// Direct access to the objects (assertions, and the kubelet part).
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// A directory removed with the server, for files a test writes next to its kubeconfigs.
    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    // ------------------------------------------------------------ identities

    /// The cluster admin: client certificate `kubernetes-admin` in `system:masters`.
    pub fn admin(&self) -> &Identity {
        &self.admin
    }

    /// A user authenticating with a client certificate (CN = `user`, O = `groups`).
    pub fn user_certificate(&self, user: &str, groups: &[&str]) -> Result<Identity, IdentityError> {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        if groups.len() > pki::MAX_CERT_GROUPS {
            return Err(IdentityError::TooManyGroups {
                user: user.to_owned(),
                groups: groups.len(),
            });
        }
        let cert =
            self.pki
                .issue_client(user, &groups)
                .map_err(|source| IdentityError::Certificate {
                    user: user.to_owned(),
                    source,
                })?;
        Ok(Identity {
            user: UserInfo {
                username: user.to_owned(),
                uid: String::new(),
                groups,
            },
            credential: Credential::ClientCertificate(cert),
        })
    }

    /// A user authenticating with a static bearer token.
    pub fn user_token(&self, user: &str, groups: &[&str]) -> Identity {
        let info = UserInfo::new(user, groups);
        let token = self.shared.authn.add_user_token(info.clone());
        Identity {
            user: info,
            credential: Credential::Token(token),
        }
    }

    /// A service account's token (`system:serviceaccount:<ns>:<name>`). It authenticates only
    /// while the ServiceAccount object exists, as bound tokens do.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Identity {
        let token = self.shared.authn.add_service_account_token(namespace, name);
        Identity {
            user: UserInfo::service_account(namespace, name),
            credential: Credential::Token(token),
        }
    }

    /// The kubeconfig text for `identity` with context `context` and default `namespace`.
    pub fn kubeconfig_yaml(&self, identity: &Identity, context: &str, namespace: &str) -> String {
        kubeconfig::render(&self.url(), self.ca_pem(), identity, context, namespace)
    }

    /// Write a kubeconfig for `identity` (mode 0600, in the server's work directory) and return
    /// its path, for `KUBECONFIG=` or `--kubeconfig`.
    pub fn kubeconfig_for(
        &self,
        identity: &Identity,
        context: &str,
        namespace: &str,
    ) -> Result<PathBuf, IdentityError> {
        let safe: String = context
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.workdir.path().join(format!("kubeconfig-{safe}"));
        kubeconfig::write_private(&path, &self.kubeconfig_yaml(identity, context, namespace))?;
        Ok(path)
    }

    /// Lay out `dir` as an in-cluster service-account directory (`token`, `ca.crt`, `namespace`).
    /// kube-rs reads it from `/var/run/secrets/kubernetes.io/serviceaccount` with
    /// `KUBERNETES_SERVICE_HOST=127.0.0.1` and `KUBERNETES_SERVICE_PORT=<port>`.
    pub fn write_service_account_dir(
        &self,
        identity: &Identity,
        namespace: &str,
        dir: &Path,
    ) -> Result<PathBuf, IdentityError> {
        kubeconfig::write_service_account_dir(dir, self.ca_pem(), identity, namespace)
    }

    /// A kube-rs client for `identity` (default namespace `default`).
    pub async fn client_for(&self, identity: &Identity) -> Result<kube::Client, ClientError> {
        self.client_with(identity, true).await
    }

    /// A kube-rs client as the cluster admin that takes the first answer, as a drain or an
    /// autoscaler sees it: kube-rs' default client retries a refused eviction (429) for minutes.
    pub async fn drain_client(&self) -> Result<kube::Client, ClientError> {
        let admin = self.admin.clone();
        self.client_with(&admin, false).await
    }

    async fn client_with(
        &self,
        identity: &Identity,
        default_retry: bool,
    ) -> Result<kube::Client, ClientError> {
        // kube-rs and reqwest both use rustls' ring provider here; make it the process default
        // (a no-op when something already installed one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let yaml = self.kubeconfig_yaml(identity, "glrunner-apiserver", "default");
        let kc = kube::config::Kubeconfig::from_yaml(&yaml)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let mut cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| ClientError::Config(e.to_string()))?;
        cfg.default_retry = default_retry;
        kube::Client::try_from(cfg).map_err(|e| ClientError::Client(e.to_string()))
    }

    /// A kube-rs client as the cluster admin.
    pub async fn admin_client(&self) -> Result<kube::Client, ClientError> {
        let admin = self.admin.clone();
        self.client_for(&admin).await
    }

    // ------------------------------------------------------------ manifests and accounting

    /// Create or replace every object of a (multi-document) YAML manifest, as the admin would
    /// with `kubectl apply`; returns the stored objects. Unknown fields are refused.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, ApplyError> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(yaml).map_err(|e| ApplyError::Yaml(e.to_string()))?;
        let mut objects = Vec::new();
        for doc in docs {
            if doc.get("kind").and_then(Value::as_str) == Some("List") {
                objects.extend(
                    doc.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            } else if !doc.is_null() {
                objects.push(doc);
            }
        }
        let opts = WriteOptions {
            field_validation: crate::store::FieldValidation::Strict,
            dry_run: false,
        };
        let store = &self.shared.store;
        let mut out = Vec::new();
        for (index, mut obj) in objects.into_iter().enumerate() {
            let api_version = str_at(&obj, "/apiVersion").to_owned();
            let kind = str_at(&obj, "/kind").to_owned();
            let Some(rt) = resource::by_kind(&api_version, &kind) else {
                return Err(ApplyError::UnknownKind {
                    index,
                    api_version,
                    kind,
                });
            };
            let ns = if rt.namespaced {
                match str_at(&obj, "/metadata/namespace") {
                    "" => "default".to_owned(),
                    n => n.to_owned(),
                }
            } else {
                String::new()
            };
            let name = str_at(&obj, "/metadata/name").to_owned();
            let what = format!("{kind} {ns}/{name}");
            let refused = |source| ApplyError::Refused {
                index,
                what: what.clone(),
                source,
            };
            let written = match store.get(&rt.qualified(), &ns, &name) {
                Some(existing) if !name.is_empty() => {
                    crate::store::meta_mut(&mut obj).insert(
                        "resourceVersion".into(),
                        existing
                            .pointer("/metadata/resourceVersion")
                            .cloned()
                            .unwrap_or(Value::Null),
                    );
                    store
                        .update(rt, &ns, &name, obj, None, &opts)
                        .map_err(refused)?
                }
                _ => store.create(rt, &ns, obj, &opts).map_err(refused)?,
            };
            out.push(written.object);
        }
        Ok(out)
    }

    /// Requests served so far, per (verb, resource, subresource).
    pub fn request_counts(&self) -> Counts {
        self.shared.log.locked().counts()
    }

    /// How many requests had this verb, resource and subresource.
    pub fn request_count(&self, verb: &str, resource: &str, subresource: &str) -> u64 {
        self.request_counts()
            .get(&RequestKey::new(verb, resource, subresource))
            .copied()
            .unwrap_or_default()
    }

    /// The most recent requests (bounded by [`Options::request_log_limit`]).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.log.locked().records()
    }

    /// Forget counts and log (e.g. between the set-up and the measured part of a benchmark).
    pub fn reset_request_log(&self) {
        self.shared.log.locked().clear();
    }

    /// Stop serving and wait (briefly) for the listeners to end.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        for t in std::mem::take(&mut self.tasks) {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    limit: Arc<Semaphore>,
) {
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                };
                let shared = shared.clone();
                let tls = tls.clone();
                let shutdown = shutdown.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    serve_connection(tcp, tls, shared, shutdown).await;
                });
            }
        }
    }
    conns.shutdown().await;
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    match tls {
        Some(acceptor) => {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let subject: CertSubject = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(pki::subject_of)
                .map(Arc::new);
            run_http(TokioIo::new(stream), shared, subject, &mut shutdown).await;
        }
        None => run_http(TokioIo::new(tcp), shared, None, &mut shutdown).await,
    }
}

async fn run_http<I>(
    io: I,
    shared: Arc<Shared>,
    subject: CertSubject,
    shutdown: &mut watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let subject = subject.clone();
        async move { Ok::<_, Infallible>(handle(shared, subject, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .serve_connection(io, service)
        .with_upgrades();
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {}
    }
}

/// The request pipeline.
async fn handle(
    shared: Arc<Shared>,
    subject: CertSubject,
    req: http::Request<Incoming>,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query_text = req.uri().query().unwrap_or_default().to_owned();
    let query = Query::parse(Some(&query_text));
    let info = request::parse(&method, &path, &query);
    let (resp, user) = pipeline(&shared, subject, &info, &query, req).await;
    let record = RequestRecord {
        method: method.as_str().to_owned(),
        path,
        query: query_text,
        user,
        verb: info.verb,
        resource: info.resource,
        subresource: info.subresource,
        namespace: info.namespace,
        name: info.name,
        status: resp.status().as_u16(),
        duration: started.elapsed(),
    };
    tracing::debug!(method = %record.method, path = %record.path, status = record.status, user = %record.user, "request");
    shared.log.locked().record(record);
    resp
}

fn is_websocket_upgrade(req: &http::Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn pipeline(
    shared: &Arc<Shared>,
    subject: CertSubject,
    info: &RequestInfo,
    query: &Query,
    req: http::Request<Incoming>,
) -> (Response, String) {
    let requester =
        match shared
            .authn
            .authenticate(req.headers(), subject.as_deref(), &shared.store)
        {
            Ok(u) => u,
            Err(e) => return (error_response(&e), String::new()),
        };
    let authorizer = Authorizer::new(&shared.store);
    let user = match impersonate(req.headers(), requester, &authorizer) {
        Ok(u) => u,
        Err(e) => return (error_response(&e), String::new()),
    };
    let username = user.username.clone();
    // Websocket upgrades of exec/attach/portforward are GETs that also need `create`
    // (AuthorizePodWebsocketUpgradeCreatePermission).
    let upgrade = info.verb == "get"
        && matches!(info.subresource.as_str(), "exec" | "attach" | "portforward")
        && is_websocket_upgrade(&req);
    let checks = [Some(info.verb.as_str()), upgrade.then_some("create")];
    for verb in checks.into_iter().flatten() {
        let attrs = if info.is_resource {
            Attributes::resource(
                &user,
                verb,
                &info.group,
                &info.resource,
                &info.subresource,
                &info.namespace,
                &info.name,
            )
        } else {
            Attributes::non_resource(&user, verb, &info.path)
        };
        let decision = authorizer.authorize(&attrs);
        if !decision.allowed {
            let mut cause = rbac::forbidden_cause(&attrs);
            if !decision.reason.is_empty() {
                cause = format!("{cause}: {}", decision.reason);
            }
            let err = if info.is_resource {
                ApiError::forbidden(
                    Some(&GroupResource::new(&info.group, &info.resource)),
                    &info.name,
                    &cause,
                )
            } else {
                ApiError::forbidden(None, "", &cause)
            };
            return (error_response(&err), username);
        }
    }
    let resp = if info.is_resource {
        let headers = req.headers().clone();
        api::resource(
            Call {
                shared,
                info,
                query,
                user: &user,
                headers: &headers,
            },
            req,
        )
        .await
    } else {
        api::non_resource(shared, &info.path)
    };
    (resp, username)
}
