//! Containers as local processes. Each container start is `unshare --mount --uts` running a
//! small setup script that builds the container's root as an overlay of the host's `/` (writes
//! stay private to the container), bind-mounts every volume at its `mountPath` (`/builds`,
//! `/scripts-1-2`, …), hides the kubelet's own directory, sets the hostname to the pod's name,
//! then `chroot`s and `exec`s the command. The container is the set of processes in that mount
//! namespace: stopping it signals them, `exec` joins it with `nsenter`, and the memory limit is
//! the sum of their resident sizes.

use super::logfile::{LogWriter, Stream};
use crate::MutexExt as _;
use bytes::Bytes;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};

/// The marker the setup script prints on stdout once the container is set up.
const READY: &str = "glrunner-container-ready ";
/// How long a container's set-up may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Output chunks an attached client may fall behind by before chunks are dropped for it.
const SUBSCRIBER_BACKLOG: usize = 1024;

/// The host programs containers are built with.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    unshare: PathBuf,
    nsenter: PathBuf,
    sh: PathBuf,
    mount: PathBuf,
    mkdir: PathBuf,
    chroot: PathBuf,
    env: PathBuf,
    hostname: PathBuf,
    readlink: PathBuf,
    setpriv: Option<PathBuf>,
}

fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&paths)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Tools {
    /// Find the programs, or say which are missing and why they matter.
    pub fn find() -> Result<Self, String> {
        let names = [
            "unshare", "nsenter", "sh", "mount", "mkdir", "chroot", "env", "hostname", "readlink",
        ];
        let found: Vec<Option<PathBuf>> = names.iter().map(|n| which(n)).collect();
        let missing: Vec<&str> = names
            .iter()
            .zip(&found)
            .filter(|(_, p)| p.is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the process kubelet needs {} on PATH to run containers (util-linux and coreutils); install them, e.g. `apt-get install util-linux coreutils`",
                missing.join(", ")
            ));
        }
        let mut it = found.into_iter().flatten();
        let mut next = || it.next().unwrap_or_default();
        Ok(Self {
            unshare: next(),
            nsenter: next(),
            sh: next(),
            mount: next(),
            mkdir: next(),
            chroot: next(),
            env: next(),
            hostname: next(),
            readlink: next(),
            setpriv: which("setpriv"),
        })
    }
}

/// Single-quote `s` for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn sqp(p: &Path) -> String {
    sq(&p.to_string_lossy())
}

/// A path inside the container's root (`$R/builds`).
fn inside(target: &str) -> String {
    let t = target.trim_end_matches('/');
    format!("\"$R\"{}", sq(if t.is_empty() { "/" } else { t }))
}

/// One bind mount into the container.
#[derive(Debug, Clone)]
pub(crate) struct MountSpec {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// A single file rather than a directory.
    pub file: bool,
}

/// Everything needed to start one container.
pub(crate) struct LaunchSpec {
    /// This start's own directory (setup script, overlay, root).
    pub dir: PathBuf,
    /// Host directories to hide from the container (the kubelet's own).
    pub hide: Vec<PathBuf>,
    pub hostname: String,
    pub mounts: Vec<MountSpec>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub stdin: bool,
    /// `runAsUser`/`runAsGroup`.
    pub user: Option<(u32, u32)>,
    pub log: Arc<LogWriter>,
    /// Kill it with OOMKilled above this many resident bytes.
    pub memory_limit: Option<i64>,
    pub memory_poll: Duration,
}

/// How a container's main process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exit {
    pub code: i32,
    pub oom: bool,
    pub finished_at: String,
}

/// Output chunks for attached clients.
type Chunk = (Stream, Bytes);

