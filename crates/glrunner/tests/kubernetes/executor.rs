//! Jobs run by the Kubernetes executor through the shared job machinery (`run_job`), against the test
//! cluster: the stages run in the right containers, the trace arrives, faults are explained.

use crate::cluster::{self, KubeEnv};
use glrunner_apiserver::Image;
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

/// Run `job` (whose script echoes `started` first) in the background until its trace shows that line.
async fn started(
    env: &KubeEnv,
    config: glrunner_config::KubernetesConfig,
    job: JobResponse,
) -> (Arc<Cluster>, tokio::task::JoinHandle<JobOutcome>, Output) {
    let cluster = executor_cluster(env, config).await;
    let (handle, out) = spawn(&cluster, job, ctx(), JobControl::new());
    out.wait_for("\nstarted").await;
    (cluster, handle, out)
}

/// Wait for a spawned job's end; the outcome and the trace.
async fn finished(
    handle: tokio::task::JoinHandle<JobOutcome>,
    out: &Output,
) -> (JobOutcome, String) {
    match tokio::time::timeout(LIMIT, handle).await {
        Ok(Ok(o)) => (o, out.text()),
        Ok(Err(e)) => panic!("the job panicked: {e}\n{}", out.text()),
        Err(_) => panic!("the job did not end in time:\n{}", out.text()),
    }
}

/// The name of job `id`'s pod, which must exist.
fn pod_name(env: &KubeEnv, id: i64) -> String {
    cluster::job_pods(&env.cluster, id)
        .pop()
        .and_then(|p| p.metadata.name)
        .expect("the job's pod")
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
    cluster::until_gone(&env.cluster, 101, "the job's objects going away").await;
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

/// A cluster whose job pods mount a fresh host directory at `/sync`: the test lets a waiting script
/// (`WAIT_FOR_GO`) go on by creating `go` in it.
async fn sync_cluster(env: &KubeEnv) -> (tempfile::TempDir, Arc<Cluster>) {
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
    (sync, executor_cluster(env, config).await)
}

/// Waits (at most 60 s) for the test to create `/sync/go`.
const WAIT_FOR_GO: &str = "for i in $(seq 600); do [ -e /sync/go ] && break; sleep 0.1; done";

#[tokio::test]
async fn dropped_connections_mid_stage_resume_and_the_stage_runs_once() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let (sync, cluster) = sync_cluster(&env).await;
    let job = job(
        103,
        &[
            "echo run >> /sync/runs",
            "echo waiting-for-the-test",
            WAIT_FOR_GO,
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
    let (outcome, text) = finished(handle, &out).await;
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
    let (sync, cluster) = sync_cluster(&env).await;
    let job = job(
        104,
        &[
            "echo waiting-for-the-test",
            WAIT_FOR_GO,
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
    let (outcome, text) = finished(handle, &out).await;
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
    // The job runs in its pod.
    pod_name(&env, 105);
    control.cancel.cancel();
    let (outcome, text) = finished(handle, &out).await;
    assert_eq!(outcome, failed(FailureReason::JobCanceled), "{text}");
    assert!(text.contains("after-script-on-canceled"), "{text}");
    assert!(!text.contains("\nnever"), "{text}");
    assert!(text.contains("\nsleep-stopped"), "{text}");
    // The pod and its Secret go.
    cluster::until_gone(&env.cluster, 105, "the pod going away").await;
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
    let (_cluster, handle, out) =
        started(&env, config, job(107, &["echo started", "sleep 300"])).await;
    let pod = pod_name(&env, 107);
    env.cluster
        .kubelet()
        .oom_kill(cluster::JOB_NS, &pod, "build")
        .await
        .expect("OOM kill");
    let (outcome, text) = finished(handle, &out).await;
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
    let (_cluster, handle, out) = started(
        &env,
        cluster::config(),
        job(108, &["echo started", "sleep 300"]),
    )
    .await;
    let pod = pod_name(&env, 108);
    env.cluster
        .kubelet()
        .evict(cluster::JOB_NS, &pod)
        .await
        .expect("evict");
    let (outcome, text) = finished(handle, &out).await;
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

/// Evict job `id`'s pod as a drain or an autoscaler does; the API's answer.
async fn drain(env: &KubeEnv, id: i64) -> Result<(), kube::Error> {
    let pod = pod_name(env, id);
    let client = env.cluster.server().drain_client().await.expect("client");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client, cluster::JOB_NS);
    tokio::time::timeout(LIMIT, pods.evict(&pod, &kube::api::EvictParams::default()))
        .await
        .expect("the eviction was answered in time")
        .map(|_| ())
}

fn budgets(env: &KubeEnv) -> Vec<k8s_openapi::api::policy::v1::PodDisruptionBudget> {
    env.cluster
        .store()
        .list_as::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(Some(cluster::JOB_NS))
}

/// `[runners.kubernetes]` with `pod_disruption_budget = true`, and a cluster granting what it needs.
async fn budget_env() -> Option<(KubeEnv, glrunner_config::KubernetesConfig)> {
    let env = cluster::start(cluster::kubelet(), false).await?;
    let config = glrunner_config::KubernetesConfig {
        pod_disruption_budget: Some(true),
        ..cluster::config()
    };
    env.cluster
        .apply_yaml(&cluster::role_yaml(&config))
        .expect("role");
    Some((env, config))
}

#[tokio::test]
async fn a_disruption_budget_keeps_a_drain_from_evicting_the_job() {
    let Some((env, config)) = budget_env().await else {
        return;
    };
    let (_cluster, handle, out) = started(
        &env,
        config,
        job(140, &["echo started", "sleep 5", "echo finished"]),
    )
    .await;
    let pod = cluster::job_pods(&env.cluster, 140)
        .pop()
        .expect("the job's pod");
    let budget = budgets(&env).pop().expect("the job's PodDisruptionBudget");
    assert_eq!(budget.metadata.name, pod.metadata.name);
    assert_eq!(
        budget
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("glrunner/job-id"))
            .map(String::as_str),
        Some("140")
    );
    let owner = budget
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default();
    assert!(
        owner.len() == 1
            && owner[0].kind == "Pod"
            && Some(&owner[0].uid) == pod.metadata.uid.as_ref(),
        "{owner:?}"
    );
    let spec = budget.spec.as_ref().expect("spec");
    assert_eq!(
        spec.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let selector = spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .expect("selector");
    let labels = pod.metadata.labels.as_ref().expect("pod labels");
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "{selector:?} does not select {labels:?}"
    );

    match drain(&env, 140).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 429, "{status:?}");
            assert!(status.message.contains("disruption budget"), "{status:?}");
        }
        other => panic!("the eviction was not refused: {other:?}"),
    }
    let (outcome, text) = finished(handle, &out).await;
    assert_eq!(outcome, JobOutcome::Success, "{text}");
    assert!(text.contains("\nfinished"), "{text}");
    cluster::until(&env.cluster, 30, "the budget goes with the pod", |_| {
        budgets(&env).is_empty()
    })
    .await;
}

