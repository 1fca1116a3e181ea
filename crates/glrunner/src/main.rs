//! The `glrunner` binary: a thin command line over the runner's crates.

mod cache_settings;
mod cli;
mod commands;
mod entry;
mod kubernetes;
mod logging;
mod signals;
mod version;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // kube-rs and reqwest both use rustls with the ring provider; make it the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Job scripts start `glrunner helper` for every transfer: one thread is plenty there, and
    // starting worker threads would be a good part of its cost.
    let one_transfer = matches!(
        &cli.command,
        cli::Command::Helper(h) if !matches!(h, glrunner_helper::HelperArgs::ReadLogs(_))
    );
    let mut builder = if one_transfer {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(worker_threads()).max_blocking_threads(32);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ERROR: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(commands::dispatch(cli))
}

/// At most 4 worker threads: the manager is I/O bound, and every thread costs memory.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}
