//! Predefined stages made only of simple steps (print a line, remove or write files, copy a
//! directory), which an executor on the job's own machine can carry out itself instead of starting a
//! shell for them: the shell executor does, and saves a bash, its `rm` and `cp` for each.
//!
//! The steps are also rendered as a bash script ([`StageOps::write`]), which stays the contract for
//! executors that run scripts (Kubernetes); both forms print the same lines and leave the same files.
//! A failed step stops the stage with exit code 1, as the script's errexit would.

use crate::script::{BashWriter, escape};
use glrunner_trace::format as ansi;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `Running on <host>...`, the host as bash names it: `$HOSTNAME`, else the system's host name.
    RunningOn,
    /// A bold green line of job output.
    Notice(String),
    /// Create a directory and its parents when it is missing (`mkdir -p`).
    MakeDir(String),
    /// Remove those of these files that exist (`rm -f`).
    RemoveFiles(Vec<String>),
    /// Remove a path and everything below it when it exists (`rm -r -f`).
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
}

/// The steps of one stage, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageOps {
    pub ops: Vec<Op>,
}

impl StageOps {
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// The steps as script lines.
    pub fn write(&self, w: &mut BashWriter) {
        for op in &self.ops {
            match op {
                Op::RunningOn => w.line("echo \"Running on ${HOSTNAME:-$(hostname)}...\""),
                Op::Notice(text) => w.notice(text),
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
            }
        }
    }

    /// Whether every step can be carried out here (the host name needs `$HOSTNAME` or /proc).
    pub fn can_run_here(&self) -> bool {
        !self.ops.contains(&Op::RunningOn) || host_name().is_some()
    }

    /// Carry the steps out on this machine, writing the stage's output to `out`. On the first step
    /// that fails, an `ERROR:` line says what and why, and the stage's exit code is 1.
    pub fn run_here(&self, out: &mut dyn Write) -> i32 {
        for op in &self.ops {
            if let Err(message) = run_op(op, out) {
                let line = format!("{}ERROR: {message}{}\n", ansi::BOLD_RED, ansi::RESET);
                let _ = out.write_all(line.as_bytes());
                return 1;
            }
        }
        0
    }
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

fn run_op(op: &Op, out: &mut dyn Write) -> Result<(), String> {
    let print = |out: &mut dyn Write, text: String| {
        // The job log is best effort, as a script's output is.
        let _ = out.write_all(text.as_bytes());
    };
    match op {
        Op::RunningOn => {
            let host = host_name().unwrap_or_else(|| "localhost".to_owned());
            print(out, format!("Running on {host}...\n"));
        }
        Op::Notice(text) => print(out, format!("{}{text}{}\n", ansi::BOLD_GREEN, ansi::RESET)),
        Op::MakeDir(dir) => {
            if !Path::new(dir).is_dir() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .create(dir)
                    .map_err(|e| format!("cannot create directory {dir}: {e}"))?;
            }
        }
        Op::RemoveFiles(paths) => {
            for p in paths {
                match fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("cannot remove {p}: {e}")),
                }
            }
        }
        Op::RemoveTree(path) => {
            remove_tree(Path::new(path)).map_err(|e| format!("cannot remove {path}: {e}"))?
        }
        Op::RemoveMatching { dir, names } => {
            let dir = Path::new(dir);
            if dir.is_dir() {
                remove_matching(dir, names)
                    .map_err(|e| format!("cannot clean up {}: {e}", dir.display()))?;
            }
        }
        Op::WriteFile { path, content } => {
            fs::write(path, content).map_err(|e| format!("cannot write {path}: {e}"))?
        }
        Op::AppendFile { path, content } => fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .map_err(|e| format!("cannot write {path}: {e}"))?,
        Op::ReplaceWithCopy { from, to } => replace_with_copy(Path::new(from), Path::new(to))
            .map_err(|e| format!("cannot copy {from} to {to}: {e}"))?,
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
                Op::Notice("Starting".into()),
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

    #[test]
    fn carried_out_here_they_leave_what_the_script_leaves_and_print_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let (scripted, native) = (tmp.path().join("scripted"), tmp.path().join("native"));
        fixture(&scripted);
        fixture(&native);

        let mut w = BashWriter::default();
        ops(&scripted).write(&mut w);
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-c", &w.finish()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let mut printed = Vec::new();
        assert_eq!(ops(&native).run_here(&mut printed), 0);
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

    #[test]
    fn a_copy_over_an_earlier_one_ends_as_a_fresh_copy_and_keeps_what_matched() {
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
        let mut sink = Vec::new();
        assert_eq!(copy(&reused).run_here(&mut sink), 0);
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

        let mut sink = Vec::new();
        assert_eq!(
            copy(&reused).run_here(&mut sink),
            0,
            "{}",
            String::from_utf8_lossy(&sink)
        );
        let mut w = BashWriter::default();
        copy(&fresh).write(&mut w);
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-c", &w.finish()])
            .output()
            .unwrap();
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
        assert_eq!(copy(&file_there).run_here(&mut sink), 0);
        assert_eq!(listing(&file_there), listing(&fresh));
    }

    #[test]
    fn the_host_line_and_a_failing_step() {
        let mut printed = Vec::new();
        let ops = StageOps {
            ops: vec![Op::RunningOn],
        };
        assert!(ops.can_run_here());
        assert_eq!(ops.run_here(&mut printed), 0);
        let mut w = BashWriter::default();
        ops.write(&mut w);
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-c", &w.finish()])
            .output()
            .unwrap();
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
                Op::Notice("never".into()),
            ],
        };
        let mut printed = Vec::new();
        assert_eq!(failing.run_here(&mut printed), 1);
        let text = String::from_utf8(printed).unwrap();
        assert!(
            text.contains("ERROR: cannot copy") && !text.contains("never"),
            "{text}"
        );
    }
}