#[tokio::test]
async fn without_a_budget_a_drain_fails_the_job_naming_who_and_the_fix() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let (_cluster, handle, out) = started(
        &env,
        cluster::config(),
        job(141, &["echo started", "sleep 300"]),
    )
    .await;
    assert!(
        budgets(&env).is_empty(),
        "a budget without pod_disruption_budget"
    );
    drain(&env, 141).await.expect("the eviction is allowed");
    let (outcome, text) = finished(handle, &out).await;
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerSystemFailure),
        "{text}"
    );
    assert!(text.contains("EvictionByEvictionAPI"), "{text}");
    assert!(text.contains("kubectl drain"), "{text}");
    assert!(text.contains("`pod_disruption_budget = true`"), "{text}");
}

#[tokio::test]
async fn the_sweep_removes_a_budget_a_crashed_manager_left() {
    let Some((env, config)) = budget_env().await else {
        return;
    };
    let (cluster, handle, _out) =
        started(&env, config, job(142, &["echo started", "sleep 3142"])).await;
    handle.abort();
    let _ = handle.await;
    let left = budgets(&env);
    assert_eq!(left.len(), 1, "the budget was left behind");
    let name = left[0].metadata.name.clone().unwrap_or_default();
    let swept =
        glrunner_kubernetes::sweep::sweep(cluster.kube(), cluster::JOB_NS, "s_0123456789ab")
            .await
            .expect("sweep");
    assert!(
        swept
            .deleted
            .contains(&format!("poddisruptionbudget/{name}")),
        "{swept:?}"
    );
    cluster::until(&env.cluster, 30, "nothing of the job is left", |c| {
        cluster::job_objects(c, 142).is_empty() && budgets(&env).is_empty()
    })
    .await;
}

fn with_image(mut job: JobResponse, image: &str) -> JobResponse {
    job.image = Some(glrunner_protocol::Image {
        name: image.into(),
        ..Default::default()
    });
    job
}

