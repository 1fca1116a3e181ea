//! The one list of every Kubernetes API permission the executor uses (design decision 5): each
//! (API group, resource, subresource, verb) with the configuration that makes it needed and why. The
//! executor's API wrapper refuses calls that are not listed here; the start-up access review,
//! `doctor`, the generated Role ([`rbac`]) and `docs/kubernetes-permissions.md` ([`docs`]) all come
//! from this list, so they cannot disagree.

pub mod docs;
pub mod rbac;

use glrunner_config::KubernetesConfig;
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use std::fmt;

pub use rbac::{Identity, Manifests};

/// A Kubernetes API verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    Create,
    Delete,
    Get,
    List,
    Patch,
    Update,
    Watch,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Delete => "delete",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Patch => "patch",
            Verb::Update => "update",
            Verb::Watch => "watch",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a permission must be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// In the job namespace: a Role and RoleBinding there.
    JobNamespace,
    /// Cluster-wide: a ClusterRole and ClusterRoleBinding.
    Cluster,
    /// Every authenticated identity has it by default (the `system:basic-user` ClusterRole).
    EveryUser,
}

/// What makes a permission needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    Always,
    /// `namespace_per_job = true`.
    NamespacePerJob,
    /// `namespace_per_job` is not set: jobs share a namespace that must exist.
    SharedNamespace,
    /// `print_pod_warning_events` (on by default).
    PodWarningEvents,
    /// `service_account` or `service_account_overwrite_allowed` is set.
    ServiceAccount,
    /// A `[[runners.kubernetes.volumes.config_map]]` is configured.
    ConfigMapVolumes,
    /// A `[[runners.kubernetes.volumes.pvc]]` is configured.
    PvcVolumes,
    /// `pod_disruption_budget = true`.
    PodDisruptionBudget,
}

impl Condition {
    /// Whether `config` makes this condition true.
    pub fn holds(self, config: &KubernetesConfig) -> bool {
        let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        match self {
            Condition::Always => true,
            Condition::NamespacePerJob => config.namespace_per_job == Some(true),
            Condition::SharedNamespace => config.namespace_per_job != Some(true),
            Condition::PodWarningEvents => config.print_pod_warning_events(),
            Condition::ServiceAccount => {
                set(&config.service_account) || set(&config.service_account_overwrite_allowed)
            }
            Condition::ConfigMapVolumes => !config.volumes.config_map.is_empty(),
            Condition::PvcVolumes => !config.volumes.pvc.is_empty(),
            Condition::PodDisruptionBudget => config.pod_disruption_budget == Some(true),
        }
    }

    /// The condition in words, for the documentation.
    pub fn describe(self) -> &'static str {
        match self {
            Condition::Always => "always",
            Condition::NamespacePerJob => "`namespace_per_job = true`",
            Condition::SharedNamespace => "`namespace_per_job` is not set",
            Condition::PodWarningEvents => "`print_pod_warning_events` (on by default)",
            Condition::ServiceAccount => {
                "`service_account` or `service_account_overwrite_allowed` is set"
            }
            Condition::ConfigMapVolumes => "`[[runners.kubernetes.volumes.config_map]]` is used",
            Condition::PvcVolumes => "`[[runners.kubernetes.volumes.pvc]]` is used",
            Condition::PodDisruptionBudget => "`pod_disruption_budget = true`",
        }
    }
}

/// One thing the executor may ask the API server to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permission {
    /// The API group; `""` is the core group.
    pub group: &'static str,
    pub resource: &'static str,
    /// `""` when the call is on the resource itself.
    pub subresource: &'static str,
    pub verb: Verb,
    pub scope: Scope,
    pub when: Condition,
    /// Why the executor needs it.
    pub why: &'static str,
}

