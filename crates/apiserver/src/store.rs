//! The object store: every object as validated JSON under one global `resourceVersion` counter, with
//! the write pipeline kube-apiserver runs (defaulting, namespace lifecycle and service-account
//! admission, `generateName`, validation, optimistic concurrency), deletion (finalizers, graceful pod
//! deletion, propagation policies, the owner-reference garbage collector, namespace teardown), and a
//! bounded change history that watches replay from and broadcast to.
//!
//! Other parts (the process kubelet) use it directly: [`Store::subscribe`] for every change,
//! [`Store::update_status`] to move a pod through its phases, [`Store::record_event`] to write events,
//! and [`Store::finish_pod_deletion`] to complete a graceful deletion.

use crate::MutexExt as _;
use crate::defaults;
use crate::resource::{self, ResourceType};
use crate::status::{ApiError, GroupResource, go_quote};
use crate::validation;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    /// The watch event type (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_watch_type(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change; `object` is the state after it (for deletions: the last state, carrying the
/// deletion's resourceVersion).
#[derive(Debug)]
pub struct Change {
    pub resource_version: u64,
    pub change: ChangeType,
    pub resource: &'static ResourceType,
    pub namespace: String,
    pub name: String,
    pub object: Value,
    /// The state before a modification (selectors use it to turn updates into ADDED/DELETED).
    pub previous: Option<Value>,
}

/// How unknown fields in a written object are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Options of a create/update/patch.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub field_validation: FieldValidation,
    /// `dryRun=All`: run everything, store nothing.
    pub dry_run: bool,
}

/// A written object and the warnings to send back (`Warning` headers).
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// Whether a PUT created the object (201 rather than 200).
    pub created: bool,
}

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

/// Options of a delete (`DeleteOptions`).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// The outcome of a delete.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone; its last state.
    Gone(Value),
    /// The object is terminating (finalizers or a pod's grace period); its current state.
    Pending(Value),
}

/// An event to record with [`Store::record_event`].
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// `apiVersion`, `kind`, `namespace`, `name`, `uid` come from this object.
    pub involved_object: Value,
    /// `Normal` or `Warning`.
    pub event_type: String,
    pub reason: String,
    pub message: String,
    /// `source.component` / `reportingComponent`, e.g. `kubelet`.
    pub component: String,
    /// `involvedObject.fieldPath`, e.g. `spec.containers{build}`.
    pub field_path: Option<String>,
}

type Key = (String, String, String);

struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Every change with a resourceVersion above this is still in `history`.
    floor: u64,
    next_ip: u32,
    /// `0.1` of the uid generator's randomness, kept here so uids stay unique per store.
    uid_counter: u64,
}

/// Bounds of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Changes kept for watches resuming from an older resourceVersion.
    pub history_limit: usize,
    /// The cluster CA (published as `kube-root-ca.crt` in every namespace).
    pub ca_pem: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            ca_pem: String::new(),
        }
    }
}

/// The object store. Cheap to share (`Arc<Store>`); every method is synchronous and short.
pub struct Store {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
    ca_pem: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("resource_version", &self.resource_version())
            .finish_non_exhaustive()
    }
}

/// Most cascades end after a few levels; this only stops a reference cycle.
const MAX_CASCADE: usize = 10_000;
const GENERATE_NAME_ATTEMPTS: usize = 8;