#[tokio::test]
async fn image_pull_failures_fail_fast_with_their_cause() {
    let kubelet = cluster::kubelet()
        .image("registry.example.com/team/missing", Image::not_found())
        .image(
            "registry.unreachable.example/team/app",
            Image::unreachable(),
        )
        .image(
            "registry.example.com/team/private",
            Image::host().private("ci", "registry-password"),
        );
    let Some(env) = cluster::start(kubelet, true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    let started = std::time::Instant::now();
    let cases = [
        (
            "registry.example.com/team/missing:1.0",
            FailureReason::RunnerConfigurationError,
            "does not exist in its registry",
        ),
        (
            "registry.unreachable.example/team/app:2",
            FailureReason::ImagePullFailure,
            "could not reach the registry",
        ),
        (
            "registry.example.com/team/private:3",
            FailureReason::RunnerConfigurationError,
            "`image_pull_secrets`",
        ),
    ];
    for (i, (image, reason, cause)) in cases.into_iter().enumerate() {
        let job = with_image(job(120 + i as i64, &["true"]), image);
        let (outcome, text) = run(&cluster, &job, &JobControl::new()).await;
        assert_eq!(outcome, failed(reason), "{image}: {text}");
        assert!(
            text.contains(&format!(
                "the image {image:?} of the container build cannot be pulled"
            )),
            "{text}"
        );
        assert!(text.contains(cause), "{image}: {text}");
    }
    // Failed at once, not after `poll_timeout` (180 s).
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_next_pull_policy_is_tried_after_a_pull_failure() {
    let kubelet = cluster::kubelet().image(
        cluster::HELPER_IMAGE,
        Image::glrunner(crate::support::bin()).present(),
    );
    let Some(env) = cluster::start(kubelet, true).await else {
        return;
    };
    let mut config = cluster::config();
    config.pull_policy = Some(glrunner_config::kubernetes::PullPolicies(vec![
        glrunner_config::kubernetes::PullPolicy::Never,
        glrunner_config::kubernetes::PullPolicy::IfNotPresent,
    ]));
    let cluster = executor_cluster(&env, config).await;
    let (outcome, text) = run(
        &cluster,
        &job(130, &["echo second-pod-works"]),
        &JobControl::new(),
    )
    .await;
    assert_eq!(outcome, JobOutcome::Success, "{text}");
    assert!(
        text.contains("is not on the node and its pull policy is Never"),
        "{text}"
    );
    assert!(
        text.contains("Attempt #2: Trying \"IfNotPresent\" pull policy for the build container"),
        "{text}"
    );
    assert!(text.contains("\nsecond-pod-works"), "{text}");
}

#[tokio::test]
async fn an_unschedulable_pod_fails_after_poll_timeout_with_the_schedulers_message() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let mut config = cluster::config();
    config.node_selector = [("pool".to_owned(), "gpu".to_owned())]
        .into_iter()
        .collect();
    config.poll_timeout = Some(3);
    let cluster = executor_cluster(&env, config).await;
    let (outcome, text) = run(&cluster, &job(131, &["true"]), &JobControl::new()).await;
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerSystemFailure),
        "{text}"
    );
    // While it waits, the log says why, every poll_interval (P1).
    assert!(text.contains("to be running, status is Pending"), "{text}");
    assert!(
        text.contains("PodScheduled: Unschedulable \"0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."),
        "{text}"
    );
    assert!(text.contains("Warning FailedScheduling"), "{text}");
    assert!(
        text.contains("could not be scheduled within 3s (`poll_timeout`)"),
        "{text}"
    );
    assert!(text.contains("`node_selector`"), "{text}");
    cluster::until_gone(&env.cluster, 131, "the pod going away").await;
}

#[tokio::test]
async fn a_secret_missing_in_the_job_namespace_fails_fast_with_the_command_that_copies_it() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    // Created where the manager runs, not where jobs run (catalogue K3).
    env.cluster
        .apply_yaml("apiVersion: v1\nkind: Secret\nmetadata:\n  name: gitlab-ca\n  namespace: ci-system\nstringData:\n  ca.crt: x\n")
        .expect("secret");
    let mut config = cluster::config();
    config
        .volumes
        .secret
        .push(glrunner_config::kubernetes::SecretVolume {
            name: "gitlab-ca".into(),
            mount_path: "/etc/gitlab-ca".into(),
            ..Default::default()
        });
    let cluster = executor_cluster(&env, config).await;
    let started = std::time::Instant::now();
    let (outcome, text) = run(&cluster, &job(132, &["true"]), &JobControl::new()).await;
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerConfigurationError),
        "{text}"
    );
    assert!(
        text.contains("the Secret \"gitlab-ca\" does not exist in the job namespace ci-jobs"),
        "{text}"
    );
    assert!(
        text.contains("kubectl -n ci-system get secret gitlab-ca -o yaml")
            && text.contains("kubectl -n ci-jobs apply -f -"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn a_missing_service_account_is_explained() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let mut config = cluster::config();
    config.service_account = Some("ci-builder".into());
    let cluster = executor_cluster(&env, config).await;
    let (outcome, text) = run(&cluster, &job(133, &["true"]), &JobControl::new()).await;
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerConfigurationError),
        "{text}"
    );
    assert!(
        text.contains(
            "the service account \"ci-builder\" does not exist in the job namespace ci-jobs"
        ),
        "{text}"
    );
    assert!(
        text.contains("`kubectl -n ci-jobs create serviceaccount ci-builder`"),
        "{text}"
    );
    // Nothing is left: the Secret created before the pod is deleted too.
    cluster::until_gone(&env.cluster, 133, "the job's Secret going away").await;
}

