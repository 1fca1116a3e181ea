//! `pods/exec`, `pods/attach` and `pods/log` against the process kubelet, with real clients:
//! kubectl (websockets, v5) and kube-rs (v5, and v4 when the server offers only v4), exit codes
//! from the status channel, stdin closed with the v5 CLOSE signal, attach to a container's stdin,
//! log options and `logs -f`, and the faults: streams dropped mid-way (the process lives on) and
//! a kubelet the API server cannot reach.

mod common;

use common::*;
use glrunner_apiserver::{Cluster, KubeletOptions, V4_PROTOCOL};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, AttachedProcess, LogParams};
use std::path::Path;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

const NS: &str = "ci-jobs";

async fn pods(c: &Cluster) -> Api<Pod> {
    Api::namespaced(c.admin_client().await.expect("client"), NS)
}

/// A running pod `name` with one container `main` running `script`.
async fn running_pod(c: &Cluster, name: &str, script: &str, stdin: bool) {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "alpine:3.20", "stdin": stdin,
                "command": ["sh", "-c", script]}]}
    });
    c.apply_yaml(&serde_json::to_string(&pod).expect("json"))
        .expect("pod");
    phase_until(c.store(), NS, name, 20, "Running").await;
}

/// Run `argv` in `pod` and read its stdout to the end; the session is kept for its status.
async fn exec_stdout(
    api: &Api<Pod>,
    pod: &str,
    argv: Vec<&str>,
    params: &AttachParams,
) -> (String, AttachedProcess) {
    let mut p = api.exec(pod, argv, params).await.expect("exec");
    let mut out = String::new();
    p.stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .await
        .expect("read");
    (out, p)
}

/// Run `argv` in `pod` (the upgrade must work) and wait for the status the session ends with.
async fn exec_status(api: &Api<Pod>, pod: &str, argv: Vec<&str>) -> Status {
    let mut p = api
        .exec(pod, argv, &AttachParams::default())
        .await
        .expect("exec");
    p.take_status().expect("status").await.expect("a status")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test]
async fn kubectl_runs_execs_and_reads_logs() {
    let Some(k) = kubectl() else { return };
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    let kc = c
        .kubeconfig_for(c.admin(), "admin", NS)
        .expect("kubeconfig");
    k.ok(
        &kc,
        &[
            "run",
            "web",
            "--image=alpine:3.20",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3; do echo line $i; done; sleep 300",
        ],
    )
    .await;
    k.ok(
        &kc,
        &["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"],
    )
    .await;

    let out = k
        .run(&kc, &["exec", "web", "--", "sh", "-c", "echo hi; exit 3"])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    assert_eq!(text(&out.stderr), "command terminated with exit code 3\n");

    let out = k
        .run_with_input(
            &kc,
            &["exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z"],
            b"piped in\n",
        )
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "PIPED IN\n");

    let out = k
        .run(&kc, &["exec", "web", "-c", "nosuch", "--", "true"])
        .await;
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "Error from server (BadRequest): container nosuch is not valid for pod web\n"
    );

    assert_eq!(
        k.ok(&kc, &["logs", "web"]).await,
        "line 1\nline 2\nline 3\n"
    );
    assert_eq!(k.ok(&kc, &["logs", "web", "--tail=1"]).await, "line 3\n");
    let stamped = k
        .ok(&kc, &["logs", "web", "--timestamps", "--tail=2"])
        .await;
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    for (line, want) in lines.iter().zip(["line 2", "line 3"]) {
        let (ts, rest) = line.split_once(' ').expect("timestamp");
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
        assert_eq!(rest, want);
    }
    assert_eq!(
        k.ok(&kc, &["logs", "web", "--limit-bytes=9"]).await,
        "line 1\nli"
    );

    assert!(c.request_count("get", "pods", "exec") >= 3);
    assert!(c.request_count("get", "pods", "log") >= 4);
}

#[tokio::test]
async fn kubectl_logs_follow_streams_until_the_container_ends() {
    let Some(k) = kubectl() else { return };
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    running_pod(
        &c,
        "follow",
        "echo first; while [ ! -f /tmp/go ]; do sleep 0.1; done; echo second",
        false,
    )
    .await;
    let kc = c
        .kubeconfig_for(c.admin(), "admin", NS)
        .expect("kubeconfig");
    let mut child = k.spawn(&kc, &["logs", "-f", "follow"]);
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), out.next_line())
        .await
        .expect("first line in time")
        .expect("read");
    assert_eq!(first.as_deref(), Some("first"));
    // kubectl is following now: let the container write more and end.
    let status = exec_status(&pods(&c).await, "follow", vec!["touch", "/tmp/go"]).await;
    assert_eq!(status.status.as_deref(), Some("Success"));
    let second = tokio::time::timeout(std::time::Duration::from_secs(20), out.next_line())
        .await
        .expect("second line in time")
        .expect("read");
    assert_eq!(second.as_deref(), Some("second"));
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("kubectl ends with the container")
        .expect("wait");
    assert!(status.success());
    assert_eq!(out.next_line().await.expect("read"), None);
}

