//! The sources local jobs check out: a snapshot of the project as git would commit it now (tracked files
//! with their uncommitted changes, and untracked files git does not ignore), in a bare repository of
//! exec's own that each job's get_sources stage fetches from, exactly as a job fetches from GitLab.
//!
//! Nothing of the user's checkout is written: git runs with its own index file (a copy of the user's,
//! so only changed files are hashed) and writes new objects into the snapshot repository, which reads
//! the user's objects through `objects/info/alternates`. A clean working tree gives HEAD itself; a
//! changed one a commit on top of HEAD. A project in a subdirectory of a repository (or a directory
//! that is no repository at all) gets a commit of just that directory, without parents.

use glrunner_pipeline::GitFacts;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a job's get_sources fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `file://` URL of the snapshot repository.
    pub url: String,
    /// The commit to check out.
    pub commit: String,
    /// The commit is not HEAD: it holds uncommitted changes, or only the project's subdirectory.
    pub differs_from_head: bool,
}

/// Why the snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "git could not be run ({0}). glrunner exec checks every job out from a snapshot of the project \
         made with git. Fix: install git (for example `apt-get install git`) and make sure it is on PATH"
    )]
    NoGit(std::io::Error),
    #[error(
        "taking a snapshot of the project for the jobs failed: `git {command}` said: {stderr}. Likely \
         cause: a file git cannot read, or no space left in {repo}. Fix: check the message, or pass \
         --state-dir with a writable directory"
    )]
    Git {
        command: String,
        stderr: String,
        repo: PathBuf,
    },
    #[error(
        "the snapshot repository {path} could not be prepared: {source}. Fix: make the directory \
         writable or pass --state-dir with a writable directory"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The author of snapshot commits; fixed, so the same tree gives the same commit on every run.
const AUTHOR: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "glrunner exec"),
    ("GIT_AUTHOR_EMAIL", "exec@glrunner.invalid"),
    ("GIT_COMMITTER_NAME", "glrunner exec"),
    ("GIT_COMMITTER_EMAIL", "exec@glrunner.invalid"),
];

/// Git as the user's repository sees it, or with exec's own index and objects.
struct Git<'a> {
    cwd: &'a Path,
    env: Vec<(&'static str, String)>,
    repo: &'a Path,
}

