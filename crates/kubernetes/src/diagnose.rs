//! What a pod's state means for its job (catalogue P1, R1, K3; user pain 1, 2, 13, 21, 22): why it is
//! still pending, in words for the job log, and whether something happened that no amount of waiting
//! fixes (an image that cannot be pulled, a Secret missing in the job namespace, OOMKilled, eviction,
//! deletion), with the failure reason GitLab gets and the exact fix.

use crate::pod::{BUILD_CONTAINER, HELPER_CONTAINER, INIT_CONTAINER};
use crate::watch::{PodState, Warning};
use glrunner_protocol::FailureReason;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};

/// Where the job runs, for explanations.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The job namespace.
    pub namespace: String,
    /// Where the manager itself runs, if known (the usual source of a Secret to copy).
    pub home_namespace: Option<String>,
    /// `pod_disruption_budget = true`: the pod has a budget, so an eviction got past it.
    pub budget: bool,
}

/// Something about the pod that ends the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFailure {
    pub reason: FailureReason,
    pub message: String,
    /// Set when the failure is an image pull of this container that another pull policy may fix.
    pub pull_failure: Option<String>,
    /// The container that exited, when its own output may say why.
    pub exited: Option<String>,
}

impl PodFailure {
    fn new(reason: FailureReason, message: String) -> Self {
        Self {
            reason,
            message,
            pull_failure: None,
            exited: None,
        }
    }
}

/// How far the pod is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not yet seen, or pending.
    Waiting,
    /// Every container of the pod runs.
    Running,
    Failed(PodFailure),
}

fn statuses(pod: &Pod) -> impl Iterator<Item = (&ContainerStatus, bool)> {
    let s = pod.status.as_ref();
    let init = s
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c, true));
    let regular = s
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c, false));
    init.chain(regular)
}

fn is_service(name: &str) -> bool {
    ![BUILD_CONTAINER, HELPER_CONTAINER, INIT_CONTAINER].contains(&name)
}

/// The spec of the (init) container `name`.
fn container_spec<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

fn image_of(pod: &Pod, container: &str) -> String {
    container_spec(pod, container)
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn memory_limit(pod: &Pod, container: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let c = container_spec(pod, container)?;
    c.resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
        .or_else(|| {
            spec.resources
                .as_ref()?
                .limits
                .as_ref()?
                .get("memory")
                .map(|q| format!("{} for the whole pod", q.0))
        })
}

/// The pod's progress towards running every container, or what stops it.
pub fn progress(state: &PodState, ctx: &Context) -> Progress {
    if let Some(f) = failure(state, ctx) {
        return Progress::Failed(f);
    }
    let Some(pod) = state.pod.as_deref() else {
        return Progress::Waiting;
    };
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let want = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| {
            cs.iter()
                .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                .count()
        });
    if phase == "Running" && running >= want && want > 0 {
        Progress::Running
    } else {
        Progress::Waiting
    }
}

