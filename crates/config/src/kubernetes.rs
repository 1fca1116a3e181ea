//! `[runners.kubernetes]`: every key gitlab-runner reads, typed, named exactly after its TOML key.
//! Units are kept as written: seconds as integers, Kubernetes quantities (`"500m"`, `"1Gi"`) as strings.
//! `None` (or an empty list/map) means "not set"; the Kubernetes executor applies gitlab-runner's
//! defaults, some of which the accessor methods here provide.

use crate::duration::GoDuration;
use crate::environment::Environment;
use glrunner_protocol::Secret;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

type Map = BTreeMap<String, String>;

/// `[runners.kubernetes]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesConfig {
    // Connection. Empty `host` means in-cluster config, then the default kubeconfig.
    pub host: Option<String>,
    pub context: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_overwrite_allowed: Option<bool>,

    // Placement and identity.
    pub namespace: Option<String>,
    /// A regex job variable `KUBERNETES_NAMESPACE_OVERWRITE` must match.
    pub namespace_overwrite_allowed: Option<String>,
    pub namespace_per_job: Option<bool>,
    pub image: Option<String>,
    pub service_account: Option<String>,
    pub service_account_overwrite_allowed: Option<String>,
    pub automount_service_account_token: Option<bool>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub node_selector: Map,
    pub node_selector_overwrite_allowed: Option<String>,
    /// `"key=value" = "Effect"`; a key without `=` means operator `Exists`.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub node_tolerations: Map,
    pub node_tolerations_overwrite_allowed: Option<String>,
    pub affinity: Option<Affinity>,
    pub scheduler_name: Option<String>,
    pub priority_class_name: Option<String>,
    pub runtime_class_name: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub pod_labels: Map,
    pub pod_labels_overwrite_allowed: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub pod_annotations: Map,
    pub pod_annotations_overwrite_allowed: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_aliases: Vec<HostAlias>,
    pub dns_policy: Option<DnsPolicy>,
    pub dns_config: Option<DnsConfig>,
    /// Pod spec patches (need `FF_USE_ADVANCED_POD_SPEC_CONFIGURATION`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pod_spec: Vec<PodSpecPatch>,
    pub pod_disruption_budget: Option<bool>,

    // Security.
    pub privileged: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// gitlab-runner drops `NET_RAW` by default unless it is in `cap_add`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    pub pod_security_context: Option<PodSecurityContext>,
    pub build_container_security_context: Option<ContainerSecurityContext>,
    pub helper_container_security_context: Option<ContainerSecurityContext>,
    pub service_container_security_context: Option<ContainerSecurityContext>,
    pub init_permissions_container_security_context: Option<ContainerSecurityContext>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_users: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_images: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_services: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_pull_policies: Vec<PullPolicy>,

    // Build container resources; every key has an `_overwrite_max_allowed` companion that caps the
    // job variable `KUBERNETES_<KEY>`.
    pub cpu_limit: Option<String>,
    pub cpu_limit_overwrite_max_allowed: Option<String>,
    pub cpu_request: Option<String>,
    pub cpu_request_overwrite_max_allowed: Option<String>,
    pub memory_limit: Option<String>,
    pub memory_limit_overwrite_max_allowed: Option<String>,
    pub memory_request: Option<String>,
    pub memory_request_overwrite_max_allowed: Option<String>,
    pub ephemeral_storage_limit: Option<String>,
    pub ephemeral_storage_limit_overwrite_max_allowed: Option<String>,
    pub ephemeral_storage_request: Option<String>,
    pub ephemeral_storage_request_overwrite_max_allowed: Option<String>,
    // Service containers.
    pub service_cpu_limit: Option<String>,
    pub service_cpu_limit_overwrite_max_allowed: Option<String>,
    pub service_cpu_request: Option<String>,
    pub service_cpu_request_overwrite_max_allowed: Option<String>,
    pub service_memory_limit: Option<String>,
    pub service_memory_limit_overwrite_max_allowed: Option<String>,
    pub service_memory_request: Option<String>,
    pub service_memory_request_overwrite_max_allowed: Option<String>,
    pub service_ephemeral_storage_limit: Option<String>,
    pub service_ephemeral_storage_limit_overwrite_max_allowed: Option<String>,
    pub service_ephemeral_storage_request: Option<String>,
    pub service_ephemeral_storage_request_overwrite_max_allowed: Option<String>,
    // Helper container (also used by the init-permissions container).
    pub helper_cpu_limit: Option<String>,
    pub helper_cpu_limit_overwrite_max_allowed: Option<String>,
    pub helper_cpu_request: Option<String>,
    pub helper_cpu_request_overwrite_max_allowed: Option<String>,
    pub helper_memory_limit: Option<String>,
    pub helper_memory_limit_overwrite_max_allowed: Option<String>,
    pub helper_memory_request: Option<String>,
    pub helper_memory_request_overwrite_max_allowed: Option<String>,
    pub helper_ephemeral_storage_limit: Option<String>,
    pub helper_ephemeral_storage_limit_overwrite_max_allowed: Option<String>,
    pub helper_ephemeral_storage_request: Option<String>,
    pub helper_ephemeral_storage_request_overwrite_max_allowed: Option<String>,
    // Pod-level `spec.resources`.
    pub pod_cpu_limit: Option<String>,
    pub pod_cpu_limit_overwrite_max_allowed: Option<String>,
    pub pod_cpu_request: Option<String>,
    pub pod_cpu_request_overwrite_max_allowed: Option<String>,
    pub pod_memory_limit: Option<String>,
    pub pod_memory_limit_overwrite_max_allowed: Option<String>,
    pub pod_memory_request: Option<String>,
    pub pod_memory_request_overwrite_max_allowed: Option<String>,

    // Images.
    pub helper_image: Option<String>,
    pub helper_image_flavor: Option<String>,
    pub helper_image_autoset_arch_and_os: Option<bool>,
    /// One policy or a list; several are tried in order after an image pull failure.
    pub pull_policy: Option<PullPolicies>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    pub use_service_account_image_pull_secrets: Option<bool>,

    // Volumes and services.
    #[serde(skip_serializing_if = "Volumes::is_empty")]
    pub volumes: Volumes,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<KubernetesService>,

    // Timing and retries.
    /// Seconds between pod status checks (default 3).
    pub poll_interval: Option<i64>,
    /// Seconds to wait for the pod to run (default 180).
    pub poll_timeout: Option<i64>,
    pub cleanup_grace_period_seconds: Option<i64>,
    pub pod_termination_grace_period_seconds: Option<i64>,
    /// Default 5m.
    pub cleanup_resources_timeout: Option<GoDuration>,
    /// 0 disables the check (default); tries are 5 s apart.
    pub resource_availability_check_max_attempts: Option<i64>,
    /// Kubernetes API attempts (default 5).
    pub retry_limit: Option<i64>,
    /// Milliseconds (default 2000, minimum 500).
    pub retry_backoff_max: Option<i64>,
    /// Error message substring → attempts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub retry_limits: BTreeMap<String, i64>,

    // Miscellaneous.
    pub container_lifecycle: Option<ContainerLifecycle>,
    pub logs_base_dir: Option<String>,
    pub scripts_base_dir: Option<String>,
    /// Default true.
    pub print_pod_warning_events: Option<bool>,
    pub suspend_pvc_size: Option<String>,
    pub suspend_pvc_storage_class: Option<String>,
    pub autoscaler: Option<KubernetesAutoscaler>,
}

