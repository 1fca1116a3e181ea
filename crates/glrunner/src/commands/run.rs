//! `glrunner run`: the manager.

use super::{Failure, print_warnings};
use crate::cli::RunArgs;
use crate::{entry, kubernetes, logging, signals, version};
use glrunner_config::{ExecutorKind, LogFormat, State, StateLocation, StateOptions};
use glrunner_manager::{ManagerSettings, Shutdown};
use glrunner_protocol::TokenKind;
use std::net::SocketAddr;
use std::process::ExitCode;

pub async fn run(
    args: RunArgs,
    cli_level: Option<String>,
    cli_format: Option<String>,
) -> Result<ExitCode, Failure> {
    // Config errors are printed before logging is set up: they decide the log settings.
    let path = super::config_path(&args.config);
    let loaded = glrunner_config::Config::load(&path).map_err(Failure::config)?;
    let config = &loaded.config;
    let level = cli_level.unwrap_or_else(|| {
        config
            .log_level
            .as_ref()
            .map_or("info".to_owned(), |l| format!("{l:?}").to_lowercase())
    });
    let json = match cli_format.as_deref() {
        Some(f) => f == "json",
        None => config.log_format() == LogFormat::Json,
    };
    logging::init(&level, json);
    print_warnings(&loaded);

    let state = State::open(&StateOptions::for_config(
        &loaded,
        args.state.state_dir.clone(),
    ));
    for w in state.warnings() {
        tracing::warn!("{w}");
    }
    let state_at = match state.location() {
        StateLocation::Dir { path, .. } => path.display().to_string(),
        StateLocation::Memory => "memory only (not persisted)".to_owned(),
    };
    tracing::info!(config = %loaded.path.display(), state = %state_at, system_id = %state.system_id(), "configuration loaded");

    if config.runners.len() > config.concurrent() {
        tracing::warn!(
            "concurrent ({}) is lower than the number of [[runners]] ({}): while one runner waits on GitLab's long poll the others cannot ask for jobs. Fix: set concurrent = {} or more",
            config.concurrent(),
            config.runners.len(),
            config.runners.len()
        );
    }

    let working_dir = args
        .working_directory
        .clone()
        .unwrap_or_else(entry::default_working_dir);
    let mut runners = Vec::new();
    for (i, r) in config.runners.iter().enumerate() {
        let name = entry::display_name(r, i);
        let token = match r.token() {
            Some(t) => t.clone(),
            None => match state.runner(&r.name, &r.url) {
                Some(s) => s.token.clone(),
                None => {
                    return Err(Failure::config(entry::EntryError::NoToken {
                        name,
                        url: r.url.clone(),
                    }));
                }
            },
        };
        let kind = TokenKind::classify(token.expose());
        if !kind.can_request_jobs() {
            return Err(Failure::config(format!(
                "runner {name:?}: `token` holds a {kind}, which cannot take jobs\n  fix: create a runner in GitLab and use its glrt- authentication token"
            )));
        }
        if kind == TokenKind::Unknown {
            tracing::warn!(
                runner = %name,
                "the token has no known GitLab prefix (glrt-, glrtr-, t1_…); if GitLab rejects it, create the runner in GitLab and use its glrt- token"
            );
        }
        let (factory, cluster) = match entry::executor_kind(r, i).map_err(Failure::config)? {
            ExecutorKind::Shell => (entry::shell_factory(&token), None),
            ExecutorKind::Kubernetes => {
                let cluster = kubernetes::start(&name, r.kubernetes.as_ref(), state.system_id())
                    .await
                    .map_err(Failure::config)?;
                (kubernetes::factory(cluster.clone()), Some(cluster))
            }
        };
        let e = entry::build(
            r,
            i,
            token,
            config,
            state.system_id(),
            &working_dir,
            factory,
        )
        .map_err(Failure::config)?;
        if let Some(cluster) = cluster {
            // Before any job is taken: what a previous run left is deleted and its jobs failed.
            kubernetes::sweep(&name, &cluster, state.system_id(), &e.client, &e.info).await;
        }
        runners.push(e);
    }

    let listen = match args
        .listen_address
        .clone()
        .or_else(|| config.metrics_listen_address())
    {
        Some(addr) => Some(resolve(&addr).await?),
        None => None,
    };
    let settings = ManagerSettings {
        concurrent: config.concurrent(),
        check_interval: config.check_interval(),
        shutdown_timeout: config.shutdown_timeout(),
        system_id: state.system_id().to_owned(),
        listen_address: listen,
        runners,
    };
    let shutdown = Shutdown::default();
    signals::install(shutdown.clone())
        .map_err(|e| Failure::other(format!("cannot install signal handlers: {e}")))?;
    tracing::info!(version = version::VERSION, "starting the manager");
    glrunner_manager::run(settings, shutdown, |addr| {
        if let Some(addr) = addr {
            tracing::info!("metrics and health on http://{addr}/metrics, /health/ready");
        }
    })
    .await
    .map_err(Failure::config)?;
    Ok(ExitCode::SUCCESS)
}

async fn resolve(addr: &str) -> Result<SocketAddr, Failure> {
    let bad = |why: String| {
        Failure::config(format!(
            "listen_address {addr:?} cannot be used: {why}\n  fix: use host:port, e.g. \"127.0.0.1:9252\""
        ))
    };
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("it resolves to no address".to_owned()))
}
