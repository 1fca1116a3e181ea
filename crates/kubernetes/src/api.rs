//! The one way the executor talks to the API server (design decision 5). Every call names its
//! catalogue entry (group, resource, subresource, verb): a call that is not in
//! [`permissions::CATALOGUE`] is a bug (debug assertion, and an error in release builds). The wrapper
//! counts calls, retries transient failures (connection errors, timeouts, 5xx, 429, gitlab-runner's
//! list of API server hiccups, `retry_limits`) with a backoff from 500 ms up to `retry_backoff_max`,
//! makes creates idempotent (409 AlreadyExists: read the object back and check it is this job's), and
//! turns 403s into an explanation with the Role that grants what is missing (K1, K4, K5).

use crate::permissions::{self, Identity, Permission, Verb};
use crate::pod::{LABEL_JOB_ID, LABEL_SYSTEM_ID};
use crate::stream::upgrade::{self, Upgraded};
use glrunner_config::KubernetesConfig;
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    AttachParams, DeleteParams, ListParams, ObjectList, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first wait between tries of a call.
const BACKOFF_START: Duration = Duration::from_millis(500);

/// Messages gitlab-runner retries on (`executors/kubernetes` retry list), besides status codes.
const TRANSIENT_MESSAGES: &[&str] = &[
    "error dialing backend",
    "TLS handshake timeout",
    "read: connection timed out",
    "connect: connection timed out",
    "Timeout occurred",
    "etcdserver: request timed out",
    "etcdserver: leader changed",
    "http2: client connection lost",
    "connection refused",
    "connection reset",
    "tls: internal error",
    "unexpected EOF",
    "broken pipe",
];

/// A namespaced object kind the wrapper reads, lists and watches (Pod, Secret, Service, …).
pub trait Namespaced:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
{
}

impl<K> Namespaced for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
{
}

/// How calls are retried: from `retry_limit`, `retry_backoff_max` and `retry_limits`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries of a call that keeps failing transiently.
    pub limit: u32,
    pub backoff_max: Duration,
    /// Error message substring → tries, for failures that are not transient by default.
    pub by_message: Vec<(String, u32)>,
}

impl RetryPolicy {
    pub fn from_config(config: &KubernetesConfig) -> Self {
        Self {
            limit: config.retry_limit().max(1),
            backoff_max: config.retry_backoff_max(),
            by_message: config
                .retry_limits
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), u32::try_from(*n).unwrap_or(u32::MAX)))
                .collect(),
        }
    }

    /// The wait before try `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        BACKOFF_START.saturating_mul(factor).min(self.backoff_max)
    }
}

/// A failed call. Messages say what happened, the likely cause and the fix; none holds a secret
/// (object names and API server messages only).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    #[error(
        "the Kubernetes API server refused to let {identity} {what}{in_ns}: {message}\n  cause: the manager's \
         identity lacks this permission{subresource_hint}\n  fix: grant what glrunner needs (check with `{can_i}`), \
         for example with `kubectl apply -f` of:\n{yaml}"
    )]
    Forbidden {
        what: String,
        in_ns: String,
        identity: String,
        message: String,
        subresource_hint: String,
        can_i: String,
        yaml: String,
    },
    #[error(
        "the Kubernetes API server did not accept the manager's credentials (401 Unauthorized: {message})\n  cause: \
         the token or certificate expired, was revoked, or belongs to a deleted service account\n  fix: renew the \
         credentials glrunner connects with (see its start-up line for which ones), then restart it"
    )]
    Unauthorized { message: String },
    #[error(
        "the service account {name:?} does not exist in the job namespace {namespace}, so the job's pod cannot be \
         created ({message})\n  cause: service accounts do not cross namespaces; `service_account` (or the job \
         variable KUBERNETES_SERVICE_ACCOUNT_OVERWRITE) names one that is not there\n  fix: `kubectl -n {namespace} \
         create serviceaccount {name}`"
    )]
    MissingServiceAccount {
        namespace: String,
        name: String,
        message: String,
    },
    #[error(
        "the namespace {namespace} does not exist ({message})\n  fix: `kubectl create namespace {namespace}`, or set \
         `namespace` in [runners.kubernetes] to an existing one"
    )]
    MissingNamespace { namespace: String, message: String },
    #[error("{what}: not found ({message})")]
    NotFound { what: String, message: String },
    #[error(
        "{what}: an object of that name already exists and does not belong to this job ({message})\n  fix: delete \
         it (`kubectl -n {namespace} delete {resource} {name}`) if nothing uses it"
    )]
    Conflict {
        what: String,
        namespace: String,
        resource: String,
        name: String,
        message: String,
    },
    #[error(
        "{what} failed {attempts} time(s) in a row: {message}\n  cause: the API server (or the node's kubelet) is \
         unreachable or overloaded\n  fix: check the cluster's health; raise `retry_limit` in [runners.kubernetes] \
         to wait longer"
    )]
    Unavailable {
        what: String,
        attempts: u32,
        message: String,
    },
    #[error("{what} failed: {message}")]
    Api {
        what: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error(
        "glrunner tried to {what}, which is not in its permission catalogue; this is a bug in glrunner, please \
         report it"
    )]
    NotInCatalogue { what: String },
}

