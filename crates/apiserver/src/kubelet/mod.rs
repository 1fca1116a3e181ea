//! The process kubelet: one fake node whose pods run as local processes.
//!
//! - a scheduler binds pods that fit the node (nodeSelector, required node affinity, taints and
//!   tolerations, CPU/memory/pod capacity, claims) and leaves the others `Pending` with
//!   `PodScheduled=False/Unschedulable` and a `FailedScheduling` event, trying again when the
//!   node or the pods on it change;
//! - per pod, a worker "pulls" images through an image table ([`Image`]: the host's binaries, the
//!   glrunner binary, or a failure), sets up volumes, resolves the environment, runs init
//!   containers in order and then the containers, each in its own mount namespace with every
//!   volume at its `mountPath`, and reports what a kubelet reports: container states with
//!   timestamps, restart counts and exit codes, waiting reasons (`ErrImagePull`,
//!   `ImagePullBackOff`, `CreateContainerConfigError`, `CrashLoopBackOff`), terminated reasons
//!   (`Completed`, `Error`, `OOMKilled`), phases, conditions and events;
//! - `pods/exec`, `pods/attach` and `pods/log` are served from those processes
//!   (`stream`);
//! - faults for tests: OOM-kill a container, evict a pod, drop the open streams, cut the API
//!   server's connection to the kubelet, crash the kubelet.
//!
//! Running containers needs root (mount namespaces, overlayfs); without it everything up to the
//! container start still happens and the start fails with a message saying so.
//!
//! Not modelled: PID and network namespaces (containers share the host's; pod IPs are
//! 127.0.0.1), CPU limits, probes (a running container is ready), lifecycle hooks, TTYs (resize
//! messages are accepted and ignored), service account token projection, port-forward, and
//! SPDY (kubectl uses websockets since 1.30). A missing command exits 127 (`env`'s answer)
//! rather than failing the start.

pub mod image;
pub mod node;

mod container;
mod env;
mod events;
pub(crate) mod logfile;
mod pod;
mod quantity;
mod scheduler;
mod volume;

pub(crate) use container::{ExecRequest, exec as exec_in};
pub use image::{Image, PullFailure, Runtime};
pub use node::{NodeConfig, Taint};

