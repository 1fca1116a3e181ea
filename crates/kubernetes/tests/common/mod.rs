//! Shared set-up: the seeds' two-namespace install on the Kubernetes API test server (the manager's
//! service account `glrunner` in `ci-system`, jobs in `ci-jobs`), granted exactly the Role glrunner
//! generates from its permission catalogue.
#![allow(dead_code)]

use glrunner_apiserver::{ApiServer, Identity, Options};
use glrunner_config::KubernetesConfig;
use glrunner_kubernetes::api::Kube;
use glrunner_kubernetes::connection::{ConnectOptions, Connection, connect};
use glrunner_kubernetes::permissions::{self, rbac};
use std::path::PathBuf;

pub fn ci_jobs() -> KubernetesConfig {
    KubernetesConfig {
        namespace: Some("ci-jobs".into()),
        ..KubernetesConfig::default()
    }
}

pub fn manager() -> permissions::Identity {
    permissions::Identity::ServiceAccount {
        namespace: "ci-system".into(),
        name: "glrunner".into(),
    }
}

/// The Role and RoleBinding glrunner prints for `config`, for the manager's service account.
pub fn role_yaml(config: &KubernetesConfig) -> String {
    rbac::manifests(
        &permissions::required(config),
        &manager(),
        config.namespace(),
        "glrunner",
    )
    .to_yaml()
}

pub struct Env {
    pub server: ApiServer,
    pub sa: Identity,
    pub kubeconfig: PathBuf,
}

/// The server with the namespaces and the service account; `grant` applies glrunner's Role.
pub async fn env(grant: bool) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = ApiServer::start(Options::default())
        .await
        .expect("start the API test server");
    server
        .apply_yaml(glrunner_apiserver::TWO_NAMESPACE_INSTALL)
        .expect("namespaces");
    if grant {
        server.apply_yaml(&role_yaml(&ci_jobs())).expect("role");
    }
    let sa = server.service_account_token("ci-system", "glrunner");
    let kubeconfig = server
        .kubeconfig_for(&sa, "runner", "ci-system")
        .expect("kubeconfig");
    Env {
        server,
        sa,
        kubeconfig,
    }
}

impl Env {
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            service_account_dir: self.server.workdir().join("no-service-account"),
            service_host: None,
            kubeconfig: Some(self.kubeconfig.clone()),
        }
    }

    pub async fn connect(&self, config: &KubernetesConfig) -> Connection {
        connect(config, &self.options())
            .await
            .expect("connect with the kubeconfig")
    }

    /// The API wrapper for `config`, connected with the kubeconfig.
    pub async fn kube(&self, config: &KubernetesConfig) -> Kube {
        Kube::new(self.connect(config).await.client, config)
    }
}
