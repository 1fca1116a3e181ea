//! Helpers shared by the integration tests: building real file trees in temp dirs.
#![allow(dead_code)]

use glrunner_archive::{Selection, Spec, select};
use std::fs::{self, File, FileTimes, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A temp dir holding `project/` (the project directory) and room beside it for "outside" files.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub project: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let project = fs::canonicalize(tmp.path()).unwrap().join("project");
        fs::create_dir(&project).unwrap();
        Self { tmp, project }
    }

    pub fn outside(&self) -> PathBuf {
        fs::canonicalize(self.tmp.path()).unwrap()
    }

    /// Creates files (content = their path) and, for names ending in `/`, directories.
    pub fn with(self, names: &[&str]) -> Self {
        for name in names {
            write(&self.project, name);
        }
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.project.join(rel)
    }

    pub fn select(&self, spec: &Spec) -> Selection {
        select(&self.project, spec).unwrap()
    }

    pub fn select_paths(&self, paths: &[&str], exclude: &[&str]) -> Selection {
        self.select(&Spec {
            paths: paths.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            untracked: false,
        })
    }
}

pub fn write(root: &Path, name: &str) {
    let p = root.join(name);
    if name.ends_with('/') {
        fs::create_dir_all(&p).unwrap();
    } else {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, name.as_bytes()).unwrap();
    }
}

pub fn names(s: &Selection) -> Vec<&str> {
    s.paths().collect()
}

pub fn lines(s: &Selection) -> Vec<String> {
    s.messages().iter().map(ToString::to_string).collect()
}

pub fn warnings(s: &Selection) -> Vec<String> {
    s.warnings().map(ToString::to_string).collect()
}

pub fn set_mtime(path: &Path, secs: u64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    let f = File::options()
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .unwrap();
    f.set_times(FileTimes::new().set_modified(t)).unwrap();
}

pub fn mtime(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Whether a program can be run (`<prog> --version` or `-v`).
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cmd` and requires success; a failure shows the command and what it printed.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
