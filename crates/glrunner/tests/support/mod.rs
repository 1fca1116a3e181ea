//! The end-to-end harness: an in-process GitLab test coordinator on 127.0.0.1, a config.toml in a temp
//! dir, and the real `glrunner` binary as a child process whose output tests wait on.
#![allow(dead_code)]

use glrunner_coordinator::{AddedRunner, Coordinator, JobSnapshot, JobSpec, Options, RunnerSpec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

/// Generous upper bound for anything that should happen within a few seconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// Environment variable every process a test starts carries, so a test can find and stop whatever
/// outlived it (jobs run in their own process groups).
const MARK_VAR: &str = "GLRUNNER_E2E_MARK";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_glrunner")
}

/// A job that needs no sources (`GIT_STRATEGY=none`).
pub fn job(script: &[&str]) -> JobSpec {
    JobSpec::script(script.iter().copied()).var("GIT_STRATEGY", "none")
}

/// Coordinator settings for these tests: long polling on, a 1 s trace interval, a short ack window.
pub fn options() -> Options {
    Options::default()
        .long_poll(Duration::from_secs(5))
        .trace_update_interval(1)
        .ack_window(Duration::from_secs(20))
}

fn unique_mark() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ------------------------------------------------------------------ config.toml

/// One `[[runners]]` entry.
#[derive(Debug, Clone)]
pub struct RunnerBlock {
    pub name: String,
    pub url: String,
    /// Left out of the file when empty (e.g. with `token_file`).
    pub token: String,
    /// Extra `key = value` lines of the entry.
    pub lines: Vec<String>,
}

/// What goes into config.toml.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub concurrent: usize,
    pub check_interval: u64,
    pub shutdown_timeout: u64,
    pub listen_address: Option<String>,
    /// Extra global lines (before the first `[[runners]]`).
    pub global: Vec<String>,
    pub runners: Vec<RunnerBlock>,
}

impl RunConfig {
    pub fn new(url: &str, token: &str) -> Self {
        Self {
            concurrent: 4,
            check_interval: 1,
            shutdown_timeout: 10,
            listen_address: None,
            global: Vec::new(),
            runners: vec![RunnerBlock {
                name: "e2e".to_owned(),
                url: url.to_owned(),
                token: token.to_owned(),
                lines: Vec::new(),
            }],
        }
    }

    pub fn concurrent(mut self, n: usize) -> Self {
        self.concurrent = n;
        self
    }

    pub fn check_interval(mut self, secs: u64) -> Self {
        self.check_interval = secs;
        self
    }

    pub fn shutdown_timeout(mut self, secs: u64) -> Self {
        self.shutdown_timeout = secs;
        self
    }

    pub fn listen(mut self, addr: &str) -> Self {
        self.listen_address = Some(addr.to_owned());
        self
    }

    pub fn global(mut self, line: &str) -> Self {
        self.global.push(line.to_owned());
        self
    }

    /// Add a line to the (first) runner entry.
    pub fn runner_line(mut self, line: &str) -> Self {
        self.runners[0].lines.push(line.to_owned());
        self
    }

