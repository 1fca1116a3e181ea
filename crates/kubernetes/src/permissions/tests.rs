//! The catalogue's contents and conditions, the Role YAML (snapshot and read back into k8s-openapi
//! types) and the committed permissions page.

use super::rbac::manifests;
use super::*;
use glrunner_config::kubernetes::{ConfigMapVolume, PvcVolume};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use std::path::PathBuf;

/// Set to regenerate the committed files these tests compare against.
const UPDATE: &str = "GLRUNNER_UPDATE_DOCS";

fn short(perms: &[Permission]) -> Vec<String> {
    perms
        .iter()
        .map(|p| {
            format!(
                "{}{} {}",
                if p.group.is_empty() {
                    String::new()
                } else {
                    format!("{}/", p.group)
                },
                p.resource_path(),
                p.verb
            )
        })
        .collect()
}

fn ci_jobs() -> KubernetesConfig {
    KubernetesConfig {
        namespace: Some("ci-jobs".into()),
        ..KubernetesConfig::default()
    }
}

#[test]
fn default_configuration_needs_the_executors_core_set() {
    let perms = required(&ci_jobs());
    assert_eq!(
        short(&perms),
        [
            "pods create",
            "pods get",
            "pods list",
            "pods watch",
            "pods delete",
            "pods/exec create",
            "pods/exec get",
            "pods/attach create",
            "pods/attach get",
            "pods/log get",
            "secrets create",
            "secrets get",
            "secrets list",
            "secrets update",
            "secrets delete",
            "services create",
            "services get",
            "services list",
            "services delete",
            "namespaces get",
            "events list",
            "events watch",
            "authorization.k8s.io/selfsubjectaccessreviews create",
            "authentication.k8s.io/selfsubjectreviews create",
        ]
    );
    assert!(perms.iter().all(|p| p.scope != Scope::Cluster));
    assert_eq!(perms.last().map(|p| p.scope), Some(Scope::EveryUser));
}

#[test]
fn conditions_follow_the_configuration() {
    let has = |c: &KubernetesConfig, s: &str| short(&required(c)).iter().any(|x| x == s);
    let mut c = ci_jobs();
    assert!(!has(&c, "serviceaccounts get"));
    c.service_account = Some("ci-job".into());
    assert!(has(&c, "serviceaccounts get"));
    let mut c = ci_jobs();
    c.service_account_overwrite_allowed = Some("ci-.*".into());
    assert!(has(&c, "serviceaccounts get"));

    let mut c = ci_jobs();
    c.volumes.config_map.push(ConfigMapVolume {
        name: "ci-settings".into(),
        mount_path: "/etc/ci".into(),
        ..ConfigMapVolume::default()
    });
    c.volumes.pvc.push(PvcVolume {
        name: "cache".into(),
        mount_path: "/cache".into(),
        ..PvcVolume::default()
    });
    assert!(has(&c, "configmaps get") && has(&c, "persistentvolumeclaims get"));

    let mut c = ci_jobs();
    c.print_pod_warning_events = Some(false);
    assert!(!has(&c, "events list") && !has(&c, "events watch"));

    let mut c = ci_jobs();
    c.pod_disruption_budget = Some(true);
    for v in ["create", "get", "list", "delete"] {
        assert!(has(&c, &format!("policy/poddisruptionbudgets {v}")), "{v}");
    }

    // Each job in its own namespace: namespaces are made and removed, and everything else must be
    // granted cluster-wide because the namespaces do not exist yet.
    let mut c = ci_jobs();
    c.namespace_per_job = Some(true);
    let perms = required(&c);
    assert!(has(&c, "namespaces create") && has(&c, "namespaces delete"));
    assert!(!has(&c, "namespaces get"));
    assert!(
        perms.iter().all(|p| p.scope != Scope::JobNamespace),
        "{perms:?}"
    );
}