/// A failure no waiting fixes, if there is one.
pub fn failure(state: &PodState, ctx: &Context) -> Option<PodFailure> {
    let pod = state.pod.as_deref()?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let at = format!("{}/{name}", ctx.namespace);
    let status = pod.status.as_ref();
    let reason = status.and_then(|s| s.reason.clone()).unwrap_or_default();
    let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
    let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
    // An evicted pod's containers were killed: the eviction is the cause. Who disrupted a pod
    // explains its deletion better than the deletion itself, so these come first.
    if reason == "Evicted" {
        return Some(PodFailure::new(
            FailureReason::RunnerSystemFailure,
            format!(
                "the job's pod {at} was evicted by its node: {message}\n  cause: the node ran short of memory, disk or \
                 process IDs (node-pressure eviction, which PodDisruptionBudgets do not prevent)\n  fix: give the job \
                 requests that match what it uses (`memory_request`, `ephemeral_storage_request` in \
                 [runners.kubernetes]) so it lands on a node with room, then retry it"
            ),
        ));
    }
    if reason == "DeadlineExceeded" {
        return Some(PodFailure::new(
            FailureReason::JobExecutionTimeout,
            format!(
                "the job's pod {at} reached its activeDeadlineSeconds (the job timeout + 1 s) and was stopped: {message}"
            ),
        ));
    }
    let disrupted = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    if let Some(c) = disrupted {
        return Some(PodFailure::new(
            FailureReason::RunnerSystemFailure,
            disruption_message(
                &at,
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default(),
                ctx,
            ),
        ));
    }
    if state.deleted {
        return Some(PodFailure::new(
            FailureReason::RunnerSystemFailure,
            format!(
                "the job's pod {at} was deleted while the job ran\n  cause: something other than glrunner deleted \
                 it (kubectl delete, a node drain, a cleanup job)\n  fix: do not delete runner pods while their \
                 jobs run; retry the job"
            ),
        ));
    }
    // Then the containers: their reasons are more precise than the pod's phase.
    for (c, init) in statuses(pod) {
        if let Some(f) = container_failure(pod, c, init, ctx, &state.warnings) {
            return Some(f);
        }
    }
    if phase == "Failed" || phase == "Succeeded" {
        return Some(PodFailure::new(
            FailureReason::RunnerSystemFailure,
            format!(
                "the job's pod {at} stopped (phase {phase}{}{})",
                suffix(", ", &reason),
                suffix(": ", &message)
            ),
        ));
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(PodFailure::new(
            FailureReason::RunnerSystemFailure,
            format!(
                "the job's pod {at} is being deleted\n  cause: something other than glrunner deleted it (kubectl \
                 delete, a node drain)\n  fix: do not delete runner pods while their jobs run; retry the job"
            ),
        ));
    }
    // Volumes that can never be mounted: a Secret or ConfigMap missing in the job namespace (K3).
    for w in &state.warnings {
        if w.reason == "FailedMount"
            && let Some((kind, object)) = missing_object(&w.message)
        {
            return Some(PodFailure::new(
                FailureReason::RunnerConfigurationError,
                missing_object_message(&kind, &object, ctx, &w.message),
            ));
        }
    }
    None
}

/// Why a pod with the `DisruptionTarget` condition is going away, by the condition's `reason` (who
/// disrupted it), with the fix for that cause.
pub fn disruption_message(at: &str, reason: &str, message: &str, ctx: &Context) -> String {
    let head = format!("the job's pod {at} is being disrupted ({reason}: {message})");
    let (cause, fix) = match reason {
        "EvictionByEvictionAPI" if ctx.budget => (
            "it was evicted through the Eviction API although its PodDisruptionBudget forbids it (the budget \
             was deleted, or the eviction was forced by a tool that ignores budgets)"
                .to_owned(),
            "find who evicts job pods (`kubectl get events -A --field-selector reason=Evicted`) and make it \
             respect PodDisruptionBudgets; then retry the job"
                .to_owned(),
        ),
        "EvictionByEvictionAPI" => (
            "a node drain (`kubectl drain`) or an autoscaler (Cluster Autoscaler, Karpenter) evicted it through \
             the Eviction API"
                .to_owned(),
            "set `pod_disruption_budget = true` in [runners.kubernetes] so evictions wait for the job, or add the \
             annotation `\"cluster-autoscaler.kubernetes.io/safe-to-evict\" = \"false\"` to `pod_annotations`; then \
             retry the job"
                .to_owned(),
        ),
        "PreemptionByScheduler" => (
            "the scheduler preempted it to make room for a pod with a higher priority".to_owned(),
            "give job pods a PriorityClass that such pods do not outrank with `priority_class_name` in \
             [runners.kubernetes], or add capacity; then retry the job"
                .to_owned(),
        ),
        "DeletionByTaintManager" => (
            "its node got a NoExecute taint the pod does not tolerate (the node became not ready or unreachable, \
             or was tainted for maintenance)"
                .to_owned(),
            "check the node (`kubectl describe node`); if job pods should stay on such nodes, tolerate the taint \
             with `node_tolerations` in [runners.kubernetes] (for example `\"node.kubernetes.io/unreachable\" = \
             \"NoExecute\"`); then retry the job"
                .to_owned(),
        ),
        "TerminationByKubelet" => (
            "its node's kubelet stopped it: the node ran short of memory, disk or process IDs (node-pressure \
             eviction, which PodDisruptionBudgets do not prevent) or is shutting down"
                .to_owned(),
            "give the job requests that match what it uses (`memory_request`, `ephemeral_storage_request` in \
             [runners.kubernetes]) so it lands on a node with room; then retry the job"
                .to_owned(),
        ),
        "DeletionByPodGC" => (
            "the pod garbage collector removed it because its node is gone".to_owned(),
            "retry the job; if nodes are removed while jobs run, see why (autoscaler scale-down, spot \
             instances)"
                .to_owned(),
        ),
        _ => (
            "Kubernetes is removing it (an eviction, a preemption or node maintenance)".to_owned(),
            "retry the job; `kubectl get events` in the job namespace says who removed it".to_owned(),
        ),
    };
    format!("{head}\n  cause: {cause}\n  fix: {fix}")
}

