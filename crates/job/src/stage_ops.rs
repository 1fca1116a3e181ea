//! Predefined stages made of simple steps (print a line, set up the job's environment, remove or
//! write files, copy a directory, call `glrunner helper`), which an executor on the job's own machine
//! can carry out itself instead of starting a shell for them: the shell executor does, and saves a
//! bash (and its `rm` and `cp`) for each.
//!
//! The steps are also rendered as a bash script ([`StageOps::write`]), which stays the contract for
//! executors that run scripts (Kubernetes); both forms print the same lines, leave the same files and
//! give the helper the same arguments, environment and directory. A failed step stops the stage with
//! exit code 1, as the script's errexit would; a failed helper call either takes its failure branch or
//! stops the stage with the helper's exit code.

use crate::helper::HelperCommand;
use crate::script::{BashWriter, escape, message_line, write_environment};
use crate::variables::{Variables, is_valid_name};
use glrunner_archive::Message;
use std::ffi::OsString;
use std::fs;
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `Running on <host>...`, the host as bash names it: `$HOSTNAME`, else the system's host name.
    RunningOn,
    /// A line of job output coloured by its level.
    Message(Message),
    /// Set up the job's environment and enter its directory, as every stage script begins.
    Environment(Box<Environment>),
    /// Create a directory and its parents when it is missing (`mkdir -p`).
    MakeDir(String),
    /// Remove those of these files that exist (`rm -f`).
    RemoveFiles(Vec<String>),
    /// Remove a path and everything below it when it exists (`rm -r -f`); a relative path is taken
    /// from the stage's current directory.
    RemoveTree(String),
    /// Remove every regular file below `dir` whose name matches one of `names` (`find -name` patterns
    /// made of literal characters, `*` and `?`), without following links.
    RemoveMatching { dir: String, names: Vec<String> },
    /// Write `content` to `path`, replacing it.
    WriteFile { path: String, content: String },
    /// Append `content` to `path`.
    AppendFile { path: String, content: String },
    /// Make `to` a copy of the directory `from`, whatever was there: `rm -r -f <to>` then `cp -R
    /// <from> <to>` (files with the modes of the originals less the umask, symbolic links as links).
    /// Carried out here, what already matches in `to` is kept rather than written again.
    ReplaceWithCopy { from: String, to: String },
    /// Run `then` when `program` can be started (`command -v`); otherwise warn
    /// `Missing <program>. <action> is disabled.`, as gitlab-runner does without its helper.
    IfProgram {
        program: String,
        action: String,
        then: Vec<Op>,
    },
    /// One `glrunner helper …` call.
    Helper(Box<HelperStep>),
}

/// The job's environment, as every stage script sets it up before its work: file variables written
/// to their files, every variable exported (a file variable as its file's path), `GITLAB_ENV`
/// exported, its file created and its `KEY=VALUE` lines exported, then `cd` into `dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// The job's variables; `Debug` shows their names only.
    pub variables: Variables,
    /// Where `GITLAB_ENV` points.
    pub gitlab_env: String,
    /// The job's temp dir, which holds `GITLAB_ENV`.
    pub tmp_dir: String,
    /// The directory the stage works in.
    pub dir: String,
}

// Variables compare strings and flags only.
impl Eq for Environment {}

/// A helper call and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperStep {
    /// The glrunner binary, as the stage sees it.
    pub program: String,
    pub command: HelperCommand,
    /// What runs after success and after failure; `None`: a failure ends the stage with the helper's
    /// exit code (errexit).
    pub branches: Option<Branches>,
}

/// The two ways on after a helper call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Branches {
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// The steps of one stage, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageOps {
    pub ops: Vec<Op>,
}

/// How a stage carried out here ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The exit code the script would have had.
    Exited(i32),
    /// The job was canceled while a helper ran; the helper's process group was stopped.
    Canceled,
}

/// A helper call as the executor starts it.
pub struct HelperCall<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// Set on top of the executor's own environment, in order (a later entry wins): the job's
    /// variables, `GITLAB_ENV` and its lines, then the command's own (the job token).
    pub env: &'a [(String, String)],
    /// The directory to start it in.
    pub dir: &'a Path,
}

