//! kubectl against the test server: apply, get, events by field selector, auth can-i (with --as and
//! with a service account's own kubeconfig), auth whoami, and the exact forbidden messages.

mod common;

use common::{RUNNER_RBAC, kubectl, runner_cluster, server};
use glrunner_apiserver::EventSpec;
use serde_json::{Value, json};

#[tokio::test]
async fn apply_creates_then_configures_namespaces_service_accounts_and_rbac() {
    let Some(k) = kubectl() else { return };
    let s = server().await;
    let kc = s
        .kubeconfig_for(s.admin(), "admin", "default")
        .expect("kubeconfig");
    let manifest = s.workdir().join("rbac.yaml");
    std::fs::write(&manifest, RUNNER_RBAC.as_str()).expect("manifest");
    let out = k
        .ok(&kc, &["apply", "-f", manifest.to_str().expect("utf-8")])
        .await;
    for line in [
        "namespace/ci-jobs created",
        "serviceaccount/glrunner created",
        "role.rbac.authorization.k8s.io/glrunner created",
        "rolebinding.rbac.authorization.k8s.io/glrunner created",
    ] {
        assert!(out.contains(line), "{line} missing from:\n{out}");
    }
    let role = s
        .store()
        .get("roles.rbac.authorization.k8s.io", "ci-jobs", "glrunner")
        .expect("role stored");
    assert!(
        role["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // A second apply with a changed rule patches (strategic merge) and leaves the rest alone.
    let changed = RUNNER_RBAC.replace(
        r#"resources: ["pods/exec"]"#,
        r#"resources: ["pods/exec", "pods/attach"]"#,
    );
    std::fs::write(&manifest, changed).expect("manifest");
    let out = k
        .ok(&kc, &["apply", "-f", manifest.to_str().expect("utf-8")])
        .await;
    assert!(
        out.contains("role.rbac.authorization.k8s.io/glrunner configured"),
        "{out}"
    );
    assert!(out.contains("namespace/ci-jobs unchanged"), "{out}");
    let role = s
        .store()
        .get("roles.rbac.authorization.k8s.io", "ci-jobs", "glrunner")
        .expect("role stored");
    assert_eq!(
        role["rules"][1]["resources"],
        json!(["pods/exec", "pods/attach"])
    );
    assert!(s.request_count("patch", "roles", "") >= 1);
}

#[tokio::test]
async fn get_pods_json_and_events_by_involved_object() {
    let Some(k) = kubectl() else { return };
    let s = runner_cluster().await;
    let kc = s
        .kubeconfig_for(s.admin(), "admin", "ci-jobs")
        .expect("kubeconfig");
    k.ok(
        &kc,
        &["run", "job-1", "--image=alpine:3.20", "--restart=Never"],
    )
    .await;
    k.ok(
        &kc,
        &["run", "job-2", "--image=alpine:3.20", "--restart=Never"],
    )
    .await;
    let pods: Value =
        serde_json::from_str(&k.ok(&kc, &["get", "pods", "-o", "json"]).await).expect("json");
    let names: Vec<&str> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["job-1", "job-2"]);
    assert_eq!(pods["items"][0]["status"]["phase"], "Pending");
    assert_eq!(
        pods["items"][0]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );

    for name in ["job-1", "job-2"] {
        let pod = s.store().get("pods", "ci-jobs", name).expect("pod");
        s.store()
            .record_event(EventSpec {
                involved_object: pod,
                event_type: "Warning".into(),
                reason: "FailedScheduling".into(),
                message: format!("0/1 nodes are available for {name}"),
                component: "default-scheduler".into(),
                field_path: None,
            })
            .expect("event");
    }
    let events: Value = serde_json::from_str(
        &k.ok(
            &kc,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=job-2",
                "-o",
                "json",
            ],
        )
        .await,
    )
    .expect("json");
    let items = events["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(items[0]["message"], "0/1 nodes are available for job-2");
    let table = k
        .ok(&kc, &["get", "events", "--field-selector", "type=Warning"])
        .await;
    assert!(
        table.contains("FailedScheduling") && table.contains("pod/job-1"),
        "{table}"
    );
    let bad = k
        .run(&kc, &["get", "events", "--field-selector", "spec.bogus=1"])
        .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("field label not supported: spec.bogus"));
}

