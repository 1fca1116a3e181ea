//! Jobs run by the Kubernetes executor through the shared job machinery (`run_job`), against the test
//! cluster: the stages run in the right containers, the trace arrives, faults are explained.

use crate::cluster::{self, KubeEnv};
use glrunner_job::{JobOutcome, RunnerContext, run_job};
use glrunner_kubernetes::connection::{ConnectOptions, connect};
use glrunner_kubernetes::executor::Cluster;
use glrunner_protocol::{
    FailureReason, JobResponse, JobVariable, STEP_AFTER_SCRIPT, STEP_SCRIPT, Step, When,
};
use glrunner_trace::{JobControl, Trace, TraceConfig};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub const LIMIT: Duration = Duration::from_secs(90);
const JOB_TOKEN: &str = "glcbt-64_kubernetesjobtoken012345";

fn step(name: &str, script: &[&str]) -> Step {
    Step {
        name: name.into(),
        script: script.iter().map(|s| s.to_string()).collect(),
        timeout: Some(3600),
        when: if name == STEP_AFTER_SCRIPT {
            When::Always
        } else {
            When::OnSuccess
        },
        allow_failure: name == STEP_AFTER_SCRIPT,
    }
}

pub fn job(id: i64, script: &[&str]) -> JobResponse {
    let mut job = JobResponse {
        id,
        token: JOB_TOKEN.into(),
        allow_git_fetch: true,
        steps: vec![step(STEP_SCRIPT, script)],
        variables: vec![
            JobVariable::new("CI_JOB_ID", id.to_string()),
            JobVariable::new("GIT_STRATEGY", "none"),
            JobVariable {
                masked: true,
                public: false,
                ..JobVariable::new("CI_JOB_TOKEN", JOB_TOKEN)
            },
        ],
        ..JobResponse::default()
    };
    job.job_info.project_id = 42;
    job.job_info.project_full_path = "acme/demo".into();
    job.runner_info.timeout = Some(300);
    job.features.trace_sections = true;
    job
}

pub fn ctx() -> RunnerContext {
    RunnerContext {
        name: "k8s".into(),
        short_token: "tok12345x".into(),
        system_id: "s_0123456789ab".into(),
        version: "0.1.0".into(),
        revision: "abcdef12".into(),
        executor: "kubernetes".into(),
        shell: "bash".into(),
        // No GitLab: artifact stages are skipped.
        gitlab_url: Some(String::new()),
        ..RunnerContext::default()
    }
}

/// What the trace wrote, awaitable.
#[derive(Clone, Default)]
pub struct Output {
    bytes: Arc<Mutex<Vec<u8>>>,
    notify: Arc<Notify>,
}

struct Mirror(Output);

impl io::Write for Mirror {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        self.0.notify.notify_waiters();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Output {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Wait until the trace contains `needle`.
    pub async fn wait_for(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let notified = self.notify.notified();
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the trace never showed {needle:?}:\n{text}");
            }
        }
    }
}

pub fn trace(job: &JobResponse) -> (Trace, Output) {
    let out = Output::default();
    let trace = Trace::new(TraceConfig {
        masked_values: glrunner_job::variables::masked_values(job),
        token_prefixes: vec!["glcbt-".into()],
        limit_bytes: 0,
        mirror: Some(Box::new(Mirror(out.clone()))),
    })
    .expect("trace spool");
    (trace, out)
}

pub async fn executor_cluster(
    env: &KubeEnv,
    config: glrunner_config::KubernetesConfig,
) -> Arc<Cluster> {
    let options = ConnectOptions {
        service_account_dir: env.cluster.workdir().join("no-service-account"),
        service_host: None,
        kubeconfig: Some(env.kubeconfig.clone()),
    };
    let conn = connect(&config, &options).await.expect("connect");
    Cluster::new(&conn, config, "s_0123456789ab")
}

/// Run `job` to its end; the outcome and the trace.
pub async fn run(
    cluster: &Arc<Cluster>,
    job: &JobResponse,
    control: &JobControl,
) -> (JobOutcome, String) {
    let (trace, out) = trace(job);
    let mut ex = cluster.executor();
    let outcome = tokio::time::timeout(LIMIT, run_job(job, &ctx(), &mut ex, &trace, control))
        .await
        .unwrap_or_else(|_| panic!("the job did not end in time:\n{}", out.text()));
    trace.finish();
    (outcome, out.text())
}