impl KubeError {
    /// The HTTP status the API server answered with, when there was one.
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Forbidden { .. } | KubeError::MissingServiceAccount { .. } => Some(403),
            KubeError::MissingNamespace { .. } => Some(404),
            KubeError::Unauthorized { .. } => Some(401),
            KubeError::NotFound { .. } => Some(404),
            KubeError::Conflict { .. } => Some(409),
            KubeError::Api { code, .. } if *code > 0 => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeError::NotFound { .. })
    }

    /// The connection to the API server or the kubelet broke, or never came up: the pod's real
    /// state may explain it.
    pub fn is_transport(&self) -> bool {
        matches!(self, KubeError::Unavailable { .. })
    }
}

/// One call's identity: the catalogue entry and the object it is about.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub verb: Verb,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Target<'_> {
    fn describe(&self) -> String {
        let res = if self.subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        let name = if self.name.is_empty() {
            String::new()
        } else {
            format!(" {}", self.name)
        };
        format!("{} {res}{group}{name}", self.verb)
    }

    /// `pods/exec create`, the key calls are counted by.
    pub fn key(&self) -> String {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!("{}/", self.group)
        };
        if self.subresource.is_empty() {
            format!("{group}{} {}", self.resource, self.verb)
        } else {
            format!(
                "{group}{}/{} {}",
                self.resource, self.subresource, self.verb
            )
        }
    }
}

struct Shared {
    counts: Mutex<BTreeMap<String, u64>>,
    retry: RetryPolicy,
    /// What the configuration needs, for the Role printed on a 403.
    grants: Vec<Permission>,
    /// The job namespace, for that Role.
    namespace: String,
    identity: Mutex<Option<Identity>>,
}

/// The API wrapper. Cheap to clone; clones share counters.
#[derive(Clone)]
pub struct Kube {
    client: kube::Client,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("retry", &self.shared.retry)
            .field("namespace", &self.shared.namespace)
            .finish_non_exhaustive()
    }
}

