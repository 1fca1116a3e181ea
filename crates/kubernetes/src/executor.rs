//! The Kubernetes executor: one pod per job, stages run in it by the shared job machinery.
//!
//! - `prepare` builds the pod ([`PodPlan::build`]), creates the job's Secrets and the pod, and follows
//!   it through the manager's shared watch until every container runs, printing why it is pending
//!   every `poll_interval` and failing at once on causes that do not go away (an image that cannot be
//!   pulled — after trying the container's other pull policies —, a missing Secret, …); unschedulable
//!   pods fail after `poll_timeout` with the scheduler's message. Then the pod becomes the owner of its
//!   Secrets and Services, and the session opens: one `pods/exec` in the helper container running
//!   `glrunner helper read-logs`, which streams the job log and takes the stage scripts on its stdin.
//! - `run` sends the stage's script, then one line through the target container's long-lived
//!   `pods/attach` that starts it with the [`launcher`] (at most once, in the background), and streams
//!   the log until the stage's end marker. A broken exec resumes at the last byte received; a broken
//!   attach is opened again and the line re-sent (the launcher ignores a second start). Before a
//!   broken connection is reported, the pod's real state is read, and a dead pod is reported as what
//!   killed it. Cancel stops the stage's process group (TERM, then KILL after a grace period).
//!   With `pod_disruption_budget = true`, a PodDisruptionBudget owned by the pod is created right
//!   after it (one request), so drains and autoscalers cannot evict the pod mid-job.
//! - `cleanup` deletes the pod (its Secrets, Services and budget go with it through their owner
//!   reference, or explicitly when that was not set for the Secrets and Services) on every path,
//!   bounded by `cleanup_resources_timeout`.

use crate::api::{Kube, KubeError};
use crate::connection::Connection;
use crate::diagnose::{self, PodFailure, Progress};
use crate::pod::{self, BUILD_CONTAINER, HELPER_CONTAINER, JobContext, PodPlan};
use crate::preflight::{self, Report};
use crate::stream::conn::{Conn, Event};
use crate::stream::launcher;
use crate::stream::logs::{Item, LogStream};
use crate::watch::{PodState, Subscription, Watches};
use glrunner_config::KubernetesConfig;
use glrunner_job::executor::{
    Executor, ExecutorError, ExecutorFuture, PrepareOptions, StageExit, StageScript,
};
use glrunner_job::{Container, JobPaths, RunnerContext};
use glrunner_protocol::request::FeaturesInfo;
use glrunner_protocol::{FailureReason, JobResponse};
use glrunner_trace::{Trace, format};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{AttachParams, DeleteParams, PropagationPolicy};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a started stage may take to say it started before its start line is sent again.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Start lines sent for one stage at most.
const MAX_STARTS: u32 = 6;
/// Between TERM and KILL when a stage is stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// After KILL, how long the stage's end is awaited.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long the log stream is tried again (each time after the pod's state was checked) while its
/// connections keep failing: a node's kubelet can be unreachable for a while (new nodes, restarts).
const RECONNECT_WINDOW: Duration = Duration::from_secs(90);
/// How long a stage script's delivery may take.
const FILE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a broken connection waits for the pod's state to explain it.
const POD_SETTLE: Duration = Duration::from_secs(5);
/// How long a pod deleted for another pull policy may take to go.
const RECREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// What every job of one `[[runners]]` entry shares: the API wrapper, the watches and the
/// configuration.
pub struct Cluster {
    kube: Kube,
    watches: Arc<Watches>,
    config: KubernetesConfig,
    home_namespace: Option<String>,
    helper_program: String,
    /// Start-up findings for the first job's log; `None` once printed.
    first_job: Mutex<Option<FirstJob>>,
    stop_grace: Duration,
}

enum FirstJob {
    /// The checks ran at start-up; these problems are still to be shown.
    Report(Report),
    /// No checks ran yet: the first job runs them.
    Unchecked,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.config.namespace())
            .field("home_namespace", &self.home_namespace)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The shared part for jobs of the manager `system_id`. Needs a tokio runtime (the watches run
    /// as tasks).
    pub fn new(connection: &Connection, config: KubernetesConfig, system_id: &str) -> Arc<Self> {
        let kube = Kube::new(connection.client.clone(), &config);
        let watches = Watches::new(kube.clone(), system_id, config.print_pod_warning_events());
        Arc::new(Self {
            kube,
            watches,
            config,
            home_namespace: connection.home_namespace.clone(),
            helper_program: "glrunner".to_owned(),
            first_job: Mutex::new(Some(FirstJob::Unchecked)),
            stop_grace: STOP_GRACE,
        })
    }

    pub fn kube(&self) -> &Kube {
        &self.kube
    }

    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    /// The namespaces whose pods the manager follows now.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.watches.namespaces()
    }

    pub fn home_namespace(&self) -> Option<&str> {
        self.home_namespace.as_deref()
    }

    /// Check permissions and referenced objects now (at start-up); the first job's log repeats
    /// what was found.
    pub async fn preflight(&self) -> Report {
        let report = preflight::check(&self.kube, &self.config, self.home_namespace()).await;
        *self.first_job.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(FirstJob::Report(report.clone()));
        report
    }

    /// An executor for one job.
    pub fn executor(self: &Arc<Self>) -> KubernetesExecutor {
        KubernetesExecutor {
            cluster: self.clone(),
            job: None,
            files: Vec::new(),
        }
    }

    fn take_first_job(&self) -> Option<FirstJob> {
        self.first_job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Runs one job's stages in a pod.
pub struct KubernetesExecutor {
    cluster: Arc<Cluster>,
    job: Option<Box<JobPod>>,
    /// Files written next to the stage scripts before the first stage.
    files: Vec<(String, Arc<[u8]>)>,
}

impl std::fmt::Debug for KubernetesExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesExecutor")
            .field("pod", &self.job.as_ref().map(|j| &j.plan.name))
            .finish()
    }
}