/// `secret "x" not found` or `configmap "x" not found` in a kubelet message.
fn missing_object(message: &str) -> Option<(String, String)> {
    for kind in ["secret", "configmap", "configmaps", "secrets"] {
        let needle = format!("{kind} \"");
        if let Some(rest) = message.split(&needle).nth(1)
            && let Some((name, tail)) = rest.split_once('"')
            && tail.trim_start().starts_with("not found")
        {
            let kind = kind.trim_end_matches('s');
            return Some((kind.to_owned(), name.to_owned()));
        }
    }
    None
}

fn missing_object_message(kind: &str, name: &str, ctx: &Context, detail: &str) -> String {
    let ns = &ctx.namespace;
    let from = ctx
        .home_namespace
        .clone()
        .filter(|h| h != ns)
        .unwrap_or_else(|| "<the namespace it is in>".to_owned());
    let shown = if kind == "secret" {
        "Secret"
    } else {
        "ConfigMap"
    };
    format!(
        "the job's pod cannot start: the {shown} {name:?} does not exist in the job namespace {ns} ({detail})\n  \
         cause: {shown}s do not cross namespaces; it was probably created where the manager runs, not where jobs \
         run\n  fix: copy it into {ns}: `kubectl -n {from} get {kind} {name} -o yaml | sed -e '/^  namespace:/d' -e \
         '/^  resourceVersion:/d' -e '/^  uid:/d' -e '/^  creationTimestamp:/d' | kubectl -n {ns} apply -f -`, or \
         stop referring to it in [runners.kubernetes]"
    )
}

/// How an image pull failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullProblem {
    NotFound,
    Unauthorized,
    Network,
    Other,
}

/// Classify a kubelet pull message.
pub fn classify_pull(message: &str) -> PullProblem {
    let m = message.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if any(&[
        "401 unauthorized",
        "403 forbidden",
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "failed to authorize",
        "access denied",
        "denied:",
    ]) {
        PullProblem::Unauthorized
    } else if any(&[
        "not found",
        "manifest unknown",
        "name unknown",
        "repository does not exist",
    ]) {
        PullProblem::NotFound
    } else if any(&[
        "dial tcp",
        "no such host",
        "i/o timeout",
        "timeout",
        "connection refused",
        "connection reset",
        "tls handshake",
        "network is unreachable",
        "eof",
    ]) {
        PullProblem::Network
    } else {
        PullProblem::Other
    }
}

/// The cause of an image pull failure, from the container's message or the pod's warning events.
fn pull_detail(status_message: &str, warnings: &[Warning], container: &str) -> String {
    if !status_message.is_empty() && !status_message.starts_with("Back-off pulling image") {
        return status_message.to_owned();
    }
    warnings
        .iter()
        .rev()
        .filter(|w| w.field_path.is_empty() || w.field_path.contains(&format!("{{{container}}}")))
        .find(|w| w.reason == "Failed" && w.message.starts_with("Failed to pull image"))
        .map_or_else(|| status_message.to_owned(), |w| w.message.clone())
}