#[tokio::test]
async fn auth_can_i_answers_as_rbac_says() {
    let Some(k) = kubectl() else { return };
    let s = runner_cluster().await;
    let admin = s
        .kubeconfig_for(s.admin(), "admin", "ci-jobs")
        .expect("kubeconfig");
    let sa = s.service_account_token("ci-system", "glrunner");
    let own = s
        .kubeconfig_for(&sa, "runner", "ci-jobs")
        .expect("kubeconfig");
    let as_sa = "--as=system:serviceaccount:ci-system:glrunner";
    let cases: &[(&[&str], bool)] = &[
        (&["auth", "can-i", "create", "pods", "-n", "ci-jobs"], true),
        (
            &[
                "auth",
                "can-i",
                "create",
                "pods",
                "--subresource=exec",
                "-n",
                "ci-jobs",
            ],
            true,
        ),
        (
            &[
                "auth",
                "can-i",
                "create",
                "pods",
                "--subresource=attach",
                "-n",
                "ci-jobs",
            ],
            false,
        ),
        (
            &["auth", "can-i", "create", "secrets", "-n", "ci-jobs"],
            false,
        ),
        (&["auth", "can-i", "create", "pods", "-n", "default"], false),
        (
            &["auth", "can-i", "get", "serviceaccounts", "-n", "ci-jobs"],
            true,
        ),
    ];
    for (args, allowed) in cases {
        for (kc, extra) in [(&admin, Some(as_sa)), (&own, None)] {
            let mut argv: Vec<&str> = args.to_vec();
            argv.extend(extra);
            let out = k.run(kc, &argv).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let want = if *allowed { "yes" } else { "no" };
            assert_eq!(
                stdout.trim(),
                want,
                "kubectl {argv:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                out.status.success(),
                *allowed,
                "exit status of kubectl {argv:?}"
            );
        }
    }
    let out = k
        .ok(
            &admin,
            &[
                "auth",
                "can-i",
                "create",
                "pods",
                "--subresource=attach",
                "-n",
                "ci-jobs",
            ],
        )
        .await;
    assert_eq!(out.trim(), "yes");
}

#[tokio::test]
async fn auth_whoami_for_certificate_and_token_users() {
    let Some(k) = kubectl() else { return };
    let s = runner_cluster().await;
    let jane = s
        .user_certificate("jane", &["dev", "ops"])
        .expect("certificate");
    let kc = s
        .kubeconfig_for(&jane, "jane", "default")
        .expect("kubeconfig");
    let out = k.ok(&kc, &["auth", "whoami", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        json!(["dev", "ops", "system:authenticated"])
    );

    let sa = s.service_account_token("ci-system", "glrunner");
    let kc = s.kubeconfig_for(&sa, "sa", "ci-jobs").expect("kubeconfig");
    let out = k.ok(&kc, &["auth", "whoami"]).await;
    assert!(
        out.contains("system:serviceaccount:ci-system:glrunner"),
        "{out}"
    );
    assert!(
        out.contains(
            "[system:serviceaccounts system:serviceaccounts:ci-system system:authenticated]"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn forbidden_messages_match_the_apiserver() {
    let Some(k) = kubectl() else { return };
    let s = runner_cluster().await;
    let sa = s.service_account_token("ci-system", "glrunner");
    let kc = s.kubeconfig_for(&sa, "sa", "ci-jobs").expect("kubeconfig");
    let user = "system:serviceaccount:ci-system:glrunner";
    let cases: &[(&[&str], String)] = &[
        (
            &["get", "secrets"],
            format!(
                r#"Error from server (Forbidden): secrets is forbidden: User "{user}" cannot list resource "secrets" in API group "" in the namespace "ci-jobs""#
            ),
        ),
        (
            &["get", "namespaces"],
            format!(
                r#"Error from server (Forbidden): namespaces is forbidden: User "{user}" cannot list resource "namespaces" in API group "" at the cluster scope"#
            ),
        ),
        (
            &["get", "role", "glrunner"],
            format!(
                r#"Error from server (Forbidden): roles.rbac.authorization.k8s.io "glrunner" is forbidden: User "{user}" cannot get resource "roles" in API group "rbac.authorization.k8s.io" in the namespace "ci-jobs""#
            ),
        ),
    ];
    for (args, want) in cases {
        let out = k.run(&kc, args).await;
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().any(|l| l == want),
            "kubectl {args:?}:\n{stderr}\nwanted: {want}"
        );
    }
}
