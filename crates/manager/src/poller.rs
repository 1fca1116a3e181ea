//! The job-request loop of one runner entry: `request_concurrency` slots, each asking GitLab for a job
//! whenever `concurrent` and `limit` leave room, long polling through `last_update`, and reacting to every
//! answer (201, 204, 409, 403, 429, 5xx) the way gitlab-runner does — except that a rejected token is
//! explained and backed off visibly instead of going silent.

use crate::concurrency::{AdaptiveConcurrency, RequestResult};
use crate::health::{RunnerHealth, humanize};
use crate::job::{fail_undecodable, run_assigned_job};
use crate::metrics::Metrics;
use crate::settings::RunnerEntry;
use glrunner_gitlab::reply::JobRequestOutcome;
use glrunner_protocol::request::JobRequest;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Quick answers in a row that are asked again at once before pausing for check_interval.
const MAX_QUICK_RETRIES: u32 = 2;

/// Shared state of one runner entry's pollers.
pub(crate) struct RunnerPoller {
    pub entry: Arc<RunnerEntry>,
    pub system_id: String,
    pub check_interval: Duration,
    pub concurrent: Arc<Semaphore>,
    pub limit: Option<Arc<Semaphore>>,
    pub concurrency: AdaptiveConcurrency,
    pub health: Mutex<RunnerHealth>,
    /// Not before this instant after a 403 (shared by all slots).
    pub backoff_until: Mutex<Option<Instant>>,
    /// The `X-GitLab-Last-Update` cursor, per runner token.
    pub last_update: Mutex<Option<String>>,
    /// Which `CI_CONCURRENT_ID`s are in use.
    pub slots_in_use: Mutex<Vec<bool>>,
    pub metrics: Arc<Metrics>,
    pub stop_polling: CancellationToken,
    pub abort_jobs: CancellationToken,
}

/// Holds a `concurrent` permit (and a `limit` permit) for as long as a request or a job needs it.
struct Permits {
    _concurrent: OwnedSemaphorePermit,
    _limit: Option<OwnedSemaphorePermit>,
}

