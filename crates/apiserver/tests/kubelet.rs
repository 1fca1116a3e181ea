//! The process kubelet: scheduling (FailedScheduling with the scheduler's message), image pulls
//! (ErrImagePull → ImagePullBackOff with the runtime's messages and events, pull secrets), volumes
//! (FailedMount), environment (CreateContainerConfigError), and — where containers can run (root)
//! — real processes: volumes at their mountPath, init containers, exit codes, restarts, OOM kills,
//! eviction, activeDeadlineSeconds and graceful deletion.

mod common;

use common::*;
use glrunner_apiserver::{Image, KubeletOptions, NodeConfig, Taint};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const NS: &str = "ci-jobs";

fn apply(c: &glrunner_apiserver::Cluster, yaml: &str) {
    c.apply_yaml(yaml).expect("apply");
}

async fn pods(c: &glrunner_apiserver::Cluster) -> Api<Pod> {
    Api::namespaced(c.admin_client().await.expect("client"), NS)
}

fn message_of(pod: &Value, c: &str) -> String {
    container_status(pod, c)
        .and_then(|s| s["state"]["waiting"]["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn terminated<'a>(pod: &'a Value, c: &str) -> &'a Value {
    container_status(pod, c).map_or(&Value::Null, |s| &s["state"]["terminated"])
}

// ------------------------------------------------------------------------------ scheduling

#[tokio::test]
async fn unschedulable_pods_wait_with_failed_scheduling_until_the_node_fits() {
    let c = cluster(KubeletOptions::default().fast()).await;
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: gpu-job, namespace: ci-jobs}
spec:
  nodeSelector: {pool: gpu}
  containers: [{name: build, image: alpine:3.20, command: [sleep, "300"]}]
"#,
    );
    let want = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    let pod = pod_until(c.store(), NS, "gpu-job", 10, "Unschedulable", |p| {
        condition(p, "PodScheduled").is_some_and(|c| c["status"] == "False")
    })
    .await;
    let cond = condition(&pod, "PodScheduled").expect("condition");
    assert_eq!(cond["reason"], "Unschedulable");
    assert_eq!(cond["message"], want);
    assert_eq!(phase(&pod), "Pending");
    assert!(pod["spec"]["nodeName"].is_null());
    let ev = event_until(c.store(), NS, "gpu-job", "FailedScheduling", 5, |m| {
        m == want
    })
    .await;
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["source"]["component"], "default-scheduler");

    // Labelling the node (as `kubectl label node` does) lets the scheduler bind the pod.
    let nodes: Api<Node> = Api::all(c.admin_client().await.expect("client"));
    nodes
        .patch(
            "glrunner-node",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"pool": "gpu"}}})),
        )
        .await
        .expect("label the node");
    let pod = pod_until(c.store(), NS, "gpu-job", 10, "bound to the node", |p| {
        p["spec"]["nodeName"] == "glrunner-node"
    })
    .await;
    assert_eq!(
        condition(&pod, "PodScheduled").expect("cond")["status"],
        "True"
    );
    event_until(c.store(), NS, "gpu-job", "Scheduled", 5, |m| {
        m == "Successfully assigned ci-jobs/gpu-job to glrunner-node"
    })
    .await;
}

#[tokio::test]
async fn taints_and_capacity_keep_pods_off_the_node() {
    let mut node = NodeConfig::default();
    node.taints
        .push(Taint::new("dedicated", "ci", "NoSchedule"));
    node.memory = "1Gi".to_owned();
    let c = cluster(KubeletOptions {
        node,
        ..KubeletOptions::default().fast()
    })
    .await;
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: untolerated, namespace: ci-jobs}
spec:
  containers: [{name: build, image: alpine:3.20}]
