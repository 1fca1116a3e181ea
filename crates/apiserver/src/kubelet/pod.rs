//! One pod on the node, from admission to deletion: volumes, image pulls with back-off, the
//! environment, init containers in order, then the containers; restarts by `restartPolicy` with
//! `CrashLoopBackOff`; `activeDeadlineSeconds`; eviction and OOM kills; graceful deletion
//! (SIGTERM, the grace period, SIGKILL) — and the status a kubelet posts at every step: phase,
//! conditions, container states with timestamps, restart counts, exit codes and reasons.

use super::container::{self, Exit, LaunchSpec, MountSpec, Process, StartError};
use super::env;
use super::events::{self, NORMAL, WARNING, container_path};
use super::image::{self, Image, PullError, Reference, Runtime};
use super::logfile::LogWriter;
use super::volume::{self, Prepared};
use super::{Shared, quantity, set_condition};
use crate::MutexExt as _;
use crate::store::{Store, now_rfc3339, str_at};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What the kubelet's dispatcher and the fault API tell a pod's worker.
pub(crate) enum Signal {
    /// The pod object changed (deletion started, deadline changed, labels, …).
    Updated(Value),
    /// The pod object is gone (forced deletion).
    Deleted,
    /// Something the pod waits for may have appeared (a secret, a config map), or the kubelet
    /// came back: try again now.
    Kick,
    OomKill(String, oneshot::Sender<Result<(), ()>>),
    Evict(oneshot::Sender<()>),
}

/// One start of a container, as `pods/log` reads it.
#[derive(Clone)]
pub(crate) struct LogInstance {
    pub writer: Arc<LogWriter>,
    /// True once this start has ended.
    pub finished: watch::Receiver<bool>,
}

/// What the stream handlers see of one container.
#[derive(Clone, Default)]
pub(crate) struct LiveContainer {
    pub process: Option<Arc<Process>>,
    pub env: Arc<Vec<(String, String)>>,
    pub working_dir: String,
    pub user: Option<(u32, u32)>,
    pub stdin_once: bool,
    /// The previous and the current start (oldest first).
    pub logs: Vec<LogInstance>,
}

/// What the stream handlers see of a pod on this node.
pub(crate) struct PodLive {
    containers: Mutex<BTreeMap<String, LiveContainer>>,
}

impl PodLive {
    pub fn container(&self, name: &str) -> Option<LiveContainer> {
        self.containers.locked().get(name).cloned()
    }

    pub fn running(&self, name: &str) -> Option<Arc<Process>> {
        self.running_container(name).map(|(_, process)| process)
    }

    /// The container and its process, while that runs.
    pub fn running_container(&self, name: &str) -> Option<(LiveContainer, Arc<Process>)> {
        let lc = self.container(name)?;
        let process = lc.process.clone().filter(|p| p.exit().is_none())?;
        Some((lc, process))
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut LiveContainer)) {
        let mut map = self.containers.locked();
        f(map.entry(name.to_owned()).or_default());
    }
}

#[derive(Debug, Clone)]
struct Terminated {
    exit_code: i32,
    reason: String,
    message: Option<String>,
    started_at: String,
    finished_at: String,
    container_id: String,
}

#[derive(Debug, Clone)]
enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated(Terminated),
}

/// One container of the pod (init containers first).
struct Slot {
    spec: Container,
    init: bool,
    /// An init container with `restartPolicy: Always` (a sidecar).
    sidecar: bool,
    reference: Option<Reference>,
    state: State,
    last: Option<Terminated>,
    restarts: i32,
    /// A start has been made at least once.
    created: bool,
    /// Finished for good (an init container that succeeded, or no restart coming).
    done: bool,
    /// Start again at this time (None: as soon as it is its turn).
    next_try: Option<Instant>,
    /// Switch the waiting reason to the back-off one at this time.
    notice_at: Option<(Instant, String, String)>,
    pull_backoff: Option<Duration>,
    crash_backoff: Option<Duration>,
    pulling: bool,
    container_id: String,
    image_shown: String,
    image_id: String,
    process: Option<Arc<Process>>,
    instance: u64,
    log_done: Option<watch::Sender<bool>>,
}

impl Slot {
    fn running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    fn field_path(&self) -> String {
        container_path(self.init, &self.spec.name)
    }
}

/// Why the pod ended, once it has.
#[derive(Debug, Clone)]
struct Terminal {
    phase: &'static str,
    reason: Option<String>,
    message: Option<String>,
}

struct Worker {
    s: Arc<Shared>,
    store: Arc<Store>,
    ns: String,
    name: String,
    uid: String,
    pod_json: Value,
    pod: Pod,
    dir: PathBuf,
    logs_dir: PathBuf,
    live: Arc<PodLive>,
    slots: Vec<Slot>,
    volumes: Option<BTreeMap<String, Prepared>>,
    volume_next: Option<Instant>,
    volume_backoff: Option<Duration>,
    sandbox_ready: bool,
    start_time: String,
    deadline: Option<Instant>,
    terminal: Option<Terminal>,
    disruption: Option<String>,
    deleting: Option<Duration>,
    pulls: JoinSet<(usize, Result<(), String>)>,
    exits: JoinSet<(usize, u64, Exit)>,
    /// Condition transition times (type → (status, time)).
    transitions: BTreeMap<String, (String, String)>,
    finished: bool,
}

/// Loop iterations a pod's worker makes at most (each waits for a signal, an exit or a timer).
const MAX_ITERATIONS: usize = 1_000_000;