impl RunnerPoller {
    /// Run one request slot until polling stops. Jobs it receives are spawned into `jobs`.
    pub async fn run_slot(self: Arc<Self>, slot: usize, jobs: Arc<Mutex<JoinSet<()>>>) {
        // Quick answers in a row that were asked again at once.
        let mut quick_retries: u32 = 0;
        loop {
            if self.stop_polling.is_cancelled() {
                return;
            }
            if slot >= self.concurrency.limit() {
                self.pause(self.check_interval).await;
                continue;
            }
            let backoff = *self.backoff_until.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = backoff {
                let now = Instant::now();
                if until > now {
                    self.pause(until - now).await;
                    continue;
                }
            }
            let Some(permits) = self.acquire().await else {
                return;
            };
            let sent_cursor = self
                .last_update
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let req = JobRequest {
                info: self.entry.info.clone(),
                token: self.entry.token.clone(),
                system_id: Some(self.system_id.clone()),
                last_update: sent_cursor.clone(),
                session: None,
            };
            let asked = Instant::now();
            let reply = tokio::select! {
                r = self.entry.client.request_job(&req) => r,
                _ = self.stop_polling.cancelled() => return,
            };
            // Zero unless this answer is another quick one asked again at once.
            let previous_quick_retries = std::mem::take(&mut quick_retries);
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(runner = %self.entry.identity.name, "checking for jobs failed: {e}");
                    self.concurrency.record(RequestResult::Empty);
                    drop(permits);
                    self.pause(self.check_interval).await;
                    continue;
                }
            };
            let new_cursor = reply.last_update.clone();
            if let Some(cursor) = &new_cursor {
                *self.last_update.lock().unwrap_or_else(|e| e.into_inner()) = Some(cursor.clone());
            }
            let throttled = reply.saw_retriable;
            let next_pause = match reply.outcome {
                JobRequestOutcome::Job(job) => {
                    self.accepted();
                    self.concurrency.record(RequestResult::GotJob);
                    self.spawn_job(job, permits, &jobs);
                    None
                }
                JobRequestOutcome::UndecodableJob { identity, error } => {
                    self.accepted();
                    let entry = self.entry.clone();
                    jobs.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .spawn(async move {
                            let _permits = permits;
                            fail_undecodable(entry, identity, error).await;
                        });
                    None
                }
                JobRequestOutcome::NoJob => {
                    self.accepted();
                    self.concurrency.record(if throttled {
                        RequestResult::Throttled
                    } else {
                        RequestResult::Empty
                    });
                    drop(permits);
                    // Keep a request waiting in Workhorse's long poll: ask again at once after a held
                    // poll ends with a bare 204 (the queue changed, or the hold timed out), and after a
                    // 204 with a new cursor (the one sent was stale: the first request has none, and the
                    // queue ticked while we were taking a job), since Workhorse holds only requests with
                    // the current cursor. A misbehaving proxy answering at once must not make us spin:
                    // after a few quick answers in a row, wait check_interval.
                    let long_polled = sent_cursor.is_some() && new_cursor.is_none();
                    let refreshed = new_cursor.is_some() && new_cursor != sent_cursor;
                    let quick = asked.elapsed() < Duration::from_secs(1);
                    let immediate = (long_polled || refreshed)
                        && (!quick || previous_quick_retries < MAX_QUICK_RETRIES);
                    if immediate && quick {
                        quick_retries = previous_quick_retries + 1;
                    }
                    if immediate {
                        None
                    } else {
                        Some(self.check_interval)
                    }
                }
                JobRequestOutcome::Conflict => {
                    self.accepted();
                    self.concurrency.record(RequestResult::Empty);
                    drop(permits);
                    tracing::debug!(runner = %self.entry.identity.name, "GitLab answered 409 Conflict; asking again");
                    Some(self.check_interval)
                }
                JobRequestOutcome::Forbidden => {
                    drop(permits);
                    let rejection = self
                        .health
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .forbidden(&self.entry.identity);
                    tracing::error!(runner = %self.entry.identity.name, "{}", rejection.message);
                    self.metrics.set_healthy(
                        &self.entry.identity.name,
                        false,
                        Some("GitLab rejects the runner token (403)"),
                    );
                    *self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Instant::now() + rejection.retry_in);
                    None
                }
                JobRequestOutcome::RateLimited { retry_after } => {
                    self.concurrency.record(RequestResult::Throttled);
                    drop(permits);
                    let wait = retry_after
                        .unwrap_or(self.check_interval)
                        .max(self.check_interval);
                    tracing::warn!(
                        runner = %self.entry.identity.name,
                        "GitLab rate-limits job requests (429 Too Many Requests after retries); next request in {}. \
                         If this persists, lower request_concurrency or check GitLab's runner_jobs_request_api_limit.",
                        humanize(wait)
                    );
                    Some(wait)
                }
                JobRequestOutcome::Unexpected { status, body } => {
                    self.concurrency.record(if throttled {
                        RequestResult::Throttled
                    } else {
                        RequestResult::Empty
                    });
                    drop(permits);
                    let body: String = body.chars().take(200).collect();
                    tracing::warn!(runner = %self.entry.identity.name, status, "checking for jobs failed: GitLab answered {status}: {body}");
                    Some(self.check_interval)
                }
            };
            self.metrics
                .set_request_concurrency(&self.entry.identity.name, self.concurrency.limit());
            if let Some(d) = next_pause {
                self.pause(d).await;
            }
        }
    }

    fn accepted(&self) {
        if let Some(msg) = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accepted(&self.entry.identity)
        {
            tracing::info!(runner = %self.entry.identity.name, "{msg}");
        }
        *self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.metrics
            .set_healthy(&self.entry.identity.name, true, None);
    }

    /// Wait for room under `concurrent` and `limit`, or for polling to stop.
    async fn acquire(&self) -> Option<Permits> {
        let concurrent = tokio::select! {
            p = self.concurrent.clone().acquire_owned() => p.ok()?,
            _ = self.stop_polling.cancelled() => return None,
        };
        let limit = match &self.limit {
            Some(l) => Some(tokio::select! {
                p = l.clone().acquire_owned() => p.ok()?,
                _ = self.stop_polling.cancelled() => return None,
            }),
            None => None,
        };
        Some(Permits {
            _concurrent: concurrent,
            _limit: limit,
        })
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop_polling.cancelled() => {}
        }
    }

    fn spawn_job(
        self: &Arc<Self>,
        job: Box<glrunner_protocol::JobResponse>,
        permits: Permits,
        jobs: &Arc<Mutex<JoinSet<()>>>,
    ) {
        let this = self.clone();
        jobs.lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(async move {
                let _permits = permits;
                let id = this.take_slot();
                run_assigned_job(
                    this.entry.clone(),
                    job,
                    id,
                    this.abort_jobs.clone(),
                    this.metrics.clone(),
                )
                .await;
                this.release_slot(id);
            });
    }

    fn take_slot(&self) -> usize {
        let mut slots = self.slots_in_use.lock().unwrap_or_else(|e| e.into_inner());
        match slots.iter().position(|used| !used) {
            Some(i) => {
                slots[i] = true;
                i
            }
            None => {
                slots.push(true);
                slots.len() - 1
            }
        }
    }

    fn release_slot(&self, id: usize) {
        if let Some(s) = self
            .slots_in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            *s = false;
        }
    }
}