impl KubernetesConfig {
    /// `namespace`, or `default`.
    pub fn namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
    }

    /// `poll_interval` (3 s when unset or not positive).
    pub fn poll_interval(&self) -> Duration {
        positive_secs(self.poll_interval, 3)
    }

    /// `poll_timeout` (180 s when unset or not positive).
    pub fn poll_timeout(&self) -> Duration {
        positive_secs(self.poll_timeout, 180)
    }

    /// `retry_limit` (5 when unset or not positive).
    pub fn retry_limit(&self) -> u32 {
        self.retry_limit
            .filter(|n| *n > 0)
            .map_or(5, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// `retry_backoff_max` in milliseconds: 2000 when unset, at least 500.
    pub fn retry_backoff_max(&self) -> Duration {
        let ms = self
            .retry_backoff_max
            .filter(|n| *n > 0)
            .unwrap_or(2000)
            .max(500);
        Duration::from_millis(ms.unsigned_abs())
    }

    /// `cleanup_resources_timeout` (5 min).
    pub fn cleanup_resources_timeout(&self) -> Duration {
        self.cleanup_resources_timeout
            .map_or(Duration::from_secs(300), |d| d.0)
    }

    /// `print_pod_warning_events` (true).
    pub fn print_pod_warning_events(&self) -> bool {
        self.print_pod_warning_events.unwrap_or(true)
    }

    /// The pull policies in order; empty means the Kubernetes default.
    pub fn pull_policies(&self) -> &[PullPolicy] {
        self.pull_policy.as_ref().map_or(&[], |p| &p.0)
    }
}

fn positive_secs(value: Option<i64>, default: u64) -> Duration {
    Duration::from_secs(value.filter(|n| *n > 0).map_or(default, i64::unsigned_abs))
}

/// An image pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The name Kubernetes uses in a pod spec.
    pub fn as_kubernetes(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// `pull_policy = "always"` or `pull_policy = ["if-not-present", "always"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullPolicies(pub Vec<PullPolicy>);

impl Serialize for PullPolicies {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PullPolicies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PullPolicies;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pull policy (always, if-not-present, never) or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PullPolicies, E> {
                let p = PullPolicy::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(PullPolicies(vec![p]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PullPolicies, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element()? {
                    out.push(p);
                }
                Ok(PullPolicies(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `dns_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsPolicy {
    None,
    Default,
    ClusterFirst,
    ClusterFirstWithHostNet,
}

impl DnsPolicy {
    pub fn as_kubernetes(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Default => "Default",
            Self::ClusterFirst => "ClusterFirst",
            Self::ClusterFirstWithHostNet => "ClusterFirstWithHostNet",
        }
    }
}

/// `[runners.kubernetes.dns_config]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<DnsConfigOption>,
}

/// `[[runners.kubernetes.dns_config.options]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfigOption {
    pub name: String,
    pub value: Option<String>,
}

/// `[[runners.kubernetes.host_aliases]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// `[[runners.kubernetes.pod_spec]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodSpecPatch {
    pub name: String,
    pub patch: Option<String>,
    pub patch_path: Option<PathBuf>,
    pub patch_type: Option<PatchType>,
}

/// How a pod spec patch applies (default `strategic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchType {
    Strategic,
    Merge,
    Json,
}

/// `[runners.kubernetes.pod_security_context]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodSecurityContext {
    pub fs_group: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub run_as_user: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    pub selinux_type: Option<String>,
    pub seccomp_profile: Option<SeccompProfile>,
    pub app_armor_profile: Option<AppArmorProfile>,
}

/// `[runners.kubernetes.*_container_security_context]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSecurityContext {
    pub capabilities: Option<Capabilities>,
    pub privileged: Option<bool>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub selinux_type: Option<String>,
    /// `Default` or `Unmasked`.
    pub proc_mount: Option<String>,
    pub seccomp_profile: Option<SeccompProfile>,
    pub app_armor_profile: Option<AppArmorProfile>,
}

/// `capabilities = { add = [...], drop = [...] }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// `seccomp_profile`: `type` is `RuntimeDefault`, `Localhost` or `Unconfined`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeccompProfile {
    pub r#type: Option<String>,
    pub localhost_profile: Option<String>,
}

/// `app_armor_profile`: `type` is `RuntimeDefault`, `Localhost` or `Unconfined`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppArmorProfile {
    pub r#type: Option<String>,
    pub localhost_profile: Option<String>,
}

