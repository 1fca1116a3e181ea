//! Shared pieces of the end-to-end tests: a job payload builder, a runner context in a temp dir, a
//! trace whose output can be awaited, and a job runner with a real shell executor.
#![allow(dead_code)]

pub mod gitlab;

use glrunner_job::{JobOutcome, RunnerContext, ShellExecutor, run_job};
use glrunner_protocol::{JobResponse, JobVariable, STEP_AFTER_SCRIPT, STEP_SCRIPT, Step, When};
use glrunner_trace::{JobControl, Trace, TraceConfig};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(60);

pub const JOB_TOKEN: &str = "glcbt-64_testjobtoken0123456789";

pub fn step(name: &str, script: &[&str]) -> Step {
    Step {
        name: name.into(),
        script: script.iter().map(|s| s.to_string()).collect(),
        timeout: Some(3600),
        when: if name == STEP_AFTER_SCRIPT {
            When::Always
        } else {
            When::OnSuccess
        },
        allow_failure: name == STEP_AFTER_SCRIPT,
    }
}

/// A job that runs `script` without touching git.
pub fn job(script: &[&str]) -> JobResponse {
    let mut job = JobResponse {
        id: 1234,
        token: JOB_TOKEN.into(),
        allow_git_fetch: true,
        steps: vec![step(STEP_SCRIPT, script)],
        variables: vec![
            JobVariable::new("CI_JOB_ID", "1234"),
            JobVariable::new("GIT_STRATEGY", "none"),
            JobVariable {
                masked: true,
                public: false,
                ..JobVariable::new("CI_JOB_TOKEN", JOB_TOKEN)
            },
        ],
        ..JobResponse::default()
    };
    job.job_info.project_id = 42;
    job.job_info.project_full_path = "acme/demo".into();
    job.runner_info.timeout = Some(120);
    job.features.trace_sections = true;
    job
}

pub fn with_after_script(mut job: JobResponse, script: &[&str]) -> JobResponse {
    job.steps.push(step(STEP_AFTER_SCRIPT, script));
    job
}

pub fn with_var(mut job: JobResponse, key: &str, value: &str) -> JobResponse {
    job.variables.push(JobVariable::new(key, value));
    job
}

pub fn ctx(dir: &Path) -> RunnerContext {
    RunnerContext {
        name: "test-runner".into(),
        short_token: "tok12345x".into(),
        system_id: "s_0123456789ab".into(),
        version: "0.1.0".into(),
        revision: "abcdef12".into(),
        executor: "shell".into(),
        shell: "bash".into(),
        builds_dir: Some(dir.join("builds")),
        ..RunnerContext::default()
    }
}

/// Collects what the trace writes and wakes waiters on every write.
#[derive(Clone, Default)]
pub struct Output {
    bytes: Arc<Mutex<Vec<u8>>>,
    notify: Arc<Notify>,
}

struct Mirror(Output);

impl io::Write for Mirror {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        self.0.notify.notify_one();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Output {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Wait until the output contains `needle`; panics after `LIMIT`.
    pub async fn wait_for(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            if tokio::time::timeout_at(deadline, self.notify.notified())
                .await
                .is_err()
            {
                panic!("{needle:?} did not appear in the trace:\n{text}");
            }
        }
    }
}

pub fn trace_for(job: &JobResponse) -> (Trace, Output) {
    let output = Output::default();
    let trace = Trace::new(TraceConfig {
        masked_values: glrunner_job::masked_values(job),
        token_prefixes: vec!["glcbt-".into()],
        limit_bytes: 0,
        mirror: Some(Box::new(Mirror(output.clone()))),
    })
    .expect("trace");
    (trace, output)
}

pub fn trace_text(trace: &Trace) -> String {
    trace.finish();
    String::from_utf8_lossy(&trace.read_at(0, usize::MAX).expect("read trace")).into_owned()
}

/// A job run in the background, with its control and live output.
pub struct Running {
    pub control: JobControl,
    pub output: Output,
    pub trace: Trace,
    pub handle: tokio::task::JoinHandle<JobOutcome>,
}

impl Running {
    pub async fn outcome(self) -> (JobOutcome, String) {
        let outcome = tokio::time::timeout(LIMIT, self.handle)
            .await
            .expect("the job ends in time")
            .expect("the job task does not panic");
        (outcome, trace_text(&self.trace))
    }
}

pub fn shell() -> ShellExecutor {
    ShellExecutor::new().with_grace_period(Duration::from_secs(2))
}

pub fn start(job: JobResponse, ctx: RunnerContext, mut executor: ShellExecutor) -> Running {
    let (trace, output) = trace_for(&job);
    let control = JobControl::new();
    let handle = {
        let (trace, control) = (trace.clone(), control.clone());
        tokio::spawn(async move { run_job(&job, &ctx, &mut executor, &trace, &control).await })
    };
    Running {
        control,
        output,
        trace,
        handle,
    }
}

pub async fn run(job: JobResponse, ctx: RunnerContext) -> (JobOutcome, String) {
    start(job, ctx, shell()).outcome().await
}

