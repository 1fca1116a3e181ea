//! A checkout made once and copied into many jobs' directories (`glrunner exec`, where every job of a
//! run fetches the same commit from the same local repository).
//!
//! [`PreparedCheckout::create`] runs what get_sources runs in a new directory (init with the
//! template's settings, fetch of the job's refspecs and depth, checkout, `git lfs pull` when git-lfs
//! is installed). A job whose get_sources would do exactly that (see [`PreparedCheckout::serves`])
//! then gets a fresh copy of it in its project directory instead of an init, a fetch, a checkout and a
//! clean: as a script, `rm -r -f` and `cp -R`; carried out by the shell executor itself, whatever of
//! the previous job's copy still matches is kept (see [`crate::stage_ops`]). Either way the copy is a
//! whole repository of its own (objects included), so the job may change it freely, and nothing a
//! job leaves in it, not even in `.git`, reaches the next job.
//!
//! Only shallow fetches (`GIT_DEPTH` > 0, GitLab's default is 20) are prepared: a copy holds the
//! fetched history, and copying a whole history per job would cost more than fetching into a
//! checkout the job's slot keeps.

use crate::context::RunnerContext;
use crate::settings::{GitStrategy, JobSettings, SubmoduleStrategy};
use crate::sources::{self, Remote};
use crate::stage_ops::Op;
use glrunner_protocol::JobResponse;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variables that would point a git command at another repository than the one it
/// names: glrunner's own git calls remove them.
pub const REPOSITORY_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_PREFIX",
];

/// Why a checkout could not be prepared. The jobs then get their sources as usual.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckoutError {
    #[error(
        "the job's sources cannot be prepared once for all jobs: {0}. The jobs fetch them one by one \
         instead"
    )]
    NotPreparable(&'static str),
    #[error(
        "the directory {path} for the prepared checkout could not be set up: {source}. Fix: make it \
         writable, or point glrunner at a writable state directory"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "git could not be run ({0}). Fix: install git (for example `apt-get install git`) and make sure \
         it is on PATH"
    )]
    NoGit(std::io::Error),
    #[error("preparing the checkout failed: `git {command}` said: {stderr}")]
    Git { command: String, stderr: String },
}

/// What the prepared checkout was made from; a job is served only when its own facts are the same.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    url: String,
    sha: String,
    refspecs: Vec<String>,
    depth: u32,
    object_format: Option<String>,
}

impl Source {
    fn of(job: &JobResponse, ctx: &RunnerContext) -> Self {
        Self {
            url: Remote::for_job(job, ctx.clone_url.as_deref()).url,
            sha: job.git_info.sha.clone(),
            refspecs: job.git_info.refspecs.clone(),
            depth: job.git_info.depth,
            object_format: sources::object_format(job).map(str::to_owned),
        }
    }
}

/// A repository with its work tree, as a job's fresh get_sources would leave it.
#[derive(Debug, Clone)]
pub struct PreparedCheckout {
    /// The work tree with `.git`, as the job's shell sees it.
    dir: String,
    source: Source,
}

impl PreparedCheckout {
    /// Prepare `dir` (replaced) for jobs like `job`: the same remote, commit, refspecs and depth.
    /// Blocks while git runs.
    pub fn create(
        dir: &Path,
        job: &JobResponse,
        ctx: &RunnerContext,
    ) -> Result<Self, CheckoutError> {
        let source = Source::of(job, ctx);
        let remote = Remote::for_job(job, ctx.clone_url.as_deref());
        if remote.password.is_some() || remote.base.is_some() {
            return Err(CheckoutError::NotPreparable(
                "the repository is on a server, not on this machine",
            ));
        }
        if source.depth == 0 {
            return Err(CheckoutError::NotPreparable(
                "GIT_DEPTH is 0, so every job would copy the whole history",
            ));
        }
        let dir_str = dir.to_str().ok_or(CheckoutError::NotPreparable(
            "its directory is not valid UTF-8",
        ))?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckoutError::Io { path, source }
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        let template = PathBuf::from(format!("{dir_str}.template"));
        if template.exists() {
            std::fs::remove_dir_all(&template).map_err(io(&template))?;
        }
        std::fs::create_dir_all(&template).map_err(io(&template))?;
        // What the template and `git remote add` give a new repository; the job's own copy
        // includes its external config when it is copied.
        std::fs::write(
            template.join("config"),
            sources::new_repository_config(None, Some(&remote.url)),
        )
        .map_err(io(&template))?;

        let git = |cwd: &Path, args: &[&str]| run_git(cwd, args);
        let parent = dir.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let template_str = template.to_string_lossy().into_owned();
        let mut init = vec![
            "-c",
            "init.defaultBranch=none",
            "init",
            "-q",
            dir_str,
            "--template",
            &template_str,
        ];
        if let Some(f) = &source.object_format {
            init.extend(["--object-format", f]);
        }
        let made = git(parent, &init).and_then(|_| {
            let user_agent = sources::user_agent_config(ctx);
            let depth = source.depth.to_string();
            let mut fetch = vec![
                "-c",
                &user_agent,
                // The objects stay in the pack they came in (a few files to copy per job, not one
                // per object), and no maintenance runs in a repository that is only copied.
                "-c",
                "fetch.unpackLimit=1",
                "-c",
                "maintenance.auto=false",
                "fetch",
                "origin",
                "--no-recurse-submodules",
            ];
            fetch.extend(sources::fetch_refspecs(&source.refspecs));
            fetch.extend(["--depth", &depth]);
            fetch.extend(sources::DEFAULT_FETCH_FLAGS);
            git(dir, &fetch)?;
            let target = if source.sha.is_empty() {
                "FETCH_HEAD"
            } else {
                &source.sha
            };
            git(
                dir,
                &[
                    "-c",
                    "submodule.recurse=false",
                    "checkout",
                    "-f",
                    "-q",
                    target,
                ],
            )?;
            if git(dir, &["lfs", "version"]).is_ok() {
                git(dir, &["lfs", "pull"])?;
            }
            Ok(())
        });
        let _ = std::fs::remove_dir_all(&template);
        made?;
        Ok(Self {
            dir: dir_str.to_owned(),
            source,
        })
    }

