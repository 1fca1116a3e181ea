//! `docs/kubernetes-permissions.md`, generated from the catalogue (a test keeps the committed file
//! equal to what this produces).

use super::rbac::{Identity, manifests};
use super::{CATALOGUE, Scope, required};
use glrunner_config::KubernetesConfig;
use std::fmt::Write as _;

/// The documentation page.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# Kubernetes permissions\n\n\
         <!-- Generated from crates/kubernetes/src/permissions/mod.rs; do not edit. Regenerate with\n     \
         GLRUNNER_UPDATE_DOCS=1 cargo test -p glrunner-kubernetes committed_doc -->\n\n\
         Every call glrunner's Kubernetes executor makes to the API server is in this list, and only\n\
         these: the executor refuses any other call. At start-up glrunner checks each permission the\n\
         configuration needs with a SelfSubjectAccessReview (as `kubectl auth can-i` does) and, when one\n\
         is missing, prints which identity it runs as, what that identity lacks, and the Role and\n\
         RoleBinding below for it.\n\n\
         Grant the job-namespace permissions in the namespace the jobs run in (`namespace` in\n\
         `[runners.kubernetes]`), to the identity the manager runs as, which may live in another\n\
         namespace. With `namespace_overwrite_allowed`, grant them in every namespace jobs may choose.\n\n",
    );
    out.push_str("| API group | Resource | Verb | Granted | Needed when | Why |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for p in CATALOGUE {
        let scope = match p.scope {
            Scope::JobNamespace => "job namespace (Role)",
            Scope::Cluster => "cluster (ClusterRole)",
            Scope::EveryUser => "to every user by default",
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {scope} | {} | {} |",
            p.group_name(),
            p.resource_path(),
            p.verb,
            p.when.describe(),
            p.why
        );
    }
    let identity = Identity::parse("system:serviceaccount:ci-system:glrunner");
    let example = |title: &str, config: &KubernetesConfig, out: &mut String| {
        let m = manifests(&required(config), &identity, config.namespace(), "glrunner");
        let _ = writeln!(out, "\n## {title}\n\n```yaml\n{}```", m.to_yaml());
    };
    let shared = KubernetesConfig {
        namespace: Some("ci-jobs".to_owned()),
        ..KubernetesConfig::default()
    };
    example(
        "Example: manager in `ci-system`, jobs in `ci-jobs`, default settings",
        &shared,
        &mut out,
    );
    let per_job = KubernetesConfig {
        namespace: Some("ci-jobs".to_owned()),
        namespace_per_job: Some(true),
        service_account: Some("ci-job".to_owned()),
        ..KubernetesConfig::default()
    };
    example(
        "Example: `namespace_per_job = true` and `service_account = \"ci-job\"`",
        &per_job,
        &mut out,
    );
    out
}
