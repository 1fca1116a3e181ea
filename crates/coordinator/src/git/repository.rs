//! Served projects: the bare repository of each one under the coordinator's temporary directory, and
//! the ways a test fills it (a directory's files, commit builder calls, branches and tags, a push from
//! a local repository, submodules that point at another project). All of it runs real `git`.

use crate::error::ProjectError;
use crate::git::command::Git;
use crate::job::RefKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// A project to create with [`crate::Coordinator::add_project`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectSpec {
    /// `group/project` (subgroups allowed); served at `<coordinator>/<path>.git`.
    pub path: String,
    /// The branch `HEAD` names (`CI_DEFAULT_BRANCH`).
    pub default_branch: String,
    /// A directory whose files become the first commit on the default branch (a working tree's
    /// `.gitignore` applies; its `.git` is skipped). `None` leaves the repository empty.
    pub dir: Option<PathBuf>,
    /// Message of that first commit.
    pub message: String,
    /// Other projects whose job tokens may fetch this one (GitLab's CI/CD job token allowlist). A
    /// project's own jobs always may.
    pub job_token_allowlist: Vec<String>,
}

impl Default for ProjectSpec {
    fn default() -> Self {
        Self {
            path: "acme/demo".to_owned(),
            default_branch: "main".to_owned(),
            dir: None,
            message: "Initial commit".to_owned(),
            job_token_allowlist: Vec::new(),
        }
    }
}

impl ProjectSpec {
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Commit this directory's files as the first commit.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn default_branch(mut self, branch: impl Into<String>) -> Self {
        self.default_branch = branch.into();
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Let jobs of the project at `path` fetch this one with their job token.
    pub fn allow_job_tokens_from(mut self, path: impl Into<String>) -> Self {
        self.job_token_allowlist.push(path.into());
        self
    }
}

/// Check a project path the way GitLab's path rules would accept it.
pub(crate) fn validate_path(path: &str) -> Result<(), ProjectError> {
    let invalid = |why| {
        Err(ProjectError::InvalidPath {
            path: path.to_owned(),
            why,
        })
    };
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 2 {
        return invalid("a project lives in a group");
    }
    if parts.len() > 21 {
        return invalid("groups nest at most 20 deep");
    }
    for part in parts {
        if part.is_empty() {
            return invalid("empty part");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return invalid("only letters, digits, `.`, `_` and `-` are allowed");
        }
        if !part
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return invalid("each part starts with a letter, digit or `_`");
        }
        if part.ends_with('.') || part.ends_with(".git") || part.ends_with(".atom") {
            return invalid("a part may not end in `.`, `.git` or `.atom`");
        }
    }
    Ok(())
}

/// A project served by a coordinator. Cheap to clone; every method runs `git` on the bare repository.
#[derive(Clone)]
pub struct Project {
    inner: Arc<Inner>,
}

struct Inner {
    path: String,
    git_dir: PathBuf,
    url: String,
    default_branch: String,
}

impl fmt::Debug for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Project")
            .field("path", &self.inner.path)
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

/// What the payload shows of a commit (`CI_COMMIT_MESSAGE`, `CI_COMMIT_AUTHOR`, …).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CommitFacts {
    pub message: String,
    pub title: String,
    pub description: String,
    pub author: String,
    pub timestamp: String,
    pub default_branch: String,
}

