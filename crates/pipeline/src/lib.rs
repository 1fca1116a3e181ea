//! Local pipelines for `glrunner exec`: read a `.gitlab-ci.yml` (and the files it includes), decide
//! which jobs GitLab would run for the local commit and in which order ([`Plan`]), and build the
//! [`JobResponse`] GitLab would send for each, so jobs run exactly like ones assigned by GitLab.
//!
//! Layers, each a module: [`document`] (YAML → positioned tree with anchors, aliases, merge keys and
//! tags), [`resolution`] (`include: local`, `extends`, `!reference`), `config` and [`job`] (typed top
//! level and jobs, `default:`/`inherit:`, `parallel:`), [`rules`] and [`expression`] (`rules:`,
//! `only`/`except`, `workflow:rules`), [`plan`] (the run), [`payload`] (the wire payload), with [`git`]
//! and [`context`] supplying what GitLab would know about the commit.
//!
//! # Keywords
//! - Honoured: `stages`, `variables` (`KEY: value` or `{value, description, expand, options}`),
//!   `workflow` (`rules`, `name`), `default:` (`before_script`, `after_script`, `image`, `services`,
//!   `timeout`, `cache`, `artifacts`, `hooks`), the deprecated top-level `image`/`services`/`cache`/
//!   `before_script`/`after_script`, `include` (local files); job `script`, `before_script`,
//!   `after_script`, `variables`, `stage`, `timeout`, `image`, `services`, `allow_failure`, `when`,
//!   `start_in`, `rules`, `only`, `except`, `needs`, `dependencies`, `extends`, `parallel` (number and
//!   `matrix`), `artifacts`, `cache`, `inherit`, `hooks`; `!reference` anywhere. Hidden jobs (`.name`)
//!   are templates and never run.
//! - Accepted and ignored, because they change nothing about what a local job runs: `tags`,
//!   `interruptible`, `retry`, `environment`, `coverage`, `resource_group`, `manual_confirmation` (and
//!   under `default:`, `interruptible`, `retry`, `tags`). `services` and `image` reach the payload; an
//!   executor that cannot honour them says so.
//! - Local stand-ins, each documented where it is implemented: `changes:` always holds (no push to
//!   compare with, like a GitLab pipeline without a diff base); `exists:` and wildcard includes look at
//!   the working tree's files; manual jobs are never run; delayed jobs do not wait.
//! - Refused with the key, the job, the position and the fix: `trigger`, `release`, `secrets`,
//!   `id_tokens`, `pages`, `publish`, `identity`, `dast_configuration`, `run`, `inputs`, `spec:inputs`,
//!   `include` of `remote`/`project`/`template`/`component`/`artifact` files, `needs` on other pipelines
//!   or projects, `only/except:kubernetes`, `rules:exists:project`, image and service `ports`. A job
//!   using one is still listed; only running it fails. Top-level ones refuse the file.
//! - Unknown keys are errors, as in GitLab.
//!
//! Variable values follow GitLab's YAML reading with one difference: saphyr implements YAML 1.2, so
//! `yes`/`no`/`on`/`off` stay strings where GitLab's YAML 1.1 reader makes them booleans.

pub mod artifacts;
pub mod cache;
pub mod context;
pub mod document;
pub mod duration;
pub mod error;
pub mod expression;
pub mod git;
pub mod glob;
pub mod job;
pub mod needs;
pub mod parallel;
pub mod payload;
pub mod plan;
pub mod resolution;
pub mod rules;
pub mod variables;
pub mod worktree;

mod config;
mod keywords;
mod reader;

pub use context::LocalContext;
pub use error::{Location, PipelineError, UnsupportedKey};
pub use git::{GitFacts, RemoteProject};
pub use job::{AllowFailure, ImageSpec, Job, ServiceSpec};
pub use plan::{
    Excluded, JobResult, JobState, JobStatus, LocalArtifacts, Next, Plan, PlanError, PlannedJob,
    PlannedNeed, Selection,
};
pub use variables::YamlVariable;

use config::Config;
use glrunner_protocol::JobResponse;
use std::path::{Path, PathBuf};

/// A loaded `.gitlab-ci.yml`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: Config,
}