impl Permission {
    /// `pods` or `pods/exec`, as RBAC rules and `kubectl auth can-i` spell it.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// The API group as people say it (`core` for the empty group).
    pub fn group_name(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// The attributes of a SelfSubjectAccessReview asking for this permission in `namespace`.
    pub fn resource_attributes(&self, namespace: &str) -> ResourceAttributes {
        let namespaced = self.scope == Scope::JobNamespace;
        ResourceAttributes {
            group: Some(self.group.to_owned()),
            resource: Some(self.resource.to_owned()),
            subresource: (!self.subresource.is_empty()).then(|| self.subresource.to_owned()),
            verb: Some(self.verb.as_str().to_owned()),
            namespace: namespaced.then(|| namespace.to_owned()),
            // Access to a namespace object is decided in that namespace, by its name.
            name: (self.resource == "namespaces" && namespaced).then(|| namespace.to_owned()),
            ..ResourceAttributes::default()
        }
    }

    /// `verb resource` in `kubectl auth can-i` form.
    pub fn can_i(&self, namespace: &str) -> String {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        let resource = if self.subresource.is_empty() {
            format!("{}{group}", self.resource)
        } else {
            format!(
                "{}{group} --subresource={}",
                self.resource, self.subresource
            )
        };
        match self.scope {
            Scope::JobNamespace => {
                format!("kubectl auth can-i {} {resource} -n {namespace}", self.verb)
            }
            _ => format!("kubectl auth can-i {} {resource}", self.verb),
        }
    }
}

const fn p(
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    verb: Verb,
    when: Condition,
    why: &'static str,
) -> Permission {
    Permission {
        group,
        resource,
        subresource,
        verb,
        scope: Scope::JobNamespace,
        when,
        why,
    }
}

const fn cluster(mut perm: Permission) -> Permission {
    perm.scope = Scope::Cluster;
    perm
}

const fn every_user(mut perm: Permission) -> Permission {
    perm.scope = Scope::EveryUser;
    perm
}

use Condition::*;
use Verb::*;

/// Every permission the executor uses.
pub const CATALOGUE: &[Permission] = &[
    // The job pod.
    p("", "pods", "", Create, Always, "create the job's pod"),
    p(
        "",
        "pods",
        "",
        Get,
        Always,
        "read the pod's real state before reporting a broken connection (OOMKilled, evicted, image pull)",
    ),
    p(
        "",
        "pods",
        "",
        List,
        Always,
        "start the pod watch, and find pods a crashed manager left (start-up sweep)",
    ),
    p(
        "",
        "pods",
        "",
        Watch,
        Always,
        "follow the pod's state with a watch instead of polling",
    ),
    p(
        "",
        "pods",
        "",
        Delete,
        Always,
        "delete the pod on every exit path and in the start-up sweep",
    ),
    // Running stages. WebSocket exec and attach open with a GET, which API servers authorize as
    // `get` (and, in newer versions, also as `create`), so both are needed.
    p(
        "",
        "pods",
        "exec",
        Create,
        Always,
        "run commands in the build and helper containers (write stage scripts, stream the job log)",
    ),
    p(
        "",
        "pods",
        "exec",
        Get,
        Always,
        "exec over WebSocket opens with a GET request",
    ),
    p(
        "",
        "pods",
        "attach",
        Create,
        Always,
        "start each stage in its container's shell (attach execution)",
    ),
    p(
        "",
        "pods",
        "attach",
        Get,
        Always,
        "attach over WebSocket opens with a GET request",
    ),
    p(
        "",
        "pods",
        "log",
        Get,
        Always,
        "read a container's own output when it fails before the job log starts (crash, wrong entrypoint)",
    ),
    // Per-job Secrets: variables and registry credentials.
    p(
        "",
        "secrets",
        "",
        Create,
        Always,
        "create the job's variables Secret and registry credentials Secret",
    ),
    p(
        "",
        "secrets",
        "",
        Get,
        Always,
        "check that image_pull_secrets and secret volumes exist in the job namespace",
    ),
    p(
        "",
        "secrets",
        "",
        List,
        Always,
        "find Secrets a crashed manager left (start-up sweep)",
    ),
    p(
        "",
        "secrets",
        "",
        Update,
        Always,
        "make the job's pod the owner of its Secrets, so Kubernetes deletes them with it",
    ),
    p(
        "",
        "secrets",
        "",
        Delete,
        Always,
        "delete the job's Secrets on every exit path",
    ),
    // Services with ports.
    p(
        "",
        "services",
        "",
        Create,
        Always,
        "create a ClusterIP Service for each job service that declares ports",
    ),
    p(
        "",
        "services",
        "",
        Get,
        Always,
        "read a Service back when a retried create conflicts",
    ),
    p(
        "",
        "services",
        "",
        List,
        Always,
        "find Services a crashed manager left (start-up sweep)",
    ),
    p(
        "",
        "services",
        "",
        Delete,
        Always,
        "delete the job's Services on every exit path",
    ),
    // Pre-flight checks of what the pod refers to.
    p(
        "",
        "serviceaccounts",
        "",
        Get,
        ServiceAccount,
        "check that the job's service account exists in the job namespace before the first job",
    ),
    p(
        "",
        "configmaps",
        "",
        Get,
        ConfigMapVolumes,
        "check that config_map volumes exist in the job namespace",
    ),
    p(
        "",
        "persistentvolumeclaims",
        "",
        Get,
        PvcVolumes,
        "check that pvc volumes exist in the job namespace",
    ),
    p(
        "",
        "namespaces",
        "",
        Get,
        SharedNamespace,
        "check that the job namespace exists before the first job",
    ),
    // Why a pod is pending.
    p(
        "",
        "events",
        "",
        List,
        PodWarningEvents,
        "show in the job log why the pod is pending (scheduling, image pulls, mounts)",
    ),
    p(
        "",
        "events",
        "",
        Watch,
        PodWarningEvents,
        "stream those events while the pod starts",
    ),
    // Namespace per job.
    cluster(p(
        "",
        "namespaces",
        "",
        Create,
        NamespacePerJob,
        "create the namespace ci-job-<id> for each job",
    )),
    cluster(p(
        "",
        "namespaces",
        "",
        Delete,
        NamespacePerJob,
        "delete the job's namespace when the job ends",
    )),
    // Pod disruption budgets.
    p(
        "policy",
        "poddisruptionbudgets",
        "",
        Create,
        PodDisruptionBudget,
        "protect the job pod from voluntary evictions (node drains, autoscalers)",
    ),
    p(
        "policy",
        "poddisruptionbudgets",
        "",
        Get,
        PodDisruptionBudget,
        "read a budget back when a retried create conflicts",
    ),
    p(
        "policy",
        "poddisruptionbudgets",
        "",
        List,
        PodDisruptionBudget,
        "find budgets a crashed manager left (start-up sweep)",
    ),
    p(
        "policy",
        "poddisruptionbudgets",
        "",
        Delete,
        PodDisruptionBudget,
        "delete a replaced pod's budget (pull policy fallback) and left-over ones (start-up sweep); it otherwise goes with its pod (owner reference)",
    ),
    // The permission check itself.
    every_user(p(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "",
        Create,
        Always,
        "the start-up permission check (like kubectl auth can-i)",
    )),
    every_user(p(
        "authentication.k8s.io",
        "selfsubjectreviews",
        "",
        Create,
        Always,
        "say at start-up which identity the manager runs as (like kubectl auth whoami)",
    )),
];

/// The permissions `config` needs, in catalogue order. With `namespace_per_job` the job namespaces
/// do not exist in advance, so what is otherwise granted in the job namespace is needed cluster-wide.
pub fn required(config: &KubernetesConfig) -> Vec<Permission> {
    let per_job = Condition::NamespacePerJob.holds(config);
    CATALOGUE
        .iter()
        .filter(|p| p.when.holds(config))
        .map(|p| {
            let mut p = *p;
            if per_job && p.scope == Scope::JobNamespace {
                p.scope = Scope::Cluster;
            }
            p
        })
        .collect()
}

/// The catalogue entry for a call, if the executor may make it at all.
pub fn find(
    group: &str,
    resource: &str,
    subresource: &str,
    verb: Verb,
) -> Option<&'static Permission> {
    CATALOGUE.iter().find(|p| {
        p.group == group && p.resource == resource && p.subresource == subresource && p.verb == verb
    })
}

#[cfg(test)]
mod tests;
