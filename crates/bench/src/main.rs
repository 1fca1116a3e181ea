//! `glrunner-bench`: measured, not asserted. Each benchmark runs glrunner (the release binary next to this
//! one) against the in-process test coordinator, measures it from /proc, runs a baseline in the same
//! invocation, and rewrites its own section of BENCHMARKS.md.

mod exec_pipeline;
mod kubernetes;
mod machine;
mod manager;
mod procfs;
mod report;
mod requests;
mod sizing;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "glrunner-bench", about = "glrunner benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// GitLab's manager sizing test with the shell executor: N parallel jobs each writing a 4 MB log.
    ManagerSizing(sizing::Args),
    /// `glrunner exec` of a 20-job pipeline next to `gitlab-ci-local --force-shell-executor`.
    ExecPipeline(exec_pipeline::Args),
    /// Kubernetes API requests per job and the manager's RSS/CPU with N jobs in flight, in pods of
    /// the test cluster.
    Kubernetes(kubernetes::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.bench {
        Bench::ManagerSizing(args) => runtime.block_on(sizing::run(args)),
        Bench::ExecPipeline(args) => exec_pipeline::run(args),
        Bench::Kubernetes(args) => runtime.block_on(kubernetes::run(args)),
    }
}

/// The glrunner binary built alongside this one (`cargo build --release -p glrunner -p glrunner-bench`).
fn glrunner_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .map(|d| d.join("glrunner"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no glrunner binary next to {}; build both: cargo build --release -p glrunner -p glrunner-bench",
                exe.display()
            )
        })?;
    Ok(path)
}
