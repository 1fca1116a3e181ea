//! Events as the kubelet's and the scheduler's event recorders write them: `source.component` and
//! `source.host`, `involvedObject.fieldPath` for container events, and repeats of the same event
//! folded into one object whose `count` and `lastTimestamp` grow (what `kubectl describe` shows
//! as `(x3 over 2m)`).

use crate::MutexExt as _;
use crate::resource;
use crate::store::{Store, WriteOptions, now_rfc3339, str_at};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Remembered events at most; older entries are forgotten (a repeat then makes a new object).
const MAX_REMEMBERED: usize = 10_000;

pub(crate) const NORMAL: &str = "Normal";
pub(crate) const WARNING: &str = "Warning";

type Key = (String, String, String, String, String);

/// Writes events for one component (`kubelet` or `default-scheduler`).
pub(crate) struct Recorder {
    store: Arc<Store>,
    component: &'static str,
    host: String,
    seen: Mutex<HashMap<Key, (String, String)>>,
}

impl Recorder {
    pub fn new(store: Arc<Store>, component: &'static str, host: &str) -> Self {
        Self {
            store,
            component,
            host: host.to_owned(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Record an event about `object` (a pod or node as stored), optionally about one of its
    /// containers (`spec.containers{build}`).
    pub fn record(
        &self,
        object: &Value,
        field_path: Option<&str>,
        event_type: &str,
        reason: &str,
        message: &str,
    ) {
        let uid = str_at(object, "/metadata/uid").to_owned();
        let key: Key = (
            uid,
            field_path.unwrap_or_default().to_owned(),
            event_type.to_owned(),
            reason.to_owned(),
            message.to_owned(),
        );
        let Some(rt) = resource::by_plural("", "events") else {
            return;
        };
        let known = self.seen.locked().get(&key).cloned();
        if let Some((ns, name)) = known {
            let bumped = self.store.mutate(rt, &ns, &name, |ev| {
                let count = ev.get("count").and_then(Value::as_i64).unwrap_or(1);
                ev["count"] = json!(count + 1);
                ev["lastTimestamp"] = json!(now_rfc3339(0));
            });
            if bumped.is_ok() {
                return;
            }
        }
        let ns = match str_at(object, "/metadata/namespace") {
            "" => "default".to_owned(),
            n => n.to_owned(),
        };
        let obj_name = str_at(object, "/metadata/name");
        let name = format!("{obj_name}.{:016x}", rand::random::<u64>());
        let now = now_rfc3339(0);
        let mut involved = json!({
            "kind": str_at(object, "/kind"),
            "name": obj_name,
            "uid": str_at(object, "/metadata/uid"),
            "apiVersion": str_at(object, "/apiVersion"),
            "resourceVersion": str_at(object, "/metadata/resourceVersion"),
        });
        if !str_at(object, "/metadata/namespace").is_empty() {
            involved["namespace"] = json!(ns);
        }
        if let Some(fp) = field_path {
            involved["fieldPath"] = json!(fp);
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": event_type,
            "eventTime": null,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        });
        match self.store.create(rt, &ns, event, &WriteOptions::default()) {
            Ok(_) => {
                let mut seen = self.seen.locked();
                if seen.len() >= MAX_REMEMBERED {
                    seen.clear();
                }
                seen.insert(key, (ns, name));
            }
            // A namespace being deleted refuses new events; nothing to report to.
            Err(e) => tracing::debug!(reason, error = %e, "event not recorded"),
        }
    }
}

/// `spec.containers{name}` or `spec.initContainers{name}`.
pub(crate) fn container_path(init: bool, name: &str) -> String {
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}