fn container_failure(
    pod: &Pod,
    c: &ContainerStatus,
    init: bool,
    ctx: &Context,
    warnings: &[Warning],
) -> Option<PodFailure> {
    let what = if init {
        format!("init container {}", c.name)
    } else {
        format!("container {}", c.name)
    };
    let state = c.state.as_ref()?;
    if let Some(w) = &state.waiting {
        let reason = w.reason.clone().unwrap_or_default();
        let message = w.message.clone().unwrap_or_default();
        let image = image_of(pod, &c.name);
        return match reason.as_str() {
            "ErrImagePull" | "ImagePullBackOff" => {
                let detail = pull_detail(&message, warnings, &c.name);
                let (reason, cause, fix) = match classify_pull(&detail) {
                    PullProblem::NotFound => (
                        FailureReason::RunnerConfigurationError,
                        "the image does not exist in its registry (a typo in its name or tag, or it was deleted)",
                        "fix the image name in .gitlab-ci.yml (`image:`, `services:`) or `image`/`helper_image` in \
                         [runners.kubernetes]",
                    ),
                    PullProblem::Unauthorized => (
                        FailureReason::RunnerConfigurationError,
                        "the registry wants credentials the pod does not have",
                        "create a docker-registry Secret in the job namespace (`kubectl -n <namespace> create secret \
                         docker-registry <name> --docker-server=<registry> --docker-username=<user> \
                         --docker-password=<token>`) and list it in `image_pull_secrets` in [runners.kubernetes], or \
                         set DOCKER_AUTH_CONFIG for the job",
                    ),
                    PullProblem::Network => (
                        FailureReason::ImagePullFailure,
                        "the node could not reach the registry (DNS, network, proxy or a registry outage)",
                        "check the node's access to the registry (for CRI-O and containerd also their registry \
                         configuration on the node); `retry: when: image_pull_failure` in .gitlab-ci.yml retries such \
                         jobs",
                    ),
                    PullProblem::Other => (
                        FailureReason::ImagePullFailure,
                        "the kubelet could not pull the image",
                        "read the kubelet's message above; `retry: when: image_pull_failure` in .gitlab-ci.yml retries \
                         such jobs",
                    ),
                };
                Some(PodFailure {
                    reason,
                    message: format!(
                        "the image {image:?} of the {what} cannot be pulled: {detail}\n  cause: {cause}\n  fix: {fix}"
                    ),
                    pull_failure: Some(c.name.clone()),
                    exited: None,
                })
            }
            "ErrImageNeverPull" => Some(PodFailure {
                reason: FailureReason::RunnerConfigurationError,
                message: format!(
                    "the image {image:?} of the {what} is not on the node and its pull policy is Never ({message})\n  \
                     fix: allow pulling it: `pull_policy = [\"if-not-present\"]` in [runners.kubernetes] (or the \
                     job's `image:pull_policy`)"
                ),
                pull_failure: Some(c.name.clone()),
                exited: None,
            }),
            "InvalidImageName" => Some(PodFailure::new(
                FailureReason::RunnerConfigurationError,
                format!(
                    "the image name {image:?} of the {what} is not valid ({message})\n  fix: correct it in .gitlab-ci.yml \
                     or [runners.kubernetes]"
                ),
            )),
            "CreateContainerConfigError" | "CreateContainerError" => {
                if let Some((kind, object)) = missing_object(&message) {
                    return Some(PodFailure::new(
                        FailureReason::RunnerConfigurationError,
                        missing_object_message(&kind, &object, ctx, &message),
                    ));
                }
                Some(PodFailure::new(
                    FailureReason::RunnerConfigurationError,
                    format!(
                        "the {what} cannot be created ({reason}: {message})\n  fix: correct what the message names in \
                         [runners.kubernetes] or the job's variables"
                    ),
                ))
            }
            "CrashLoopBackOff" => Some(PodFailure {
                exited: Some(c.name.clone()),
                ..PodFailure::new(
                    FailureReason::RunnerConfigurationError,
                    format!(
                        "the {what} keeps exiting ({message})\n  cause: its image has no shell glrunner can start, or \
                         its entrypoint exits\n  fix: use an image with sh or bash, or set `entrypoint: [\"\"]` for it \
                         in .gitlab-ci.yml"
                    ),
                )
            }),
            _ => None,
        };
    }
    let t = state.terminated.as_ref()?;
    let reason = t.reason.clone().unwrap_or_default();
    if reason == "OOMKilled" {
        let limit = memory_limit(pod, &c.name)
            .map_or_else(|| "no limit set on it".to_owned(), |l| format!("limit {l}"));
        let key = match c.name.as_str() {
            BUILD_CONTAINER => "`memory_limit` (or the job variable KUBERNETES_MEMORY_LIMIT)",
            HELPER_CONTAINER | INIT_CONTAINER => {
                "`helper_memory_limit` (or KUBERNETES_HELPER_MEMORY_LIMIT)"
            }
            _ => "`service_memory_limit` (or KUBERNETES_SERVICE_MEMORY_LIMIT)",
        };
        return Some(PodFailure::new(
            FailureReason::RunnerSystemFailure,
            format!(
                "the {what} ran out of memory and was killed (OOMKilled, exit code {}, {limit})\n  fix: raise {key} \
                 in [runners.kubernetes], or make the job use less memory",
                t.exit_code
            ),
        ));
    }
    if init && t.exit_code == 0 {
        return None;
    }
    // A service that exits does not end the job (as with gitlab-runner); the job's containers do.
    if !init && is_service(&c.name) {
        return None;
    }
    let detail = t.message.clone().unwrap_or_default();
    let exited = (t.exit_code != 0).then(|| c.name.clone());
    Some(PodFailure {
        exited,
        ..PodFailure::new(
            FailureReason::RunnerSystemFailure,
            format!(
                "the {what} stopped (exit code {}{}{})",
                t.exit_code,
                suffix(", ", &reason),
                suffix(": ", &detail)
            ),
        )
    })
}

