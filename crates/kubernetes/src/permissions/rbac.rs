//! Role and RoleBinding (and, for cluster-wide permissions, ClusterRole and ClusterRoleBinding) that
//! grant a manager identity a list of permissions in the job namespace: as k8s-openapi objects, and
//! as the commented YAML glrunner prints when a permission is missing (`kubectl apply -f` ready).

use super::{Permission, Scope, Verb};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::fmt::Write as _;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Who the manager runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    ServiceAccount { namespace: String, name: String },
    User(String),
}

impl Identity {
    /// From the user name the API server reports (`system:serviceaccount:<ns>:<name>` or a user).
    pub fn parse(user: &str) -> Self {
        match user
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
        {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
                Identity::ServiceAccount {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                }
            }
            _ => Identity::User(user.to_owned()),
        }
    }

    /// The user name as the API server prints it.
    pub fn user_name(&self) -> String {
        match self {
            Identity::ServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
            Identity::User(u) => u.clone(),
        }
    }

    pub fn subject(&self) -> Subject {
        match self {
            Identity::ServiceAccount { namespace, name } => Subject {
                kind: "ServiceAccount".to_owned(),
                name: name.clone(),
                namespace: Some(namespace.clone()),
                api_group: None,
            },
            Identity::User(u) => Subject {
                kind: "User".to_owned(),
                name: u.clone(),
                namespace: None,
                api_group: Some(RBAC_GROUP.to_owned()),
            },
        }
    }
}

/// One rule: a resource (with subresource) of a group, its verbs, and why each verb is needed.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    group: &'static str,
    resource: String,
    verbs: Vec<(Verb, &'static str)>,
}

fn rules(perms: &[Permission], scope: Scope) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for p in perms.iter().filter(|p| p.scope == scope) {
        let resource = p.resource_path();
        let i = match out
            .iter()
            .position(|r| r.group == p.group && r.resource == resource)
        {
            Some(i) => i,
            None => {
                out.push(Rule {
                    group: p.group,
                    resource,
                    verbs: Vec::new(),
                });
                out.len() - 1
            }
        };
        if !out[i].verbs.iter().any(|(v, _)| *v == p.verb) {
            out[i].verbs.push((p.verb, p.why));
        }
    }
    for r in &mut out {
        r.verbs.sort_by_key(|(v, _)| *v);
    }
    out
}