/// A running (or finished) container.
pub(crate) struct Process {
    pub pid: u32,
    /// `mnt:[4026532177]`: the namespace that makes a process part of this container.
    pub mnt_ns: String,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    subscribers: Mutex<Vec<mpsc::Sender<Chunk>>>,
    exit: watch::Receiver<Option<Exit>>,
    oom: AtomicBool,
    pub log: Arc<LogWriter>,
    /// The namespace held open while the container lives: its inode number cannot be reused
    /// by another container meanwhile, so signalling "every process in `mnt_ns`" only ever
    /// reaches this container. Released once the container has ended.
    pin: Mutex<Option<std::fs::File>>,
    /// Every process signalled to die: the container has stopped once all are gone (a killed
    /// process may linger as a zombie, which no longer shows in the namespace).
    killed: Mutex<std::collections::HashSet<u32>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("mnt_ns", &self.mnt_ns)
            .finish_non_exhaustive()
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// The setup script for `spec`.
fn script(tools: &Tools, spec: &LaunchSpec) -> String {
    let mut s = String::new();
    let mount = sqp(&tools.mount);
    let mkdir = sqp(&tools.mkdir);
    s.push_str(&format!(
        "exec 3>&2 2>{err}\nset -eu\nR={root}\nO={ovl}\n",
        err = sqp(&spec.dir.join("setup.err")),
        root = sqp(&spec.dir.join("root")),
        ovl = sqp(&spec.dir.join("overlay")),
    ));
    s.push_str(&format!(
        "{mount} -t tmpfs -o mode=0755 glrunner-overlay \"$O\"\n{mkdir} \"$O/upper\" \"$O/work\"\n\
         {mount} -t overlay overlay -o \"lowerdir=/,upperdir=$O/upper,workdir=$O/work\" \"$R\"\n"
    ));
    for fs in ["/proc", "/dev", "/sys"] {
        s.push_str(&format!("{mount} --rbind {fs} {}\n", inside(fs)));
    }
    // A fresh /tmp, as an image has; it also hides whatever the host keeps there.
    s.push_str(&format!(
        "{mount} -t tmpfs -o mode=1777 glrunner-tmp {}\n",
        inside("/tmp")
    ));
    for h in &spec.hide {
        let t = inside(&h.to_string_lossy());
        s.push_str(&format!(
            "if [ -d {t} ]; then {mount} -t tmpfs -o mode=0755,size=1m glrunner-hidden {t}; fi\n"
        ));
    }
    for m in &spec.mounts {
        let t = inside(&m.target);
        if m.file {
            let parent = Path::new(&m.target)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".to_owned());
            s.push_str(&format!(
                "{mkdir} -p {}\n[ -e {t} ] || : > {t}\n",
                inside(&parent)
            ));
        } else {
            s.push_str(&format!("{mkdir} -p {t}\n"));
        }
        s.push_str(&format!("{mount} --bind {} {t}\n", sqp(&m.source)));
        if m.read_only {
            s.push_str(&format!("{mount} -o remount,bind,ro {t}\n"));
        }
    }
    s.push_str(&format!(
        "{mkdir} -p {}\n{} {}\n",
        inside(&spec.working_dir),
        sqp(&tools.hostname),
        sq(&spec.hostname)
    ));
    s.push_str(&format!(
        "printf '{READY}%s\\n' \"$({} /proc/self/ns/mnt)\"\nexec 2>&3 3>&-\nexec {} \"$R\"",
        sqp(&tools.readlink),
        sqp(&tools.chroot)
    ));
    if let (Some((uid, gid)), Some(setpriv)) = (spec.user, &tools.setpriv) {
        s.push_str(&format!(
            " {} --reuid={uid} --regid={gid} --clear-groups",
            sqp(setpriv)
        ));
    }
    s.push_str(&format!(
        " {} -C {} --",
        sqp(&tools.env),
        sq(&spec.working_dir)
    ));
    for a in &spec.argv {
        s.push(' ');
        s.push_str(&sq(a));
    }
    s.push('\n');
    s
}

/// Why a container could not start (the runtime's `StartError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartError(pub String);

/// Process groups of containers being set up (not yet [`Process`]es), so a kubelet shutting
/// down can stop them too.
pub(crate) type Launching = Mutex<std::collections::HashSet<u32>>;

/// Forgets a launching process group however `launch` ends.
struct LaunchGuard<'a> {
    launching: &'a Launching,
    pid: u32,
}