impl Project {
    /// Create the bare repository `<root>/<path>.git` and fill it from `spec.dir`.
    pub(crate) fn create(
        root: &Path,
        base_url: &str,
        spec: &ProjectSpec,
    ) -> Result<Self, ProjectError> {
        validate_path(&spec.path)?;
        validate_ref_name(&spec.default_branch, "default branch")?;
        if let Some(dir) = &spec.dir {
            std::fs::read_dir(dir).map_err(|source| ProjectError::Directory {
                path: dir.clone(),
                source,
            })?;
        }
        let git_dir = root.join(format!("{}.git", spec.path));
        if let Some(parent) = git_dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ProjectError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        // create_dir fails if the path exists, which makes a second add of the same path an error.
        std::fs::create_dir(&git_dir).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => ProjectError::Exists(spec.path.clone()),
            _ => ProjectError::Io {
                path: git_dir.clone(),
                source,
            },
        })?;
        Git::bare_command()
            .arg("init")
            .arg("--quiet")
            .arg("--bare")
            .arg(format!("--initial-branch={}", spec.default_branch))
            .arg(&git_dir)
            .run()?;
        // As Gitaly: fetch by any sha (native clone by revision) and partial clone filters; no push
        // over HTTP.
        for (key, value) in [
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("uploadpack.allowFilter", "true"),
            ("http.receivepack", "false"),
            ("core.logAllRefUpdates", "false"),
        ] {
            Git::at(&git_dir).args(["config", key, value]).run()?;
        }
        let project = Self {
            inner: Arc::new(Inner {
                path: spec.path.clone(),
                url: format!("{}/{}.git", base_url.trim_end_matches('/'), spec.path),
                git_dir,
                default_branch: spec.default_branch.clone(),
            }),
        };
        if let Some(dir) = &spec.dir {
            project.import_dir(&spec.default_branch, dir, &spec.message)?;
        }
        Ok(project)
    }

    /// `group/project`.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The clone URL without credentials: `http://127.0.0.1:<port>/<path>.git`.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The clone URL with a job token, as `git_info.repo_url` carries it.
    pub fn url_with_job_token(&self, token: &str) -> String {
        crate::payload::with_credentials(&self.inner.url, token)
    }

    /// The bare repository on disk (removed when the coordinator is dropped).
    pub fn git_dir(&self) -> &Path {
        &self.inner.git_dir
    }

    pub fn default_branch(&self) -> &str {
        &self.inner.default_branch
    }

    fn git(&self) -> Git {
        Git::at(&self.inner.git_dir)
    }

    /// Start a commit on `branch` (created if missing), on top of its current tip.
    pub fn commit(&self, branch: impl Into<String>) -> CommitBuilder<'_> {
        CommitBuilder {
            project: self,
            branch: branch.into(),
            parent: None,
            orphan: false,
            changes: Vec::new(),
            message: "Update files".to_owned(),
            author: None,
        }
    }

    /// Commit exactly the files of `dir` (its `.gitignore` applies) as the new tree of `branch`.
    /// Returns the new commit's sha.
    pub fn import_dir(
        &self,
        branch: &str,
        dir: &Path,
        message: &str,
    ) -> Result<String, ProjectError> {
        validate_ref_name(branch, "branch")?;
        std::fs::read_dir(dir).map_err(|source| ProjectError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let scratch = scratch()?;
        let index = scratch.path().join("index");
        let mut work_tree = std::ffi::OsString::from("--work-tree=");
        work_tree.push(dir);
        self.git()
            .arg(work_tree)
            .args(["add", "--all", "."])
            .cwd(dir)
            .env("GIT_INDEX_FILE", &index)
            .run()?;
        let tree = self
            .git()
            .arg("write-tree")
            .env("GIT_INDEX_FILE", &index)
            .text()?;
        let old = self.tip(branch)?;
        let sha = self.commit_tree(&tree, old.as_deref(), message, None)?;
        self.move_branch(branch, &sha, old.as_deref())?;
        Ok(sha)
    }

    /// Create or move branch `name` to `target` (a sha, branch or tag). Returns the commit's sha.
    pub fn branch(&self, name: &str, target: &str) -> Result<String, ProjectError> {
        validate_ref_name(name, "branch")?;
        let sha = self.rev_parse(target)?;
        self.set_ref(&format!("refs/heads/{name}"), &sha)?;
        Ok(sha)
    }

    /// Create or move the lightweight tag `name` to `target`. Returns the commit's sha.
    pub fn tag(&self, name: &str, target: &str) -> Result<String, ProjectError> {
        validate_ref_name(name, "tag")?;
        let sha = self.rev_parse(target)?;
        self.set_ref(&format!("refs/tags/{name}"), &sha)?;
        Ok(sha)
    }

    /// Create the annotated tag `name` on `target`. Returns the tagged commit's sha.
    pub fn annotated_tag(
        &self,
        name: &str,
        target: &str,
        message: &str,
    ) -> Result<String, ProjectError> {
        validate_ref_name(name, "tag")?;
        let sha = self.rev_parse(target)?;
        let object = format!(
            "object {sha}\ntype commit\ntag {name}\ntagger {} <{}> {} +0000\n\n{message}\n",
            crate::git::command::AUTHOR_NAME,
            crate::git::command::AUTHOR_EMAIL,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        let tag = self
            .git()
            .args(["mktag"])
            .input(object.into_bytes())
            .text()?;
        self.set_ref(&format!("refs/tags/{name}"), &tag)?;
        Ok(sha)
    }

    /// Push from a local repository into this project, e.g. `["main", "refs/tags/*:refs/tags/*"]`.
    pub fn push_from(&self, repo: &Path, refspecs: &[&str]) -> Result<(), ProjectError> {
        Git::bare_command()
            .cwd(repo)
            .args(["push", "--quiet", "--force"])
            .arg(self.git_dir())
            .args(refspecs.iter().copied())
            .run()?;
        Ok(())
    }

    /// The full sha of the commit `rev` names (a sha, possibly short, a branch, a tag or a ref).
    pub fn rev_parse(&self, rev: &str) -> Result<String, ProjectError> {
        if rev.starts_with('-') || rev.contains(['\n', '\0']) {
            return Err(self.unknown(rev));
        }
        self.git()
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{rev}^{{commit}}"))
            .probe()?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.unknown(rev))
    }

    /// Every ref and the object it points at, sorted by name.
    pub fn refs(&self) -> Result<BTreeMap<String, String>, ProjectError> {
        let out = self
            .git()
            .args(["for-each-ref", "--format=%(objectname) %(refname)"])
            .text()?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(sha, name)| (name.to_owned(), sha.to_owned()))
            .collect())
    }

    fn unknown(&self, rev: &str) -> ProjectError {
        ProjectError::UnknownRevision {
            project: self.inner.path.clone(),
            rev: rev.to_owned(),
        }
    }

    /// The current tip of a branch, if it exists.
    fn tip(&self, branch: &str) -> Result<Option<String>, ProjectError> {
        Ok(self
            .git()
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("refs/heads/{branch}"))
            .probe()?
            .filter(|s| !s.is_empty()))
    }

    pub(crate) fn set_ref(&self, name: &str, sha: &str) -> Result<(), ProjectError> {
        self.git().args(["update-ref", name, sha]).run()?;
        Ok(())
    }

    /// Move `branch` to `sha` only if it still points at `old` (or does not exist for `None`).
    fn move_branch(&self, branch: &str, sha: &str, old: Option<&str>) -> Result<(), ProjectError> {
        self.git()
            .arg("update-ref")
            .arg(format!("refs/heads/{branch}"))
            .arg(sha)
            .arg(old.unwrap_or(ZERO_SHA))
            .run()?;
        Ok(())
    }

    fn commit_tree(
        &self,
        tree: &str,
        parent: Option<&str>,
        message: &str,
        author: Option<&(String, String)>,
    ) -> Result<String, ProjectError> {
        let mut git = self.git().args(["commit-tree", tree]);
        if let Some(p) = parent {
            git = git.args(["-p", p]);
        }
        if let Some((name, email)) = author {
            git = git
                .env("GIT_AUTHOR_NAME", name)
                .env("GIT_AUTHOR_EMAIL", email);
        }
        let mut message = message.trim_end().to_owned();
        message.push('\n');
        git.args(["-F", "-"]).input(message.into_bytes()).text()
    }

    /// The commit a job builds: the tip of its branch or tag (or any `refs/…` ref), or the given sha.
    pub(crate) fn resolve_job_commit(
        &self,
        git_ref: &str,
        kind: RefKind,
        sha: &str,
    ) -> Result<String, ProjectError> {
        if !sha.is_empty() {
            return self.rev_parse(sha);
        }
        let full = match kind {
            _ if git_ref.starts_with("refs/") => git_ref.to_owned(),
            RefKind::Branch => format!("refs/heads/{git_ref}"),
            RefKind::Tag => format!("refs/tags/{git_ref}"),
        };
        self.rev_parse(&full).map_err(|_| self.unknown(&full))
    }

    /// Message, author and time of a commit, as the `CI_COMMIT_*` variables show them.
    pub(crate) fn commit_facts(&self, sha: &str) -> Result<CommitFacts, ProjectError> {
        let out = self
            .git()
            .args(["show", "-s", "--format=%an <%ae>%x00%cI%x00%B", sha])
            .run()?;
        let text = String::from_utf8_lossy(&out);
        let mut parts = text.splitn(3, '\0');
        let author = parts.next().unwrap_or_default().to_owned();
        let timestamp = parts.next().unwrap_or_default().to_owned();
        let body = parts.next().unwrap_or_default().trim_end();
        let (title, rest) = body.split_once('\n').unwrap_or((body, ""));
        Ok(CommitFacts {
            message: format!("{body}\n"),
            title: title.to_owned(),
            description: rest.trim().to_owned(),
            author,
            timestamp,
            default_branch: self.inner.default_branch.clone(),
        })
    }
}

