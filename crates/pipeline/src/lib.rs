//! Local pipelines for `glrunner exec`: read a `.gitlab-ci.yml`, pick a job, and build the
//! [`JobResponse`] GitLab would send for it, so the job runs exactly like one assigned by GitLab.
//!
//! Layers, each a module: [`document`] (YAML → positioned tree with anchors, aliases, merge keys and
//! tags), [`resolution`] (document-level features: `include`, `extends`, `!reference`), `config` and
//! [`job`] (typed top level and jobs), [`payload`] (the wire payload), with [`git`] and [`context`]
//! supplying what GitLab would know about the commit.
//!
//! # Keywords
//! - Honoured: top-level `stages`, `variables` (`KEY: value` or `KEY: {value, description, expand,
//!   options}`), `default:` (`before_script`, `after_script`, `image`, `timeout`), the deprecated
//!   top-level `image`/`before_script`/`after_script`; job `script`, `before_script`, `after_script`,
//!   `variables`, `stage` (default `test`), `timeout`, `image` (name or `{name, entrypoint, pull_policy,
//!   docker, kubernetes}`), `allow_failure` (recorded), `when: on_success`. Hidden jobs (`.name`) are
//!   templates and never run.
//! - Accepted and ignored, because they change nothing about what a local job runs: `tags`,
//!   `interruptible`, `retry`, `environment`, `coverage`, `resource_group` (and under `default:`,
//!   `interruptible`, `retry`, `tags`).
//! - Refused with the key, the job, the position and the fix: `rules`, `only`, `except`, `needs`,
//!   `dependencies`, `extends`, `!reference`, `include`, `parallel`, `artifacts`, `cache`, `services`,
//!   `trigger`, `inherit`, `release`, `secrets`, `id_tokens`, `hooks`, `pages`, `workflow`, `spec`, `when`
//!   other than `on_success`, and the rest GitLab knows. A job using one is still listed; only asking for
//!   its payload fails. Top-level ones (`include`, `workflow`, `services`, `cache`, `default:cache`, …)
//!   affect every job, so the file is refused.
//! - Unknown keys are errors, as in GitLab.
//!
//! Variable values follow GitLab's YAML reading with one difference: saphyr implements YAML 1.2, so
//! `yes`/`no`/`on`/`off` stay strings where GitLab's YAML 1.1 reader makes them booleans.

pub mod context;
pub mod document;
pub mod duration;
pub mod error;
pub mod git;
pub mod job;
pub mod payload;
pub mod resolution;
pub mod variables;

mod config;
mod keywords;

pub use context::LocalContext;
pub use error::{Location, PipelineError, UnsupportedKey};
pub use git::{GitFacts, RemoteProject};
pub use job::{AllowFailure, ImageSpec, Job};
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
    /// Read and check the pipeline file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PipelineError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PipelineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Check pipeline text that was read from `path` (named in error locations).
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<Self, PipelineError> {
        let document = document::Document::parse(text, path)?;
        let resolved = resolution::resolve(document)?;
        Ok(Self {
            config: config::read(resolved)?,
        })
    }

    /// The file the pipeline was read from.
    pub fn path(&self) -> &Path {
        self.config.source.path()
    }

    /// All stages in order, with GitLab's `.pre` first and `.post` last.
    pub fn stages(&self) -> &[String] {
        &self.config.stages
    }

    /// Every job (hidden templates excluded) in stage order, file order within a stage. Jobs that use a
    /// key glrunner cannot run yet are listed too.
    pub fn job_names(&self) -> Vec<&str> {
        let mut jobs: Vec<_> = self.config.jobs.iter().collect();
        jobs.sort_by_key(|j| j.stage_index);
        jobs.into_iter().map(|j| j.name.as_str()).collect()
    }

    /// The job `name`, ready to run, or why it is not.
    pub fn job(&self, name: &str) -> Result<&Job, PipelineError> {
        let entry = self
            .config
            .jobs
            .iter()
            .find(|j| j.name == name)
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

    /// The payload GitLab would send for job `name`, taking the next job id from `ctx`.
    pub fn job_payload(
        &self,
        name: &str,
        ctx: &LocalContext,
    ) -> Result<JobResponse, PipelineError> {
        let job = self.job(name)?;
        Ok(payload::build(job, &self.config_path(ctx), ctx))
    }

    /// `CI_CONFIG_PATH`: the file relative to the project directory when it is inside it.
    fn config_path(&self, ctx: &LocalContext) -> String {
        let path = self.path();
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        absolute
            .strip_prefix(&ctx.project_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}
