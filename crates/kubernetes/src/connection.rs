//! How the manager reaches the API server (catalogue K6): `host` with `cert_file`/`key_file`/`ca_file`
//! or `bearer_token` when `host` is set; else the kubeconfig `context` when one is named; else the
//! in-cluster service account when running in a pod; else the kubeconfig's current context. The
//! [`Connection`] says which one was used, so start-up can print it.

use glrunner_config::KubernetesConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a pod's service account is mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long connecting to the API server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take to be sent.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the connection settings came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` and the mounted token).
    InCluster { dir: PathBuf },
    /// A kubeconfig file and one of its contexts.
    Kubeconfig {
        path: Option<PathBuf>,
        context: String,
    },
    /// `host` in [runners.kubernetes].
    Host { auth: HostAuth },
}

/// How an explicit `host` authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAuth {
    ClientCertificate {
        cert_file: PathBuf,
    },
    BearerToken,
    /// No credentials: only anonymous access, which clusters normally refuse.
    Anonymous,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::InCluster { dir } => write!(
                f,
                "the in-cluster service account (token in {})",
                dir.display()
            ),
            Source::Kubeconfig { path, context } => match path {
                Some(p) => write!(f, "kubeconfig {} context {context:?}", p.display()),
                None => write!(f, "the default kubeconfig, context {context:?}"),
            },
            Source::Host { auth } => match auth {
                HostAuth::ClientCertificate { cert_file } => write!(
                    f,
                    "`host` with the client certificate {} (`cert_file`)",
                    cert_file.display()
                ),
                HostAuth::BearerToken => f.write_str("`host` with `bearer_token`"),
                HostAuth::Anonymous => f.write_str("`host` without credentials"),
            },
        }
    }
}

/// Where to look besides [runners.kubernetes] (defaults: the real locations).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The mounted service account (default [`SERVICE_ACCOUNT_DIR`]).
    pub service_account_dir: PathBuf,
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` (default: from the environment).
    pub service_host: Option<(String, String)>,
    /// An explicit kubeconfig (default: `KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        let service_host = match (
            std::env::var("KUBERNETES_SERVICE_HOST"),
            std::env::var("KUBERNETES_SERVICE_PORT"),
        ) {
            (Ok(h), Ok(p)) if !h.is_empty() && !p.is_empty() => Some((h, p)),
            _ => None,
        };
        Self {
            service_account_dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
            service_host,
            kubeconfig: None,
        }
    }
}

/// A client and how it was configured.
#[derive(Clone)]
pub struct Connection {
    pub client: kube::Client,
    pub source: Source,
    /// The API server's URL.
    pub server: String,
    /// The namespace the source names (the service account's, or the context's), if any: where the
    /// manager itself most likely runs.
    pub home_namespace: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("source", &self.source)
            .field("server", &self.server)
            .field("home_namespace", &self.home_namespace)
            .finish_non_exhaustive()
    }
}

/// Why no client could be made. Nothing here can work until the configuration changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error(
        "[runners.kubernetes] sets {set} but not {missing}; a client certificate needs cert_file, key_file and \
         ca_file together. Fix: set {missing} in config.toml, or remove the certificate keys and use \
         `bearer_token` (or no `host`, to use the in-cluster service account or a kubeconfig)"
    )]
    IncompleteCertificate { set: String, missing: String },
    #[error(
        "`{key}` = {path} in [runners.kubernetes] cannot be read: {source}. Fix the path, or make the file \
         readable for the user glrunner runs as"
    )]
    ReadFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`host` = {host:?} in [runners.kubernetes] is not a URL ({problem}). Write it like \
         https://kubernetes.example.com:6443"
    )]
    InvalidHost { host: String, problem: String },
    #[error(
        "the kubeconfig {where_} cannot be used{context}: {problem}. Fix: check the file with `kubectl config \
         get-contexts`, and set `context` in [runners.kubernetes] to one of them"
    )]
    Kubeconfig {
        where_: String,
        context: String,
        problem: String,
    },
    #[error(
        "the service account mounted in {dir} cannot be used: {problem}. Likely cause: the pod runs with \
         `automountServiceAccountToken: false`. Fix: mount the token, or set `host` and credentials in \
         [runners.kubernetes]"
    )]
    InCluster { dir: PathBuf, problem: String },
    #[error(
        "glrunner found no way to reach a Kubernetes API server: it does not run in a pod (no \
         KUBERNETES_SERVICE_HOST), no kubeconfig was found ({kubeconfig}), and [runners.kubernetes] sets no \
         `host`. Fix: run glrunner in the cluster with a service account, point KUBECONFIG at a kubeconfig \
         (and `context` at one of its contexts), or set `host` with `bearer_token` or \
         cert_file/key_file/ca_file"
    )]
    Nothing { kubeconfig: String },
    #[error("a Kubernetes client could not be made from {source_name}: {problem}")]
    Client {
        source_name: String,
        problem: String,
    },
}