impl Drop for LaunchGuard<'_> {
    fn drop(&mut self) {
        self.launching.locked().remove(&self.pid);
    }
}

/// Kill what `launching` holds (each container's own process group).
pub(crate) fn kill_launching(launching: &Launching) -> Vec<u32> {
    let pids: Vec<u32> = launching.locked().iter().copied().collect();
    for pid in &pids {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    pids
}

/// Whether `pid` is gone or a zombie (dead, waiting to be reaped).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S …`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Wait, blocking, until every one of `pids` is dead (at most `limit`): for a kubelet's last
/// moments, when the runtime that would reap its own children is the one blocked here.
pub(crate) fn wait_gone_blocking(pids: &[u32], limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if pids.iter().all(|pid| dead(*pid)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Start a container; returns once it runs (its setup is done).
pub(crate) async fn launch(
    tools: &Tools,
    spec: LaunchSpec,
    launching: &Launching,
) -> Result<Arc<Process>, StartError> {
    std::fs::create_dir_all(spec.dir.join("root"))
        .and_then(|()| std::fs::create_dir_all(spec.dir.join("overlay")))
        .map_err(|e| StartError(format!("creating {}: {e}", spec.dir.display())))?;
    let setup = spec.dir.join("setup.sh");
    std::fs::write(&setup, script(tools, &spec))
        .map_err(|e| StartError(format!("writing {}: {e}", setup.display())))?;
    let mut cmd = Command::new(&tools.unshare);
    cmd.args(["--mount", "--uts", "--propagation", "private", "--"])
        .arg(&tools.sh)
        .arg(&setup)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd
        .spawn()
        .map_err(|e| StartError(format!("starting {}: {e}", tools.unshare.display())))?;
    let pid = child.id().unwrap_or_default();
    launching.locked().insert(pid);
    let _guard = LaunchGuard { launching, pid };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(StartError(
            "the container's output pipes are missing".to_owned(),
        ));
    };
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    let ready = tokio::time::timeout(SETUP_TIMEOUT, stdout.read_line(&mut first)).await;
    let mnt_ns = match ready {
        Ok(Ok(n)) if n > 0 && first.starts_with(READY) => first[READY.len()..].trim().to_owned(),
        _ => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let err = std::fs::read_to_string(spec.dir.join("setup.err")).unwrap_or_default();
            let err = err.trim();
            return Err(StartError(if err.is_empty() {
                "container setup did not finish".to_owned()
            } else {
                err.to_owned()
            }));
        }
    };
    let (exit_tx, exit_rx) = watch::channel(None);
    // Pin the namespace, making sure it is the one the container reported.
    let pin = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .filter(|_| {
            std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .is_ok_and(|l| l.to_string_lossy() == mnt_ns)
        });
    let process = Arc::new(Process {
        pid,
        mnt_ns,
        stdin: tokio::sync::Mutex::new(child.stdin.take()),
        subscribers: Mutex::new(Vec::new()),
        exit: exit_rx,
        oom: AtomicBool::new(false),
        log: spec.log.clone(),
        pin: Mutex::new(pin),
        killed: Mutex::new(std::collections::HashSet::new()),
    });
    let out_task = tokio::spawn(pump(stdout, Stream::Stdout, process.clone()));
    let err_task = tokio::spawn(pump(stderr, Stream::Stderr, process.clone()));
    if let Some(limit) = spec.memory_limit {
        tokio::spawn(watch_memory(process.clone(), limit, spec.memory_poll));
    }
    let waiter = process.clone();
    tokio::spawn(async move {
        let status = child.wait().await;
        // The main process is gone: like a PID namespace ending, every other process goes,
        // and the container has stopped once they all have.
        waiter.signal_all(Signal::SIGKILL);
        let killed: Vec<u32> = waiter.killed.locked().iter().copied().collect();
        wait_gone(&killed).await;
        waiter.pin.locked().take();
        for t in [out_task, err_task] {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let code = match status {
            Ok(s) => exit_code(s),
            Err(_) => 255,
        };
        let exit = Exit {
            code,
            oom: waiter.oom.load(Ordering::SeqCst),
            finished_at: crate::store::now_rfc3339(0),
        };
        let _ = exit_tx.send(Some(exit));
    });
    Ok(process)
}

async fn pump<R: AsyncRead + Unpin>(mut r: R, stream: Stream, p: Arc<Process>) {
    let mut buf = vec![0u8; 16 * 1024];
    // Bounded by the pipe: it ends when the container's processes are gone.
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        p.log.write(stream, &buf[..n]);
        let chunk = Bytes::copy_from_slice(&buf[..n]);
        let mut subs = p.subscribers.locked();
        subs.retain(|s| match s.try_send((stream, chunk.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("an attached client fell behind; output dropped for it");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

async fn watch_memory(p: Arc<Process>, limit: i64, poll: Duration) {
    let mut exit = p.exit.clone();
    // Bounded by the container's life.
    loop {
        if exit.borrow().is_some() {
            return;
        }
        let used = p.resident_bytes();
        if used > limit {
            tracing::debug!(pid = p.pid, used, limit, "memory limit exceeded: OOM kill");
            p.oom_kill();
            return;
        }
        tokio::select! {
            _ = exit.changed() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Wait (bounded) until none of `pids` exists any more, zombies included.
async fn wait_gone(pids: &[u32]) {
    for _ in 0..500 {
        if pids
            .iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(?pids, "container processes still exist 5 s after SIGKILL");
}

impl Process {
    /// Signal every process of the container while it is pinned (alive); returns their pids.
    fn signal_all(&self, sig: Signal) -> Vec<u32> {
        let pin = self.pin.locked();
        if pin.is_none() {
            return Vec::new();
        }
        let pids = pids_in(&self.mnt_ns);
        for pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), sig);
        }
        if sig == Signal::SIGKILL {
            self.killed
                .locked()
                .extend(pids.iter().copied().filter(|p| *p != self.pid));
        }
        pids
    }

    /// How it ended, once it has.
    pub fn exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Wait for the end.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.clone();
        loop {
            if let Some(e) = rx.borrow().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                return Exit {
                    code: 255,
                    oom: false,
                    finished_at: crate::store::now_rfc3339(0),
                };
            }
        }
    }

    /// Every process of this container.
    pub fn pids(&self) -> Vec<u32> {
        let pin = self.pin.locked();
        if pin.is_none() {
            return Vec::new();
        }
        pids_in(&self.mnt_ns)
    }

    /// Resident memory of the container's processes, in bytes.
    pub fn resident_bytes(&self) -> i64 {
        self.pids()
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
            .map(|kb| kb * 1024)
            .sum()
    }

    /// Kill every process as the kernel's OOM killer would for a memory cgroup.
    pub fn oom_kill(&self) {
        self.oom.store(true, Ordering::SeqCst);
        self.signal_all(Signal::SIGKILL);
    }

    /// SIGTERM to the main process, SIGKILL to all after `grace`.
    pub async fn stop(&self, grace: Duration) {
        if self.exit().is_some() {
            return;
        }
        if grace.is_zero() {
            self.signal_all(Signal::SIGKILL);
        } else {
            // SIGTERM goes to the main process only, as a runtime sends it to PID 1.
            if self.exit().is_none() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.pid as i32),
                    Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(grace, self.wait()).await.is_ok() {
                return;
            }
            self.signal_all(Signal::SIGKILL);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.wait()).await;
    }

    /// Kill now (no grace), without waiting.
    pub fn kill(&self) {
        self.signal_all(Signal::SIGKILL);
    }

    /// Output from now on (for attach).
    pub fn subscribe(&self) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BACKLOG);
        self.subscribers.locked().push(tx);
        rx
    }

    /// Write to the main process's stdin (when the container has `stdin: true`).
    pub async fn write_stdin(&self, data: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt as _;
        let mut guard = self.stdin.lock().await;
        match guard.as_mut() {
            Some(w) => {
                if w.write_all(data).await.is_err() || w.flush().await.is_err() {
                    *guard = None;
                    return false;
                }
                true
            }
            None => false,
        }
    }

    /// Close the main process's stdin (`stdinOnce` after the first attach).
    pub async fn close_stdin(&self) {
        *self.stdin.lock().await = None;
    }
}

/// A command to run inside a container (`pods/exec`).
pub(crate) struct ExecRequest<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub working_dir: &'a str,
    pub user: Option<(u32, u32)>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Start a command inside a running container: `nsenter` into its mount and UTS namespaces
/// and its root, with the container's environment and working directory.
pub(crate) fn exec(
    tools: &Tools,
    process: &Process,
    req: &ExecRequest<'_>,
) -> std::io::Result<Child> {
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut cmd = Command::new(&tools.nsenter);
    cmd.arg(format!("--target={}", process.pid))
        .args(["--mount", "--uts", "--root", "--"]);
    if let (Some((uid, gid)), Some(setpriv)) = (req.user, &tools.setpriv) {
        cmd.arg(setpriv)
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups");
    }
    cmd.arg(&tools.env)
        .arg("-C")
        .arg(req.working_dir)
        .arg("--")
        .args(req.argv)
        .env_clear()
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(pipe(req.stdin))
        .stdout(pipe(req.stdout))
        .stderr(pipe(req.stderr))
        .kill_on_drop(false);
    cmd.spawn()
}

/// Processes whose mount namespace is `ns`.
pub(crate) fn pids_in(ns: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .is_ok_and(|l| l.to_string_lossy() == ns)
        })
        .collect()
}

