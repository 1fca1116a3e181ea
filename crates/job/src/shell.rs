//! The shell executor: each stage script runs as a local `bash --noprofile --norc <script file>` in its
//! own process group (a stage made only of simple steps, see [`crate::stage_ops`], is carried out
//! without a shell: its `glrunner helper` calls are started directly, each in its own process group
//! and followed by the same code as a script), with stdout and stderr merged into one pipe (so output
//! keeps its order) that is read with a small buffer straight into the trace.
//!
//! Scripts are written to a private temp dir (mode 0700, files 0600: they hold the job's secrets) that
//! `cleanup` removes. Stopping a stage sends SIGTERM to its process group, then SIGKILL after the grace
//! period, and waits (bounded) until no process of the group is alive. When a script ends but
//! something it started in the background still holds its output, the output is read for a short
//! drain period and then that process group is stopped the same way, so a stage never hangs on a
//! forgotten `server &`; background processes that redirected their output (`cmd > log 2>&1 &`) keep
//! running, as with gitlab-runner.

use crate::context::RunnerContext;
use crate::executor::{
    Executor, ExecutorError, ExecutorFuture, PrepareOptions, StageExit, StageScript,
};
use crate::paths::JobPaths;
use crate::stage_ops::{Ending, HelperCall, HelperEnd, Host};
use glrunner_protocol::JobResponse;
use glrunner_protocol::request::FeaturesInfo;
use glrunner_trace::{Trace, format};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes read from a stage's output at a time; many jobs run at once, so it stays small.
const READ_BUFFER: usize = 8 * 1024;
/// Between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// How long output is still read after the script exited while background processes hold it.
pub const DEFAULT_DRAIN_PERIOD: Duration = Duration::from_secs(2);
/// How often the process table is checked while waiting for a stopped group to die.
const GROUP_POLL: Duration = Duration::from_millis(20);
/// Environment variables of glrunner itself that carry tokens and must not reach jobs.
pub const DEFAULT_ENV_REMOVED: &[&str] = &[
    "CI_SERVER_TOKEN",
    "REGISTRATION_TOKEN",
    "RUNNER_TOKEN",
    "RUNNER_REGISTRATION_TOKEN",
    "CI_JOB_TOKEN",
];

/// Why the shell executor could not do its part.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    #[error(
        "the builds directory {path} could not be created: {source}. The shell executor keeps every job's \
         checkout there; make it writable for the user glrunner runs as, or set `builds_dir` in the \
         [[runners]] section of config.toml to a writable directory"
    )]
    BuildsDir { path: PathBuf, source: io::Error },
    #[error(
        "the builds directory {0} is not valid UTF-8, so job scripts cannot refer to it; set `builds_dir` in \
         config.toml to a path without such characters"
    )]
    BuildsDirNotUtf8(PathBuf),
    #[error(
        "the current directory could not be read ({0}), so the default builds directory `<current dir>/builds` \
         is unknown; start glrunner from an existing directory or set `builds_dir` in config.toml"
    )]
    CurrentDir(io::Error),
    #[error(
        "a private directory for the job's scripts could not be created in {dir}: {source}. Make the \
         temp directory writable or point TMPDIR at one that is"
    )]
    ScriptDir { dir: PathBuf, source: io::Error },
    #[error(
        "the script for stage {stage} could not be written to {path}: {source}. Check free space and \
         permissions of the temp directory (TMPDIR)"
    )]
    ScriptWrite {
        stage: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "a pipe for the output of stage {stage} could not be created: {source}; the system may be out of file descriptors (check `ulimit -n`)"
    )]
    Pipe { stage: String, source: io::Error },
    #[error(
        "{bash} could not be started for stage {stage}: {source}. The shell executor runs every stage with \
         bash; install it (for example `apt-get install bash`) or make sure it is on glrunner's PATH"
    )]
    Spawn {
        bash: String,
        stage: String,
        source: io::Error,
    },
    #[error("waiting for the script of stage {stage} failed: {source}")]
    Wait { stage: String, source: io::Error },
    #[error(
        "the executor was asked to run stage {0} before it was prepared; this is a bug in glrunner"
    )]
    NotPrepared(String),
}

