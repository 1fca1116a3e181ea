//! `pods/exec`, `pods/attach` and `pods/log`, served from the process kubelet's containers the
//! way kube-apiserver and a kubelet serve them: the container checks and their exact messages,
//! the websocket upgrade (`v5.channel.k8s.io`, falling back to `v4.channel.k8s.io`; SPDY is not
//! served — kubectl uses websockets since 1.30), the exit status as a `Status` on channel 3, and
//! `pods/log` as a plain streaming response.

mod exec;
mod log;
mod websocket;

pub use websocket::{V4_PROTOCOL, V5_PROTOCOL};

use crate::api::error_response;
use crate::kubelet::Shared;
use crate::server::{Response, SubresourceHandler, SubresourceRequest};
use crate::status::{ApiError, GroupResource};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The streaming subresources of the process kubelet.
pub(crate) struct Handler {
    s: Arc<Shared>,
}

impl Handler {
    pub fn new(s: Arc<Shared>) -> Self {
        Self { s }
    }
}

impl SubresourceHandler for Handler {
    fn handle(
        &self,
        request: SubresourceRequest,
    ) -> Pin<Box<dyn Future<Output = Response> + Send>> {
        let s = self.s.clone();
        Box::pin(async move {
            match request.subresource.as_str() {
                "log" => log::serve(s, request).await,
                "exec" | "attach" => exec::serve(s, request).await,
                other => error_response(&ApiError::bad_request(format!(
                    "pods/{other} is not served by the process kubelet of this test API server"
                ))),
            }
        })
    }
}

/// The pod a stream request names (else a 404) and the container it asks for.
pub(crate) fn pod_and_container(
    req: &SubresourceRequest,
    requested: Option<&str>,
) -> Result<(Value, String), ApiError> {
    let pod = req
        .store
        .get("pods", &req.namespace, &req.name)
        .ok_or_else(|| ApiError::not_found(&GroupResource::new("", "pods"), &req.name))?;
    let container = pick_container(&pod, requested)?;
    Ok((pod, container))
}

/// The apiserver's choice of container: the one named (it must exist), else the only one.
fn pick_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let names = |list: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let init = names("initContainers");
    let regular = names("containers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if init.iter().chain(&regular).any(|n| n == c) {
                Ok(c.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None => match regular.len() {
            1 => Ok(regular[0].clone()),
            0 => Err(ApiError::bad_request(format!(
                "pod {name} does not have a container"
            ))),
            _ => {
                let all: Vec<String> = init.into_iter().chain(regular).collect();
                Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all.join(" ")
                )))
            }
        },
    }
}

/// What the API server says when it cannot reach the node's kubelet.
pub(crate) fn dial_error(s: &Shared) -> Option<ApiError> {
    (!s.reachable.load(Ordering::SeqCst)).then(|| {
        ApiError::internal(
            "error dialing backend: dial tcp 127.0.0.1:10250: connect: connection refused",
        )
    })
}

/// A `Status` as the status channel carries it (no kind or apiVersion).
pub(crate) fn channel_status(err: &ApiError) -> Value {
    let mut v = json!({"metadata": {}, "status": "Failure", "message": err.message,
        "reason": err.reason, "code": err.code});
    if let Some(d) = &err.details {
        v["details"] = d.clone();
    }
    v
}

/// Counts a stream as open while it lives.
pub(crate) struct OpenStream {
    s: Arc<Shared>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl OpenStream {
    pub fn new(s: &Arc<Shared>) -> Result<Self, ApiError> {
        let permit = s.stream_slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::internal(
                "too many open exec, attach and log streams on this node; close some (KubeletOptions::max_streams)",
            )
        })?;
        s.open_streams.fetch_add(1, Ordering::SeqCst);
        Ok(Self {
            s: s.clone(),
            _permit: permit,
        })
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.s.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The pod's `status.containerStatuses` entry (or init) for `container`.
pub(crate) fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| {
            pod.pointer(&format!("/status/{k}"))
                .and_then(Value::as_array)
        })
        .flatten()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
}
