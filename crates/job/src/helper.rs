//! The `glrunner helper …` command lines the cache and artifact stages run, exactly as the helper
//! contract spells them: the program the executor names, the subcommand and its flags, and tokens in
//! the environment of that one command, never as an argument (`ps` and pod specs show arguments).

use crate::script::escape;
use crate::stage_ops::Op;
use glrunner_archive::Message;
use glrunner_cache::CacheBackend;
use glrunner_protocol::Secret;
use std::fmt;
use std::time::Duration;

/// The environment variable the helper reads the job token (or a dependency's token) from.
pub const JOB_TOKEN_ENV: &str = "GLRUNNER_JOB_TOKEN";

/// How the stage scripts of one job reach the helper, GitLab and the cache.
#[derive(Debug, Clone)]
pub struct HelperSetup {
    /// The glrunner binary, as the scripts see it (`<program> helper …`); `None` when the executor
    /// cannot run the helper, so cache and artifact stages only warn.
    pub program: Option<String>,
    /// GitLab's URL (`url` of the `[[runners]]` entry) for artifact transfers.
    pub gitlab_url: String,
    /// Where cache archives go: the local cache directory (as the scripts see it) or presigned URLs.
    pub cache: CacheBackend,
    /// How long presigned cache URLs stay valid: the job's timeout.
    pub url_lifetime: Duration,
    /// Artifacts stay on this machine, under this directory (as the scripts see it).
    pub local_artifacts: Option<String>,
}

impl Default for HelperSetup {
    fn default() -> Self {
        Self {
            program: None,
            gitlab_url: String::new(),
            cache: CacheBackend::Disabled,
            url_lifetime: Duration::from_secs(glrunner_protocol::DEFAULT_JOB_TIMEOUT_SECONDS),
            local_artifacts: None,
        }
    }
}

/// One `glrunner helper <subcommand>` call.
#[derive(Clone, PartialEq, Eq)]
pub struct HelperCommand {
    args: Vec<String>,
    env: Vec<(&'static str, Secret)>,
}

/// The subcommand and flag names, no values: a `--url` may be a presigned URL with its signature.
impl fmt::Debug for HelperCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<&str> = self
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i < 2 || a.starts_with("--") {
                    a.as_str()
                } else {
                    "…"
                }
            })
            .collect();
        f.debug_struct("HelperCommand")
            .field("args", &shown)
            .field("env", &self.env.iter().map(|(k, _)| *k).collect::<Vec<_>>())
            .finish()
    }
}

impl HelperCommand {
    /// `helper <subcommand>`.
    pub fn new(subcommand: &str) -> Self {
        Self {
            args: vec!["helper".to_owned(), subcommand.to_owned()],
            env: Vec::new(),
        }
    }

    /// `--name value`.
    pub fn flag(mut self, name: &str, value: impl Into<String>) -> Self {
        self.args.push(format!("--{name}"));
        self.args.push(value.into());
        self
    }

    /// A value on its own, after the flag it belongs to.
    pub fn arg(mut self, value: impl Into<String>) -> Self {
        self.args.push(value.into());
        self
    }

    /// `--name value` when there is a value.
    pub fn flag_opt(self, name: &str, value: Option<&str>) -> Self {
        match value.filter(|v| !v.is_empty()) {
            Some(v) => self.flag(name, v),
            None => self,
        }
    }

    /// `--name value` for every value.
    pub fn flags<'a>(mut self, name: &str, values: impl IntoIterator<Item = &'a String>) -> Self {
        for v in values {
            self = self.flag(name, v.as_str());
        }
        self
    }

    /// `--name` without a value.
    pub fn switch(mut self, name: &str, on: bool) -> Self {
        if on {
            self.args.push(format!("--{name}"));
        }
        self
    }

    /// A secret for the helper, in its environment only.
    pub fn env(mut self, name: &'static str, value: &Secret) -> Self {
        self.env.push((name, value.clone()));
        self
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The variables set for this command only (secrets).
    pub fn secrets(&self) -> impl Iterator<Item = (&'static str, &Secret)> {
        self.env.iter().map(|(k, v)| (*k, v))
    }

    /// The bash line: `NAME=value … <program> helper <subcommand> <args…>`, every word quoted.
    pub fn line(&self, program: &str) -> String {
        let mut line = String::new();
        for (name, value) in &self.env {
            line.push_str(name);
            line.push('=');
            line.push_str(&escape(value.expose()));
            line.push(' ');
        }
        line.push_str(&escape(program));
        for a in &self.args {
            line.push(' ');
            line.push_str(&escape(a));
        }
        line
    }
}

/// Steps that run only when the helper can be started; otherwise a warning that `action` is
/// disabled, as gitlab-runner prints when its helper binary is missing.
pub(crate) fn guard(program: Option<&str>, action: &str, body: impl FnOnce(&str) -> Vec<Op>) -> Op {
    match program {
        None => Op::Message(Message::warning(format!(
            "{action} is not supported by this executor."
        ))),
        Some(program) => Op::IfProgram {
            program: program.to_owned(),
            action: action.to_owned(),
            then: body(program),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_to_the_environment_not_the_arguments() {
        let token = Secret::new("glcbt-64_s3cret");
        let cmd = HelperCommand::new("artifacts-upload")
            .flag("url", "https://gitlab.example.com")
            .flag("id", "42")
            .env(JOB_TOKEN_ENV, &token)
            .switch("untracked", true)
            .switch("never", false)
            .flag_opt("name", Some("my artifacts"))
            .flag_opt("expire-in", None);
        assert_eq!(
            cmd.args(),
            [
                "helper",
                "artifacts-upload",
                "--url",
                "https://gitlab.example.com",
                "--id",
                "42",
                "--untracked",
                "--name",
                "my artifacts"
            ]
        );
        assert!(!cmd.args().iter().any(|a| a.contains("s3cret")));
        assert_eq!(
            cmd.line("/usr/bin/glrunner"),
            "GLRUNNER_JOB_TOKEN=glcbt-64_s3cret /usr/bin/glrunner helper artifacts-upload --url \
             https://gitlab.example.com --id 42 --untracked --name $'my artifacts'"
        );
        assert!(!format!("{cmd:?}").contains("s3cret"), "{cmd:?}");
    }
}
