//! The RBAC authorizer, evaluated as kube-apiserver's: ClusterRoleBindings first, then RoleBindings
//! of the request's namespace (referring to a Role there or a ClusterRole); a rule matches on verb,
//! API group, `resource` or `resource/subresource` (with `*` and `*/sub`), resource names, or
//! non-resource URLs (`/apis/*` prefixes). Allowed decisions carry the same `RBAC: allowed by …`
//! reason; missing role references surface as the denial's reason.

use crate::auth::UserInfo;
use crate::resource::{self, RBAC_GROUP};
use crate::status::go_quote;
use crate::store::{Store, str_at, strs_at};
use serde_json::Value;

/// What is being asked (authorizer.Attributes).
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: String,
    /// `None` for non-resource requests.
    pub resource: Option<ResourceAttributes>,
    /// The URL path of a non-resource request.
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct ResourceAttributes {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl<'a> Attributes<'a> {
    pub fn resource(
        user: &'a UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Self {
            user,
            verb: verb.to_owned(),
            resource: Some(ResourceAttributes {
                group: group.to_owned(),
                resource: resource.to_owned(),
                subresource: subresource.to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            path: String::new(),
        }
    }

    pub fn non_resource(user: &'a UserInfo, verb: &str, path: &str) -> Self {
        Self {
            user,
            verb: verb.to_owned(),
            resource: None,
            path: path.to_owned(),
        }
    }
}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `RBAC: allowed by …` when allowed; errors met on the way when denied (may be empty).
    pub reason: String,
}

/// The authorizer over one store's RBAC objects.
#[derive(Debug, Clone, Copy)]
pub struct Authorizer<'a> {
    store: &'a Store,
}

impl<'a> Authorizer<'a> {
    pub fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub fn authorize(&self, a: &Attributes<'_>) -> Decision {
        let mut errors: Vec<String> = Vec::new();
        let list = |plural: &str, ns: Option<&str>| -> Vec<Value> {
            resource::by_plural(RBAC_GROUP, plural)
                .map(|rt| self.store.list(rt, ns).0)
                .unwrap_or_default()
        };
        let namespace = a
            .resource
            .as_ref()
            .map(|r| r.namespace.as_str())
            .unwrap_or_default();
        // Cluster-wide bindings first; a namespaced request's role bindings only if none allowed it.
        let cluster = list("clusterrolebindings", None)
            .into_iter()
            .map(|b| (b, ""));
        let local = std::iter::once(namespace)
            .filter(|ns| !ns.is_empty())
            .flat_map(|ns| {
                list("rolebindings", Some(ns))
                    .into_iter()
                    .map(move |b| (b, ns))
            });
        for (binding, ns) in cluster.chain(local) {
            let Some(subject) = applies_to(a.user, &binding, ns) else {
                continue;
            };
            // A ClusterRoleBinding can only name a ClusterRole.
            let kind = if ns.is_empty() {
                "ClusterRole"
            } else {
                str_at(&binding, "/roleRef/kind")
            };
            let role_name = str_at(&binding, "/roleRef/name");
            let rules = if kind == "ClusterRole" {
                self.cluster_role_rules(role_name)
            } else {
                self.role_rules(ns, role_name)
            };
            let Some(rules) = rules else {
                let what = if kind == "ClusterRole" {
                    "clusterrole"
                } else {
                    "role"
                };
                errors.push(format!(
                    "{what}.rbac.authorization.k8s.io {} not found",
                    go_quote(role_name)
                ));
                continue;
            };
            if rules.iter().any(|r| rule_allows(a, r)) {
                let name = str_at(&binding, "/metadata/name");
                let by = if ns.is_empty() {
                    format!("ClusterRoleBinding {}", go_quote(name))
                } else {
                    format!("RoleBinding {}", go_quote(&format!("{name}/{ns}")))
                };
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by {by} of {kind} {} to {}",
                        go_quote(role_name),
                        describe_subject(&subject, ns)
                    ),
                };
            }
        }
        let reason = match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        };
        Decision {
            allowed: false,
            reason,
        }
    }

    fn cluster_role_rules(&self, name: &str) -> Option<Vec<Value>> {
        let role = self
            .store
            .get("clusterroles.rbac.authorization.k8s.io", "", name)?;
        Some(rules_of(role))
    }

    fn role_rules(&self, namespace: &str, name: &str) -> Option<Vec<Value>> {
        let role = self
            .store
            .get("roles.rbac.authorization.k8s.io", namespace, name)?;
        Some(rules_of(role))
    }
}