---
apiVersion: v1
kind: Pod
metadata: {name: too-big, namespace: ci-jobs}
spec:
  tolerations: [{key: dedicated, operator: Equal, value: ci, effect: NoSchedule}]
  containers:
  - name: build
    image: alpine:3.20
    resources: {requests: {memory: 4Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: fits, namespace: ci-jobs}
spec:
  tolerations: [{key: dedicated, operator: Exists}]
  containers:
  - name: build
    image: alpine:3.20
    resources: {requests: {memory: 256Mi}}
"#,
    );
    let scheduled_false =
        |p: &Value| condition(p, "PodScheduled").is_some_and(|c| c["status"] == "False");
    let pod = pod_until(
        c.store(),
        NS,
        "untolerated",
        10,
        "Unschedulable",
        scheduled_false,
    )
    .await;
    assert_eq!(
        condition(&pod, "PodScheduled").expect("cond")["message"],
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: ci}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    let pod = pod_until(
        c.store(),
        NS,
        "too-big",
        10,
        "Unschedulable",
        scheduled_false,
    )
    .await;
    assert_eq!(
        condition(&pod, "PodScheduled").expect("cond")["message"],
        "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    pod_until(c.store(), NS, "fits", 10, "bound", |p| {
        p["spec"]["nodeName"] == "glrunner-node"
    })
    .await;
}

// ------------------------------------------------------------------------------- images

#[tokio::test]
async fn missing_images_go_from_err_image_pull_to_image_pull_back_off() {
    let opts = KubeletOptions::default()
        .fast()
        .image("registry.example.com/ci/missing:1.0", Image::not_found())
        .image("registry.invalid/ci/app", Image::unreachable());
    let c = cluster(opts).await;
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: ci-jobs}
spec:
  restartPolicy: Never
  containers:
  - {name: build, image: "registry.example.com/ci/missing:1.0", command: [sh]}
  - {name: helper, image: "registry.invalid/ci/app:2", command: [sh]}
"#,
    );
    let full = "registry.example.com/ci/missing:1.0";
    let not_found = format!(
        "rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
    );
    let pod = pod_until(c.store(), NS, "job", 10, "ErrImagePull", |p| {
        waiting_reason(p, "build") == "ErrImagePull"
    })
    .await;
    assert_eq!(message_of(&pod, "build"), not_found);
    assert_eq!(phase(&pod), "Pending");
    let pod = pod_until(c.store(), NS, "job", 10, "ImagePullBackOff", |p| {
        waiting_reason(p, "build") == "ImagePullBackOff"
    })
    .await;
    assert_eq!(
        message_of(&pod, "build"),
        format!("Back-off pulling image \"{full}\"")
    );
    let store = c.store();
    let failed = event_until(store, NS, "job", "Failed", 5, |m| {
        m == format!("Failed to pull image \"{full}\": {not_found}")
    })
    .await;
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["source"]["component"], "kubelet");
    assert_eq!(
        failed["involvedObject"]["fieldPath"],
        "spec.containers{build}"
    );
    event_until(store, NS, "job", "Failed", 5, |m| {
        m == "Error: ErrImagePull"
    })
    .await;
    event_until(store, NS, "job", "Failed", 5, |m| {
        m == "Error: ImagePullBackOff"
    })
    .await;
    let backoff = event_until(store, NS, "job", "BackOff", 5, |m| {
        m == format!("Back-off pulling image \"{full}\"")
    })
    .await;
    assert_eq!(backoff["type"], "Normal");
    event_until(store, NS, "job", "Failed", 5, |m| {
        m.starts_with("Failed to pull image \"registry.invalid/ci/app:2\": rpc error: code = Unknown desc = failed to pull and unpack image \"registry.invalid/ci/app:2\"")
            && m.ends_with("dial tcp: lookup registry.invalid on 127.0.0.53:53: no such host")
    })
    .await;
    // After the back-off the kubelet pulls again (the same event, counted).
    event_until(store, NS, "job", "Pulling", 10, |m| {
        m == format!("Pulling image \"{full}\"")
    })
    .await;
    until(store, 10, "a second pull", |s| {
        events_for(s, NS, "job")
            .into_iter()
            .find(|e| e["reason"] == "Pulling" && e["count"].as_i64() >= Some(2))
    })
    .await;
    // Logs say why there are none, as the kubelet does.
    let err = pods(&c)
        .await
        .logs(
            "job",
            &kube::api::LogParams {
                container: Some("build".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("no logs");
    let text = err.to_string();
    assert!(
        text.contains("container \"build\" in pod \"job\" is waiting to start: trying and failing to pull image")
            || text.contains("container \"build\" in pod \"job\" is waiting to start: image can't be pulled"),
        "{text}"
    );
}

fn docker_config_secret(name: &str, registry: &str, user: &str, password: &str) -> Secret {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config =
        json!({"auths": {registry: {"username": user, "password": password, "auth": auth}}});
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .expect("secret")
}

#[tokio::test]
async fn private_images_pull_only_with_a_matching_pull_secret() {
    let image = "registry.example.com/private/app:2";
    let opts = KubeletOptions::default()
        .fast()
        .image(image, Image::host().private("ci-bot", "s3cret"));
    let c = cluster(opts).await;
    let pod = |name: &str, secret: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ci-jobs}}\nspec:\n  restartPolicy: Never\n  imagePullSecrets: [{{name: {secret}}}]\n  containers: [{{name: build, image: \"{image}\", command: [sh, -c, 'echo pulled']}}]\n"
        )
    };
    apply(&c, &pod("anonymous", "regcred"));
    apply(&c, &pod("wrong", "badcred"));
    let secrets: Api<Secret> = Api::namespaced(c.admin_client().await.expect("client"), NS);
    secrets
        .create(
            &PostParams::default(),
            &docker_config_secret("badcred", "https://registry.example.com", "ci-bot", "nope"),
        )
        .await
        .expect("bad secret");
    event_until(c.store(), NS, "anonymous", "FailedToRetrieveImagePullSecret", 10, |m| {
        m == "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed."
    })
    .await;
    let pod_a = pod_until(c.store(), NS, "anonymous", 10, "ErrImagePull", |p| {
        !message_of(p, "build").is_empty() && waiting_reason(p, "build") == "ErrImagePull"
    })
    .await;
    assert_eq!(
        message_of(&pod_a, "build"),
        format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://registry.example.com/token?scope=repository%3Aprivate%2Fapp%3Apull&service=registry.example.com: 401 Unauthorized"
        )
    );
    let pod_b = pod_until(c.store(), NS, "wrong", 10, "ErrImagePull", |p| {
        message_of(p, "build").contains("oauth")
    })
    .await;
    assert!(
        message_of(&pod_b, "build").ends_with(
            "failed to authorize: failed to fetch oauth token: unexpected status from POST request to https://registry.example.com/token: 401 Unauthorized"
        ),
        "{}",
        message_of(&pod_b, "build")
    );
    // The right credentials appear: the next attempt pulls.
    secrets
        .create(
            &PostParams::default(),
            &docker_config_secret("regcred", "registry.example.com", "ci-bot", "s3cret"),
        )
        .await
        .expect("secret");
    event_until(c.store(), NS, "anonymous", "Pulled", 15, |m| {
        m.starts_with(&format!("Successfully pulled image \"{image}\" in "))
    })
    .await;
    let wrong_pulled = events_for(c.store(), NS, "wrong")
        .into_iter()
        .any(|e| e["reason"] == "Pulled");
    assert!(!wrong_pulled, "a wrong password must not pull");
}

