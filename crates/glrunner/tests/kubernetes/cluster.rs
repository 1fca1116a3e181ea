//! The test cluster: the Kubernetes API test server with its process kubelet, the seeds'
//! two-namespace install (the manager's service account `glrunner` in `ci-system`, jobs in
//! `ci-jobs`, granted the Role glrunner generates), and the image table (the helper image runs the
//! `glrunner` binary under test, every other image the host's shell).

use glrunner_apiserver::{Cluster, Image, KubeletOptions, Options};
use glrunner_config::KubernetesConfig;
use glrunner_kubernetes::permissions::{self, rbac};
use std::path::PathBuf;

/// The helper image jobs use; the kubelet runs the glrunner binary under test for it.
pub const HELPER_IMAGE: &str = "registry.example.com/glrunner/glrunner:test";
/// The build image (the host's tools).
pub const BUILD_IMAGE: &str = "docker.io/library/debian:12";
pub const JOB_NS: &str = "ci-jobs";
pub const MANAGER_NS: &str = "ci-system";

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
    cluster
        .apply_yaml(glrunner_apiserver::TWO_NAMESPACE_INSTALL)
        .expect("namespaces");
    if grant {
        cluster.apply_yaml(&role_yaml(&config())).expect("role");
    }
    let sa = cluster.service_account_token(MANAGER_NS, "glrunner");
    let kubeconfig = cluster
        .kubeconfig_for(&sa, "runner", MANAGER_NS)
        .expect("kubeconfig");
    Some(KubeEnv {
        cluster,
        kubeconfig,
    })
}

/// The pods of job `id` (by glrunner's job label).
pub fn job_pods(c: &Cluster, id: i64) -> Vec<k8s_openapi::api::core::v1::Pod> {
    c.store()
        .list_as::<k8s_openapi::api::core::v1::Pod>(Some(JOB_NS))
        .into_iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("glrunner/job-id"))
                .is_some_and(|v| *v == id.to_string())
        })
        .collect()
}

/// Objects in the job namespace that carry job `id`'s label, as `kind/name`.
pub fn job_objects(c: &Cluster, id: i64) -> Vec<String> {
    let store = c.store();
    let label = |l: &Option<std::collections::BTreeMap<String, String>>| {
        l.as_ref()
            .and_then(|l| l.get("glrunner/job-id"))
            .is_some_and(|v| *v == id.to_string())
    };
    let mut out = Vec::new();
    for p in store.list_as::<k8s_openapi::api::core::v1::Pod>(Some(JOB_NS)) {
        if label(&p.metadata.labels) {
            out.push(format!("pod/{}", p.metadata.name.unwrap_or_default()));
        }
    }
    for s in store.list_as::<k8s_openapi::api::core::v1::Secret>(Some(JOB_NS)) {
        if label(&s.metadata.labels) {
            out.push(format!("secret/{}", s.metadata.name.unwrap_or_default()));
        }
    }
    for s in store.list_as::<k8s_openapi::api::core::v1::Service>(Some(JOB_NS)) {
        if label(&s.metadata.labels) {
            out.push(format!("service/{}", s.metadata.name.unwrap_or_default()));
        }
    }
    out
}

/// Wait (woken by every change in the store, at most `secs`) until `pred` holds.
pub async fn until(c: &Cluster, secs: u64, what: &str, mut pred: impl FnMut(&Cluster) -> bool) {
    let mut rx = c.store().subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if pred(c) {
            return;
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) => panic!("the store went away while waiting for {what}"),
            Err(_) => panic!("{what} did not happen within {secs}s"),
        }
    }
}

/// Wait (at most 30 s) until nothing of job `id` is left in the cluster; `what` names it in a panic.
pub async fn until_gone(c: &Cluster, id: i64, what: &str) {
    until(c, 30, what, |c| job_objects(c, id).is_empty()).await;
}