impl Store {
    /// An empty store (no namespaces, no roles). [`crate::bootstrap`] fills a fresh one.
    pub fn new(options: StoreOptions) -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            state: Mutex::new(State {
                rv: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_limit: options.history_limit.max(1),
                floor: 0,
                next_ip: 1,
                uid_counter: 0,
            }),
            changes,
            ca_pem: options.ca_pem,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Every change from now on. A receiver that falls more than 4096 changes behind gets
    /// `Lagged` and should re-read what it needs.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Forget the change history (like an etcd compaction): watches resuming from an older
    /// resourceVersion then get 410 Expired.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.floor = st.rv;
    }

    // ------------------------------------------------------------------ reads

    /// An object by qualified resource (`pods`, `roles.rbac.authorization.k8s.io`), namespace
    /// (`""` for cluster-scoped) and name.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.to_owned(), namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// A typed object.
    pub fn get_as<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        let rt = resource::of::<K>()?;
        let v = self.get(&rt.qualified(), namespace, name)?;
        serde_json::from_value(v).ok()
    }

    /// Typed objects of one kind, in one namespace or all (`None`).
    pub fn list_as<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        let Some(rt) = resource::of::<K>() else {
            return Vec::new();
        };
        self.list(rt, namespace)
            .0
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Objects of `rt` (sorted by namespace and name) and the list's resourceVersion.
    pub fn list(&self, rt: &ResourceType, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let st = self.lock();
        let q = rt.qualified();
        // Keys sort by resource, then namespace: the objects asked for are one contiguous run.
        let first = (
            q.clone(),
            namespace.unwrap_or_default().to_owned(),
            String::new(),
        );
        let items = st
            .objects
            .range(first..)
            .take_while(|((r, ns, _), _)| *r == q && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.rv)
    }

    /// For a watch: the current objects (when `from` is `None`) or the retained changes after
    /// `from`, plus a receiver for what follows. Atomic: nothing is missed or repeated.
    pub(crate) fn watch_from(
        &self,
        from: Option<u64>,
    ) -> Result<(WatchStart, broadcast::Receiver<Arc<Change>>), ApiError> {
        let st = self.lock();
        let rx = self.changes.subscribe();
        let start = match from {
            None => WatchStart::Snapshot {
                objects: st
                    .objects
                    .iter()
                    .map(|((r, _, _), v)| (r.clone(), v.clone()))
                    .collect(),
                resource_version: st.rv,
            },
            Some(rv) if rv < st.floor => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {rv} ({})",
                    st.floor
                )));
            }
            Some(rv) => WatchStart::Replay(
                st.history
                    .iter()
                    .filter(|c| c.resource_version > rv)
                    .cloned()
                    .collect(),
            ),
        };
        Ok((start, rx))
    }

    // ------------------------------------------------------------------ writes

    /// Create an object (the POST pipeline). `namespace` is the request's namespace (`""` for
    /// cluster-scoped resources).
    pub fn create(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let (obj, warnings) = prepare(rt, namespace, obj, opts)?;
        let mut st = self.lock();
        let mut obj = obj;
        defaults::apply(rt.plural, &mut obj, &mut || st.allocate_ip());
        let object = self.create_locked(&mut st, rt, namespace, obj, opts.dry_run, true)?;
        Ok(Written {
            object,
            warnings,
            created: true,
        })
    }

    fn create_locked(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        namespace: &str,
        mut obj: Value,
        dry_run: bool,
        admit: bool,
    ) -> Result<Value, ApiError> {
        let gr = rt.group_resource();
        if admit {
            admit_create(st, rt, namespace, &obj)?;
        }
        let q = rt.qualified();
        let mut name = str_at(&obj, "/metadata/name").to_owned();
        let generate = str_at(&obj, "/metadata/generateName").to_owned();
        if name.is_empty() && !generate.is_empty() {
            for _ in 0..GENERATE_NAME_ATTEMPTS {
                let candidate = generate_name(&generate);
                if !st
                    .objects
                    .contains_key(&(q.clone(), namespace.to_owned(), candidate.clone()))
                {
                    name = candidate;
                    break;
                }
            }
            if name.is_empty() {
                return Err(ApiError::already_exists(&gr, &generate));
            }
            meta_mut(&mut obj).insert("name".into(), json!(name));
        }
        validation::validate(rt, &obj, None)?;
        let key = (q, namespace.to_owned(), name.clone());
        if st.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&gr, &name));
        }
        let uid = st.new_uid();
        let meta = meta_mut(&mut obj);
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339(0)));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        if dry_run {
            meta.insert("resourceVersion".into(), json!(""));
            return Ok(obj);
        }
        self.commit(st, rt, key, ChangeType::Added, obj.clone(), None);
        let stored = self.current(st, rt, namespace, &name);
        if rt.plural == "namespaces" {
            self.populate_namespace(st, &name);
        }
        Ok(stored)
    }

    /// What a new namespace gets from its controllers: the `default` service account and the
    /// `kube-root-ca.crt` config map.
    fn populate_namespace(&self, st: &mut State, ns: &str) {
        let sa = json!({"apiVersion":"v1","kind":"ServiceAccount",
            "metadata":{"name":"default","namespace":ns}});
        let cm = json!({"apiVersion":"v1","kind":"ConfigMap",
            "metadata":{"name":"kube-root-ca.crt","namespace":ns,
                "annotations":{"kubernetes.io/description":"Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
            "data":{"ca.crt": self.ca_pem}});
        for (plural, obj) in [("serviceaccounts", sa), ("configmaps", cm)] {
            if let Some(rt) = resource::by_plural("", plural) {
                // Both are fixed, valid objects; a failure would be a bug in this table.
                if let Err(e) = self.create_locked(st, rt, ns, obj, false, false) {
                    tracing::warn!(%ns, plural, error = %e, "could not populate namespace");
                }
            }
        }
    }

    /// Replace an object (the PUT pipeline, and the second half of PATCH). `subresource` is
    /// `Some("status")` for status writes.
    pub fn update(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let (obj, warnings) = prepare(rt, namespace, obj, opts)?;
        let gr = rt.group_resource();
        let url_name = name;
        let obj_name = str_at(&obj, "/metadata/name");
        if !obj_name.is_empty() && obj_name != url_name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({obj_name}) does not match the name on the URL ({url_name})"
            )));
        }
        let mut st = self.lock();
        let key = (rt.qualified(), namespace.to_owned(), name.to_owned());
        let Some(existing) = st.objects.get(&key).cloned() else {
            if rt.create_on_update && subresource.is_none() {
                let mut obj = obj;
                meta_mut(&mut obj).insert("name".into(), json!(name));
                meta_mut(&mut obj).remove("resourceVersion");
                defaults::apply(rt.plural, &mut obj, &mut || st.allocate_ip());
                let object = self.create_locked(&mut st, rt, namespace, obj, opts.dry_run, true)?;
                return Ok(Written {
                    object,
                    warnings,
                    created: true,
                });
            }
            return Err(ApiError::not_found(&gr, name));
        };
        let want_rv = str_at(&obj, "/metadata/resourceVersion");
        if !want_rv.is_empty() && want_rv != str_at(&existing, "/metadata/resourceVersion") {
            return Err(ApiError::stale_update(&gr, name));
        }
        let mut new = match subresource {
            Some("status") => {
                let mut n = existing.clone();
                set_or_remove(&mut n, "status", obj.get("status").cloned());
                n
            }
            Some(other) => {
                return Err(ApiError::method_not_supported(
                    &gr,
                    &format!("update on subresource {other}"),
                ));
            }
            None => {
                let mut n = obj;
                if rt.has_status {
                    set_or_remove(&mut n, "status", existing.get("status").cloned());
                }
                n
            }
        };
        // Fields the server owns.
        let old_meta = existing.get("metadata").cloned().unwrap_or(json!({}));
        {
            let meta = meta_mut(&mut new);
            meta.insert("name".into(), json!(name));
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generateName",
            ] {
                match old_meta.get(k) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.remove(k),
                };
            }
            if namespace.is_empty() {
                meta.remove("namespace");
            } else {
                meta.insert("namespace".into(), json!(namespace));
            }
            meta.insert(
                "resourceVersion".into(),
                old_meta
                    .get("resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        if rt.plural == "secrets" && new.get("type").is_none() {
            new["type"] = existing.get("type").cloned().unwrap_or(json!("Opaque"));
        }
        if rt.plural == "secrets" {
            defaults::apply("secrets", &mut new, &mut || String::new());
        }
        validation::validate(rt, &new, Some(&existing))?;
        if new == existing {
            return Ok(Written {
                object: existing,
                warnings,
                created: false,
            });
        }
        if opts.dry_run {
            return Ok(Written {
                object: new,
                warnings,
                created: false,
            });
        }
        let finished = has_deletion_timestamp(&new) && !has_finalizers(&new);
        self.commit(
            &mut st,
            rt,
            key.clone(),
            ChangeType::Modified,
            new,
            Some(existing),
        );
        let object = self.current(&st, rt, namespace, name);
        if finished && !(rt.plural == "pods" && pod_grace_pending(&object)) {
            self.remove_locked(&mut st, rt, &key, 0);
        }
        Ok(Written {
            object,
            warnings,
            created: false,
        })
    }

    /// Change an object in place with `f` (no validation; for controllers such as the kubelet).
    /// Bumps the resourceVersion and notifies watchers.
    pub fn mutate(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let key = (rt.qualified(), namespace.to_owned(), name.to_owned());
        let Some(existing) = st.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&rt.group_resource(), name));
        };
        let mut new = existing.clone();
        f(&mut new);
        // Identity stays the server's.
        let meta = meta_mut(&mut new);
        for k in ["name", "namespace", "uid", "creationTimestamp"] {
            if let Some(v) = existing.pointer(&format!("/metadata/{k}")) {
                meta.insert(k.into(), v.clone());
            }
        }
        if new == existing {
            return Ok(existing);
        }
        self.commit(&mut st, rt, key, ChangeType::Modified, new, Some(existing));
        Ok(self.current(&st, rt, namespace, name))
    }

    /// Update a pod's (or any object's) `status` with `f` (for the kubelet).
    pub fn update_status(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        self.mutate(rt, namespace, name, |obj| {
            let Some(m) = obj.as_object_mut() else { return };
            let status = m.entry("status").or_insert_with(|| json!({}));
            f(status);
        })
    }

    /// Update a pod's `status` with `f` (the kubelet's status updates).
    pub fn update_pod_status(
        &self,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        let Some(rt) = resource::by_plural("", "pods") else {
            return Err(ApiError::internal("pods are not served"));
        };
        self.update_status(rt, namespace, name, f)
    }

    /// Record a core/v1 Event about `spec.involved_object` (as the kubelet and controllers do).
    pub fn record_event(&self, spec: EventSpec) -> Result<Value, ApiError> {
        let Some(rt) = resource::by_plural("", "events") else {
            return Err(ApiError::internal("events are not served"));
        };
        let inv = &spec.involved_object;
        let ns = str_at(inv, "/metadata/namespace");
        let ns = if ns.is_empty() { "default" } else { ns };
        let name = str_at(inv, "/metadata/name");
        let now = now_rfc3339(0);
        let mut involved = json!({
            "kind": str_at(inv, "/kind"),
            "namespace": ns,
            "name": name,
            "uid": str_at(inv, "/metadata/uid"),
            "apiVersion": str_at(inv, "/apiVersion"),
            "resourceVersion": str_at(inv, "/metadata/resourceVersion"),
        });
        if let Some(fp) = &spec.field_path {
            involved["fieldPath"] = json!(fp);
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.{:016x}", rand::random::<u64>()), "namespace": ns},
            "involvedObject": involved,
            "reason": spec.reason,
            "message": spec.message,
            "source": {"component": spec.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": spec.event_type,
            "eventTime": null,
            "reportingComponent": spec.component,
            "reportingInstance": "",
        });
        let mut st = self.lock();
        self.create_locked(&mut st, rt, ns, event, false, false)
    }

    /// Delete an object (the DELETE pipeline).
    pub fn delete(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let mut st = self.lock();
        self.delete_locked(&mut st, rt, namespace, name, opts, 0)
    }

    /// Complete a pod's graceful deletion (the kubelet's final delete with grace 0).
    pub fn finish_pod_deletion(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let Some(rt) = resource::by_plural("", "pods") else {
            return Err(ApiError::internal("pods are not served"));
        };
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match self.delete(rt, namespace, name, &opts)? {
            Deleted::Gone(v) | Deleted::Pending(v) => Ok(v),
        }
    }

    fn delete_locked(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
        depth: usize,
    ) -> Result<Deleted, ApiError> {
        let gr = rt.group_resource();
        let key = (rt.qualified(), namespace.to_owned(), name.to_owned());
        let Some(existing) = st.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&gr, name));
        };
        let uid = str_at(&existing, "/metadata/uid").to_owned();
        let rv = str_at(&existing, "/metadata/resourceVersion");
        let preconditions = [
            ("UID", &opts.precondition_uid, uid.as_str()),
            ("ResourceVersion", &opts.precondition_resource_version, rv),
        ];
        for (field, want, have) in preconditions {
            if let Some(want) = want
                && want != have
            {
                return Err(ApiError::conflict(
                    &gr,
                    name,
                    &format!(
                        "Precondition failed: {field} in precondition: {want}, {field} in object meta: {have}"
                    ),
                ));
            }
        }
        if opts.dry_run {
            return Ok(Deleted::Gone(existing));
        }
        if depth > MAX_CASCADE {
            return Ok(Deleted::Pending(existing));
        }
        match opts.propagation {
            Propagation::Orphan => self.orphan_dependents(st, &uid),
            Propagation::Foreground => self.delete_dependents(st, &uid, depth),
            Propagation::Background => {}
        }
        if rt.plural == "namespaces" {
            return Ok(self.delete_namespace(st, &key, existing, depth));
        }
        // Graceful pod deletion: a scheduled, unfinished pod is marked and left to its kubelet.
        let mut grace = 0;
        if rt.plural == "pods" {
            let node = str_at(&existing, "/spec/nodeName");
            let phase = str_at(&existing, "/status/phase");
            let default = existing
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            grace = opts.grace_period_seconds.unwrap_or(default).max(0);
            if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
                grace = 0;
            }
            if let Some(current) = existing
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
            {
                grace = grace.min(current);
            }
        }
        if grace > 0 || has_finalizers(&existing) {
            let mut marked = existing.clone();
            let meta = meta_mut(&mut marked);
            let already = meta.contains_key("deletionTimestamp");
            let new_grace = grace > 0
                && meta
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    != Some(grace);
            if !already || new_grace {
                meta.insert("deletionTimestamp".into(), json!(now_rfc3339(grace)));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                self.commit(
                    st,
                    rt,
                    key.clone(),
                    ChangeType::Modified,
                    marked,
                    Some(existing),
                );
            }
            return Ok(Deleted::Pending(self.current(st, rt, namespace, name)));
        }
        Ok(Deleted::Gone(self.remove_locked(st, rt, &key, depth)))
    }

    /// Remove an object for good, then collect its dependents and finish a terminating namespace
    /// it was the last content of.
    fn remove_locked(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        key: &Key,
        depth: usize,
    ) -> Value {
        let Some(last) = st.objects.get(key).cloned() else {
            return Value::Null;
        };
        let uid = str_at(&last, "/metadata/uid").to_owned();
        let rv = self.commit_delete(st, rt, key, last.clone());
        let mut gone = last;
        meta_mut(&mut gone).insert("resourceVersion".into(), json!(rv.to_string()));
        self.collect_garbage(st, &uid, depth + 1);
        let ns = &key.1;
        if !ns.is_empty() {
            self.maybe_finish_namespace(st, ns);
        }
        gone
    }

    /// Background cascade: delete every object whose owners are all gone; drop dangling
    /// references from objects that still have a live owner.
    fn collect_garbage(&self, st: &mut State, owner_uid: &str, depth: usize) {
        if owner_uid.is_empty() || depth > MAX_CASCADE {
            return;
        }
        for (key, obj) in dependents_of(st, owner_uid) {
            let Some(rt) = rt_of_key(&key) else { continue };
            let live_owner = owner_uids(&obj)
                .iter()
                .any(|u| u != owner_uid && uid_exists(st, u));
            if live_owner {
                let mut new = obj.clone();
                retain_owner_refs(&mut new, |u| u != owner_uid);
                self.commit(st, rt, key, ChangeType::Modified, new, Some(obj));
            } else {
                let opts = DeleteOptions::default();
                let _ = self.delete_locked(st, rt, &key.1, &key.2, &opts, depth);
            }
        }
    }

    fn delete_dependents(&self, st: &mut State, owner_uid: &str, depth: usize) {
        for (key, _) in dependents_of(st, owner_uid) {
            if let Some(rt) = rt_of_key(&key) {
                let opts = DeleteOptions {
                    propagation: Propagation::Foreground,
                    ..Default::default()
                };
                let _ = self.delete_locked(st, rt, &key.1, &key.2, &opts, depth + 1);
            }
        }
    }

    fn orphan_dependents(&self, st: &mut State, owner_uid: &str) {
        for (key, obj) in dependents_of(st, owner_uid) {
            if let Some(rt) = rt_of_key(&key) {
                let mut new = obj.clone();
                retain_owner_refs(&mut new, |u| u != owner_uid);
                self.commit(st, rt, key, ChangeType::Modified, new, Some(obj));
            }
        }
    }

    /// Namespace deletion: mark it `Terminating`, delete its contents, and remove it once empty.
    fn delete_namespace(
        &self,
        st: &mut State,
        key: &Key,
        existing: Value,
        depth: usize,
    ) -> Deleted {
        let Some(rt) = rt_of_key(key) else {
            return Deleted::Pending(existing);
        };
        let ns = key.2.clone();
        if !has_deletion_timestamp(&existing) {
            let mut marked = existing.clone();
            meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(now_rfc3339(0)));
            marked["status"] = json!({"phase": "Terminating"});
            self.commit(
                st,
                rt,
                key.clone(),
                ChangeType::Modified,
                marked,
                Some(existing),
            );
        }
        let contents: Vec<Key> = st
            .objects
            .keys()
            .filter(|(_, n, _)| *n == ns)
            .cloned()
            .collect();
        for k in contents {
            if let Some(crt) = rt_of_key(&k) {
                let _ =
                    self.delete_locked(st, crt, &k.1, &k.2, &DeleteOptions::default(), depth + 1);
            }
        }
        // Removed by maybe_finish_namespace if it is empty now.
        self.maybe_finish_namespace(st, &ns);
        match st.objects.get(key) {
            Some(v) => Deleted::Pending(v.clone()),
            None => Deleted::Gone(self.current_or(st, key, Value::Null)),
        }
    }

    fn maybe_finish_namespace(&self, st: &mut State, ns: &str) {
        let key = ("namespaces".to_owned(), String::new(), ns.to_owned());
        let terminating = st.objects.get(&key).is_some_and(has_deletion_timestamp);
        if !terminating || st.objects.keys().any(|(_, n, _)| n == ns) {
            return;
        }
        if let Some(rt) = rt_of_key(&key)
            && let Some(last) = st.objects.get(&key).cloned()
        {
            self.commit_delete(st, rt, &key, last);
        }
    }

    fn current(&self, st: &State, rt: &ResourceType, namespace: &str, name: &str) -> Value {
        st.objects
            .get(&(rt.qualified(), namespace.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn current_or(&self, st: &State, key: &Key, default: Value) -> Value {
        st.objects.get(key).cloned().unwrap_or(default)
    }

    /// Store `obj` under a new resourceVersion and tell watchers.
    fn commit(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        key: Key,
        change: ChangeType,
        mut obj: Value,
        previous: Option<Value>,
    ) {
        st.rv += 1;
        let rv = st.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        st.objects.insert(key.clone(), obj.clone());
        self.publish(st, rt, key, change, obj, previous, rv);
    }

    fn commit_delete(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        key: &Key,
        last: Value,
    ) -> u64 {
        st.rv += 1;
        let rv = st.rv;
        st.objects.remove(key);
        let mut obj = last;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.publish(st, rt, key.clone(), ChangeType::Deleted, obj, None, rv);
        rv
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        key: Key,
        change: ChangeType,
        object: Value,
        previous: Option<Value>,
        rv: u64,
    ) {
        let c = Arc::new(Change {
            resource_version: rv,
            change,
            resource: rt,
            namespace: key.1,
            name: key.2,
            object,
            previous,
        });
        st.history.push_back(c.clone());
        while st.history.len() > st.history_limit {
            if let Some(old) = st.history.pop_front() {
                st.floor = old.resource_version;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(c);
    }
}

/// Where a watch starts.
pub(crate) enum WatchStart {
    /// All current objects as (qualified resource, object), then changes after `resource_version`.
    Snapshot {
        objects: Vec<(String, Value)>,
        resource_version: u64,
    },
    /// Retained changes after the requested resourceVersion.
    Replay(Vec<Arc<Change>>),
}

impl State {
    fn allocate_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1)
    }

    fn new_uid(&mut self) -> String {
        self.uid_counter += 1;
        let r: u128 = rand::random();
        let b = r.to_be_bytes();
        format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-{:01x}{:01x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6] & 0x0f,
            b[7],
            8 | (b[8] & 0x3),
            b[8] >> 4,
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// Checks on the JSON body shared by create and update: an object of this kind, unknown fields per
/// `fieldValidation`, the namespace matching the URL, no resourceVersion on create-only paths.
fn prepare(
    rt: &ResourceType,
    namespace: &str,
    mut obj: Value,
    opts: &WriteOptions,
) -> Result<(Value, Vec<String>), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "{} in version {} cannot be handled as a {}: the body must be a JSON object",
            rt.kind,
            go_quote(rt.version),
            rt.kind
        )));
    };
    let want_version = rt.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(want_version));
        }
        Some(v) if v == want_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(rt.kind));
        }
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "{} in version {} cannot be handled as a {}: no kind \"{k}\" is registered for version \"{want_version}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"",
                rt.kind,
                go_quote(rt.version),
                rt.kind
            )));
        }
    }
    let unknown = rt.decode(&obj)?;
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match opts.field_validation {
            FieldValidation::Ignore => {}
            FieldValidation::Warn => {
                warnings = unknown
                    .iter()
                    .map(|f| format!("unknown field {}", go_quote(f)))
                    .collect();
            }
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field {}", go_quote(f)))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version {} cannot be handled as a {}: strict decoding error: {}",
                    rt.kind,
                    go_quote(rt.version),
                    rt.kind,
                    list.join(", ")
                )));
            }
        }
    }
    let meta = meta_mut(&mut obj);
    if rt.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), json!(namespace));
            }
            Some(n) if n == namespace => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else {
        meta.remove("namespace");
    }
    Ok((obj, warnings))
}

