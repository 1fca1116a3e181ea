//! `run`: start every runner entry's pollers, serve metrics, and shut down cleanly — gracefully (stop
//! asking for jobs, let running jobs finish) or forcefully (abort jobs, report them, within
//! `shutdown_timeout`).

use crate::concurrency::AdaptiveConcurrency;
use crate::health::RunnerHealth;
use crate::metrics::{self, Metrics};
use crate::poller::RunnerPoller;
use crate::settings::ManagerSettings;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The manager's two shutdown switches.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop asking GitLab for jobs; running jobs continue.
    pub stop_polling: CancellationToken,
    /// Abort running jobs; they are reported to GitLab as `runner_interrupted`.
    pub abort_jobs: CancellationToken,
}

/// Errors that stop the manager before it runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    #[error(
        "cannot listen on {addr} for metrics: {source}. Fix: set `listen_address` to a free address, e.g. \"127.0.0.1:9252\", or remove it"
    )]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "no [[runners]] entry to run. Fix: add one with `glrunner register`, or write it into the config file"
    )]
    NoRunners,
}

/// Run until `shutdown` says stop and every job has ended (or been given `shutdown_timeout` after an abort).
/// Returns the metrics address when one was served.
pub async fn run(
    settings: ManagerSettings,
    shutdown: Shutdown,
    on_listening: impl FnOnce(Option<std::net::SocketAddr>),
) -> Result<(), ManagerError> {
    if settings.runners.is_empty() {
        return Err(ManagerError::NoRunners);
    }
    let version = settings.runners[0].info.version.clone();
    let revision = settings.runners[0].info.revision.clone();
    let metrics = Arc::new(Metrics::new(
        &settings.system_id,
        &version,
        &revision,
        settings.concurrent,
    ));
    let serve_stop = CancellationToken::new();
    let listening = match settings.listen_address {
        Some(addr) => Some(
            metrics::serve(addr, metrics.clone(), serve_stop.clone())
                .await
                .map_err(|source| ManagerError::Listen { addr, source })?,
        ),
        None => None,
    };
    on_listening(listening);

    let concurrent = Arc::new(Semaphore::new(settings.concurrent.max(1)));
    let jobs = Arc::new(Mutex::new(JoinSet::new()));
    let mut slots = JoinSet::new();
    tracing::info!(
        system_id = %settings.system_id,
        concurrent = settings.concurrent,
        check_interval_s = settings.check_interval.as_secs(),
        "glrunner {version} ({revision}) started"
    );
    for entry in settings.runners {
        let entry = Arc::new(entry);
        let id = &entry.identity;
        tracing::info!(
            runner = %id.name,
            token = %id.short_token,
            token_kind = %id.kind,
            url = %id.url,
            executor = entry.executor.name(),
            limit = entry.limit,
            request_concurrency = entry.request_concurrency,
            "runner configured"
        );
        let poller = Arc::new(RunnerPoller {
            system_id: settings.system_id.clone(),
            check_interval: settings.check_interval,
            concurrent: concurrent.clone(),
            limit: (entry.limit > 0).then(|| Arc::new(Semaphore::new(entry.limit))),
            concurrency: AdaptiveConcurrency::new(
                entry.request_concurrency,
                entry.adaptive_request_concurrency,
            ),
            health: Mutex::new(RunnerHealth::new(
                settings.check_interval,
                entry.unhealthy_interval,
            )),
            backoff_until: Mutex::new(None),
            last_update: Mutex::new(None),
            slots_in_use: Mutex::new(Vec::new()),
            metrics: metrics.clone(),
            stop_polling: shutdown.stop_polling.clone(),
            abort_jobs: shutdown.abort_jobs.clone(),
            entry: entry.clone(),
        });
        metrics.set_healthy(&id.name, true, None);
        for slot in 0..entry.request_concurrency.max(1) {
            slots.spawn(poller.clone().run_slot(slot, jobs.clone()));
        }
    }

    shutdown.stop_polling.cancelled().await;
    metrics.stopping();
    tracing::info!("no longer requesting jobs; waiting for running jobs to finish");
    while slots.join_next().await.is_some() {}

    let mut jobs = std::mem::take(&mut *jobs.lock().unwrap_or_else(|e| e.into_inner()));
    let drained = async { while jobs.join_next().await.is_some() {} };
    tokio::pin!(drained);
    tokio::select! {
        _ = &mut drained => {}
        _ = shutdown.abort_jobs.cancelled() => {
            tracing::warn!(
                timeout_s = settings.shutdown_timeout.as_secs(),
                "aborting running jobs; they are reported to GitLab as runner_interrupted"
            );
            if tokio::time::timeout(settings.shutdown_timeout, &mut drained).await.is_err() {
                tracing::error!("jobs did not report back within shutdown_timeout; they may show as running in GitLab until it times them out");
            }
        }
    }
    serve_stop.cancel();
    tracing::info!("glrunner stopped");
    Ok(())
}