/// Run one pod until it is deleted (or the kubelet stops).
pub(crate) async fn run(
    s: Arc<Shared>,
    store: Arc<Store>,
    pod_json: Value,
    rx: mpsc::Receiver<Signal>,
) {
    let uid = str_at(&pod_json, "/metadata/uid").to_owned();
    let Ok(pod) = serde_json::from_value::<Pod>(pod_json.clone()) else {
        forget(&s, &uid);
        return;
    };
    let ns = str_at(&pod_json, "/metadata/namespace").to_owned();
    let name = str_at(&pod_json, "/metadata/name").to_owned();
    let live = Arc::new(PodLive {
        containers: Mutex::new(BTreeMap::new()),
    });
    s.pods
        .locked()
        .insert((ns.clone(), name.clone()), live.clone());
    let mut slots = Vec::new();
    if let Some(spec) = pod.spec.as_ref() {
        for (init, list) in [
            (true, spec.init_containers.clone().unwrap_or_default()),
            (false, spec.containers.clone()),
        ] {
            for c in list {
                let image_text = c.image.clone().unwrap_or_default();
                slots.push(Slot {
                    sidecar: init && c.restart_policy.as_deref() == Some("Always"),
                    reference: Reference::parse(&image_text),
                    init,
                    state: State::Waiting {
                        reason: "ContainerCreating".to_owned(),
                        message: None,
                    },
                    last: None,
                    restarts: 0,
                    created: false,
                    done: false,
                    next_try: None,
                    notice_at: None,
                    pull_backoff: None,
                    crash_backoff: None,
                    pulling: false,
                    container_id: String::new(),
                    image_shown: image_text,
                    image_id: String::new(),
                    process: None,
                    instance: 0,
                    log_done: None,
                    spec: c,
                });
            }
        }
    }
    let has_init = slots.iter().any(|sl| sl.init);
    for sl in slots.iter_mut().filter(|sl| !sl.init && has_init) {
        sl.state = State::Waiting {
            reason: "PodInitializing".to_owned(),
            message: None,
        };
    }
    let mut w = Worker {
        dir: s.root.join("pods").join(&uid),
        logs_dir: s.root.join("logs").join(format!("{ns}_{name}_{uid}")),
        s: s.clone(),
        store,
        ns,
        name,
        uid: uid.clone(),
        pod_json,
        pod,
        live,
        slots,
        volumes: None,
        volume_next: None,
        volume_backoff: None,
        sandbox_ready: false,
        start_time: now_rfc3339(0),
        deadline: None,
        terminal: None,
        disruption: None,
        deleting: None,
        pulls: JoinSet::new(),
        exits: JoinSet::new(),
        transitions: BTreeMap::new(),
        finished: false,
    };
    w.deadline = w.deadline_from_spec();
    w.on_updated();
    w.main(rx).await;
    w.cleanup();
    forget(&s, &uid);
}

fn forget(s: &Shared, uid: &str) {
    s.workers.locked().remove(uid);
}

impl Worker {
    fn recorder(&self) -> Option<&events::Recorder> {
        self.s.recorder.get()
    }

    fn event(&self, slot: Option<usize>, kind: &str, reason: &str, message: &str) {
        // A crashed kubelet records nothing.
        if !self.s.online() {
            return;
        }
        if let Some(r) = self.recorder() {
            let fp = slot.map(|i| self.slots[i].field_path());
            r.record(&self.pod_json, fp.as_deref(), kind, reason, message);
        }
    }