/// `[runners.kubernetes.affinity]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Affinity {
    pub node_affinity: Option<NodeAffinity>,
    pub pod_affinity: Option<PodAffinity>,
    pub pod_anti_affinity: Option<PodAffinity>,
}

/// `[runners.kubernetes.affinity.node_affinity]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeAffinity {
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

/// `required_during_scheduling_ignored_during_execution` of a node affinity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeSelector {
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// One node selector term: all its requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeSelectorTerm {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<SelectorRequirement>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<SelectorRequirement>,
}

/// `{ key, operator, values }` (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A weighted node selector term.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreferredSchedulingTerm {
    pub weight: i32,
    pub preference: NodeSelectorTerm,
}

/// `pod_affinity` and `pod_anti_affinity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodAffinity {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_during_scheduling_ignored_during_execution: Vec<PodAffinityTerm>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<WeightedPodAffinityTerm>,
}

/// Pods (selected by labels, in namespaces) this pod should or must be placed with or away from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodAffinityTerm {
    pub label_selector: Option<LabelSelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    pub topology_key: Option<String>,
    pub namespace_selector: Option<LabelSelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_label_keys: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatch_label_keys: Vec<String>,
}

/// A weighted pod affinity term.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WeightedPodAffinityTerm {
    pub weight: i32,
    pub pod_affinity_term: PodAffinityTerm,
}