/// The role's rules, moved out of the copy the store handed over.
fn rules_of(mut role: Value) -> Vec<Value> {
    match role.get_mut("rules").map(Value::take) {
        Some(Value::Array(rules)) => rules,
        _ => Vec::new(),
    }
}

/// The first subject of `binding` that is `user`.
fn applies_to(user: &UserInfo, binding: &Value, namespace: &str) -> Option<Value> {
    let subjects = binding.get("subjects")?.as_array()?;
    subjects
        .iter()
        .find(|s| {
            let name = str_at(s, "/name");
            match str_at(s, "/kind") {
                "User" => user.username == name,
                "Group" => user.groups.iter().any(|g| g == name),
                "ServiceAccount" => {
                    let ns = match str_at(s, "/namespace") {
                        "" => namespace,
                        n => n,
                    };
                    !ns.is_empty() && user.username == format!("system:serviceaccount:{ns}:{name}")
                }
                _ => false,
            }
        })
        .cloned()
}

fn describe_subject(s: &Value, binding_namespace: &str) -> String {
    let kind = str_at(s, "/kind");
    let name = str_at(s, "/name");
    if kind == "ServiceAccount" {
        let ns = match str_at(s, "/namespace") {
            "" => binding_namespace,
            n => n,
        };
        format!("{kind} {}", go_quote(&format!("{name}/{ns}")))
    } else {
        format!("{kind} {}", go_quote(name))
    }
}

fn rule_allows(a: &Attributes<'_>, rule: &Value) -> bool {
    if !strs_at(rule, "/verbs").any(|v| v == "*" || v == a.verb) {
        return false;
    }
    match &a.resource {
        Some(r) => {
            if !strs_at(rule, "/apiGroups").any(|g| g == "*" || g == r.group) {
                return false;
            }
            // `resource` or `resource/subresource`, compared without building the combined name.
            let names_this = |rr: &str| {
                if r.subresource.is_empty() {
                    rr == r.resource
                } else {
                    rr.strip_prefix(r.resource.as_str())
                        .and_then(|rest| rest.strip_prefix('/'))
                        == Some(r.subresource.as_str())
                }
            };
            let resource_ok = strs_at(rule, "/resources").any(|rr| {
                rr == "*"
                    || names_this(rr)
                    || (!r.subresource.is_empty()
                        && rr.strip_prefix("*/") == Some(r.subresource.as_str()))
            });
            if !resource_ok {
                return false;
            }
            let mut names = strs_at(rule, "/resourceNames").peekable();
            names.peek().is_none() || names.any(|n| n == r.name)
        }
        None => strs_at(rule, "/nonResourceURLs").any(|u| {
            u == "*"
                || u == a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        }),
    }
}

