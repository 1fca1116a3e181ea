//! The scheduler's filters for the one node, in kube-scheduler's order (NodeUnschedulable,
//! TaintToleration, NodeAffinity, NodeResourcesFit), with PersistentVolumeClaims checked first as
//! VolumeBinding's PreFilter does, and the exact `FailedScheduling` message it writes.

use super::quantity;
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, Pod, PodSpec, Toleration};
use std::collections::BTreeMap;

/// What a pod asks of a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Requests {
    pub cpu_millis: i64,
    pub memory: i64,
}

impl Requests {
    pub fn add(&mut self, other: Requests) {
        self.cpu_millis += other.cpu_millis;
        self.memory += other.memory;
    }
}

fn container_requests(c: &k8s_openapi::api::core::v1::Container) -> Requests {
    let res = c.resources.as_ref();
    let get = |name: &str| -> Option<String> {
        let req = res
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(name));
        // A limit without a request requests the limit (the apiserver's defaulting).
        let lim = res
            .and_then(|r| r.limits.as_ref())
            .and_then(|m| m.get(name));
        req.or(lim).map(|q| q.0.clone())
    };
    Requests {
        cpu_millis: get("cpu")
            .and_then(|q| quantity::cpu_millis(&q))
            .unwrap_or(0),
        memory: get("memory")
            .and_then(|q| quantity::whole_units(&q))
            .unwrap_or(0),
    }
}

/// A pod's effective request: its containers' sum, or its largest init container if larger.
pub(crate) fn pod_requests(spec: &PodSpec) -> Requests {
    let mut sum = Requests::default();
    for c in &spec.containers {
        sum.add(container_requests(c));
    }
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory = sum.memory.max(r.memory);
    }
    sum
}

/// Why the pod does not fit: the reasons of the first failing filter, and whether preemption
/// could ever help (it cannot for labels and taints; resources could be freed).
struct Failure {
    reasons: Vec<String>,
    resources: bool,
}

/// Check `pod` against `node` with `used` already requested by its pods and `pods_on_node`
/// of them; `claims` are the claim names the node can mount. Returns the FailedScheduling
/// message when it does not fit.
pub(crate) fn check(
    pod: &Pod,
    node: &Node,
    used: Requests,
    pods_on_node: usize,
    claims: &BTreeMap<String, std::path::PathBuf>,
) -> Result<(), String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Err("pod has no spec".to_owned());
    };
    // VolumeBinding's PreFilter: a missing claim fails before any node is looked at.
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for v in spec.volumes.iter().flatten() {
        if let Some(pvc) = &v.persistent_volume_claim
            && !claims.contains_key(&format!("{ns}/{}", pvc.claim_name))
            && !claims.contains_key(&pvc.claim_name)
        {
            return Err(format!(
                "0/1 nodes are available: persistentvolumeclaim \"{}\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
                pvc.claim_name
            ));
        }
    }
    match filter(spec, node, used, pods_on_node) {
        None => Ok(()),
        Some(f) => {
            let mut reasons = f.reasons;
            reasons.sort();
            let preemption = if f.resources {
                "1 No preemption victims found for incoming pod"
            } else {
                "1 Preemption is not helpful for scheduling"
            };
            Err(format!(
                "0/1 nodes are available: {}. preemption: 0/1 nodes are available: {preemption}.",
                reasons.join(", ")
            ))
        }
    }
}

fn filter(spec: &PodSpec, node: &Node, used: Requests, pods_on_node: usize) -> Option<Failure> {
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let node_spec = node.spec.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    // NodeUnschedulable
    if node_spec.unschedulable == Some(true) {
        let tolerated = tolerations
            .iter()
            .any(|t| tolerates(t, "node.kubernetes.io/unschedulable", "", "NoSchedule"));
        if !tolerated {
            return Some(Failure {
                reasons: vec!["1 node(s) were unschedulable".to_owned()],
                resources: false,
            });
        }
    }
    // TaintToleration: the first untolerated NoSchedule/NoExecute taint.
    for taint in node_spec.taints.iter().flatten() {
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        let value = taint.value.clone().unwrap_or_default();
        if !tolerations
            .iter()
            .any(|t| tolerates(t, &taint.key, &value, &taint.effect))
        {
            return Some(Failure {
                reasons: vec![format!(
                    "1 node(s) had untolerated taint {{{}: {}}}",
                    taint.key, value
                )],
                resources: false,
            });
        }
    }
    // NodeAffinity: nodeSelector and required node affinity.
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity_ok =
        spec.affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_none_or(|sel| {
                sel.node_selector_terms.iter().any(|term| {
                    let exprs_ok =
                        term.match_expressions.iter().flatten().all(|r| {
                            requirement_matches(r, labels.get(&r.key).map(String::as_str))
                        });
                    let fields_ok = term.match_fields.iter().flatten().all(|r| {
                        let value = (r.key == "metadata.name").then_some(node_name.as_str());
                        requirement_matches(r, value)
                    });
                    let empty = term.match_expressions.as_ref().is_none_or(Vec::is_empty)
                        && term.match_fields.as_ref().is_none_or(Vec::is_empty);
                    !empty && exprs_ok && fields_ok
                })
            });
    if !selector_ok || !affinity_ok {
        return Some(Failure {
            reasons: vec!["1 node(s) didn't match Pod's node affinity/selector".to_owned()],
            resources: false,
        });
    }
    // NodeResourcesFit
    let alloc = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let want = pod_requests(spec);
    let mut reasons = Vec::new();
    let max_pods = alloc
        .get("pods")
        .and_then(|q| quantity::whole_units(&q.0))
        .unwrap_or(110);
    if pods_on_node as i64 + 1 > max_pods {
        reasons.push("1 Too many pods".to_owned());
    }
    let cpu = alloc
        .get("cpu")
        .and_then(|q| quantity::cpu_millis(&q.0))
        .unwrap_or(i64::MAX);
    if want.cpu_millis > 0 && used.cpu_millis + want.cpu_millis > cpu {
        reasons.push("1 Insufficient cpu".to_owned());
    }
    let memory = alloc
        .get("memory")
        .and_then(|q| quantity::whole_units(&q.0))
        .unwrap_or(i64::MAX);
    if want.memory > 0 && used.memory + want.memory > memory {
        reasons.push("1 Insufficient memory".to_owned());
    }
    if reasons.is_empty() {
        None
    } else {
        Some(Failure {
            reasons,
            resources: true,
        })
    }
}