/// Run `job` in the background; its trace is awaitable meanwhile.
pub fn spawn(
    cluster: &Arc<Cluster>,
    job: JobResponse,
    ctx: RunnerContext,
    control: JobControl,
) -> (tokio::task::JoinHandle<JobOutcome>, Output) {
    let (trace, out) = trace(&job);
    let mut ex = cluster.executor();
    let handle = tokio::spawn(async move {
        let outcome = run_job(&job, &ctx, &mut ex, &trace, &control).await;
        trace.finish();
        outcome
    });
    (handle, out)
}

async fn finished(handle: tokio::task::JoinHandle<JobOutcome>, out: &Output) -> JobOutcome {
    match tokio::time::timeout(LIMIT, handle).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("the job panicked: {e}\n{}", out.text()),
        Err(_) => panic!("the job did not end in time:\n{}", out.text()),
    }
}

fn failed(reason: FailureReason) -> JobOutcome {
    JobOutcome::Failed {
        reason,
        exit_code: None,
    }
}

#[tokio::test]
async fn a_job_runs_in_its_pod_with_few_requests_and_leaves_nothing() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    // The first job also starts the manager's watches and runs the start-up checks.
    let (outcome, _) = run(&cluster, &job(100, &["true"]), &JobControl::new()).await;
    assert_eq!(outcome, JobOutcome::Success);

    env.cluster.reset_request_log();
    let ctx = ctx();
    let mut job = job(
        101,
        &[
            "echo hello from $(hostname)",
            "echo \"job token is $CI_JOB_TOKEN\"",
            "test ! -e /usr/local/bin/glrunner && echo script-in-build",
            "mkdir -p out && echo cached > out/file",
            "printf 'no newline at the end'",
        ],
    );
    // Predefined stages (here: saving the cache) run in the helper container, which has glrunner
    // and sees the build container's checkout.
    job.cache.push(glrunner_protocol::Cache {
        key: "k8s-cache".into(),
        policy: "pull-push".into(),
        paths: vec!["out/".into()],
        when: When::OnSuccess,
        ..Default::default()
    });
    let (trace, out) = trace(&job);
    let mut ex = cluster.executor();
    let outcome = tokio::time::timeout(
        LIMIT,
        run_job(&job, &ctx, &mut ex, &trace, &JobControl::new()),
    )
    .await
    .expect("in time");
    trace.finish();
    let text = out.text();
    assert_eq!(outcome, JobOutcome::Success, "{text}");
    assert!(
        text.contains("hello from runner-tok12345x-project-42-concurrent-0-"),
        "{text}"
    );
    assert!(text.contains("job token is [MASKED]"), "{text}");
    assert!(text.contains("Created cache"), "{text}");
    assert!(!text.contains("Missing glrunner"), "{text}");
    assert!(text.contains("\nscript-in-build\n"), "{text}");
    assert!(text.contains("no newline at the end\n"), "{text}");
    assert!(
        !text.contains("command_exit_code"),
        "markers stay out of the trace: {text}"
    );

    // The protocol's shape: no polling, one exec and an attach per container for the whole job.
    let counts = env.cluster.request_counts();
    let mut shape: Vec<String> = counts
        .iter()
        .map(|(k, n)| {
            format!(
                "{} {}{} x{n}",
                k.verb,
                k.resource,
                if k.subresource.is_empty() {
                    String::new()
                } else {
                    format!("/{}", k.subresource)
                }
            )
        })
        .collect();
    shape.sort();
    let total: u64 = counts.values().sum();
    assert!(total <= 12, "{total} requests for one job: {shape:?}");
    // WebSocket exec and attach open with a GET.
    assert_eq!(
        shape,
        [
            "create pods x1",
            "create secrets x1",
            "delete pods x1",
            "get pods/attach x2",
            "get pods/exec x1",
            "update secrets x1"
        ],
        "no polling, one exec for the log and an attach per container for the whole job"
    );

    // Nothing is left: the pod is deleted, its Secret goes with it (owner reference).
    cluster::until(&env.cluster, 30, "the job's objects going away", |c| {
        cluster::job_objects(c, 101).is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_failing_script_reports_its_exit_code_and_after_script_runs() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    let mut job = job(102, &["echo before", "exit 7", "echo never"]);
    job.steps.push(step(
        STEP_AFTER_SCRIPT,
        &["echo after status $CI_JOB_STATUS"],
    ));
    let (outcome, text) = run(&cluster, &job, &JobControl::new()).await;
    assert_eq!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::ScriptFailure,
            exit_code: Some(7)
        },
        "{text}"
    );
    assert!(
        text.contains("before") && !text.contains("\nnever"),
        "{text}"
    );
    assert!(text.contains("after status failed"), "{text}");
    assert!(text.contains("Job failed: exit code 7"), "{text}");
}