/// A branch or tag name git accepts and that cannot be mistaken for an option.
fn validate_ref_name(name: &str, what: &'static str) -> Result<(), ProjectError> {
    let ok = !name.is_empty()
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ProjectError::InvalidPath {
            path: name.to_owned(),
            why: match what {
                "tag" => "not a valid tag name",
                "default branch" => "not a valid default branch name",
                _ => "not a valid branch name",
            },
        })
    }
}

/// A relative path inside the repository: no `..`, `.` or `.git` parts, nothing git's index-info
/// format could misread.
fn validate_file_path(path: &str) -> Result<(), ProjectError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains(['\n', '\0', '\t', '\\'])
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.eq_ignore_ascii_case(".git"));
    if ok {
        Ok(())
    } else {
        Err(ProjectError::InvalidFilePath(path.to_owned()))
    }
}

fn scratch() -> Result<tempfile::TempDir, ProjectError> {
    tempfile::Builder::new()
        .prefix("glrunner-git-")
        .tempdir()
        .map_err(|source| ProjectError::Io {
            path: std::env::temp_dir(),
            source,
        })
}

enum Change {
    Blob {
        path: String,
        mode: &'static str,
        data: Vec<u8>,
    },
    Remove(String),
    Submodule {
        path: String,
        url: String,
        sha: String,
    },
}

