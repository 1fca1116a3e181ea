//! Start-up checks (catalogue K1–K6): who the manager is (SelfSubjectReview), whether it may do
//! everything its configuration needs (one SelfSubjectAccessReview per permission, like `kubectl
//! auth can-i`), and whether what the job pods refer to exists in the job namespace (the namespace,
//! the service account, pull secrets, Secret and ConfigMap volumes). Each problem comes with its
//! fix; only a manager that cannot even authenticate is refused (everything else can be fixed while
//! it runs).

use crate::api::{Kube, KubeError};
use crate::permissions::{self, Identity, Scope, rbac};
use glrunner_config::KubernetesConfig;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use std::fmt;

/// What a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// The API server cannot be reached.
    Unreachable,
    /// The credentials are refused.
    Credentials,
    /// Who the manager runs as (K5).
    Identity,
    /// Missing permissions (K1, K4).
    Permissions,
    Namespace,
    /// K2.
    ServiceAccount,
    /// K3.
    Secret,
    ConfigMap,
}

/// One thing that will make jobs fail, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub topic: Topic,
    pub message: String,
}

/// What the checks found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The manager's user name, when the API server said.
    pub user: Option<String>,
    pub problems: Vec<Problem>,
    /// Nothing can work until the configuration or the credentials change.
    pub fatal: bool,
}

