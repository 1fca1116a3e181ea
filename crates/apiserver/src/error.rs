//! Errors of the server's own API (starting it, identities, kubeconfigs, clients, manifests). Errors
//! answered to HTTP clients are [`crate::status::ApiError`]s instead.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the Kubernetes API test server binds only to loopback, but {0} was requested; use 127.0.0.1:0 (Options::listen)"
    )]
    NotLoopback(SocketAddr),
    #[error(
        "could not bind the Kubernetes API test server to {addr}: {source}; another process may hold the port, pick 127.0.0.1:0 for a free one"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not make the test cluster's {what} certificate: {source}")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("could not set up TLS for the test API server: {0}")]
    Tls(String),
    #[error(
        "could not create the test API server's working directory: {0}; check that the temp directory (TMPDIR) is writable"
    )]
    WorkDir(#[source] std::io::Error),
}

/// Making an identity or writing its configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("could not issue a client certificate for {user:?}: {source}")]
    Certificate {
        user: String,
        #[source]
        source: rcgen::Error,
    },
    #[error(
        "a client certificate for {user:?} can carry at most 2 groups, {groups} were asked for; use ApiServer::user_token(user, groups) for more"
    )]
    TooManyGroups { user: String, groups: usize },
    #[error(
        "an in-cluster service-account directory needs a token identity, but {user:?} authenticates with a client certificate; use ApiServer::service_account_token(namespace, name)"
    )]
    NotAToken { user: String },
    #[error("could not write {path}: {source}; check that the directory exists and is writable")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not render the kubeconfig: {0}")]
    Render(String),
}

/// Building a kube client for an identity failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("kube-rs refused the generated kubeconfig: {0}")]
    Config(String),
    #[error("kube-rs could not build a client from the generated kubeconfig: {0}")]
    Client(String),
}

/// Applying a YAML manifest failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the manifest is not valid YAML: {0}")]
    Yaml(String),
    #[error(
        "document {index} of the manifest has apiVersion {api_version:?} kind {kind:?}, which this test server does not serve; it serves namespaces, pods, secrets, configmaps, services, serviceaccounts, events, poddisruptionbudgets and the RBAC kinds"
    )]
    UnknownKind {
        index: usize,
        api_version: String,
        kind: String,
    },
    #[error("document {index} of the manifest ({what}) was refused: {source}")]
    Refused {
        index: usize,
        what: String,
        #[source]
        source: crate::status::ApiError,
    },
}