#[tokio::test]
async fn services_are_reachable_by_alias_and_by_their_image_name() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let mut job = job(
        134,
        &[
            &format!(
                "for i in $(seq 100); do curl -fs http://web:{port}/ >/dev/null && break; sleep 0.1; done"
            ),
            &format!("curl -fsS -o /dev/null -w 'alias %{{http_code}}\\n' http://web:{port}/"),
            &format!(
                "curl -fsS -o /dev/null -w 'image name %{{http_code}}\\n' http://tutum-wordpress:{port}/"
            ),
        ],
    );
    job.services.push(glrunner_protocol::Image {
        name: "tutum/wordpress:latest".into(),
        alias: Some("web".into()),
        command: vec![
            "python3".into(),
            "-m".into(),
            "http.server".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
        ],
        ..Default::default()
    });
    let (outcome, text) = run(&cluster, &job, &JobControl::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{text}");
    assert!(text.contains("\nalias 200"), "{text}");
    assert!(text.contains("\nimage name 200"), "{text}");
}

#[tokio::test]
async fn secrets_are_only_in_the_jobs_secret() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    let secret = "S3cret-Value-For-K8s-Jobs";
    let mut job = job(
        135,
        &[
            "echo \"the secret is $DEPLOY_KEY\"",
            "echo started",
            "sleep 3135",
        ],
    );
    job.variables.push(JobVariable {
        masked: true,
        public: false,
        ..JobVariable::new("DEPLOY_KEY", secret)
    });
    let control = JobControl::new();
    let (handle, out) = spawn(&cluster, job, ctx(), control.clone());
    out.wait_for("\nstarted").await;
    let store = env.cluster.store();
    let mut everything = String::new();
    for p in store.list_as::<k8s_openapi::api::core::v1::Pod>(None) {
        everything.push_str(&serde_json::to_string(&p).expect("json"));
    }
    for s in store.list_as::<k8s_openapi::api::core::v1::Service>(None) {
        everything.push_str(&serde_json::to_string(&s).expect("json"));
    }
    for e in store.list_as::<k8s_openapi::api::core::v1::Event>(None) {
        everything.push_str(&serde_json::to_string(&e).expect("json"));
    }
    for c in store.list_as::<k8s_openapi::api::core::v1::ConfigMap>(None) {
        everything.push_str(&serde_json::to_string(&c).expect("json"));
    }
    for value in [secret, JOB_TOKEN] {
        assert!(!everything.contains(value), "{value} is in a stored object");
    }
    // The job's variables Secret is the one object holding them.
    let holders: Vec<String> = store
        .list_as::<k8s_openapi::api::core::v1::Secret>(None)
        .into_iter()
        .filter(|s| {
            s.data.iter().flatten().any(|(_, v)| {
                let v = String::from_utf8_lossy(&v.0);
                v.contains(secret) || v.contains(JOB_TOKEN)
            })
        })
        .map(|s| s.metadata.name.unwrap_or_default())
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].ends_with("-variables"), "{holders:?}");
    control.abort.cancel();
    let (_, text) = finished(handle, &out).await;
    assert!(text.contains("the secret is [MASKED]"), "{text}");
}