    pub fn render(&self, work: &Path) -> String {
        let mut out = String::from("# glrunner end-to-end test configuration\n");
        out.push_str(&format!("concurrent = {}\n", self.concurrent));
        out.push_str(&format!("check_interval = {}\n", self.check_interval));
        out.push_str(&format!("shutdown_timeout = {}\n", self.shutdown_timeout));
        if let Some(addr) = &self.listen_address {
            out.push_str(&format!("listen_address = {addr:?}\n"));
        }
        for l in &self.global {
            out.push_str(l);
            out.push('\n');
        }
        for r in &self.runners {
            out.push_str("\n[[runners]]\n");
            out.push_str(&format!("  name = {:?}\n", r.name));
            out.push_str(&format!("  url = {:?}\n", r.url));
            if !r.token.is_empty() {
                out.push_str(&format!("  token = {:?}\n", r.token));
            }
            out.push_str("  executor = \"shell\"\n");
            out.push_str(&format!(
                "  builds_dir = {:?}\n",
                work.join("builds").display().to_string()
            ));
            out.push_str(&format!(
                "  cache_dir = {:?}\n",
                work.join("cache").display().to_string()
            ));
            for l in &r.lines {
                out.push_str("  ");
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

// ------------------------------------------------------------------ the test environment

/// A temp dir, a coordinator and one runner created in it.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub gitlab: Coordinator,
    pub runner: AddedRunner,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with_options(options()).await
    }

    pub async fn with_options(options: Options) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let gitlab = Coordinator::start(options)
            .await
            .expect("the coordinator starts on 127.0.0.1");
        let runner = gitlab.add_runner(RunnerSpec::created().description("e2e"));
        let dir = tempfile::Builder::new()
            .prefix("glrunner-e2e-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
        Self {
            dir,
            gitlab,
            runner,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config/config.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn token(&self) -> &str {
        self.runner.token.expose()
    }

    /// A config for the coordinator's runner.
    pub fn config(&self) -> RunConfig {
        RunConfig::new(self.gitlab.url(), self.token())
    }

    pub fn write_config(&self, cfg: &RunConfig) {
        std::fs::write(self.config_path(), cfg.render(self.dir.path())).expect("write config.toml");
    }

    /// Write `cfg` and start `glrunner run -c … --state-dir …`.
    pub fn start(&self, cfg: &RunConfig) -> Glrunner {
        self.start_with_env(cfg, &[])
    }

    /// `start` with extra environment variables for glrunner.
    pub fn start_with_env(&self, cfg: &RunConfig, env: &[(&str, &str)]) -> Glrunner {
        self.write_config(cfg);
        self.spawn_run(env)
    }

    /// Start `glrunner run -c … --state-dir …` on the config.toml as it is, with extra environment.
    pub fn spawn_run(&self, env: &[(&str, &str)]) -> Glrunner {
        let config = self.config_path();
        let state = self.state_dir();
        Glrunner::spawn_with_env(
            self.dir.path(),
            &[
                "run",
                "-c",
                path_str(&config),
                "--state-dir",
                path_str(&state),
            ],
            None,
            env,
        )
    }

    /// The system_id glrunner persisted in the state dir.
    pub fn system_id(&self) -> String {
        read_system_id(&self.state_dir())
    }

    /// Wait until the job is finished; panics with glrunner's log and the trace otherwise.
    pub async fn finished(&self, gl: &Glrunner, id: i64, timeout: Duration) -> JobSnapshot {
        match self.gitlab.wait_until_finished(id, timeout).await {
            Ok(j) => j,
            Err(e) => panic!(
                "job {id} did not finish: {e}\n--- trace ---\n{}\n--- glrunner ---\n{}",
                self.gitlab
                    .job(id)
                    .map(|j| j.trace_text())
                    .unwrap_or_default(),
                gl.output()
            ),
        }
    }

    /// Wait until the job's stored trace contains `needle`.
    pub async fn trace_contains(
        &self,
        gl: &Glrunner,
        id: i64,
        needle: &str,
        timeout: Duration,
    ) -> JobSnapshot {
        let needle_bytes = needle.as_bytes().to_vec();
        match self
            .gitlab
            .wait_for(
                id,
                |j| {
                    j.trace
                        .windows(needle_bytes.len())
                        .any(|w| w == needle_bytes)
                },
                timeout,
            )
            .await
        {
            Ok(j) => j,
            Err(e) => panic!(
                "the trace of job {id} never showed {needle:?}: {e}\n--- trace ---\n{}\n--- glrunner ---\n{}",
                self.gitlab
                    .job(id)
                    .map(|j| j.trace_text())
                    .unwrap_or_default(),
                gl.output()
            ),
        }
    }
}

/// Run git in `dir` without the user's global config; its stdout. Panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

pub fn read_system_id(state_dir: &Path) -> String {
    std::fs::read_to_string(state_dir.join(glrunner_config::state::SYSTEM_ID_FILE))
        .unwrap_or_else(|e| panic!("no system_id in {}: {e}", state_dir.display()))
        .trim()
        .to_owned()
}

// ------------------------------------------------------------------ captured output

/// stdout and stderr of a child, merged, with a way to wait for text to appear.
#[derive(Clone)]
pub struct Output {
    inner: Arc<OutputInner>,
}

struct OutputInner {
    text: Mutex<String>,
    /// Bumped on every append; `closed` once both streams ended.
    version: watch::Sender<u64>,
    open_streams: Mutex<u32>,
}

impl Output {
    fn new(streams: u32) -> Self {
        Self {
            inner: Arc::new(OutputInner {
                text: Mutex::new(String::new()),
                version: watch::channel(0).0,
                open_streams: Mutex::new(streams),
            }),
        }
    }

    fn push(&self, bytes: &[u8]) {
        self.inner
            .text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&String::from_utf8_lossy(bytes));
        self.inner.version.send_modify(|v| *v += 1);
    }

    fn stream_ended(&self) {
        *self
            .inner
            .open_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner()) -= 1;
        self.inner.version.send_modify(|v| *v += 1);
    }

    fn closed(&self) -> bool {
        *self
            .inner
            .open_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            == 0
    }

    pub fn text(&self) -> String {
        self.inner
            .text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wait until `pred` holds for the whole output; woken by each append. Fails at `timeout` or when
    /// the output ended without it.
    pub async fn wait_until(
        &self,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.inner.version.subscribe();
        loop {
            let closed = self.closed();
            {
                let text = self.inner.text.lock().unwrap_or_else(|e| e.into_inner());
                if pred(&text) {
                    return Ok(text.clone());
                }
            }
            if closed {
                return Err("the process's output ended".to_owned());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err("the output buffer went away".to_owned()),
                Err(_) => return Err(format!("nothing matched within {timeout:?}")),
            }
        }
    }

    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

fn pump(mut stream: impl AsyncRead + Unpin + Send + 'static, out: Output) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.push(&buf[..n]),
            }
        }
        out.stream_ended();
    });
}

