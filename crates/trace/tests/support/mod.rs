//! A small GitLab for uploader tests: `PATCH /jobs/:id/trace` stores bytes exactly like GitLab (append
//! iff the Content-Range start equals the stored length, else 416 with `Range: 0-<len>`), `PUT /jobs/:id`
//! answers from a programmable plan. Binds 127.0.0.1 only; every wait is bounded.

#![allow(dead_code)] // each test binary uses a different part

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, put};
use glrunner_gitlab::{ClientSettings, GitLabClient};
use glrunner_protocol::headers;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const JOB_ID: i64 = 77;
pub const JOB_TOKEN: &str = "glcbt-64_jobtoken-fake-value";

/// A programmed answer to the next PATCH.
#[derive(Debug, Clone)]
pub enum PatchPlan {
    /// Store the bytes as usual, but answer this status (a lost or failed response).
    StoreButAnswer(u16),
    /// Store nothing; answer this status and `Job-Status`.
    Answer {
        status: u16,
        job_status: Option<&'static str>,
    },
}

/// A programmed answer to the next PUT.
#[derive(Debug, Clone, Default)]
pub struct PutPlan {
    pub status: u16,
    pub job_status: Option<&'static str>,
    pub interval_secs: Option<u64>,
    /// Forget the stored trace (GitLab with `trace_reset` after a 412).
    pub reset_trace: bool,
}

impl PutPlan {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct PatchSeen {
    pub start: u64,
    pub len: usize,
    pub content_range: String,
    pub debug_trace: Option<String>,
    pub status: u16,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct PutSeen {
    pub body: serde_json::Value,
    pub at: Instant,
}

#[derive(Default)]
pub struct ServerState {
    /// Stored trace per job id.
    pub traces: HashMap<i64, Vec<u8>>,
    pub patches: Vec<PatchSeen>,
    pub puts: Vec<PutSeen>,
    pub patch_plan: VecDeque<PatchPlan>,
    /// Answer every PATCH with this when the plan is empty (e.g. 403 + canceled).
    pub patch_always: Option<PatchPlan>,
    pub put_plan: VecDeque<PutPlan>,
    /// Used when `put_plan` is empty; status 0 means 200.
    pub put_default: PutPlan,
    /// `Job-Status` on successful PATCH answers (default `running`).
    pub patch_job_status: Option<&'static str>,
    /// `X-GitLab-Trace-Update-Interval` on PATCH answers.
    pub patch_interval_secs: Option<u64>,
    /// Hold PATCH answers until `release` is called.
    pub hold_patches: bool,
    pub in_flight: usize,
    pub in_flight_bytes: usize,
    pub max_in_flight_bytes: usize,
    /// Requests with a wrong or missing job token.
    pub bad_auth: usize,
}

impl ServerState {
    /// The trace stored for [`JOB_ID`].
    pub fn stored(&self) -> &[u8] {
        self.stored_for(JOB_ID)
    }

    pub fn stored_for(&self, job_id: i64) -> &[u8] {
        self.traces.get(&job_id).map_or(&[], Vec::as_slice)
    }
}

struct Shared {
    state: Mutex<ServerState>,
    /// Bumped after every request, for waiting without sleeps.
    events: watch::Sender<u64>,
    release: watch::Sender<bool>,
}

pub struct FakeGitLab {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitLab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGitLab {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(ServerState::default()),
            events: watch::channel(0).0,
            release: watch::channel(false).0,
        });
        let app = Router::new()
            .route("/api/v4/jobs/{id}/trace", patch(patch_trace))
            .route("/api/v4/jobs/{id}", put(update_job))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn client(&self) -> GitLabClient {
        GitLabClient::new(ClientSettings {
            url: format!("http://{}/", self.addr),
            user_agent: "glrunner-trace-tests".into(),
            ..Default::default()
        })
        .expect("client")
    }

    pub fn state(&self) -> MutexGuard<'_, ServerState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait (at most `limit`) until `cond` holds; false on timeout.
    pub async fn wait_until(&self, limit: Duration, cond: impl Fn(&ServerState) -> bool) -> bool {
        let mut events = self.shared.events.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if cond(&self.state()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, events.changed()).await {
                Ok(Ok(())) => {}
                _ => return cond(&self.state()),
            }
        }
    }

    pub fn release_patches(&self) {
        self.state().hold_patches = false;
        self.shared.release.send_replace(true);
    }