impl Pipeline {
    /// Read and check the pipeline file at `path`. Included files are read relative to the file's
    /// directory, taken as the project directory; `include:rules` are evaluated against that
    /// directory's git facts (read only if an include has rules).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PipelineError> {
        let path = path.as_ref();
        let text = read(path)?;
        Self::parse(&text, path)
    }

    /// Read the pipeline file at `path` of the project `ctx` describes (includes are read from
    /// `ctx.project_dir`, `include:rules` see `ctx`'s variables).
    pub fn load_with(path: impl AsRef<Path>, ctx: &LocalContext) -> Result<Self, PipelineError> {
        let path = path.as_ref();
        let text = read(path)?;
        let facts = || plan::base_facts(ctx, &config_path_of(path, ctx));
        let includes = resolution::IncludeContext::new(ctx.project_dir.clone(), &facts);
        Self::build(&text, path, &includes)
    }

    /// Check pipeline text that was read from `path` (named in error locations; its directory is the
    /// project directory for includes).
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<Self, PipelineError> {
        let path = path.into();
        let project_dir = std::path::absolute(&path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let facts = || {
            let ctx = LocalContext::discover(&project_dir);
            plan::base_facts(&ctx, &config_path_of(&path, &ctx))
        };
        let includes = resolution::IncludeContext::new(project_dir.clone(), &facts);
        Self::build(text, &path, &includes)
    }

    fn build(
        text: &str,
        path: &Path,
        includes: &resolution::IncludeContext<'_>,
    ) -> Result<Self, PipelineError> {
        let document = document::Document::parse(text, path)?;
        let resolved = resolution::resolve(document, includes)?;
        Ok(Self {
            config: config::read(resolved)?,
        })
    }

    /// The file the pipeline was read from.
    pub fn path(&self) -> &Path {
        self.config.source.path()
    }

    /// Every file the pipeline was read from: the main file first, then the included ones.
    pub fn files(&self) -> &[PathBuf] {
        self.config.source.files()
    }

    /// All stages in order, with GitLab's `.pre` first and `.post` last.
    pub fn stages(&self) -> &[String] {
        &self.config.stages
    }

    /// Every job (hidden templates excluded; parallel jobs as their instances, e.g. `test 1/2`) in stage
    /// order, file order within a stage. Jobs that use a key glrunner cannot run are listed too, and so
    /// are jobs whose rules leave them out (see [`Pipeline::plan`]).
    pub fn job_names(&self) -> Vec<&str> {
        let mut jobs: Vec<_> = self.config.jobs.iter().collect();
        jobs.sort_by_key(|j| j.stage_index);
        jobs.into_iter().map(|j| j.name.as_str()).collect()
    }

    /// The job `name`, ready to run, or why it is not.
    pub fn job(&self, name: &str) -> Result<&Job, PipelineError> {
        let entry = self
            .config
            .entry(name)
            .ok_or_else(|| PipelineError::UnknownJob {
                name: name.to_owned(),
                file: self.path().to_path_buf(),
                available: self.job_names().into_iter().map(str::to_owned).collect(),
            })?;
        entry
            .outcome
            .as_ref()
            .map_err(|unsupported| PipelineError::Unsupported(unsupported.clone()))
    }

    /// The payload GitLab would send for job `name` run on its own (no rules evaluated, no earlier jobs),
    /// taking the next job id from `ctx`. [`Pipeline::plan`] gives payloads within a pipeline run.
    pub fn job_payload(
        &self,
        name: &str,
        ctx: &LocalContext,
    ) -> Result<JobResponse, PipelineError> {
        let job = self.job(name)?;
        let extras = payload::Extras {
            config_path: self.config_path(ctx),
            ..payload::Extras::default()
        };
        Ok(payload::build(job, ctx, &extras))
    }

    /// The run GitLab would make of this pipeline for the commit `ctx` describes: the whole pipeline or
    /// one job (and optionally what it waits for). See [`plan`].
    pub fn plan(
        &self,
        ctx: &LocalContext,
        selection: &Selection,
    ) -> Result<Plan<'_>, PipelineError> {
        plan::build(self, ctx, selection)
    }

    /// `CI_CONFIG_PATH`: the file relative to the project directory when it is inside it.
    fn config_path(&self, ctx: &LocalContext) -> String {
        config_path_of(self.path(), ctx)
    }
}

fn read(path: &Path) -> Result<String, PipelineError> {
    std::fs::read_to_string(path).map_err(|source| PipelineError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn config_path_of(path: &Path, ctx: &LocalContext) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute
        .strip_prefix(&ctx.project_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}