// ------------------------------------------------------------------ the glrunner process

/// A running `glrunner` child. Dropping it kills it and every process it started.
pub struct Glrunner {
    child: Child,
    pid: u32,
    out: Output,
    mark: String,
}

impl Glrunner {
    /// Start `glrunner <args>` in `cwd` with a clean environment (`HOME` inside `cwd`). With `user`,
    /// the binary runs as that uid/gid through `setpriv`.
    pub fn spawn(cwd: &Path, args: &[&str], user: Option<(u32, u32)>) -> Self {
        Self::spawn_with_env(cwd, args, user, &[])
    }

    pub fn spawn_with_env(
        cwd: &Path,
        args: &[&str],
        user: Option<(u32, u32)>,
        env: &[(&str, &str)],
    ) -> Self {
        let mark = unique_mark();
        let mut cmd = match user {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", cwd.join("home"))
            .env(MARK_VAR, &mark)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("glrunner starts");
        let pid = child.id().expect("a running child has a pid");
        let out = Output::new(2);
        pump(child.stdout.take().expect("stdout piped"), out.clone());
        pump(child.stderr.take().expect("stderr piped"), out.clone());
        Self {
            child,
            pid,
            out,
            mark,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn output(&self) -> String {
        self.out.text()
    }

    pub fn out(&self) -> &Output {
        &self.out
    }

    /// Wait until the output contains `needle`; panics with the whole output otherwise.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        match self.out.wait_until(|t| t.contains(needle), timeout).await {
            Ok(t) => t,
            Err(e) => panic!(
                "glrunner never printed {needle:?}: {e}\n--- glrunner ---\n{}",
                self.output()
            ),
        }
    }

    /// Wait until `needle` appears at least `n` times.
    pub async fn wait_for_log_count(&self, needle: &str, n: usize, timeout: Duration) -> String {
        match self
            .out
            .wait_until(|t| t.matches(needle).count() >= n, timeout)
            .await
        {
            Ok(t) => t,
            Err(e) => panic!(
                "glrunner never printed {needle:?} {n} times: {e}\n--- glrunner ---\n{}",
                self.output()
            ),
        }
    }

    /// The manager's listen address, from its start-up line.
    pub async fn listen_addr(&self) -> String {
        let marker = "metrics and health on http://";
        let text = self.wait_for_log(marker, WAIT).await;
        let rest = &text[text.find(marker).expect("found") + marker.len()..];
        rest.split('/').next().expect("host:port").to_owned()
    }

    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid).expect("pid fits");
        kill(Pid::from_raw(pid), signal).expect("signal glrunner");
    }

    /// Wait for the process to exit (and its output to end).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok()?;
        let _ = self.out.wait_until(|_| false, Duration::from_secs(5)).await;
        Some(status)
    }

    /// Wait for the exit; panics with the output if it does not come.
    pub async fn exited(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit(timeout).await {
            Some(s) => s,
            None => panic!(
                "glrunner did not exit within {timeout:?}\n--- glrunner ---\n{}",
                self.output()
            ),
        }
    }

    /// SIGTERM and wait (bounded) for the exit.
    pub async fn stop(&mut self) -> ExitStatus {
        if let Ok(None) = self.child.try_wait() {
            self.signal(Signal::SIGTERM);
        }
        self.exited(WAIT).await
    }
}