// --------------------------------------------------------------- volumes and configuration

#[tokio::test]
async fn a_missing_secret_volume_keeps_the_pod_container_creating() {
    let c = cluster(KubeletOptions::default().fast()).await;
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: ci-jobs}
spec:
  restartPolicy: Never
  volumes: [{name: gitlab-ca, secret: {secretName: gitlab-ca}}]
  containers:
  - name: build
    image: alpine:3.20
    command: [sh, -c, 'cat /etc/gitlab-runner/certs/ca.crt']
    volumeMounts: [{name: gitlab-ca, mountPath: /etc/gitlab-runner/certs}]
"#,
    );
    let ev = event_until(c.store(), NS, "job", "FailedMount", 10, |m| {
        m == "MountVolume.SetUp failed for volume \"gitlab-ca\" : secret \"gitlab-ca\" not found"
    })
    .await;
    assert_eq!(ev["type"], "Warning");
    let pod = c.store().get("pods", NS, "job").expect("pod");
    assert_eq!(phase(&pod), "Pending");
    assert_eq!(waiting_reason(&pod, "build"), "ContainerCreating");
    // The kubelet retries: the same event, counted again.
    until(c.store(), 10, "a repeated FailedMount", |s| {
        events_for(s, NS, "job")
            .into_iter()
            .find(|e| e["reason"] == "FailedMount" && e["count"].as_i64() >= Some(2))
    })
    .await;
    assert!(
        !events_for(c.store(), NS, "job")
            .iter()
            .any(|e| e["reason"] == "Pulling"),
        "nothing is pulled before the volumes are ready"
    );
    // Created in the job namespace, the secret unblocks the pod.
    apply(
        &c,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: gitlab-ca, namespace: ci-jobs}\nstringData: {ca.crt: PEM}\n",
    );
    event_until(c.store(), NS, "job", "Pulling", 10, |_| true).await;
    if c.kubelet().containers_supported().is_ok() {
        let pod = phase_until(c.store(), NS, "job", 15, "Succeeded").await;
        assert_eq!(terminated(&pod, "build")["reason"], "Completed");
        let logs = pods(&c)
            .await
            .logs("job", &Default::default())
            .await
            .expect("logs");
        assert_eq!(logs, "PEM");
    }
}