/// How a helper call ended.
#[derive(Debug)]
pub enum HelperEnd {
    /// Its exit code (128 + N when signal N killed it).
    Exited(i32),
    /// It could not be started.
    NotStarted(io::Error),
    /// The job was canceled; the call was stopped.
    Canceled,
}

/// What carrying steps out needs from the executor: where output goes and how a helper runs.
pub trait Host: Send {
    /// Failures of the executor itself (not of a step).
    type Error: Send;
    /// Job output, as it comes.
    fn print(&mut self, bytes: &[u8]);
    /// Run a helper call to its end, its output streamed to the job output.
    fn run_helper(
        &mut self,
        call: HelperCall<'_>,
    ) -> impl Future<Output = Result<HelperEnd, Self::Error>> + Send;
}

/// How the walk over a list of steps goes on.
enum Flow {
    Next,
    /// The program of the enclosing [`Op::IfProgram`] could not be started: the rest of it is skipped.
    LeaveGuard,
    End(Ending),
}

/// What earlier steps of the stage set: its directory and the environment it exported.
struct State {
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// The action of the enclosing [`Op::IfProgram`], for its warning.
    guard: Option<String>,
}

impl State {
    fn at(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }

    fn export(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.replace('\0', "")));
    }

    /// The value the stage's shell would see for `key`.
    fn var(&self, key: &str) -> Option<OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| OsString::from(v))
            .or_else(|| std::env::var_os(key))
    }
}

type Walk<'a, E> = Pin<Box<dyn Future<Output = Result<Flow, E>> + Send + 'a>>;

impl StageOps {
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// The steps as script lines.
    pub fn write(&self, w: &mut BashWriter) {
        write_ops(&self.ops, w);
    }

    /// Whether every step can be carried out here (the host name needs `$HOSTNAME` or /proc).
    pub fn can_run_here(&self) -> bool {
        !self.ops.contains(&Op::RunningOn) || host_name().is_some()
    }

    /// Carry the steps out on this machine, starting in `dir` (where the stage's script would start),
    /// with the job output and helper calls going through `host`. On the first step that fails, an
    /// `ERROR:` line says what and why, and the stage's exit code is 1.
    pub async fn carry_out<H: Host>(&self, dir: &Path, host: &mut H) -> Result<Ending, H::Error> {
        let mut state = State {
            dir: dir.to_path_buf(),
            env: Vec::new(),
            guard: None,
        };
        Ok(match walk(&self.ops, &mut state, host).await? {
            Flow::Next | Flow::LeaveGuard => Ending::Exited(0),
            Flow::End(ending) => ending,
        })
    }
}

fn write_ops(ops: &[Op], w: &mut BashWriter) {
    for op in ops {
        match op {
            Op::RunningOn => w.line("echo \"Running on ${HOSTNAME:-$(hostname)}...\""),
            Op::Message(m) => w.message(m),
            Op::Environment(env) => {
                write_environment(w, &env.variables, &env.gitlab_env, &env.tmp_dir);
                w.cd(&env.dir);
            }
            Op::MakeDir(dir) => w.mkdir(dir),
            Op::RemoveFiles(paths) => {
                w.rm_files(&paths.iter().map(String::as_str).collect::<Vec<_>>())
            }
            Op::RemoveTree(path) => w.rm_rf(path),
            Op::RemoveMatching { dir, names } => {
                w.rm_files_recursive(dir, &names.iter().map(String::as_str).collect::<Vec<_>>())
            }
            Op::WriteFile { path, content } => w.write_file(path, content),
            Op::AppendFile { path, content } => {
                w.line(&format!(
                    "printf '%s' {} >> {}",
                    escape(content),
                    escape(path)
                ));
                w.check_exit_code();
            }
            Op::ReplaceWithCopy { from, to } => {
                w.rm_rf(to);
                w.command(&["cp", "-R", from, to]);
            }
            Op::IfProgram {
                program,
                action,
                then,
            } => {
                w.if_cmd(&["command", "-v", program]);
                write_ops(then, w);
                w.else_();
                w.warning(&missing_program(program, action));
                w.end_if();
            }
            Op::Helper(step) => {
                let line = step.command.line(&step.program);
                match &step.branches {
                    None => {
                        w.line(&line);
                        w.check_exit_code();
                    }
                    Some(b) => {
                        w.if_line(&line);
                        write_ops(&b.success, w);
                        w.else_();
                        write_ops(&b.failure, w);
                        w.end_if();
                    }
                }
            }
        }
    }
}

