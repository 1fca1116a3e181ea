//! Bash scripts for every stage, like gitlab-runner's `BashWriter`: a fixed skeleton (TERM trap,
//! errexit, pipefail, optional xtrace) around a body that exports the job's variables with ANSI-C
//! quoting, enters the project dir and runs each command after echoing it as `$ <command>`.
//!
//! The body is passed to `eval` as one ANSI-C quoted word in a subshell with empty stdin
//! (`(trap 'exit 1' TERM; eval $'…') < /dev/null`, gitlab-runner's form; `FF_USE_LEGACY_BASH_EVAL`
//! gives the older `: | eval $'…'`), so a command that reads stdin never eats the rest of the script
//! and bash never reads the script file while it is being replaced. The `TERM` traps make bash exit
//! quietly on cancel instead of printing the command it was running (some bash versions print the
//! whole `eval` word, secrets included).

use crate::context::RunnerContext;
use crate::helper::HelperSetup;
use crate::paths::JobPaths;
use crate::settings::JobSettings;
use crate::stage_ops::{Environment, Op, StageOps};
use crate::variables::{Variables, is_valid_name};
use glrunner_archive::{Level, Message};
use glrunner_protocol::JobResponse;
use glrunner_trace::format as ansi;
use std::fmt::Write as _;

/// File name of `GITLAB_ENV` in the project's temp dir: `KEY=VALUE` lines a stage writes are exported
/// to every later stage.
pub const GITLAB_ENV_FILE: &str = "gitlab_runner_env";

/// Why a stage script could not be written. Each is a mistake in the job's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    #[error(
        "cache:policy {policy:?} of cache {key:?} (after expanding variables) is not one of pull, push or \
         pull-push. Fix `cache:policy` in .gitlab-ci.yml, or the variable it uses"
    )]
    CachePolicy { key: String, policy: String },
    #[error(
        "GIT_SUBMODULE_PATHS {value:?} contains \":(exclude)\" on its own, which git cannot use. Write the \
         path right after it without a space, for example `GIT_SUBMODULE_PATHS: \":(exclude)libs/big\"`"
    )]
    SubmodulePaths { value: String },
}

