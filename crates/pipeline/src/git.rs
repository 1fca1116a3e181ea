//! Facts about the local checkout that GitLab would know about a pushed commit: HEAD's sha and message,
//! the branch or tag, the project path from the remote URL, read by running `git`. A directory that is
//! not a repository (or a machine without git) gets fallbacks and a note saying why.

use glrunner_protocol::RefType;
use std::path::Path;
use std::process::Command;

/// The sha GitLab uses when there is no commit.
pub const NULL_SHA: &str = "0000000000000000000000000000000000000000";

/// What `git` says about the project directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitFacts {
    /// Whether the directory is inside a git work tree with at least one commit.
    pub repository: bool,
    /// HEAD's commit ([`NULL_SHA`] without one).
    pub sha: String,
    /// HEAD's first parent ([`NULL_SHA`] for a root commit), standing in for the sha before the push.
    pub before_sha: String,
    /// The checked-out branch, if HEAD is on one.
    pub branch: Option<String>,
    /// A tag pointing at HEAD, used when HEAD is detached.
    pub tag: Option<String>,
    /// `sha1` or `sha256`.
    pub object_format: String,
    pub commit_message: String,
    /// Committer date, ISO 8601 (`2025-06-01T10:00:04+02:00`).
    pub commit_timestamp: String,
    /// `Name <email>` of the author.
    pub commit_author: String,
    /// The remote's default branch (`origin/HEAD`), else the current branch, else `main`.
    pub default_branch: String,
    /// Server and project path read from the remote URL, without any credentials in it.
    pub remote: Option<RemoteProject>,
    /// `git config user.name` / `user.email`.
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    /// Why some facts are fallbacks (not a repository, no commits, git missing, …).
    pub note: Option<String>,
}

/// A GitLab project as named by a remote URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteProject {
    /// `https://gitlab.example.com` (port kept for http(s) remotes).
    pub server_url: String,
    /// `group/subgroup/project`.
    pub path: String,
}

impl GitFacts {
    /// Facts for a directory git knows nothing about.
    pub fn fallback(note: impl Into<String>) -> Self {
        Self {
            repository: false,
            sha: NULL_SHA.to_owned(),
            before_sha: NULL_SHA.to_owned(),
            branch: None,
            tag: None,
            object_format: "sha1".to_owned(),
            commit_message: String::new(),
            commit_timestamp: String::new(),
            commit_author: String::new(),
            default_branch: "main".to_owned(),
            remote: None,
            user_name: None,
            user_email: None,
            note: Some(note.into()),
        }
    }

