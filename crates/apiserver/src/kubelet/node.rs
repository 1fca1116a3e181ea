//! The one node the process kubelet serves: its configuration (name, labels, taints, allocatable
//! resources) and the `Node` object it registers, with the conditions a healthy kubelet reports.

use crate::resource;
use crate::status::ApiError;
use crate::store::{Store, WriteOptions, now_rfc3339};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A node taint (`key=value:effect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl Taint {
    pub fn new(key: &str, value: &str, effect: &str) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
            effect: effect.to_owned(),
        }
    }
}

/// The node's name, labels, taints and what it can hold.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// Extra labels; `kubernetes.io/hostname`, `kubernetes.io/os` and `kubernetes.io/arch` are
    /// always set.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Allocatable CPU (a quantity, e.g. `4` or `3500m`).
    pub cpu: String,
    /// Allocatable memory (a quantity, e.g. `8Gi`).
    pub memory: String,
    /// Pods the node accepts at most.
    pub pods: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "glrunner-node".to_owned(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            cpu: "4".to_owned(),
            memory: "8Gi".to_owned(),
            pods: 110,
        }
    }
}

/// The architecture as Kubernetes names it.
pub(crate) fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// The kubelet version the node reports (the API server's minor version).
pub(crate) const KUBELET_VERSION: &str = "v1.32.0";

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": status, "lastHeartbeatTime": now,
        "lastTransitionTime": now, "reason": reason, "message": message})
}

/// The conditions of a node whose kubelet is (or is not) posting status.
pub(crate) fn conditions(ready: bool) -> Value {
    let now = now_rfc3339(0);
    let ready_cond = if ready {
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            &now,
        )
    } else {
        condition(
            "Ready",
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
            &now,
        )
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            &now
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            &now
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            &now
        ),
        ready_cond,
    ])
}

/// The Node object for `config`.
pub(crate) fn object(config: &NodeConfig) -> Value {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".into(), config.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), arch().into());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), arch().into());
    labels.extend(config.labels.clone());
    let taints: Vec<Value> = config
        .taints
        .iter()
        .map(|t| {
            let mut v = json!({"key": t.key, "effect": t.effect});
            if !t.value.is_empty() {
                v["value"] = json!(t.value);
            }
            v
        })
        .collect();
    let resources = json!({"cpu": config.cpu, "memory": config.memory,
        "pods": config.pods.to_string(), "ephemeral-storage": "100Gi"});
    let mut spec = json!({});
    if !taints.is_empty() {
        spec["taints"] = json!(taints);
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": config.name, "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": spec,
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions(true),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": config.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": kernel,
                "osImage": "glrunner process kubelet",
                "containerRuntimeVersion": "glrunner://0.1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": arch(),
            },
        },
    })
}

/// Register (or re-register) the node.
pub(crate) fn register(store: &Store, config: &NodeConfig) -> Result<Value, ApiError> {
    let Some(rt) = resource::by_plural("", "nodes") else {
        return Err(ApiError::internal("nodes are not served"));
    };
    if store.get("nodes", "", &config.name).is_some() {
        return store.update_status(rt, "", &config.name, |s| {
            s["conditions"] = conditions(true);
        });
    }
    Ok(store
        .create(rt, "", object(config), &WriteOptions::default())?
        .object)
}

/// Set the Ready condition (a crashed kubelet stops posting status).
pub(crate) fn set_ready(store: &Store, name: &str, ready: bool) {
    if let Some(rt) = resource::by_plural("", "nodes") {
        let _ = store.update_status(rt, "", name, |s| {
            s["conditions"] = conditions(ready);
        });
    }
}