impl Report {
    pub fn has(&self, topic: Topic) -> bool {
        self.problems.iter().any(|p| p.topic == topic)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

/// Run every check for `config`. `home_namespace` is where the manager runs, when known (the
/// usual source of Secrets to copy).
pub async fn check(kube: &Kube, config: &KubernetesConfig, home_namespace: Option<&str>) -> Report {
    let mut report = Report::default();
    let namespace = config.namespace().to_owned();
    match kube.whoami().await {
        Ok(user) => {
            let name = user.username.clone().unwrap_or_default();
            if let Identity::ServiceAccount {
                namespace: sa_ns,
                name: sa,
            } = Identity::parse(&name)
                && sa == "default"
            {
                report.problems.push(Problem {
                    topic: Topic::Identity,
                    message: format!(
                        "glrunner runs as the default service account of namespace {sa_ns} \
                         ({name})\n  cause: its pod has no serviceAccountName of its own (with the Helm chart: \
                         `rbac.create: false` or no `serviceAccount.name`)\n  fix: run glrunner with a service \
                         account of its own (`kubectl -n {sa_ns} create serviceaccount glrunner`, then \
                         `serviceAccountName: glrunner` in its pod) and grant that account the Role glrunner prints"
                    ),
                });
            }
            report.user = Some(name);
        }
        Err(KubeError::Unauthorized { message }) => {
            report.fatal = true;
            report.problems.push(Problem {
                topic: Topic::Credentials,
                message: KubeError::Unauthorized { message }.to_string(),
            });
            return report;
        }
        Err(e) if e.is_transport() => {
            report.problems.push(Problem {
                topic: Topic::Unreachable,
                message: format!(
                    "the Kubernetes API server could not be reached, so nothing was checked: {e}\n  glrunner starts \
                     anyway; jobs fail with this error until the API server answers"
                ),
            });
            return report;
        }
        // Older API servers have no SelfSubjectReview; the checks go on without a name.
        Err(e) => tracing::debug!("who am I: {e}"),
    }
    let identity = kube.identity();
    permissions_check(kube, config, &namespace, identity.as_ref(), &mut report).await;
    if report.has(Topic::Unreachable) {
        return report;
    }
    objects_check(kube, config, &namespace, home_namespace, &mut report).await;
    report
}

async fn permissions_check(
    kube: &Kube,
    config: &KubernetesConfig,
    namespace: &str,
    identity: Option<&Identity>,
    report: &mut Report,
) {
    let required = permissions::required(config);
    let mut missing = Vec::new();
    for p in required.iter().filter(|p| p.scope != Scope::EveryUser) {
        match kube.can_i(p.resource_attributes(namespace)).await {
            Ok(true) => {}
            Ok(false) => missing.push(*p),
            Err(e) => {
                report.problems.push(Problem {
                    topic: Topic::Unreachable,
                    message: format!("the permission check could not be made: {e}"),
                });
                return;
            }
        }
    }
    if missing.is_empty() {
        return;
    }
    let who = identity.cloned().unwrap_or_else(|| {
        Identity::User(
            report
                .user
                .clone()
                .unwrap_or_else(|| "<the manager's user>".to_owned()),
        )
    });
    let list: Vec<String> = missing
        .iter()
        .map(|p| {
            format!(
                "    {:<40} ({}; check: {})",
                format!("{} {}", p.verb, p.resource_path()),
                p.why,
                p.can_i(namespace)
            )
        })
        .collect();
    let yaml = rbac::manifests(&required, &who, namespace, "glrunner").to_indented_yaml();
    report.problems.push(Problem {
        topic: Topic::Permissions,
        message: format!(
            "{} may not do {} thing(s) jobs in namespace {namespace} need:\n{}\n  cause: the Role bound to it in \
             {namespace} lacks them (subresources such as pods/attach must be listed on their own)\n  fix: apply this \
             (`kubectl apply -f <file>`):\n{yaml}",
            who.user_name(),
            missing.len(),
            list.join("\n")
        ),
    });
}

async fn objects_check(
    kube: &Kube,
    config: &KubernetesConfig,
    namespace: &str,
    home: Option<&str>,
    report: &mut Report,
) {
    let per_job = config.namespace_per_job == Some(true);
    if !per_job {
        match kube.namespace_exists(namespace).await {
            Ok(true) => {}
            Ok(false) => {
                report.problems.push(Problem {
                    topic: Topic::Namespace,
                    message: format!(
                        "the job namespace {namespace} (`namespace` in [runners.kubernetes]) does not exist\n  fix: \
                         `kubectl create namespace {namespace}`, or set `namespace` to an existing one"
                    ),
                });
                // Nothing in it can exist either.
                return;
            }
            // Forbidden is already in the permission report.
            Err(_) => {}
        }
    }
    if per_job {
        return;
    }
    if let Some(sa) = config.service_account.as_deref().filter(|s| !s.is_empty()) {
        match kube.get_opt::<ServiceAccount>(namespace, sa).await {
            Ok(Some(_)) => {}
            Ok(None) => report.problems.push(Problem {
                topic: Topic::ServiceAccount,
                message: format!(
                    "the service account {sa:?} (`service_account` in [runners.kubernetes]) does not exist in the job \
                     namespace {namespace}, so job pods cannot be created\n  cause: service accounts do not cross \
                     namespaces\n  fix: `kubectl -n {namespace} create serviceaccount {sa}`"
                ),
            }),
            Err(e) => tracing::debug!("checking the service account: {e}"),
        }
    }
    let copy = |kind: &str, name: &str| {
        let from = home
            .filter(|h| *h != namespace)
            .unwrap_or("<the namespace it is in>");
        format!(
            "kubectl -n {from} get {kind} {name} -o yaml | sed -e '/^  namespace:/d' -e '/^  resourceVersion:/d' -e \
             '/^  uid:/d' -e '/^  creationTimestamp:/d' | kubectl -n {namespace} apply -f -"
        )
    };
    let mut secrets: Vec<(String, &str)> = config
        .image_pull_secrets
        .iter()
        .map(|s| (s.clone(), "`image_pull_secrets`"))
        .collect();
    if config.use_service_account_image_pull_secrets == Some(true) {
        secrets.clear();
    }
    for v in &config.volumes.secret {
        secrets.push((v.name.clone(), "a [[runners.kubernetes.volumes.secret]]"));
    }
    for (name, key) in secrets {
        if name.contains('$') {
            continue;
        }
        match kube.get_opt::<Secret>(namespace, &name).await {
            Ok(Some(_)) => {}
            Ok(None) => report.problems.push(Problem {
                topic: Topic::Secret,
                message: format!(
                    "the Secret {name:?} ({key} in [runners.kubernetes]) does not exist in the job namespace \
                     {namespace}; job pods that use it cannot start\n  cause: Secrets do not cross namespaces\n  fix: \
                     copy it: `{}`",
                    copy("secret", &name)
                ),
            }),
            Err(e) => tracing::debug!("checking Secret {name}: {e}"),
        }
    }
    for v in &config.volumes.config_map {
        if v.name.contains('$') {
            continue;
        }
        match kube.get_opt::<ConfigMap>(namespace, &v.name).await {
            Ok(Some(_)) => {}
            Ok(None) => report.problems.push(Problem {
                topic: Topic::ConfigMap,
                message: format!(
                    "the ConfigMap {:?} (a [[runners.kubernetes.volumes.config_map]]) does not exist in the job \
                     namespace {namespace}; job pods that mount it cannot start\n  fix: copy it: `{}`",
                    v.name,
                    copy("configmap", &v.name)
                ),
            }),
            Err(e) => tracing::debug!("checking ConfigMap {}: {e}", v.name),
        }
    }
}