fn missing_program(program: &str, action: &str) -> String {
    format!("Missing {program}. {action} is disabled.")
}

fn walk<'a, H: Host>(ops: &'a [Op], st: &'a mut State, host: &'a mut H) -> Walk<'a, H::Error> {
    Box::pin(async move {
        for op in ops {
            let flow = match op {
                Op::IfProgram {
                    program,
                    action,
                    then,
                } => {
                    if program_found(program, st) {
                        let outer = st.guard.replace(action.clone());
                        let flow = walk(then, st, host).await?;
                        st.guard = outer;
                        match flow {
                            Flow::LeaveGuard => Flow::Next,
                            flow => flow,
                        }
                    } else {
                        print_message(host, &Message::warning(missing_program(program, action)));
                        Flow::Next
                    }
                }
                Op::Helper(step) => helper(step, st, host).await?,
                Op::ReplaceWithCopy { .. } | Op::RemoveTree(_) | Op::RemoveMatching { .. } => {
                    // Whole trees: off the async workers.
                    let (op, dir) = (op.clone(), st.dir.clone());
                    let done = tokio::task::spawn_blocking(move || run_file_op(&op, &dir))
                        .await
                        .unwrap_or_else(|e| Err(format!("the step did not finish: {e}")));
                    failed_step(host, done)
                }
                _ => {
                    let mut out = Vec::new();
                    let done = run_op(op, st, &mut out);
                    if !out.is_empty() {
                        host.print(&out);
                    }
                    failed_step(host, done)
                }
            };
            if !matches!(flow, Flow::Next) {
                return Ok(flow);
            }
        }
        Ok(Flow::Next)
    })
}

fn failed_step<H: Host>(host: &mut H, done: Result<(), String>) -> Flow {
    match done {
        Ok(()) => Flow::Next,
        Err(message) => {
            print_message(host, &Message::error(message));
            Flow::End(Ending::Exited(1))
        }
    }
}

fn print_message<H: Host>(host: &mut H, m: &Message) {
    host.print(message_line(m).as_bytes());
}

async fn helper<H: Host>(
    step: &HelperStep,
    st: &mut State,
    host: &mut H,
) -> Result<Flow, H::Error> {
    let mut env = st.env.clone();
    env.extend(
        step.command
            .secrets()
            .map(|(k, v)| (k.to_owned(), v.expose().to_owned())),
    );
    let call = HelperCall {
        program: &step.program,
        args: step.command.args(),
        env: &env,
        dir: &st.dir,
    };
    let code = match host.run_helper(call).await? {
        HelperEnd::Exited(code) => code,
        HelperEnd::Canceled => return Ok(Flow::End(Ending::Canceled)),
        HelperEnd::NotStarted(e) if e.kind() == io::ErrorKind::NotFound => {
            // Gone since the guard looked: what the guard says when it is missing.
            if let Some(action) = &st.guard {
                print_message(
                    host,
                    &Message::warning(missing_program(&step.program, action)),
                );
                return Ok(Flow::LeaveGuard);
            }
            127
        }
        HelperEnd::NotStarted(e) => {
            print_message(
                host,
                &Message::error(format!("{} could not be started: {e}", step.program)),
            );
            // bash's code for a command found but not executable.
            126
        }
    };
    let Some(branches) = &step.branches else {
        return Ok(if code == 0 {
            Flow::Next
        } else {
            Flow::End(Ending::Exited(code))
        });
    };
    let next = if code == 0 {
        &branches.success
    } else {
        &branches.failure
    };
    walk(next, st, host).await
}

/// Whether bash's `command -v program` finds an executable file: the path itself when it has a
/// slash, else the first match on the stage's `PATH`.
fn program_found(program: &str, st: &State) -> bool {
    let executable = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| !m.is_dir())
            && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
    };
    if program.is_empty() {
        return false;
    }
    if program.contains('/') {
        return executable(&st.at(program));
    }
    let path = st.var("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| executable(&st.dir.join(d).join(program)))
}

fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
}

/// A step that only needs the stage's state.
fn run_op(op: &Op, st: &mut State, out: &mut Vec<u8>) -> Result<(), String> {
    match op {
        Op::RunningOn => {
            let host = host_name().unwrap_or_else(|| "localhost".to_owned());
            out.extend_from_slice(format!("Running on {host}...\n").as_bytes());
        }
        Op::Message(m) => out.extend_from_slice(message_line(m).as_bytes()),
        Op::Environment(env) => set_up(env, st)?,
        Op::MakeDir(dir) => make_dir(&st.at(dir), dir)?,
        Op::RemoveFiles(paths) => {
            for p in paths {
                match fs::remove_file(st.at(p)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("cannot remove {p}: {e}")),
                }
            }
        }
        Op::WriteFile { path, content } => {
            fs::write(st.at(path), content).map_err(|e| format!("cannot write {path}: {e}"))?
        }
        Op::AppendFile { path, content } => fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(st.at(path))
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .map_err(|e| format!("cannot write {path}: {e}"))?,
        Op::RemoveTree(_)
        | Op::RemoveMatching { .. }
        | Op::ReplaceWithCopy { .. }
        | Op::IfProgram { .. }
        | Op::Helper(_) => {
            return run_file_op(op, &st.dir);
        }
    }
    Ok(())
}

/// A step on whole trees, relative paths taken from `dir`.
fn run_file_op(op: &Op, dir: &Path) -> Result<(), String> {
    match op {
        Op::RemoveTree(path) => {
            remove_tree(&dir.join(path)).map_err(|e| format!("cannot remove {path}: {e}"))
        }
        Op::RemoveMatching { dir: d, names } => {
            let d_path = dir.join(d);
            if d_path.is_dir() {
                remove_matching(&d_path, names).map_err(|e| format!("cannot clean up {d}: {e}"))?;
            }
            Ok(())
        }
        Op::ReplaceWithCopy { from, to } => replace_with_copy(&dir.join(from), &dir.join(to))
            .map_err(|e| format!("cannot copy {from} to {to}: {e}")),
        _ => Err("this step cannot run on its own; this is a bug in glrunner".to_owned()),
    }
}

fn make_dir(path: &Path, shown: &str) -> Result<(), String> {
    if !path.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .create(path)
            .map_err(|e| format!("cannot create directory {shown}: {e}"))?;
    }
    Ok(())
}

/// What the export lines of a stage script do (see `script::write_environment`), then `cd`.
fn set_up(env: &Environment, st: &mut State) -> Result<(), String> {
    let vars = &env.variables;
    let mut tmp_made = false;
    for v in vars.iter().filter(|v| is_valid_name(&v.key)) {
        if v.file {
            let path = vars.file_path(&v.key);
            if !tmp_made {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                if !dir.is_empty() {
                    make_dir(&st.at(dir), dir)?;
                }
                tmp_made = true;
            }
            // A bash string cannot hold a NUL; the script's printf drops them too.
            fs::write(st.at(&path), v.value.replace('\0', ""))
                .map_err(|e| format!("cannot write {path}: {e}"))?;
            st.export(&v.key, &path);
        } else {
            st.export(&v.key, &v.value);
        }
    }
    st.export("GITLAB_ENV", &env.gitlab_env);
    make_dir(&st.at(&env.tmp_dir), &env.tmp_dir)?;
    let gitlab_env = st.at(&env.gitlab_env);
    let content = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&gitlab_env)
        .and_then(|_| fs::read(&gitlab_env))
        .map_err(|e| format!("cannot read {}: {e}", env.gitlab_env))?;
    let content = String::from_utf8_lossy(&content).replace('\0', "");
    for line in content.split('\n') {
        // `read -r line` drops the whitespace around the line.
        let line = line.trim_matches([' ', '\t']);
        if !line.is_empty() {
            export_line(line, st)?;
        }
    }
    let dir = st.at(&env.dir);
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("cannot enter {}: not a directory", env.dir)),
        Err(e) => return Err(format!("cannot enter {}: {e}", env.dir)),
    }
    st.dir = dir;
    // bash keeps PWD up to date for the programs it starts.
    let pwd = st.dir.to_string_lossy().into_owned();
    st.export("PWD", &pwd);
    Ok(())
}

