//! `cache:` of a job (or `default:`/top level): one cache or a list of up to four, and the payload
//! entries GitLab builds from them. Keys are computed as GitLab computes them for the commit:
//! - a plain `key` is sent as written (the runner expands variables in it);
//! - `key: {files: […]}` is `<prefix>-<sha1>` where the SHA-1 covers the git blob ids of the listed
//!   files (wildcards allowed), and `key: {files_commits: […]}` covers the id of the last commit that
//!   changed each file; with no file found the digest part is `default`. The prefix defaults to the
//!   cache's index in the list (`0`, `1`, …), as in GitLab.
//! - GitLab keeps caches of protected and unprotected refs apart by suffixing every key and fallback
//!   key with `-protected` or `-non_protected`; a local ref is never protected, so `-non_protected`.
//!
//! Locally the blob ids are those of the files in the working tree (`git hash-object`), so an edited
//! lock file changes the key before it is committed.

use crate::document::{Node, Value};
use crate::error::PipelineError;
use crate::git::Git;
use crate::glob::Glob;
use crate::reader::Reader;
use crate::worktree::Worktree;
use glrunner_protocol::{Cache, When};
use sha1::{Digest, Sha1};
use std::path::Path;

/// GitLab's limit on caches per job.
pub const MAX_CACHES: usize = 4;

/// GitLab's limit on `fallback_keys`.
pub const MAX_FALLBACK_KEYS: usize = 5;

/// GitLab's limit on `key:files`.
pub const MAX_KEY_FILES: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKey {
    Literal(String),
    Files {
        files: Vec<String>,
        prefix: Option<String>,
    },
    FilesCommits {
        files: Vec<String>,
        prefix: Option<String>,
    },
}

/// One cache as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub key: CacheKey,
    pub paths: Vec<String>,
    /// `pull-push`, `pull`, `push`, or a `$VARIABLE` the runner expands.
    pub policy: String,
    pub when: When,
    pub untracked: bool,
    pub fallback_keys: Vec<String>,
}

/// Read `cache:` (a mapping or a list of them); `owner` names it in errors.
pub fn read(
    reader: &Reader<'_>,
    node: &Node,
    owner: &str,
) -> Result<Vec<CacheSpec>, PipelineError> {
    let what = format!("`cache` of {owner}");
    match &node.value {
        Value::Seq(items) => {
            if items.len() > MAX_CACHES {
                return Err(reader.invalid(
                    node,
                    format!(
                        "{what} lists {} caches; GitLab allows at most {MAX_CACHES}",
                        items.len()
                    ),
                    "merge caches that share a key",
                ));
            }
            items
                .iter()
                .map(|item| read_one(reader, item, &what))
                .collect()
        }
        _ => Ok(vec![read_one(reader, node, &what)?]),
    }
}