#[tokio::test]
async fn missing_environment_sources_are_create_container_config_errors() {
    let c = cluster(KubeletOptions::default().fast()).await;
    apply(
        &c,
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: ci-jobs}
data: {PRESENT: "yes"}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: ci-jobs}
spec:
  restartPolicy: Never
  containers:
  - name: build
    image: alpine:3.20
    command: [sh, -c, 'echo "$CI_JOB_TOKEN"']
    env: [{name: CI_JOB_TOKEN, valueFrom: {secretKeyRef: {name: job-vars, key: token}}}]
  - name: helper
    image: alpine:3.20
    command: [sh, -c, 'echo "$SETTING"']
    env: [{name: SETTING, valueFrom: {configMapKeyRef: {name: settings, key: MISSING}}}]
"#,
    );
    let pod = pod_until(
        c.store(),
        NS,
        "job",
        10,
        "CreateContainerConfigError",
        |p| {
            waiting_reason(p, "build") == "CreateContainerConfigError"
                && waiting_reason(p, "helper") == "CreateContainerConfigError"
        },
    )
    .await;
    assert_eq!(message_of(&pod, "build"), "secret \"job-vars\" not found");
    assert_eq!(
        message_of(&pod, "helper"),
        "couldn't find key MISSING in ConfigMap ci-jobs/settings"
    );
    assert_eq!(phase(&pod), "Pending");
    let ev = event_until(c.store(), NS, "job", "Failed", 5, |m| {
        m == "Error: secret \"job-vars\" not found"
    })
    .await;
    assert_eq!(ev["involvedObject"]["fieldPath"], "spec.containers{build}");
    apply(
        &c,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: job-vars, namespace: ci-jobs}\nstringData: {token: tok}\n",
    );
    let pod = pod_until(
        c.store(),
        NS,
        "job",
        10,
        "build past its configuration",
        |p| waiting_reason(p, "build") != "CreateContainerConfigError",
    )
    .await;
    assert_eq!(waiting_reason(&pod, "helper"), "CreateContainerConfigError");
}

// --------------------------------------------------------------------- running containers

#[tokio::test]
async fn volumes_appear_at_their_mount_paths_and_init_containers_run_first() {
    let host = tempfile::tempdir().expect("tmp");
    let cache = host.path().join("cache");
    let claim = host.path().join("claim");
    let Some(c) = running_cluster(
        KubeletOptions::default()
            .fast()
            .claim("ci-jobs/build-cache", &claim),
    )
    .await
    else {
        return;
    };
    apply(
        &c,
        r#"
apiVersion: v1
kind: Secret
metadata: {name: gitlab-ca, namespace: ci-jobs}
stringData: {ca.crt: PEM-DATA}
---
apiVersion: v1
kind: Secret
metadata: {name: job-vars, namespace: ci-jobs}
stringData: {token: s3cr3t}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: scripts, namespace: ci-jobs}
data: {step_script: "echo from-script"}
"#,
    );
    let script = r#"set -e