#[test]
fn the_catalogue_is_complete_and_unambiguous() {
    for (i, p) in CATALOGUE.iter().enumerate() {
        assert!(p.why.len() > 10, "{p:?}");
        let dup = CATALOGUE[..i].iter().any(|q| {
            (q.group, q.resource, q.subresource, q.verb)
                == (p.group, p.resource, p.subresource, p.verb)
        });
        assert!(!dup, "listed twice: {p:?}");
    }
    // What part of the executor calls must all be here.
    for (group, resource, sub, verb) in [
        ("", "pods", "", Verb::Create),
        ("", "pods", "", Verb::Watch),
        ("", "pods", "exec", Verb::Create),
        ("", "pods", "exec", Verb::Get),
        ("", "pods", "attach", Verb::Create),
        ("", "pods", "log", Verb::Get),
        ("", "secrets", "", Verb::Update),
        ("", "serviceaccounts", "", Verb::Get),
        ("", "configmaps", "", Verb::Get),
        ("", "services", "", Verb::Delete),
        ("", "events", "", Verb::Watch),
        ("", "namespaces", "", Verb::Get),
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "",
            Verb::Create,
        ),
    ] {
        assert!(
            find(group, resource, sub, verb).is_some(),
            "{resource}/{sub} {verb}"
        );
    }
    assert!(find("", "pods", "", Verb::Patch).is_none());
    assert!(find("", "nodes", "", Verb::Get).is_none());
    assert!(
        find("apps", "pods", "", Verb::Get).is_none(),
        "the group counts"
    );
    assert!(find("", "pods", "exec", Verb::Delete).is_none());
}

#[test]
fn access_review_attributes() {
    let exec = find("", "pods", "exec", Verb::Create).unwrap();
    let a = exec.resource_attributes("ci-jobs");
    assert_eq!(a.namespace.as_deref(), Some("ci-jobs"));
    assert_eq!(
        (a.resource.as_deref(), a.subresource.as_deref()),
        (Some("pods"), Some("exec"))
    );
    assert_eq!(
        (a.verb.as_deref(), a.group.as_deref()),
        (Some("create"), Some(""))
    );
    assert_eq!(
        exec.can_i("ci-jobs"),
        "kubectl auth can-i create pods --subresource=exec -n ci-jobs"
    );

    let ns = find("", "namespaces", "", Verb::Get).unwrap();
    let a = ns.resource_attributes("ci-jobs");
    assert_eq!(
        (a.namespace.as_deref(), a.name.as_deref()),
        (Some("ci-jobs"), Some("ci-jobs"))
    );

    let ssar = find(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "",
        Verb::Create,
    )
    .unwrap();
    assert_eq!(ssar.resource_attributes("ci-jobs").namespace, None);
    assert_eq!(
        ssar.can_i("ci-jobs"),
        "kubectl auth can-i create selfsubjectaccessreviews.authorization.k8s.io"
    );
    let pdb = find("policy", "poddisruptionbudgets", "", Verb::Create).unwrap();
    assert_eq!(
        pdb.can_i("ns"),
        "kubectl auth can-i create poddisruptionbudgets.policy -n ns"
    );
}

#[test]
fn identities_from_forbidden_messages() {
    // K1: User "system:serviceaccount:ci-system:gitlab-runner" cannot create resource "secrets" …
    let id = Identity::parse("system:serviceaccount:ci-system:gitlab-runner");
    assert_eq!(
        id,
        Identity::ServiceAccount {
            namespace: "ci-system".into(),
            name: "gitlab-runner".into()
        }
    );
    assert_eq!(
        id.user_name(),
        "system:serviceaccount:ci-system:gitlab-runner"
    );
    let s = id.subject();
    assert_eq!(
        (s.kind.as_str(), s.namespace.as_deref(), s.api_group),
        ("ServiceAccount", Some("ci-system"), None)
    );
    // K5: the default service account of the chart's namespace.
    assert!(
        matches!(Identity::parse("system:serviceaccount:cicd:default"), Identity::ServiceAccount { name, .. } if name == "default")
    );
    let user = Identity::parse("ci-admin@example.com");
    assert_eq!(user, Identity::User("ci-admin@example.com".into()));
    assert_eq!(
        user.subject().api_group.as_deref(),
        Some("rbac.authorization.k8s.io")
    );
    assert!(matches!(
        Identity::parse("system:serviceaccount:only-ns"),
        Identity::User(_)
    ));
}

