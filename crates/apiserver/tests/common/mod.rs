//! Shared test set-up: a server with the runner's namespaces, service account and Role, and a
//! kubectl runner with its own HOME (discovery cache) and a time limit.

#![allow(dead_code)]

use glrunner_apiserver::{ApiServer, Options};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// The namespaces and RBAC of a typical install: the manager's service account in `ci-system` may
/// run pods in `ci-jobs` (exec, not attach) and read service accounts.
pub static RUNNER_RBAC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{}---\n{RUNNER_ROLE}",
        glrunner_apiserver::TWO_NAMESPACE_INSTALL
    )
});

const RUNNER_ROLE: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: glrunner
  namespace: ci-jobs
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["pods/exec"]
  verbs: ["create", "get"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: glrunner
  namespace: ci-jobs
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: glrunner
subjects:
- kind: ServiceAccount
  name: glrunner
  namespace: ci-system
"#;

pub async fn server() -> ApiServer {
    ApiServer::start(Options::default())
        .await
        .expect("start the API test server")
}

pub async fn runner_cluster() -> ApiServer {
    let s = server().await;
    s.apply_yaml(&RUNNER_RBAC).expect("apply the runner's RBAC");
    s
}

/// kubectl with a private HOME; `None` (after printing why) when it is not installed and
/// `GLRUNNER_REQUIRE_KUBECTL` is unset.
pub struct Kubectl {
    home: tempfile::TempDir,
}

pub fn kubectl() -> Option<Kubectl> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join("kubectl").is_file()));
    if !found {
        let msg = "kubectl is not on PATH; install kubectl 1.27 or newer (the tests are checked with v1.32; `auth whoami` needs 1.27) to run the kubectl conformance tests";
        if std::env::var_os("GLRUNNER_REQUIRE_KUBECTL").is_some_and(|v| v == "1") {
            panic!("{msg} (GLRUNNER_REQUIRE_KUBECTL=1)");
        }
        eprintln!("skipped: {msg}");
        return None;
    }
    Some(Kubectl {
        home: tempfile::tempdir().expect("kubectl home"),
    })
}

impl Kubectl {
    /// Run kubectl with `kubeconfig`; at most 60 s.
    pub async fn run(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 60 s"))
            .expect("run kubectl")
    }

    /// Run kubectl with `input` on its stdin; at most 60 s.
    pub async fn run_with_input(&self, kubeconfig: &Path, args: &[&str], input: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("run kubectl");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).await.expect("write kubectl's stdin");
        drop(stdin);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 60 s"))
            .expect("run kubectl")
    }

    /// Start kubectl (stdout piped) and leave it running.
    pub fn spawn(&self, kubeconfig: &Path, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start kubectl")
    }

    /// Run and require success; returns stdout.
    pub async fn ok(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.run(kubeconfig, args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

// ------------------------------------------------------------------ the process kubelet

use glrunner_apiserver::{Cluster, KubeletOptions, Store};
use serde_json::Value;

/// A cluster whose kubelet runs containers, or `None` (after printing why) when this machine
/// cannot run them (not root, no overlayfs) and `GLRUNNER_REQUIRE_CONTAINERS` is unset.
pub async fn running_cluster(options: KubeletOptions) -> Option<Cluster> {
    let c = cluster(options).await;
    if let Err(why) = c.kubelet().containers_supported() {
        if std::env::var_os("GLRUNNER_REQUIRE_CONTAINERS").is_some_and(|v| v == "1") {
            panic!("containers cannot run here: {why} (GLRUNNER_REQUIRE_CONTAINERS=1)");
        }
        eprintln!("skipped: containers cannot run here: {why}");
        return None;
    }
    Some(c)
}

/// A cluster (runner namespaces and RBAC applied) whether or not containers can run here.
pub async fn cluster(options: KubeletOptions) -> Cluster {
    let c = Cluster::start(glrunner_apiserver::Options::default(), options)
        .await
        .expect("start the API test server with its kubelet");
    c.apply_yaml(&RUNNER_RBAC).expect("apply the runner's RBAC");
    c
}

/// Wait (at most `secs`) until `f` finds what it looks for, re-checking on every change in the
/// store.
pub async fn until<T>(
    store: &Store,
    secs: u64,
    what: &str,
    mut f: impl FnMut(&Store) -> Option<T>,
) -> T {
    let mut rx = store.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f(store) {
            return v;
        }
        if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
            panic!("timed out after {secs} s waiting for {what}");
        }
    }
}

/// The pod, once `f` holds for it.
pub async fn pod_until(
    store: &Store,
    ns: &str,
    name: &str,
    secs: u64,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    until(store, secs, &format!("pod {ns}/{name}: {what}"), |s| {
        s.get("pods", ns, name).filter(|p| f(p))
    })
    .await
}

/// The pod, once it is in phase `want`.
pub async fn phase_until(store: &Store, ns: &str, name: &str, secs: u64, want: &str) -> Value {
    pod_until(store, ns, name, secs, want, |p| phase(p) == want).await
}

/// Events about `name` in `ns`.
pub fn events_for(store: &Store, ns: &str, name: &str) -> Vec<Value> {
    store
        .list_as::<k8s_openapi::api::core::v1::Event>(Some(ns))
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect()
}

/// The event with `reason` whose message satisfies `f`, once it exists.
pub async fn event_until(
    store: &Store,
    ns: &str,
    name: &str,
    reason: &str,
    secs: u64,
    f: impl Fn(&str) -> bool,
) -> Value {
    until(
        store,
        secs,
        &format!("a {reason} event for {ns}/{name}"),
        |s| {
            events_for(s, ns, name)
                .into_iter()
                .find(|e| e["reason"] == reason && f(e["message"].as_str().unwrap_or_default()))
        },
    )
    .await
}

/// The status of container `c` (regular or init).
pub fn container_status<'a>(pod: &'a Value, c: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| pod["status"][*k].as_array())
        .flatten()
        .find(|s| s["name"] == c)
}

pub fn waiting_reason(pod: &Value, c: &str) -> String {
    container_status(pod, c)
        .and_then(|s| s["state"]["waiting"]["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

pub fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}