impl Kube {
    pub fn new(client: kube::Client, config: &KubernetesConfig) -> Self {
        Self {
            client,
            shared: Arc::new(Shared {
                counts: Mutex::new(BTreeMap::new()),
                retry: RetryPolicy::from_config(config),
                grants: permissions::required(config),
                namespace: config.namespace().to_owned(),
                identity: Mutex::new(None),
            }),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Whether the configuration needs (so the generated Role grants) this call; parts that are
    /// optional (the sweep of budgets) ask before making it.
    pub fn configured(&self, group: &str, resource: &str, verb: Verb) -> bool {
        self.shared.grants.iter().any(|p| {
            p.group == group && p.resource == resource && p.subresource.is_empty() && p.verb == verb
        })
    }

    /// Calls made so far, by `resource[/subresource] verb` (every try counts).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Who the manager is, once [`Kube::whoami`] answered (for explanations).
    pub fn identity(&self) -> Option<Identity> {
        self.shared
            .identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count(&self, key: &str) {
        let mut counts = self.shared.counts.lock().unwrap_or_else(|e| e.into_inner());
        match counts.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                counts.insert(key.to_owned(), 1);
            }
        }
    }

    /// Run `call` as `target`, with the wrapper's checks, counting and retries.
    pub async fn call<T, F, Fut>(&self, target: Target<'_>, mut call: F) -> Result<T, KubeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        if permissions::find(
            target.group,
            target.resource,
            target.subresource,
            target.verb,
        )
        .is_none()
        {
            let what = target.describe();
            debug_assert!(false, "{what} is not in the permission catalogue");
            return Err(KubeError::NotInCatalogue { what });
        }
        // One key per call for counting; the description is made only when a try fails.
        let key = target.key();
        let retry = &self.shared.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.count(&key);
            let error = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let failure = Failure::classify(&error);
            // `retry_limits` entries matching the message: retried, and as often as the most generous says.
            let by_message = retry
                .by_message
                .iter()
                .filter(|(needle, _)| failure.message.contains(needle.as_str()))
                .map(|(_, n)| *n)
                .max();
            let limit = by_message.map_or(retry.limit, |n| n.max(retry.limit));
            let retriable = failure.transient || by_message.is_some();
            if retriable && attempt < limit {
                let wait = failure
                    .retry_after
                    .unwrap_or_else(|| retry.backoff(attempt))
                    .min(retry.backoff_max.max(BACKOFF_START) * 4);
                tracing::debug!(call = %target.describe(), attempt, error = %failure.message, "retrying a Kubernetes API call");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(self.explain(&target, target.describe(), attempt, failure, retriable));
        }
    }

