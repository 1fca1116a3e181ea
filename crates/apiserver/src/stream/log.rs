//! `pods/log`: a container's log as the kubelet serves it from its CRI log files — the current or
//! `previous` start, `sinceTime`/`sinceSeconds`, `tailLines`, `timestamps`, `limitBytes`,
//! `follow` until the container ends — with the kubelet's messages for containers that have no
//! log yet (`is waiting to start: ContainerCreating`, `image can't be pulled`, …).

use super::{OpenStream, container_status, dial_error, pod_and_container};
use crate::api::error_response;
use crate::kubelet::Shared;
use crate::kubelet::logfile::{self, ReadOptions};
use crate::server::{Body, Response, SubresourceRequest};
use crate::status::{ApiError, FieldError};
use crate::store::str_at;
use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::Value;
use std::io::{Read as _, Seek as _};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The longest a `follow` stays open (kube-apiserver's request timeouts are of this order).
const MAX_FOLLOW: Duration = Duration::from_secs(4 * 3600);
/// Rechecks of a followed log while nothing is written (each waits for a write or a second).
const MAX_IDLE_CHECKS: usize = 4 * 3600;

struct Params {
    container: Option<String>,
    follow: bool,
    previous: bool,
    timestamps: bool,
    since: Option<jiff::Timestamp>,
    tail_lines: Option<usize>,
    limit_bytes: Option<u64>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn params(name: &str, query: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params {
        container: None,
        follow: false,
        previous: false,
        timestamps: false,
        since: None,
        tail_lines: None,
        limit_bytes: None,
    };
    let mut errors = Vec::new();
    let mut since_seconds = None;
    let mut since_time = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "container" => p.container = Some(v.into_owned()),
            "follow" => p.follow = truthy(&v),
            "previous" => p.previous = truthy(&v),
            "timestamps" => p.timestamps = truthy(&v),
            "sinceSeconds" => match v.parse::<i64>() {
                Ok(n) if n >= 1 => since_seconds = Some(n),
                _ => errors.push(FieldError::invalid(
                    "sinceSeconds",
                    &v,
                    "must be greater than 0",
                )),
            },
            "sinceTime" => match v.parse::<jiff::Timestamp>() {
                Ok(t) => since_time = Some(t),
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse"
                    )));
                }
            },
            "tailLines" => match v.parse::<i64>() {
                Ok(n) if n >= 0 => p.tail_lines = Some(n as usize),
                _ => errors.push(FieldError::invalid(
                    "tailLines",
                    &v,
                    "must be greater than or equal to 0",
                )),
            },
            "limitBytes" => match v.parse::<i64>() {
                Ok(n) if n >= 1 => p.limit_bytes = Some(n as u64),
                _ => errors.push(FieldError::invalid(
                    "limitBytes",
                    &v,
                    "must be greater than 0",
                )),
            },
            _ => {}
        }
    }
    if since_seconds.is_some() && since_time.is_some() {
        errors.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", name, &errors));
    }
    p.since = since_time.or_else(|| {
        since_seconds.and_then(|n| {
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(n))
                .ok()
        })
    });
    Ok(p)
}

pub(crate) async fn serve(s: Arc<Shared>, req: SubresourceRequest) -> Response {
    match serve_inner(s, req) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

/// The kubelet's check of which start of the container to read (`previous` or current).
fn which_start(pod: &Value, container: &str, previous: bool) -> Result<Start, ApiError> {
    let name = str_at(pod, "/metadata/name");
    let Some(st) = container_status(pod, container) else {
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {name:?} is waiting to start - no logs yet"
        )));
    };
    let has = |p: &str| st.pointer(p).is_some_and(|v| !v.is_null());
    let last_terminated = has("/lastState/terminated");
    if previous {
        if !last_terminated {
            return Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            )));
        }
        // The last start that ended before the current one.
        return Ok(if has("/state/waiting") {
            Start::Latest
        } else {
            Start::BeforeLatest
        });
    }
    if has("/state/running") || has("/state/terminated") || last_terminated {
        return Ok(Start::Latest);
    }
    let reason = st
        .pointer("/state/waiting/reason")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let why = match reason {
        "ErrImagePull" => "image can't be pulled".to_owned(),
        "ImagePullBackOff" => "trying and failing to pull image".to_owned(),
        "" => {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {name:?} is waiting to start - no logs yet"
            )));
        }
        other => other.to_owned(),
    };
    Err(ApiError::bad_request(format!(
        "container {container:?} in pod {name:?} is waiting to start: {why}"
    )))
}