/// `sep` and `s`, or nothing when `s` is empty.
fn suffix(sep: &str, s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("{sep}{s}")
    }
}

/// Why the pod is not running yet, one line per reason, for the job log.
pub fn pending_reasons(state: &PodState) -> Vec<String> {
    let Some(pod) = state.pod.as_deref() else {
        return vec!["the pod is not visible yet".to_owned()];
    };
    let mut out = Vec::new();
    if let Some(s) = &pod.status {
        for c in s.conditions.iter().flatten() {
            if c.status == "False"
                && let Some(r) = c.reason.as_deref()
            {
                let m = c.message.clone().unwrap_or_default();
                // gitlab-runner's form: `PodScheduled: Unschedulable "0/3 nodes are available…"`.
                out.push(format!("{}: {r} {m:?}", c.type_));
            }
        }
    }
    for (c, init) in statuses(pod) {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if reason.is_empty() {
                continue;
            }
            let kind = if init { "init container" } else { "container" };
            match w.message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => out.push(format!("{kind} {}: {reason}: {m}", c.name)),
                None => out.push(format!("{kind} {}: {reason}", c.name)),
            }
        }
    }
    out
}

/// Warning events from index `from` on, as lines.
pub fn warning_lines(state: &PodState, skip: usize) -> Vec<String> {
    state
        .warnings
        .iter()
        .skip(skip)
        .map(|w| format!("Warning {}: {}", w.reason, w.message))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_messages_are_classified() {
        let nf = "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/nosuch:1\": failed to resolve reference \"docker.io/library/nosuch:1\": docker.io/library/nosuch:1: not found";
        assert_eq!(classify_pull(nf), PullProblem::NotFound);
        let auth = "rpc error: code = Unknown desc = failed to pull and unpack image \"r.example.com/p:1\": failed to resolve reference \"r.example.com/p:1\": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://r.example.com/token: 401 Unauthorized";
        assert_eq!(classify_pull(auth), PullProblem::Unauthorized);
        let net = "failed to do request: Head \"https://nowhere.invalid/v2/x/manifests/1\": dial tcp: lookup nowhere.invalid on 127.0.0.53:53: no such host";
        assert_eq!(classify_pull(net), PullProblem::Network);
        assert_eq!(classify_pull("something odd"), PullProblem::Other);
    }

    #[test]
    fn missing_objects_in_kubelet_messages() {
        assert_eq!(
            missing_object(
                "MountVolume.SetUp failed for volume \"ca\" : secret \"gitlab-ca\" not found"
            ),
            Some(("secret".into(), "gitlab-ca".into()))
        );
        assert_eq!(
            missing_object("configmap \"settings\" not found"),
            Some(("configmap".into(), "settings".into()))
        );
        assert_eq!(missing_object("couldn't find key K in Secret ns/x"), None);
        let text = missing_object_message(
            "secret",
            "gitlab-ca",
            &Context {
                namespace: "ci-jobs".into(),
                home_namespace: Some("ci-system".into()),
                budget: false,
            },
            "d",
        );
        assert!(
            text.contains("kubectl -n ci-system get secret gitlab-ca -o yaml")
                && text.contains("kubectl -n ci-jobs apply -f -"),
            "{text}"
        );
    }

    fn disrupted_pod(reason: &str, message: &str, deleted: bool) -> PodState {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("runner-x".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        PodState {
            pod: Some(std::sync::Arc::new(pod)),
            deleted,
            ..PodState::default()
        }
    }

    fn ctx(budget: bool) -> Context {
        Context {
            namespace: "ci-jobs".into(),
            home_namespace: None,
            budget,
        }
    }

    /// The failure of a pod disrupted for `reason`, as the job log shows it.
    fn explained(reason: &str, budget: bool) -> String {
        let f = failure(&disrupted_pod(reason, "why", false), &ctx(budget)).expect("a failure");
        assert_eq!(f.reason, FailureReason::RunnerSystemFailure);
        f.message
    }

    #[test]
    fn an_eviction_api_call_names_drains_and_autoscalers_and_both_fixes() {
        let m = explained("EvictionByEvictionAPI", false);
        assert!(
            m.contains("is being disrupted (EvictionByEvictionAPI: why)"),
            "{m}"
        );
        assert!(
            m.contains("kubectl drain") && m.contains("Karpenter"),
            "{m}"
        );
        assert!(m.contains("`pod_disruption_budget = true`"), "{m}");
        assert!(
            m.contains("\"cluster-autoscaler.kubernetes.io/safe-to-evict\" = \"false\"")
                && m.contains("`pod_annotations`"),
            "{m}"
        );
    }

    #[test]
    fn an_eviction_past_the_jobs_budget_does_not_suggest_a_budget_again() {
        let m = explained("EvictionByEvictionAPI", true);
        assert!(
            m.contains("although its PodDisruptionBudget forbids it"),
            "{m}"
        );
        assert!(!m.contains("`pod_disruption_budget = true`"), "{m}");
    }

    #[test]
    fn a_preemption_names_priority_class_name() {
        let m = explained("PreemptionByScheduler", false);
        assert!(m.contains("higher priority"), "{m}");
        assert!(m.contains("`priority_class_name`"), "{m}");
        assert!(!m.contains("pod_disruption_budget"), "{m}");
    }

    #[test]
    fn a_taint_eviction_names_node_tolerations() {
        let m = explained("DeletionByTaintManager", false);
        assert!(m.contains("NoExecute taint"), "{m}");
        assert!(m.contains("`node_tolerations`"), "{m}");
        assert!(!m.contains("pod_disruption_budget"), "{m}");
    }

    #[test]
    fn a_kubelet_termination_names_requests_and_not_a_budget() {
        let m = explained("TerminationByKubelet", false);
        assert!(m.contains("node-pressure eviction"), "{m}");
        assert!(m.contains("`memory_request`"), "{m}");
        assert!(!m.contains("pod_disruption_budget = true"), "{m}");
    }

    #[test]
    fn a_pod_gc_deletion_and_unknown_reasons_get_their_own_text() {
        let m = explained("DeletionByPodGC", false);
        assert!(m.contains("its node is gone"), "{m}");
        let m = explained("SomethingNew", false);
        assert!(
            m.contains("(SomethingNew: why)")
                && m.contains("an eviction, a preemption or node maintenance"),
            "{m}"
        );
    }

    #[test]
    fn the_disruption_explains_a_deletion_that_followed_it() {
        let f = failure(
            &disrupted_pod("EvictionByEvictionAPI", "Eviction API: evicting", true),
            &ctx(false),
        )
        .expect("a failure");
        assert!(f.message.contains("EvictionByEvictionAPI"), "{}", f.message);
        assert!(
            !f.message.contains("was deleted while the job ran"),
            "{}",
            f.message
        );
    }

    #[test]
    fn node_pressure_eviction_does_not_suggest_a_budget() {
        use k8s_openapi::api::core::v1::PodStatus;
        let pod = Pod {
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                reason: Some("Evicted".into()),
                message: Some("The node was low on resource: memory.".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let state = PodState {
            pod: Some(std::sync::Arc::new(pod)),
            ..PodState::default()
        };
        let m = failure(&state, &ctx(false)).expect("a failure").message;
        assert!(
            m.contains("was evicted by its node: The node was low on resource: memory."),
            "{m}"
        );
        assert!(m.contains("PodDisruptionBudgets do not prevent"), "{m}");
        assert!(!m.contains("pod_disruption_budget = true"), "{m}");
        assert!(m.contains("`memory_request`"), "{m}");
    }
}