#[tokio::test]
async fn kube_rs_exec_streams_stdin_and_reports_exit_codes() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    running_pod(&c, "box", "sleep 300", false).await;
    let api = pods(&c).await;

    // stdin closed with the v5 CLOSE signal ends `cat`.
    let mut p = api
        .exec(
            "box",
            vec!["sh", "-c", "cat; echo done; echo to-stderr >&2"],
            &AttachParams::default().stdin(true).stderr(true),
        )
        .await
        .expect("exec");
    let mut stdin = p.stdin().expect("stdin");
    stdin.write_all(b"abc\n").await.expect("write");
    // Shutting the writer down is what ends stdin (v5 CLOSE); dropping it is not.
    stdin.shutdown().await.expect("close stdin");
    let mut out = String::new();
    let mut err = String::new();
    let (mut o, mut e) = (p.stdout().expect("stdout"), p.stderr().expect("stderr"));
    let status = p.take_status().expect("status");
    let (r1, r2) = tokio::join!(o.read_to_string(&mut out), e.read_to_string(&mut err));
    r1.expect("stdout");
    r2.expect("stderr");
    let status = status.await.expect("a status");
    assert_eq!(out, "abc\ndone\n");
    assert_eq!(err, "to-stderr\n");
    assert_eq!(status.status.as_deref(), Some("Success"));

    let status = exec_status(&api, "box", vec!["sh", "-c", "exit 7"]).await;
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(
        status.message.as_deref(),
        Some("command terminated with non-zero exit code: command terminated with exit code 7")
    );
    let cause = &status.details.expect("details").causes.expect("causes")[0];
    assert_eq!(cause.reason.as_deref(), Some("ExitCode"));
    assert_eq!(cause.message.as_deref(), Some("7"));

    // The exec ran inside the container: its hostname, working directory and filesystem.
    let (out, _) = exec_stdout(
        &api,
        "box",
        vec![
            "sh",
            "-c",
            "hostname; cat /etc/hostname; pwd; echo x > /marker; cat /marker",
        ],
        &AttachParams::default(),
    )
    .await;
    assert_eq!(out, "box\nbox\n/\nx\n");
    assert!(
        !Path::new("/marker").exists(),
        "writes stay in the container"
    );
    assert!(c.request_count("get", "pods", "exec") >= 3);
}

#[tokio::test]
async fn kube_rs_attaches_to_a_containers_stdin() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    // A shell reading its commands from stdin, as gitlab-runner's build container is.
    running_pod(&c, "shell", "exec sh", true).await;
    let api = pods(&c).await;

    // Attach with stdin and stdout: the output of what is sent comes back.
    let mut a = api
        .attach("shell", &AttachParams::default().stdin(true).stderr(false))
        .await
        .expect("attach");
    let mut stdin = a.stdin().expect("stdin");
    let mut out = BufReader::new(a.stdout().expect("stdout")).lines();
    stdin
        .write_all(b"echo attached-$((40 + 2))\n")
        .await
        .expect("write");
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), out.next_line())
        .await
        .expect("output in time")
        .expect("read");
    assert_eq!(line.as_deref(), Some("attached-42"));
    let status = a.take_status().expect("status");
    stdin.shutdown().await.expect("close stdin");
    let status = status.await.expect("a status");
    assert_eq!(status.status.as_deref(), Some("Success"));

    // The container keeps its stdin (no stdinOnce): a second, stdin-only attach (what
    // gitlab-runner does) starts a command whose output lands in the log.
    let pod = c.store().get("pods", NS, "shell").expect("pod");
    assert_eq!(phase(&pod), "Running");
    let mut a = api
        .attach(
            "shell",
            &AttachParams::default()
                .stdin(true)
                .stdout(false)
                .stderr(false),
        )
        .await
        .expect("attach");
    let mut stdin = a.stdin().expect("stdin");
    let status = a.take_status().expect("status");
    stdin
        .write_all(b"echo via-attach; exit 4\n")
        .await
        .expect("write");
    stdin.shutdown().await.expect("close stdin");
    assert_eq!(
        status.await.expect("a status").status.as_deref(),
        Some("Success")
    );
    let pod = phase_until(c.store(), NS, "shell", 10, "Failed").await;
    assert_eq!(
        container_status(&pod, "main").expect("status")["state"]["terminated"]["exitCode"],
        4
    );
    let logs = api
        .logs("shell", &LogParams::default())
        .await
        .expect("logs");
    assert_eq!(logs, "attached-42\nvia-attach\n");
    assert!(c.request_count("get", "pods", "attach") >= 2);
    // Its container gone, the pod cannot be exec'd into: the kubelet's words.
    let status = exec_status(&api, "shell", vec!["true"]).await;
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Internal error occurred: unable to upgrade connection: container not found (\"main\")"
        )
    );
}