impl From<ShellError> for ExecutorError {
    fn from(e: ShellError) -> Self {
        ExecutorError::system(e.to_string())
    }
}

struct Prepared {
    scripts: tempfile::TempDir,
    builds_dir: PathBuf,
}

/// Runs stage scripts with a local bash.
pub struct ShellExecutor {
    bash: PathBuf,
    grace: Duration,
    drain: Duration,
    work_dir: Option<PathBuf>,
    env_removed: Vec<String>,
    /// Carry out stages made of simple steps without bash.
    stage_ops: bool,
    prepared: Option<Prepared>,
}

impl Default for ShellExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl ShellExecutor {
    pub fn new() -> Self {
        Self {
            bash: PathBuf::from("bash"),
            grace: DEFAULT_GRACE_PERIOD,
            drain: DEFAULT_DRAIN_PERIOD,
            work_dir: None,
            env_removed: DEFAULT_ENV_REMOVED.iter().map(|s| s.to_string()).collect(),
            stage_ops: true,
            prepared: None,
        }
    }

    /// The bash to run (default: `bash` from PATH).
    pub fn with_bash(mut self, bash: impl Into<PathBuf>) -> Self {
        self.bash = bash.into();
        self
    }

    /// Time between SIGTERM and SIGKILL when a stage is stopped.
    pub fn with_grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long output is still read after a script ended while background processes hold it.
    pub fn with_drain_period(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// The directory the default builds dir (`<dir>/builds`) is in, instead of the current directory.
    pub fn with_work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Also keep these variables of glrunner's own environment from jobs (for example the variable
    /// config.toml's `token = "$NAME"` reads).
    pub fn with_env_removed<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        names: I,
    ) -> Self {
        self.env_removed.extend(names.into_iter().map(Into::into));
        self
    }

    /// Whether stages made only of simple steps (see [`crate::stage_ops`]) are carried out without
    /// bash (the default) or run as their scripts like every other stage.
    pub fn with_stage_ops(mut self, on: bool) -> Self {
        self.stage_ops = on;
        self
    }

    /// What the shell executor adds to `FeaturesInfo`: a shared environment.
    pub fn features_info(features: &mut FeaturesInfo) {
        features.shared = true;
    }

