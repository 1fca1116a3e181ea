//! The test cluster: the Kubernetes API test server with its process kubelet, the seeds'
//! two-namespace install (the manager's service account `glrunner` in `ci-system`, jobs in
//! `ci-jobs`, granted the Role glrunner generates), and the image table (the helper image runs the
//! `glrunner` binary under test, every other image the host's shell).

use glrunner_apiserver::{Cluster, Identity, Image, KubeletOptions, Options};
use glrunner_config::KubernetesConfig;
use glrunner_kubernetes::permissions::{self, rbac};
use std::path::PathBuf;

/// The helper image jobs use; the kubelet runs the glrunner binary under test for it.
pub const HELPER_IMAGE: &str = "registry.example.com/glrunner/glrunner:test";
/// The build image (the host's tools).
pub const BUILD_IMAGE: &str = "docker.io/library/debian:12";
pub const JOB_NS: &str = "ci-jobs";
pub const MANAGER_NS: &str = "ci-system";

pub const NAMESPACES: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: ci-jobs
---
apiVersion: v1
kind: Namespace
metadata:
  name: ci-system
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: glrunner
  namespace: ci-system
";

/// `[runners.kubernetes]` of the tests.
pub fn config() -> KubernetesConfig {
    KubernetesConfig {
        namespace: Some(JOB_NS.into()),
        image: Some(BUILD_IMAGE.into()),
        helper_image: Some(HELPER_IMAGE.into()),
        poll_interval: Some(1),
        ..KubernetesConfig::default()
    }
}

pub fn manager() -> permissions::Identity {
    permissions::Identity::ServiceAccount {
        namespace: MANAGER_NS.into(),
        name: "glrunner".into(),
    }
}

/// The Role and RoleBinding glrunner prints for `config`.
pub fn role_yaml(config: &KubernetesConfig) -> String {
    rbac::manifests(
        &permissions::required(config),
        &manager(),
        config.namespace(),
        "glrunner",
    )
    .to_yaml()
}

/// The kubelet's options for these tests: fast back-offs, the helper image.
pub fn kubelet() -> KubeletOptions {
    KubeletOptions::default()
        .fast()
        .image(HELPER_IMAGE, Image::glrunner(crate::support::bin()))
}

pub struct KubeEnv {
    pub cluster: Cluster,
    pub sa: Identity,
    /// A kubeconfig for the manager's service account (context `runner`).
    pub kubeconfig: PathBuf,
}

/// Start a cluster; `None` (after saying why) where containers cannot run (not root).
pub async fn start(kubelet: KubeletOptions, grant: bool) -> Option<KubeEnv> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::start(Options::default(), kubelet)
        .await
        .expect("start the test cluster");
    if let Err(why) = cluster.kubelet().containers_supported() {
        if std::env::var_os("GLRUNNER_REQUIRE_CONTAINERS").is_some_and(|v| v == "1") {
            panic!("containers cannot run here: {why}");
        }
        eprintln!("skipped: containers cannot run here ({why})");
        return None;
    }
    cluster.apply_yaml(NAMESPACES).expect("namespaces");
    if grant {
        cluster.apply_yaml(&role_yaml(&config())).expect("role");
    }
    let sa = cluster.service_account_token(MANAGER_NS, "glrunner");
    let kubeconfig = cluster
        .kubeconfig_for(&sa, "runner", MANAGER_NS)
        .expect("kubeconfig");
    Some(KubeEnv {
        cluster,
        sa,
        kubeconfig,
    })
}