/// `section_start:<digits>:` → `section_start:T:` so traces compare exactly.
pub fn normalise(trace: &str) -> String {
    let mut out = String::with_capacity(trace.len());
    let mut rest = trace;
    while let Some(i) = ["section_start:", "section_end:"]
        .iter()
        .filter_map(|m| rest.find(m).map(|i| (i, m.len())))
        .min()
    {
        let (at, len) = i;
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        out.push('T');
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(dir: &Path, cmd: &str) -> String {
    let out = std::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-c", cmd])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The project dir the shell executor uses for `ctx(dir)` and `job(..)`.
pub fn project_dir(dir: &Path) -> PathBuf {
    dir.join("builds/tok12345x/0/acme/demo")
}

/// A stand-in for `glrunner helper` in this crate's tests (the real one is another crate's binary,
/// exercised end to end by the glrunner conformance suite). It records every call (arguments, the
/// token it got in its environment, its directory, `$FROM_STEP`) and behaves as the contract says:
/// `cache-extract --file F` exits 2 when F does not exist, `cache-archive --file F` writes F. A file
/// `fail-<subcommand>` in its directory makes that subcommand fail (all calls, or the first N when
/// the file holds N).
pub struct FakeHelper {
    pub dir: PathBuf,
    pub program: PathBuf,
}

impl FakeHelper {
    pub fn new(dir: &Path) -> Self {
        let dir = dir.join("helper");
        std::fs::create_dir_all(&dir).expect("helper dir");
        let program = dir.join("glrunner");
        let d = dir.display();
        let script = format!(
            r#"#!/usr/bin/env bash
log='{d}/calls.log'
{{
  printf 'CALL'
  for a in "$@"; do printf ' [%s]' "$a"; done
  printf ' TOKEN=[%s] CWD=[%s] FROM_STEP=[%s]\n' "${{GLRUNNER_JOB_TOKEN:-}}" "$PWD" "${{FROM_STEP:-}}"
}} >> "$log"
printf 'ENV SETTINGS=[%s] GITLAB_ENV=[%s] DEPS_DIR=[%s] HOME=[%s]\n' "$(if [ -n "${{SETTINGS_FILE:-}}" ]; then cat "$SETTINGS_FILE"; fi)" "${{GITLAB_ENV:-}}" "${{DEPS_DIR:-}}" "${{HOME+set}}" >> '{d}/env.log'
sub="$2"
if [ -f '{d}/block-'"$sub" ]; then echo "$$" > '{d}/pid-'"$sub"; echo "blocking in $sub"; exec sleep 600; fi
count='{d}/count-'"$sub"
n=$(( $(cat "$count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$count"
if [ -f '{d}/fail-'"$sub" ]; then
  limit=$(cat '{d}/fail-'"$sub")
  if [ -z "$limit" ] || [ "$n" -le "$limit" ]; then echo "ERROR: fake $sub failure"; exit 1; fi
fi
file=''
while [ $# -gt 0 ]; do
  if [ "$1" = --file ]; then file="$2"; fi
  shift
done
case "$sub" in
  cache-extract)
    if [ ! -f "$file" ]; then echo 'WARNING: Cache file does not exist'; exit 2; fi
    echo "extracted $(cat "$file")";;
  cache-archive)
    mkdir -p "$(dirname "$file")" && echo "archive of $PWD" > "$file";;
esac
exit 0
"#
        );
        std::fs::write(&program, script).expect("write the fake helper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        Self { dir, program }
    }

    /// Every call, one line each: `CALL [helper] [<subcommand>] [arg]… TOKEN=[…] CWD=[…] FROM_STEP=[…]`.
    pub fn calls(&self) -> Vec<String> {
        self.log_lines("calls.log")
    }

    /// What each call saw of its environment, one line each.
    pub fn env_log(&self) -> Vec<String> {
        self.log_lines("env.log")
    }

    /// The lines of one of the logs the helper writes (none before its first call).
    fn log_lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Make `subcommand` print `blocking in <subcommand>` and block (its PID in `pid-<subcommand>`).
    pub fn block(&self, subcommand: &str) {
        std::fs::write(self.dir.join(format!("block-{subcommand}")), "").expect("block file");
    }

    /// Make `subcommand` fail: every call (`None`) or the first `n`.
    pub fn fail(&self, subcommand: &str, first: Option<u32>) {
        let content = first.map(|n| n.to_string()).unwrap_or_default();
        std::fs::write(self.dir.join(format!("fail-{subcommand}")), content).expect("fail file");
    }
}

/// `ctx(dir)` with the fake helper, a GitLab URL and a cache dir.
pub fn helper_ctx(dir: &Path, helper: &FakeHelper) -> RunnerContext {
    RunnerContext {
        helper_path: Some(helper.program.clone()),
        gitlab_url: Some("https://gitlab.example.com".into()),
        cache_dir: Some(dir.join("cache")),
        ..ctx(dir)
    }
}

/// Section names in the order they started.
pub fn sections(trace: &str) -> Vec<String> {
    trace
        .split("section_start:")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.split_once(':')?.1;
            let end = rest.find(['\r', '['])?;
            Some(rest[..end].to_owned())
        })
        .filter(|name| !name.starts_with("section_script_step"))
        .collect()
}

/// The token of job 7, `compile`, whose artifacts later jobs download.
pub const DEP_TOKEN: &str = "glcbt-64_dependencytoken9876";

/// Job 7, `compile`, with an archive to download.
pub fn compile_dependency() -> glrunner_protocol::Dependency {
    glrunner_protocol::Dependency {
        id: 7,
        name: "compile".into(),
        token: DEP_TOKEN.into(),
        artifacts_file: Some(glrunner_protocol::ArtifactsFile {
            filename: "artifacts.zip".into(),
            size: 1,
        }),
    }
}