    fn explain(
        &self,
        target: &Target<'_>,
        what: String,
        attempts: u32,
        f: Failure,
        retriable: bool,
    ) -> KubeError {
        match f.code {
            401 => KubeError::Unauthorized { message: f.message },
            403 if f.message.contains("error looking up service account") => {
                let name = f
                    .message
                    .split("serviceaccount \"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_default()
                    .to_owned();
                KubeError::MissingServiceAccount {
                    namespace: target.namespace.to_owned(),
                    name,
                    message: f.message,
                }
            }
            403 => self.forbidden(target, what, f.message),
            404 if f.message.contains("namespaces \"") && target.verb == Verb::Create => {
                KubeError::MissingNamespace {
                    namespace: target.namespace.to_owned(),
                    message: f.message,
                }
            }
            404 => KubeError::NotFound {
                what,
                message: f.message,
            },
            409 => KubeError::Conflict {
                what,
                namespace: target.namespace.to_owned(),
                resource: target.resource.to_owned(),
                name: target.name.to_owned(),
                message: f.message,
            },
            _ if retriable => KubeError::Unavailable {
                what,
                attempts,
                message: f.message,
            },
            code => KubeError::Api {
                what,
                code,
                reason: f.reason,
                message: f.message,
            },
        }
    }

    fn forbidden(&self, target: &Target<'_>, what: String, message: String) -> KubeError {
        let identity = self
            .identity()
            .or_else(|| user_in_message(&message).map(|u| Identity::parse(&u)))
            .unwrap_or_else(|| Identity::User("<the manager's user>".to_owned()));
        let perm = permissions::find(
            target.group,
            target.resource,
            target.subresource,
            target.verb,
        );
        let namespace = if target.namespace.is_empty() {
            self.shared.namespace.clone()
        } else {
            target.namespace.to_owned()
        };
        let mut grants = self.shared.grants.clone();
        if let Some(p) = perm
            && !grants.contains(p)
        {
            grants.push(*p);
        }
        let yaml = permissions::rbac::manifests(&grants, &identity, &namespace, "glrunner")
            .to_indented_yaml();
        KubeError::Forbidden {
            what,
            in_ns: if target.namespace.is_empty() {
                String::new()
            } else {
                format!(" in namespace {}", target.namespace)
            },
            identity: identity.user_name(),
            message,
            subresource_hint: if target.subresource.is_empty() {
                String::new()
            } else {
                format!(
                    " (subresources such as {}/{} must be listed in the Role on their own)",
                    target.resource, target.subresource
                )
            },
            can_i: perm.map_or_else(String::new, |p| p.can_i(&namespace)),
            yaml,
        }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Create `obj` in `namespace`. A 409 (say, a retried create whose first try went through) reads
    /// the object back and returns it when it carries the same job labels; else it is a conflict.
    pub async fn create<K>(&self, namespace: &str, obj: &K) -> Result<K, KubeError>
    where
        K: Namespaced + Serialize,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let api = self.api::<K>(namespace);
        let pp = PostParams::default();
        let t = target::<K>("", Verb::Create, namespace, &name);
        let created = self.call(t, || api.create(&pp, obj)).await;
        match created {
            Err(KubeError::Conflict { message, .. }) if message.contains("already exists") => {
                let existing: K = self.get(namespace, &name).await?;
                let ours = |k: &K| {
                    let l = k.meta().labels.clone().unwrap_or_default();
                    (
                        l.get(LABEL_SYSTEM_ID).cloned(),
                        l.get(LABEL_JOB_ID).cloned(),
                    )
                };
                if ours(&existing) == ours(obj) && ours(obj).1.is_some() {
                    Ok(existing)
                } else {
                    Err(KubeError::Conflict {
                        what: t.describe(),
                        namespace: namespace.to_owned(),
                        resource: K::plural(&()).into_owned(),
                        name,
                        message,
                    })
                }
            }
            other => other,
        }
    }

    pub async fn get<K>(&self, namespace: &str, name: &str) -> Result<K, KubeError>
    where
        K: Namespaced,
    {
        let api = self.api::<K>(namespace);
        self.call(target::<K>("", Verb::Get, namespace, name), || {
            api.get(name)
        })
        .await
    }

    /// `get`, with `None` for 404.
    pub async fn get_opt<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, KubeError>
    where
        K: Namespaced,
    {
        match self.get(namespace, name).await {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replace (`update`) an object read before; 409 means it changed meanwhile.
    pub async fn replace<K>(&self, namespace: &str, obj: &K) -> Result<K, KubeError>
    where
        K: Namespaced + Serialize,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let api = self.api::<K>(namespace);
        let pp = PostParams::default();
        self.call(target::<K>("", Verb::Update, namespace, &name), || {
            api.replace(&name, &pp, obj)
        })
        .await
    }

    /// Delete; already gone is fine.
    pub async fn delete<K>(
        &self,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(), KubeError>
    where
        K: Namespaced,
    {
        let api = self.api::<K>(namespace);
        match self
            .call(target::<K>("", Verb::Delete, namespace, name), || {
                api.delete(name, params)
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn list<K>(
        &self,
        namespace: &str,
        params: &ListParams,
    ) -> Result<ObjectList<K>, KubeError>
    where
        K: Namespaced,
    {
        let api = self.api::<K>(namespace);
        self.call(target::<K>("", Verb::List, namespace, ""), || {
            api.list(params)
        })
        .await
    }

    /// Open a watch from `resource_version`.
    pub async fn watch<K>(
        &self,
        namespace: &str,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<
        impl futures_util::Stream<Item = Result<WatchEvent<K>, kube::Error>> + Send + use<K>,
        KubeError,
    >
    where
        K: Namespaced + Send + 'static,
    {
        let api = self.api::<K>(namespace);
        self.call(target::<K>("", Verb::Watch, namespace, ""), || {
            api.watch(params, resource_version)
        })
        .await
    }

    /// `pods/exec`: a WebSocket (opened with a GET, authorized as `create` and `get`) running
    /// `command` in `params`' container; the caller speaks the channel protocol.
    pub async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        command: &[String],
        params: &AttachParams,
    ) -> Result<Upgraded, KubeError> {
        self.websocket(namespace, pod, "exec", |r| {
            r.exec(pod, command.to_vec(), params)
        })
        .await
    }

    /// `pods/attach`: a WebSocket to the main process of `params`' container.
    pub async fn attach(
        &self,
        namespace: &str,
        pod: &str,
        params: &AttachParams,
    ) -> Result<Upgraded, KubeError> {
        self.websocket(namespace, pod, "attach", |r| r.attach(pod, params))
            .await
    }

    /// Open the WebSocket of pod subresource `subresource` (`exec` or `attach`), its request built
    /// by `build`.
    async fn websocket(
        &self,
        namespace: &str,
        pod: &str,
        subresource: &'static str,
        build: impl Fn(
            &kube::core::Request,
        ) -> Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<Upgraded, KubeError> {
        let t = Target {
            group: "",
            resource: "pods",
            subresource,
            verb: Verb::Create,
            namespace,
            name: pod,
        };
        let request = kube::core::Request::new(Pod::url_path(&(), Some(namespace)));
        self.call(t, || async {
            let mut req = build(&request).map_err(kube::Error::BuildRequest)?;
            req.extensions_mut().insert(subresource);
            upgrade::open(&self.client, req).await
        })
        .await
    }

    /// A container's own output (`pods/log`), the last `tail` lines.
    pub async fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        tail: i64,
    ) -> Result<String, KubeError> {
        let api: Api<Pod> = self.api(namespace);
        let t = Target {
            group: "",
            resource: "pods",
            subresource: "log",
            verb: Verb::Get,
            namespace,
            name: pod,
        };
        let params = kube::api::LogParams {
            container: Some(container.to_owned()),
            tail_lines: Some(tail),
            ..Default::default()
        };
        self.call(t, || api.logs(pod, &params)).await
    }

    /// `kubectl auth can-i`: whether the manager may do what `attributes` describe.
    pub async fn can_i(&self, attributes: ResourceAttributes) -> Result<bool, KubeError> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(attributes),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = Target {
            group: "authorization.k8s.io",
            resource: "selfsubjectaccessreviews",
            subresource: "",
            verb: Verb::Create,
            namespace: "",
            name: "",
        };
        let pp = PostParams::default();
        let answer = self.call(t, || api.create(&pp, &review)).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// Who the API server thinks the manager is (`kubectl auth whoami`); remembered for explanations.
    pub async fn whoami(&self) -> Result<UserInfo, KubeError> {
        let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let t = Target {
            group: "authentication.k8s.io",
            resource: "selfsubjectreviews",
            subresource: "",
            verb: Verb::Create,
            namespace: "",
            name: "",
        };
        let review = SelfSubjectReview::default();
        let pp = PostParams::default();
        let answer = self.call(t, || api.create(&pp, &review)).await?;
        let user = answer.status.and_then(|s| s.user_info).unwrap_or_default();
        if let Some(name) = &user.username {
            *self
                .shared
                .identity
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Identity::parse(name));
        }
        Ok(user)
    }

    /// Create the namespace `name` (`namespace_per_job`), idempotently for the same job.
    pub async fn create_namespace(
        &self,
        ns: &k8s_openapi::api::core::v1::Namespace,
    ) -> Result<(), KubeError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let name = ns.metadata.name.clone().unwrap_or_default();
        let t = Target {
            group: "",
            resource: "namespaces",
            subresource: "",
            verb: Verb::Create,
            namespace: "",
            name: &name,
        };
        let pp = PostParams::default();
        match self.call(t, || api.create(&pp, ns)).await {
            Ok(_) => Ok(()),
            Err(KubeError::Conflict { message, .. }) if message.contains("already exists") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Delete the namespace `name` and everything in it; already gone is fine.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), KubeError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let t = Target {
            group: "",
            resource: "namespaces",
            subresource: "",
            verb: Verb::Delete,
            namespace: "",
            name,
        };
        let dp = DeleteParams::default();
        match self.call(t, || api.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/namespaces/<name>`.
    pub async fn namespace_exists(&self, name: &str) -> Result<bool, KubeError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let t = Target {
            group: "",
            resource: "namespaces",
            subresource: "",
            verb: Verb::Get,
            namespace: name,
            name,
        };
        self.call(t, || api.get_opt(name))
            .await
            .map(|n| n.is_some())
    }
}

fn target<'a, K: Resource<DynamicType = ()>>(
    subresource: &'static str,
    verb: Verb,
    namespace: &'a str,
    name: &'a str,
) -> Target<'a> {
    // Catalogue entries are 'static strings; find the one for this type.
    let group = K::group(&());
    let plural = K::plural(&());
    let (group, resource) = permissions::CATALOGUE
        .iter()
        .find(|p| p.group == group && p.resource == plural)
        .map_or(("", "<unknown>"), |p| (p.group, p.resource));
    Target {
        group,
        resource,
        subresource,
        verb,
        namespace,
        name,
    }
}

/// The user a forbidden message names: `User "…" cannot …`.
fn user_in_message(message: &str) -> Option<String> {
    let rest = message.split("User \"").nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}

/// What kind of failure a kube-rs error is.
struct Failure {
    code: u16,
    reason: String,
    message: String,
    transient: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn classify(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => {
                let code = status.code;
                let message = if status.message.is_empty() {
                    format!("HTTP {code} {}", status.reason)
                } else {
                    status.message.clone()
                };
                let transient = code == 429
                    || code >= 500
                    || TRANSIENT_MESSAGES.iter().any(|m| message.contains(m));
                let retry_after = status
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(u64::from(s)));
                Failure {
                    code,
                    reason: status.reason.clone(),
                    message,
                    transient,
                    retry_after,
                }
            }
            other => {
                let message = chain(other);
                let transient = matches!(
                    other,
                    kube::Error::HyperError(_)
                        | kube::Error::Service(_)
                        | kube::Error::UpgradeConnection(_)
                        | kube::Error::ReadEvents(_)
                ) || TRANSIENT_MESSAGES.iter().any(|m| message.contains(m));
                Failure {
                    code: 0,
                    reason: String::new(),
                    message,
                    transient,
                    retry_after: None,
                }
            }
        }
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_configured_maximum() {
        let p = RetryPolicy {
            limit: 5,
            backoff_max: Duration::from_secs(2),
            by_message: Vec::new(),
        };
        let waits: Vec<u128> = (1..=5).map(|a| p.backoff(a).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 2000, 2000]);
    }

    #[test]
    fn keys_name_the_catalogue_entry() {
        let t = Target {
            group: "",
            resource: "pods",
            subresource: "exec",
            verb: Verb::Create,
            namespace: "ci",
            name: "p",
        };
        assert_eq!(t.key(), "pods/exec create");
        assert_eq!(t.describe(), "create pods/exec p");
        let t = target::<SelfSubjectAccessReview>("", Verb::Create, "", "");
        assert_eq!(
            t.key(),
            "authorization.k8s.io/selfsubjectaccessreviews create"
        );
        let t = target::<k8s_openapi::api::core::v1::Secret>("", Verb::Update, "ci", "s");
        assert_eq!(
            (t.resource, t.describe().as_str()),
            ("secrets", "update secrets s")
        );
    }

    #[test]
    fn the_user_of_a_forbidden_message() {
        let m = "secrets is forbidden: User \"system:serviceaccount:ci-system:gitlab-runner\" cannot create resource \"secrets\" in API group \"\" in the namespace \"ci-jobs\"";
        assert_eq!(
            user_in_message(m).as_deref(),
            Some("system:serviceaccount:ci-system:gitlab-runner")
        );
        assert_eq!(user_in_message("nothing here"), None);
    }
}