/// `match_labels` and `match_expressions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub match_labels: Map,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<SelectorRequirement>,
}

/// `[runners.kubernetes.volumes]`: mounted into the build, helper, init and service containers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Volumes {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_path: Vec<HostPathVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pvc: Vec<PvcVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_map: Vec<ConfigMapVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret: Vec<SecretVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub empty_dir: Vec<EmptyDirVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub csi: Vec<CsiVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nfs: Vec<NfsVolume>,
}

impl Volumes {
    pub fn is_empty(&self) -> bool {
        self.host_path.is_empty()
            && self.pvc.is_empty()
            && self.config_map.is_empty()
            && self.secret.is_empty()
            && self.empty_dir.is_empty()
            && self.csi.is_empty()
            && self.nfs.is_empty()
    }
}

/// `[[runners.kubernetes.volumes.host_path]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostPathVolume {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub read_only: Option<bool>,
    /// Defaults to `mount_path`.
    pub host_path: Option<String>,
    pub mount_propagation: Option<String>,
}

/// `[[runners.kubernetes.volumes.pvc]]`; `name` may use `$CI_CONCURRENT_ID`-style variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PvcVolume {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub read_only: Option<bool>,
    pub mount_propagation: Option<String>,
}

/// `[[runners.kubernetes.volumes.config_map]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigMapVolume {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub read_only: Option<bool>,
    /// Key → path inside the mount.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub items: Map,
}

/// `[[runners.kubernetes.volumes.secret]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretVolume {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub items: Map,
}

/// `[[runners.kubernetes.volumes.empty_dir]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmptyDirVolume {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    /// `""` (node disk) or `"Memory"`.
    pub medium: Option<String>,
    pub size_limit: Option<String>,
    pub mount_propagation: Option<String>,
}

/// `[[runners.kubernetes.volumes.csi]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsiVolume {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub driver: String,
    pub fs_type: Option<String>,
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub volume_attributes: Map,
}

/// `[[runners.kubernetes.volumes.nfs]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NfsVolume {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub server: String,
    pub path: String,
    pub read_only: Option<bool>,
}

/// `[[runners.kubernetes.services]]`: services added before the job's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesService {
    pub name: String,
    pub alias: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Environment::is_empty")]
    pub environment: Environment,
    pub suspend_data_path: Option<String>,
}

/// `[runners.kubernetes.container_lifecycle]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerLifecycle {
    pub post_start: Option<LifecycleHandler>,
    pub pre_stop: Option<LifecycleHandler>,
}

/// One of `exec`, `http_get` or `tcp_socket`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LifecycleHandler {
    pub exec: Option<ExecAction>,
    pub http_get: Option<HttpGetAction>,
    pub tcp_socket: Option<TcpSocketAction>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpGetAction {
    pub host: Option<String>,
    pub port: i64,
    pub path: Option<String>,
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TcpSocketAction {
    pub host: Option<String>,
    pub port: i64,
}

/// `[runners.kubernetes.autoscaler]`: pause pods that keep nodes warm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesAutoscaler {
    pub max_pause_pods: Option<i64>,
    pub pause_pod_image: Option<String>,
    pub pause_pod_priority_class_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pause_pod_image_pull_secrets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<AutoscalerPolicy>,
}

/// `[[runners.kubernetes.autoscaler.policy]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoscalerPolicy {
    /// Cron-like periods, e.g. `"* 8-18 * * mon-fri"`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<String>,
    pub timezone: Option<String>,
    pub idle_count: Option<i64>,
    pub idle_time: Option<GoDuration>,
    pub scale_factor: Option<f64>,
    pub scale_factor_limit: Option<i64>,
    pub preemptive_mode: Option<bool>,
}
