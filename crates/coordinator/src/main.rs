//! `glrunner-coordinator`: run the GitLab test coordinator on loopback for manual runs and benchmarks.
//! Prints its URL and the tokens it created, then serves until Ctrl-C. Jobs, faults and inspection go
//! through the admin API under `/-/admin/` (see the crate docs).

use anyhow::Context;
use clap::Parser;
use glrunner_coordinator::{Coordinator, Options, ProjectSpec, RunnerKind, RunnerSpec};
use glrunner_protocol::TokenKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A fake GitLab runner API on loopback.
#[derive(Debug, Parser)]
#[command(name = "glrunner-coordinator", version)]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Create a runner with this token (repeatable); its prefix picks the kind (glrt-, glrtr-, t1_).
    /// Without any, one glrt- runner is created.
    #[arg(long = "runner-token", value_name = "TOKEN")]
    runner_tokens: Vec<String>,
    /// Accept this registration token on POST /api/v4/runners (repeatable).
    #[arg(long = "registration-token", value_name = "TOKEN")]
    registration_tokens: Vec<String>,
    /// Refuse registration with 410 Gone, as GitLab 17+ does by default.
    #[arg(long)]
    no_registration: bool,
    /// Workhorse long polling of /jobs/request; 0 turns it off.
    #[arg(long, default_value = "50s", value_parser = humantime::parse_duration)]
    long_poll: Duration,
    /// X-GitLab-Trace-Update-Interval announced on trace PATCHes, in seconds.
    #[arg(long, default_value_t = 60)]
    trace_interval: u64,
    /// Two-phase commit acknowledgement window.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    ack_window: Duration,
    /// Largest stored trace in bytes (beyond it: 403 and trace_size_exceeded).
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    trace_size_limit: u64,
    /// Serve a project over git: `group/project=DIR` commits DIR's files to its `main` branch
    /// (repeatable). Jobs for it (admin API: `{"project": "group/project", "sha": ""}`) clone it with
    /// their job token.
    #[arg(long = "project", value_name = "PATH=DIR", value_parser = parse_project)]
    projects: Vec<(String, PathBuf)>,
}

fn parse_project(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((path, dir)) if !path.is_empty() && !dir.is_empty() => {
            Ok((path.to_owned(), PathBuf::from(dir)))
        }
        _ => Err(format!(
            "expected group/project=DIR, got {arg:?}; e.g. --project acme/demo=./fixtures/demo"
        )),
    }
}

fn kind_of(token: &str) -> RunnerKind {
    match TokenKind::classify(token) {
        TokenKind::RegisteredRunnerAuthentication => RunnerKind::Registered,
        TokenKind::LegacyRunnerAuthentication | TokenKind::Unknown => RunnerKind::Legacy,
        _ => RunnerKind::Created,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut options = Options::default()
        .listen(args.listen)
        .trace_update_interval(args.trace_interval)
        .ack_window(args.ack_window)
        .trace_size_limit(args.trace_size_limit)
        .registration_enabled(!args.no_registration);
    if !args.long_poll.is_zero() {
        options = options.long_poll(args.long_poll);
    }
    let coordinator = Coordinator::start(options)
        .await
        .context("starting the coordinator")?;
    println!("glrunner-coordinator listening on {}", coordinator.url());
    println!("admin API: {}/-/admin/", coordinator.url());

    let mut runners = Vec::new();
    if args.runner_tokens.is_empty() {
        runners.push(
            coordinator.add_runner(RunnerSpec::created().description("glrunner-coordinator")),
        );
    }
    for token in &args.runner_tokens {
        let spec = RunnerSpec::new(kind_of(token)).token(token.as_str());
        runners.push(coordinator.add_runner(spec));
    }
    for r in &runners {
        // Shown once, like GitLab's UI does, so the operator can configure a runner with it.
        println!("runner {} token: {}", r.id, r.token.expose());
    }
    for (path, dir) in &args.projects {
        let project = coordinator
            .add_project(ProjectSpec::new(path.as_str()).dir(dir))
            .with_context(|| format!("serving {} from {}", path, dir.display()))?;
        let head = project
            .rev_parse(project.default_branch())
            .unwrap_or_else(|_| "(empty)".to_owned());
        println!(
            "project {}: {} ({} at {head})",
            project.path(),
            project.url(),
            project.default_branch()
        );
    }
    for token in &args.registration_tokens {
        coordinator.add_registration_token_value(token);
    }
    if !args.registration_tokens.is_empty() {
        println!(
            "registration tokens accepted: {}",
            args.registration_tokens.len()
        );
    }

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    coordinator.shutdown().await;
    Ok(())
}