impl Drop for Glrunner {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        kill_marked(&self.mark);
    }
}

/// SIGKILL every process carrying `MARK_VAR=mark` in its environment (job processes run in their own
/// process groups, so killing glrunner alone could leave them behind).
fn kill_marked(mark: &str) {
    let needle = format!("{MARK_VAR}={mark}");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Run a one-shot glrunner command (register, verify, list, exec…) to completion.
pub async fn run_command(cwd: &Path, args: &[&str]) -> CommandResult {
    let mut gl = Glrunner::spawn(cwd, args, None);
    let status = gl.exited(WAIT).await;
    CommandResult {
        status,
        output: gl.output(),
    }
}

#[derive(Debug)]
pub struct CommandResult {
    pub status: ExitStatus,
    /// stdout and stderr, merged.
    pub output: String,
}

impl CommandResult {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

// ------------------------------------------------------------------ process probes

/// Tells a test when processes of a job are up and when they are all gone, without polling: the job
/// opens a FIFO for writing (its children inherit the descriptor), the test reads it; end of file means
/// every holder has exited.
pub struct ProcessProbe {
    path: PathBuf,
    rx: tokio::net::unix::pipe::Receiver,
}

impl ProcessProbe {
    pub fn new(dir: &Path, name: &str) -> Self {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666))
            .expect("mkfifo");
        let rx = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(&path)
            .expect("open the FIFO for reading");
        Self { path, rx }
    }

    /// Shell for the job: keep the FIFO open in this shell (and what it starts), and announce it.
    pub fn hold(&self) -> String {
        format!("exec 3>'{}'; echo up >&3", self.path.display())
    }

    /// Wait until a job process announced itself.
    pub async fn wait_up(&mut self, timeout: Duration) {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(timeout, self.rx.read(&mut buf))
            .await
            .expect("the job's process came up in time")
            .expect("read the FIFO");
        assert!(n > 0, "the FIFO closed before any job process held it");
    }

    /// Wait until every process holding the FIFO has exited.
    pub async fn wait_gone(&mut self, timeout: Duration) -> Result<(), String> {
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.read(&mut buf)).await {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(format!("reading the FIFO failed: {e}")),
                Err(_) => {
                    return Err(format!(
                        "job processes still alive after {timeout:?} (FIFO still held open)"
                    ));
                }
            }
        }
    }
}

/// The request log entries for one job, in order.
pub fn job_requests(gitlab: &Coordinator, id: i64) -> Vec<glrunner_coordinator::RequestRecord> {
    gitlab
        .requests()
        .into_iter()
        .filter(|r| r.job_id == Some(id))
        .collect()
}

/// CRC-32 as the runner reports it.
pub fn checksum(bytes: &[u8]) -> String {
    format!("crc32:{:08x}", crc32fast::hash(bytes))
}