fn policy_rules(rules: &[Rule]) -> Vec<PolicyRule> {
    rules
        .iter()
        .map(|r| PolicyRule {
            api_groups: Some(vec![r.group.to_owned()]),
            resources: Some(vec![r.resource.clone()]),
            verbs: r.verbs.iter().map(|(v, _)| v.as_str().to_owned()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

/// The RBAC objects granting a set of permissions.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    pub identity: Identity,
    pub namespace: String,
    pub role: Role,
    pub role_binding: RoleBinding,
    /// Only when a permission is cluster-wide (`namespace_per_job`).
    pub cluster_role: Option<ClusterRole>,
    pub cluster_role_binding: Option<ClusterRoleBinding>,
    namespaced_rules: Vec<Rule>,
    cluster_rules: Vec<Rule>,
}

/// Grant `perms` to `identity` in the job namespace `namespace`, in objects named `name`.
pub fn manifests(
    perms: &[Permission],
    identity: &Identity,
    namespace: &str,
    name: &str,
) -> Manifests {
    let namespaced = rules(perms, Scope::JobNamespace);
    let cluster = rules(perms, Scope::Cluster);
    let meta = |ns: Option<&str>| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: ns.map(str::to_owned),
        ..ObjectMeta::default()
    };
    let role_ref = |kind: &str| RoleRef {
        api_group: Some(RBAC_GROUP.to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    };
    let (cluster_role, cluster_role_binding) = if cluster.is_empty() {
        (None, None)
    } else {
        (
            Some(ClusterRole {
                metadata: meta(None),
                rules: Some(policy_rules(&cluster)),
                ..ClusterRole::default()
            }),
            Some(ClusterRoleBinding {
                metadata: meta(None),
                role_ref: role_ref("ClusterRole"),
                subjects: Some(vec![identity.subject()]),
            }),
        )
    };
    Manifests {
        identity: identity.clone(),
        namespace: namespace.to_owned(),
        role: Role {
            metadata: meta(Some(namespace)),
            rules: Some(policy_rules(&namespaced)),
        },
        role_binding: RoleBinding {
            metadata: meta(Some(namespace)),
            role_ref: role_ref("Role"),
            subjects: Some(vec![identity.subject()]),
        },
        cluster_role,
        cluster_role_binding,
        namespaced_rules: namespaced,
        cluster_rules: cluster,
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn write_rules(out: &mut String, rules: &[Rule]) {
    out.push_str("rules:\n");
    for Rule {
        group,
        resource,
        verbs,
    } in rules
    {
        // One comment line per reason, naming the verbs it covers.
        let mut reasons: Vec<(Vec<&str>, &str)> = Vec::new();
        for (verb, why) in verbs {
            match reasons.iter_mut().find(|(_, w)| w == why) {
                Some((vs, _)) => vs.push(verb.as_str()),
                None => reasons.push((vec![verb.as_str()], why)),
            }
        }
        for (vs, why) in reasons {
            let _ = writeln!(out, "  # {}: {why}", vs.join(", "));
        }
        let verbs: Vec<String> = verbs.iter().map(|(v, _)| q(v.as_str())).collect();
        let _ = writeln!(out, "  - apiGroups: [{}]", q(group));
        let _ = writeln!(out, "    resources: [{}]", q(resource));
        let _ = writeln!(out, "    verbs: [{}]", verbs.join(", "));
    }
}

fn write_binding(
    out: &mut String,
    kind: &str,
    role_kind: &str,
    name: &str,
    ns: Option<&str>,
    subject: &Subject,
) {
    let _ = writeln!(
        out,
        "apiVersion: {RBAC_GROUP}/v1\nkind: {kind}\nmetadata:\n  name: {}",
        q(name)
    );
    if let Some(ns) = ns {
        let _ = writeln!(out, "  namespace: {}", q(ns));
    }
    let _ = writeln!(
        out,
        "roleRef:\n  apiGroup: {RBAC_GROUP}\n  kind: {role_kind}\n  name: {}\nsubjects:\n  - kind: {}\n    name: {}",
        q(name),
        subject.kind,
        q(&subject.name)
    );
    if let Some(ns) = &subject.namespace {
        let _ = writeln!(out, "    namespace: {}", q(ns));
    }
    if let Some(g) = &subject.api_group {
        let _ = writeln!(out, "    apiGroup: {g}");
    }
}

impl Manifests {
    /// [`Manifests::to_yaml`] indented by four spaces, to quote in an error message.
    pub fn to_indented_yaml(&self) -> String {
        self.to_yaml()
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Commented YAML, several documents, ready for `kubectl apply -f -`.
    pub fn to_yaml(&self) -> String {
        let name = self.role.metadata.name.clone().unwrap_or_default();
        let subject = self.identity.subject();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# What glrunner's Kubernetes executor needs, granted to {}.\n\
             # Apply with: kubectl apply -f <this file>",
            self.identity.user_name()
        );
        if !self.namespaced_rules.is_empty() {
            let _ = writeln!(
                out,
                "apiVersion: {RBAC_GROUP}/v1\nkind: Role\nmetadata:\n  name: {}\n  namespace: {}",
                q(&name),
                q(&self.namespace)
            );
            write_rules(&mut out, &self.namespaced_rules);
            out.push_str("---\n");
            write_binding(
                &mut out,
                "RoleBinding",
                "Role",
                &name,
                Some(&self.namespace),
                &subject,
            );
        }
        if !self.cluster_rules.is_empty() {
            if !self.namespaced_rules.is_empty() {
                out.push_str("---\n");
            }
            out.push_str(
                "# Cluster-wide: namespaces themselves, and everything when each job gets its own namespace.\n",
            );
            let _ = writeln!(
                out,
                "apiVersion: {RBAC_GROUP}/v1\nkind: ClusterRole\nmetadata:\n  name: {}",
                q(&name)
            );
            write_rules(&mut out, &self.cluster_rules);
            out.push_str("---\n");
            write_binding(
                &mut out,
                "ClusterRoleBinding",
                "ClusterRole",
                &name,
                None,
                &subject,
            );
        }
        out
    }
}