impl KubernetesExecutor {
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Also write `data` as `name` in the job's scripts directory ([`pod::scripts_dir`]) before the
    /// first stage (`glrunner exec` sends the project's sources this way).
    /// The data is shared, not copied: every job of a pipeline can carry the same sources.
    pub fn with_file(mut self, name: &str, data: Arc<[u8]>) -> Self {
        self.files.push((name.to_owned(), data));
        self
    }
}

fn config_error(message: impl Into<String>) -> ExecutorError {
    ExecutorError::new(FailureReason::RunnerConfigurationError, message)
}

fn kube_error(e: KubeError) -> ExecutorError {
    match e {
        KubeError::Forbidden { .. }
        | KubeError::Unauthorized { .. }
        | KubeError::MissingServiceAccount { .. }
        | KubeError::MissingNamespace { .. } => config_error(e.to_string()),
        other => ExecutorError::system(other.to_string()),
    }
}

fn pod_error(f: PodFailure) -> ExecutorError {
    ExecutorError::new(f.reason, f.message)
}

/// A stage name as part of a file name.
fn file_safe(stage: &str) -> String {
    stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect()
}

impl Executor for KubernetesExecutor {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn features(&self, features: &mut FeaturesInfo) {
        features_info(features);
    }

    fn disposable(&self) -> bool {
        true
    }

    fn job_paths(&self, ctx: &RunnerContext, job: &JobResponse) -> Result<JobPaths, ExecutorError> {
        Ok(pod::job_paths(&self.cluster.config, ctx, job))
    }

    fn helper_program(&self) -> Option<String> {
        Some(self.cluster.helper_program.clone())
    }

    fn cache_dir(&self, ctx: &RunnerContext) -> Option<String> {
        Some(pod::cache_dir(ctx))
    }

    fn prepare<'a>(
        &'a mut self,
        options: PrepareOptions<'a>,
    ) -> ExecutorFuture<'a, Result<(), ExecutorError>> {
        Box::pin(async move { self.prepare_pod(options).await })
    }

    fn run<'a>(
        &'a mut self,
        script: &'a StageScript,
        cancel: &'a CancellationToken,
        trace: &'a Trace,
    ) -> ExecutorFuture<'a, Result<StageExit, ExecutorError>> {
        Box::pin(async move {
            let Some(job) = self.job.as_mut() else {
                return Err(ExecutorError::system(format!(
                    "stage {} was to run before the pod was prepared; this is a bug in glrunner",
                    script.stage
                )));
            };
            job.run_stage(script, cancel, trace).await
        })
    }

    fn cleanup<'a>(&'a mut self, trace: &'a Trace) -> ExecutorFuture<'a, ()> {
        Box::pin(async move {
            if let Some(job) = self.job.take() {
                let timeout = self.cluster.config.cleanup_resources_timeout();
                match tokio::time::timeout(timeout, job.cleanup(trace)).await {
                    Ok(()) => {}
                    Err(_) => format::warning(
                        trace,
                        &format!(
                            "deleting the job's pod took longer than {}s (`cleanup_resources_timeout`); glrunner's \
                             start-up sweep deletes what is left",
                            timeout.as_secs()
                        ),
                    ),
                }
            }
        })
    }
}

/// The features the Kubernetes executor adds to the runner core's.
pub fn features_info(features: &mut FeaturesInfo) {
    features.image = true;
    features.services = true;
    features.service_variables = true;
    features.service_multiple_aliases = true;
}

impl KubernetesExecutor {
    async fn prepare_pod(&mut self, o: PrepareOptions<'_>) -> Result<(), ExecutorError> {
        let cluster = self.cluster.clone();
        let trace = o.trace;
        let config = &cluster.config;
        match cluster.take_first_job() {
            Some(FirstJob::Report(r)) => show_report(trace, &r),
            Some(FirstJob::Unchecked) => {
                let r = preflight::check(&cluster.kube, config, cluster.home_namespace()).await;
                show_report(trace, &r);
            }
            None => {}
        }
        if crate::names::sanitize_label_value(&o.ctx.system_id) != cluster.watches.system_id() {
            return Err(ExecutorError::system(format!(
                "the job's system ID {:?} is not the one the pod watch follows ({:?}); this is a bug in glrunner",
                o.ctx.system_id,
                cluster.watches.system_id()
            )));
        }
        let ctx = JobContext::new(o.ctx, o.paths, o.variables);
        let plan = PodPlan::build(config, o.job, &ctx).map_err(|e| config_error(e.to_string()))?;
        for w in &plan.warnings {
            format::warning(trace, w);
        }
        format::line(
            trace,
            &format!("Using Kubernetes namespace: {}", plan.namespace),
        );
        let image = plan
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        format::line(
            trace,
            &format!("Using Kubernetes executor with image {image} ..."),
        );
        let sub = cluster.watches.subscribe(&plan.namespace, &plan.name);
        let dctx = diagnose::Context {
            namespace: plan.namespace.clone(),
            home_namespace: cluster.home_namespace.clone(),
            budget: config.pod_disruption_budget == Some(true),
        };
        let job = self.job.insert(Box::new(JobPod {
            cluster: cluster.clone(),
            plan,
            sub,
            ctx: dctx,
            namespace_created: false,
            secrets: Vec::new(),
            pod_uid: None,
            services: Vec::new(),
            owned: false,
            session: Session::default(),
            seq: 0,
            warnings_shown: 0,
        }));
        job.create(o.cancel, trace).await?;
        job.open_session().await?;
        for (name, data) in std::mem::take(&mut self.files) {
            job.send_file(&name, &data, Some(trace), None).await?;
        }
        Ok(())
    }
}

