//! Where `glrunner exec` keeps what a project's local pipelines need between jobs and runs, outside
//! the project: `$XDG_CACHE_HOME/glrunner/exec/<project>-<hash of its path>/` (`~/.cache/…` without
//! XDG_CACHE_HOME), or `--state-dir`:
//! - `source.git`: the snapshot jobs check out (see [`super::source`]), made anew each run;
//! - `checkout/`: the snapshot checked out once per run, which jobs copy instead of fetching;
//! - `builds/`: the jobs' checkouts, the shell executor's builds directory;
//! - `cache/`: `cache:` archives, kept across runs like a runner's local cache;
//! - `artifacts/<job id>/<type>/<file>`: the run's artifacts and reports, replaced by the next run.
//!
//! A `.gitignore` of `*` keeps git (and so snapshots and `untracked` artifacts) away from it even when
//! `--state-dir` points inside the project, and a lock file keeps two runs from sharing it.

use super::super::Failure;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

pub struct ExecState {
    root: PathBuf,
    /// Held (locked) for the whole run.
    _lock: File,
}

impl ExecState {
    /// Open (and lock) the state directory of `project_dir`, emptying the previous run's artifacts.
    pub fn open(project_dir: &Path, explicit: Option<&Path>) -> Result<Self, Failure> {
        let root = match explicit {
            Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
            None => default_root(project_dir),
        };
        let fail = |what: &str, path: &Path, e: std::io::Error| {
            Failure::other(format!(
                "glrunner exec cannot {what} {}: {e}\n  fix: make it writable, or pass --state-dir <writable dir>",
                path.display()
            ))
        };
        std::fs::create_dir_all(&root).map_err(|e| fail("create its state directory", &root, e))?;
        let ignore = root.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, "*\n").map_err(|e| fail("write", &ignore, e))?;
        }
        let lock_path = root.join("lock");
        let lock = File::create(&lock_path).map_err(|e| fail("create", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Failure::other(format!(
                    "another glrunner exec is running for this project (it holds {})\n  fix: wait for it to finish, or give this run its own --state-dir",
                    lock_path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(fail("lock", &lock_path, e)),
        }
        let state = Self { root, _lock: lock };
        let artifacts = state.artifacts();
        if artifacts.exists() {
            std::fs::remove_dir_all(&artifacts)
                .map_err(|e| fail("empty the artifacts directory", &artifacts, e))?;
        }
        std::fs::create_dir_all(&artifacts)
            .map_err(|e| fail("create the artifacts directory", &artifacts, e))?;
        Ok(state)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn source(&self) -> PathBuf {
        self.root.join("source.git")
    }

    /// The checkout made once per run that jobs copy (see `glrunner_job::checkout`).
    pub fn checkout(&self) -> PathBuf {
        self.root.join("checkout")
    }

    pub fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }
}

/// `$XDG_CACHE_HOME/glrunner/exec/<dir name>-<hash>` (see the module docs).
fn default_root(project_dir: &Path) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    let name: String = project_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let name = if name.is_empty() {
        "project".to_owned()
    } else {
        name
    };
    base.join("glrunner").join("exec").join(format!(
        "{name}-{:016x}",
        fnv1a(project_dir.as_os_str().as_encoded_bytes())
    ))
}

/// FNV-1a: a stable name for a path (not a security measure).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_state_directory_per_project_path_and_one_run_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let a = default_root(Path::new("/home/u/src/My App"));
        let b = default_root(Path::new("/home/u/other/My App"));
        assert_ne!(a, b, "same name, other path");
        assert!(
            a.to_string_lossy().contains("/glrunner/exec/My-App-"),
            "{}",
            a.display()
        );
        assert_eq!(a, default_root(Path::new("/home/u/src/My App")), "stable");

        let dir = tmp.path().join("state");
        let open = || ExecState::open(tmp.path(), Some(&dir)).map_err(|f| f.message);
        let first = open().unwrap();
        std::fs::write(first.artifacts().join("old"), "x").unwrap();
        let Err(message) = open() else {
            panic!("a second run must not share the state directory")
        };
        assert!(message.contains("another glrunner exec"), "{message}");
        drop(first);
        let third = open().unwrap();
        assert!(
            !third.artifacts().join("old").exists(),
            "each run starts without the last run's artifacts"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
            "*\n"
        );
    }
}