/// Whether this process may build containers (root), and a trial start proving it.
pub(crate) async fn probe(tools: &Tools, dir: &Path) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "the process kubelet runs each container in its own mount namespace, which needs root (CAP_SYS_ADMIN); this process runs as uid {}. Run the tests as root (for example `sudo -E cargo test -p glrunner-apiserver`, or in a container started with --privileged)",
            nix::unistd::geteuid()
        ));
    }
    let log = LogWriter::create(&dir.join("probe.log"))
        .map(Arc::new)
        .map_err(|e| format!("creating the probe log: {e}"))?;
    let spec = LaunchSpec {
        dir: dir.join("probe"),
        hide: Vec::new(),
        hostname: "glrunner-probe".to_owned(),
        mounts: Vec::new(),
        argv: vec!["true".to_owned()],
        env: vec![("PATH".to_owned(), super::image::DEFAULT_PATH.to_owned())],
        working_dir: "/".to_owned(),
        stdin: false,
        user: None,
        log,
        memory_limit: None,
        memory_poll: Duration::from_secs(1),
    };
    let launching = Launching::default();
    let p = launch(tools, spec, &launching).await.map_err(|e| {
        format!(
            "a trial container did not start (mount namespaces, tmpfs and overlayfs are needed): {}",
            e.0
        )
    })?;
    let exit = tokio::time::timeout(Duration::from_secs(10), p.wait())
        .await
        .map_err(|_| "a trial container did not finish within 10 s".to_owned())?;
    let _ = std::fs::remove_dir_all(dir.join("probe"));
    if exit.code != 0 {
        return Err(format!(
            "a trial container (`true`) exited with {}",
            exit.code
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sq("it's"), r"'it'\''s'");
        assert_eq!(inside("/builds/"), "\"$R\"'/builds'");
    }
}