fn show_report(trace: &Trace, report: &Report) {
    for p in &report.problems {
        format::warning(trace, &p.message);
    }
}

/// The most bytes one WebSocket frame carries (API servers and proxies limit frame sizes); stage
/// commands stay far below it, so each reaches the container whole or not at all.
const MAX_FRAME: usize = 1024 * 1024;

/// The pause before connecting again after `failures` failures in a row (250 ms × 2^n, at most 4 s).
fn retry_wait(failures: u32) -> Duration {
    Duration::from_millis(250) * 2u32.pow(failures.min(4))
}

/// Send `data` to stdin in frames of at most [`MAX_FRAME`]; false when the connection is gone.
async fn send_chunked(conn: &Conn, data: &[u8]) -> bool {
    for chunk in data.chunks(MAX_FRAME) {
        if !conn.send(chunk).await {
            return false;
        }
    }
    true
}

/// The session with the running pod.
#[derive(Default)]
struct Session {
    /// The read-logs exec in the helper container.
    logs: Option<Conn>,
    /// Whether the current read-logs sent anything yet.
    logs_spoke: bool,
    /// Log connections in a row that ended before delivering anything.
    log_failures: u32,
    /// When the first of them failed.
    failing_since: Option<Instant>,
    /// Why the last connection ended.
    last_failure: String,
    /// Attach connections in a row that closed before their stage started.
    attach_failures: u32,
    stream: LogStream,
    stderr: Vec<u8>,
    /// Recent read-logs diagnostics, for error messages.
    diagnostics: Vec<String>,
    /// Files sent and not acknowledged yet (name → frame), re-sent on a new exec.
    unacked: BTreeMap<String, Vec<u8>>,
    build: Option<Conn>,
    helper: Option<Conn>,
}

impl Session {
    /// The attach connection to `container` (the build or the helper container).
    fn attach_slot(&mut self, container: &str) -> &mut Option<Conn> {
        if container == BUILD_CONTAINER {
            &mut self.build
        } else {
            &mut self.helper
        }
    }
}

/// What woke a stage up.
enum Wake {
    Log(Event),
    AttachGone(&'static str),
    Pod,
    Cancel,
    Timer,
    /// Something that needs no action (an attach's status frame).
    Nothing,
}

/// A job's pod and everything known about it.
struct JobPod {
    cluster: Arc<Cluster>,
    plan: PodPlan,
    sub: Subscription,
    ctx: diagnose::Context,
    namespace_created: bool,
    /// The job's Secrets as created (with their resourceVersion, for the owner update).
    secrets: Vec<Secret>,
    pod_uid: Option<String>,
    services: Vec<String>,
    /// The pod owns the Secrets and Services (they go with it).
    owned: bool,
    session: Session,
    /// Stages run so far (each gets its own script name).
    seq: u32,
    /// Warning events about the pod already in the job log.
    warnings_shown: u64,
}

impl JobPod {
    fn kube(&self) -> &Kube {
        &self.cluster.kube
    }

    fn ns(&self) -> &str {
        &self.plan.namespace
    }

    fn per_job_namespace(&self) -> bool {
        self.cluster.config.namespace_per_job == Some(true)
    }

    // ------------------------------------------------------------------------------ creation

