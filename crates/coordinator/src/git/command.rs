//! A `git` child process for repository fixtures: isolated from the host's git configuration, fed its
//! input, waited for at most a fixed time (then killed), and turned into a [`ProjectError`] that names
//! the command and quotes git's own message when it fails.

use crate::error::ProjectError;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest a fixture command may run (imports of large directories included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The identity fixture commits carry unless a builder names another (GitLab's default admin).
pub(crate) const AUTHOR_NAME: &str = "Administrator";
pub(crate) const AUTHOR_EMAIL: &str = "admin@example.com";

/// Variables that would point git at another repository or index than the one we name.
const INHERITED_GIT_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_COMMON_DIR",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
];

/// Keep the host's configuration (signing, hooks paths, url rewrites, credential helpers) out of a
/// git process the coordinator starts.
pub(crate) fn isolate(cmd: &mut Command) {
    for var in INHERITED_GIT_VARS {
        cmd.env_remove(var);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
}

/// One git invocation being assembled.
pub(crate) struct Git {
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    cwd: Option<std::path::PathBuf>,
    input: Option<Vec<u8>>,
}

impl Git {
    /// `git --git-dir=<git_dir> …`
    pub(crate) fn at(git_dir: &Path) -> Self {
        let mut dir = OsString::from("--git-dir=");
        dir.push(git_dir);
        Self::bare_command().arg(dir)
    }

    /// `git …` with no repository named (init, or a command run in `cwd`).
    pub(crate) fn bare_command() -> Self {
        Self {
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            input: None,
        }
    }

    pub(crate) fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub(crate) fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub(crate) fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_owned());
        self
    }

    pub(crate) fn input(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.input = Some(data.into());
        self
    }

    /// The command as shown in errors: the subcommand and its arguments, without `--git-dir`.
    fn describe(&self) -> String {
        self.args
            .iter()
            .map(|a| a.to_string_lossy())
            .filter(|a| !a.starts_with("--git-dir="))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run it and return its standard output; a non-zero exit is an error.
    pub(crate) fn run(self) -> Result<Vec<u8>, ProjectError> {
        let output = self.output()?;
        Ok(output.stdout)
    }

    /// Run it and return its trimmed standard output as text.
    pub(crate) fn text(self) -> Result<String, ProjectError> {
        let out = self.run()?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    /// Run it; `Ok(None)` when git exits non-zero (for look-ups whose failure means "absent").
    pub(crate) fn probe(self) -> Result<Option<String>, ProjectError> {
        match self.output() {
            Ok(out) => Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())),
            Err(ProjectError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn output(self) -> Result<Output, ProjectError> {
        let command = self.describe();
        let mut cmd = Command::new("git");
        isolate(&mut cmd);
        cmd.env("GIT_AUTHOR_NAME", AUTHOR_NAME)
            .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
            .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
            .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.args(&self.args)
            .stdin(if self.input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ProjectError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pid = child.id();
        // Feed stdin on its own thread so a child that writes while it reads cannot deadlock us.
        let feeder = match (child.stdin.take(), self.input) {
            (Some(mut stdin), Some(data)) => Some(std::thread::spawn(move || {
                // A child that exits early closes the pipe; its exit status tells what happened.
                let _ = stdin.write_all(&data);
            })),
            _ => None,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let result = match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(r) => r,
            Err(_) => {
                // The waiting thread still owns the child and reaps it once it dies.
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = rx.recv_timeout(Duration::from_secs(5));
                return Err(ProjectError::Timeout {
                    command,
                    waited: COMMAND_TIMEOUT,
                });
            }
        };
        if let Some(f) = feeder {
            let _ = f.join();
        }
        let output = result.map_err(|source| ProjectError::Spawn {
            command: command.clone(),
            source,
        })?;
        if !output.status.success() {
            return Err(ProjectError::Failed {
                command,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(output)
    }
}
