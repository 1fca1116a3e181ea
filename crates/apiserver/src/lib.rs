//! A Kubernetes API test server: the real wire protocol on loopback, for glrunner's Kubernetes tests
//! (in-process) and for manual runs (the `glrunner-apiserver` binary). `kubectl` and kube-rs are its
//! conformance checks.
//!
//! What it does like kube-apiserver:
//! - HTTPS with its own CA; client certificates (CN = user, O = groups), static and service-account
//!   bearer tokens, 401 for anonymous requests, impersonation (`kubectl --as`);
//! - discovery (`/version`, `/api`, `/apis`, group-version resource lists) and the part of
//!   `/openapi/v3` kubectl needs to leave field validation to the server;
//! - namespaces, pods, secrets, configmaps, services, serviceaccounts, events, roles, rolebindings,
//!   clusterroles, clusterrolebindings, poddisruptionbudgets, selfsubjectaccessreviews and
//!   selfsubjectreviews, stored as JSON validated against the k8s-openapi types;
//! - get, list (label and field selectors, pagination), watch (resourceVersion semantics, bookmarks,
//!   410 Expired), create (generateName, defaults, admission), update (409 on a stale
//!   resourceVersion), patch (JSON, merge, strategic merge subset: see [`patch`]), delete (graceful
//!   pod deletion, finalizers, propagation policies, owner-reference garbage collection),
//!   deletecollection — errors as `Status` objects with the apiserver's exact messages;
//! - RBAC on every request, with the bootstrap roles for discovery and self-reviews.
//!
//! - nodes, with the process kubelet ([`kubelet`]): a scheduler for one node and pods run as
//!   local processes in their own mount namespaces, with `pods/exec` and `pods/attach` over
//!   websockets (`v5.channel.k8s.io`, `v4.channel.k8s.io`) and `pods/log`. [`Cluster`] starts
//!   both; [`Kubelet`] injects faults (OOM kills, eviction, dropped streams, an unreachable or
//!   crashed kubelet).
//!
//! Where the kubelet plugs in: [`Store`] (objects, [`Store::subscribe`] for every change,
//! [`Store::update_status`], [`Store::record_event`], [`Store::finish_pod_deletion`]) and
//! [`Options::subresource_handler`] for `pods/log`, `pods/exec`, `pods/attach` and
//! `pods/portforward`, which arrive authenticated and authorized, with the raw request to upgrade.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use glrunner_apiserver::{ApiServer, Options};
//! use k8s_openapi::api::core::v1::Pod;
//! let server = ApiServer::start(Options::default()).await?;
//! server.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ci-jobs\n")?;
//! let client = server.admin_client().await?;
//! let pods: kube::Api<Pod> = kube::Api::namespaced(client, "ci-jobs");
//! let sa = server.service_account_token("ci-system", "glrunner");
//! let kubeconfig = server.kubeconfig_for(&sa, "runner", "ci-jobs")?;
//! # let _ = (pods, kubeconfig); Ok(()) }
//! ```
//!
//! With the kubelet (containers need root; without it pods stop at the container start):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use glrunner_apiserver::{Cluster, Image, KubeletOptions, Options};
//! let kubelet = KubeletOptions::default()
//!     .fast()
//!     .image("registry.example.com/glrunner:dev", Image::glrunner("/usr/local/bin/glrunner"))
//!     .image("registry.example.com/private/app", Image::not_found());
//! let cluster = Cluster::start(Options::default(), kubelet).await?;
//! cluster.kubelet().containers_supported()?;
//! # Ok(()) }
//! ```

mod api;
pub mod auth;
pub mod bootstrap;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod kubeconfig;
pub mod kubelet;
pub mod patch;
pub mod pki;
pub mod proto;
pub mod rbac;
pub mod request;
pub mod request_log;
pub mod resource;
pub mod selector;
mod server;
pub mod status;
pub mod store;
mod stream;
pub mod table;
pub mod validation;
mod watch;

pub use auth::{Credential, Identity, UserInfo};
pub use discovery::KubeVersion;
pub use error::{ApplyError, ClientError, IdentityError, StartError};
pub use kubelet::{Cluster, ClusterError, Image, Kubelet, KubeletOptions, NodeConfig, Taint};
pub use request_log::{Counts, RequestKey, RequestRecord};
pub use server::{ApiServer, Body, Options, Response, SubresourceHandler, SubresourceRequest};
pub use status::ApiError;
pub use store::{Change, ChangeType, DeleteOptions, Deleted, EventSpec, Store, WriteOptions};
pub use stream::{V4_PROTOCOL, V5_PROTOCOL};

/// The two-namespace install tests and benchmarks start from: jobs in `ci-jobs`, the manager in
/// `ci-system` as the service account `ci-system/glrunner` (no permissions yet: apply the Role glrunner
/// generates, or leave it out to provoke the failures).
pub const TWO_NAMESPACE_INSTALL: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: ci-jobs
---
apiVersion: v1
kind: Namespace
metadata:
  name: ci-system
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: glrunner
  namespace: ci-system
";

/// `lock()` that carries on past a poisoned mutex: a panic elsewhere (often a failing test thread)
/// leaves the guarded maps usable, and the server keeps answering.
pub(crate) trait MutexExt<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for std::sync::Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