    async fn create(
        &mut self,
        cancel: &CancellationToken,
        trace: &Trace,
    ) -> Result<(), ExecutorError> {
        if self.per_job_namespace() {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(self.plan.namespace.clone()),
                    labels: Some(self.plan.labels.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            self.kube()
                .create_namespace(&ns)
                .await
                .map_err(kube_error)?;
            self.namespace_created = true;
        }
        let mut secrets = Vec::new();
        if let Some(s) = &self.plan.registry_secret {
            secrets.push(s.clone());
        }
        secrets.push(self.plan.variables_secret.clone());
        for s in secrets {
            let created = self
                .kube()
                .create(self.ns(), &s)
                .await
                .map_err(kube_error)?;
            self.secrets.push(created);
        }
        let mut attempt = 1u32;
        loop {
            let pod = self
                .kube()
                .create(self.ns(), &self.plan.pod)
                .await
                .map_err(kube_error)?;
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            self.pod_uid = Some(uid.clone());
            self.create_budget(&uid).await?;
            match self.wait_running(&uid, cancel, trace).await? {
                None => break,
                Some(failure) => {
                    let Some(container) = failure.pull_failure.clone() else {
                        return Err(self.pod_error(failure).await);
                    };
                    let Some(next) = self.plan.next_pull_policy(&container) else {
                        return Err(self.pod_error(failure).await);
                    };
                    attempt += 1;
                    format::warning(trace, &failure.message);
                    format::line(
                        trace,
                        &format!(
                            "Attempt #{attempt}: Trying \"{}\" pull policy for the {container} container",
                            next.as_kubernetes()
                        ),
                    );
                    self.delete_pod_now(&uid).await?;
                    // Its budget belongs to the old pod; the next pod gets its own.
                    self.delete_budget().await?;
                }
            }
        }
        self.own_objects(trace).await;
        self.create_services().await
    }

    /// `pod_disruption_budget = true`: the job's PodDisruptionBudget, owned by the pod `uid` (the
    /// garbage collector deletes it with the pod, as it does the Secrets; the start-up sweep deletes
    /// what a crashed manager left). A refused create fails the job like any other create.
    async fn create_budget(&mut self, uid: &str) -> Result<(), ExecutorError> {
        if self.cluster.config.pod_disruption_budget != Some(true) {
            return Ok(());
        }
        let budget = self.plan.disruption_budget(uid);
        self.kube()
            .create(self.ns(), &budget)
            .await
            .map_err(kube_error)?;
        Ok(())
    }

    /// Delete the budget of a pod that is being replaced (already gone is fine).
    async fn delete_budget(&mut self) -> Result<(), ExecutorError> {
        if self.cluster.config.pod_disruption_budget != Some(true) {
            return Ok(());
        }
        self.kube()
            .delete::<PodDisruptionBudget>(self.ns(), &self.plan.name, &DeleteParams::default())
            .await
            .map_err(kube_error)
    }

    /// Delete the pod at once and wait (through the watch) until it is gone.
    async fn delete_pod_now(&mut self, uid: &str) -> Result<(), ExecutorError> {
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        self.kube()
            .delete::<Pod>(self.ns(), &self.plan.name, &now)
            .await
            .map_err(kube_error)?;
        let deadline = Instant::now() + RECREATE_TIMEOUT;
        loop {
            let gone = {
                let s = self.sub.rx.borrow_and_update();
                s.deleted || s.pod.as_ref().and_then(|p| p.metadata.uid.as_deref()) != Some(uid)
            };
            if gone {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.sub.rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(ExecutorError::system(format!(
                        "the pod {}/{} was deleted to try another pull policy but did not go away within {}s",
                        self.ns(),
                        self.plan.name,
                        RECREATE_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }

    /// Follow the pod until every container runs (`None`), or a failure no waiting fixes.
    async fn wait_running(
        &mut self,
        uid: &str,
        cancel: &CancellationToken,
        trace: &Trace,
    ) -> Result<Option<PodFailure>, ExecutorError> {
        let config = &self.cluster.config;
        let (interval, timeout) = (config.poll_interval(), config.poll_timeout());
        let show_warnings = config.print_pod_warning_events();
        let started = Instant::now();
        let deadline = started + timeout;
        let mut next_print = started + interval;

        let at = format!("{}/{}", self.plan.namespace, self.plan.name);
        loop {
            let state = self.current(uid);
            match diagnose::progress(&state, &self.ctx) {
                Progress::Running => return Ok(None),
                Progress::Failed(f) => return Ok(Some(f)),
                Progress::Waiting => {}
            }
            let now = Instant::now();
            if now >= deadline {
                let reasons = diagnose::pending_reasons(&state);
                let scheduling = reasons
                    .iter()
                    .find(|r| r.contains("Unschedulable"))
                    .cloned();
                let message = match scheduling {
                    Some(s) => format!(
                        "the pod {at} could not be scheduled within {}s (`poll_timeout`): {s}\n  cause: no node has room \
                         for it or matches its node_selector and tolerations\n  fix: free or add capacity, lower its \
                         requests, correct `node_selector`/`node_tolerations`, or raise `poll_timeout` in \
                         [runners.kubernetes]",
                        timeout.as_secs()
                    ),
                    None => format!(
                        "the pod {at} did not start within {}s (`poll_timeout`); last state: {}\n  fix: see the reasons \
                         above; raise `poll_timeout` in [runners.kubernetes] if the cluster is just slow",
                        timeout.as_secs(),
                        if reasons.is_empty() {
                            "Pending".to_owned()
                        } else {
                            reasons.join("; ")
                        }
                    ),
                };
                return Err(ExecutorError::system(message));
            }
            if now >= next_print {
                let phase = state
                    .pod
                    .as_ref()
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Pending".to_owned());
                format::line(
                    trace,
                    &format!("Waiting for pod {at} to be running, status is {phase}"),
                );
                for r in diagnose::pending_reasons(&state) {
                    format::line(trace, &format!("\t{r}"));
                }
                if show_warnings {
                    let new =
                        usize::try_from(state.warnings_seen.saturating_sub(self.warnings_shown))
                            .unwrap_or(usize::MAX)
                            .min(state.warnings.len());
                    for w in diagnose::warning_lines(&state, state.warnings.len() - new) {
                        format::warning(trace, &w);
                    }
                    self.warnings_shown = state.warnings_seen;
                }
                next_print = now + interval;
            }
            tokio::select! {
                changed = self.sub.rx.changed() => {
                    if changed.is_err() {
                        return Err(ExecutorError::system("the pod watch stopped; glrunner is shutting down"));
                    }
                }
                () = tokio::time::sleep_until(next_print.min(deadline)) => {}
                () = cancel.cancelled() => {
                    return Err(ExecutorError::system("canceled while waiting for the pod"));
                }
            }
        }
    }

    /// The pod's state, ignoring what is left of an earlier pod of the same name.
    fn current(&self, uid: &str) -> PodState {
        let s = self.sub.rx.borrow().clone();
        let ours = s
            .pod
            .as_ref()
            .and_then(|p| p.metadata.uid.as_deref())
            .is_none_or(|u| u == uid);
        if ours {
            s
        } else {
            PodState {
                pod: None,
                deleted: false,
                ..s
            }
        }
    }

    /// Make the pod the owner of the job's Secrets (so they go with it).
    async fn own_objects(&mut self, trace: &Trace) {
        let Some(uid) = self.pod_uid.clone() else {
            return;
        };
        let owner = pod::owner_reference(&self.plan.name, &uid);
        let mut all = true;
        for i in 0..self.secrets.len() {
            let mut s = self.secrets[i].clone();
            s.metadata.owner_references = Some(vec![owner.clone()]);
            match self.kube().replace(self.ns(), &s).await {
                Ok(updated) => self.secrets[i] = updated,
                Err(e) => {
                    all = false;
                    tracing::warn!(pod = %self.plan.name, "the pod could not be made the owner of its Secret: {e}");
                    format::warning(
                        trace,
                        &format!(
                            "the job's Secret {} could not be tied to its pod ({e}); it is deleted when the job ends",
                            s.metadata.name.as_deref().unwrap_or_default()
                        ),
                    );
                }
            }
        }
        self.owned = all;
        self.plan.set_owner(&uid);
    }

    async fn create_services(&mut self) -> Result<(), ExecutorError> {
        for s in self.plan.services.clone() {
            let created: Service = self
                .kube()
                .create(self.ns(), &s)
                .await
                .map_err(kube_error)?;
            self.services
                .push(created.metadata.name.unwrap_or_default());
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------ session

    async fn open_session(&mut self) -> Result<(), ExecutorError> {
        self.connect_logs(false).await?;
        let text = launcher::script(&self.plan.scripts_dir, &self.plan.log_file());
        self.send_file(launcher::LAUNCHER, text.as_bytes(), None, None)
            .await
    }

    fn read_logs_command(&self) -> Vec<String> {
        vec![
            self.cluster.helper_program.clone(),
            "helper".to_owned(),
            "read-logs".to_owned(),
            "--path".to_owned(),
            self.plan.log_file(),
            "--offset".to_owned(),
            self.session.stream.offset().to_string(),
            "--files-dir".to_owned(),
            self.plan.scripts_dir.clone(),
        ]
    }

    /// Open the log stream (again: `after_drop`, after checking the pod). Connections that end
    /// before delivering anything count as failures: after [`RECONNECT_WINDOW`] of them in a row the
    /// stream is given up.
    async fn connect_logs(&mut self, after_drop: bool) -> Result<(), ExecutorError> {
        self.session.logs = None;
        if after_drop {
            if self.session.logs_spoke {
                self.session.log_failures = 0;
                self.session.failing_since = None;
            } else {
                self.session.log_failures += 1;
            }
        }
        loop {
            let since = match self.session.log_failures {
                0 => None,
                _ => Some(*self.session.failing_since.get_or_insert_with(Instant::now)),
            };
            if since.is_some_and(|s| s.elapsed() > RECONNECT_WINDOW) {
                let error = ExecutorError::system(format!(
                    "the job log stream of pod {}/{} could not be kept open ({} tries in {}s): {}",
                    self.plan.namespace,
                    self.plan.name,
                    self.session.log_failures,
                    RECONNECT_WINDOW.as_secs(),
                    self.session.last_failure
                ));
                return Err(self.explain(error).await);
            }
            if after_drop {
                self.check_pod().await?;
            }
            if self.session.log_failures > 0 {
                let wait = retry_wait(self.session.log_failures).min(Duration::from_secs(3));
                tokio::time::sleep(wait).await;
            }
            let params = AttachParams::default()
                .container(HELPER_CONTAINER)
                .stdin(true)
                .stdout(true)
                .stderr(true);
            let command = self.read_logs_command();
            match self
                .kube()
                .exec(self.ns(), &self.plan.name, &command, &params)
                .await
            {
                Ok(c) => {
                    let conn = Conn::start(c);
                    self.session.stream.reconnected();
                    self.session.stderr.clear();
                    self.session.logs_spoke = false;
                    for frame in self.session.unacked.values() {
                        send_chunked(&conn, frame).await;
                    }
                    self.session.logs = Some(conn);
                    if after_drop {
                        tracing::info!(pod = %self.plan.name, offset = self.session.stream.offset(), "the job log stream resumed");
                    }
                    return Ok(());
                }
                Err(e) if e.is_transport() => {
                    self.session.last_failure = e.to_string();
                    self.session.log_failures += 1;
                }
                Err(e) => return Err(self.explain(kube_error(e)).await),
            }
        }
    }

    /// Read the pod's real state; a failure there explains a broken connection better than the
    /// connection's own error.
    async fn check_pod(&mut self) -> Result<(), ExecutorError> {
        let mut state = self.sub.rx.borrow().clone();
        match self.kube().get_opt::<Pod>(self.ns(), &self.plan.name).await {
            Ok(Some(p)) => {
                state.pod = Some(Arc::new(p));
                state.deleted = false;
            }
            Ok(None) => state.deleted = true,
            Err(e) => tracing::debug!("reading the pod's state failed: {e}"),
        }
        match diagnose::failure(&state, &self.ctx) {
            Some(f) => Err(self.pod_error(f).await),
            None => Ok(()),
        }
    }

    /// The error for a pod failure; when a container exited, with its last output, which often says
    /// why (no shell, a failing entrypoint).
    async fn pod_error(&self, mut failure: PodFailure) -> ExecutorError {
        if let Some(c) = failure.exited.clone() {
            match self.kube().logs(self.ns(), &self.plan.name, &c, 20).await {
                Ok(out) if !out.trim().is_empty() => {
                    let shown: Vec<String> = out.lines().map(|l| format!("    {l}")).collect();
                    failure.message.push_str(&format!(
                        "\n  the {c} container's last output:\n{}",
                        shown.join("\n")
                    ));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("reading the {c} container's output failed: {e}"),
            }
        }
        pod_error(failure)
    }

    /// What to report for `error`: the pod's failure when it has one, or shows one within
    /// [`POD_SETTLE`] (a container killed with the pod is seen before the pod's status says why).
    async fn explain(&mut self, error: ExecutorError) -> ExecutorError {
        if let Err(e) = self.check_pod().await {
            return e;
        }
        let deadline = Instant::now() + POD_SETTLE;
        loop {
            let found = diagnose::failure(&self.sub.rx.borrow(), &self.ctx);
            if let Some(f) = found {
                return self.pod_error(f).await;
            }
            match tokio::time::timeout_at(deadline, self.sub.rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return error,
            }
        }
    }

    async fn attach(&mut self, container: &'static str) -> Result<(), ExecutorError> {
        let params = AttachParams::default()
            .container(container)
            .stdin(true)
            .stdout(false)
            .stderr(false);
        match self
            .kube()
            .attach(self.ns(), &self.plan.name, &params)
            .await
        {
            Ok(c) => {
                *self.session.attach_slot(container) = Some(Conn::start(c));
                Ok(())
            }
            Err(e) => Err(self.explain(kube_error(e)).await),
        }
    }

    fn attached(&mut self, container: &'static str) -> Option<&Conn> {
        self.session
            .attach_slot(container)
            .as_ref()
            .filter(|c| !c.is_closed())
    }

    /// Write `line` to `container`'s shell, attaching (again) when needed.
    async fn send_line(
        &mut self,
        container: &'static str,
        line: &str,
    ) -> Result<(), ExecutorError> {
        for _ in 0..2 {
            if self.attached(container).is_none() {
                self.attach(container).await?;
            }
            if let Some(c) = self.attached(container)
                && c.send(line.as_bytes()).await
            {
                return Ok(());
            }
            self.drop_attach(container);
        }
        let error = ExecutorError::system(format!(
            "a command could not be sent to the {container} container of pod {}/{}: its attach connection keeps closing",
            self.plan.namespace, self.plan.name
        ));
        Err(self.explain(error).await)
    }

    /// Send a file to the scripts directory and wait until it is written, passing log output on
    /// meanwhile.
    async fn send_file(
        &mut self,
        name: &str,
        data: &[u8],
        trace: Option<&Trace>,
        current: Option<&str>,
    ) -> Result<(), ExecutorError> {
        let mut frame = format!("write {name} {}\n", data.len()).into_bytes();
        frame.extend_from_slice(data);
        // Kept until acknowledged (a new exec sends it again), and sent from there without a copy.
        let session = &mut self.session;
        let frame = &*session
            .unacked
            .entry(name.to_owned())
            .insert_entry(frame)
            .into_mut();
        if let Some(c) = &session.logs
            && !send_chunked(c, frame).await
        {
            self.connect_logs(true).await?;
        }
        let deadline = Instant::now() + FILE_TIMEOUT;
        while self.session.unacked.contains_key(name) {
            match self.wake(None, deadline).await {
                Wake::Log(e) => {
                    self.on_log(e, trace, current).await?;
                }
                Wake::Pod => self.pod_failed().await?,
                Wake::AttachGone(_) | Wake::Cancel | Wake::Nothing => {}
                Wake::Timer => {
                    self.check_pod().await?;
                    return Err(ExecutorError::system(format!(
                        "the helper container did not confirm writing {name} within {}s; last from it: {}",
                        FILE_TIMEOUT.as_secs(),
                        self.diagnostics()
                    )));
                }
            }
        }
        Ok(())
    }

    fn diagnostics(&self) -> String {
        if self.session.diagnostics.is_empty() {
            "nothing".to_owned()
        } else {
            self.session.diagnostics.join(" / ")
        }
    }

    /// Whether the watched pod state shows a failure.
    async fn pod_failed(&self) -> Result<(), ExecutorError> {
        let found = diagnose::failure(&self.sub.rx.borrow(), &self.ctx);
        match found {
            Some(f) => Err(self.pod_error(f).await),
            None => Ok(()),
        }
    }

    /// Wait for whatever happens first.
    async fn wake(&mut self, cancel: Option<&CancellationToken>, until: Instant) -> Wake {
        let Session {
            logs,
            build,
            helper,
            ..
        } = &mut self.session;
        let rx = &mut self.sub.rx;
        async fn next(c: &mut Option<Conn>) -> Event {
            match c {
                // Until its Closed event was taken, even if its task already ended.
                Some(c) if !c.ended() => c.next().await,
                _ => std::future::pending().await,
            }
        }
        tokio::select! {
            e = next(logs) => Wake::Log(e),
            e = next(build) => match e {
                Event::Closed(_) => Wake::AttachGone(BUILD_CONTAINER),
                _ => Wake::Nothing,
            },
            e = next(helper) => match e {
                Event::Closed(_) => Wake::AttachGone(HELPER_CONTAINER),
                _ => Wake::Nothing,
            },
            changed = rx.changed() => {
                if changed.is_ok() { Wake::Pod } else { std::future::pending().await }
            }
            () = async {
                match cancel {
                    Some(c) => c.cancelled().await,
                    None => std::future::pending().await,
                }
            } => Wake::Cancel,
            () = tokio::time::sleep_until(until) => Wake::Timer,
        }
    }

    /// Handle a log stream event: output to the trace, acknowledgements, markers (returned), and a
    /// broken stream (opened again).
    async fn on_log(
        &mut self,
        e: Event,
        trace: Option<&Trace>,
        current: Option<&str>,
    ) -> Result<Vec<Item>, ExecutorError> {
        match e {
            Event::Stdout(bytes) => {
                self.session.logs_spoke = true;
                self.session.log_failures = 0;
                self.session.failing_since = None;
                let mut items = Vec::new();
                self.session
                    .stream
                    .feed(&bytes, &mut items)
                    .map_err(|e| ExecutorError::system(e.to_string()))?;
                let mut markers = Vec::new();
                for item in items {
                    match item {
                        Item::Output(b) => {
                            if let Some(t) = trace {
                                t.write(&b);
                            }
                        }
                        // Markers of other stages (a late end, a start sent twice) are not this one's.
                        Item::Started(ref s) | Item::Exited { script: ref s, .. }
                            if Some(s.as_str()) == current =>
                        {
                            markers.push(item)
                        }
                        _ => {}
                    }
                }
                Ok(markers)
            }
            Event::Stderr(bytes) => {
                self.session.logs_spoke = true;
                self.session.stderr.extend_from_slice(&bytes);
                while let Some(nl) = self.session.stderr.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.session.stderr.drain(..=nl).collect();
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    self.on_helper_line(&text)?;
                }
                Ok(Vec::new())
            }
            Event::Exit(status) => {
                self.session.logs = None;
                self.check_pod().await?;
                match status {
                    Err(s) if Event::exit_code(&s).is_some() => {
                        // read-logs itself ended: it cannot run here, or the log went away.
                        let code = Event::exit_code(&s).unwrap_or_default();
                        let fix = match code {
                            126 | 127 => format!(
                                "\n  cause: the helper image has no `{}` on its PATH\n  fix: use the glrunner image \
                                 as `helper_image` in [runners.kubernetes]",
                                self.cluster.helper_program
                            ),
                            _ => String::new(),
                        };
                        let error = ExecutorError::system(format!(
                            "`glrunner helper read-logs` in the helper container of pod {}/{} ended with exit code \
                             {code}: {}{fix}",
                            self.plan.namespace,
                            self.plan.name,
                            self.diagnostics()
                        ));
                        return Err(self.explain(error).await);
                    }
                    Err(s) => {
                        // The API server could not reach the container (the kubelet is unreachable, the
                        // container restarts…): try again.
                        let message = s.message.clone().unwrap_or_default();
                        tracing::info!(pod = %self.plan.name, "the job log stream failed ({message}); trying again");
                        self.session.last_failure = message;
                    }
                    Ok(()) => {}
                }
                self.connect_logs(true).await?;
                Ok(Vec::new())
            }
            Event::Closed(why) => {
                tracing::info!(pod = %self.plan.name, "the job log stream broke ({why}); resuming");
                self.session.last_failure = why;
                self.connect_logs(true).await?;
                Ok(Vec::new())
            }
        }
    }

    fn on_helper_line(&mut self, text: &str) -> Result<(), ExecutorError> {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
            && v.is_object()
        {
            if let Some(name) = v.get("wrote").and_then(|n| n.as_str()) {
                self.session.unacked.remove(name);
                return Ok(());
            }
            if let (Some(name), Some(err)) = (
                v.get("name").and_then(|n| n.as_str()),
                v.get("error").and_then(|n| n.as_str()),
            ) {
                return Err(ExecutorError::system(format!(
                    "the helper container could not write {name} into {}: {err}",
                    self.plan.scripts_dir
                )));
            }
        }
        if !text.is_empty() {
            self.session.diagnostics.push(text.to_owned());
            if self.session.diagnostics.len() > 5 {
                self.session.diagnostics.remove(0);
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------ stages

    async fn run_stage(
        &mut self,
        script: &StageScript,
        cancel: &CancellationToken,
        trace: &Trace,
    ) -> Result<StageExit, ExecutorError> {
        self.seq += 1;
        let id = format!("{:02}-{}", self.seq, file_safe(&script.stage));
        let path = launcher::script_path(&self.plan.scripts_dir, &id);
        let container = match script.container {
            Container::Build => BUILD_CONTAINER,
            Container::Helper => HELPER_CONTAINER,
        };
        if cancel.is_cancelled() {
            return Ok(StageExit::Canceled);
        }
        if self.session.logs.is_none() {
            self.connect_logs(true).await?;
        }
        self.send_file(&id, script.script.as_bytes(), Some(trace), Some(&path))
            .await?;
        let start = launcher::run_line(&self.plan.scripts_dir, &id);
        self.send_line(container, &start).await?;
        let mut started = false;
        let mut starts = 1u32;
        let mut resend_at = Instant::now() + START_TIMEOUT;
        loop {
            let until = if started {
                Instant::now() + Duration::from_secs(3600)
            } else {
                resend_at
            };
            match self.wake(Some(cancel), until).await {
                Wake::Log(e) => {
                    for m in self.on_log(e, Some(trace), Some(&path)).await? {
                        match m {
                            Item::Started(_) => {
                                started = true;
                                self.session.attach_failures = 0;
                            }
                            Item::Exited { code, .. } => return Ok(StageExit::Exited(code)),
                            Item::Output(_) => {}
                        }
                    }
                }
                Wake::AttachGone(c) => {
                    self.drop_attach(c);
                    if c == container && !started {
                        self.session.attach_failures += 1;
                        if self.session.attach_failures > MAX_STARTS {
                            let error = ExecutorError::system(format!(
                                "the attach connection to the {container} container of pod {}/{} keeps closing, so \
                                 stage {} cannot be started",
                                self.plan.namespace, self.plan.name, script.stage
                            ));
                            return Err(self.explain(error).await);
                        }
                        tokio::time::sleep(retry_wait(self.session.attach_failures)).await;
                        // The line may not have arrived; the launcher ignores it if it did.
                        self.send_line(container, &start).await?;
                    }
                }
                Wake::Pod => self.pod_failed().await?,
                Wake::Nothing => {}
                Wake::Cancel => return self.stop(&id, container, &path, trace).await,
                Wake::Timer => {
                    if started {
                        continue;
                    }
                    if starts >= MAX_STARTS {
                        let error = ExecutorError::system(format!(
                            "stage {} did not start in the {container} container of pod {}/{} after {starts} tries: \
                             its shell does not run the commands sent to it\n  cause: the image's entrypoint may \
                             not be a shell reading its input\n  fix: use an image with sh or bash, or set \
                             `entrypoint: [\"\"]` for it in .gitlab-ci.yml",
                            script.stage, self.plan.namespace, self.plan.name
                        ));
                        return Err(self.explain(error).await);
                    }
                    starts += 1;
                    self.send_line(container, &start).await?;
                    resend_at = Instant::now() + START_TIMEOUT * starts;
                }
            }
        }
    }

    fn drop_attach(&mut self, container: &str) {
        *self.session.attach_slot(container) = None;
    }

    /// Stop stage `id`: TERM to its process group, KILL after the grace period.
    async fn stop(
        &mut self,
        id: &str,
        container: &'static str,
        path: &str,
        trace: &Trace,
    ) -> Result<StageExit, ExecutorError> {
        let dir = self.plan.scripts_dir.clone();
        let mut killed = false;
        if let Err(e) = self
            .send_line(container, &launcher::stop_line(&dir, id, "TERM"))
            .await
        {
            format::warning(trace, &format!("the stage could not be told to stop: {e}"));
            return Ok(StageExit::Canceled);
        }
        let mut deadline = Instant::now() + self.cluster.stop_grace;
        loop {
            match self.wake(None, deadline).await {
                Wake::Log(e) => match self.on_log(e, Some(trace), Some(path)).await {
                    Ok(markers) => {
                        if markers.iter().any(|m| matches!(m, Item::Exited { .. })) {
                            return Ok(StageExit::Canceled);
                        }
                    }
                    // The pod is going away: nothing of the stage is left either.
                    Err(_) => return Ok(StageExit::Canceled),
                },
                Wake::AttachGone(c) => self.drop_attach(c),
                Wake::Pod => {
                    if self.pod_failed().await.is_err() {
                        return Ok(StageExit::Canceled);
                    }
                }
                Wake::Cancel | Wake::Nothing => {}
                Wake::Timer if !killed => {
                    killed = true;
                    let _ = self
                        .send_line(container, &launcher::stop_line(&dir, id, "KILL"))
                        .await;
                    deadline = Instant::now() + KILL_WAIT;
                }
                Wake::Timer => {
                    format::warning(
                        trace,
                        "the stage did not confirm that it stopped; deleting the pod ends it",
                    );
                    return Ok(StageExit::Canceled);
                }
            }
        }
    }

    // ------------------------------------------------------------------------------ cleanup

    async fn cleanup(mut self: Box<Self>, trace: &Trace) {
        if let Some(c) = &self.session.logs {
            c.close_stdin().await;
        }
        self.session = Session::default();
        let kube = self.kube().clone();
        let ns = self.plan.namespace.clone();
        let mut problems = Vec::new();
        if self.pod_uid.is_some() {
            let params = DeleteParams {
                grace_period_seconds: self
                    .cluster
                    .config
                    .cleanup_grace_period_seconds
                    .and_then(|s| u32::try_from(s).ok()),
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            if let Err(e) = kube.delete::<Pod>(&ns, &self.plan.name, &params).await {
                problems.push(e.to_string());
            }
        }
        if !self.owned {
            for s in &self.secrets {
                let name = s.metadata.name.clone().unwrap_or_default();
                if let Err(e) = kube
                    .delete::<Secret>(&ns, &name, &DeleteParams::default())
                    .await
                {
                    problems.push(e.to_string());
                }
            }
            for name in &self.services {
                if let Err(e) = kube
                    .delete::<Service>(&ns, name, &DeleteParams::default())
                    .await
                {
                    problems.push(e.to_string());
                }
            }
        }
        let pod_name = self.plan.name.clone();
        if self.namespace_created {
            if let Err(e) = kube.delete_namespace(&ns).await {
                problems.push(e.to_string());
            }
            // Nobody follows pods there any more.
            let cluster = self.cluster.clone();
            drop(self);
            cluster.watches.release(&ns);
        }
        for p in problems {
            tracing::warn!(pod = %pod_name, "cleaning up the job's objects: {p}");
            format::warning(
                trace,
                &format!("the job's objects could not all be deleted: {p}"),
            );
        }
    }
}