fn committed(path: &PathBuf, generated: &str) {
    if std::env::var_os(UPDATE).is_some() {
        std::fs::write(path, generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} differs from what the catalogue generates; regenerate it with \
         `{UPDATE}=1 cargo test -p glrunner-kubernetes` and commit it.\n--- generated ---\n{generated}",
        path.display()
    );
}

fn crate_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The YAML documents, as JSON values, by kind.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[test]
fn role_yaml_for_a_manager_in_another_namespace() {
    let id = Identity::parse("system:serviceaccount:ci-system:glrunner");
    let mut config = ci_jobs();
    config.service_account = Some("ci-job".into());
    let m = manifests(&required(&config), &id, "ci-jobs", "glrunner");
    let yaml = m.to_yaml();
    committed(
        &crate_file("src/permissions/snapshots/role-ci-jobs.yaml"),
        &yaml,
    );

    let docs = documents(&yaml);
    assert_eq!(docs.len(), 2);
    let role: Role = serde_json::from_value(docs[0].clone()).unwrap();
    assert_eq!(role, m.role);
    let binding: RoleBinding = serde_json::from_value(docs[1].clone()).unwrap();
    assert_eq!(binding, m.role_binding);
    assert_eq!(binding.metadata.namespace.as_deref(), Some("ci-jobs"));
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("glrunner", Some("ci-system"))
    );
    let rules = role.rules.unwrap();
    let pods_exec = rules
        .iter()
        .find(|r| r.resources.as_deref() == Some(&["pods/exec".to_owned()][..]))
        .unwrap();
    assert_eq!(pods_exec.verbs, ["create", "get"]);
    assert!(
        !rules
            .iter()
            .any(|r| r.resources.as_ref().unwrap()[0] == "selfsubjectaccessreviews"),
        "every user may already create access reviews"
    );
    assert!(m.cluster_role.is_none() && !yaml.contains("ClusterRole"));
}

#[test]
fn namespace_per_job_needs_a_cluster_role() {
    let id = Identity::parse("system:serviceaccount:ci-system:glrunner");
    let mut config = ci_jobs();
    config.namespace_per_job = Some(true);
    let m = manifests(&required(&config), &id, "ci-jobs", "glrunner");
    let yaml = m.to_yaml();
    let docs = documents(&yaml);
    assert_eq!(docs.len(), 2, "{yaml}");
    let role: ClusterRole = serde_json::from_value(docs[0].clone()).unwrap();
    assert_eq!(Some(role), m.cluster_role);
    let binding: ClusterRoleBinding = serde_json::from_value(docs[1].clone()).unwrap();
    assert_eq!(Some(binding), m.cluster_role_binding);
    let namespaces = m
        .cluster_role
        .as_ref()
        .unwrap()
        .rules
        .as_ref()
        .unwrap()
        .iter()
        .find(|r| r.resources.as_ref().unwrap()[0] == "namespaces")
        .unwrap()
        .verbs
        .clone();
    assert_eq!(namespaces, ["create", "delete"]);
}

#[test]
fn user_identities_get_a_user_subject() {
    let m = manifests(
        &required(&ci_jobs()),
        &Identity::User("ci-admin".into()),
        "ci-jobs",
        "glrunner",
    );
    let docs = documents(&m.to_yaml());
    let binding: RoleBinding = serde_json::from_value(docs[1].clone()).unwrap();
    let s = &binding.subjects.unwrap()[0];
    assert_eq!((s.kind.as_str(), s.name.as_str()), ("User", "ci-admin"));
    assert_eq!(s.api_group.as_deref(), Some("rbac.authorization.k8s.io"));
}

#[test]
fn committed_doc_matches_the_catalogue() {
    let page = docs::markdown();
    for p in CATALOGUE {
        assert!(
            page.contains(&format!("`{}` | {} |", p.resource_path(), p.verb)),
            "{p:?}"
        );
    }
    committed(&crate_file("../../docs/kubernetes-permissions.md"), &page);
}