    /// Whether `job`'s get_sources would make exactly this checkout in a new directory: the same
    /// facts, a clone or fetch that checks out and cleans as by default, with the default fetch
    /// flags and no submodules.
    pub fn serves(&self, job: &JobResponse, ctx: &RunnerContext, settings: &JobSettings) -> bool {
        let default_clean = settings
            .git_clean_flags
            .iter()
            .map(String::as_str)
            .eq(["-ffdx"]);
        let default_fetch = settings
            .git_fetch_extra_flags
            .iter()
            .map(String::as_str)
            .eq(sources::DEFAULT_FETCH_FLAGS.iter().copied());
        matches!(
            settings.git_strategy,
            GitStrategy::Clone | GitStrategy::Fetch
        ) && settings.git_checkout
            && (default_clean || settings.git_strategy == GitStrategy::Clone)
            && default_fetch
            && settings.submodule_strategy == SubmoduleStrategy::None
            && !settings.lfs_skip_smudge
            && Source::of(job, ctx) == self.source
    }

    /// Replace `project_dir` with a copy, and make the copy include the job's external git config,
    /// as a new repository's template does.
    pub(crate) fn copy_ops(&self, project_dir: &str, external_config: &str) -> Vec<Op> {
        let mut ops = Vec::new();
        if let Some((parent, _)) = project_dir.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            ops.push(Op::MakeDir(parent.to_owned()));
        }
        // Like a checkout, the copy's files are the job user's, with the repository's modes.
        ops.push(Op::ReplaceWithCopy {
            from: self.dir.clone(),
            to: project_dir.to_owned(),
        });
        ops.push(Op::AppendFile {
            path: format!("{project_dir}/.git/config"),
            content: sources::include_config(external_config),
        });
        ops
    }
}

