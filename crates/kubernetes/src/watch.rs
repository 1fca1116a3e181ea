//! Pod state from watches, never from polling (design decision 6): one label-selected pod watch per
//! manager and namespace (LIST once, then WATCH from that resourceVersion, resuming after drops and
//! re-listing on 410 Gone), and one watch of Warning events, both shared by every job of the manager
//! and demultiplexed by pod name. A job subscribes before it creates its pod, so it sees everything
//! that happens to it; what it gets is the latest [`PodState`], through a `tokio::sync::watch`.

use crate::api::{Kube, Namespaced};
use crate::pod::LABEL_SYSTEM_ID;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, WatchEvent, WatchParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Warning events kept per pod (the latest ones).
const MAX_WARNINGS: usize = 20;
/// Pause before a watch that failed is opened again.
const RETRY_WAIT: Duration = Duration::from_secs(1);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// The longest a watch request stays open before it is renewed.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// A Warning event about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub reason: String,
    pub message: String,
    pub count: i32,
    /// The object it is about, as `fieldPath` says (`spec.containers{build}`), if any.
    pub field_path: String,
}

/// What is known about one pod.
#[derive(Debug, Clone, Default)]
pub struct PodState {
    /// The pod as last seen; `None` before it was seen.
    pub pod: Option<Arc<Pod>>,
    /// The pod was deleted (its last state stays in `pod`).
    pub deleted: bool,
    /// Warning events about it, oldest first.
    pub warnings: Vec<Warning>,
    /// Bumped on every new warning, so readers can tell which ones they printed.
    pub warnings_seen: u64,
}

type Subscribers = Mutex<HashMap<String, watch::Sender<PodState>>>;

/// The watches of one namespace.
struct Namespace {
    pods: Subscribers,
    stop: CancellationToken,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Every watch of one manager. Dropping it stops them.
pub struct Watches {
    kube: Kube,
    system_id: String,
    events: bool,
    namespaces: Mutex<HashMap<String, Arc<Namespace>>>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches")
            .field("system_id", &self.system_id)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// A job's view of its pod; dropping it unsubscribes.
pub struct Subscription {
    pub rx: watch::Receiver<PodState>,
    namespace: Weak<Namespace>,
    name: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(ns) = self.namespace.upgrade() {
            let mut subs = ns.pods.lock().unwrap_or_else(|e| e.into_inner());
            // Only this receiver (and the sender) left: forget the pod.
            if subs
                .get(&self.name)
                .is_some_and(|tx| tx.receiver_count() <= 1)
            {
                subs.remove(&self.name);
            }
        }
    }
}

impl Watches {
    /// Watches of the pods labelled with `system_id`; `events`: also follow Warning events.
    pub fn new(kube: Kube, system_id: &str, events: bool) -> Arc<Self> {
        Arc::new(Self {
            kube,
            system_id: crate::names::sanitize_label_value(system_id),
            events,
            namespaces: Mutex::new(HashMap::new()),
        })
    }

    /// The system ID (as a label value) of the pods followed.
    pub fn system_id(&self) -> &str {
        &self.system_id
    }

    /// Follow pod `name` in `namespace` (which need not exist yet).
    pub fn subscribe(&self, namespace: &str, name: &str) -> Subscription {
        let ns = self.namespace(namespace);
        let rx = {
            let mut subs = ns.pods.lock().unwrap_or_else(|e| e.into_inner());
            subs.entry(name.to_owned())
                .or_insert_with(|| watch::Sender::new(PodState::default()))
                .subscribe()
        };
        Subscription {
            rx,
            namespace: Arc::downgrade(&ns),
            name: name.to_owned(),
        }
    }

    /// Stop following `namespace` once nobody does (a job's own namespace, after the job).
    pub fn release(&self, namespace: &str) {
        let mut map = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        let unused = map.get(namespace).is_some_and(|ns| {
            ns.pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .all(|tx| tx.receiver_count() == 0)
        });
        if unused && let Some(ns) = map.remove(namespace) {
            ns.stop.cancel();
        }
    }

    /// Namespaces followed now.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn namespace(&self, namespace: &str) -> Arc<Namespace> {
        let mut map = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ns) = map.get(namespace) {
            return ns.clone();
        }
        let ns = Arc::new(Namespace {
            pods: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        });
        map.insert(namespace.to_owned(), ns.clone());
        let selector = format!("{LABEL_SYSTEM_ID}={}", self.system_id);
        tokio::spawn(follow_pods(
            self.kube.clone(),
            namespace.to_owned(),
            selector,
            Arc::downgrade(&ns),
            ns.stop.clone(),
        ));
        if self.events {
            tokio::spawn(follow_events(
                self.kube.clone(),
                namespace.to_owned(),
                Arc::downgrade(&ns),
                ns.stop.clone(),
            ));
        }
        ns
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for ns in self
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            ns.stop.cancel();
        }
    }
}