cat /builds/from-init
sh /scripts-1-2/step_script
cat /etc/gitlab-runner/certs/ca.crt; echo
echo "$ECHO|$ESCAPED|$CI_JOB_TOKEN|$(pwd)|$(hostname)"
grep -q 'postgres' /etc/hosts && echo hosts-ok
if touch /etc/gitlab-runner/certs/x 2>/dev/null; then echo certs-writable; else echo certs-read-only; fi
echo cached > /cache/file
echo stored > /data/file
test -f /logs-1-2/output.log && echo logs-ok
"#;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job", "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["postgres", "db"]}],
            "volumes": [
                {"name": "repo", "emptyDir": {}},
                {"name": "logs", "emptyDir": {}},
                {"name": "scripts", "configMap": {"name": "scripts", "defaultMode": 0o755}},
                {"name": "certs", "secret": {"secretName": "gitlab-ca"}},
                {"name": "cache", "hostPath": {"path": cache, "type": "DirectoryOrCreate"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "build-cache"}}
            ],
            "initContainers": [{
                "name": "init-permissions", "image": "registry.example.com/glrunner:dev",
                "command": ["sh", "-c", "touch /logs-1-2/output.log && echo init-ran > /builds/from-init"],
                "volumeMounts": [{"name": "repo", "mountPath": "/builds"}, {"name": "logs", "mountPath": "/logs-1-2"}]
            }],
            "containers": [{
                "name": "build", "image": "alpine:3.20",
                "workingDir": "/builds/group/project",
                "command": ["sh", "-c", script],
                "env": [
                    {"name": "GREETING", "value": "hello"},
                    {"name": "ECHO", "value": "$(GREETING) world"},
                    {"name": "ESCAPED", "value": "$$HOME"},
                    {"name": "CI_JOB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "job-vars", "key": "token"}}}
                ],
                "volumeMounts": [
                    {"name": "repo", "mountPath": "/builds"},
                    {"name": "scripts", "mountPath": "/scripts-1-2"},
                    {"name": "logs", "mountPath": "/logs-1-2"},
                    {"name": "certs", "mountPath": "/etc/gitlab-runner/certs", "readOnly": true},
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "data", "mountPath": "/data"}
                ]
            }]
        }
    });
    let api = pods(&c).await;
    api.create(
        &PostParams::default(),
        &serde_json::from_value(pod).expect("pod"),
    )
    .await
    .expect("create");
    let pod = pod_until(c.store(), NS, "job", 20, "Succeeded", |p| {
        phase(p) == "Succeeded" || phase(p) == "Failed"
    })
    .await;
    let logs = api.logs("job", &Default::default()).await.expect("logs");
    assert_eq!(phase(&pod), "Succeeded", "{logs}\n{:#}", pod["status"]);
    assert_eq!(
        logs,
        "init-ran\nfrom-script\nPEM-DATA\nhello world|$HOME|s3cr3t|/builds/group/project|job\nhosts-ok\ncerts-read-only\nlogs-ok\n"
    );
    let build = terminated(&pod, "build");
    assert_eq!(build["reason"], "Completed");
    assert_eq!(build["exitCode"], 0);
    assert!(build["startedAt"].is_string() && build["finishedAt"].is_string());
    assert_eq!(terminated(&pod, "init-permissions")["reason"], "Completed");
    assert_eq!(
        condition(&pod, "Initialized").expect("cond")["status"],
        "True"
    );
    assert_eq!(
        condition(&pod, "Ready").expect("cond")["reason"],
        "PodCompleted"
    );
    // hostPath and the claim are the host's directories; the rest stayed in the container.
    assert_eq!(
        std::fs::read_to_string(cache.join("file")).expect("cache"),
        "cached\n"
    );
    assert_eq!(
        std::fs::read_to_string(claim.join("file")).expect("claim"),
        "stored\n"
    );
    assert!(!Path::new("/builds/from-init").exists());
    // The init container ran before the build container started.
    let init_end = terminated(&pod, "init-permissions")["finishedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(init_end.as_str() <= build["startedAt"].as_str().unwrap_or_default());
}

#[tokio::test]
async fn exit_codes_restarts_and_crash_loop_back_off() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: once, namespace: ci-jobs}
spec:
  restartPolicy: Never
  containers: [{name: build, image: alpine:3.20, command: [sh, -c, 'echo failing; exit 3']}]
---
apiVersion: v1
kind: Pod
metadata: {name: again, namespace: ci-jobs}
spec:
  containers: [{name: build, image: alpine:3.20, command: [sh, -c, 'echo run; exit 3']}]
