//! A `glrunner run` process under measurement: the GitLab test coordinator it takes jobs from and
//! its config.toml, the process started with its output in a log file, its CPU sampled from /proc
//! while jobs run, and stopped with TERM (KILL if it lingers).

use crate::procfs;
use anyhow::Context;
use glrunner_coordinator::{Coordinator, Options, RunnerSpec};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The GitLab test coordinator with one runner, and the directory of that runner's config.toml.
pub struct Setup {
    pub coordinator: Coordinator,
    pub dir: tempfile::TempDir,
}

/// Start the coordinator (long polling on, `trace_interval` announced) and write config.toml for one
/// runner taking up to `n` jobs at once; `executor` gives the executor's lines for the directory.
pub async fn set_up(
    n: usize,
    trace_interval: u64,
    prefix: &str,
    executor: impl FnOnce(&Path) -> String,
) -> anyhow::Result<Setup> {
    let coordinator = Coordinator::start(
        Options::default()
            .long_poll(Duration::from_secs(50))
            .trace_update_interval(trace_interval),
    )
    .await?;
    let runner = coordinator.add_runner(RunnerSpec::created());
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "concurrent = {n}\ncheck_interval = 3\n\n[[runners]]\n  name = \"bench\"\n  url = \"{}\"\n  token = \"{}\"\n{}",
            coordinator.url(),
            runner.token.expose(),
            executor(dir.path())
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(Setup { coordinator, dir })
}

/// The shell executor's lines, with builds in `dir`.
pub fn shell_executor(dir: &Path) -> String {
    format!(
        "  executor = \"shell\"\n  builds_dir = {:?}\n",
        dir.join("builds").display().to_string()
    )
}

/// A running `glrunner run`; dropping it stops it.
pub struct Manager {
    child: Child,
    log: PathBuf,
}

impl Manager {
    /// `glrunner run -c <config> --state-dir <state>`, stderr into `log`, with `env` added.
    pub fn spawn(
        glrunner: &Path,
        config: &Path,
        state: &Path,
        log: &Path,
        env: &[(&str, &Path)],
    ) -> anyhow::Result<Self> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(glrunner);
        cmd.arg("run")
            .arg("-c")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", glrunner.display()))?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    /// `glrunner run` on `dir`/config.toml (state and log in `dir` too) for the time of `body`, then
    /// stopped; a failure carries glrunner's last log lines.
    pub async fn with<T>(
        glrunner: &Path,
        dir: &Path,
        env: &[(&str, &Path)],
        body: impl AsyncFnOnce(&Manager) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut manager = Self::spawn(
            glrunner,
            &dir.join("config.toml"),
            &dir.join("state"),
            &dir.join("glrunner.log"),
            env,
        )?;
        let result = body(&manager).await;
        manager.stop();
        result.with_context(|| format!("glrunner's last log lines:\n{}", manager.log_tail(30)))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines glrunner logged, to explain a failed run.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        crate::report::last_lines(&text, lines)
    }

    /// TERM, then KILL after 10 s.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The manager's CPU over a stretch of work: its CPU time at the start, sampled while the work runs.
pub struct Measurement {
    pid: u32,
    cpu0: Duration,
    sampler: CpuSampler,
    started: Instant,
}

/// What a [`Measurement`] found.
pub struct Measured {
    /// The time the work took, from [`Measurement::start`].
    pub span: Duration,
    /// CPU time the process used over `span`.
    pub cpu: Duration,
    /// Peak resident memory (VmHWM) at the end.
    pub peak_rss: u64,
    pub peak_cpu_cores: Option<f64>,
}

impl Measurement {
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        let cpu0 = procfs::cpu_time(pid)?;
        Ok(Self {
            pid,
            cpu0,
            sampler: CpuSampler::start(pid),
            started: Instant::now(),
        })
    }

    pub async fn finish(self) -> anyhow::Result<Measured> {
        let span = self.started.elapsed();
        let cpu = procfs::cpu_time(self.pid)?.saturating_sub(self.cpu0);
        let peak_rss = procfs::memory(self.pid)?.1;
        let peak_cpu_cores = self.sampler.finish().await;
        Ok(Measured {
            span,
            cpu,
            peak_rss,
            peak_cpu_cores,
        })
    }
}

/// The mean and the longest of the jobs' durations (zero when there are none).
pub fn mean_and_max(durations: &[Duration]) -> (Duration, Duration) {
    let mean = durations.iter().sum::<Duration>() / durations.len().max(1) as u32;
    let max = durations.iter().max().copied().unwrap_or_default();
    (mean, max)
}

/// Peak CPU of one process per 1-second window, sampled every 250 ms until finished.
pub struct CpuSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<f64>>,
}

impl CpuSampler {
    pub fn start(pid: u32) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        Self {
            stop,
            task: tokio::spawn(sample_cpu(pid, stopped)),
        }
    }

    /// The peak, in cores; `None` when the process was not followed for a whole second.
    pub async fn finish(self) -> Option<f64> {
        let _ = self.stop.send(());
        self.task.await.ok().flatten()
    }
}

async fn sample_cpu(pid: u32, mut stop: tokio::sync::oneshot::Receiver<()>) -> Option<f64> {
    let mut samples: Vec<(Instant, Duration)> = Vec::new();
    let mut peak: Option<f64> = None;
    // Bounded: at most an hour of samples.
    for _ in 0..(4 * 3600) {
        let Ok(cpu) = procfs::cpu_time(pid) else {
            break;
        };
        let now = Instant::now();
        samples.push((now, cpu));
        let window = samples
            .iter()
            .rev()
            .find(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1));
        if let Some((t, c)) = window {
            let rate = (cpu - *c).as_secs_f64() / now.duration_since(*t).as_secs_f64();
            peak = Some(peak.map_or(rate, |p| p.max(rate)));
        }
        samples.retain(|(t, _)| now.duration_since(*t) < Duration::from_secs(3));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = &mut stop => break,
        }
    }
    peak
}
