//! What a fresh cluster holds before anyone writes: the `default`, `kube-system`, `kube-public` and
//! `kube-node-lease` namespaces (each with its `default` service account), and the bootstrap RBAC
//! policy every authenticated user relies on (`system:discovery`, `system:basic-user`,
//! `system:public-info-viewer`) plus `cluster-admin` bound to `system:masters`.

use crate::resource::{self, RBAC_GROUP};
use crate::store::{Store, WriteOptions};
use serde_json::{Value, json};

const BOOTSTRAP_LABELS: &str = "kubernetes.io/bootstrapping";

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {BOOTSTRAP_LABELS: "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules})
}

fn cluster_role_binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}))
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {BOOTSTRAP_LABELS: "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

/// The bootstrap objects, in creation order: (plural, group, namespace, object).
fn objects() -> Vec<(&'static str, &'static str, Value)> {
    let mut out = Vec::new();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        out.push(("namespaces", "", json!({"metadata": {"name": ns}})));
    }
    out.push((
        "clusterroles",
        RBAC_GROUP,
        cluster_role(
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}
            ]),
        ),
    ));
    out.push(("clusterroles", RBAC_GROUP, cluster_role("system:discovery", json!([
        {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
            "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}
    ]))));
    out.push(("clusterroles", RBAC_GROUP, cluster_role("system:basic-user", json!([
        {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}
    ]))));
    out.push(("clusterroles", RBAC_GROUP, cluster_role("system:public-info-viewer", json!([
        {"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}
    ]))));
    out.push((
        "clusterrolebindings",
        RBAC_GROUP,
        cluster_role_binding("cluster-admin", "cluster-admin", &["system:masters"]),
    ));
    out.push((
        "clusterrolebindings",
        RBAC_GROUP,
        cluster_role_binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
    ));
    out.push((
        "clusterrolebindings",
        RBAC_GROUP,
        cluster_role_binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
    ));
    out.push((
        "clusterrolebindings",
        RBAC_GROUP,
        cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ));
    out
}

/// Fill a fresh store.
pub fn populate(store: &Store) {
    for (plural, group, obj) in objects() {
        let Some(rt) = resource::by_plural(group, plural) else {
            continue;
        };
        if let Err(e) = store.create(rt, "", obj, &WriteOptions::default()) {
            // The table above is fixed; an error here is a bug in it, worth a loud log.
            tracing::error!(plural, error = %e, "bootstrap object refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;
    use crate::rbac::{Attributes, Authorizer};
    use crate::store::StoreOptions;

    #[test]
    fn every_authenticated_user_may_discover_and_review_itself() {
        let store = Store::new(StoreOptions::default());
        populate(&store);
        assert!(store.get("serviceaccounts", "default", "default").is_some());
        let authz = Authorizer::new(&store);
        let u = UserInfo::new("nobody", &["system:authenticated"]);
        assert!(
            authz
                .authorize(&Attributes::non_resource(&u, "get", "/apis/policy/v1"))
                .allowed
        );
        assert!(
            authz
                .authorize(&Attributes::resource(
                    &u,
                    "create",
                    "authorization.k8s.io",
                    "selfsubjectaccessreviews",
                    "",
                    "",
                    ""
                ))
                .allowed
        );
        assert!(
            !authz
                .authorize(&Attributes::resource(
                    &u, "list", "", "pods", "", "default", ""
                ))
                .allowed
        );
        let admin = UserInfo::new("kubernetes-admin", &["system:masters"]);
        let d = authz.authorize(&Attributes::resource(
            &admin, "create", "", "pods", "attach", "x", "p",
        ));
        assert_eq!(
            d.reason,
            "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\""
        );
    }
}
