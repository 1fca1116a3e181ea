//! GitLab's manager sizing test, reproduced with the shell executor: N jobs enqueued at once, each writing
//! a 4 MB log. Measures glrunner's peak RSS and CPU (from /proc, the manager process only — the jobs' own
//! bash processes are not counted) and the jobs' end-to-end time; the baseline is the same N scripts run
//! directly by bash, without any runner, in the same invocation.

use crate::manager::{self, Manager, Measurement, Setup, mean_and_max, shell_executor};
use crate::report::{self, mb};
use crate::{glrunner_binary, machine, procfs};
use anyhow::{Context, bail};
use glrunner_coordinator::{JobSpec, JobStatus, Variable};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Parallel jobs per run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "50,100")]
    jobs: Vec<usize>,
    /// Log bytes each job writes.
    #[arg(long, default_value_t = 4_000_000)]
    log_bytes: u64,
    /// Seconds over which each job writes its log, one chunk per second (0: all at once).
    #[arg(long, default_value_t = 60)]
    job_seconds: u64,
    /// `X-GitLab-Trace-Update-Interval` the coordinator announces (3 s = someone watches every log).
    #[arg(long, default_value_t = 3)]
    trace_interval: u64,
    /// Report file.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
}

struct Row {
    jobs: usize,
    idle_rss: u64,
    peak_rss: u64,
    cpu: Duration,
    peak_cpu_cores: f64,
    wall: Duration,
    job_mean: Duration,
    job_max: Duration,
    requests: usize,
    baseline_wall: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let glrunner = glrunner_binary()?;
    let mut rows = Vec::new();
    for &n in &args.jobs {
        eprintln!("manager-sizing: {n} jobs …");
        let baseline_wall = baseline(n, &script(args.log_bytes, args.job_seconds))?;
        let mut row = measure(n, &args, &glrunner).await?;
        row.baseline_wall = baseline_wall;
        eprintln!(
            "  peak RSS {:.1} MB, CPU {:.2} s ({:.3} cores avg, {:.3} peak), end-to-end {:.1} s (baseline {:.1} s)",
            mb(row.peak_rss),
            row.cpu.as_secs_f64(),
            row.cpu.as_secs_f64() / row.wall.as_secs_f64(),
            row.peak_cpu_cores,
            row.wall.as_secs_f64(),
            row.baseline_wall.as_secs_f64()
        );
        rows.push(row);
    }
    let body = render(&args, &rows);
    report::write_section(&args.output, "manager-sizing", &body)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// The job script: exactly `log_bytes` of text in `seconds` one-second chunks, cheap to produce so the
/// jobs do not starve the manager. `yes` dies of SIGPIPE, which `pipefail` would count as a failure.
fn script(log_bytes: u64, seconds: u64) -> String {
    let line = "(yes 'glrunner manager sizing benchmark: a line of job log output, like a build would print' || true)";
    if seconds == 0 {
        return format!("{line} | head -c {log_bytes}");
    }
    let chunk = log_bytes / seconds;
    let last = log_bytes - chunk * (seconds - 1);
    format!(
        "for i in $(seq 1 {}); do {line} | head -c {chunk}; sleep 1; done; {line} | head -c {last}",
        seconds - 1
    )
}

async fn measure(n: usize, args: &Args, glrunner: &Path) -> anyhow::Result<Row> {
    let Setup { coordinator, dir } = manager::set_up(
        n,
        args.trace_interval,
        "glrunner-bench-sizing-",
        shell_executor,
    )
    .await?;
    Manager::with(glrunner, dir.path(), &[], async |manager| {
        let pid = manager.pid();
        coordinator
            .wait_for_held_polls(1, Duration::from_secs(30))
            .await
            .context("glrunner never polled the coordinator")?;
        let idle_rss = procfs::memory(pid)?.0;
        let measurement = Measurement::start(pid)?;
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let spec = JobSpec::script([script(args.log_bytes, args.job_seconds)])
                .name(format!("log {}/{n}", i + 1))
                .variable(Variable::new("GIT_STRATEGY", "none"));
            ids.push(coordinator.enqueue(spec)?);
        }
        let mut durations = Vec::with_capacity(n);
        for id in &ids {
            let snap = coordinator
                .wait_until_finished(*id, Duration::from_secs(900))
                .await
                .with_context(|| format!("job {id} did not finish"))?;
            if snap.status != JobStatus::Success {
                bail!(
                    "job {id} ended {:?} ({:?})",
                    snap.status,
                    snap.failure_reason
                );
            }
            if snap.trace_len < args.log_bytes || !snap.checksum_matches() {
                bail!(
                    "job {id}: trace of {} bytes, checksum matches: {}",
                    snap.trace_len,
                    snap.checksum_matches()
                );
            }
            if let Some(end) = snap.finished_at {
                durations.push(end.duration_since(snap.created_at).unwrap_or_default());
            }
        }
        let used = measurement.finish().await?;
        let (job_mean, job_max) = mean_and_max(&durations);
        Ok(Row {
            jobs: n,
            idle_rss,
            peak_rss: used.peak_rss,
            cpu: used.cpu,
            peak_cpu_cores: used.peak_cpu_cores.unwrap_or(0.0),
            wall: used.span,
            job_mean,
            job_max,
            requests: coordinator.requests().len(),
            baseline_wall: Duration::ZERO,
        })
    })
    .await
}