"#,
    );
    let pod = phase_until(c.store(), NS, "once", 15, "Failed").await;
    let t = terminated(&pod, "build");
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    assert_eq!(
        container_status(&pod, "build").expect("status")["restartCount"],
        0
    );

    let pod = pod_until(
        c.store(),
        NS,
        "again",
        20,
        "restarted twice, backing off",
        |p| {
            let s = container_status(p, "build");
            s.is_some_and(|s| s["restartCount"].as_i64() >= Some(2))
                && waiting_reason(p, "build") == "CrashLoopBackOff"
        },
    )
    .await;
    assert_eq!(phase(&pod), "Running");
    let s = container_status(&pod, "build").expect("status");
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(s["lastState"]["terminated"]["reason"], "Error");
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    assert!(
        message_of(&pod, "build").starts_with("back-off ")
            && message_of(&pod, "build").ends_with(&format!(
                " restarting failed container=build pod=again_ci-jobs({uid})"
            )),
        "{}",
        message_of(&pod, "build")
    );
    let ev = event_until(c.store(), NS, "again", "BackOff", 5, |m| {
        m == format!("Back-off restarting failed container build in pod again_ci-jobs({uid})")
    })
    .await;
    assert_eq!(ev["type"], "Warning");
    let previous = pods(&c)
        .await
        .logs(
            "again",
            &kube::api::LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .expect("previous logs");
    assert_eq!(previous, "run\n");
}

#[tokio::test]
async fn memory_limits_and_the_oom_fault_kill_with_oom_killed() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hog, namespace: ci-jobs}
spec:
  restartPolicy: Never
  containers:
  - name: build
    image: alpine:3.20
    # tail keeps everything after the last newline: /dev/zero has none.
    command: [sh, -c, 'head -c 400000000 /dev/zero | tail > /dev/null']
    resources: {limits: {memory: 32Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: sleeper, namespace: ci-jobs}
spec:
  restartPolicy: Never
  containers:
  - {name: build, image: alpine:3.20, command: [sleep, "300"]}
  - {name: helper, image: alpine:3.20, command: [sleep, "300"]}
"#,
    );
    let pod = phase_until(c.store(), NS, "hog", 30, "Failed").await;
    let t = terminated(&pod, "build");
    assert_eq!(t["reason"], "OOMKilled", "{:#}", pod["status"]);
    assert_eq!(t["exitCode"], 137);

    pod_until(c.store(), NS, "sleeper", 15, "Running", |p| {
        phase(p) == "Running" && condition(p, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await;
    c.kubelet()
        .oom_kill(NS, "sleeper", "build")
        .await
        .expect("oom kill");
    let pod = pod_until(c.store(), NS, "sleeper", 10, "build terminated", |p| {
        !terminated(p, "build").is_null()
    })
    .await;
    assert_eq!(terminated(&pod, "build")["reason"], "OOMKilled");
    assert_eq!(terminated(&pod, "build")["exitCode"], 137);
    // The other container keeps running; the pod is still Running.
    assert!(container_status(&pod, "helper").expect("helper")["state"]["running"].is_object());
    assert_eq!(phase(&pod), "Running");
    let err = c
        .kubelet()
        .oom_kill(NS, "sleeper", "build")
        .await
        .expect_err("not running any more");
    assert!(err.to_string().contains("is not running"), "{err}");
}

#[tokio::test]
async fn eviction_fails_the_pod_with_a_disruption_target() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: ci-jobs}
spec:
  containers: [{name: build, image: alpine:3.20, command: [sleep, "300"]}]
"#,
    );
    phase_until(c.store(), NS, "job", 15, "Running").await;
    let pids = c.kubelet().container_pids(NS, "job", "build");
    assert!(!pids.is_empty());
    c.kubelet().evict(NS, "job").await.expect("evict");
    let pod = phase_until(c.store(), NS, "job", 10, "Failed").await;
    assert_eq!(pod["status"]["reason"], "Evicted");
    let message = pod["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("The node was low on resource: memory. "),
        "{message}"
    );
    let dt = condition(&pod, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(dt["status"], "True");
    assert_eq!(dt["reason"], "TerminationByKubelet");
    assert_eq!(terminated(&pod, "build")["exitCode"], 137);
    let ev = event_until(c.store(), NS, "job", "Evicted", 5, |m| m == message).await;
    assert_eq!(ev["type"], "Warning");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived the eviction"
        );
    }
}

#[tokio::test]
async fn active_deadline_seconds_fails_the_pod_with_deadline_exceeded() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: ci-jobs}
spec:
  activeDeadlineSeconds: 1
  terminationGracePeriodSeconds: 1
  containers: [{name: build, image: alpine:3.20, command: [sleep, "300"]}]
