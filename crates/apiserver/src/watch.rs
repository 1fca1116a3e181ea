//! Watch streams (`?watch=1`): newline-delimited `{"type","object"}` events with kube-apiserver's
//! resourceVersion semantics — unset or `0` starts with ADDED for every current object; `N` resumes
//! after N from the retained history, or answers one ERROR event with a 410 `Expired` Status when N
//! is older than it; `sendInitialEvents=true` ends the initial ADDED events with a BOOKMARK annotated
//! `k8s.io/initial-events-end: "true"`; `allowWatchBookmarks` adds periodic BOOKMARKs;
//! `timeoutSeconds` (bounded by the server's maximum) ends the stream. Label and field selectors turn
//! modifications that cross the selector into ADDED/DELETED, as the watch cache does.

use crate::request::{Query, RequestInfo};
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{Body, Response, Shared};
use crate::status::ApiError;
use crate::store::{Change, ChangeType, WatchStart};
use crate::table;
use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// The parameters of one watch.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// `None`: start with the current state.
    from: Option<u64>,
    send_initial_events: bool,
    allow_bookmarks: bool,
    timeout: Option<Duration>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Params {
    pub fn from_query(q: &Query, _info: &RequestInfo) -> Result<Self, ApiError> {
        let send_initial_events = q.flag("sendInitialEvents");
        let from = match q.get("resourceVersion") {
            None | Some("") | Some("0") => None,
            Some(_) if send_initial_events => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid resource version: {}",
                    crate::status::go_quote(rv)
                ))
            })?),
        };
        Ok(Self {
            from,
            send_initial_events,
            allow_bookmarks: q.flag("allowWatchBookmarks"),
            timeout: q
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs),
            labels: LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?,
        })
    }

    pub fn check(&self, rt: &ResourceType) -> Result<(), ApiError> {
        self.fields.check(rt)
    }

    fn matches(&self, rt: &ResourceType, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(rt, obj)
    }
}

/// One watch event, serialized from borrowed parts (`{"object":…,"type":…}`, the key order a JSON
/// map gives) so the object is not copied for each watcher.
#[derive(serde::Serialize)]
struct Event<'a> {
    object: &'a Value,
    #[serde(rename = "type")]
    kind: &'a str,
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&Event { object, kind }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}),
    )
}

/// Start a watch; the response streams until the timeout, the client leaves, or the server stops.
pub(crate) fn serve(
    shared: Arc<Shared>,
    rt: &'static ResourceType,
    namespace: Option<String>,
    params: Params,
    as_table: Option<Query>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = http::Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match shared.store.watch_from(params.from) {
        Err(e) => {
            // The watch cache answers a too-old resourceVersion inside the stream.
            let _ = tx.try_send(event_line("ERROR", &e.to_status()));
        }
        Ok((start, changes)) => {
            let w = Watcher {
                shared: shared.clone(),
                rt,
                namespace,
                params,
                as_table,
                tx,
            };
            tokio::spawn(w.run(start, changes));
        }
    }
    resp
}

struct Watcher {
    shared: Arc<Shared>,
    rt: &'static ResourceType,
    namespace: Option<String>,
    params: Params,
    as_table: Option<Query>,
    tx: mpsc::Sender<Bytes>,
}

impl Watcher {
    fn render<'a>(&self, obj: &'a Value) -> Cow<'a, Value> {
        match &self.as_table {
            Some(q) => Cow::Owned(table::watch_object(self.rt, obj, q)),
            None => Cow::Borrowed(obj),
        }
    }

    fn ours(&self, resource: &ResourceType, namespace: &str) -> bool {
        resource.plural == self.rt.plural
            && resource.group == self.rt.group
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
    }

    /// The event a change becomes for this watch, if any.
    fn translate(&self, c: &Change) -> Option<Bytes> {
        if !self.ours(c.resource, &c.namespace) {
            return None;
        }
        let now = self.params.matches(self.rt, &c.object);
        let kind = match c.change {
            ChangeType::Added | ChangeType::Deleted => now.then(|| c.change.as_watch_type())?,
            ChangeType::Modified => {
                let before = c
                    .previous
                    .as_ref()
                    .is_some_and(|p| self.params.matches(self.rt, p));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
        };
        Some(event_line(kind, &self.render(&c.object)))
    }

    async fn send(&self, b: Bytes) -> bool {
        self.tx.send(b).await.is_ok()
    }

    async fn run(self, start: WatchStart, mut changes: broadcast::Receiver<Arc<Change>>) {
        let max = self.shared.options.max_watch_timeout;
        let timeout = self.params.timeout.map_or(max, |t| t.min(max));
        let deadline = Instant::now() + timeout;
        let mut shutdown = self.shared.shutdown.clone();
        let mut last_rv;
        match start {
            WatchStart::Snapshot {
                objects,
                resource_version,
            } => {
                last_rv = resource_version;
                let q = self.rt.qualified();
                for (res, obj) in objects {
                    let ns = crate::store::str_at(&obj, "/metadata/namespace");
                    if res == q
                        && self.namespace.as_deref().is_none_or(|n| n == ns)
                        && self.params.matches(self.rt, &obj)
                        && !self.send(event_line("ADDED", &self.render(&obj))).await
                    {
                        return;
                    }
                }
                if self.params.send_initial_events
                    && !self.send(bookmark(self.rt, last_rv, true)).await
                {
                    return;
                }
            }
            WatchStart::Replay(list) => {
                last_rv = self.params.from.unwrap_or_default();
                for c in list {
                    last_rv = last_rv.max(c.resource_version);
                    if let Some(b) = self.translate(&c)
                        && !self.send(b).await
                    {
                        return;
                    }
                }
            }
        }
        let interval = self.shared.options.bookmark_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.changed() => break,
                _ = self.tx.closed() => break,
                _ = ticker.tick(), if self.params.allow_bookmarks => {
                    if !self.send(bookmark(self.rt, last_rv, false)).await {
                        break;
                    }
                }
                msg = changes.recv() => match msg {
                    Ok(c) => {
                        if c.resource_version <= last_rv {
                            continue;
                        }
                        last_rv = c.resource_version;
                        if let Some(b) = self.translate(&c)
                            && !self.send(b).await
                        {
                            break;
                        }
                    }
                    // Fell behind or the store is gone: end the stream; the client re-watches
                    // from its last resourceVersion.
                    Err(_) => break,
                },
            }
        }
    }
}