    /// Run `git` in `dir` and collect what it says. Never fails: missing facts get fallbacks. A usual
    /// checkout takes four git calls; unusual ones (no commit yet, remotes without a URL) ask step by
    /// step.
    pub fn discover(dir: &Path) -> Self {
        let git = Git { dir };
        // Where we are, the object format and the branch at once; HEAD without a commit fails this.
        let branch = match git.run(&[
            "rev-parse",
            "--is-inside-work-tree",
            "--show-object-format",
            "--symbolic-full-name",
            "HEAD",
        ]) {
            Ok(out) => {
                let mut lines = out.lines();
                if lines.next() != Some("true") {
                    return Self::fallback(
                        "the directory is inside a git directory but not a work tree",
                    );
                }
                let format = lines.next().unwrap_or_default().to_owned();
                let head = lines.next().unwrap_or_default();
                let branch = head.strip_prefix("refs/heads/").map(str::to_owned);
                Some((format, branch))
            }
            Err(_) => None,
        };
        let mut facts = Self::fallback("");
        facts.note = None;
        match branch {
            Some((format, branch)) => {
                if !format.is_empty() {
                    facts.object_format = format;
                }
                facts.branch = branch;
            }
            None => {
                match git.run(&["rev-parse", "--is-inside-work-tree"]) {
                    Ok(out) if out == "true" => {}
                    Ok(_) => {
                        return Self::fallback(
                            "the directory is inside a git directory but not a work tree",
                        );
                    }
                    Err(why) => return Self::fallback(format!("not a git repository ({why})")),
                }
                if let Ok(format) = git.run(&["rev-parse", "--show-object-format"]) {
                    facts.object_format = format;
                }
                facts.branch = git.run(&["symbolic-ref", "-q", "--short", "HEAD"]).ok();
            }
        }
        // The config, HEAD's commit and origin's default branch do not depend on each other: ask git
        // at once (a tag at HEAD too when no branch is checked out).
        let detached = facts.branch.is_none();
        let (config, log, origin_head, tag) = std::thread::scope(|s| {
            let log = s.spawn(|| git.run(&["log", "-1", "--format=%H%n%P%n%cI%n%an <%ae>%n%B"]));
            let origin_head =
                s.spawn(|| git.run(&["symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD"]));
            let tag = detached.then(|| s.spawn(|| git.run(&["tag", "--points-at", "HEAD"])));
            let config = Config::read(&git);
            let join = |h: std::thread::ScopedJoinHandle<'_, Result<String, String>>| {
                h.join()
                    .unwrap_or_else(|_| Err("git could not be asked".to_owned()))
            };
            (config, join(log), join(origin_head), tag.map(join))
        });
        facts.user_name = config.last("user.name");
        facts.user_email = config.last("user.email");
        match log {
            Ok(log) => {
                let mut lines = log.splitn(5, '\n');
                let mut next = || lines.next().unwrap_or_default().to_owned();
                facts.sha = next();
                facts.before_sha = next()
                    .split_whitespace()
                    .next()
                    .unwrap_or(NULL_SHA)
                    .to_owned();
                facts.commit_timestamp = next();
                facts.commit_author = next();
                facts.commit_message = next();
                facts.repository = true;
            }
            Err(why) => facts.note = Some(format!("the repository has no commit yet ({why})")),
        }
        if facts.branch.is_none() && facts.repository {
            facts.tag = tag
                .and_then(Result::ok)
                .and_then(|tags| tags.lines().next().map(str::to_owned));
        }
        let remote = config.remote().or_else(|| {
            // A remote without a URL in the config (an old `.git/remotes` file): ask git.
            let names = git.run(&["remote"]).ok()?;
            let names: Vec<&str> = names.lines().collect();
            let name = names
                .iter()
                .find(|n| **n == "origin")
                .or(names.first())?
                .to_string();
            Some((name, None))
        });
        if let Some((name, url)) = &remote {
            // `insteadOf` rewrites are git's to apply.
            let url = match url {
                Some(url) if !config.rewrites_urls() => Some(url.clone()),
                _ => git.run(&["remote", "get-url", name]).ok(),
            };
            facts.remote = url.and_then(|url| RemoteProject::from_url(&url));
            let head = format!("refs/remotes/{name}/HEAD");
            let default = match name.as_str() {
                "origin" => origin_head,
                _ => git.run(&["symbolic-ref", "-q", "--short", &head]),
            };
            if let Ok(default) = default {
                let prefix = format!("{name}/");
                facts.default_branch = default.strip_prefix(&prefix).unwrap_or(&default).to_owned();
            } else if let Some(branch) = &facts.branch {
                facts.default_branch = branch.clone();
            }
        } else if let Some(branch) = &facts.branch {
            facts.default_branch = branch.clone();
        }
        facts
    }

    /// The ref a pipeline for HEAD runs on: the branch, else a tag at HEAD, else `HEAD`.
    pub fn ref_name(&self) -> &str {
        self.branch
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("HEAD")
    }

    pub fn ref_type(&self) -> RefType {
        if self.branch.is_none() && self.tag.is_some() {
            RefType::Tag
        } else {
            RefType::Branch
        }
    }
}