/// bash's `export "$line"`: `NAME=value` sets, `NAME+=value` appends, `NAME` alone changes nothing,
/// and anything else is an error that stops the stage.
fn export_line(line: &str, st: &mut State) -> Result<(), String> {
    let invalid = || format!("export: `{line}': not a valid identifier");
    match line.split_once('=') {
        Some((name, value)) => {
            if let Some(name) = name.strip_suffix('+')
                && is_valid_name(name)
            {
                let mut joined = st
                    .var(name)
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_default();
                joined.push_str(value);
                st.export(name, &joined);
                Ok(())
            } else if is_valid_name(name) {
                st.export(name, value);
                Ok(())
            } else {
                Err(invalid())
            }
        }
        None if is_valid_name(line) => Ok(()),
        None => Err(invalid()),
    }
}

/// `rm -r -f`: a link is removed, not followed; nothing there is fine.
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

fn remove_matching(dir: &Path, names: &[String]) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            remove_matching(&entry.path(), names)?;
        } else if kind.is_file() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if names.iter().any(|pattern| matches(pattern, &name)) {
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// `pattern` with `*` (any run of characters) and `?` (one character) matches all of `name`.
fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic wildcard matching with one backtracking point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `to` becomes a copy of `from`, as after `rm -r -f to; cp -R from to`.
fn replace_with_copy(from: &Path, to: &Path) -> io::Result<()> {
    match fs::symlink_metadata(to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => copy_tree(from, to),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => sync_tree(from, to),
        Ok(_) => {
            fs::remove_file(to)?;
            copy_tree(from, to)
        }
    }
}

/// Bring the directory `to` in line with `from`: what `to` has that `from` lacks goes, files and links
/// that differ (content, size, mode, target) are made anew, the rest is kept as it is. Without the
/// inodes a fresh copy deletes and creates, a job's checkout costs little more than what changed in it.
fn sync_tree(from: &Path, to: &Path) -> io::Result<()> {
    let mode = fs::metadata(from)?.permissions().mode() & 0o777;
    if fs::metadata(to)?.permissions().mode() & 0o777 != mode {
        fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    }
    let mut wanted = std::collections::HashMap::new();
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        wanted.insert(entry.file_name(), entry.file_type()?);
    }
    for entry in fs::read_dir(to)? {
        let entry = entry?;
        if !wanted.contains_key(&entry.file_name()) {
            remove_tree(&entry.path())?;
        }
    }
    for (name, kind) in wanted {
        let (src, dst) = (from.join(&name), to.join(&name));
        let existing = match fs::symlink_metadata(&dst) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if kind.is_dir() {
            match existing {
                Some(m) if m.is_dir() => sync_tree(&src, &dst)?,
                Some(_) => {
                    fs::remove_file(&dst)?;
                    copy_tree(&src, &dst)?;
                }
                None => copy_tree(&src, &dst)?,
            }
        } else if kind.is_symlink() {
            let target = fs::read_link(&src)?;
            let same = existing
                .as_ref()
                .is_some_and(|m| m.file_type().is_symlink())
                && fs::read_link(&dst)? == target;
            if !same {
                if existing.is_some() {
                    remove_tree(&dst)?;
                }
                std::os::unix::fs::symlink(target, &dst)?;
            }
        } else {
            let src_meta = fs::metadata(&src)?;
            let same = match &existing {
                Some(m) => {
                    m.is_file()
                        && m.len() == src_meta.len()
                        && m.permissions().mode() & 0o777 == src_meta.permissions().mode() & 0o777
                        && same_content(&src, &dst)?
                }
                None => false,
            };
            if !same {
                if existing.is_some() {
                    remove_tree(&dst)?;
                }
                copy_file(&src, &dst, src_meta.permissions().mode())?;
            }
        }
    }
    Ok(())
}

/// Whether two files of the same size hold the same bytes.
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut x, mut y) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y[..1])? == 0);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