    fn deadline_from_spec(&self) -> Option<Instant> {
        let secs = self.pod.spec.as_ref()?.active_deadline_seconds?;
        Some(Instant::now() + Duration::from_secs(secs.max(0) as u64))
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    fn on_updated(&mut self) {
        let meta = &self.pod_json["metadata"];
        if meta.get("deletionTimestamp").is_some_and(|v| !v.is_null()) && self.deleting.is_none() {
            let grace = meta
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            self.deleting = Some(Duration::from_secs(grace.max(0) as u64));
        }
    }

    async fn main(&mut self, mut rx: mpsc::Receiver<Signal>) {
        self.publish();
        let mut shutdown = self.s.shutdown.subscribe();
        for _ in 0..MAX_ITERATIONS {
            if self.finished {
                return;
            }
            self.step().await;
            if self.finished {
                return;
            }
            self.publish();
            let wake = self.next_wake();
            tokio::select! {
                _ = shutdown.changed() => {
                    self.kill_all();
                    return;
                }
                sig = rx.recv() => match sig {
                    None => {
                        self.kill_all();
                        return;
                    }
                    Some(sig) => self.on_signal(sig).await,
                },
                Some(done) = self.pulls.join_next(), if !self.pulls.is_empty() => {
                    if let Ok((i, result)) = done {
                        self.on_pulled(i, result).await;
                    }
                }
                Some(done) = self.exits.join_next(), if !self.exits.is_empty() => {
                    if let Ok((i, instance, exit)) = done {
                        self.on_exit(i, instance, exit);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        tracing::warn!(pod = %self.name, "pod worker reached its iteration bound; stopping the pod");
        self.kill_all();
    }

    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + Duration::from_secs(60);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t
                && t < wake
            {
                wake = t;
            }
        };
        if self.terminal.is_none() {
            consider(self.deadline);
            if self.volumes.is_none() {
                consider(self.volume_next);
            }
            for sl in &self.slots {
                consider(sl.next_try);
                consider(sl.notice_at.as_ref().map(|(t, _, _)| *t));
            }
        }
        wake
    }

    async fn on_signal(&mut self, sig: Signal) {
        match sig {
            Signal::Updated(obj) => {
                if let Ok(p) = serde_json::from_value::<Pod>(obj.clone()) {
                    let old_deadline = self
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.active_deadline_seconds);
                    self.pod = p;
                    self.pod_json = obj;
                    let new_deadline = self
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.active_deadline_seconds);
                    if old_deadline != new_deadline {
                        self.deadline = self.deadline_from_spec();
                    }
                    self.on_updated();
                }
            }
            Signal::Deleted => {
                self.kill_all();
                self.finished = true;
            }
            Signal::Kick => {
                if self.volumes.is_none() {
                    self.volume_next = None;
                }
                for sl in &mut self.slots {
                    if let State::Waiting { reason, .. } = &sl.state
                        && reason == "CreateContainerConfigError"
                    {
                        sl.next_try = None;
                    }
                }
            }
            Signal::OomKill(name, reply) => {
                let found = self
                    .slots
                    .iter()
                    .find(|sl| sl.spec.name == name)
                    .and_then(|sl| sl.process.clone())
                    .filter(|p| p.exit().is_none());
                match found {
                    Some(p) => {
                        p.oom_kill();
                        let _ = reply.send(Ok(()));
                    }
                    None => {
                        let _ = reply.send(Err(()));
                    }
                }
            }
            Signal::Evict(reply) => {
                self.evict().await;
                let _ = reply.send(());
            }
        }
    }

    // ------------------------------------------------------------------------- the sync step

    async fn step(&mut self) {
        if let Some(grace) = self.deleting {
            self.terminate(grace, None).await;
            self.publish();
            if let Err(e) = self.store.finish_pod_deletion(&self.ns, &self.name) {
                tracing::debug!(pod = %self.name, error = %e, "finishing the deletion");
            }
            self.finished = true;
            return;
        }
        if self.terminal.is_some() {
            return;
        }
        let now = Instant::now();
        if self.deadline.is_some_and(|d| now >= d) {
            let message = "Pod was active on the node longer than the specified deadline";
            self.event(None, WARNING, "DeadlineExceeded", message);
            let grace = self.grace_period();
            self.terminal = Some(Terminal {
                phase: "Failed",
                reason: Some("DeadlineExceeded".to_owned()),
                message: Some(message.to_owned()),
            });
            self.terminate(grace, None).await;
            return;
        }
        for i in 0..self.slots.len() {
            let due = self.slots[i]
                .notice_at
                .as_ref()
                .is_some_and(|(t, _, _)| *t <= now);
            if due && let Some((_, reason, message)) = self.slots[i].notice_at.take() {
                let kind = if reason == "ImagePullBackOff" {
                    NORMAL
                } else {
                    WARNING
                };
                let event_message = if reason == "ImagePullBackOff" {
                    message.clone()
                } else {
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        self.slots[i].spec.name, self.name, self.ns, self.uid
                    )
                };
                self.event(Some(i), kind, "BackOff", &event_message);
                if reason == "ImagePullBackOff" {
                    self.event(Some(i), WARNING, "Failed", "Error: ImagePullBackOff");
                }
                self.slots[i].state = State::Waiting {
                    reason,
                    message: Some(message),
                };
            }
        }
        if self.volumes.is_none() {
            if self.volume_next.is_some_and(|t| t > now) {
                return;
            }
            if !self.setup_volumes() {
                return;
            }
        }
        self.sandbox_ready = true;
        // Init containers one at a time, in order.
        if let Some(i) = self
            .slots
            .iter()
            .position(|sl| sl.init && !sl.done && !(sl.sidecar && sl.running()))
        {
            if !self.slots[i].running() && !self.slots[i].pulling && self.due(i, now) {
                self.attempt(i).await;
            }
            return;
        }
        for i in 0..self.slots.len() {
            let sl = &self.slots[i];
            if !sl.running() && !sl.done && !sl.pulling && self.due(i, now) {
                self.attempt(i).await;
            }
        }
        self.check_completion();
    }

    fn due(&self, i: usize, now: Instant) -> bool {
        self.slots[i].next_try.is_none_or(|t| t <= now)
    }

    fn grace_period(&self) -> Duration {
        let secs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    fn lookup(&self, plural: &str, name: &str) -> Option<Value> {
        self.store.get(plural, &self.ns, name)
    }

    fn setup_volumes(&mut self) -> bool {
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            self.event(
                None,
                WARNING,
                "FailedCreatePodSandBox",
                &format!(
                    "Failed to create pod sandbox: creating {}: {e}",
                    self.dir.display()
                ),
            );
            self.volume_next = Some(Instant::now() + self.s.options.sync_interval);
            return false;
        }
        let store = self.store.clone();
        let ns = self.ns.clone();
        let lookup = move |plural: &str, name: &str| store.get(plural, &ns, name);
        match volume::prepare(
            &self.dir,
            &self.pod,
            &self.pod_json,
            &lookup,
            &self.s.options.claims,
        ) {
            Ok(v) => {
                self.volumes = Some(v);
                self.volume_next = None;
                true
            }
            Err(failures) => {
                for (_, message) in &failures {
                    self.event(None, WARNING, "FailedMount", message);
                }
                let backoff = super::Backoff {
                    initial: self.s.options.sync_interval,
                    max: self.s.options.sync_interval * 16,
                }
                .next(self.volume_backoff);
                self.volume_backoff = Some(backoff);
                self.volume_next = Some(Instant::now() + backoff);
                false
            }
        }
    }

