//! Jobs run by the Kubernetes executor through the shared job machinery (`run_job`), against the test
//! cluster: the stages run in the right containers, the trace arrives, faults are explained.

use crate::cluster::{self, KubeEnv};
use glrunner_job::{JobOutcome, RunnerContext, run_job};
use glrunner_kubernetes::connection::{ConnectOptions, connect};
use glrunner_kubernetes::executor::Cluster;
use glrunner_protocol::{JobResponse, JobVariable, STEP_AFTER_SCRIPT, STEP_SCRIPT, Step, When};
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

#[tokio::test]
async fn a_job_runs_in_its_pod_and_the_pod_is_gone_after() {
    let Some(env) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let cluster = executor_cluster(&env, cluster::config()).await;
    let job = job(
        101,
        &[
            "echo hello from $(hostname)",
            "echo \"job token is $CI_JOB_TOKEN\"",
            "test -d /scripts-42-101",
        ],
    );
    let (outcome, text) = run(&cluster, &job, &JobControl::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{text}");
    assert!(text.contains("hello from"), "{text}");
    assert!(text.contains("job token is [MASKED]"), "{text}");
    println!("{text}");
    println!("{:?}", cluster.kube().counts());
}