#[tokio::test]
async fn dropped_connections_mid_stage_resume_and_the_stage_runs_once() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let sync = tempfile::tempdir().expect("sync dir");
    let mut config = cluster::config();
    config
        .volumes
        .host_path
        .push(glrunner_config::kubernetes::HostPathVolume {
            name: "sync".into(),
            mount_path: "/sync".into(),
            host_path: Some(sync.path().to_string_lossy().into_owned()),
            ..Default::default()
        });
    let cluster = executor_cluster(&env, config).await;
    let job = job(
        103,
        &[
            "echo run >> /sync/runs",
            "echo waiting-for-the-test",
            "for i in $(seq 600); do [ -e /sync/go ] && break; sleep 0.1; done",
            "seq 1 2000 | sed 's/^/line /'",
            "echo all-done",
        ],
    );
    let (handle, out) = spawn(&cluster, job, ctx(), JobControl::new());
    out.wait_for("waiting-for-the-test").await;
    let dropped = env.cluster.kubelet().drop_streams();
    assert!(
        dropped >= 2,
        "the exec and the build attach were open: {dropped}"
    );
    std::fs::write(sync.path().join("go"), "").expect("go");
    let outcome = finished(handle, &out).await;
    let text = out.text();
    assert_eq!(outcome, JobOutcome::Success, "{text}");
    assert_eq!(
        std::fs::read_to_string(sync.path().join("runs")).expect("runs"),
        "run\n",
        "the stage ran once"
    );
    // The log resumed at the exact byte: every line once, in order.
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(lines.len(), 2000, "{text}");
    assert_eq!(lines[1999], "line 2000");
    assert_eq!(
        text.matches("waiting-for-the-test").count(),
        2,
        "echoed command + output once"
    );
}

#[tokio::test]
async fn an_unreachable_kubelet_is_waited_out() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let sync = tempfile::tempdir().expect("sync dir");
    let mut config = cluster::config();
    config
        .volumes
        .host_path
        .push(glrunner_config::kubernetes::HostPathVolume {
            name: "sync".into(),
            mount_path: "/sync".into(),
            host_path: Some(sync.path().to_string_lossy().into_owned()),
            ..Default::default()
        });
    let cluster = executor_cluster(&env, config).await;
    let job = job(
        104,
        &[
            "echo waiting-for-the-test",
            "for i in $(seq 600); do [ -e /sync/go ] && break; sleep 0.1; done",
            "echo resumed-after-the-outage",
        ],
    );
    let (handle, out) = spawn(&cluster, job, ctx(), JobControl::new());
    out.wait_for("waiting-for-the-test").await;
    // The API server cannot reach the kubelet: streams drop, new ones fail to dial.
    env.cluster.kubelet().disconnect();
    std::fs::write(sync.path().join("go"), "").expect("go");
    // The executor tries again; once a few of its tries were refused, the kubelet comes back. (The
    // request log has no notifications: checked every 50 ms, at most 30 s.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env
        .cluster
        .request_log()
        .iter()
        .filter(|r| r.subresource == "exec")
        .count()
        < 4
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retries: {:?}\n{}",
            env.cluster
                .request_log()
                .iter()
                .map(|r| format!("{} {} {} {}", r.verb, r.resource, r.subresource, r.status))
                .collect::<Vec<_>>(),
            out.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.cluster.kubelet().reconnect();
    let outcome = finished(handle, &out).await;
    let text = out.text();
    assert_eq!(outcome, JobOutcome::Success, "{text}");
    assert!(text.contains("\nresumed-after-the-outage"), "{text}");
}

