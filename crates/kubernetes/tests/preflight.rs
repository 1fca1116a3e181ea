//! Start-up checks against the Kubernetes API test server: each catalogue row (K1–K5) provoked, the
//! explanation and the fix checked, and the fix applied where it is a manifest.

mod common;

use common::*;
use glrunner_config::kubernetes::{ConfigMapVolume, SecretVolume};
use glrunner_kubernetes::api::Kube;
use glrunner_kubernetes::preflight::{Topic, check};

#[tokio::test]
async fn a_complete_install_has_nothing_to_report() {
    let env = env(true).await;
    let report = check(&env.kube(&ci_jobs()).await, &ci_jobs(), Some("ci-system")).await;
    assert!(report.problems.is_empty(), "{report}");
    assert!(!report.fatal);
    assert_eq!(
        report.user.as_deref(),
        Some("system:serviceaccount:ci-system:glrunner")
    );
}

#[tokio::test]
async fn missing_permissions_come_with_the_role_that_grants_them() {
    let env = env(false).await;
    let k = env.kube(&ci_jobs()).await;
    let report = check(&k, &ci_jobs(), Some("ci-system")).await;
    assert!(
        !report.fatal,
        "permissions can be granted while glrunner runs"
    );
    let p = report
        .problems
        .iter()
        .find(|p| p.topic == Topic::Permissions)
        .unwrap_or_else(|| panic!("no permission problem: {report}"));
    let text = &p.message;
    assert!(
        text.starts_with("system:serviceaccount:ci-system:glrunner may not do"),
        "{text}"
    );
    for line in [
        "create secrets",
        "create pods/attach",
        "kubectl auth can-i create pods --subresource=exec -n ci-jobs",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    // The printed manifests, applied, grant everything.
    let yaml: String = text
        .split_once("(`kubectl apply -f <file>`):\n")
        .map(|(_, y)| y)
        .expect("the YAML follows")
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    env.server
        .apply_yaml(&yaml)
        .expect("the printed YAML applies");
    let again = check(&k, &ci_jobs(), Some("ci-system")).await;
    assert!(!again.has(Topic::Permissions), "{again}");
}

#[tokio::test]
async fn the_default_service_account_is_called_out() {
    let env = env(false).await;
    // K5: the chart deployed with `rbac.create: false` runs as `default`.
    let sa = env.server.service_account_token("ci-system", "default");
    let kubeconfig = env
        .server
        .kubeconfig_for(&sa, "default-sa", "ci-system")
        .expect("kubeconfig");
    let mut options = env.options();
    options.kubeconfig = Some(kubeconfig);
    let conn = glrunner_kubernetes::connection::connect(&ci_jobs(), &options)
        .await
        .expect("connect");
    let report = check(&Kube::new(conn.client, &ci_jobs()), &ci_jobs(), None).await;
    let identity = report
        .problems
        .iter()
        .find(|p| p.topic == Topic::Identity)
        .unwrap_or_else(|| panic!("no identity problem: {report}"));
    assert!(
        identity
            .message
            .contains("runs as the default service account of namespace ci-system"),
        "{}",
        identity.message
    );
    assert!(
        identity
            .message
            .contains("kubectl -n ci-system create serviceaccount glrunner"),
        "{}",
        identity.message
    );
    let perms = report
        .problems
        .iter()
        .find(|p| p.topic == Topic::Permissions)
        .expect("and what it lacks");
    assert!(
        perms
            .message
            .contains("system:serviceaccount:ci-system:default may not do"),
        "{}",
        perms.message
    );
}

#[tokio::test]
async fn objects_the_pods_refer_to_must_exist_in_the_job_namespace() {
    let env = env(false).await;
    let mut config = ci_jobs();
    config.service_account = Some("ci-builder".into());
    config.image_pull_secrets = vec!["registry-creds".into()];
    config.volumes.secret.push(SecretVolume {
        name: "gitlab-ca".into(),
        mount_path: "/certs".into(),
        ..SecretVolume::default()
    });
    config.volumes.config_map.push(ConfigMapVolume {
        name: "build-settings".into(),
        mount_path: "/settings".into(),
        ..ConfigMapVolume::default()
    });
    env.server.apply_yaml(&role_yaml(&config)).expect("role");
    let report = check(&env.kube(&config).await, &config, Some("ci-system")).await;
    let find = |t: Topic| -> Vec<String> {
        report
            .problems
            .iter()
            .filter(|p| p.topic == t)
            .map(|p| p.message.clone())
            .collect()
    };
    assert!(find(Topic::Permissions).is_empty(), "{report}");
    // K2
    let sa = find(Topic::ServiceAccount);
    assert_eq!(sa.len(), 1, "{report}");
    assert!(
        sa[0].contains("`kubectl -n ci-jobs create serviceaccount ci-builder`"),
        "{}",
        sa[0]
    );
    // K3, with the command that copies each from where the manager runs.
    let secrets = find(Topic::Secret);
    assert_eq!(secrets.len(), 2, "{report}");
    assert!(secrets.iter().any(|m| m.contains("\"registry-creds\"")
        && m.contains("kubectl -n ci-system get secret registry-creds -o yaml")));
    assert!(secrets.iter().any(|m| m.contains("\"gitlab-ca\"")));
    let maps = find(Topic::ConfigMap);
    assert_eq!(maps.len(), 1, "{report}");
    assert!(
        maps[0].contains("kubectl -n ci-system get configmap build-settings -o yaml")
            && maps[0].contains("kubectl -n ci-jobs apply -f -"),
        "{}",
        maps[0]
    );

    // Once they exist, nothing is reported.
    env.server
        .apply_yaml(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: ci-builder, namespace: ci-jobs}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: registry-creds, namespace: ci-jobs}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: gitlab-ca, namespace: ci-jobs}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: build-settings, namespace: ci-jobs}\n",
        )
        .expect("objects");
    let again = check(&env.kube(&config).await, &config, Some("ci-system")).await;
    assert!(again.problems.is_empty(), "{again}");
}

#[tokio::test]
async fn a_missing_namespace_and_refused_credentials() {
    let env = env(true).await;
    let mut config = ci_jobs();
    config.namespace = Some("ci-elsewhere".into());
    // No Role can exist in a namespace that does not: reading namespaces is granted cluster-wide.
    env.server
        .apply_yaml(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ns-reader}
rules: [{apiGroups: [""], resources: [namespaces], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ns-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ns-reader}
subjects: [{kind: ServiceAccount, name: glrunner, namespace: ci-system}]
"#,
        )
        .expect("cluster role");
    let report = check(&env.kube(&config).await, &config, None).await;
    let ns = report
        .problems
        .iter()
        .find(|p| p.topic == Topic::Namespace)
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        ns.message
            .contains("`kubectl create namespace ci-elsewhere`"),
        "{}",
        ns.message
    );
    assert!(!report.fatal);

    // A token of a deleted service account authenticates no more: nothing can work.
    let k = env.kube(&ci_jobs()).await;
    let admin = env.server.admin_client().await.expect("admin client");
    kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin, "ci-system")
        .delete("glrunner", &Default::default())
        .await
        .expect("delete the service account");
    let report = check(&k, &ci_jobs(), None).await;
    assert!(report.fatal, "{report}");
    assert!(report.has(Topic::Credentials), "{report}");
    assert!(report.to_string().contains("401 Unauthorized"), "{report}");
}