fn read_one(reader: &Reader<'_>, node: &Node, what: &str) -> Result<CacheSpec, PipelineError> {
    let map = reader.mapping(node, what, "`cache: {key: deps, paths: [node_modules/]}`")?;
    reader.known_keys(
        map,
        &[
            "key",
            "paths",
            "policy",
            "when",
            "untracked",
            "unprotect",
            "fallback_keys",
        ],
        what,
    )?;
    let mut spec = CacheSpec {
        key: CacheKey::Literal("default".into()),
        paths: Vec::new(),
        policy: "pull-push".into(),
        when: When::OnSuccess,
        untracked: false,
        fallback_keys: Vec::new(),
    };
    for entry in map.iter() {
        let value = &entry.value;
        let label = format!("`cache:{}` of {what}", entry.key);
        match entry.key.as_str() {
            "key" => spec.key = key(reader, value, &label)?,
            "paths" => {
                spec.paths = reader.string_list(value, &label, "`paths: [node_modules/]`")?
            }
            "policy" => {
                let policy = reader.string(value, &label, "`policy: pull`")?;
                if !matches!(policy.as_str(), "pull-push" | "pull" | "push")
                    && !policy.starts_with('$')
                {
                    return Err(reader.invalid(
                        value,
                        format!("{label} is `{policy}`"),
                        "write pull-push, pull, push or a $VARIABLE",
                    ));
                }
                spec.policy = policy;
            }
            "when" => spec.when = reader.transfer_when(value, &label)?,
            "untracked" => spec.untracked = reader.boolean(value, &label)?,
            "unprotect" => {
                reader.boolean(value, &label)?;
            }
            "fallback_keys" => {
                spec.fallback_keys =
                    reader.string_list(value, &label, "`fallback_keys: [main-deps]`")?;
                if spec.fallback_keys.len() > MAX_FALLBACK_KEYS {
                    return Err(reader.invalid(
                        value,
                        format!("{label} has too many entries (maximum {MAX_FALLBACK_KEYS})"),
                        "keep the five most useful fallback keys",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(spec)
}

fn key(reader: &Reader<'_>, node: &Node, what: &str) -> Result<CacheKey, PipelineError> {
    let Value::Map(map) = &node.value else {
        let key = reader.string(node, what, "`key: deps-$CI_COMMIT_REF_SLUG`")?;
        let decoded = key
            .replace("%2F", "/")
            .replace("%2f", "/")
            .replace("%2E", ".")
            .replace("%2e", ".");
        if decoded.contains('/') || decoded == "." || decoded == ".." {
            return Err(reader.invalid(
                node,
                format!("{what} is `{key}`; a cache key cannot contain `/` or be `.` or `..`"),
                "use `-` instead of `/`, e.g. `key: deps-$CI_COMMIT_REF_SLUG`",
            ));
        }
        return Ok(CacheKey::Literal(key));
    };
    reader.known_keys(map, &["files", "files_commits", "prefix"], what)?;
    let prefix = map
        .get("prefix")
        .map(|n| reader.string(n, &format!("`prefix` of {what}"), "`prefix: $CI_JOB_NAME`"))
        .transpose()?;
    let files = |key: &str| -> Result<Option<Vec<String>>, PipelineError> {
        let Some(n) = map.get(key) else {
            return Ok(None);
        };
        let files =
            reader.string_list(n, &format!("`{key}` of {what}"), "`files: [Gemfile.lock]`")?;
        if files.is_empty() || files.len() > MAX_KEY_FILES {
            return Err(reader.invalid(
                n,
                format!("`{key}` of {what} must list one or two files"),
                "write `files: [Gemfile.lock]`",
            ));
        }
        Ok(Some(files))
    };
    match (files("files")?, files("files_commits")?) {
        (Some(files), None) => Ok(CacheKey::Files { files, prefix }),
        (None, Some(files)) => Ok(CacheKey::FilesCommits { files, prefix }),
        _ => Err(reader.invalid(
            node,
            format!("{what} needs exactly one of `files` and `files_commits`"),
            "write `key: {files: [Gemfile.lock]}`",
        )),
    }
}

/// What the cache key computation reads: the project's files and git.
pub struct KeyFacts<'a> {
    pub project_dir: &'a Path,
    pub repository: bool,
    pub worktree: &'a dyn Fn() -> Worktree,
}

/// The payload's `cache` entries.
pub fn payload(specs: &[CacheSpec], facts: &KeyFacts<'_>) -> Vec<Cache> {
    let suffix = |key: &str| format!("{key}-non_protected");
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| Cache {
            key: suffix(&key_string(&spec.key, index, facts)),
            untracked: spec.untracked,
            policy: spec.policy.clone(),
            paths: spec.paths.clone(),
            when: spec.when,
            fallback_keys: spec.fallback_keys.iter().map(|k| suffix(k)).collect(),
        })
        .collect()
}

fn key_string(key: &CacheKey, index: usize, facts: &KeyFacts<'_>) -> String {
    let (prefix, digest) = match key {
        CacheKey::Literal(key) => return key.clone(),
        CacheKey::Files { files, prefix } => (prefix, files_digest(files, facts)),
        CacheKey::FilesCommits { files, prefix } => (prefix, commits_digest(files, facts)),
    };
    let prefix = prefix.clone().unwrap_or_else(|| index.to_string());
    let digest = digest.unwrap_or_else(|| "default".to_owned());
    [prefix, digest]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// SHA-1 of the sorted, distinct ids joined with `-`, as GitLab digests them.
fn digest(mut ids: Vec<String>) -> Option<String> {
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return None;
    }
    Some(hex::encode(Sha1::digest(ids.join("-").as_bytes())))
}

fn expand_files(files: &[String], facts: &KeyFacts<'_>) -> Vec<String> {
    let mut tree: Option<Worktree> = None;
    let mut out = Vec::new();
    for pattern in files.iter().filter(|f| !f.is_empty()) {
        if pattern.contains('*') {
            let tree = tree.get_or_insert_with(|| (facts.worktree)());
            if let Ok(glob) = Glob::wildcard_path(pattern) {
                out.extend(tree.files().iter().filter(|f| glob.is_match(f)).cloned());
            }
        } else {
            out.push(pattern.clone());
        }
    }
    out.dedup();
    out
}

fn files_digest(files: &[String], facts: &KeyFacts<'_>) -> Option<String> {
    let paths: Vec<String> = expand_files(files, facts)
        .into_iter()
        .filter(|p| facts.project_dir.join(p).is_file())
        .collect();
    if paths.is_empty() {
        return None;
    }
    let ids = if facts.repository {
        let git = Git {
            dir: facts.project_dir,
        };
        git.run(
            &[
                &["hash-object", "--"][..],
                &paths.iter().map(String::as_str).collect::<Vec<_>>(),
            ]
            .concat(),
        )
        .ok()
        .map(|out| out.lines().map(str::to_owned).collect())
        .unwrap_or_default()
    } else {
        paths
            .iter()
            .filter_map(|p| std::fs::read(facts.project_dir.join(p)).ok())
            .map(|content| blob_id(&content))
            .collect()
    };
    digest(ids)
}

fn commits_digest(files: &[String], facts: &KeyFacts<'_>) -> Option<String> {
    if !facts.repository {
        return None;
    }
    let git = Git {
        dir: facts.project_dir,
    };
    let ids = expand_files(files, facts)
        .iter()
        .filter_map(|path| {
            git.run(&["log", "-1", "--format=%H", "HEAD", "--", path])
                .ok()
        })
        .filter(|id| !id.is_empty())
        .collect();
    digest(ids)
}

/// The git (SHA-1) blob id of `content`.
fn blob_id(content: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn digest_sorts_and_dedups() {
        assert_eq!(
            digest(vec!["b".into(), "a".into(), "b".into()]),
            digest(vec!["a".into(), "b".into()])
        );
        assert_eq!(digest(Vec::new()), None);
    }
}