/// The forbidden message's cause part: `User "u" cannot get resource "pods" in API group "" in the
/// namespace "ns"` (or `at the cluster scope`, or `cannot get path "/x"`).
pub fn forbidden_cause(a: &Attributes<'_>) -> String {
    let user = go_quote(&a.user.username);
    match &a.resource {
        None => format!("User {user} cannot {} path {}", a.verb, go_quote(&a.path)),
        Some(r) => {
            let resource = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            if r.namespace.is_empty() {
                format!(
                    "User {user} cannot {} resource {} in API group {} at the cluster scope",
                    a.verb,
                    go_quote(&resource),
                    go_quote(&r.group)
                )
            } else {
                format!(
                    "User {user} cannot {} resource {} in API group {} in the namespace {}",
                    a.verb,
                    go_quote(&resource),
                    go_quote(&r.group),
                    go_quote(&r.namespace)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreOptions, WriteOptions};
    use serde_json::json;

    fn store() -> Store {
        let s = Store::new(StoreOptions::default());
        let w = WriteOptions::default();
        let ns = resource::by_plural("", "namespaces").expect("ns");
        s.create(ns, "", json!({"metadata":{"name":"ci-jobs"}}), &w)
            .expect("ns");
        let role = resource::by_plural(RBAC_GROUP, "roles").expect("roles");
        s.create(
            role,
            "ci-jobs",
            json!({"metadata":{"name":"runner"},"rules":[
            {"apiGroups":[""],"resources":["pods","pods/exec"],"verbs":["get","create"]},
            {"apiGroups":[""],"resources":["secrets"],"resourceNames":["only"],"verbs":["*"]}]}),
            &w,
        )
        .expect("role");
        let rb = resource::by_plural(RBAC_GROUP, "rolebindings").expect("rb");
        s.create(
            rb,
            "ci-jobs",
            json!({"metadata":{"name":"runner"},
            "roleRef":{"apiGroup":RBAC_GROUP,"kind":"Role","name":"runner"},
            "subjects":[{"kind":"ServiceAccount","name":"glrunner","namespace":"ci-system"}]}),
            &w,
        )
        .expect("binding");
        s
    }

    #[test]
    fn role_bindings_grant_listed_resources_and_subresources_only() {
        let s = store();
        let authz = Authorizer::new(&s);
        let sa = UserInfo::service_account("ci-system", "glrunner");
        let allowed = authz.authorize(&Attributes::resource(
            &sa, "create", "", "pods", "exec", "ci-jobs", "p",
        ));
        assert!(allowed.allowed);
        assert_eq!(
            allowed.reason,
            "RBAC: allowed by RoleBinding \"runner/ci-jobs\" of Role \"runner\" to ServiceAccount \"glrunner/ci-system\""
        );
        let attach = Attributes::resource(&sa, "create", "", "pods", "attach", "ci-jobs", "p");
        assert!(!authz.authorize(&attach).allowed);
        assert_eq!(
            forbidden_cause(&attach),
            "User \"system:serviceaccount:ci-system:glrunner\" cannot create resource \"pods/attach\" in API group \"\" in the namespace \"ci-jobs\""
        );
        let other_ns = Attributes::resource(&sa, "get", "", "pods", "", "default", "p");
        assert!(!authz.authorize(&other_ns).allowed);
    }

    #[test]
    fn resource_names_restrict_a_rule() {
        let s = store();
        let authz = Authorizer::new(&s);
        let sa = UserInfo::service_account("ci-system", "glrunner");
        let only = Attributes::resource(&sa, "delete", "", "secrets", "", "ci-jobs", "only");
        let other = Attributes::resource(&sa, "delete", "", "secrets", "", "ci-jobs", "other");
        let list = Attributes::resource(&sa, "list", "", "secrets", "", "ci-jobs", "");
        assert!(authz.authorize(&only).allowed);
        assert!(!authz.authorize(&other).allowed);
        assert!(!authz.authorize(&list).allowed);
    }

    #[test]
    fn a_missing_role_is_the_denial_reason() {
        let s = store();
        let rb = resource::by_plural(RBAC_GROUP, "rolebindings").expect("rb");
        s.create(
            rb,
            "ci-jobs",
            json!({"metadata":{"name":"dangling"},
            "roleRef":{"apiGroup":RBAC_GROUP,"kind":"Role","name":"nope"},
            "subjects":[{"kind":"User","name":"jane"}]}),
            &WriteOptions::default(),
        )
        .expect("binding");
        let jane = UserInfo::new("jane", &[]);
        let d = Authorizer::new(&s).authorize(&Attributes::resource(
            &jane, "get", "", "pods", "", "ci-jobs", "",
        ));
        assert_eq!(
            d,
            Decision {
                allowed: false,
                reason: "RBAC: role.rbac.authorization.k8s.io \"nope\" not found".into()
            }
        );
    }

    #[test]
    fn non_resource_urls_match_prefixes() {
        let rule = json!({"verbs":["get"],"nonResourceURLs":["/apis/*","/version"]});
        let u = UserInfo::new("u", &[]);
        assert!(rule_allows(
            &Attributes::non_resource(&u, "get", "/apis/rbac.authorization.k8s.io/v1"),
            &rule
        ));
        assert!(rule_allows(
            &Attributes::non_resource(&u, "get", "/version"),
            &rule
        ));
        assert!(!rule_allows(
            &Attributes::non_resource(&u, "get", "/api"),
            &rule
        ));
        assert!(!rule_allows(
            &Attributes::non_resource(&u, "post", "/version"),
            &rule
        ));
    }
}