/// Make a client as described in the module docs.
pub async fn connect(
    config: &KubernetesConfig,
    options: &ConnectOptions,
) -> Result<Connection, ConnectError> {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.trim().is_empty());
    let (kube_config, source, home) = if set(&config.host) {
        explicit(config)?
    } else if set(&config.context) {
        let context = config.context.clone().unwrap_or_default();
        kubeconfig(options, Some(context)).await?
    } else if let Some(found) = in_cluster(options)? {
        found
    } else {
        match kubeconfig(options, None).await {
            Ok(found) => found,
            Err(ConnectError::Kubeconfig { problem, .. }) if problem.contains("not found") => {
                return Err(ConnectError::Nothing {
                    kubeconfig: kubeconfig_hint(options),
                });
            }
            Err(e) => return Err(e),
        }
    };
    let server = kube_config.cluster_url.to_string();
    let client = kube::Client::try_from(kube_config).map_err(|e| ConnectError::Client {
        source_name: source.to_string(),
        problem: e.to_string(),
    })?;
    Ok(Connection {
        client,
        source,
        server: server.trim_end_matches('/').to_owned(),
        home_namespace: home,
    })
}

fn kubeconfig_hint(options: &ConnectOptions) -> String {
    match (&options.kubeconfig, std::env::var_os("KUBECONFIG")) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(k)) => format!("KUBECONFIG={}", k.to_string_lossy()),
        (None, None) => "no KUBECONFIG, no ~/.kube/config".to_owned(),
    }
}

/// Our own defaults on every client: bounded connects and writes, and no retries inside kube-rs
/// (the API wrapper retries, and counts each attempt).
fn tune(mut c: kube::Config) -> kube::Config {
    c.connect_timeout = Some(CONNECT_TIMEOUT);
    c.write_timeout = Some(WRITE_TIMEOUT);
    c.default_retry = false;
    c
}

type Found = (kube::Config, Source, Option<String>);

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::ReadFile {
        key,
        path: path.to_owned(),
        source,
    })
}

fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