/// Whether a toleration tolerates the taint (key, value, effect).
pub(crate) fn tolerates(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    if let Some(e) = t.effect.as_deref()
        && !e.is_empty()
        && e != effect
    {
        return false;
    }
    let operator = t.operator.as_deref().unwrap_or("Equal");
    match t.key.as_deref().unwrap_or_default() {
        // An empty key with Exists tolerates everything.
        "" => operator == "Exists",
        k if k != key => false,
        _ => match operator {
            "Exists" => true,
            _ => t.value.as_deref().unwrap_or_default() == value,
        },
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(extra: serde_json::Value) -> Node {
        let mut n = json!({"metadata":{"name":"n1","labels":{"kubernetes.io/os":"linux","pool":"ci"}},
            "spec":{},"status":{"allocatable":{"cpu":"2","memory":"1Gi","pods":"3"}}});
        if let Some(spec) = extra.get("spec") {
            n["spec"] = spec.clone();
        }
        serde_json::from_value(n).expect("node")
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut s = json!({"containers":[{"name":"c","image":"i"}]});
        if let (Some(base), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(json!({"metadata":{"name":"p","namespace":"ci"},"spec":s}))
            .expect("pod")
    }

    fn check_simple(p: &Pod, n: &Node) -> Result<(), String> {
        check(p, n, Requests::default(), 0, &BTreeMap::new())
    }

    #[test]
    fn selectors_and_affinity() {
        let n = node(json!({}));
        assert!(check_simple(&pod(json!({"nodeSelector":{"pool":"ci"}})), &n).is_ok());
        assert_eq!(
            check_simple(&pod(json!({"nodeSelector":{"pool":"gpu"}})), &n),
            Err("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".to_owned())
        );
        let aff = |op: &str, vals: serde_json::Value| {
            pod(
                json!({"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":op,"values":vals}]}]}}}}),
            )
        };
        assert!(check_simple(&aff("In", json!(["ci", "x"])), &n).is_ok());
        assert!(check_simple(&aff("NotIn", json!(["ci"])), &n).is_err());
        assert!(check_simple(&aff("Exists", json!(null)), &n).is_ok());
        assert!(check_simple(&aff("DoesNotExist", json!(null)), &n).is_err());
    }

    #[test]
    fn taints_need_tolerations() {
        let n = node(
            json!({"spec":{"taints":[{"key":"dedicated","value":"ci","effect":"NoSchedule"}]}}),
        );
        assert_eq!(
            check_simple(&pod(json!({})), &n),
            Err("0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: ci}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".to_owned())
        );
        let tol = pod(
            json!({"tolerations":[{"key":"dedicated","operator":"Equal","value":"ci","effect":"NoSchedule"}]}),
        );
        assert!(check_simple(&tol, &n).is_ok());
        let all = pod(json!({"tolerations":[{"operator":"Exists"}]}));
        assert!(check_simple(&all, &n).is_ok());
        let soft = node(json!({"spec":{"taints":[{"key":"x","effect":"PreferNoSchedule"}]}}));
        assert!(check_simple(&pod(json!({})), &soft).is_ok());
    }

    #[test]
    fn resources_and_claims() {
        let n = node(json!({}));
        let big = pod(
            json!({"containers":[{"name":"c","image":"i","resources":{"requests":{"memory":"800Mi","cpu":"500m"}}}]}),
        );
        assert!(check(&big, &n, Requests::default(), 0, &BTreeMap::new()).is_ok());
        let used = Requests {
            cpu_millis: 1800,
            memory: 300 * 1024 * 1024,
        };
        assert_eq!(
            check(&big, &n, used, 1, &BTreeMap::new()),
            Err("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".to_owned())
        );
        assert!(
            check(
                &pod(json!({})),
                &n,
                Requests::default(),
                3,
                &BTreeMap::new()
            )
            .is_err()
        );
        let claim =
            pod(json!({"volumes":[{"name":"v","persistentVolumeClaim":{"claimName":"cache"}}]}));
        assert_eq!(
            check_simple(&claim, &n),
            Err("0/1 nodes are available: persistentvolumeclaim \"cache\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".to_owned())
        );
        let mut claims = BTreeMap::new();
        claims.insert("ci/cache".to_owned(), std::path::PathBuf::from("/tmp"));
        assert!(check(&claim, &n, Requests::default(), 0, &claims).is_ok());
    }
}