    /// PUTs whose `state` is not `running`.
    pub fn final_puts(&self) -> Vec<PutSeen> {
        self.state()
            .puts
            .iter()
            .filter(|p| p.body["state"] != "running")
            .cloned()
            .collect()
    }
}

fn bump(shared: &Shared) {
    shared.events.send_modify(|n| *n += 1);
}

fn token_ok(headers: &HeaderMap) -> bool {
    headers
        .get(headers::JOB_TOKEN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == JOB_TOKEN)
}

fn answer(status: u16, pairs: &[(&str, String)]) -> Response {
    let mut res = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        status.to_string(),
    )
        .into_response();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            res.headers_mut().insert(name, value);
        }
    }
    res
}

async fn patch_trace(
    State(shared): State<Arc<Shared>>,
    Path(job_id): Path<i64>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = patch_inner(&shared, job_id, &query, &headers, body).await;
    bump(&shared);
    response
}

async fn patch_inner(
    shared: &Shared,
    job_id: i64,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let Some(content_range) = headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return answer(400, &[]);
    };
    let Some(start) = headers::content_range_start(&content_range) else {
        return answer(400, &[]);
    };
    if !token_ok(headers) {
        shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bad_auth += 1;
        return answer(403, &[]);
    }
    let hold = {
        let mut st = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.in_flight += 1;
        st.in_flight_bytes += body.len();
        st.max_in_flight_bytes = st.max_in_flight_bytes.max(st.in_flight_bytes);
        st.hold_patches
    };
    if hold {
        // Counted as in flight now; tell waiters before holding.
        bump(shared);
        let mut release = shared.release.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(20), release.wait_for(|r| *r)).await;
    }
    let mut st = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    st.in_flight -= 1;
    st.in_flight_bytes -= body.len();
    let plan = st
        .patch_plan
        .pop_front()
        .or_else(|| st.patch_always.clone());
    let mut seen = PatchSeen {
        start,
        len: body.len(),
        content_range,
        debug_trace: query.get("debug_trace").cloned(),
        status: 0,
        at: Instant::now(),
    };
    let job_status = st.patch_job_status.unwrap_or("running").to_owned();
    let mut pairs = vec![(headers::JOB_STATUS, job_status)];
    if let Some(i) = st.patch_interval_secs {
        pairs.push((headers::TRACE_UPDATE_INTERVAL, i.to_string()));
    }
    let response = match plan {
        Some(PatchPlan::Answer { status, job_status }) => {
            seen.status = status;
            let mut pairs = vec![];
            if let Some(js) = job_status {
                pairs.push((headers::JOB_STATUS, js.to_owned()));
            }
            answer(status, &pairs)
        }
        other => {
            let stored = st.traces.entry(job_id).or_default();
            let len = stored.len() as u64;
            if start == len {
                stored.extend_from_slice(&body);
                let new_len = stored.len();
                let status = match other {
                    Some(PatchPlan::StoreButAnswer(s)) => s,
                    _ => 202,
                };
                seen.status = status;
                pairs.push(("Range", format!("0-{new_len}")));
                answer(status, &pairs)
            } else {
                seen.status = 416;
                pairs.push(("Range", format!("0-{len}")));
                answer(416, &pairs)
            }
        }
    };
    st.patches.push(seen);
    response
}

async fn update_job(
    State(shared): State<Arc<Shared>>,
    Path(job_id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = {
        let mut st = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return answer(400, &[]);
        };
        if !token_ok(&headers) && json["token"] != JOB_TOKEN {
            st.bad_auth += 1;
            drop(st);
            bump(&shared);
            return answer(403, &[]);
        }
        st.puts.push(PutSeen {
            body: json.clone(),
            at: Instant::now(),
        });
        let plan = if json["state"] == "running" {
            // Keep-alives take planned answers too, so Job-Status on PUT can be tested.
            st.put_plan.pop_front().unwrap_or_default()
        } else {
            st.put_plan
                .pop_front()
                .unwrap_or_else(|| st.put_default.clone())
        };
        let status = if plan.status == 0 { 200 } else { plan.status };
        if plan.reset_trace {
            st.traces.remove(&job_id);
        }
        let mut pairs = vec![(
            headers::JOB_STATUS,
            plan.job_status.unwrap_or("running").to_owned(),
        )];
        if let Some(i) = plan.interval_secs {
            pairs.push((headers::TRACE_UPDATE_INTERVAL, i.to_string()));
        }
        answer(status, &pairs)
    };
    bump(&shared);
    response
}