    /// Container `i` could not start: it waits with `reason` and is tried again after a sync.
    fn retry_later(&mut self, i: usize, reason: &str, message: String) {
        let sl = &mut self.slots[i];
        sl.state = State::Waiting {
            reason: reason.to_owned(),
            message: Some(message),
        };
        sl.next_try = Some(Instant::now() + self.s.options.sync_interval);
    }

    /// Pull (if needed), then create and start container `i`.
    async fn attempt(&mut self, i: usize) {
        let Some(reference) = self.slots[i].reference.clone() else {
            let image = self.slots[i].image_shown.clone();
            let message = format!(
                "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"
            );
            self.event(Some(i), WARNING, "InspectFailed", &message);
            self.event(Some(i), WARNING, "Failed", "Error: InvalidImageName");
            self.retry_later(i, "InvalidImageName", message);
            return;
        };
        let img = self.s.options.lookup_image(&reference).clone();
        let full = reference.full();
        let present = img.present || self.s.present.locked().contains(&full);
        let policy = self.slots[i]
            .spec
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".to_owned());
        let image_text = self.slots[i].image_shown.clone();
        let need_pull = match policy.as_str() {
            "Never" => {
                if !present {
                    let message = format!(
                        "Container image \"{image_text}\" is not present with pull policy of Never"
                    );
                    self.event(Some(i), WARNING, "ErrImageNeverPull", &message);
                    self.event(Some(i), WARNING, "Failed", "Error: ErrImageNeverPull");
                    self.retry_later(i, "ErrImageNeverPull", message);
                    return;
                }
                false
            }
            "Always" => true,
            _ => !present,
        };
        if !need_pull {
            self.event(
                Some(i),
                NORMAL,
                "Pulled",
                &format!("Container image \"{image_text}\" already present on machine"),
            );
            self.create(i, &reference, &img).await;
            return;
        }
        // Credentials from the pod's pull secrets, as the kubelet's keyring has them.
        let mut creds = Vec::new();
        let mut missing = Vec::new();
        for r in self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
        {
            match self.lookup("secrets", &r.name) {
                Some(sec) => creds.extend(image::credentials_in(&sec)),
                None => missing.push(r.name.clone()),
            }
        }
        if !missing.is_empty() {
            self.event(
                None,
                WARNING,
                "FailedToRetrieveImagePullSecret",
                &format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        self.slots[i].pulling = true;
        let pod_json = self.pod_json.clone();
        let fp = self.slots[i].field_path();
        let s = self.s.clone();
        self.pulls.spawn(async move {
            let r = pull(&s, &pod_json, &fp, &image_text, &reference, &img, &creds).await;
            (i, r)
        });
    }

    async fn on_pulled(&mut self, i: usize, result: Result<(), String>) {
        self.slots[i].pulling = false;
        if self.terminal.is_some() || self.deleting.is_some() {
            return;
        }
        match result {
            Ok(()) => {
                self.slots[i].pull_backoff = None;
                let Some(reference) = self.slots[i].reference.clone() else {
                    return;
                };
                self.s.present.locked().insert(reference.full());
                let img = self.s.options.lookup_image(&reference).clone();
                self.create(i, &reference, &img).await;
            }
            Err(message) => {
                self.event(Some(i), WARNING, "Failed", "Error: ErrImagePull");
                let image_text = self.slots[i].image_shown.clone();
                let backoff = self
                    .s
                    .options
                    .image_backoff
                    .next(self.slots[i].pull_backoff);
                let sl = &mut self.slots[i];
                sl.pull_backoff = Some(backoff);
                sl.state = State::Waiting {
                    reason: "ErrImagePull".to_owned(),
                    message: Some(message),
                };
                let now = Instant::now();
                sl.next_try = Some(now + backoff);
                sl.notice_at = Some((
                    now + self.s.options.sync_interval.min(backoff / 2),
                    "ImagePullBackOff".to_owned(),
                    format!("Back-off pulling image \"{image_text}\""),
                ));
            }
        }
    }

    /// Resolve the environment and mounts, then start the process.
    async fn create(&mut self, i: usize, reference: &Reference, img: &Image) {
        self.slots[i].image_shown = reference.full();
        self.slots[i].image_id = reference.image_id();
        let spec = self.slots[i].spec.clone();
        let resolved = {
            let store = self.store.clone();
            let ns = self.ns.clone();
            let lookup = move |plural: &str, name: &str| store.get(plural, &ns, name);
            let node = &self.s.options.node;
            let service_env = self.s.service_env();
            let ctx = env::Context {
                pod_json: &self.pod_json,
                pod: &self.pod,
                image_env: &img.env,
                service_env: &service_env,
                lookup: &lookup,
                node_cpu: &node.cpu,
                node_memory: &node.memory,
            };
            env::resolve(&ctx, &spec)
        };
        let environment = match resolved {
            Ok(e) => e,
            Err(message) => {
                self.event(Some(i), WARNING, "Failed", &format!("Error: {message}"));
                self.retry_later(i, "CreateContainerConfigError", message);
                return;
            }
        };
        let restart = self.slots[i].restarts + if self.slots[i].created { 1 } else { 0 };
        let log = match LogWriter::create(
            &self
                .logs_dir
                .join(&spec.name)
                .join(format!("{restart}.log")),
        ) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                self.start_failed(i, format!("creating the container log: {e}"));
                return;
            }
        };
        let argv = env::argv(&spec, &img.entrypoint, &img.cmd, &environment);
        let working_dir = spec
            .working_dir
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| img.working_dir.clone());
        let mounts = match self.mounts(&spec, img) {
            Ok(m) => m,
            Err(message) => {
                self.start_failed(i, message);
                return;
            }
        };
        let user = self.user(&spec);
        let memory_limit = spec
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .and_then(|q| quantity::whole_units(&q.0));
        let env_pairs = environment.pairs();
        let tools = match self.s.tools() {
            Ok(t) => t.clone(),
            Err(why) => {
                self.start_failed(i, why);
                return;
            }
        };
        if argv.is_empty() {
            self.start_failed(i, "no command specified".to_owned());
            return;
        }
        let launch = LaunchSpec {
            dir: self
                .dir
                .join("containers")
                .join(&spec.name)
                .join(restart.to_string()),
            hide: vec![self.s.root.clone()],
            hostname: self.name.clone(),
            mounts,
            argv,
            env: env_pairs.clone(),
            working_dir: working_dir.clone(),
            stdin: spec.stdin == Some(true),
            user,
            log: log.clone(),
            memory_limit,
            memory_poll: self.s.options.memory_poll,
        };
        let id = format!(
            "containerd://{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        match container::launch(&tools, launch, &self.s.launching).await {
            Ok(process) => {
                {
                    let mut all = self.s.containers.locked();
                    all.retain(|w| w.strong_count() > 0);
                    all.push(Arc::downgrade(&process));
                }
                self.event(
                    Some(i),
                    NORMAL,
                    "Created",
                    &format!("Created container: {}", spec.name),
                );
                self.event(
                    Some(i),
                    NORMAL,
                    "Started",
                    &format!("Started container {}", spec.name),
                );
                let (done_tx, done_rx) = watch::channel(false);
                let instance = LogInstance {
                    writer: log,
                    finished: done_rx,
                };
                let stdin_once = spec.stdin_once == Some(true);
                self.live.update(&spec.name, |lc| {
                    lc.process = Some(process.clone());
                    lc.env = Arc::new(env_pairs);
                    lc.working_dir = working_dir;
                    lc.user = user;
                    lc.stdin_once = stdin_once;
                    lc.logs.push(instance);
                    if lc.logs.len() > 2 {
                        lc.logs.remove(0);
                    }
                });
                let sl = &mut self.slots[i];
                if sl.created {
                    sl.restarts += 1;
                }
                sl.created = true;
                sl.instance += 1;
                sl.container_id = id;
                sl.state = State::Running {
                    started_at: now_rfc3339(0),
                };
                sl.next_try = None;
                sl.notice_at = None;
                sl.process = Some(process.clone());
                sl.log_done = Some(done_tx);
                let instance = sl.instance;
                self.exits
                    .spawn(async move { (i, instance, process.wait().await) });
            }
            Err(StartError(message)) => self.start_failed(i, message),
        }
    }

    fn start_failed(&mut self, i: usize, message: String) {
        let message = format!(
            "failed to create containerd task: failed to start the container process: {message}"
        );
        self.event(Some(i), WARNING, "Failed", &format!("Error: {message}"));
        let now = now_rfc3339(0);
        let sl = &mut self.slots[i];
        if sl.created {
            sl.restarts += 1;
        }
        sl.created = true;
        let t = Terminated {
            exit_code: 128,
            reason: "StartError".to_owned(),
            message: Some(message),
            started_at: now.clone(),
            finished_at: now,
            container_id: String::new(),
        };
        self.after_exit(i, t);
    }

    fn mounts(&self, spec: &Container, img: &Image) -> Result<Vec<MountSpec>, String> {
        let mut out = Vec::new();
        let volumes = self.volumes.clone().unwrap_or_default();
        for vm in spec.volume_mounts.iter().flatten() {
            let Some(v) = volumes.get(&vm.name) else {
                return Err(format!("volume {:?} is not defined in the pod", vm.name));
            };
            let mut source = v.path.clone();
            if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if sub.split('/').any(|c| c == "..") {
                    return Err(format!("subPath {sub:?} must not contain '..'"));
                }
                source = source.join(sub);
                if !source.exists() {
                    std::fs::create_dir_all(&source)
                        .map_err(|e| format!("creating subPath {}: {e}", source.display()))?;
                }
            }
            out.push(MountSpec {
                file: v.file || source.is_file(),
                source,
                target: vm.mount_path.clone(),
                read_only: vm.read_only == Some(true) || v.read_only,
            });
        }
        let hosts = self.dir.join("etc-hosts");
        std::fs::write(&hosts, self.hosts_file())
            .map_err(|e| format!("writing {}: {e}", hosts.display()))?;
        out.push(MountSpec {
            source: hosts,
            target: "/etc/hosts".to_owned(),
            read_only: false,
            file: true,
        });
        let hostname = self.dir.join("etc-hostname");
        std::fs::write(&hostname, format!("{}\n", self.name))
            .map_err(|e| format!("writing {}: {e}", hostname.display()))?;
        out.push(MountSpec {
            source: hostname,
            target: "/etc/hostname".to_owned(),
            read_only: false,
            file: true,
        });
        if let Runtime::Glrunner(bin) = &img.runtime {
            out.push(MountSpec {
                source: bin.clone(),
                target: "/usr/local/bin/glrunner".to_owned(),
                read_only: true,
                file: true,
            });
        }
        Ok(out)
    }

    /// The kubelet-managed `/etc/hosts`, with the pod's `hostAliases`.
    fn hosts_file(&self) -> String {
        let mut s = format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n127.0.0.1\t{}\n",
            self.name
        );
        let aliases = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_aliases.clone())
            .unwrap_or_default();
        if !aliases.is_empty() {
            s.push_str("\n# Entries added by HostAliases.\n");
            for a in aliases {
                s.push_str(&format!(
                    "{}\t{}\n",
                    a.ip,
                    a.hostnames.unwrap_or_default().join("\t")
                ));
            }
        }
        s
    }

    fn user(&self, spec: &Container) -> Option<(u32, u32)> {
        let pod_ctx = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref());
        let c_ctx = spec.security_context.as_ref();
        let uid = c_ctx
            .and_then(|c| c.run_as_user)
            .or_else(|| pod_ctx.and_then(|p| p.run_as_user))?;
        let gid = c_ctx
            .and_then(|c| c.run_as_group)
            .or_else(|| pod_ctx.and_then(|p| p.run_as_group))
            .unwrap_or(0);
        Some((u32::try_from(uid).ok()?, u32::try_from(gid).ok()?))
    }

    fn on_exit(&mut self, i: usize, instance: u64, exit: Exit) {
        if self.slots[i].instance != instance || !self.slots[i].running() {
            return;
        }
        let started_at = match &self.slots[i].state {
            State::Running { started_at } => started_at.clone(),
            _ => now_rfc3339(0),
        };
        let reason = if exit.oom {
            "OOMKilled"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let t = Terminated {
            exit_code: exit.code,
            reason: reason.to_owned(),
            message: None,
            started_at,
            finished_at: exit.finished_at,
            container_id: self.slots[i].container_id.clone(),
        };
        let name = self.slots[i].spec.name.clone();
        self.live.update(&name, |lc| lc.process = None);
        if let Some(tx) = self.slots[i].log_done.take() {
            let _ = tx.send(true);
        }
        self.slots[i].process = None;
        self.after_exit(i, t);
    }

    /// Record a termination and decide on a restart.
    fn after_exit(&mut self, i: usize, t: Terminated) {
        let policy = self.restart_policy().to_owned();
        let ending = self.terminal.is_some() || self.deleting.is_some();
        let success = t.exit_code == 0;
        let sl = &mut self.slots[i];
        let restart = if ending {
            false
        } else if sl.init && !sl.sidecar {
            !success && policy != "Never"
        } else if sl.sidecar {
            true
        } else {
            match policy.as_str() {
                "Always" => true,
                "OnFailure" => !success,
                _ => false,
            }
        };
        if sl.init && !sl.sidecar && success {
            sl.done = true;
        }
        let previous = std::mem::replace(&mut sl.state, State::Terminated(t.clone()));
        if let State::Terminated(prev) = previous {
            sl.last = Some(prev);
        }
        if restart {
            let backoff = self.s.options.crash_backoff.next(sl.crash_backoff);
            sl.crash_backoff = Some(backoff);
            let now = Instant::now();
            sl.next_try = Some(now + backoff);
            sl.last = Some(t);
            sl.notice_at = Some((
                now + self.s.options.sync_interval.min(backoff / 2),
                "CrashLoopBackOff".to_owned(),
                format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    image::go_duration(backoff),
                    sl.spec.name,
                    self.name,
                    self.ns,
                    self.uid
                ),
            ));
        } else {
            sl.done = true;
            sl.next_try = None;
            sl.notice_at = None;
        }
        if sl.init && !sl.sidecar && !success && policy == "Never" && !ending {
            self.terminal = Some(Terminal {
                phase: "Failed",
                reason: None,
                message: None,
            });
        }
    }

    /// With `restartPolicy` Never/OnFailure, the pod ends once every container is done.
    fn check_completion(&mut self) {
        if self.terminal.is_some() {
            return;
        }
        let regular: Vec<&Slot> = self.slots.iter().filter(|s| !s.init).collect();
        if regular.is_empty() || !regular.iter().all(|s| s.done && !s.running()) {
            return;
        }
        let all_ok = regular
            .iter()
            .all(|s| matches!(&s.state, State::Terminated(t) if t.exit_code == 0));
        self.terminal = Some(Terminal {
            phase: if all_ok { "Succeeded" } else { "Failed" },
            reason: None,
            message: None,
        });
        self.stop_sidecars();
    }

    fn stop_sidecars(&mut self) {
        for sl in self.slots.iter().filter(|s| s.sidecar) {
            if let Some(p) = &sl.process {
                p.kill();
            }
        }
    }

    /// Stop every running container (SIGTERM, `grace`, SIGKILL) and record how they ended.
    async fn terminate(&mut self, grace: Duration, note: Option<&str>) {
        self.pulls.abort_all();
        for sl in &mut self.slots {
            sl.pulling = false;
        }
        let running: Vec<(usize, Arc<Process>)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, sl)| {
                sl.process
                    .clone()
                    .filter(|p| p.exit().is_none())
                    .map(|p| (i, p))
            })
            .collect();
        for (i, _) in &running {
            let msg = format!("Stopping container {}", self.slots[*i].spec.name);
            self.event(Some(*i), NORMAL, "Killing", note.unwrap_or(&msg));
        }
        let stops = running.iter().map(|(_, p)| p.stop(grace));
        futures_util::future::join_all(stops).await;
        // Every exit is in: record them (bounded: one per started container).
        while let Ok(Some(done)) =
            tokio::time::timeout(Duration::from_secs(5), self.exits.join_next()).await
        {
            if let Ok((i, instance, exit)) = done {
                self.on_exit(i, instance, exit);
            }
        }
        if self.terminal.is_none() {
            let all_ok = self
                .slots
                .iter()
                .filter(|s| !s.init)
                .all(|s| matches!(&s.state, State::Terminated(t) if t.exit_code == 0));
            self.terminal = Some(Terminal {
                phase: if all_ok { "Succeeded" } else { "Failed" },
                reason: None,
                message: None,
            });
        }
    }

    async fn evict(&mut self) {
        if self.terminal.is_some() {
            return;
        }
        let mut top: Option<(String, i64)> = None;
        for sl in &self.slots {
            if let Some(p) = sl.process.as_ref().filter(|p| p.exit().is_none()) {
                let used = p.resident_bytes();
                if top.as_ref().is_none_or(|(_, u)| used > *u) {
                    top = Some((sl.spec.name.clone(), used));
                }
            }
        }
        let mut message =
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 71Mi. "
                .to_owned();
        if let Some((name, used)) = top {
            message.push_str(&format!(
                "Container {name} was using {}Ki, request is 0, has larger consumption of memory. ",
                used / 1024
            ));
        }
        self.event(None, WARNING, "Evicted", &message);
        self.disruption = Some(message.clone());
        self.terminal = Some(Terminal {
            phase: "Failed",
            reason: Some("Evicted".to_owned()),
            message: Some(message),
        });
        self.terminate(Duration::ZERO, None).await;
        self.publish();
    }

    fn kill_all(&mut self) {
        for sl in &self.slots {
            if let Some(p) = &sl.process {
                p.kill();
            }
        }
    }

    fn cleanup(&mut self) {
        self.pulls.abort_all();
        self.kill_all();
        self.s
            .pods
            .locked()
            .remove(&(self.ns.clone(), self.name.clone()));
        // The namespaces are gone with their processes; only plain directories are left.
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.logs_dir);
    }

    // ------------------------------------------------------------------------------ status

    fn phase(&self) -> &'static str {
        if let Some(t) = &self.terminal {
            return t.phase;
        }
        let init_pending = self
            .slots
            .iter()
            .any(|s| s.init && !s.done && !(s.sidecar && s.running()));
        if init_pending {
            return "Pending";
        }
        let (mut running, mut stopped, mut succeeded, mut waiting) = (0, 0, 0, 0);
        for sl in self.slots.iter().filter(|s| !s.init) {
            match &sl.state {
                State::Running { .. } => running += 1,
                State::Terminated(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                State::Waiting { .. } if sl.last.is_some() => stopped += 1,
                State::Waiting { .. } => waiting += 1,
            }
        }
        if waiting > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped > 0 {
            match self.restart_policy() {
                "Always" => "Running",
                _ if stopped == succeeded => "Succeeded",
                "Never" => "Failed",
                _ => "Running",
            }
        } else {
            "Pending"
        }
    }

    fn container_status(&self, sl: &Slot) -> Value {
        let term = |t: &Terminated| {
            let mut v = json!({"exitCode": t.exit_code, "reason": t.reason,
                "startedAt": t.started_at, "finishedAt": t.finished_at});
            if let Some(m) = &t.message {
                v["message"] = json!(m);
            }
            if !t.container_id.is_empty() {
                v["containerID"] = json!(t.container_id);
            }
            json!({"terminated": v})
        };
        let state = match &sl.state {
            State::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated(t) => term(t),
        };
        let mut v = json!({
            "name": sl.spec.name,
            "state": state,
            "lastState": sl.last.as_ref().map(term).unwrap_or_else(|| json!({})),
            "ready": sl.running(),
            "restartCount": sl.restarts,
            "image": sl.image_shown,
            "imageID": sl.image_id,
            "started": sl.running(),
        });
        if !sl.container_id.is_empty() {
            v["containerID"] = json!(sl.container_id);
        }
        let mounts: Vec<Value> = sl
            .spec
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                let mut mv = json!({"name": m.name, "mountPath": m.mount_path});
                if m.read_only == Some(true) {
                    mv["readOnly"] = json!(true);
                    mv["recursiveReadOnly"] = json!("Disabled");
                }
                mv
            })
            .collect();
        if !mounts.is_empty() {
            v["volumeMounts"] = json!(mounts);
        }
        v
    }

    fn conditions(&mut self, phase: &str) -> Vec<(String, String, Option<String>, Option<String>)> {
        let names = |pred: &dyn Fn(&Slot) -> bool| -> Vec<String> {
            self.slots
                .iter()
                .filter(|s| pred(s))
                .map(|s| s.spec.name.clone())
                .collect()
        };
        let mut out = Vec::new();
        out.push((
            "PodReadyToStartContainers".to_owned(),
            if self.sandbox_ready && self.terminal.is_none() {
                "True"
            } else {
                "False"
            }
            .to_owned(),
            None,
            None,
        ));
        let incomplete = names(&|s| s.init && !s.done && !(s.sidecar && s.running()));
        if incomplete.is_empty() {
            out.push(("Initialized".to_owned(), "True".to_owned(), None, None));
        } else {
            out.push((
                "Initialized".to_owned(),
                "False".to_owned(),
                Some("ContainersNotInitialized".to_owned()),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            ));
        }
        let terminal = phase == "Succeeded" || phase == "Failed";
        let unready = names(&|s| !s.init && !s.running());
        let (status, reason, message) = if terminal {
            ("False", Some("PodCompleted".to_owned()), None)
        } else if unready.is_empty() {
            ("True", None, None)
        } else {
            (
                "False",
                Some("ContainersNotReady".to_owned()),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        };
        for kind in ["Ready", "ContainersReady"] {
            out.push((
                kind.to_owned(),
                status.to_owned(),
                reason.clone(),
                message.clone(),
            ));
        }
        if let Some(m) = &self.disruption {
            out.push((
                "DisruptionTarget".to_owned(),
                "True".to_owned(),
                Some("TerminationByKubelet".to_owned()),
                Some(m.clone()),
            ));
        }
        out
    }

    /// Post the pod's status (unless the kubelet is down).
    fn publish(&mut self) {
        if !self.s.online() {
            return;
        }
        let phase = self.phase();
        if (phase == "Succeeded" || phase == "Failed") && self.terminal.is_none() {
            self.terminal = Some(Terminal {
                phase,
                reason: None,
                message: None,
            });
        }
        let now = now_rfc3339(0);
        let conditions = self.conditions(phase);
        let init: Vec<Value> = self
            .slots
            .iter()
            .filter(|s| s.init)
            .map(|s| self.container_status(s))
            .collect();
        let regular: Vec<Value> = self
            .slots
            .iter()
            .filter(|s| !s.init)
            .map(|s| self.container_status(s))
            .collect();
        for (kind, status, _, _) in &conditions {
            let entry = self
                .transitions
                .entry(kind.clone())
                .or_insert_with(|| (status.clone(), now.clone()));
            if entry.0 != *status {
                *entry = (status.clone(), now.clone());
            }
        }
        let transitions = self.transitions.clone();
        let terminal = self.terminal.clone();
        let start_time = self.start_time.clone();
        let result = self.store.update_pod_status(&self.ns, &self.name, |st| {
            let mut holder = json!({"status": st.take()});
            for (kind, status, reason, message) in &conditions {
                let at = transitions
                    .get(kind)
                    .map(|(_, t)| t.as_str())
                    .unwrap_or(&now);
                set_condition(
                    &mut holder,
                    kind,
                    status,
                    reason.as_deref(),
                    message.as_deref(),
                    at,
                );
            }
            let mut status = holder["status"].take();
            status["phase"] = json!(phase);
            status["hostIP"] = json!("127.0.0.1");
            status["hostIPs"] = json!([{"ip": "127.0.0.1"}]);
            status["podIP"] = json!("127.0.0.1");
            status["podIPs"] = json!([{"ip": "127.0.0.1"}]);
            status["startTime"] = json!(start_time);
            status["containerStatuses"] = json!(regular);
            if init.is_empty() {
                if let Some(m) = status.as_object_mut() {
                    m.remove("initContainerStatuses");
                }
            } else {
                status["initContainerStatuses"] = json!(init);
            }
            if let Some(m) = status.as_object_mut() {
                match terminal.as_ref().and_then(|t| t.reason.clone()) {
                    Some(r) => {
                        m.insert("reason".into(), json!(r));
                    }
                    None => {
                        m.remove("reason");
                    }
                }
                match terminal.as_ref().and_then(|t| t.message.clone()) {
                    Some(msg) => {
                        m.insert("message".into(), json!(msg));
                    }
                    None => {
                        m.remove("message");
                    }
                }
            }
            *st = status;
        });
        if let Ok(obj) = result {
            // Events refer to the latest version of the pod.
            self.pod_json = obj;
        }
    }
}