enum Start {
    Latest,
    BeforeLatest,
}

fn serve_inner(s: Arc<Shared>, req: SubresourceRequest) -> Result<Response, ApiError> {
    let p = params(&req.name, req.request.uri().query())?;
    let (pod, container) = pod_and_container(&req, p.container.as_deref())?;
    if str_at(&pod, "/spec/nodeName").is_empty() {
        // A pod without a node has no log yet: an empty answer, as kube-apiserver gives.
        return Ok(text(Body::empty()));
    }
    if let Some(e) = dial_error(&s) {
        return Err(e);
    }
    let start = which_start(&pod, &container, p.previous)?;
    let live = s.live(&req.namespace, &req.name);
    let instance = live
        .and_then(|l| l.container(&container))
        .and_then(|lc| {
            let n = lc.logs.len();
            match start {
                Start::Latest => lc.logs.last().cloned(),
                Start::BeforeLatest if n >= 2 => lc.logs.get(n - 2).cloned(),
                Start::BeforeLatest => None,
            }
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "container {container:?} in pod {:?} is waiting to start - no logs yet",
                req.name
            ))
        })?;
    let open = OpenStream::new(&s)?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let mut drop_rx = s.drop_streams.subscribe();
    let opts = ReadOptions {
        since: p.since,
        tail_lines: p.tail_lines,
        timestamps: p.timestamps,
    };
    let follow = p.follow && !p.previous;
    let limit = p.limit_bytes;
    tokio::spawn(async move {
        let _open = open;
        let path = instance.writer.path().to_owned();
        let mut written = instance.writer.subscribe();
        let mut finished = instance.finished.clone();
        let mut offset = 0u64;
        let mut pending = Vec::new();
        let mut sent = 0u64;
        let mut first = true;
        let deadline = tokio::time::Instant::now() + MAX_FOLLOW;
        for _ in 0..MAX_IDLE_CHECKS {
            // Whether the start had ended before this read: then what is read is all there is.
            let done = *finished.borrow();
            let mut fresh = Vec::new();
            if let Ok(mut f) = std::fs::File::open(&path)
                && f.seek(std::io::SeekFrom::Start(offset)).is_ok()
            {
                let _ = f.read_to_end(&mut fresh);
            }
            offset += fresh.len() as u64;
            pending.extend_from_slice(&fresh);
            let (list, used) = logfile::entries(&pending);
            pending.drain(..used);
            let list = if first {
                logfile::select(list, &opts)
            } else {
                logfile::select(
                    list,
                    &ReadOptions {
                        tail_lines: None,
                        ..opts.clone()
                    },
                )
            };
            first = false;
            for e in list {
                let mut bytes = e.render(opts.timestamps);
                if let Some(max) = limit {
                    let room = max.saturating_sub(sent) as usize;
                    bytes.truncate(room);
                }
                if bytes.is_empty() {
                    return;
                }
                sent += bytes.len() as u64;
                if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                    return;
                }
                if limit.is_some_and(|m| sent >= m) {
                    return;
                }
            }
            if !follow || done {
                return;
            }
            tokio::select! {
                _ = written.changed() => {}
                _ = finished.changed() => {}
                _ = drop_rx.changed() => {
                    let _ = tx.send(Err(std::io::Error::other("stream dropped"))).await;
                    return;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(text(Body::from_stream(stream)))
}

fn text(body: Body) -> Response {
    let mut resp = http::Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