impl Git<'_> {
    /// Run git; its output trimmed.
    fn run<I, S>(&self, args: I) -> Result<String, SourceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_raw(args).map(|out| out.trim().to_owned())
    }

    /// Run git with `input` on its stdin.
    fn run_with_input<I, S>(&self, args: I, input: &str) -> Result<String, SourceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn(args, Some(input))
            .map(|out| out.trim().to_owned())
    }

    /// Run git; its output as it printed it.
    fn run_raw<I, S>(&self, args: I) -> Result<String, SourceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn(args, None)
    }

    fn spawn<I, S>(&self, args: I, input: Option<&str>) -> Result<String, SourceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut cmd = Command::new("git");
        cmd.current_dir(self.cwd).args(&args);
        // The user's environment must not redirect these commands to another repository.
        for var in glrunner_job::checkout::REPOSITORY_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = match input {
            None => cmd.output().map_err(SourceError::NoGit)?,
            Some(input) => {
                use std::io::Write;
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(SourceError::NoGit)?;
                if let Some(mut stdin) = child.stdin.take() {
                    // A write error shows as git's own failure below.
                    let _ = stdin.write_all(input.as_bytes());
                }
                child.wait_with_output().map_err(SourceError::NoGit)?
            }
        };
        if !out.status.success() {
            return Err(SourceError::Git {
                command: args
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                repo: self.repo.to_path_buf(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Where the project sits in the user's repository, read with one git call.
struct WorkTree {
    /// The project's directory relative to the top of the work tree (`sub/dir/`, or empty).
    prefix: String,
    user_objects: String,
    user_index: String,
    /// HEAD's tree, when HEAD has a commit.
    head_tree: Option<String>,
}

impl WorkTree {
    /// `None` outside a work tree (a plain directory).
    fn read(git: &Git<'_>, facts: &GitFacts) -> Option<Self> {
        let mut args = vec![
            "rev-parse".to_owned(),
            "--show-toplevel".to_owned(),
            "--path-format=absolute".to_owned(),
            "--git-path".to_owned(),
            "objects".to_owned(),
            "--git-path".to_owned(),
            "index".to_owned(),
            "--show-prefix".to_owned(),
        ];
        if facts.repository {
            args.push(format!("{}^{{tree}}", facts.sha));
        }
        let out = git.run_raw(&args).ok()?;
        let mut lines = out.lines();
        let _top = lines.next()?;
        let user_objects = lines.next()?.to_owned();
        let user_index = lines.next()?.to_owned();
        // An empty line at the top of the work tree.
        let prefix = lines.next().unwrap_or_default().to_owned();
        let head_tree = match facts.repository {
            true => Some(lines.next()?.to_owned()),
            false => None,
        };
        Some(Self {
            prefix,
            user_objects,
            user_index,
            head_tree,
        })
    }
}

/// Take the snapshot of `project_dir` into the bare repository `repo` (replaced), with refs for what
/// jobs fetch: `HEAD` (the snapshot) and the branch or tag of `facts`.
pub fn take(project_dir: &Path, facts: &GitFacts, repo: &Path) -> Result<Snapshot, SourceError> {
    let io = |source| SourceError::Io {
        path: repo.to_path_buf(),
        source,
    };
    if repo.exists() {
        std::fs::remove_dir_all(repo).map_err(io)?;
    }
    std::fs::create_dir_all(repo).map_err(io)?;
    let plain = Git {
        cwd: project_dir,
        env: Vec::new(),
        repo,
    };
    // No hooks or samples: nothing runs in this repository but fetches.
    let mut init = vec!["init", "--bare", "-q", "--template="];
    if facts.object_format != "sha1" && !facts.object_format.is_empty() {
        init.extend(["--object-format", facts.object_format.as_str()]);
    }
    let repo_arg = repo.as_os_str().to_owned();
    // Making the repository and asking where the project is do not wait for each other.
    let (made, work_tree) = std::thread::scope(|s| {
        let work_tree = s.spawn(|| WorkTree::read(&plain, facts));
        let made = plain.run(init.iter().map(OsStr::new).chain([repo_arg.as_os_str()]));
        (made, work_tree.join().ok().flatten())
    });
    made?;

    let index = repo.join("glrunner-index");
    let objects = repo.join("objects");
    let mut env = vec![
        ("GIT_INDEX_FILE", index.display().to_string()),
        ("GIT_OBJECT_DIRECTORY", objects.display().to_string()),
    ];
    let (prefix, head, head_tree) = match work_tree {
        Some(WorkTree {
            prefix,
            user_objects,
            user_index,
            head_tree,
        }) => {
            std::fs::write(
                objects.join("info").join("alternates"),
                format!("{user_objects}\n"),
            )
            .map_err(io)?;
            env.push(("GIT_ALTERNATE_OBJECT_DIRECTORIES", user_objects));
            // Starting from the user's index, only files changed since it was written are hashed.
            if Path::new(&user_index).is_file() {
                std::fs::copy(&user_index, &index).map_err(io)?;
            }
            let head = facts.repository.then(|| facts.sha.clone());
            (prefix, head, head_tree)
        }
        None => {
            // Not a repository: git reads the directory through the snapshot repository itself.
            env.push(("GIT_DIR", repo.display().to_string()));
            env.push(("GIT_WORK_TREE", project_dir.display().to_string()));
            (String::new(), None, None)
        }
    };
    let own = Git {
        cwd: project_dir,
        env,
        repo,
    };
    own.run(["add", "-A", "--", "."])?;
    let tree = if prefix.is_empty() {
        own.run(["write-tree"])?
    } else {
        own.run(["write-tree".to_owned(), format!("--prefix={prefix}")])?
    };

    let head_tree = head_tree.filter(|_| prefix.is_empty());
    let (commit, differs_from_head) = match (&head, head_tree) {
        (Some(sha), Some(head_tree)) if head_tree == tree => (sha.clone(), false),
        _ => {
            let mut env = own.env.clone();
            env.extend(AUTHOR.iter().map(|(k, v)| (*k, (*v).to_owned())));
            // HEAD's date keeps the commit the same for the same tree, so jobs fetch nothing new.
            let date = if facts.commit_timestamp.is_empty() {
                "2000-01-01T00:00:00Z".to_owned()
            } else {
                facts.commit_timestamp.clone()
            };
            env.push(("GIT_AUTHOR_DATE", date.clone()));
            env.push(("GIT_COMMITTER_DATE", date));
            let committer = Git { env, ..own };
            let mut args = vec!["commit-tree".to_owned(), tree.clone()];
            let message = match (&head, prefix.is_empty()) {
                (Some(sha), true) => {
                    args.extend(["-p".to_owned(), sha.clone()]);
                    format!("glrunner exec: the working tree of {sha}, with uncommitted changes")
                }
                _ => "glrunner exec: the project directory".to_owned(),
            };
            args.extend(["-m".to_owned(), message]);
            (committer.run(&args)?, true)
        }
    };

    let bare = Git {
        cwd: project_dir,
        env: vec![("GIT_DIR", repo.display().to_string())],
        repo,
    };
    // HEAD, and the branch or tag the jobs fetch besides it: the real commit when the snapshot has it.
    let named = match (&head, prefix.is_empty()) {
        (Some(sha), true) => sha.clone(),
        _ => commit.clone(),
    };
    let mut updates = format!("update HEAD {commit}\n");
    if let Some(branch) = &facts.branch {
        updates.push_str(&format!("update refs/heads/{branch} {named}\n"));
    } else if let Some(tag) = &facts.tag {
        updates.push_str(&format!("update refs/tags/{tag} {named}\n"));
    }
    bare.run_with_input(["update-ref", "--no-deref", "--stdin"], &updates)?;
    // git takes the path of a file:// URL as it is written.
    Ok(Snapshot {
        url: format!("file://{}", repo.display()),
        commit,
        differs_from_head,
    })
}