/// The same N scripts run directly by bash at once, output discarded: what the jobs alone cost here.
fn baseline(n: usize, script: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(
            Command::new("bash")
                .args(["-c", script])
                .stdout(Stdio::null())
                .spawn()
                .context("starting bash")?,
        );
    }
    for mut c in children {
        c.wait()?;
    }
    Ok(started.elapsed())
}

fn render(args: &Args, rows: &[Row]) -> String {
    let jobs: Vec<String> = args.jobs.iter().map(|n| n.to_string()).collect();
    let mut out = String::new();
    out.push_str("## Manager sizing, shell executor\n\n");
    out.push_str(&format!(
        "Command: `cargo build --release -p glrunner -p glrunner-bench && ./target/release/glrunner-bench manager-sizing --jobs {} --log-bytes {} --job-seconds {} --trace-interval {}`  \n",
        jobs.join(","),
        args.log_bytes,
        args.job_seconds,
        args.trace_interval
    ));
    out.push_str(&format!(
        "Machine: {}  \nDate: {}\n\n",
        machine::describe(),
        machine::today()
    ));
    out.push_str(&format!(
        "GitLab's manager sizing test reproduced: N jobs are enqueued at once in the test coordinator (long polling on, \
         trace update interval {} s as when someone watches each log), glrunner runs with `concurrent = N` and the shell \
         executor, and each job writes {} bytes of log, spread over {} s in one-second chunks as a build prints. glrunner's figures are its own process only (from /proc; the \
         jobs' bash processes are not counted). Every job must succeed with its full trace stored and a matching \
         checksum, or the run fails. The baseline is the same N job scripts run by bash directly, without a runner, \
         in the same invocation.\n\n",
        args.trace_interval, args.log_bytes, args.job_seconds
    ));
    out.push_str("| jobs | peak RSS | RSS idle | CPU time | avg CPU | peak CPU (1 s) | end-to-end, all jobs | per job mean / max | baseline (no runner) | API requests |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.1} MB | {:.1} MB | {:.2} s | {:.3} cores | {:.3} cores | {:.1} s | {:.1} s / {:.1} s | {:.1} s | {} |\n",
            r.jobs,
            mb(r.peak_rss),
            mb(r.idle_rss),
            r.cpu.as_secs_f64(),
            r.cpu.as_secs_f64() / r.wall.as_secs_f64().max(0.001),
            r.peak_cpu_cores,
            r.wall.as_secs_f64(),
            r.job_mean.as_secs_f64(),
            r.job_max.as_secs_f64(),
            r.baseline_wall.as_secs_f64(),
            r.requests
        ));
    }
    out.push_str(
        "\nThe official runner, as documented in GitLab's manager pod performance guide (Kubernetes executor, \
         4 MB of log per job, peak figures): 50 jobs 308m CPU / 261 MB, 100 jobs 657m CPU / 369 MB. \
         glrunner's bar at 100 jobs: peak RSS ≤ 40 MB and average CPU ≤ 0.1 core.\n",
    );
    out
}
