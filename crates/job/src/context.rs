//! What the runner (config.toml entry and manager) contributes to a job.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Runner-side settings for one job, from its `[[runners]]` entry and the manager.
#[derive(Debug, Clone, Default)]
pub struct RunnerContext {
    /// `name` of the `[[runners]]` entry.
    pub name: String,
    /// Short form of the runner token (`CI_RUNNER_SHORT_TOKEN`, header line).
    pub short_token: String,
    pub system_id: String,
    /// glrunner's version and revision for `Running with glrunner …` and `CI_RUNNER_VERSION`.
    pub version: String,
    pub revision: String,
    /// `executor` (e.g. `shell`).
    pub executor: String,
    /// `shell` (bash is the default and the only one supported for now).
    pub shell: String,
    /// `builds_dir`; default for the shell executor: `<working dir>/builds`.
    pub builds_dir: Option<PathBuf>,
    /// `cache_dir`.
    pub cache_dir: Option<PathBuf>,
    /// `environment`: `KEY=VALUE` entries added to every job.
    pub environment: Vec<String>,
    pub pre_get_sources_script: Option<String>,
    pub post_get_sources_script: Option<String>,
    pub pre_build_script: Option<String>,
    pub post_build_script: Option<String>,
    /// `[runners.feature_flags]`, which win over job variables.
    pub feature_flags: BTreeMap<String, bool>,
    /// `clone_url`.
    pub clone_url: Option<String>,
    /// The CA file GitLab's certificate chains to (`CI_SERVER_TLS_CA_FILE` for git and the helper).
    pub tls_ca_file: Option<PathBuf>,
    /// Index of this job among the runner's concurrent jobs (`CI_CONCURRENT_ID`).
    pub concurrent_id: usize,
    /// Index of this job among the runner's running jobs of the same project
    /// (`CI_CONCURRENT_PROJECT_ID`); `None` uses `concurrent_id`.
    pub concurrent_project_id: Option<usize>,
    /// `debug_trace_disabled`: refuse `CI_DEBUG_TRACE` (bash xtrace would print every expanded command).
    pub debug_trace_disabled: bool,
    /// `url` of the `[[runners]]` entry: where the helper uploads and downloads artifacts. `None` uses
    /// the job's `CI_SERVER_URL`; an empty URL means there is no GitLab (`glrunner exec`), so artifact
    /// stages are skipped with a warning.
    pub gitlab_url: Option<String>,
    /// The glrunner binary job scripts run as `glrunner helper …`, instead of the executor's choice
    /// (the running binary for the shell executor).
    pub helper_path: Option<PathBuf>,
    /// `[runners.cache]`. `None`, or no `Type`, keeps caches in the local cache directory (the
    /// executor's `cache_dir`, which also replaces `local_dir` here).
    pub cache: Option<glrunner_cache::CacheSettings>,
    /// Keep artifacts on this machine under this directory instead of transferring them with GitLab
    /// (`glrunner exec`): see [`crate::local_artifacts`]. Dependencies' archives are then read from the
    /// local paths in their `artifacts_file.filename`.
    pub local_artifacts: Option<PathBuf>,
    /// A checkout made once for the jobs of a local run (`glrunner exec`): get_sources copies it into
    /// the project directory when it is what the job would fetch (see [`crate::checkout`]).
    pub prepared_checkout: Option<crate::checkout::PreparedCheckout>,
}