#[tokio::test]
async fn cancel_stops_the_script_and_after_script_still_runs() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    let mut job = job(105, &["echo started", "sleep 3105", "echo never"]);
    // Containers here share the host's process table: after_script can see whether the script's
    // `sleep` survived the stop.
    job.steps.push(step(
        STEP_AFTER_SCRIPT,
        &[
            "echo after-script-on-$CI_JOB_STATUS",
            "if pgrep -f 'sleep 3105' >/dev/null; then echo sleep-survived; else echo sleep-stopped; fi",
        ],
    ));
    let control = JobControl::new();
    let (handle, out) = spawn(&cluster, job, ctx(), control.clone());
    out.wait_for("\nstarted").await;
    let pod = cluster::job_pods(&env.cluster, 105)
        .pop()
        .and_then(|p| p.metadata.name)
        .expect("the job's pod");
    control.cancel.cancel();
    let outcome = finished(handle, &out).await;
    let text = out.text();
    assert_eq!(outcome, failed(FailureReason::JobCanceled), "{text}");
    assert!(text.contains("after-script-on-canceled"), "{text}");
    assert!(!text.contains("\nnever"), "{text}");
    assert!(text.contains("\nsleep-stopped"), "{text}");
    // The pod and its Secret go.
    cluster::until(&env.cluster, 30, "the pod going away", |c| {
        cluster::job_objects(c, 105).is_empty()
    })
    .await;
    let _ = pod;
}

#[tokio::test]
async fn the_job_timeout_stops_it() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    let mut job = job(106, &["echo started", "sleep 300"]);
    job.runner_info.timeout = Some(4);
    let (outcome, text) = run(&cluster, &job, &JobControl::new()).await;
    assert_eq!(
        outcome,
        failed(FailureReason::JobExecutionTimeout),
        "{text}"
    );
    assert!(
        text.contains("execution took longer than 4s seconds"),
        "{text}"
    );
}

#[tokio::test]
async fn oom_killed_names_the_container_and_its_limit() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let mut config = cluster::config();
    config.memory_limit = Some("1Gi".into());
    let cluster = executor_cluster(&env, config).await;
    let (handle, out) = spawn(
        &cluster,
        job(107, &["echo started", "sleep 300"]),
        ctx(),
        JobControl::new(),
    );
    out.wait_for("\nstarted").await;
    let pod = cluster::job_pods(&env.cluster, 107)
        .pop()
        .and_then(|p| p.metadata.name)
        .expect("the job's pod");
    env.cluster
        .kubelet()
        .oom_kill(cluster::JOB_NS, &pod, "build")
        .await
        .expect("OOM kill");
    let outcome = finished(handle, &out).await;
    let text = out.text();
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerSystemFailure),
        "{text}"
    );
    assert!(
        text.contains(
            "container build ran out of memory and was killed (OOMKilled, exit code 137, limit 1Gi)"
        ),
        "{text}"
    );
    assert!(text.contains("`memory_limit`"), "{text}");
}

#[tokio::test]
async fn eviction_is_explained() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    let (handle, out) = spawn(
        &cluster,
        job(108, &["echo started", "sleep 300"]),
        ctx(),
        JobControl::new(),
    );
    out.wait_for("\nstarted").await;
    let pod = cluster::job_pods(&env.cluster, 108)
        .pop()
        .and_then(|p| p.metadata.name)
        .expect("the job's pod");
    env.cluster
        .kubelet()
        .evict(cluster::JOB_NS, &pod)
        .await
        .expect("evict");
    let outcome = finished(handle, &out).await;
    let text = out.text();
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerSystemFailure),
        "{text}"
    );
    assert!(
        text.contains("was evicted by its node: The node was low on resource: memory"),
        "{text}"
    );
}