    fn builds_dir(&self, ctx: &RunnerContext) -> Result<PathBuf, ShellError> {
        let base = match &self.work_dir {
            Some(d) => d.clone(),
            None => std::env::current_dir().map_err(ShellError::CurrentDir)?,
        };
        Ok(match &ctx.builds_dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => base.join(d),
            None => base.join("builds"),
        })
    }

    async fn prepare_impl(&mut self, opts: PrepareOptions<'_>) -> Result<(), ShellError> {
        format::line(opts.trace, "Using Shell (bash) executor...");
        let builds_dir = PathBuf::from(&opts.paths.builds_dir);
        tokio::fs::create_dir_all(&builds_dir)
            .await
            .map_err(|source| ShellError::BuildsDir {
                path: builds_dir.clone(),
                source,
            })?;
        let tmp = std::env::temp_dir();
        let scripts = tempfile::Builder::new()
            .prefix("glrunner-job-")
            .tempdir_in(&tmp)
            .map_err(|source| ShellError::ScriptDir { dir: tmp, source })?;
        self.prepared = Some(Prepared {
            scripts,
            builds_dir,
        });
        Ok(())
    }

    async fn run_impl(
        &mut self,
        script: &StageScript,
        cancel: &CancellationToken,
        trace: &Trace,
    ) -> Result<StageExit, ShellError> {
        let stage = script.stage.as_str();
        let prepared = self
            .prepared
            .as_ref()
            .ok_or_else(|| ShellError::NotPrepared(stage.to_owned()))?;
        if self.stage_ops
            && let Some(ops) = script.ops.as_ref().filter(|o| o.can_run_here())
        {
            // Simple steps need no shell: files are handled here and helper calls are started
            // directly, stopped on cancel as a script would be.
            let mut host = ShellHost {
                ex: self,
                stage,
                cancel,
                trace,
            };
            return Ok(
                match ops.carry_out(&prepared.builds_dir, &mut host).await? {
                    Ending::Exited(code) => StageExit::Exited(code),
                    Ending::Canceled => StageExit::Canceled,
                },
            );
        }
        let path = prepared.scripts.path().join(script_file_name(stage));
        write_private(&path, script.script.as_bytes())
            .await
            .map_err(|source| ShellError::ScriptWrite {
                stage: stage.to_owned(),
                path: path.clone(),
                source,
            })?;

        let mut cmd = tokio::process::Command::new(&self.bash);
        cmd.arg("--noprofile")
            .arg("--norc")
            .arg(&path)
            .current_dir(&prepared.builds_dir);
        for name in &self.env_removed {
            cmd.env_remove(name);
        }
        let (child, output) = start_group(cmd).map_err(|e| match e {
            StartError::Pipe(source) => ShellError::Pipe {
                stage: stage.to_owned(),
                source,
            },
            StartError::Spawn(source) => ShellError::Spawn {
                bash: self.bash.display().to_string(),
                stage: stage.to_owned(),
                source,
            },
        })?;
        Ok(
            match self
                .follow_group(child, output, stage, cancel, trace)
                .await?
            {
                GroupEnd::Exited(status) => StageExit::Exited(exit_code(status)),
                GroupEnd::Canceled => StageExit::Canceled,
            },
        )
    }

    /// Stream a started group's output into the trace until its leader exited and the output is
    /// closed (or held open past the drain period); on cancel, SIGTERM the group, SIGKILL it after the
    /// grace period and wait until it is gone.
    async fn follow_group(
        &self,
        mut child: tokio::process::Child,
        reader: io::PipeReader,
        stage: &str,
        cancel: &CancellationToken,
        trace: &Trace,
    ) -> Result<GroupEnd, ShellError> {
        let pgid = child.id().map(|id| id as i32);
        let mut output = Some(
            pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(|source| {
                ShellError::Pipe {
                    stage: stage.to_owned(),
                    source,
                }
            })?,
        );

        let mut buf = vec![0u8; READ_BUFFER];
        let mut status: Option<ExitStatus> = None;
        let mut stopping = false;
        let mut kill_at: Option<Instant> = None;
        let mut drain_until: Option<Instant> = None;
        let mut held_open = false;
        loop {
            if status.is_some() && output.is_none() {
                break;
            }
            tokio::select! {
                biased;
                read = read_some(&mut output, &mut buf) => match read {
                    Ok(0) => output = None,
                    Ok(n) => trace.write(&buf[..n]),
                    Err(e) => {
                        tracing::warn!(stage = %stage, "reading the stage's output failed: {e}");
                        output = None;
                    }
                },
                waited = child.wait(), if status.is_none() => {
                    status = Some(waited.map_err(|source| ShellError::Wait { stage: stage.to_owned(), source })?);
                    drain_until = Some(Instant::now() + self.drain);
                }
                _ = cancel.cancelled(), if !stopping => {
                    stopping = true;
                    signal_group(pgid, Signal::SIGTERM);
                    kill_at = Some(Instant::now() + self.grace);
                }
                _ = sleep_until(kill_at) => {
                    signal_group(pgid, Signal::SIGKILL);
                    kill_at = None;
                }
                _ = sleep_until(drain_until), if output.is_some() => {
                    output = None;
                    held_open = true;
                }
            }
        }
        drop(buf);

        if held_open && !stopping {
            format::warning(
                trace,
                &format!(
                    "processes the {stage} script started in the background still held its output {} after it \
                 ended; glrunner stopped them. Redirect the output of background commands \
                 (`command > file.log 2>&1 &`) to let them outlive the script",
                    crate::settings::format_go_duration(self.drain)
                ),
            );
        }
        if (stopping || held_open)
            && let Some(pgid) = pgid
            && !stop_group(pgid, self.grace).await
        {
            format::warning(
                trace,
                &format!(
                    "some processes of stage {stage} (process group {pgid}) did not exit after SIGKILL"
                ),
            );
        }

        if stopping {
            return Ok(GroupEnd::Canceled);
        }
        let status = status.ok_or_else(|| ShellError::Wait {
            stage: stage.to_owned(),
            source: io::Error::other("the script's exit status was lost"),
        })?;
        Ok(GroupEnd::Exited(status))
    }
}