#[tokio::test]
async fn a_v4_only_server_is_spoken_to_in_v4() {
    let Some(c) = running_cluster(KubeletOptions::default().fast().protocols(&[V4_PROTOCOL])).await
    else {
        return;
    };
    running_pod(&c, "box", "sleep 300", false).await;
    let api = pods(&c).await;
    let (out, mut p) = exec_stdout(
        &api,
        "box",
        vec!["sh", "-c", "echo v4; exit 5"],
        &AttachParams::default(),
    )
    .await;
    let status = p.take_status().expect("status").await.expect("a status");
    assert_eq!(out, "v4\n");
    // The kubelet's own wording: only a v4 session produces it.
    assert_eq!(
        status.message.as_deref(),
        Some(
            "command terminated with non-zero exit code: error executing command [sh -c echo v4; exit 5], exit code 5"
        )
    );
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));

    // kubectl asks for v5 only; refused, it falls back to SPDY, which is not served here.
    if let Some(k) = kubectl() {
        let kc = c
            .kubeconfig_for(c.admin(), "admin", NS)
            .expect("kubeconfig");
        let out = k.run(&kc, &["exec", "box", "--", "true"]).await;
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("SPDY is not served"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn a_dropped_exec_leaves_its_process_running() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    running_pod(&c, "box", "sleep 300", false).await;
    let api = pods(&c).await;
    let mut p = api
        .exec(
            "box",
            vec![
                "sh",
                "-c",
                "echo $$ > /tmp/pid; echo started; sleep 60; echo finished",
            ],
            &AttachParams::default().stderr(false),
        )
        .await
        .expect("exec");
    let mut out = BufReader::new(p.stdout().expect("stdout")).lines();
    assert_eq!(
        out.next_line().await.expect("read").as_deref(),
        Some("started")
    );
    let status = p.take_status().expect("status");
    assert!(c.kubelet().drop_streams() >= 1);
    // The connection is gone without a status.
    assert!(status.await.is_none());
    let pid = c.kubelet().container_pids(NS, "box", "main");
    assert!(
        pid.len() >= 3,
        "sleep, the exec's shell and its sleep: {pid:?}"
    );
    // A new exec sees the first one's process alive.
    let (text, _) = exec_stdout(
        &api,
        "box",
        vec!["sh", "-c", "kill -0 $(cat /tmp/pid) && echo alive"],
        &AttachParams::default(),
    )
    .await;
    assert_eq!(text, "alive\n");
}

#[tokio::test]
async fn an_unreachable_kubelet_fails_streams_with_dialing_errors() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    running_pod(&c, "box", "echo hello; sleep 300", false).await;
    let api = pods(&c).await;
    c.kubelet().disconnect();
    let status = exec_status(&api, "box", vec!["true"]).await;
    assert_eq!(status.reason.as_deref(), Some("InternalError"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Internal error occurred: error dialing backend: dial tcp 127.0.0.1:10250: connect: connection refused"
        )
    );
    let err = api
        .logs("box", &LogParams::default())
        .await
        .expect_err("no logs");
    assert!(err.to_string().contains("error dialing backend"), "{err}");
    c.kubelet().reconnect();
    assert_eq!(
        api.logs("box", &LogParams::default()).await.expect("logs"),
        "hello\n"
    );
}

#[tokio::test]
async fn log_requests_are_checked_like_the_api_server_does() {
    let Some(c) = running_cluster(KubeletOptions::default().fast()).await else {
        return;
    };
    c.apply_yaml(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: two, namespace: ci-jobs}
spec:
  containers:
  - {name: build, image: alpine:3.20, command: [sh, -c, 'echo b; sleep 300']}
  - {name: helper, image: alpine:3.20, command: [sh, -c, 'echo h; sleep 300']}
"#,
    )
    .expect("pod");
    pod_until(c.store(), NS, "two", 20, "Running", |p| {
        condition(p, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await;
    let api = pods(&c).await;
    let err = api
        .logs("two", &LogParams::default())
        .await
        .expect_err("which container");
    assert!(
        err.to_string().contains(
            "a container name must be specified for pod two, choose one of: [build helper]"
        ),
        "{err}"
    );
    let helper = LogParams {
        container: Some("helper".into()),
        ..Default::default()
    };
    assert_eq!(api.logs("two", &helper).await.expect("logs"), "h\n");
    let err = api
        .logs(
            "two",
            &LogParams {
                previous: true,
                ..helper.clone()
            },
        )
        .await
        .expect_err("no previous");
    assert!(
        err.to_string()
            .contains("previous terminated container \"helper\" in pod \"two\" not found"),
        "{err}"
    );
    let future = LogParams {
        since_time: Some(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)),
        ..helper.clone()
    };
    assert_eq!(api.logs("two", &future).await.expect("logs"), "");
}