"#,
    );
    let pod = phase_until(c.store(), NS, "job", 15, "Failed").await;
    assert_eq!(pod["status"]["reason"], "DeadlineExceeded");
    let message = "Pod was active on the node longer than the specified deadline";
    assert_eq!(pod["status"]["message"], message);
    assert!(!terminated(&pod, "build").is_null());
    event_until(c.store(), NS, "job", "DeadlineExceeded", 5, |m| {
        m == message
    })
    .await;
}

#[tokio::test]
async fn graceful_deletion_stops_every_process_then_removes_the_pod() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: stubborn, namespace: ci-jobs}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: build
    image: alpine:3.20
    # Ignores SIGTERM (as a shell as PID 1 does): only SIGKILL after the grace period ends it.
    command: [sh, -c, 'trap "" TERM; sleep 300 & sleep 300; wait']
---
apiVersion: v1
kind: Pod
metadata: {name: forced, namespace: ci-jobs}
spec:
  terminationGracePeriodSeconds: 30
  containers: [{name: build, image: alpine:3.20, command: [sh, -c, 'trap "" TERM; sleep 300']}]
---
apiVersion: v1
kind: Pod
metadata: {name: polite, namespace: ci-jobs}
spec:
  terminationGracePeriodSeconds: 30
  containers: [{name: build, image: alpine:3.20, command: [sleep, "300"]}]
"#,
    );
    for name in ["stubborn", "polite", "forced"] {
        phase_until(c.store(), NS, name, 15, "Running").await;
    }
    // An exec'd process is part of the container too.
    let api = pods(&c).await;
    let mut exec = api
        .exec(
            "stubborn",
            // Output elsewhere, or the exec lasts as long as the background process holds it.
            vec!["sh", "-c", "sleep 200 >/dev/null 2>&1 & echo started"],
            &kube::api::AttachParams::default().stderr(false),
        )
        .await
        .expect("exec");
    let status = exec.take_status().expect("status").await.expect("a status");
    assert_eq!(status.status.as_deref(), Some("Success"));
    let pids = until(c.store(), 5, "four processes", |_| {
        let p = c.kubelet().container_pids(NS, "stubborn", "build");
        (p.len() >= 4).then_some(p)
    })
    .await;
    let started = tokio::time::Instant::now();
    api.delete("stubborn", &DeleteParams::default())
        .await
        .expect("delete");
    until(c.store(), 15, "the pod gone", |s| {
        s.get("pods", NS, "stubborn").is_none().then_some(())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "SIGTERM was ignored: the grace period had to run out"
    );
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived the deletion"
        );
    }
    event_until(c.store(), NS, "stubborn", "Killing", 5, |m| {
        m == "Stopping container build"
    })
    .await;

    // A forced deletion (grace 0) removes the object at once; the kubelet then kills.
    let pids = c.kubelet().container_pids(NS, "forced", "build");
    let kubelet = c.kubelet().clone();
    let exited = tokio::spawn(async move { kubelet.wait_exit(NS, "forced", "build").await });
    api.delete("forced", &DeleteParams::default().grace_period(0))
        .await
        .expect("force delete");
    assert!(c.store().get("pods", NS, "forced").is_none());
    assert_eq!(exited.await.expect("join"), Some(137));
    for pid in &pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    let pids = c.kubelet().container_pids(NS, "polite", "build");
    let started = tokio::time::Instant::now();
    api.delete("polite", &DeleteParams::default())
        .await
        .expect("delete");
    until(c.store(), 15, "the pod gone", |s| {
        s.get("pods", NS, "polite").is_none().then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "sleep ends on SIGTERM, long before the 30 s grace period"
    );
    for pid in &pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}