/// Admission on create: namespace lifecycle, service accounts, and the create-time
/// resourceVersion rule.
fn admit_create(
    st: &State,
    rt: &ResourceType,
    namespace: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let gr = rt.group_resource();
    // Admission names an object by its name, else its generateName.
    let display = {
        let n = str_at(obj, "/metadata/name");
        if n.is_empty() {
            str_at(obj, "/metadata/generateName")
        } else {
            n
        }
    };
    if !str_at(obj, "/metadata/resourceVersion").is_empty() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    if rt.namespaced {
        let ns_key = ("namespaces".to_owned(), String::new(), namespace.to_owned());
        match st.objects.get(&ns_key) {
            None => {
                return Err(ApiError::not_found(
                    &GroupResource::new("", "namespaces"),
                    namespace,
                ));
            }
            Some(ns) if has_deletion_timestamp(ns) => {
                return Err(ApiError::forbidden(
                    Some(&gr),
                    display,
                    &format!(
                        "unable to create new content in namespace {namespace} because it is being terminated"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if rt.plural == "pods" {
        let sa = str_at(obj, "/spec/serviceAccountName");
        let sa = if sa.is_empty() { "default" } else { sa };
        let sa_key = (
            "serviceaccounts".to_owned(),
            namespace.to_owned(),
            sa.to_owned(),
        );
        if !st.objects.contains_key(&sa_key) {
            return Err(ApiError::forbidden(
                Some(&gr),
                display,
                &format!(
                    "error looking up service account {namespace}/{sa}: serviceaccount {} not found",
                    go_quote(sa)
                ),
            ));
        }
    }
    Ok(())
}

fn dependents_of(st: &State, owner_uid: &str) -> Vec<(Key, Value)> {
    st.objects
        .iter()
        .filter(|(_, v)| owner_uids(v).iter().any(|u| u == owner_uid))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn uid_exists(st: &State, uid: &str) -> bool {
    st.objects
        .values()
        .any(|v| str_at(v, "/metadata/uid") == uid)
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn retain_owner_refs(obj: &mut Value, keep: impl Fn(&str) -> bool) {
    let meta = meta_mut(obj);
    if let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") {
        refs.retain(|r| keep(r.get("uid").and_then(Value::as_str).unwrap_or_default()));
        if refs.is_empty() {
            meta.remove("ownerReferences");
        }
    }
}

fn rt_of_key(key: &Key) -> Option<&'static ResourceType> {
    let (plural, group) = key.0.split_once('.').unwrap_or((key.0.as_str(), ""));
    resource::by_plural(group, plural)
}

fn has_finalizers(obj: &Value) -> bool {
    strs_at(obj, "/metadata/finalizers").next().is_some()
}

fn has_deletion_timestamp(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// A pod whose graceful deletion is still running (the kubelet finishes it).
fn pod_grace_pending(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0)
}

fn set_or_remove(obj: &mut Value, key: &str, value: Option<Value>) {
    if let Some(m) = obj.as_object_mut() {
        match value {
            Some(v) => m.insert(key.to_owned(), v),
            None => m.remove(key),
        };
    }
}

pub(crate) fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// The strings of the array at `ptr`: none if it is missing, non-strings skipped.
pub(crate) fn strs_at<'a>(v: &'a Value, ptr: &str) -> impl Iterator<Item = &'a str> + use<'a> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// `metadata` of an object, created if missing. Non-objects are left alone (a throwaway map).
pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let Value::Object(root) = obj else {
        unreachable!("made an object above")
    };
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// `<base><5 random chars>` with the apiserver's alphabet, the base cut so the name fits 63.
fn generate_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base: String = base.chars().take(58).collect();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

/// Now plus `offset_seconds`, as RFC 3339 with whole seconds (the apiserver's `metav1.Time`).
pub(crate) fn now_rfc3339(offset_seconds: i64) -> String {
    let now = jiff::Timestamp::now().as_second() + offset_seconds;
    jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_ns(ns: &str) -> Store {
        let s = Store::new(StoreOptions::default());
        let nsrt = resource::by_plural("", "namespaces").expect("ns");
        s.create(
            nsrt,
            "",
            json!({"metadata":{"name":ns}}),
            &WriteOptions::default(),
        )
        .expect("namespace");
        s
    }

    fn rt(plural: &str) -> &'static ResourceType {
        resource::by_plural("", plural).expect("resource")
    }

    #[test]
    fn lists_hold_one_resource_in_one_namespace_or_all() {
        let s = store_with_ns("a");
        let nsrt = resource::by_plural("", "namespaces").expect("ns");
        let w = WriteOptions::default();
        s.create(nsrt, "", json!({"metadata":{"name":"a-b"}}), &w)
            .expect("namespace");
        for (plural, ns, name) in [
            ("configmaps", "a", "x"),
            ("configmaps", "a-b", "y"),
            ("secrets", "a", "z"),
        ] {
            s.create(rt(plural), ns, json!({"metadata":{"name":name}}), &w)
                .expect("object");
        }
        let names = |ns: Option<&str>| -> Vec<String> {
            s.list(rt("configmaps"), ns)
                .0
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}",
                        str_at(o, "/metadata/namespace"),
                        str_at(o, "/metadata/name")
                    )
                })
                .collect()
        };
        assert_eq!(names(Some("a")), ["a/kube-root-ca.crt", "a/x"]);
        assert_eq!(names(Some("a-b")), ["a-b/kube-root-ca.crt", "a-b/y"]);
        assert_eq!(
            names(None),
            ["a/kube-root-ca.crt", "a/x", "a-b/kube-root-ca.crt", "a-b/y"]
        );
        assert!(names(Some("c")).is_empty());
    }

    #[test]
    fn delete_preconditions_must_match_the_object() {
        let s = store_with_ns("ci");
        let cm = s
            .create(
                rt("configmaps"),
                "ci",
                json!({"metadata":{"name":"c"}}),
                &WriteOptions::default(),
            )
            .expect("configmap")
            .object;
        let uid = str_at(&cm, "/metadata/uid");
        let rv = str_at(&cm, "/metadata/resourceVersion");
        let refused = |opts: DeleteOptions| {
            let err = s
                .delete(rt("configmaps"), "ci", "c", &opts)
                .expect_err("precondition");
            assert_eq!(err.code, 409);
            err.message
        };
        assert_eq!(
            refused(DeleteOptions {
                precondition_uid: Some("other".into()),
                ..Default::default()
            }),
            format!(
                "Operation cannot be fulfilled on configmaps \"c\": Precondition failed: UID in precondition: other, UID in object meta: {uid}"
            )
        );
        assert_eq!(
            refused(DeleteOptions {
                precondition_uid: Some(uid.into()),
                precondition_resource_version: Some("1".into()),
                ..Default::default()
            }),
            format!(
                "Operation cannot be fulfilled on configmaps \"c\": Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: {rv}"
            )
        );
        let opts = DeleteOptions {
            precondition_uid: Some(uid.into()),
            precondition_resource_version: Some(rv.into()),
            ..Default::default()
        };
        s.delete(rt("configmaps"), "ci", "c", &opts)
            .expect("both match");
        assert!(s.get("configmaps", "ci", "c").is_none());
    }

    #[test]
    fn namespaces_get_a_default_service_account() {
        let s = store_with_ns("ci");
        assert!(s.get("serviceaccounts", "ci", "default").is_some());
        assert!(s.get("configmaps", "ci", "kube-root-ca.crt").is_some());
    }

    #[test]
    fn resource_versions_grow_and_stale_updates_conflict() {
        let s = store_with_ns("ci");
        let w = s
            .create(
                rt("configmaps"),
                "ci",
                json!({"metadata":{"name":"c"},"data":{"a":"1"}}),
                &WriteOptions::default(),
            )
            .expect("create");
        let rv1: u64 = str_at(&w.object, "/metadata/resourceVersion")
            .parse()
            .expect("rv");
        let mut next = w.object.clone();
        next["data"]["a"] = json!("2");
        let w2 = s
            .update(
                rt("configmaps"),
                "ci",
                "c",
                next.clone(),
                None,
                &WriteOptions::default(),
            )
            .expect("update");
        let rv2: u64 = str_at(&w2.object, "/metadata/resourceVersion")
            .parse()
            .expect("rv");
        assert!(rv2 > rv1);
        let err = s
            .update(
                rt("configmaps"),
                "ci",
                "c",
                next,
                None,
                &WriteOptions::default(),
            )
            .expect_err("stale");
        assert_eq!(err.reason, "Conflict");
        assert_eq!(
            err.message,
            "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn deleting_an_owner_collects_its_dependents() {
        let s = store_with_ns("ci");
        let pod = s
            .create(
                rt("pods"),
                "ci",
                json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}),
                &WriteOptions::default(),
            )
            .expect("pod")
            .object;
        let uid = str_at(&pod, "/metadata/uid").to_owned();
        let owner = json!([{"apiVersion":"v1","kind":"Pod","name":"p","uid":uid}]);
        s.create(
            rt("secrets"),
            "ci",
            json!({"metadata":{"name":"s","ownerReferences":owner}}),
            &WriteOptions::default(),
        )
        .expect("secret");
        s.create(
            rt("configmaps"),
            "ci",
            json!({"metadata":{"name":"keep"}}),
            &WriteOptions::default(),
        )
        .expect("cm");
        let out = s
            .delete(rt("pods"), "ci", "p", &DeleteOptions::default())
            .expect("delete");
        assert!(matches!(out, Deleted::Gone(_)));
        assert!(s.get("secrets", "ci", "s").is_none());
        assert!(s.get("configmaps", "ci", "keep").is_some());
    }

    #[test]
    fn scheduled_pods_are_deleted_gracefully() {
        let s = store_with_ns("ci");
        s.create(rt("pods"), "ci", json!({"metadata":{"name":"p"},"spec":{"nodeName":"n","containers":[{"name":"c","image":"i"}]}}), &WriteOptions::default())
            .expect("pod");
        let out = s
            .delete(rt("pods"), "ci", "p", &DeleteOptions::default())
            .expect("delete");
        let Deleted::Pending(p) = out else {
            panic!("expected a graceful deletion")
        };
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
        s.finish_pod_deletion("ci", "p").expect("finish");
        assert!(s.get("pods", "ci", "p").is_none());
    }

    #[test]
    fn watch_history_expires_after_compaction() {
        let s = store_with_ns("ci");
        let rv = s.resource_version();
        s.create(
            rt("configmaps"),
            "ci",
            json!({"metadata":{"name":"c"}}),
            &WriteOptions::default(),
        )
        .expect("cm");
        assert!(matches!(s.watch_from(Some(rv)), Ok((WatchStart::Replay(v), _)) if v.len() == 1));
        s.compact();
        let err = s.watch_from(Some(rv)).err().expect("expired");
        assert_eq!(err.code, 410);
        assert_eq!(
            err.message,
            format!("too old resource version: {rv} ({})", rv + 1)
        );
    }
}