fn explicit(config: &KubernetesConfig) -> Result<Found, ConnectError> {
    let host = config.host.clone().unwrap_or_default();
    let host = host.trim();
    let url: http::Uri =
        host.parse()
            .map_err(|e: http::uri::InvalidUri| ConnectError::InvalidHost {
                host: host.to_owned(),
                problem: e.to_string(),
            })?;
    if url.scheme().is_none() || url.host().is_none() {
        return Err(ConnectError::InvalidHost {
            host: host.to_owned(),
            problem: "it needs a scheme and a host name".to_owned(),
        });
    }
    let mut c = tune(kube::Config::new(url));
    let cert_keys = [
        ("cert_file", &config.cert_file),
        ("key_file", &config.key_file),
    ];
    let given: Vec<&str> = cert_keys
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| *k)
        .collect();
    if let Some(ca) = &config.ca_file {
        let pem = read("ca_file", ca)?;
        let certs = pem_certificates(&pem);
        if certs.is_empty() {
            return Err(ConnectError::ReadFile {
                key: "ca_file",
                path: ca.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "no PEM certificate in it",
                ),
            });
        }
        c.root_cert = Some(certs);
    }
    let auth = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            if config.ca_file.is_none() {
                return Err(ConnectError::IncompleteCertificate {
                    set: "cert_file and key_file".to_owned(),
                    missing: "ca_file".to_owned(),
                });
            }
            let cert_pem = read("cert_file", cert)?;
            let key_pem = read("key_file", key)?;
            c.auth_info = kube::config::AuthInfo {
                client_certificate_data: Some(base64_std(&cert_pem)),
                client_key_data: Some(base64_std(&key_pem).into()),
                ..Default::default()
            };
            HostAuth::ClientCertificate {
                cert_file: cert.clone(),
            }
        }
        (None, None) => match &config.bearer_token {
            Some(t) if !t.expose().trim().is_empty() => {
                c.auth_info = kube::config::AuthInfo {
                    token: Some(t.expose().trim().to_owned().into()),
                    ..Default::default()
                };
                HostAuth::BearerToken
            }
            _ => HostAuth::Anonymous,
        },
        _ => {
            let missing = if given.contains(&"cert_file") {
                "key_file"
            } else {
                "cert_file"
            };
            return Err(ConnectError::IncompleteCertificate {
                set: given.join(" and "),
                missing: missing.to_owned(),
            });
        }
    };
    Ok((c, Source::Host { auth }, None))
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn in_cluster(options: &ConnectOptions) -> Result<Option<Found>, ConnectError> {
    let Some((host, port)) = &options.service_host else {
        return Ok(None);
    };
    let dir = &options.service_account_dir;
    let token_file = dir.join("token");
    if !token_file.exists() {
        // In a pod without a token: the kubeconfig may still work.
        return Ok(None);
    }
    let fail = |problem: String| ConnectError::InCluster {
        dir: dir.clone(),
        problem,
    };
    let port: u16 = port
        .parse()
        .map_err(|_| fail(format!("KUBERNETES_SERVICE_PORT={port:?} is not a port")))?;
    let authority = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let url: http::Uri = format!("https://{authority}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| fail(format!("KUBERNETES_SERVICE_HOST: {e}")))?;
    let ca = std::fs::read(dir.join("ca.crt")).map_err(|e| fail(format!("ca.crt: {e}")))?;
    let certs = pem_certificates(&ca);
    if certs.is_empty() {
        return Err(fail("ca.crt holds no PEM certificate".to_owned()));
    }
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    let mut c = tune(kube::Config::new(url));
    c.root_cert = Some(certs);
    c.root_cert_file = Some(dir.join("ca.crt"));
    // A file, so a rotated token is picked up.
    c.auth_info = kube::config::AuthInfo {
        token_file: Some(token_file.to_string_lossy().into_owned()),
        ..Default::default()
    };
    if let Some(ns) = &namespace {
        c.default_namespace = ns.clone();
    }
    Ok(Some((c, Source::InCluster { dir: dir.clone() }, namespace)))
}

async fn kubeconfig(
    options: &ConnectOptions,
    context: Option<String>,
) -> Result<Found, ConnectError> {
    let where_ = kubeconfig_hint(options);
    let shown_context = context
        .as_ref()
        .map(|c| format!(" with context {c:?}"))
        .unwrap_or_default();
    let fail = |problem: String| ConnectError::Kubeconfig {
        where_: where_.clone(),
        context: shown_context.clone(),
        problem,
    };
    let kc = match &options.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path),
        None => kube::config::Kubeconfig::read(),
    }
    .map_err(|e| {
        let text = e.to_string();
        let missing = text.contains("No such file") || text.contains("not found");
        fail(if missing {
            format!("not found ({text})")
        } else {
            text
        })
    })?;
    let chosen = context
        .clone()
        .or_else(|| kc.current_context.clone())
        .unwrap_or_default();
    if !kc.contexts.iter().any(|c| c.name == chosen) {
        let names: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
        return Err(fail(format!(
            "it has no context {chosen:?} (it has: {})",
            names.join(", ")
        )));
    }
    let home = kc
        .contexts
        .iter()
        .find(|c| c.name == chosen)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone());
    let opts = kube::config::KubeConfigOptions {
        context: Some(chosen.clone()),
        ..Default::default()
    };
    let c = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| fail(e.to_string()))?;
    // Name the file that was read (KUBECONFIG may list several: the first).
    let path = options.kubeconfig.clone().or_else(|| {
        std::env::var_os("KUBECONFIG")
            .and_then(|k| std::env::split_paths(&k).find(|p| p.exists()))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
            })
    });
    Ok((
        tune(c),
        Source::Kubeconfig {
            path,
            context: chosen,
        },
        home,
    ))
}
