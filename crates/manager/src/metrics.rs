//! Prometheus metrics and the health endpoints served on `listen_address` (catalogue P4).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunnerLabels {
    runner: String,
    system_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    runner: String,
    failure_reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
    revision: String,
}

/// The manager's metrics and readiness.
pub struct Metrics {
    registry: Registry,
    system_id: String,
    jobs: Family<RunnerLabels, Gauge>,
    jobs_total: Family<RunnerLabels, Counter>,
    failed_jobs: Family<FailureLabels, Counter>,
    healthy: Family<RunnerLabels, Gauge>,
    request_concurrency: Family<RunnerLabels, Gauge>,
    /// Runners currently unhealthy, with the reason, for `/health/ready`.
    unhealthy: Mutex<BTreeMap<String, String>>,
    stopping: CancellationToken,
}

impl Metrics {
    pub fn new(system_id: &str, version: &str, revision: &str, concurrent: usize) -> Self {
        let mut registry = Registry::default();
        let jobs = Family::<RunnerLabels, Gauge>::default();
        let jobs_total = Family::<RunnerLabels, Counter>::default();
        let failed_jobs = Family::<FailureLabels, Counter>::default();
        let healthy = Family::<RunnerLabels, Gauge>::default();
        let request_concurrency = Family::<RunnerLabels, Gauge>::default();
        let concurrent_gauge = Gauge::<i64>::default();
        concurrent_gauge.set(concurrent as i64);
        let version_info = Family::<VersionLabels, Gauge>::default();
        version_info
            .get_or_create(&VersionLabels {
                version: version.to_owned(),
                revision: revision.to_owned(),
            })
            .set(1);
        registry.register("gitlab_runner_jobs", "Jobs running now", jobs.clone());
        registry.register("gitlab_runner_jobs", "Jobs received", jobs_total.clone());
        registry.register(
            "gitlab_runner_failed_jobs",
            "Jobs that failed, by reason",
            failed_jobs.clone(),
        );
        registry.register(
            "gitlab_runner_concurrent",
            "The concurrent setting",
            concurrent_gauge,
        );
        registry.register(
            "gitlab_runner_version_info",
            "glrunner version",
            version_info,
        );
        registry.register(
            "glrunner_runner_healthy",
            "1 when GitLab accepts the runner's token, 0 after a 403",
            healthy.clone(),
        );
        registry.register(
            "gitlab_runner_request_concurrency_adaptive_limit",
            "Job requests allowed in flight now",
            request_concurrency.clone(),
        );
        Self {
            registry,
            system_id: system_id.to_owned(),
            jobs,
            jobs_total,
            failed_jobs,
            healthy,
            request_concurrency,
            unhealthy: Mutex::new(BTreeMap::new()),
            stopping: CancellationToken::new(),
        }
    }

    fn labels(&self, runner: &str) -> RunnerLabels {
        RunnerLabels {
            runner: runner.to_owned(),
            system_id: self.system_id.clone(),
        }
    }

    pub fn job_started(&self, runner: &str) {
        self.jobs.get_or_create(&self.labels(runner)).inc();
        self.jobs_total.get_or_create(&self.labels(runner)).inc();
    }

    pub fn job_finished(&self, runner: &str, failure_reason: Option<&str>) {
        self.jobs.get_or_create(&self.labels(runner)).dec();
        if let Some(reason) = failure_reason {
            self.failed_jobs
                .get_or_create(&FailureLabels {
                    runner: runner.to_owned(),
                    failure_reason: reason.to_owned(),
                })
                .inc();
        }
    }

    pub fn set_healthy(&self, runner: &str, healthy: bool, why: Option<&str>) {
        self.healthy
            .get_or_create(&self.labels(runner))
            .set(i64::from(healthy));
        let mut map = self.unhealthy.lock().unwrap_or_else(|e| e.into_inner());
        match why {
            Some(why) if !healthy => {
                map.insert(runner.to_owned(), why.to_owned());
            }
            _ => {
                map.remove(runner);
            }
        }
    }

    pub fn set_request_concurrency(&self, runner: &str, limit: usize) {
        self.request_concurrency
            .get_or_create(&self.labels(runner))
            .set(limit as i64);
    }

    /// Readiness fails from now on (shutdown).
    pub fn stopping(&self) {
        self.stopping.cancel();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn readiness(&self) -> (StatusCode, String) {
        if self.stopping.is_cancelled() {
            return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
        }
        let map = self.unhealthy.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            (StatusCode::OK, "ready\n".into())
        } else {
            let body: String = map
                .iter()
                .map(|(r, why)| format!("runner {r}: {why}\n"))
                .collect();
            (StatusCode::SERVICE_UNAVAILABLE, body)
        }
    }
}

/// Serve `/metrics`, `/health/live` and `/health/ready` until `stop` fires.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .with_state(metrics);
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = server.await {
            tracing::warn!("metrics server stopped: {e}");
        }
    });
    Ok(local)
}

async fn render(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

async fn ready(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    m.readiness()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_jobs_and_failures() {
        let m = Metrics::new("s_0123456789ab", "0.1.0", "abc", 4);
        m.job_started("r1");
        m.job_finished("r1", Some("script_failure"));
        let text = m.render();
        assert!(
            text.contains(r#"gitlab_runner_jobs_total{runner="r1",system_id="s_0123456789ab"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"failure_reason="script_failure""#),
            "{text}"
        );
        assert!(text.contains("gitlab_runner_concurrent 4"), "{text}");
    }

    #[test]
    fn readiness_follows_health_and_shutdown() {
        let m = Metrics::new("s_x", "0", "0", 1);
        assert_eq!(m.readiness().0, StatusCode::OK);
        m.set_healthy("r1", false, Some("token rejected"));
        let (code, body) = m.readiness();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("token rejected"));
        m.set_healthy("r1", true, None);
        assert_eq!(m.readiness().0, StatusCode::OK);
        m.stopping();
        assert_eq!(m.readiness().0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