/// Quote `s` for bash: unchanged when it only has characters that need no quoting, `''` when empty,
/// else an ANSI-C `$'…'` word in which quotes, backslashes and control bytes are escaped and every
/// other character (`$`, `"`, `!`, spaces, UTF-8) is literal. A NUL cannot live in a bash string and
/// is dropped.
pub fn escape(s: &str) -> String {
    if s.is_empty() {
        return "''".to_owned();
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./,:=@%+^".contains(c);
    if s.chars().all(plain) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str("$'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\E"),
            '\0' => {}
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A log line's colour and text, as gitlab-runner shows its level.
fn styled(m: &Message) -> (&'static str, String) {
    match m.level {
        Level::Info => (ansi::RESET, m.text.clone()),
        Level::Notice => (ansi::BOLD_GREEN, m.text.clone()),
        Level::Warning => (ansi::YELLOW, format!("WARNING: {}", m.text)),
        Level::Error => (ansi::BOLD_RED, format!("ERROR: {}", m.text)),
    }
}

/// The bytes a script's `echo` of `m` prints ([`BashWriter::message`]).
pub(crate) fn message_line(m: &Message) -> String {
    let (colour, text) = styled(m);
    format!("{colour}{text}{}\n", ansi::RESET)
}

/// Export every variable, then `GITLAB_ENV` and the `KEY=VALUE` lines earlier stages wrote to it
/// (as gitlab-runner: one `export` per line; blank lines are skipped, and a last line without a
/// newline counts).
pub(crate) fn write_environment(
    w: &mut BashWriter,
    variables: &Variables,
    gitlab_env: &str,
    tmp_dir: &str,
) {
    w.exports(variables);
    w.line(&format!("export GITLAB_ENV={}", escape(gitlab_env)));
    w.mkdir(tmp_dir);
    w.create_file(gitlab_env);
    w.line(&format!(
        "while read -r line || [ -n \"$line\" ]; do [ -z \"$line\" ] || export \"$line\"; done < {}",
        escape(gitlab_env)
    ));
}

/// How the skeleton around a script body is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptOptions {
    /// `set -o xtrace` (`CI_DEBUG_TRACE`).
    pub debug_trace: bool,
    /// `FF_ENABLE_BASH_EXIT_CODE_CHECK`.
    pub exit_code_check: bool,
    /// `FF_USE_NEW_BASH_EVAL_STRATEGY`: with the legacy eval, `(eval …)` in a subshell.
    pub eval_subshell: bool,
    /// `FF_USE_LEGACY_BASH_EVAL`: `: | eval …` instead of `(trap …; eval …) < /dev/null`.
    pub legacy_eval: bool,
    /// `FF_SCRIPT_SECTIONS`.
    pub script_sections: bool,
    /// Print `{"script": "<path>"}` first and `{"command_exit_code": N, "script": "<path>"}` last, for
    /// executors that cannot see the script's exit status directly (Kubernetes attach).
    pub exit_code_marker: bool,
}

impl ScriptOptions {
    pub fn from_settings(settings: &JobSettings) -> Self {
        Self {
            debug_trace: settings.debug_trace,
            exit_code_check: settings.bash_exit_code_check,
            eval_subshell: settings.bash_eval_subshell,
            legacy_eval: settings.bash_legacy_eval,
            script_sections: settings.script_sections,
            exit_code_marker: false,
        }
    }
}

/// Builds one script body line by line.
#[derive(Debug, Default)]
pub struct BashWriter {
    body: String,
    indent: usize,
    options: ScriptOptions,
    sections: usize,
}

impl BashWriter {
    pub fn new(options: ScriptOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// A raw line of bash.
    pub fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.body.push_str("  ");
        }
        self.body.push_str(text);
        self.body.push('\n');
    }

    /// `program args…`, every word quoted.
    pub fn command(&mut self, words: &[&str]) {
        let line = words
            .iter()
            .map(|w| escape(w))
            .collect::<Vec<_>>()
            .join(" ");
        self.line(&line);
        self.check_exit_code();
    }

    /// With `FF_ENABLE_BASH_EXIT_CODE_CHECK`, stop on the previous command's failure explicitly.
    pub fn check_exit_code(&mut self) {
        if self.options.exit_code_check {
            self.line("_runner_exit_code=$?; if [ $_runner_exit_code -ne 0 ]; then exit $_runner_exit_code; fi");
        }
    }

    fn echo(&mut self, colour: &str, text: &str) {
        self.line(&format!(
            "echo {}",
            escape(&format!("{colour}{text}{}", ansi::RESET))
        ));
    }

    /// A bold green line in the job output.
    pub fn notice(&mut self, text: &str) {
        self.echo(ansi::BOLD_GREEN, text);
    }

    /// A yellow `WARNING:` line in the job output.
    pub fn warning(&mut self, text: &str) {
        self.echo(ansi::YELLOW, &format!("WARNING: {text}"));
    }

    /// A plain line in the job output.
    pub fn print(&mut self, text: &str) {
        self.echo(ansi::RESET, text);
    }

    pub fn if_cmd(&mut self, words: &[&str]) {
        let line = words
            .iter()
            .map(|w| escape(w))
            .collect::<Vec<_>>()
            .join(" ");
        self.line(&format!("if {line} >/dev/null 2>&1; then"));
        self.indent += 1;
    }

    /// `if <line>; then`, the condition's output shown.
    pub fn if_line(&mut self, condition: &str) {
        self.line(&format!("if {condition}; then"));
        self.indent += 1;
    }

    pub fn if_file(&mut self, path: &str) {
        self.line(&format!("if [ -e {} ]; then", escape(path)));
        self.indent += 1;
    }

    pub fn if_dir(&mut self, path: &str) {
        self.line(&format!("if [ -d {} ]; then", escape(path)));
        self.indent += 1;
    }

    pub fn else_(&mut self) {
        self.indent = self.indent.saturating_sub(1);
        self.line("else");
        self.indent += 1;
    }

    pub fn end_if(&mut self) {
        self.indent = self.indent.saturating_sub(1);
        self.line("fi");
    }

    pub fn cd(&mut self, dir: &str) {
        self.command(&["cd", dir]);
    }

    /// `mkdir -p dir`, run only when `dir` is not a directory yet: most stages find it there, and a
    /// process per stage is what makes short jobs slow.
    pub fn mkdir(&mut self, dir: &str) {
        let d = escape(dir);
        self.line(&format!("[ -d {d} ] || mkdir -p {d}"));
        self.check_exit_code();
    }

    /// `rm -r -f path`, run only when something is there.
    pub fn rm_rf(&mut self, path: &str) {
        let p = escape(path);
        self.line(&format!(
            "if [ -e {p} ] || [ -L {p} ]; then rm -r -f {p}; fi"
        ));
        self.check_exit_code();
    }

    /// `rm -f` of those of `paths` that exist, in one call, or none when none does.
    pub fn rm_files(&mut self, paths: &[&str]) {
        match paths {
            [] => {}
            [p] => {
                let p = escape(p);
                self.line(&format!("if [ -e {p} ] || [ -L {p} ]; then rm -f {p}; fi"));
                self.check_exit_code();
            }
            _ => {
                let list: Vec<String> = paths.iter().map(|p| escape(p)).collect();
                self.line("_glrunner_rm=()");
                self.line(&format!(
                    "for _glrunner_f in {}; do if [ -e \"$_glrunner_f\" ] || [ -L \"$_glrunner_f\" ]; then _glrunner_rm+=(\"$_glrunner_f\"); fi; done",
                    list.join(" ")
                ));
                self.line(
                    "if [ ${#_glrunner_rm[@]} -gt 0 ]; then rm -f \"${_glrunner_rm[@]}\"; fi",
                );
                self.check_exit_code();
                self.line("unset _glrunner_rm _glrunner_f");
            }
        }
    }

    /// Remove every regular file whose name matches one of `names` (`find -name` patterns) below
    /// `dir`, if `dir` exists, without following symbolic links: `find <dir> ( -name <name> -o … )
    /// -type f -exec rm -f {} +`, walked with bash builtins so that nothing is started unless a file
    /// matches.
    pub fn rm_files_recursive(&mut self, dir: &str, names: &[&str]) {
        self.if_dir(dir);
        self.line("_glrunner_rm_matching() {");
        self.indent += 1;
        self.line("local _glrunner_e _glrunner_p");
        self.line("for _glrunner_e in \"$1\"/* \"$1\"/.[!.]* \"$1\"/..?*; do");
        self.indent += 1;
        self.line("if [ -L \"$_glrunner_e\" ]; then");
        self.line("  :");
        self.line("elif [ -d \"$_glrunner_e\" ]; then");
        self.line("  _glrunner_rm_matching \"$_glrunner_e\" \"${@:2}\"");
        self.line("elif [ -f \"$_glrunner_e\" ]; then");
        self.line("  for _glrunner_p in \"${@:2}\"; do");
        self.line("    case \"${_glrunner_e##*/}\" in $_glrunner_p) rm -f \"$_glrunner_e\"; break ;; esac");
        self.line("  done");
        self.line("fi");
        self.indent -= 1;
        self.line("done");
        self.indent -= 1;
        self.line("}");
        let names: Vec<String> = names.iter().map(|n| escape(n)).collect();
        self.line(&format!(
            "_glrunner_rm_matching {} {}",
            escape(dir),
            names.join(" ")
        ));
        self.check_exit_code();
        self.line("unset -f _glrunner_rm_matching");
        self.end_if();
    }

    /// Create `path` if it is missing (what `touch` is used for here), without a process.
    pub fn create_file(&mut self, path: &str) {
        self.line(&format!(": >> {}", escape(path)));
        self.check_exit_code();
    }

    /// Write `content` to `path`, replacing it, without a process.
    pub fn write_file(&mut self, path: &str, content: &str) {
        self.line(&format!(
            "printf '%s' {} > {}",
            escape(content),
            escape(path)
        ));
        self.check_exit_code();
    }

    /// A line of the job log, coloured by its level like gitlab-runner's.
    pub fn message(&mut self, m: &Message) {
        let (colour, text) = styled(m);
        self.echo(colour, &text);
    }

    /// A bold red `ERROR:` line in the job output.
    pub fn error(&mut self, text: &str) {
        self.echo(ansi::BOLD_RED, &format!("ERROR: {text}"));
    }

    /// Export every variable in order; file variables are written to their file and the variable holds
    /// the path. Names bash cannot export are skipped (`JobSettings` warns about them).
    pub fn exports(&mut self, vars: &Variables) {
        let mut tmp_made = false;
        for v in vars.iter().filter(|v| is_valid_name(&v.key)) {
            if v.file {
                let path = vars.file_path(&v.key);
                if !tmp_made {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
                    if !dir.is_empty() {
                        self.mkdir(&dir);
                    }
                    tmp_made = true;
                }
                self.line(&format!(
                    "printf '%s' {} > {}",
                    escape(&v.value),
                    escape(&path)
                ));
                self.line(&format!("export {}={}", v.key, escape(&path)));
            } else {
                self.line(&format!("export {}={}", v.key, escape(&v.value)));
            }
        }
    }

    /// User commands: each echoed as `$ <command>` in bold green (first line plus
    /// ` # collapsed multi-line command` when it has several), then run.
    pub fn user_commands(&mut self, commands: &[String]) {
        for command in commands {
            let command = command.trim();
            if command.is_empty() {
                self.line("echo");
                continue;
            }
            let mut lines = command.lines();
            let first = lines.next().unwrap_or_default();
            let shown = if lines.next().is_some() {
                format!("$ {first} # collapsed multi-line command")
            } else {
                format!("$ {first}")
            };
            if self.options.script_sections {
                self.sections += 1;
                let id = format!("section_script_step_{}", self.sections);
                let marker = format!("{}{}{shown}{}", "\r\x1b[0K", ansi::BOLD_GREEN, ansi::RESET);
                self.line(&format!(
                    "printf '%s\\n' \"section_start:$(date +%s):{id}[hide_duration=true,collapsed=true]\"{}",
                    escape(&marker)
                ));
                self.line(command);
                self.check_exit_code();
                self.line(&format!(
                    "printf '%s\\n' \"section_end:$(date +%s):{id}\"{}",
                    escape("\r\x1b[0K")
                ));
            } else {
                self.notice(&shown);
                self.line(command);
                self.check_exit_code();
            }
        }
    }

    /// The body written so far.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The complete script: the skeleton around the body.
    pub fn finish(self) -> String {
        let o = self.options;
        let mut s = String::with_capacity(self.body.len() * 2 + 512);
        s.push_str("#!/usr/bin/env bash\n\n");
        s.push_str("trap 'exit 1' TERM\n\n");
        if o.exit_code_marker {
            s.push_str("start_json=\"{\\\"script\\\": \\\"$0\\\"}\"\necho \"$start_json\"\n");
            s.push_str(
                "runner_script_trap() {\n\texit_code=$?\n\tout_json=\"{\\\"command_exit_code\\\": $exit_code, \
                 \\\"script\\\": \\\"$0\\\"}\"\n\techo \"\"\n\techo \"$out_json\"\n\texit 0\n}\n\n\
                 trap runner_script_trap EXIT\n",
            );
        }
        if o.debug_trace {
            s.push_str("set -o xtrace\n");
        }
        // Bash has pipefail; asking `set -o` would fork a subshell in every stage.
        s.push_str(
            "if [ -n \"${BASH_VERSION:-}\" ]; then set -o pipefail; else case \"$(set -o)\" in *pipefail*) set -o pipefail;; esac; fi; set -o errexit\n",
        );
        s.push_str("set +o noclobber\n");
        let body = escape(&self.body);
        match (o.legacy_eval, o.eval_subshell) {
            (true, true) => {
                let _ = writeln!(s, ": | (eval {body})");
            }
            (true, false) => {
                let _ = writeln!(s, ": | eval {body}");
            }
            // gitlab-runner's default: one subshell with empty stdin, trapping TERM again (traps do
            // not reach a subshell) so that a canceled stage exits quietly.
            (false, _) => {
                let _ = writeln!(s, "(trap 'exit 1' TERM; eval {body}) < /dev/null");
            }
        }
        s.push_str("exit 0\n");
        s
    }
}