/// Pull an image: events `Pulling`, then `Pulled` or `Failed`; the error text on failure.
async fn pull(
    s: &Shared,
    pod_json: &Value,
    field_path: &str,
    image_text: &str,
    reference: &Reference,
    img: &Image,
    creds: &[image::Credential],
) -> Result<(), String> {
    let record = |kind: &str, reason: &str, message: &str| {
        if let Some(r) = s.recorder.get().filter(|_| s.online()) {
            r.record(pod_json, Some(field_path), kind, reason, message);
        }
    };
    record(
        NORMAL,
        "Pulling",
        &format!("Pulling image \"{image_text}\""),
    );
    let started = std::time::Instant::now();
    if !img.pull_delay.is_zero() {
        tokio::time::sleep(img.pull_delay).await;
    }
    let failure = match img.failure {
        Some(image::PullFailure::NotFound) => Some(PullError::NotFound),
        Some(image::PullFailure::Unreachable) => Some(PullError::Unreachable),
        None => match &img.credentials {
            None => None,
            Some((user, pass)) => {
                let covering: Vec<&image::Credential> = creds
                    .iter()
                    .filter(|c| image::covers(&c.registry, reference))
                    .collect();
                if covering
                    .iter()
                    .any(|c| c.username == *user && c.password.expose() == pass.expose())
                {
                    None
                } else {
                    Some(PullError::Unauthorized {
                        with_credentials: !covering.is_empty(),
                    })
                }
            }
        },
    };
    match failure {
        Some(why) => {
            let message = image::pull_error(reference, why);
            record(
                WARNING,
                "Failed",
                &format!("Failed to pull image \"{image_text}\": {message}"),
            );
            Err(message)
        }
        None => {
            let took = image::go_duration(started.elapsed());
            record(
                NORMAL,
                "Pulled",
                &format!(
                    "Successfully pulled image \"{image_text}\" in {took} ({took} including waiting). Image size: {} bytes.",
                    img.size
                ),
            );
            Ok(())
        }
    }
}