fn update(ns: &Weak<Namespace>, name: &str, f: impl FnOnce(&mut PodState)) -> bool {
    let Some(ns) = ns.upgrade() else {
        return false;
    };
    let subs = ns.pods.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = subs.get(name) {
        tx.send_modify(f);
    }
    true
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// Pods labelled with the manager's system ID: each one's latest state, and `deleted` for those that
/// went away (also while the watch was down).
async fn follow_pods(
    kube: Kube,
    namespace: String,
    selector: String,
    ns: Weak<Namespace>,
    stop: CancellationToken,
) {
    let listed = |items: Vec<Pod>| {
        let present: Vec<String> = items.iter().map(|p| pod_name(p).to_owned()).collect();
        for pod in items {
            let name = pod_name(&pod).to_owned();
            let pod = Arc::new(pod);
            if !update(&ns, &name, |s| {
                s.pod = Some(pod);
                s.deleted = false;
            }) {
                return false;
            }
        }
        // Pods that went away while the watch was down.
        if let Some(n) = ns.upgrade() {
            for (name, tx) in n.pods.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                if !present.contains(name) && tx.borrow().pod.is_some() {
                    tx.send_modify(|s| s.deleted = true);
                }
            }
        }
        true
    };
    let changed = |pod: Pod, deleted: bool| {
        let name = pod_name(&pod).to_owned();
        let pod = Arc::new(pod);
        update(&ns, &name, |s| {
            s.pod = Some(pod);
            s.deleted = deleted;
        })
    };
    let feed = Feed {
        what: "the job pods",
        impact: "",
        list: ListParams::default().labels(&selector),
        watch: WatchParams::default()
            .labels(&selector)
            .timeout(WATCH_TIMEOUT_SECS),
    };
    follow(kube, namespace, feed, stop, listed, changed).await;
}

/// Warning events about pods, from now on (a LIST gives the starting point).
async fn follow_events(
    kube: Kube,
    namespace: String,
    ns: Weak<Namespace>,
    stop: CancellationToken,
) {
    let fields = "involvedObject.kind=Pod,type=Warning";
    // Events of pods followed already (a job subscribes before it creates its pod).
    let listed = |items: Vec<Event>| items.iter().all(|ev| record_warning(&ns, ev));
    let changed = |ev: Event, deleted: bool| deleted || record_warning(&ns, &ev);
    let feed = Feed {
        what: "pod events",
        impact: " (pending pods are explained less)",
        list: ListParams::default().fields(fields),
        watch: WatchParams::default()
            .fields(fields)
            .timeout(WATCH_TIMEOUT_SECS),
    };
    follow(kube, namespace, feed, stop, listed, changed).await;
}

/// What one LIST-then-WATCH loop follows, and how its failures are logged.
struct Feed {
    what: &'static str,
    /// What is lost while it fails, for the warning.
    impact: &'static str,
    list: ListParams,
    watch: WatchParams,
}

/// LIST, then WATCH from its resourceVersion; again after a drop (from the last version seen) or
/// after 410 Gone (from a new LIST). `listed` gets a LIST's items, `changed` each object added,
/// modified (`false`) or deleted (`true`); either returning false (the namespace's watches are
/// dropped) ends it, as does `stop`.
async fn follow<K>(
    kube: Kube,
    namespace: String,
    feed: Feed,
    stop: CancellationToken,
    mut listed: impl FnMut(Vec<K>) -> bool,
    mut changed: impl FnMut(K, bool) -> bool,
) where
    K: Namespaced + Send + 'static,
{
    let Feed {
        what,
        impact,
        list,
        watch,
    } = feed;
    let mut version: Option<String> = None;
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let rv = match &version {
            Some(v) => v.clone(),
            None => {
                let result = tokio::select! {
                    () = stop.cancelled() => return,
                    r = kube.list::<K>(&namespace, &list) => r,
                };
                match result {
                    Ok(l) => {
                        if !listed(l.items) {
                            return;
                        }
                        l.metadata.resource_version.unwrap_or_default()
                    }
                    Err(e) => {
                        tracing::warn!(%namespace, "listing {what} failed{impact}: {e}");
                        if pause(&stop, &mut failures).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        version = Some(rv.clone());
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            s = kube.watch::<K>(&namespace, &watch, &rv) => s,
        };
        let mut stream = match stream {
            Ok(s) => {
                failures = 0;
                s.boxed()
            }
            Err(e) => {
                tracing::warn!(%namespace, "watching {what} failed{impact}: {e}");
                if e.code() == Some(410) {
                    version = None;
                }
                if pause(&stop, &mut failures).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                e = stream.next() => e,
            };
            let (obj, deleted) = match event {
                None => break,
                Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => (o, false),
                Some(Ok(WatchEvent::Deleted(o))) => (o, true),
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    version = Some(b.metadata.resource_version);
                    continue;
                }
                Some(Ok(WatchEvent::Error(status))) => {
                    if status.code == 410 {
                        version = None;
                    }
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(%namespace, "the watch of {what} broke: {e}");
                    break;
                }
            };
            version = obj.meta().resource_version.clone().or(version);
            if !changed(obj, deleted) {
                return;
            }
        }
    }
}

/// Add a Warning event to its pod's state; false when the watches are gone.
fn record_warning(ns: &Weak<Namespace>, ev: &Event) -> bool {
    let name = ev.involved_object.name.clone().unwrap_or_default();
    let warning = Warning {
        reason: ev.reason.clone().unwrap_or_default(),
        message: ev.message.clone().unwrap_or_default(),
        count: ev.count.unwrap_or(1),
        field_path: ev.involved_object.field_path.clone().unwrap_or_default(),
    };
    update(ns, &name, |s| {
        if s.warnings.contains(&warning) {
            return;
        }
        s.warnings
            .retain(|w| !(w.reason == warning.reason && w.message == warning.message));
        s.warnings.push(warning);
        if s.warnings.len() > MAX_WARNINGS {
            s.warnings.remove(0);
        }
        s.warnings_seen += 1;
    })
}

/// Wait before trying again (longer after each failure in a row, up to [`MAX_RETRY_WAIT`]); true
/// when told to stop meanwhile.
async fn pause(stop: &CancellationToken, failures: &mut u32) -> bool {
    let wait = (RETRY_WAIT * 2u32.pow((*failures).min(5))).min(MAX_RETRY_WAIT);
    *failures += 1;
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}