/// What a stage runs: its script, and, for a stage made only of simple steps, those steps (an
/// executor may carry them out instead of running the script).
#[derive(Debug, Clone)]
pub struct StageBody {
    pub script: String,
    pub ops: Option<StageOps>,
}

impl StageBody {
    /// A script and nothing else.
    pub fn script(script: String) -> Self {
        Self { script, ops: None }
    }
}

/// Everything stage scripts are made from.
#[derive(Clone, Copy)]
pub struct ScriptContext<'a> {
    pub job: &'a JobResponse,
    pub ctx: &'a RunnerContext,
    /// The job's final, expanded variables.
    pub variables: &'a Variables,
    pub paths: &'a JobPaths,
    pub settings: &'a JobSettings,
    pub options: ScriptOptions,
    /// How scripts reach `glrunner helper`, GitLab and the cache.
    pub helper: &'a HelperSetup,
}

impl ScriptContext<'_> {
    fn writer(&self) -> BashWriter {
        BashWriter::new(self.options)
    }

    /// Where `GITLAB_ENV` points.
    pub fn gitlab_env_path(&self) -> String {
        format!("{}/{GITLAB_ENV_FILE}", self.paths.tmp_dir)
    }

    /// Export every variable and `GITLAB_ENV`'s lines ([`write_environment`]).
    pub fn write_exports(&self, w: &mut BashWriter) {
        write_environment(
            w,
            self.variables,
            &self.gitlab_env_path(),
            &self.paths.tmp_dir,
        );
    }

    /// The step that sets up the job's environment and enters the project directory.
    pub fn environment(&self) -> Op {
        Op::Environment(Box::new(Environment {
            variables: self.variables.clone(),
            gitlab_env: self.gitlab_env_path(),
            tmp_dir: self.paths.tmp_dir.clone(),
            dir: self.paths.project_dir.clone(),
        }))
    }

    /// A stage made only of simple steps: its script, and the steps themselves for an executor
    /// that carries them out (not under `CI_DEBUG_TRACE`, whose xtrace lines only bash prints).
    pub fn body_of(&self, ops: StageOps) -> StageBody {
        let mut w = self.writer();
        ops.write(&mut w);
        StageBody {
            script: w.finish(),
            ops: (!self.options.debug_trace).then_some(ops),
        }
    }

    /// prepare_script: says where the job runs and forgets what an earlier job left in `GITLAB_ENV`.
    pub fn prepare_script(&self) -> StageBody {
        self.body_of(StageOps {
            ops: vec![Op::RunningOn, Op::RemoveFiles(vec![self.gitlab_env_path()])],
        })
    }

    /// get_sources for the job's `GIT_STRATEGY`.
    pub fn get_sources(&self) -> Result<StageBody, ScriptError> {
        if let Some(ops) = crate::sources::get_sources_ops(self) {
            return Ok(self.body_of(ops));
        }
        let mut w = self.writer();
        crate::sources::write_get_sources(&mut w, self)?;
        Ok(StageBody::script(w.finish()))
    }

    /// clear_worktree: run before get_sources is tried again.
    pub fn clear_worktree(&self) -> String {
        let mut w = self.writer();
        crate::sources::write_clear_worktree(&mut w, self);
        w.finish()
    }

    /// restore_cache: extract each cache (or its fallbacks) with `glrunner helper cache-extract`.
    pub fn restore_cache(&self) -> Result<StageBody, ScriptError> {
        Ok(self.body_of(crate::cache::restore_cache_ops(self)?))
    }

    /// download_artifacts: each dependency's archive with `glrunner helper artifacts-download`.
    pub fn download_artifacts(&self) -> StageBody {
        self.body_of(crate::artifacts::download_artifacts_ops(self))
    }

    /// archive_cache or archive_cache_on_failure.
    pub fn archive_cache(&self, job_failed: bool) -> Result<StageBody, ScriptError> {
        Ok(self.body_of(crate::cache::archive_cache_ops(self, job_failed)?))
    }

    /// upload_artifacts_on_success or upload_artifacts_on_failure.
    pub fn upload_artifacts(&self, job_failed: bool) -> StageBody {
        self.body_of(crate::artifacts::upload_artifacts_ops(self, job_failed))
    }

    /// One user step: exports, `cd` into the project, `pre_build_script`, the step's commands,
    /// `post_build_script`.
    pub fn user_step(&self, commands: &[String]) -> String {
        let mut w = self.writer();
        self.write_exports(&mut w);
        w.cd(&self.paths.project_dir);
        if let Some(pre) = self
            .ctx
            .pre_build_script
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            w.user_commands(&[pre.to_owned()]);
        }
        w.user_commands(commands);
        if let Some(post) = self
            .ctx
            .post_build_script
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            w.user_commands(&[post.to_owned()]);
        }
        w.finish()
    }

    /// after_script, with `CI_JOB_STATUS` set to how the job went (`success`, `failed`, `canceled`,
    /// `timedout`).
    pub fn after_script(&self, commands: &[String], job_status: &str) -> String {
        let mut vars = self.variables.clone();
        vars.set("CI_JOB_STATUS", job_status);
        let sc = ScriptContext {
            variables: &vars,
            ..*self
        };
        let mut w = self.writer();
        sc.write_exports(&mut w);
        w.cd(&self.paths.project_dir);
        w.user_commands(commands);
        w.finish()
    }

    /// cleanup_file_variables: removes the file variables' files, `GITLAB_ENV`, git's template and
    /// external config (with the credential helper), and lock files a killed git left.
    pub fn cleanup(&self) -> StageBody {
        let mut files: Vec<String> = self
            .variables
            .file_keys()
            .into_iter()
            .map(|key| self.variables.file_path(key))
            .collect();
        files.push(self.gitlab_env_path());
        files.push(format!(
            "{}/{}",
            self.paths.tmp_dir,
            crate::sources::GIT_CONFIG_FILE
        ));
        let mut ops = StageOps {
            ops: vec![
                Op::RemoveFiles(files),
                Op::RemoveTree(format!("{}/git-template", self.paths.tmp_dir)),
            ],
        };
        ops.ops.extend(crate::sources::git_lock_cleanup(
            &self.paths.project_dir,
            self.settings.submodule_strategy != crate::settings::SubmoduleStrategy::None,
        ));
        self.body_of(ops)
    }
}