use crate::MutexExt as _;
use crate::error::StartError;
use crate::resource;
use crate::server::{ApiServer, Options};
use crate::status::ApiError;
use crate::store::{Change, ChangeType, Store, str_at};
use events::Recorder;
use k8s_openapi::api::core::v1::{Node, Pod};
use pod::{PodLive, Signal};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Exponential back-off: `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub(crate) fn next(&self, current: Option<Duration>) -> Duration {
        match current {
            None => self.initial,
            Some(d) => (d * 2).min(self.max),
        }
    }
}

/// How the kubelet behaves.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    pub node: NodeConfig,
    /// Image name → behaviour; a name without a tag covers every tag of that repository.
    pub images: Vec<(String, Image)>,
    /// Images not in the table.
    pub default_image: Image,
    /// PersistentVolumeClaims this node can mount (`namespace/claim` or `claim`) → directory.
    pub claims: BTreeMap<String, PathBuf>,
    /// Image pull back-off (the kubelet's: 10 s doubling to 5 min).
    pub image_backoff: Backoff,
    /// Restart back-off of crashed containers (10 s doubling to 5 min).
    pub crash_backoff: Backoff,
    /// How soon the kubelet syncs a pod again after an error it retries (missing volumes or
    /// configuration, `ImagePullBackOff` notices).
    pub sync_interval: Duration,
    /// How often memory limits are checked.
    pub memory_poll: Duration,
    /// Websocket subprotocols accepted for exec/attach, in the server's order (`v5.channel.k8s.io`
    /// and `v4.channel.k8s.io`; leave only v4 to test a client's fallback).
    pub stream_protocols: Vec<String>,
    /// Where pod directories and container logs go (default: a temporary directory).
    pub root_dir: Option<PathBuf>,
    /// Open exec/attach/log streams at most.
    pub max_streams: usize,
}

impl Default for KubeletOptions {
    fn default() -> Self {
        Self {
            node: NodeConfig::default(),
            images: Vec::new(),
            default_image: Image::host(),
            claims: BTreeMap::new(),
            image_backoff: Backoff {
                initial: Duration::from_secs(10),
                max: Duration::from_secs(300),
            },
            crash_backoff: Backoff {
                initial: Duration::from_secs(10),
                max: Duration::from_secs(300),
            },
            sync_interval: Duration::from_secs(2),
            memory_poll: Duration::from_millis(100),
            stream_protocols: vec![
                crate::stream::V5_PROTOCOL.to_owned(),
                crate::stream::V4_PROTOCOL.to_owned(),
            ],
            root_dir: None,
            max_streams: 256,
        }
    }
}

impl KubeletOptions {
    /// How `name` behaves (`registry.example.com/app:1.0`, or `alpine` for every tag).
    pub fn image(mut self, name: &str, image: Image) -> Self {
        self.images.retain(|(n, _)| n != name);
        self.images.push((name.to_owned(), image));
        self
    }

    /// A PersistentVolumeClaim (`claim` or `namespace/claim`) backed by `dir`.
    pub fn claim(mut self, claim: &str, dir: impl Into<PathBuf>) -> Self {
        self.claims.insert(claim.to_owned(), dir.into());
        self
    }

    /// Back-offs and retries in fractions of a second instead of the kubelet's ten seconds,
    /// so tests see `ImagePullBackOff`, `CrashLoopBackOff` and retries quickly.
    pub fn fast(mut self) -> Self {
        let quick = Backoff {
            initial: Duration::from_millis(400),
            max: Duration::from_secs(2),
        };
        self.image_backoff = quick;
        self.crash_backoff = quick;
        self.sync_interval = Duration::from_millis(200);
        self.memory_poll = Duration::from_millis(50);
        self
    }

    /// Accept only these websocket subprotocols for exec and attach.
    pub fn protocols(mut self, protocols: &[&str]) -> Self {
        self.stream_protocols = protocols.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// The behaviour of `image` (as written in a pod).
    pub(crate) fn lookup_image(&self, reference: &image::Reference) -> &Image {
        let full = reference.full();
        let repo = reference.repository();
        let exact = self.images.iter().find(|(name, _)| {
            image::Reference::parse(name).is_some_and(|r| {
                if r.tag.is_none() && r.digest.is_none() {
                    r.repository() == repo
                } else {
                    r.full() == full
                }
            })
        });
        exact.map_or(&self.default_image, |(_, i)| i)
    }
}

/// Why the kubelet could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(
        "could not create the kubelet's directory {path}: {source}; set KubeletOptions::root_dir to a writable directory"
    )]
    RootDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not register node {node}: {source}")]
    Register { node: String, source: ApiError },
    #[error("the kubelet is already running")]
    AlreadyStarted,
}

/// Why a fault could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(
        "pod {namespace}/{name} is not running on this node; check `kubectl -n {namespace} get pod {name} -o wide`"
    )]
    PodNotFound { namespace: String, name: String },
    #[error(
        "container {container:?} of pod {namespace}/{name} is not running; wait until its status shows it running"
    )]
    ContainerNotRunning {
        namespace: String,
        name: String,
        container: String,
    },
    #[error("the pod's worker has finished (the pod is terminating or gone)")]
    WorkerGone,
}

/// Why a cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Server(#[from] StartError),
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
}

/// A pod's key in the kubelet.
type PodKey = (String, String);

/// A running pod worker.
pub(crate) struct WorkerEntry {
    key: PodKey,
    tx: mpsc::Sender<Signal>,
    handle: JoinHandle<()>,
}

/// State shared by the kubelet's tasks and the stream handlers.
pub(crate) struct Shared {
    pub options: KubeletOptions,
    pub root: PathBuf,
    root_guard: Option<tempfile::TempDir>,
    /// The host programs, or why containers cannot run here.
    pub tools: OnceLock<Result<container::Tools, String>>,
    pub store: OnceLock<Arc<Store>>,
    pub recorder: OnceLock<Recorder>,
    scheduler_events: OnceLock<Recorder>,
    pub api_addr: OnceLock<Option<SocketAddr>>,
    /// Running pods (what exec, attach and logs see).
    pub pods: Mutex<HashMap<PodKey, Arc<PodLive>>>,
    /// Pod workers by pod uid.
    pub(crate) workers: Mutex<HashMap<String, WorkerEntry>>,
    /// Image references pulled on this node.
    pub present: Mutex<HashSet<String>>,
    /// Unschedulable pods (uid → (ns, name, message)).
    pending: Mutex<HashMap<String, (String, String, String)>>,
    /// False while crashed: no status is posted.
    online: AtomicBool,
    /// False while the API server cannot reach the kubelet.
    pub reachable: AtomicBool,
    /// Bumped to drop every open stream.
    pub drop_streams: watch::Sender<u64>,
    pub open_streams: AtomicUsize,
    pub stream_slots: Arc<tokio::sync::Semaphore>,
    pub(crate) shutdown: watch::Sender<bool>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// Every container started, to kill on shutdown.
    pub containers: Mutex<Vec<std::sync::Weak<container::Process>>>,
    /// Containers being set up.
    pub launching: container::Launching,
}

impl Shared {
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.get()
    }

    pub fn online(&self) -> bool {
        self.online.load(Ordering::SeqCst)
    }

    pub fn tools(&self) -> Result<&container::Tools, String> {
        match self.tools.get() {
            Some(Ok(t)) => Ok(t),
            Some(Err(e)) => Err(e.clone()),
            None => Err("the kubelet has not started".to_owned()),
        }
    }

    pub fn node_name(&self) -> &str {
        &self.options.node.name
    }

    pub fn live(&self, ns: &str, name: &str) -> Option<Arc<PodLive>> {
        self.pods
            .locked()
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The `KUBERNETES_SERVICE_*` variables pointing at this API server.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let Some(Some(addr)) = self.api_addr.get() else {
            return Vec::new();
        };
        let (host, port) = (addr.ip().to_string(), addr.port());
        vec![
            ("KUBERNETES_SERVICE_HOST".into(), host.clone()),
            ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
            ("KUBERNETES_PORT".into(), format!("tcp://{host}:{port}")),
            (
                format!("KUBERNETES_PORT_{port}_TCP"),
                format!("tcp://{host}:{port}"),
            ),
            (format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into()),
            (format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.to_string()),
            (format!("KUBERNETES_PORT_{port}_TCP_ADDR"), host),
        ]
    }

    async fn signal(
        &self,
        ns: &str,
        name: &str,
        make: impl FnOnce() -> Signal,
    ) -> Result<(), FaultError> {
        let tx = self
            .workers
            .locked()
            .values()
            .find(|w| w.key.0 == ns && w.key.1 == name)
            .map(|w| w.tx.clone());
        let Some(tx) = tx else {
            return Err(FaultError::PodNotFound {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            });
        };
        tx.send(make()).await.map_err(|_| FaultError::WorkerGone)
    }
}

/// The process kubelet. Cheap to clone; the last clone dropped kills every container.
#[derive(Clone)]
pub struct Kubelet {
    shared: Arc<Shared>,
    _life: Arc<Life>,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("node", &self.shared.node_name())
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

/// Ends the kubelet when the last [`Kubelet`] handle goes: stops its tasks and kills every
/// container (workers and stream handlers only hold [`Shared`]).
struct Life {
    shared: Arc<Shared>,
}

impl Drop for Life {
    fn drop(&mut self) {
        let s = &self.shared;
        s.shutdown.send_replace(true);
        if let Some(h) = s.dispatcher.locked().take() {
            h.abort();
        }
        let workers: Vec<JoinHandle<()>> =
            s.workers.locked().drain().map(|(_, w)| w.handle).collect();
        for h in workers {
            h.abort();
        }
        s.drop_streams.send_modify(|g| *g += 1);
        // Launching containers die with their process group; the set-up shell, the kubelet's own
        // child, cannot write once killed.
        container::kill_launching(&s.launching);
        let mut pids = Vec::new();
        for p in s.containers.locked().drain(..) {
            if let Some(p) = p.upgrade() {
                // The main process is the kubelet's child: it is reaped, not waited for here.
                pids.extend(p.pids().into_iter().filter(|pid| *pid != p.pid));
                p.kill();
            }
        }
        s.pods.locked().clear();
        // Nothing may write into the kubelet's directory once it is removed.
        container::wait_gone_blocking(&pids, Duration::from_secs(2));
        if s.root_guard.is_some() {
            let _ = std::fs::remove_dir_all(&s.root);
        }
    }
}

impl Kubelet {
    /// A kubelet that has not started yet (register its handlers, start the server, then
    /// [`Kubelet::start`] it; or use [`Cluster::start`]).
    pub fn new(options: KubeletOptions) -> Result<Self, KubeletError> {
        let (root, guard) = match &options.root_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| KubeletError::RootDir {
                    path: dir.clone(),
                    source,
                })?;
                (dir.clone(), None)
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("glrunner-kubelet-")
                    .tempdir()
                    .map_err(|source| KubeletError::RootDir {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (tmp.path().to_owned(), Some(tmp))
            }
        };
        let max_streams = options.max_streams.max(1);
        let shared = Arc::new(Shared {
            options,
            root,
            root_guard: guard,
            tools: OnceLock::new(),
            store: OnceLock::new(),
            recorder: OnceLock::new(),
            scheduler_events: OnceLock::new(),
            api_addr: OnceLock::new(),
            pods: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            present: Mutex::new(HashSet::new()),
            pending: Mutex::new(HashMap::new()),
            online: AtomicBool::new(true),
            reachable: AtomicBool::new(true),
            drop_streams: watch::Sender::new(0),
            open_streams: AtomicUsize::new(0),
            stream_slots: Arc::new(tokio::sync::Semaphore::new(max_streams)),
            shutdown: watch::Sender::new(false),
            dispatcher: Mutex::new(None),
            containers: Mutex::new(Vec::new()),
            launching: container::Launching::default(),
        });
        Ok(Self {
            _life: Arc::new(Life {
                shared: shared.clone(),
            }),
            shared,
        })
    }

    /// `options` with this kubelet serving `pods/log`, `pods/exec` and `pods/attach`.
    pub fn register(&self, options: Options) -> Options {
        let handler = Arc::new(crate::stream::Handler::new(self.shared.clone()));
        options
            .subresource_handler("pods", "log", handler.clone())
            .subresource_handler("pods", "exec", handler.clone())
            .subresource_handler("pods", "attach", handler.clone())
            .subresource_handler("pods", "portforward", handler)
    }

    /// Start: check that containers can run here, register the node, and begin scheduling and
    /// running pods. `api` is where pods reach the API server (`KUBERNETES_SERVICE_*`).
    pub async fn start(
        &self,
        store: Arc<Store>,
        api: Option<SocketAddr>,
    ) -> Result<(), KubeletError> {
        let s = &self.shared;
        if s.store.set(store.clone()).is_err() {
            return Err(KubeletError::AlreadyStarted);
        }
        let _ = s.api_addr.set(api);
        let tools = match container::Tools::find() {
            Ok(t) => match container::probe(&t, &s.root).await {
                Ok(()) => Ok(t),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &tools {
            tracing::warn!("containers cannot run on this node: {e}");
        }
        let _ = s.tools.set(tools);
        let _ = s
            .recorder
            .set(Recorder::new(store.clone(), "kubelet", s.node_name()));
        let _ = s
            .scheduler_events
            .set(Recorder::new(store.clone(), "default-scheduler", ""));
        node::register(&store, &s.options.node).map_err(|source| KubeletError::Register {
            node: s.options.node.name.clone(),
            source,
        })?;
        // Subscribe before reading what exists, so nothing falls in between.
        let rx = store.subscribe();
        let weak = Arc::downgrade(&self.shared);
        let shutdown = s.shutdown.subscribe();
        let handle = tokio::spawn(dispatch(weak, store, rx, shutdown));
        *s.dispatcher.locked() = Some(handle);
        Ok(())
    }

    /// `Ok` when containers run on this node; otherwise why not (not root, no overlayfs, …).
    pub fn containers_supported(&self) -> Result<(), String> {
        self.shared.tools().map(|_| ())
    }

    pub fn node_name(&self) -> &str {
        self.shared.node_name()
    }

    /// The kubelet's directory (pod volumes and container logs).
    pub fn root_dir(&self) -> &Path {
        &self.shared.root
    }

    fn process(&self, ns: &str, name: &str, container: &str) -> Option<Arc<container::Process>> {
        self.shared.live(ns, name)?.running(container)
    }

    /// Every process of a running container (its main process and whatever runs beside it,
    /// exec sessions included).
    pub fn container_pids(&self, ns: &str, name: &str, container: &str) -> Vec<u32> {
        self.process(ns, name, container)
            .map(|p| p.pids())
            .unwrap_or_default()
    }

    /// Wait until the running container ends; its exit code (`None`: it was not running).
    pub async fn wait_exit(&self, ns: &str, name: &str, container: &str) -> Option<i32> {
        let p = self.process(ns, name, container)?;
        Some(p.wait().await.code)
    }

    /// Kill a container as the kernel's OOM killer would (`OOMKilled`, exit code 137).
    pub async fn oom_kill(&self, ns: &str, name: &str, container: &str) -> Result<(), FaultError> {
        let (tx, rx) = oneshot::channel();
        let c = container.to_owned();
        self.shared
            .signal(ns, name, || Signal::OomKill(c, tx))
            .await?;
        rx.await.map_err(|_| FaultError::WorkerGone)?.map_err(|()| {
            FaultError::ContainerNotRunning {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                container: container.to_owned(),
            }
        })
    }

    /// Evict a pod for memory pressure (phase `Failed`, reason `Evicted`, `DisruptionTarget`).
    pub async fn evict(&self, ns: &str, name: &str) -> Result<(), FaultError> {
        let (tx, rx) = oneshot::channel();
        self.shared.signal(ns, name, || Signal::Evict(tx)).await?;
        rx.await.map_err(|_| FaultError::WorkerGone)
    }

    /// Drop every open exec, attach and log stream now (no status, no close frame); the
    /// processes behind them keep running. Returns how many were open.
    pub fn drop_streams(&self) -> usize {
        let n = self.shared.open_streams.load(Ordering::SeqCst);
        self.shared.drop_streams.send_modify(|g| *g += 1);
        n
    }

    /// Cut the API server's connection to the kubelet: open streams drop and new ones fail
    /// with `error dialing backend`, until [`Kubelet::reconnect`].
    pub fn disconnect(&self) -> usize {
        self.shared.reachable.store(false, Ordering::SeqCst);
        self.drop_streams()
    }

    pub fn reconnect(&self) {
        self.shared.reachable.store(true, Ordering::SeqCst);
    }

    /// Crash the kubelet: streams drop, new ones fail, no pod status is posted and the node
    /// turns `NotReady`; the containers keep running. [`Kubelet::recover`] brings it back.
    pub fn crash(&self) {
        self.shared.online.store(false, Ordering::SeqCst);
        self.disconnect();
        if let Some(store) = self.shared.store() {
            node::set_ready(store, self.node_name(), false);
        }
    }

    /// Restart a crashed kubelet: it posts every pod's current status again.
    pub fn recover(&self) {
        self.shared.online.store(true, Ordering::SeqCst);
        self.reconnect();
        if let Some(store) = self.shared.store() {
            node::set_ready(store, self.node_name(), true);
        }
        let senders: Vec<mpsc::Sender<Signal>> = self
            .shared
            .workers
            .locked()
            .values()
            .map(|w| w.tx.clone())
            .collect();
        for tx in senders {
            let _ = tx.try_send(Signal::Kick);
        }
    }
}

/// The API server with the process kubelet attached.
pub struct Cluster {
    // The kubelet goes first: its containers die before the server does.
    kubelet: Kubelet,
    server: ApiServer,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("kubelet", &self.kubelet)
            .finish()
    }
}

impl std::ops::Deref for Cluster {
    type Target = ApiServer;
    fn deref(&self) -> &ApiServer {
        &self.server
    }
}

impl Cluster {
    /// Start the API server with `options` and a kubelet with `kubelet` serving its pods.
    pub async fn start(options: Options, kubelet: KubeletOptions) -> Result<Self, ClusterError> {
        let k = Kubelet::new(kubelet)?;
        let server = ApiServer::start(k.register(options)).await?;
        k.start(server.store().clone(), Some(server.addr())).await?;
        Ok(Self { kubelet: k, server })
    }

    pub fn server(&self) -> &ApiServer {
        &self.server
    }

    pub fn kubelet(&self) -> &Kubelet {
        &self.kubelet
    }

    /// Kill every container, then stop the server.
    pub async fn shutdown(self) {
        let Self { kubelet, server } = self;
        drop(kubelet);
        server.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------- dispatch

async fn dispatch(
    weak: std::sync::Weak<Shared>,
    store: Arc<Store>,
    mut rx: broadcast::Receiver<Arc<Change>>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Some(s) = weak.upgrade() {
        resync(&s, &store);
    }
    // Bounded by the kubelet's life: it ends at shutdown or when the store goes.
    loop {
        let change = tokio::select! {
            _ = shutdown.changed() => break,
            c = rx.recv() => c,
        };
        let Some(s) = weak.upgrade() else { break };
        match change {
            Ok(c) => on_change(&s, &store, &c),
            Err(broadcast::error::RecvError::Lagged(_)) => resync(&s, &store),
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

fn resync(s: &Arc<Shared>, store: &Arc<Store>) {
    let Some(rt) = resource::by_plural("", "pods") else {
        return;
    };
    for pod in store.list(rt, None).0 {
        on_pod(s, store, &pod, false);
    }
}

fn on_change(s: &Arc<Shared>, store: &Arc<Store>, c: &Change) {
    match c.resource.plural {
        "pods" => on_pod(s, store, &c.object, c.change == ChangeType::Deleted),
        "nodes" if c.name == s.node_name() => {
            if c.change == ChangeType::Deleted {
                if let Err(e) = node::register(store, &s.options.node) {
                    tracing::warn!(error = %e, "could not re-register the node");
                }
            } else {
                retry_pending(s, store);
            }
        }
        "secrets" | "configmaps" => {
            let senders: Vec<mpsc::Sender<Signal>> = s
                .workers
                .locked()
                .values()
                .filter(|w| w.key.0 == c.namespace)
                .map(|w| w.tx.clone())
                .collect();
            for tx in senders {
                let _ = tx.try_send(Signal::Kick);
            }
        }
        _ => {}
    }
}

fn on_pod(s: &Arc<Shared>, store: &Arc<Store>, pod: &Value, deleted: bool) {
    let uid = str_at(pod, "/metadata/uid").to_owned();
    let ns = str_at(pod, "/metadata/namespace").to_owned();
    let name = str_at(pod, "/metadata/name").to_owned();
    if deleted {
        let worker = s.workers.locked().get(&uid).map(|w| w.tx.clone());
        if let Some(tx) = worker {
            let _ = tx.try_send(Signal::Deleted);
        }
        let was_pending = s.pending.locked().remove(&uid).is_some();
        if !was_pending {
            // Its resources are free again.
            retry_pending(s, store);
        }
        return;
    }
    let node = str_at(pod, "/spec/nodeName");
    if node == s.node_name() {
        s.pending.locked().remove(&uid);
        let existing = s.workers.locked().get(&uid).map(|w| w.tx.clone());
        match existing {
            Some(tx) => {
                let _ = tx.try_send(Signal::Updated(pod.clone()));
            }
            None => start_worker(s, store, pod, uid, ns, name),
        }
    } else if node.is_empty()
        && str_at(pod, "/spec/schedulerName") == "default-scheduler"
        && pod.pointer("/metadata/deletionTimestamp").is_none()
    {
        schedule(s, store, pod);
    }
}

fn start_worker(
    s: &Arc<Shared>,
    store: &Arc<Store>,
    pod: &Value,
    uid: String,
    ns: String,
    name: String,
) {
    let phase = str_at(pod, "/status/phase");
    if phase == "Succeeded" || phase == "Failed" {
        // Finished before this kubelet saw it; only its deletion is left to do.
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            let _ = store.finish_pod_deletion(&ns, &name);
        }
        return;
    }
    let mut workers = s.workers.locked();
    let capacity = s.options.node.pods as usize;
    if workers.len() >= capacity {
        drop(workers);
        reject(s, store, pod, capacity);
        return;
    }
    let (tx, rx) = mpsc::channel(64);
    // The worker removes its own entry when it ends; it needs this lock to do so, so the
    // entry is always in place first.
    let handle = tokio::spawn(pod::run(s.clone(), store.clone(), pod.clone(), rx));
    workers.insert(
        uid,
        WorkerEntry {
            key: (ns, name),
            tx,
            handle,
        },
    );
}

/// The kubelet's admission refusing a pod beyond its capacity.
fn reject(s: &Shared, store: &Store, pod: &Value, capacity: usize) {
    let ns = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let message = format!(
        "Node didn't have enough resource: pods, requested: 1, used: {capacity}, capacity: {capacity}"
    );
    let _ = store.update_pod_status(ns, name, |st| {
        st["phase"] = json!("Failed");
        st["reason"] = json!("OutOfpods");
        st["message"] = json!(message);
    });
    if let Some(r) = s.recorder.get() {
        r.record(pod, None, events::WARNING, "OutOfpods", &message);
    }
}

fn retry_pending(s: &Arc<Shared>, store: &Arc<Store>) {
    let pending: Vec<(String, String)> = s
        .pending
        .locked()
        .values()
        .map(|(ns, n, _)| (ns.clone(), n.clone()))
        .collect();
    for (ns, name) in pending {
        if let Some(pod) = store.get("pods", &ns, &name) {
            schedule(s, store, &pod);
        }
    }
}

fn schedule(s: &Arc<Shared>, store: &Arc<Store>, pod_json: &Value) {
    let Ok(pod) = serde_json::from_value::<Pod>(pod_json.clone()) else {
        return;
    };
    let uid = str_at(pod_json, "/metadata/uid").to_owned();
    let ns = str_at(pod_json, "/metadata/namespace").to_owned();
    let name = str_at(pod_json, "/metadata/name").to_owned();
    let Some(node) = store.get_as::<Node>("", s.node_name()) else {
        return;
    };
    let Some(pods_rt) = resource::by_plural("", "pods") else {
        return;
    };
    let mut used = scheduler::Requests::default();
    let mut count = 0;
    for p in store.list(pods_rt, None).0 {
        let phase = str_at(&p, "/status/phase");
        if str_at(&p, "/spec/nodeName") != s.node_name()
            || phase == "Succeeded"
            || phase == "Failed"
        {
            continue;
        }
        count += 1;
        if let Ok(typed) = serde_json::from_value::<Pod>(p)
            && let Some(spec) = typed.spec.as_ref()
        {
            used.add(scheduler::pod_requests(spec));
        }
    }
    let now = crate::store::now_rfc3339(0);
    match scheduler::check(&pod, &node, used, count, &s.options.claims) {
        Ok(()) => {
            let node_name = s.node_name().to_owned();
            let bound = store.mutate(pods_rt, &ns, &name, |p| {
                if str_at(p, "/spec/nodeName").is_empty() {
                    p["spec"]["nodeName"] = json!(node_name);
                    set_condition(p, "PodScheduled", "True", None, None, &now);
                }
            });
            s.pending.locked().remove(&uid);
            if let (Ok(obj), Some(r)) = (bound, s.scheduler_events.get()) {
                r.record(
                    &obj,
                    None,
                    events::NORMAL,
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{name} to {}", s.node_name()),
                );
            }
        }
        Err(message) => {
            let known = s.pending.locked().get(&uid).map(|(_, _, m)| m.clone());
            if known.as_deref() == Some(message.as_str()) {
                return;
            }
            let updated = store.update_pod_status(&ns, &name, |st| {
                let mut holder = json!({"status": st.take()});
                set_condition(
                    &mut holder,
                    "PodScheduled",
                    "False",
                    Some("Unschedulable"),
                    Some(&message),
                    &now,
                );
                *st = holder["status"].take();
            });
            if let (Ok(obj), Some(r)) = (updated, s.scheduler_events.get()) {
                r.record(&obj, None, events::WARNING, "FailedScheduling", &message);
            }
            s.pending.locked().insert(uid, (ns, name, message));
        }
    }
}

/// Set one pod condition, keeping its transition time when the status does not change.
pub(crate) fn set_condition(
    pod: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: &str,
) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conds = pod["status"]
        .as_object_mut()
        .map(|m| m.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conds)) = conds else {
        return;
    };
    let previous = conds
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    let transition = previous
        .and_then(|i| conds.get(i))
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let mut c = json!({"type": kind, "status": status, "lastProbeTime": null,
        "lastTransitionTime": transition});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match previous {
        Some(i) => conds[i] = c,
        None => conds.push(c),
    }
}