impl RemoteProject {
    /// Read a remote URL: `https://host/group/project.git`, `ssh://git@host:22/group/project.git` or
    /// `git@host:group/project.git`. Credentials in the URL are dropped. Local paths give `None`.
    pub fn from_url(remote: &str) -> Option<Self> {
        let remote = remote.trim();
        let (server_url, path) = if remote.contains("://") {
            let url = url::Url::parse(remote).ok()?;
            let host = url.host_str()?;
            let server_url = match url.scheme() {
                "http" | "https" => match url.port() {
                    Some(port) => format!("{}://{host}:{port}", url.scheme()),
                    None => format!("{}://{host}", url.scheme()),
                },
                // The web server of an ssh or git remote is (almost always) https on the same host.
                "ssh" | "git" | "git+ssh" => format!("https://{host}"),
                _ => return None,
            };
            (server_url, url.path().to_owned())
        } else {
            // scp-like `[user@]host:path`; a `/` before the `:` means a local path.
            let (host, path) = remote.split_once(':')?;
            if host.contains('/') || path.starts_with("//") {
                return None;
            }
            let host = host.rsplit('@').next()?;
            if host.is_empty() {
                return None;
            }
            (format!("https://{host}"), path.to_owned())
        };
        let path = path.trim_matches('/');
        let path = path
            .strip_suffix(".git")
            .unwrap_or(path)
            .trim_end_matches('/');
        // A GitLab project always lives in a namespace.
        if !path.contains('/') {
            return None;
        }
        Some(Self {
            server_url,
            path: path.to_owned(),
        })
    }
}

pub(crate) struct Git<'a> {
    pub(crate) dir: &'a Path,
}

/// The config entries discovery needs, read with one git call: user name and email, remote URLs
/// and URL rewrites, in git's order.
struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    fn read(git: &Git<'_>) -> Self {
        let out = git
            .run(&[
                "config",
                "-z",
                "--get-regexp",
                r"^(user\.name|user\.email|remote\..*\.url|url\..*\.insteadof)$",
            ])
            .unwrap_or_default();
        let entries = out
            .split('\0')
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (key, value) = e.split_once('\n').unwrap_or((e, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect();
        Self { entries }
    }

    /// The last value of `key`, as `git config <key>` gives it.
    fn last(&self, key: &str) -> Option<String> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// `origin`, else the first remote with a URL, and its first URL.
    fn remote(&self) -> Option<(String, Option<String>)> {
        let urls: Vec<(&str, &str)> = self
            .entries
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("remote.")?.strip_suffix(".url")?;
                Some((name, v.as_str()))
            })
            .collect();
        let (name, url) = urls.iter().find(|(n, _)| *n == "origin").or(urls.first())?;
        Some(((*name).to_owned(), Some((*url).to_owned())))
    }

    /// Whether `url.<base>.insteadOf` may change what a remote's URL resolves to.
    fn rewrites_urls(&self) -> bool {
        self.entries
            .iter()
            .any(|(k, _)| k.starts_with("url.") && k.ends_with(".insteadof"))
    }
}

impl Git<'_> {
    /// Run `git -C dir args…` and return trimmed stdout, or why it failed.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(self.dir)
            .args(args)
            // An inherited GIT_DIR (e.g. from a hook) would make git describe another repository.
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr.lines().next().unwrap_or("").trim();
            Err(if first.is_empty() {
                format!("git {} exited with {}", args.join(" "), output.status)
            } else {
                first.to_owned()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(url: &str) -> Option<(String, String)> {
        RemoteProject::from_url(url).map(|r| (r.server_url, r.path))
    }

    #[test]
    fn reads_project_from_remote_urls() {
        let expect = |s: &str, p: &str| Some((s.to_owned(), p.to_owned()));
        assert_eq!(
            remote("https://gitlab.com/acme/tools/demo.git"),
            expect("https://gitlab.com", "acme/tools/demo")
        );
        assert_eq!(
            remote("https://user:s3cret@gitlab.example.com:8443/acme/demo"),
            expect("https://gitlab.example.com:8443", "acme/demo")
        );
        assert_eq!(
            remote("git@gitlab.com:acme/demo.git"),
            expect("https://gitlab.com", "acme/demo")
        );
        assert_eq!(
            remote("ssh://git@gitlab.example.com:2222/acme/demo.git"),
            expect("https://gitlab.example.com", "acme/demo")
        );
        assert_eq!(remote("/srv/git/demo.git"), None);
        assert_eq!(remote("../demo"), None);
        assert_eq!(remote("file:///srv/git/acme/demo.git"), None);
        assert_eq!(remote("https://gitlab.com/demo.git"), None);
    }

    #[test]
    fn credentials_never_survive() {
        let r = RemoteProject::from_url("https://oauth2:glpat-abcdef@gitlab.com/acme/demo.git")
            .unwrap();
        assert!(!format!("{r:?}").contains("glpat"));
    }
}