/// How a process group the executor started ended.
enum GroupEnd {
    Exited(ExitStatus),
    Canceled,
}

enum StartError {
    Pipe(io::Error),
    Spawn(io::Error),
}

/// Start `cmd` as the leader of its own process group, stdin /dev/null, stdout and stderr merged into
/// one pipe (so output keeps its order); returns the child and the pipe's read end.
fn start_group(
    mut cmd: tokio::process::Command,
) -> Result<(tokio::process::Child, io::PipeReader), StartError> {
    let (reader, writer) = io::pipe().map_err(StartError::Pipe)?;
    let stdout = writer.try_clone().map_err(StartError::Pipe)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(writer))
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(StartError::Spawn)?;
    // `cmd` drops here, closing our copies of the pipe's write end: EOF comes when the process and
    // everything it started have closed theirs.
    drop(cmd);
    Ok((child, reader))
}

/// Carries out a stage's simple steps for the shell executor: output to the trace, helper calls as
/// process groups of their own with the environment a script would give them.
struct ShellHost<'a> {
    ex: &'a ShellExecutor,
    stage: &'a str,
    cancel: &'a CancellationToken,
    trace: &'a Trace,
}

impl Host for ShellHost<'_> {
    type Error = ShellError;

    fn print(&mut self, bytes: &[u8]) {
        self.trace.write(bytes);
    }

    async fn run_helper(&mut self, call: HelperCall<'_>) -> Result<HelperEnd, ShellError> {
        if self.cancel.is_cancelled() {
            return Ok(HelperEnd::Canceled);
        }
        let mut cmd = tokio::process::Command::new(call.program);
        cmd.args(call.args).current_dir(call.dir);
        for name in &self.ex.env_removed {
            cmd.env_remove(name);
        }
        for (name, value) in call.env {
            cmd.env(name, value);
        }
        let (child, output) = match start_group(cmd) {
            Ok(started) => started,
            Err(StartError::Spawn(e)) => return Ok(HelperEnd::NotStarted(e)),
            Err(StartError::Pipe(source)) => {
                return Err(ShellError::Pipe {
                    stage: self.stage.to_owned(),
                    source,
                });
            }
        };
        let end = self
            .ex
            .follow_group(child, output, self.stage, self.cancel, self.trace)
            .await?;
        Ok(match end {
            GroupEnd::Exited(status) => HelperEnd::Exited(exit_code(status)),
            GroupEnd::Canceled => HelperEnd::Canceled,
        })
    }
}

impl Executor for ShellExecutor {
    fn name(&self) -> &str {
        "shell"
    }

    fn features(&self, features: &mut FeaturesInfo) {
        Self::features_info(features);
    }

    fn disposable(&self) -> bool {
        false
    }

    /// The running glrunner binary: the helper is the same binary (design decision 8).
    fn helper_program(&self) -> Option<String> {
        let exe = std::env::current_exe().ok()?;
        let exe = exe.to_str()?;
        // Linux names a binary replaced by an upgrade `<path> (deleted)`; the new one is at `<path>`.
        Some(exe.strip_suffix(" (deleted)").unwrap_or(exe).to_owned())
    }

    fn job_paths(&self, ctx: &RunnerContext, job: &JobResponse) -> Result<JobPaths, ExecutorError> {
        let dir = self.builds_dir(ctx)?;
        let dir_str = dir
            .to_str()
            .ok_or_else(|| ShellError::BuildsDirNotUtf8(dir.clone()))?;
        Ok(JobPaths::shared(dir_str, ctx, job))
    }