fn copy_file(src: &Path, dst: &Path, mode: u32) -> io::Result<()> {
    let mut input = fs::File::open(src)?;
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .open(dst)?;
    io::copy(&mut input, &mut output)?;
    Ok(())
}

/// `cp -R from to`: directories and files created anew (modes of the originals, less the umask),
/// links copied as links.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let mode = fs::symlink_metadata(from)?.permissions().mode();
    fs::DirBuilder::new().mode(mode & 0o777).create(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            copy_file(&src, &dst, entry.metadata()?.permissions().mode())?;
        }
    }
    Ok(())
}

/// The steps' script run by bash.
#[cfg(test)]
pub(crate) fn in_bash(ops: &StageOps) -> std::process::Output {
    let mut w = BashWriter::default();
    ops.write(&mut w);
    crate::script::run_bash(&w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Output into a buffer; helpers run to their end with their output captured.
    #[derive(Default)]
    struct TestHost {
        out: Vec<u8>,
    }

    impl Host for TestHost {
        type Error = std::convert::Infallible;

        fn print(&mut self, bytes: &[u8]) {
            self.out.extend_from_slice(bytes);
        }

        async fn run_helper(
            &mut self,
            call: HelperCall<'_>,
        ) -> Result<HelperEnd, std::convert::Infallible> {
            let out = Command::new(call.program)
                .args(call.args)
                .current_dir(call.dir)
                .envs(call.env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .output();
            Ok(match out {
                Err(e) => HelperEnd::NotStarted(e),
                Ok(o) => {
                    self.out.extend_from_slice(&o.stdout);
                    self.out.extend_from_slice(&o.stderr);
                    HelperEnd::Exited(o.status.code().unwrap_or(-1))
                }
            })
        }
    }

    impl StageOps {
        /// Carried out from `/`, as the tests' bash runs: the exit code and the output.
        async fn run_here(&self) -> (i32, Vec<u8>) {
            let mut host = TestHost::default();
            let code = match self.carry_out(Path::new("/"), &mut host).await {
                Ok(Ending::Exited(code)) => code,
                Ok(Ending::Canceled) => panic!("nothing cancels"),
            };
            (code, host.out)
        }
    }

    #[test]
    fn wildcards_match_as_find_name_does() {
        for (pattern, name, expected) in [
            ("*.lock", "main.lock", true),
            ("*.lock", ".hidden.lock", true),
            ("*.lock", "main.lock.old", false),
            ("index.lock", "index.lock", true),
            ("index.lock", "xindex.lock", false),
            ("?.lock", "a.lock", true),
            ("?.lock", "ab.lock", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
        ] {
            assert_eq!(matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    /// A tree with a nested dir, an executable, a link and stale locks, for both forms to work on.
    fn fixture(root: &Path) {
        fs::create_dir_all(root.join("src/sub")).unwrap();
        fs::write(root.join("src/tool.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("src/tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("src/sub/data.txt"), "data\n").unwrap();
        std::os::unix::fs::symlink("sub/data.txt", root.join("src/link")).unwrap();
        fs::create_dir_all(root.join("work/refs/heads")).unwrap();
        fs::write(root.join("work/refs/heads/main.lock"), "").unwrap();
        fs::write(root.join("work/refs/heads/main"), "").unwrap();
        fs::write(root.join("work/env"), "A=1\n").unwrap();
        fs::create_dir_all(root.join("work/old/deep")).unwrap();
        fs::write(root.join("work/old/deep/x"), "x").unwrap();
    }

    fn ops(root: &Path) -> StageOps {
        let p = |rel: &str| root.join(rel).to_str().unwrap().to_owned();
        StageOps {
            ops: vec![
                Op::Message(Message::notice("Starting")),
                Op::MakeDir(p("work/new/dir")),
                Op::RemoveFiles(vec![p("work/env"), p("work/absent")]),
                Op::RemoveTree(p("work/old")),
                Op::RemoveMatching {
                    dir: p("work/refs"),
                    names: vec!["*.lock".into()],
                },
                Op::WriteFile {
                    path: p("work/new/conf"),
                    content: "[include]\n\tpath = x\n".into(),
                },
                Op::AppendFile {
                    path: p("work/new/conf"),
                    content: "more 'quoted' $text\n".into(),
                },
                Op::ReplaceWithCopy {
                    from: p("src"),
                    to: p("work/copy"),
                },
            ],
        }
    }

    /// Every path below `root` with its kind, mode and content.
    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let m = fs::symlink_metadata(e.path()).unwrap();
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                if m.is_dir() {
                    stack.push(e.path());
                    out.push(format!("{rel}/ {:o}", m.permissions().mode() & 0o777));
                } else if m.file_type().is_symlink() {
                    out.push(format!(
                        "{rel} -> {}",
                        fs::read_link(e.path()).unwrap().display()
                    ));
                } else {
                    out.push(format!(
                        "{rel} {:o} {:?}",
                        m.permissions().mode() & 0o777,
                        fs::read_to_string(e.path()).unwrap()
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn carried_out_here_they_leave_what_the_script_leaves_and_print_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let (scripted, native) = (tmp.path().join("scripted"), tmp.path().join("native"));
        fixture(&scripted);
        fixture(&native);

        let out = in_bash(&ops(&scripted));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let (code, printed) = ops(&native).run_here().await;
        assert_eq!(code, 0);
        assert_eq!(printed, out.stdout, "the same output");
        assert_eq!(listing(&native), listing(&scripted));
        let listed = listing(&native);
        assert!(
            listed.contains(&"work/copy/tool.sh 755 \"#!/bin/sh\\n\"".to_owned()),
            "{listed:?}"
        );
        assert!(
            listed.contains(&"work/copy/link -> sub/data.txt".to_owned()),
            "{listed:?}"
        );
        assert!(
            !listed
                .iter()
                .any(|l| l.contains("main.lock") || l.contains("work/old"))
        );
    }

    #[tokio::test]
    async fn a_copy_over_an_earlier_one_ends_as_a_fresh_copy_and_keeps_what_matched() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fixture(tmp.path());
        fs::write(src.join("big.bin"), vec![7u8; 200_000]).unwrap();
        let (fresh, reused) = (tmp.path().join("fresh"), tmp.path().join("reused"));
        let copy = |to: &Path| StageOps {
            ops: vec![Op::ReplaceWithCopy {
                from: src.display().to_string(),
                to: to.display().to_string(),
            }],
        };
        assert_eq!(copy(&reused).run_here().await.0, 0);
        // What a job may do to its copy: change, add, remove, retype, chmod, relink.
        fs::write(reused.join("tool.sh"), "#!/bin/sh\nchanged\n").unwrap();
        let mut big = fs::read(reused.join("big.bin")).unwrap();
        big[150_000] = 8;
        fs::write(reused.join("big.bin"), big).unwrap();
        fs::write(reused.join("leftover.o"), "x").unwrap();
        fs::create_dir_all(reused.join("build/deep")).unwrap();
        fs::remove_file(reused.join("link")).unwrap();
        fs::write(reused.join("link"), "now a file").unwrap();
        fs::remove_dir_all(reused.join("sub")).unwrap();
        fs::create_dir_all(reused.join("sub")).unwrap();
        fs::write(reused.join("sub/data.txt"), "data\n").unwrap();
        // An old modification time tells a kept file from one written again.
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(reused.join("sub/data.txt"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::set_permissions(reused.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("tool.sh", reused.join("extra-link")).unwrap();

        let (code, sink) = copy(&reused).run_here().await;
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&sink));
        let out = in_bash(&copy(&fresh));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(listing(&reused), listing(&fresh));
        assert_eq!(
            fs::read(reused.join("big.bin")).unwrap(),
            vec![7u8; 200_000]
        );
        assert_eq!(
            fs::metadata(reused.join("sub/data.txt"))
                .unwrap()
                .modified()
                .unwrap(),
            old,
            "a file that matches is kept, not written again"
        );

        // A file where the copy goes is replaced too.
        let file_there = tmp.path().join("file-there");
        fs::write(&file_there, "x").unwrap();
        assert_eq!(copy(&file_there).run_here().await.0, 0);
        assert_eq!(listing(&file_there), listing(&fresh));
    }

    #[tokio::test]
    async fn the_host_line_and_a_failing_step() {
        let ops = StageOps {
            ops: vec![Op::RunningOn],
        };
        assert!(ops.can_run_here());
        let (code, printed) = ops.run_here().await;
        assert_eq!(code, 0);
        let out = in_bash(&ops);
        assert_eq!(printed, out.stdout);

        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("exists");
        fs::create_dir_all(&target).unwrap();
        let failing = StageOps {
            ops: vec![
                Op::ReplaceWithCopy {
                    from: tmp.path().join("missing").display().to_string(),
                    to: target.join("x").display().to_string(),
                },
                Op::Message(Message::notice("never")),
            ],
        };
        let (code, printed) = failing.run_here().await;
        assert_eq!(code, 1);
        let text = String::from_utf8(printed).unwrap();
        assert!(
            text.contains("ERROR: cannot copy") && !text.contains("never"),
            "{text}"
        );
    }
    #[tokio::test]
    async fn helper_steps_keep_the_token_in_the_environment_and_match_the_script() {
        use crate::helper::JOB_TOKEN_ENV;
        use glrunner_protocol::{JobVariable, Secret};
        const TOKEN: &str = "glcbt-64_unitt0ken";
        let tmp = tempfile::tempdir().unwrap();
        let program = tmp.path().join("helper");
        fs::write(
            &program,
            "#!/bin/sh\necho \"args=$* token=$GLRUNNER_JOB_TOKEN ci=$CI_JOB_TOKEN from=$FROM_ENV pwd=$(pwd)\"\nexit \"$2\"\n",
        )
        .unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let program = program.display().to_string();
        let project = tmp.path().join("project");
        fs::create_dir_all(&project).unwrap();
        let tmp_dir = tmp.path().join("project.tmp").display().to_string();
        let mut variables = Variables::new();
        variables.push(JobVariable {
            masked: true,
            ..JobVariable::new("CI_JOB_TOKEN", TOKEN)
        });
        let ops = |code: &str| StageOps {
            ops: vec![
                Op::Environment(Box::new(Environment {
                    variables: variables.clone(),
                    gitlab_env: format!("{tmp_dir}/env"),
                    tmp_dir: tmp_dir.clone(),
                    dir: project.display().to_string(),
                })),
                Op::IfProgram {
                    program: program.clone(),
                    action: "Testing".into(),
                    then: vec![Op::Helper(Box::new(HelperStep {
                        program: program.clone(),
                        command: HelperCommand::new(code).env(JOB_TOKEN_ENV, &Secret::new(TOKEN)),
                        branches: Some(Branches {
                            success: vec![Op::Message(Message::notice("ok"))],
                            failure: vec![Op::Message(Message::warning("failed"))],
                        }),
                    }))],
                },
                Op::IfProgram {
                    program: "/nonexistent/glrunner".into(),
                    action: "Testing".into(),
                    then: vec![Op::Message(Message::notice("never"))],
                },
                Op::Helper(Box::new(HelperStep {
                    program: program.clone(),
                    command: HelperCommand::new(code),
                    branches: None,
                })),
                Op::Message(Message::notice("after")),
            ],
        };
        fs::create_dir_all(&tmp_dir).unwrap();
        fs::write(format!("{tmp_dir}/env"), "FROM_ENV=gitlab env\n").unwrap();
        for code in ["0", "3"] {
            let ops = ops(code);
            let debug = format!("{ops:?}");
            assert!(!debug.contains(TOKEN), "{debug}");
            let out = in_bash(&ops);
            let (native_code, printed) = ops.run_here().await;
            assert_eq!(Some(native_code), out.status.code(), "exit code {code}");
            assert_eq!(
                String::from_utf8_lossy(&printed),
                String::from_utf8_lossy(&out.stdout)
            );
            let text = String::from_utf8(printed).unwrap();
            assert!(
                text.contains(&format!(
                    "args=helper {code} token={TOKEN} ci={TOKEN} from=gitlab env pwd={}",
                    project.display()
                )),
                "{text}"
            );
            assert!(text.contains("WARNING: Missing /nonexistent/glrunner. Testing is disabled."));
            assert!(!text.contains("never"));
            assert_eq!(text.contains("after"), code == "0", "errexit: {text}");
            assert_eq!(text.contains("WARNING: failed"), code != "0", "{text}");
        }
    }
}