#[tokio::test]
async fn pull_policies_present_images_and_slow_pulls() {
    let opts = KubeletOptions::default().fast().image(
        "registry.example.com/big/image",
        Image::host().slow(Duration::from_millis(800)),
    );
    let c = cluster(opts).await;
    let pod = |name: &str, image: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ci-jobs}}\nspec:\n  restartPolicy: Never\n  containers: [{{name: build, image: \"{image}\", imagePullPolicy: {policy}, command: [sh, -c, 'true']}}]\n"
        )
    };
    // A slow pull: the container waits in ContainerCreating until it is done.
    apply(
        &c,
        &pod("slow", "registry.example.com/big/image:1", "IfNotPresent"),
    );
    event_until(c.store(), NS, "slow", "Pulling", 10, |m| {
        m == "Pulling image \"registry.example.com/big/image:1\""
    })
    .await;
    let now = c.store().get("pods", NS, "slow").expect("pod");
    assert_eq!(waiting_reason(&now, "build"), "ContainerCreating");
    assert!(
        !events_for(c.store(), NS, "slow")
            .iter()
            .any(|e| e["reason"] == "Pulled")
    );
    let pulled = event_until(c.store(), NS, "slow", "Pulled", 10, |_| true).await;
    let message = pulled["message"].as_str().unwrap_or_default();
    let took = message
        .strip_prefix("Successfully pulled image \"registry.example.com/big/image:1\" in ")
        .and_then(|r| r.split_once(' '))
        .map(|(d, _)| d)
        .unwrap_or_default();
    let millis: f64 = if let Some(ms) = took.strip_suffix("ms") {
        ms.parse().unwrap_or(0.0)
    } else {
        took.trim_end_matches('s').parse::<f64>().unwrap_or(0.0) * 1000.0
    };
    assert!(millis >= 800.0, "{message}");
    assert!(message.ends_with("Image size: 3623807 bytes."), "{message}");

    // Pulled once, the image is present: IfNotPresent does not pull it again.
    apply(
        &c,
        &pod("again", "registry.example.com/big/image:1", "IfNotPresent"),
    );
    event_until(c.store(), NS, "again", "Pulled", 10, |m| {
        m == "Container image \"registry.example.com/big/image:1\" already present on machine"
    })
    .await;
    assert!(
        !events_for(c.store(), NS, "again")
            .iter()
            .any(|e| e["reason"] == "Pulling")
    );

    // Never: an image not on the node is an error, not a pull.
    apply(&c, &pod("never", "busybox:1.36", "Never"));
    let p = pod_until(c.store(), NS, "never", 10, "ErrImageNeverPull", |p| {
        waiting_reason(p, "build") == "ErrImageNeverPull"
    })
    .await;
    assert_eq!(
        message_of(&p, "build"),
        "Container image \"busybox:1.36\" is not present with pull policy of Never"
    );
    event_until(c.store(), NS, "never", "ErrImageNeverPull", 5, |m| {
        m == "Container image \"busybox:1.36\" is not present with pull policy of Never"
    })
    .await;
}

#[tokio::test]
async fn a_crashed_kubelet_posts_nothing_until_it_recovers() {
    let trigger = tempfile::tempdir().expect("tmp");
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job", "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "trigger", "hostPath": {"path": trigger.path()}}],
            "containers": [{"name": "build", "image": "alpine:3.20",
                "command": ["sh", "-c", "while [ ! -f /trigger/stop ]; do sleep 0.05; done; echo stopping"],
                "volumeMounts": [{"name": "trigger", "mountPath": "/trigger"}]}]
        }
    });
    c.apply_yaml(&pod.to_string()).expect("pod");
    phase_until(c.store(), NS, "job", 15, "Running").await;
    c.kubelet().crash();
    let node = c.store().get("nodes", "", "glrunner-node").expect("node");
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .expect("Ready");
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    // The container ends while the kubelet is down: nobody says so.
    std::fs::write(trigger.path().join("stop"), b"").expect("trigger");
    assert_eq!(c.kubelet().wait_exit(NS, "job", "build").await, Some(0));
    let seen = c.store().get("pods", NS, "job").expect("pod");
    assert_eq!(phase(&seen), "Running");
    assert!(container_status(&seen, "build").expect("status")["state"]["running"].is_object());
    let err = pods(&c)
        .await
        .logs("job", &Default::default())
        .await
        .expect_err("the kubelet is down");
    assert!(err.to_string().contains("error dialing backend"), "{err}");
    // Back up, it reports what happened meanwhile.
    c.kubelet().recover();
    let pod = phase_until(c.store(), NS, "job", 10, "Succeeded").await;
    assert_eq!(terminated(&pod, "build")["reason"], "Completed");
    assert_eq!(
        pods(&c)
            .await
            .logs("job", &Default::default())
            .await
            .expect("logs"),
        "stopping\n"
    );
}