    fn prepare<'a>(
        &'a mut self,
        options: PrepareOptions<'a>,
    ) -> ExecutorFuture<'a, Result<(), ExecutorError>> {
        Box::pin(async move {
            self.prepare_impl(options)
                .await
                .map_err(ExecutorError::from)
        })
    }

    fn run<'a>(
        &'a mut self,
        script: &'a StageScript,
        cancel: &'a CancellationToken,
        trace: &'a Trace,
    ) -> ExecutorFuture<'a, Result<StageExit, ExecutorError>> {
        Box::pin(async move {
            self.run_impl(script, cancel, trace)
                .await
                .map_err(ExecutorError::from)
        })
    }

    fn cleanup<'a>(&'a mut self, trace: &'a Trace) -> ExecutorFuture<'a, ()> {
        Box::pin(async move {
            if let Some(p) = self.prepared.take() {
                let dir = p.scripts.path().to_path_buf();
                if let Err(e) = p.scripts.close() {
                    format::warning(
                        trace,
                        &format!(
                            "the job's script directory {} could not be removed: {e}",
                            dir.display()
                        ),
                    );
                }
            }
        })
    }
}

/// A file name for a stage's script: the stage name with anything unusual replaced.
fn script_file_name(stage: &str) -> String {
    let safe: String = stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.sh")
}

async fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await?;
    f.write_all(content).await?;
    f.flush().await
}

async fn read_some(output: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> io::Result<usize> {
    match output {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

fn signal_group(pgid: Option<i32>, signal: Signal) {
    if let Some(pgid) = pgid.filter(|p| *p > 1) {
        // ESRCH only means the group is already gone.
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Stop every process of group `pgid`: SIGTERM, wait up to `grace`, SIGKILL, wait a little more.
/// Returns whether the group is gone.
pub(crate) async fn stop_group(pgid: i32, grace: Duration) -> bool {
    if !group_alive(pgid) {
        return true;
    }
    signal_group(Some(pgid), Signal::SIGTERM);
    if wait_group_gone(pgid, grace).await {
        return true;
    }
    signal_group(Some(pgid), Signal::SIGKILL);
    wait_group_gone(pgid, Duration::from_secs(2)).await
}

async fn wait_group_gone(pgid: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Whether any process of group `pgid` still runs. Zombies do not count: a process that died after its
/// parent may never be reaped when PID 1 does not reap orphans (common in containers).
pub fn group_alive(pgid: i32) -> bool {
    match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => false,
        _ => match live_group_members(pgid) {
            Some(members) => !members.is_empty(),
            None => true,
        },
    }
}

/// PIDs of the non-zombie processes in group `pgid`, from /proc; `None` without a readable /proc.
pub fn live_group_members(pgid: i32) -> Option<Vec<i32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut members = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((state, group)) = proc_state(pid)
            && group == pgid
            && state != 'Z'
            && state != 'X'
        {
            members.push(pid);
        }
    }
    Some(members)
}

/// A process's state letter and process group from `/proc/<pid>/stat`.
pub fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether process `pid` is alive (not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_are_safe() {
        assert_eq!(script_file_name("step_script"), "step_script.sh");
        assert_eq!(script_file_name("step_../x y"), "step____x_y.sh");
    }

    #[test]
    fn default_builds_dir_is_under_the_work_dir() {
        let ex = ShellExecutor::new().with_work_dir("/srv/runner");
        let ctx = RunnerContext {
            short_token: "tok123456".into(),
            ..RunnerContext::default()
        };
        let mut job = JobResponse::default();
        job.job_info.project_full_path = "g/p".into();
        let p = ex.job_paths(&ctx, &job).unwrap();
        assert_eq!(p.builds_dir, "/srv/runner/builds");
        assert_eq!(p.project_dir, "/srv/runner/builds/tok123456/0/g/p");
        let ctx = RunnerContext {
            builds_dir: Some("/data/b".into()),
            ..ctx
        };
        assert_eq!(ex.job_paths(&ctx, &job).unwrap().builds_dir, "/data/b");
    }

    #[test]
    fn own_process_state_is_readable() {
        let me = std::process::id() as i32;
        let (state, _) = proc_state(me).expect("/proc is readable");
        assert_ne!(state, 'Z');
        assert!(pid_alive(me));
        assert!(!group_alive(i32::MAX - 7));
    }
}
