//! The project's files as GitLab would see them in the pushed commit, for `rules:exists`, wildcard
//! `include: local` and `cache:key:files`. GitLab lists the commit's tree; locally the files that would
//! be committed are used instead: tracked files plus untracked ones git does not ignore (`git ls-files
//! --cached --others --exclude-standard`), so a file added but not committed yet already counts. A
//! directory that is not a git work tree is walked instead (`.git` skipped).

use crate::git::Git;
use std::collections::BTreeSet;
use std::path::Path;

/// Listing more files than this is refused, so a huge directory cannot stall a local run.
pub const MAX_FILES: usize = 500_000;

/// Relative paths with `/` separators, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Worktree {
    files: Vec<String>,
}

impl Worktree {
    /// List the files under `dir` (see the module docs).
    pub fn list(dir: &Path) -> Self {
        let files = git_files(dir).unwrap_or_else(|| walk(dir));
        Self { files }
    }

    pub fn files(&self) -> &[String] {
        &self.files
    }

    pub fn contains(&self, path: &str) -> bool {
        self.files
            .binary_search_by(|f| f.as_str().cmp(path))
            .is_ok()
    }
}

fn git_files(dir: &Path) -> Option<Vec<String>> {
    let listing = Git { dir }
        .run(&[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .ok()?;
    let set: BTreeSet<String> = listing
        .split('\0')
        .filter(|p| !p.is_empty())
        .take(MAX_FILES)
        .map(str::to_owned)
        .collect();
    Some(set.into_iter().collect())
}

fn walk(dir: &Path) -> Vec<String> {
    let mut files = BTreeSet::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            if files.len() >= MAX_FILES {
                return files.into_iter().collect();
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    if name != ".git" {
                        pending.push((entry.path(), relative));
                    }
                }
                Ok(_) => {
                    files.insert(relative);
                }
                Err(_) => {}
            }
        }
    }
    files.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_plain_directory_without_dot_git() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        std::fs::create_dir_all(tmp.path().join(".git")).unwrap();
        std::fs::write(tmp.path().join("a/b/c.txt"), "").unwrap();
        std::fs::write(tmp.path().join("top.md"), "").unwrap();
        std::fs::write(tmp.path().join(".git/config"), "").unwrap();
        let tree = Worktree {
            files: walk(tmp.path()),
        };
        assert_eq!(tree.files(), ["a/b/c.txt", "top.md"]);
        assert!(tree.contains("top.md") && !tree.contains("a/b"));
    }
}