#[tokio::test]
async fn the_sweep_removes_what_a_crashed_manager_left_and_returns_the_job_token() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let (cluster, handle, _out) = started(
        &env,
        cluster::config(),
        job(136, &["echo started", "sleep 3136"]),
    )
    .await;
    // The manager dies: no cleanup runs.
    handle.abort();
    let _ = handle.await;
    assert!(
        !cluster::job_objects(&env.cluster, 136).is_empty(),
        "the pod was left behind"
    );
    let swept =
        glrunner_kubernetes::sweep::sweep(cluster.kube(), cluster::JOB_NS, "s_0123456789ab")
            .await
            .expect("sweep");
    assert_eq!(swept.orphans.len(), 1, "{swept:?}");
    let orphan = &swept.orphans[0];
    assert_eq!(orphan.job_id, 136);
    assert_eq!(
        orphan
            .token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .as_deref(),
        Some(JOB_TOKEN)
    );
    assert_eq!(orphan.phase.as_deref(), Some("Running"));
    assert!(
        swept.deleted.iter().any(|d| d.starts_with("pod/")),
        "{swept:?}"
    );
    assert!(
        !format!("{swept:?}").contains(JOB_TOKEN),
        "Debug hides the token"
    );
    cluster::until_gone(&env.cluster, 136, "the left-over objects going away").await;
    // Another manager's objects are not touched.
    let other =
        glrunner_kubernetes::sweep::sweep(cluster.kube(), cluster::JOB_NS, "s_other0000000")
            .await
            .expect("sweep");
    assert!(other.orphans.is_empty());
}

#[tokio::test]
async fn a_missing_permission_fails_the_job_with_the_role_that_grants_it() {
    let Some(env) = cluster::start(cluster::kubelet(), false).await else {
        return;
    };
    // A Role from before attach execution (K4): everything but pods/attach.
    let role = cluster::role_yaml(&cluster::config()).replace(
        "resources: [\"pods/attach\"]",
        "resources: [\"pods/portforward\"]",
    );
    env.cluster.apply_yaml(&role).expect("role");
    let cluster = executor_cluster(&env, cluster::config()).await;
    let (outcome, text) = run(&cluster, &job(137, &["true"]), &JobControl::new()).await;
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerConfigurationError),
        "{text}"
    );
    // Before the first job: what the manager lacks, with the fix.
    assert!(
        text.contains("system:serviceaccount:ci-system:glrunner may not do 2 thing(s)"),
        "{text}"
    );
    assert!(
        text.contains("kubectl auth can-i create pods --subresource=attach -n ci-jobs"),
        "{text}"
    );
    // The job's own failure names the call and prints the Role.
    assert!(
        text.contains("refused to let system:serviceaccount:ci-system:glrunner create pods/attach"),
        "{text}"
    );
    assert!(text.contains("resources: [\"pods/attach\"]"), "{text}");
    cluster::until_gone(&env.cluster, 137, "the pod going away").await;
}

#[tokio::test]
async fn a_namespace_per_job_is_created_and_deleted_with_the_job() {
    let Some(env) = cluster::start(cluster::kubelet(), false).await else {
        return;
    };
    let mut config = cluster::config();
    config.namespace_per_job = Some(true);
    // Job namespaces do not exist in advance: glrunner's Role is a ClusterRole then.
    let role = cluster::role_yaml(&config);
    assert!(role.contains("kind: ClusterRole"), "{role}");
    env.cluster.apply_yaml(&role).expect("cluster role");
    let cluster = executor_cluster(&env, config).await;
    let (outcome, text) = run(
        &cluster,
        &job(140, &["echo in $CI_JOB_ID"]),
        &JobControl::new(),
    )
    .await;
    assert_eq!(outcome, JobOutcome::Success, "{text}");
    assert!(
        text.contains("Using Kubernetes namespace: ci-job-140"),
        "{text}"
    );
    assert!(text.contains("\nin 140"), "{text}");
    cluster::until(&env.cluster, 30, "the job's namespace going away", |c| {
        c.store()
            .get_as::<k8s_openapi::api::core::v1::Namespace>("", "ci-job-140")
            .is_none()
    })
    .await;
    assert!(
        !cluster
            .watched_namespaces()
            .contains(&"ci-job-140".to_owned()),
        "{:?}",
        cluster.watched_namespaces()
    );
}

#[tokio::test]
async fn a_container_that_exits_before_the_job_starts_shows_its_own_output() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    // The image's entrypoint, honoured, fails before any stage can start.
    let mut job = with_image(job(141, &["true"]), cluster::BUILD_IMAGE);
    if let Some(image) = job.image.as_mut() {
        image.entrypoint = vec![
            "sh".into(),
            "-c".into(),
            "echo 'entrypoint: cannot find /app/config.yml' >&2; exit 3".into(),
        ];
    }
    job.variables
        .push(JobVariable::new("FF_KUBERNETES_HONOR_ENTRYPOINT", "true"));
    let (outcome, text) = run(&cluster, &job, &JobControl::new()).await;
    assert_eq!(
        outcome,
        failed(FailureReason::RunnerSystemFailure),
        "{text}"
    );
    assert!(
        text.contains("the container build stopped (exit code 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "the build container's last output:\n    entrypoint: cannot find /app/config.yml"
        ),
        "{text}"
    );
}