/// A commit being described; [`CommitBuilder::create`] writes it with `git hash-object`,
/// `update-index`, `write-tree`, `commit-tree` and `update-ref`.
#[must_use = "a commit is written only by create()"]
pub struct CommitBuilder<'a> {
    project: &'a Project,
    branch: String,
    parent: Option<String>,
    orphan: bool,
    changes: Vec<Change>,
    message: String,
    author: Option<(String, String)>,
}

impl CommitBuilder<'_> {
    /// Add or replace a regular file.
    pub fn file(self, path: impl Into<String>, contents: impl AsRef<[u8]>) -> Self {
        self.blob(path, "100644", contents.as_ref().to_vec())
    }

    /// Add or replace an executable file (mode 100755).
    pub fn executable(self, path: impl Into<String>, contents: impl AsRef<[u8]>) -> Self {
        self.blob(path, "100755", contents.as_ref().to_vec())
    }

    /// Add a symbolic link pointing at `target`.
    pub fn symlink(self, path: impl Into<String>, target: impl Into<String>) -> Self {
        self.blob(path, "120000", target.into().into_bytes())
    }

    fn blob(mut self, path: impl Into<String>, mode: &'static str, data: Vec<u8>) -> Self {
        self.changes.push(Change::Blob {
            path: path.into(),
            mode,
            data,
        });
        self
    }

    /// Remove a file or a whole directory.
    pub fn remove(mut self, path: impl Into<String>) -> Self {
        self.changes.push(Change::Remove(path.into()));
        self
    }

    /// Add a submodule at `path` pinned to `sha` of another served project, with that project's
    /// absolute URL in `.gitmodules` (clients need the job token for it, as on GitLab).
    pub fn submodule(self, path: impl Into<String>, project: &Project, sha: &str) -> Self {
        self.submodule_url(path, project.url(), sha)
    }

    /// Add a submodule with any URL in `.gitmodules`, e.g. a relative `../lib.git`.
    pub fn submodule_url(
        mut self,
        path: impl Into<String>,
        url: impl Into<String>,
        sha: &str,
    ) -> Self {
        self.changes.push(Change::Submodule {
            path: path.into(),
            url: url.into(),
            sha: sha.to_owned(),
        });
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn author(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.author = Some((name.into(), email.into()));
        self
    }

    /// Build on `rev` instead of the branch's tip (the branch still moves to the new commit).
    pub fn parent(mut self, rev: impl Into<String>) -> Self {
        self.parent = Some(rev.into());
        self
    }

    /// A commit without parents, starting from an empty tree.
    pub fn orphan(mut self) -> Self {
        self.orphan = true;
        self
    }

    /// Write the commit and move the branch to it. Returns the new commit's sha.
    pub fn create(self) -> Result<String, ProjectError> {
        let project = self.project;
        validate_ref_name(&self.branch, "branch")?;
        for change in &self.changes {
            match change {
                Change::Blob { path, .. } | Change::Remove(path) => validate_file_path(path)?,
                Change::Submodule { path, url, sha } => {
                    validate_file_path(path)?;
                    if url.contains(['\n', '\0']) || url.starts_with('-') {
                        return Err(ProjectError::InvalidFilePath(url.clone()));
                    }
                    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(ProjectError::UnknownRevision {
                            project: path.clone(),
                            rev: sha.clone(),
                        });
                    }
                }
            }
        }
        let old = project.tip(&self.branch)?;
        let parent = match (&self.parent, self.orphan) {
            (_, true) => None,
            (Some(rev), false) => Some(project.rev_parse(rev)?),
            (None, false) => old.clone(),
        };

        let scratch = scratch()?;
        let index = scratch.path().join("index");
        let empty_tree = scratch.path().join("work");
        std::fs::create_dir(&empty_tree).map_err(|source| ProjectError::Io {
            path: empty_tree.clone(),
            source,
        })?;
        let mut work_tree = std::ffi::OsString::from("--work-tree=");
        work_tree.push(&empty_tree);
        let git = || project.git().env("GIT_INDEX_FILE", &index);
        match &parent {
            Some(p) => git().args(["read-tree", p.as_str()]).run()?,
            None => git().args(["read-tree", "--empty"]).run()?,
        };

        let removed: Vec<&str> = self
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Remove(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        if !removed.is_empty() {
            git()
                .arg(&work_tree)
                .args(["rm", "-r", "-q", "--cached", "--ignore-unmatch", "--"])
                .args(removed)
                .run()?;
        }

        // Blobs: one hash-object for all files, written to scratch files first.
        let mut entries: Vec<(String, &'static str, Option<String>)> = Vec::new();
        let mut paths_input = String::new();
        let mut gitmodules: Option<Vec<u8>> = None;
        let mut modules: Vec<(&str, &str)> = Vec::new();
        for (i, change) in self.changes.iter().enumerate() {
            match change {
                Change::Blob { path, data, .. } if path == ".gitmodules" => {
                    gitmodules = Some(data.clone());
                }
                Change::Blob { path, mode, data } => {
                    let file = scratch.path().join(format!("blob-{i}"));
                    std::fs::write(&file, data).map_err(|source| ProjectError::Io {
                        path: file.clone(),
                        source,
                    })?;
                    paths_input.push_str(&file.to_string_lossy());
                    paths_input.push('\n');
                    entries.push((path.clone(), mode, None));
                }
                Change::Submodule { path, url, sha } => {
                    entries.push((path.clone(), "160000", Some(sha.clone())));
                    modules.push((path, url));
                }
                Change::Remove(_) => {}
            }
        }
        if !modules.is_empty() && gitmodules.is_none() {
            gitmodules = match &parent {
                Some(p) => project
                    .git()
                    .args(["cat-file", "blob", &format!("{p}:.gitmodules")])
                    .probe()?
                    .map(|s| format!("{s}\n").into_bytes()),
                None => None,
            };
            gitmodules.get_or_insert_with(Vec::new);
        }
        if let Some(content) = &gitmodules {
            let file = scratch.path().join("gitmodules");
            std::fs::write(&file, content).map_err(|source| ProjectError::Io {
                path: file.clone(),
                source,
            })?;
            for (path, url) in &modules {
                for (key, value) in [("path", *path), ("url", *url)] {
                    Git::bare_command()
                        .arg("config")
                        .arg("--file")
                        .arg(&file)
                        .arg(format!("submodule.{path}.{key}"))
                        .arg(value)
                        .run()?;
                }
            }
            paths_input.push_str(&file.to_string_lossy());
            paths_input.push('\n');
            entries.push((".gitmodules".to_owned(), "100644", None));
        }
        let hashed = if paths_input.is_empty() {
            String::new()
        } else {
            project
                .git()
                .args(["hash-object", "-w", "--no-filters", "--stdin-paths"])
                .input(paths_input.into_bytes())
                .text()?
        };
        let mut blobs = hashed.lines();
        let mut index_info = String::new();
        for (path, mode, sha) in &entries {
            let sha = match sha {
                Some(s) => s.clone(),
                None => blobs.next().unwrap_or_default().to_owned(),
            };
            index_info.push_str(&format!("{mode} {sha}\t{path}\n"));
        }
        if !index_info.is_empty() {
            git()
                .args(["update-index", "--add", "--replace", "--index-info"])
                .input(index_info.into_bytes())
                .run()?;
        }
        let tree = git().arg("write-tree").text()?;
        let sha = project.commit_tree(
            &tree,
            parent.as_deref(),
            &self.message,
            self.author.as_ref(),
        )?;
        project.move_branch(&self.branch, &sha, old.as_deref())?;
        Ok(sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_follow_gitlab_rules() {
        for ok in ["acme/demo", "a/b/c", "_x/y.z-1"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "demo",
            "acme/",
            "/acme/demo",
            "acme//demo",
            "acme/demo.git",
            "acme/../x",
            "acme/.x",
            "acme/de mo",
            "acme/-x",
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_and_ref_names_cannot_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "./a",
            ".git/config",
            "a/.GIT/x",
            "a\nb",
        ] {
            assert!(validate_file_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_file_path("src/main.rs").is_ok());
        for bad in ["", "-x", "a..b", "a b", "a:b", "x.lock", "a/", "@{1}x"] {
            assert!(validate_ref_name(bad, "branch").is_err(), "{bad:?}");
        }
        assert!(validate_ref_name("feature/x-1", "branch").is_ok());
    }
}
