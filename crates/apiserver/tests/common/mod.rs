//! Shared test set-up: a server with the runner's namespaces, service account and Role, and a
//! kubectl runner with its own HOME (discovery cache) and a time limit.

#![allow(dead_code)]

use glrunner_apiserver::{ApiServer, Options};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// The namespaces and RBAC of a typical install: the manager's service account in `ci-system` may
/// run pods in `ci-jobs` (exec, not attach) and read service accounts.
pub const RUNNER_RBAC: &str = r#"
apiVersion: v1
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
---
apiVersion: rbac.authorization.k8s.io/v1
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
    s.apply_yaml(RUNNER_RBAC).expect("apply the runner's RBAC");
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