/// Run git in `cwd`, its output kept for the error.
fn run_git(cwd: &Path, args: &[&str]) -> Result<String, CheckoutError> {
    let mut cmd = Command::new("git");
    cmd.current_dir(cwd)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "Never")
        // LFS objects come with `git lfs pull` after checkout, as in get_sources.
        .env("GIT_LFS_SKIP_SMUDGE", "1");
    // glrunner's own environment must not point these commands at another repository.
    for var in REPOSITORY_ENV {
        cmd.env_remove(var);
    }
    let out = cmd.output().map_err(CheckoutError::NoGit)?;
    if !out.status.success() {
        return Err(CheckoutError::Git {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::Variables;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A repository of `commits` commits, and a job that fetches its HEAD with `depth`.
    fn source(dir: &Path, commits: usize, depth: u32) -> JobResponse {
        let repo = dir.join("source");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(repo.join("tool.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        git(&repo, &["add", "-A"]);
        for i in 0..commits {
            git(
                &repo,
                &[
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "commit",
                    "-q",
                    "--allow-empty",
                    "-m",
                    &format!("c{i}"),
                ],
            );
        }
        let mut job = JobResponse::default();
        job.git_info.repo_url = format!("file://{}", repo.display()).into();
        job.git_info.sha = git(&repo, &["rev-parse", "HEAD"]);
        job.git_info.r#ref = "main".into();
        job.git_info.depth = depth;
        job.git_info.refspecs = vec![
            "+HEAD:refs/pipelines/9".into(),
            "+refs/heads/main:refs/remotes/origin/main".into(),
        ];
        job
    }

    fn settings(vars: &[(&str, &str)]) -> JobSettings {
        let mut v = Variables::new();
        for (k, val) in vars {
            v.add(k, *val);
        }
        JobSettings::from_variables(&v, true, &RunnerContext::default())
    }

    #[test]
    fn made_once_copied_into_a_fresh_directory_per_job() {
        let tmp = tempfile::tempdir().unwrap();
        let job = source(tmp.path(), 3, 2);
        let ctx = RunnerContext::default();
        let prepared = PreparedCheckout::create(&tmp.path().join("prepared"), &job, &ctx).unwrap();
        let dir = tmp.path().join("prepared");
        assert_eq!(git(&dir, &["rev-parse", "HEAD"]), job.git_info.sha);
        assert_eq!(git(&dir, &["rev-list", "--count", "HEAD"]), "2", "shallow");
        assert_eq!(
            git(&dir, &["for-each-ref", "--format=%(refname)"]),
            "refs/pipelines/9\nrefs/remotes/origin/main"
        );
        let packs = std::fs::read_dir(dir.join(".git/objects/pack"))
            .unwrap()
            .count();
        assert!(packs >= 2, "objects stay packed");
        assert!(!tmp.path().join("prepared.template").exists());

        // A job's directory, with leftovers of an earlier job, becomes a fresh copy.
        let project = tmp.path().join("builds/0/acme/demo");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("leftover"), "x").unwrap();
        let out = crate::stage_ops::in_bash(&crate::stage_ops::StageOps {
            ops: prepared.copy_ops(project.to_str().unwrap(), "/b/demo.tmp/.glrunner-git.conf"),
        });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!project.join("leftover").exists());
        assert_eq!(git(&project, &["rev-parse", "HEAD"]), job.git_info.sha);
        assert_eq!(git(&project, &["status", "--porcelain"]), "");
        assert_eq!(
            git(&project, &["config", "--get-all", "include.path"]),
            "/b/demo.tmp/.glrunner-git.conf"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(project.join("tool.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o100 != 0, "executable bits survive the copy");
        // The copy is a repository of its own: changing it leaves the prepared one alone.
        git(&project, &["tag", "mine"]);
        std::fs::write(project.join("tool.sh"), "changed").unwrap();
        assert_eq!(git(&dir, &["tag"]), "");
        assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    }

    #[test]
    fn only_jobs_whose_get_sources_would_make_the_same_checkout_are_served() {
        let tmp = tempfile::tempdir().unwrap();
        let job = source(tmp.path(), 1, 5);
        let ctx = RunnerContext::default();
        let prepared = PreparedCheckout::create(&tmp.path().join("p"), &job, &ctx).unwrap();
        assert!(prepared.serves(&job, &ctx, &settings(&[])));
        assert!(prepared.serves(&job, &ctx, &settings(&[("GIT_STRATEGY", "clone")])));
        assert!(prepared.serves(
            &job,
            &ctx,
            &settings(&[("GIT_STRATEGY", "clone"), ("GIT_CLEAN_FLAGS", "none")])
        ));
        for vars in [
            &[("GIT_STRATEGY", "none")][..],
            &[("GIT_STRATEGY", "empty")],
            &[("GIT_CHECKOUT", "false")],
            &[("GIT_CLEAN_FLAGS", "-ffdx -e keep/")],
            &[("GIT_FETCH_EXTRA_FLAGS", "--tags")],
            &[("GIT_SUBMODULE_STRATEGY", "normal")],
            &[("GIT_LFS_SKIP_SMUDGE", "1")],
        ] {
            assert!(!prepared.serves(&job, &ctx, &settings(vars)), "{vars:?}");
        }
        let mut other = job.clone();
        other.git_info.depth = 1;
        assert!(
            !prepared.serves(&other, &ctx, &settings(&[])),
            "another depth"
        );
        let mut other = job.clone();
        other.git_info.refspecs.pop();
        assert!(
            !prepared.serves(&other, &ctx, &settings(&[])),
            "other refspecs"
        );
        let mut other = job.clone();
        other.git_info.sha = "0".repeat(40);
        assert!(
            !prepared.serves(&other, &ctx, &settings(&[])),
            "another commit"
        );

        // Nothing is prepared for a server's repository or a whole history.
        let mut remote = job.clone();
        remote.git_info.repo_url = "https://gitlab-ci-token:t@gitlab.example.com/a/b.git".into();
        let err = PreparedCheckout::create(&tmp.path().join("q"), &remote, &ctx).unwrap_err();
        assert!(err.to_string().contains("on a server"), "{err}");
        let mut full = job.clone();
        full.git_info.depth = 0;
        let err = PreparedCheckout::create(&tmp.path().join("q"), &full, &ctx).unwrap_err();
        assert!(err.to_string().contains("GIT_DEPTH is 0"), "{err}");
    }
}