/// `script` run by `bash -c`, without profile or rc files.
#[cfg(test)]
pub(crate) fn run_bash(script: &str) -> std::process::Output {
    std::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-c", script])
        .output()
        .expect("bash runs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_protocol::JobVariable;
    use std::process::Command;

    /// Values that must survive quoting byte for byte.
    const TRICKY: &[&str] = &[
        "",
        "plain",
        "with space",
        "it's",
        "\"double\"",
        "back\\slash\\",
        "trailing backslash \\",
        "$HOME and ${HOME} and $(id) and `id`",
        "line1\nline2\n",
        "\r\n\t\x07\x1b[31mred\x1b[0m\x7f\x01",
        "unicode: héllo ✓ 日本語 🎉",
        "!bang !! history",
        "a'b\"c\\d$e`f",
        "\\x41 \\n not escapes",
        "semi;colon|pipe&amp<lt>gt",
        "*glob? [x]",
        "~tilde",
        "#hash",
        "=starts with equals",
        "-n",
    ];

    #[test]
    fn escape_round_trips_through_real_bash() {
        let dir = tempfile::tempdir().unwrap();
        let mut script = String::new();
        for (i, value) in TRICKY.iter().enumerate() {
            let path = dir.path().join(format!("v{i}"));
            script.push_str(&format!("export V{i}={}\n", escape(value)));
            script.push_str(&format!(
                "printf '%s' \"$V{i}\" > {}\n",
                escape(path.to_str().unwrap())
            ));
        }
        let out = run_bash(&script);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (i, value) in TRICKY.iter().enumerate() {
            let got = std::fs::read(dir.path().join(format!("v{i}"))).unwrap();
            assert_eq!(got, value.as_bytes(), "value {i}: {value:?}");
        }
    }

    /// Runs `w`'s script with `PATH` holding only a directory that logs every external command it
    /// is asked for (then runs the real one), and returns the log: which processes the script started.
    fn run_logging_commands(
        w: BashWriter,
        dir: &std::path::Path,
    ) -> (std::process::Output, String) {
        let bin = dir.join("logged-bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.join("commands.log");
        for name in ["rm", "mkdir", "touch", "find", "git"] {
            let real = Command::new("bash")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .unwrap();
            let real = String::from_utf8(real.stdout).unwrap();
            let shim = bin.join(name);
            std::fs::write(
                &shim,
                format!(
                    "#!/bin/sh\necho \"{name} $*\" >> {}\nexec {} \"$@\"\n",
                    escape(log.to_str().unwrap()),
                    real.trim()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = format!(
            "export PATH={}\n{}",
            escape(bin.to_str().unwrap()),
            w.finish()
        );
        let out = Command::new("/bin/bash")
            .args(["--noprofile", "--norc", "-c", &script])
            .output()
            .expect("bash runs");
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        (out, logged)
    }

    #[test]
    fn file_commands_start_processes_only_when_there_is_work() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("work dir");
        std::fs::create_dir_all(&d).unwrap();
        let p = |name: &str| d.join(name).to_str().unwrap().to_owned();
        std::fs::write(p("present"), "x").unwrap();
        std::os::unix::fs::symlink(p("nowhere"), p("dangling")).unwrap();
        std::fs::create_dir_all(p("tree/sub")).unwrap();

        let mut w = BashWriter::new(ScriptOptions::default());
        w.mkdir(&p("tree"));
        w.rm_files(&[&p("absent-1"), &p("absent-2")]);
        w.rm_files(&[&p("absent-3")]);
        w.rm_rf(&p("absent-dir"));
        w.create_file(&p("created"));
        w.write_file(&p("written"), "it's\n$HOME `id`\n");
        let (out, logged) = run_logging_commands(w, tmp.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(logged, "", "nothing to do, nothing started");
        assert_eq!(std::fs::read_to_string(p("created")).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(p("written")).unwrap(),
            "it's\n$HOME `id`\n"
        );

        let mut w = BashWriter::new(ScriptOptions::default());
        w.mkdir(&p("new/deep"));
        w.rm_files(&[&p("present"), &p("absent-1"), &p("dangling")]);
        w.rm_rf(&p("tree"));
        let (out, logged) = run_logging_commands(w, tmp.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = logged.lines().collect();
        assert_eq!(
            lines,
            [
                format!("mkdir -p {}", p("new/deep")),
                format!("rm -f {} {}", p("present"), p("dangling")),
                format!("rm -r -f {}", p("tree")),
            ],
            "one process per command with work, existing paths only"
        );
        assert!(d.join("new/deep").is_dir());
        assert!(!d.join("present").exists() && d.join("dangling").symlink_metadata().is_err());
        assert!(!d.join("tree").exists());

        // rm -f of a directory still fails the script, as it did before.
        std::fs::create_dir_all(p("a-dir")).unwrap();
        let mut w = BashWriter::new(ScriptOptions::default());
        w.rm_files(&[&p("a-dir"), &p("absent-1")]);
        w.line("echo never");
        let (out, _) = run_logging_commands(w, tmp.path());
        assert!(!out.status.success());
        assert!(!String::from_utf8_lossy(&out.stdout).contains("never"));
    }

    #[test]
    fn recursive_removal_matches_find_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("refs");
        let outside = tmp.path().join("outside");
        for dir in ["heads/feature", ".hidden", "tags"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::create_dir_all(&outside).unwrap();
        for file in [
            "heads/main.lock",
            "heads/main",
            "heads/feature/x.lock",
            ".hidden/.dot.lock",
            "..odd.lock",
            "tags/v1",
            "index.lock",
        ] {
            std::fs::write(root.join(file), "x").unwrap();
        }
        std::fs::write(outside.join("keep.lock"), "x").unwrap();
        std::fs::create_dir_all(root.join("tags/dir.lock")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
        std::os::unix::fs::symlink(outside.join("keep.lock"), root.join("link.lock")).unwrap();

        let expected_gone = [
            "heads/main.lock",
            "heads/feature/x.lock",
            ".hidden/.dot.lock",
            "..odd.lock",
            "index.lock",
        ];
        let mut w = BashWriter::new(ScriptOptions::default());
        w.rm_files_recursive(root.to_str().unwrap(), &["*.lock"]);
        w.rm_files_recursive(tmp.path().join("missing").to_str().unwrap(), &["*.lock"]);
        let (out, logged) = run_logging_commands(w, tmp.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for gone in expected_gone {
            assert!(!root.join(gone).exists(), "{gone} should be removed");
        }
        assert_eq!(logged.lines().count(), expected_gone.len(), "{logged}");
        assert!(!logged.contains("find"), "{logged}");
        for kept in ["heads/main", "tags/v1", "tags/dir.lock"] {
            assert!(root.join(kept).exists(), "{kept} must stay");
        }
        assert!(outside.join("keep.lock").exists(), "links are not followed");
        assert!(
            root.join("link.lock").symlink_metadata().is_ok(),
            "a link is no regular file"
        );

        // Several names at once, and nothing started when nothing matches.
        std::fs::write(root.join("heads/HEAD.lock"), "x").unwrap();
        std::fs::write(root.join("tags/config.lock"), "x").unwrap();
        let mut w = BashWriter::new(ScriptOptions::default());
        w.rm_files_recursive(root.to_str().unwrap(), &["HEAD.lock", "config.lock"]);
        w.rm_files_recursive(root.to_str().unwrap(), &["*.nothing"]);
        std::fs::remove_file(tmp.path().join("commands.log")).unwrap();
        let (out, logged) = run_logging_commands(w, tmp.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(logged.lines().count(), 2, "{logged}");
        assert!(!root.join("heads/HEAD.lock").exists() && !root.join("tags/config.lock").exists());
    }

    #[test]
    fn escape_shapes() {
        assert_eq!(escape("simple/path-1.0"), "simple/path-1.0");
        assert_eq!(escape(""), "''");
        assert_eq!(escape("a b"), "$'a b'");
        assert_eq!(escape("it's"), "$'it\\'s'");
        assert_eq!(escape("a\nb"), "$'a\\nb'");
        assert_eq!(escape("\x1b[0m"), "$'\\E[0m'");
        assert_eq!(escape("nul\0byte"), "$'nulbyte'");
    }

    #[test]
    fn exports_and_file_variables_round_trip_through_the_skeleton() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("p.tmp");
        let mut vars = Variables::new();
        vars.add(
            crate::paths::TEMP_PROJECT_DIR_VARIABLE,
            tmp.to_str().unwrap(),
        );
        for (i, value) in TRICKY.iter().enumerate() {
            vars.add(&format!("V{i}"), *value);
        }
        vars.push(JobVariable {
            file: true,
            ..JobVariable::new("CONFIG_FILE", "key: 'v'\nsecond: \"$x\\n\"\n")
        });
        vars.add("BAD-NAME", "skipped");
        let mut w = BashWriter::new(ScriptOptions::default());
        w.exports(&vars);
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        for i in 0..TRICKY.len() {
            w.line(&format!(
                "printf '%s' \"$V{i}\" > {}",
                escape(out_dir.join(format!("v{i}")).to_str().unwrap())
            ));
        }
        w.line(&format!(
            "printf '%s' \"$CONFIG_FILE\" > {}",
            escape(out_dir.join("path").to_str().unwrap())
        ));
        let script = w.finish();
        let out = run_bash(&script);
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (i, value) in TRICKY.iter().enumerate() {
            let got = std::fs::read(out_dir.join(format!("v{i}"))).unwrap();
            assert_eq!(got, value.as_bytes(), "value {i}: {value:?}");
        }
        let path = std::fs::read_to_string(out_dir.join("path")).unwrap();
        assert_eq!(path, tmp.join("CONFIG_FILE").to_str().unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "key: 'v'\nsecond: \"$x\\n\"\n"
        );
    }

    #[test]
    fn commands_are_echoed_then_run_and_errexit_stops_the_script() {
        let mut w = BashWriter::new(ScriptOptions::default());
        w.user_commands(&[
            "echo \"hello $USER_NAME\"".into(),
            "".into(),
            "if true; then\n  echo multi\nfi".into(),
            "false".into(),
            "echo never".into(),
        ]);
        let script = format!("export USER_NAME=world\n{}", w.finish());
        let out = run_bash(&script);
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let g = ansi::BOLD_GREEN;
        let r = ansi::RESET;
        assert_eq!(
            stdout,
            format!(
                "{g}$ echo \"hello $USER_NAME\"{r}\nhello world\n\n\
                 {g}$ if true; then # collapsed multi-line command{r}\nmulti\n\
                 {g}$ false{r}\n"
            )
        );
    }

    #[test]
    fn exit_codes_propagate_and_stdin_is_empty() {
        // gitlab-runner's trapped subshell, and the legacy pipeline with and without its subshell.
        for (legacy_eval, eval_subshell) in [(false, false), (true, false), (true, true)] {
            let opts = ScriptOptions {
                legacy_eval,
                eval_subshell,
                ..ScriptOptions::default()
            };
            let mut w = BashWriter::new(opts);
            w.user_commands(&[
                "read -r line || echo \"stdin empty\"".into(),
                "[ -o pipefail ] && [ -o errexit ] && echo strict".into(),
                "exit 3".into(),
                "echo never".into(),
            ]);
            let script = w.finish();
            assert_eq!(script.contains(": | "), legacy_eval, "{script}");
            let out = run_bash(&script);
            assert_eq!(out.status.code(), Some(3), "{script}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("stdin empty\n"), "{stdout}");
            assert!(stdout.contains("strict\n"), "{stdout}");
            assert!(!stdout.contains("never\n"), "{stdout}");

            let mut w = BashWriter::new(opts);
            w.user_commands(&["false | true".into(), "echo never".into()]);
            let out = run_bash(&w.finish());
            assert_eq!(out.status.code(), Some(1), "pipefail");
            assert!(!String::from_utf8_lossy(&out.stdout).contains("never"));
        }

        let opts = ScriptOptions {
            eval_subshell: true,
            exit_code_check: true,
            ..ScriptOptions::default()
        };
        let mut w = BashWriter::new(opts);
        w.user_commands(&["(exit 7)".into()]);
        assert_eq!(run_bash(&w.finish()).status.code(), Some(7));
    }

    #[test]
    fn xtrace_and_sections() {
        let opts = ScriptOptions {
            debug_trace: true,
            script_sections: true,
            ..ScriptOptions::default()
        };
        let mut w = BashWriter::new(opts);
        w.user_commands(&["echo traced".into()]);
        let script = w.finish();
        assert!(script.contains("set -o xtrace"));
        let out = run_bash(&script);
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("section_start:"), "{stdout}");
        assert!(
            stdout.contains(":section_script_step_1[hide_duration=true,collapsed=true]\r\x1b[0K")
        );
        assert!(stdout.contains("section_end:"));
        assert!(String::from_utf8_lossy(&out.stderr).contains("+ echo traced"));
    }

    #[test]
    fn exit_code_marker_for_attach_executors() {
        let opts = ScriptOptions {
            exit_code_marker: true,
            ..ScriptOptions::default()
        };
        let mut w = BashWriter::new(opts);
        w.user_commands(&["exit 4".into()]);
        let out = run_bash(&w.finish());
        assert_eq!(
            out.status.code(),
            Some(0),
            "the marker carries the exit code"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("{\"command_exit_code\": 4, \"script\": \"bash\"}"),
            "{stdout}"
        );
    }
}
