//! From a `[[runners]]` entry of config.toml to what the manager runs: the GitLab client, the runner
//! context jobs see, the executor and the `info` GitLab gets.

use crate::version;
use glrunner_config::{Config, ExecutorKind, RunnerConfig, default_certs_dir};
use glrunner_gitlab::{ClientSettings, GitLabClient};
use glrunner_job::shell::ShellExecutor;
use glrunner_job::{Executor, RunnerContext};
use glrunner_manager::{ExecutorFactory, RunnerEntry, RunnerIdentity, core_features};
use glrunner_protocol::request::FeaturesInfo;
use glrunner_protocol::{JobResponse, Secret, TokenKind, short_token};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why an entry cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(
        "runner {name:?} has no token\n  cause: neither `token` nor `token_file` is set, and no token was obtained by registration\n  fix: create a runner in GitLab and run `glrunner register --url {url} --token glrt-…`, or set `token_file` to a file holding the token"
    )]
    NoToken { name: String, url: String },
    #[error(
        "runner {name:?} uses the {executor:?} executor, which glrunner does not have\n  fix: use `executor = \"shell\"` or `executor = \"kubernetes\"` for this entry"
    )]
    ExecutorUnavailable { name: String, executor: String },
    #[error("runner {name:?}: {source}")]
    Client {
        name: String,
        #[source]
        source: glrunner_gitlab::ApiError,
    },
}

/// A GitLab client for one entry.
pub fn client(
    runner: &RunnerConfig,
    config: &Config,
) -> Result<GitLabClient, glrunner_gitlab::ApiError> {
    GitLabClient::new(ClientSettings {
        url: runner.url.clone(),
        tls_ca_file: runner.tls_ca_file.clone(),
        tls_cert_file: runner.tls_cert_file.clone(),
        tls_key_file: runner.tls_key_file.clone(),
        tls_server_name: runner.tls_server_name.clone(),
        certs_dir: Some(default_certs_dir()),
        connection_max_age: Some(config.connection_max_age()),
        user_agent: version::user_agent(),
    })
}

/// A display name for an entry: its `name`, else its position.
pub fn display_name(runner: &RunnerConfig, index: usize) -> String {
    if runner.name.is_empty() {
        format!("runners[{index}]")
    } else {
        runner.name.clone()
    }
}

/// The shell executor's factory; it keeps glrunner's own token variables away from jobs.
pub fn shell_factory(token: &Secret) -> Arc<dyn ExecutorFactory> {
    Arc::new(ShellFactory {
        env_removed: token_env_names(token),
    })
}

/// The executor an entry names, or why glrunner has none of that name.
pub fn executor_kind(runner: &RunnerConfig, index: usize) -> Result<ExecutorKind, EntryError> {
    runner
        .executor_kind()
        .ok_or_else(|| EntryError::ExecutorUnavailable {
            name: display_name(runner, index),
            executor: runner.executor.clone(),
        })
}

/// Everything the manager needs for one entry. `token` is the resolved token (config, file or
/// state); `factory` makes the entry's executors.
pub fn build(
    runner: &RunnerConfig,
    index: usize,
    token: Secret,
    config: &Config,
    system_id: &str,
    working_dir: &Path,
    factory: Arc<dyn ExecutorFactory>,
) -> Result<RunnerEntry, EntryError> {
    let name = display_name(runner, index);
    let kind = executor_kind(runner, index)?;
    let client = client(runner, config).map_err(|source| EntryError::Client {
        name: name.clone(),
        source,
    })?;
    let mut features: FeaturesInfo = core_features();
    factory.features(&mut features);
    let mut info = version::info(factory.name(), runner.shell(), features);
    info.labels = runner.computed_labels(&config.labels);
    let short = short_token(token.expose());
    // Kubernetes jobs see their pod's paths (`/builds`, `/cache` unless set); shell jobs default
    // to directories under the working directory.
    let job_dir = |set: &Option<PathBuf>, default: &str| match kind {
        ExecutorKind::Kubernetes => set.clone(),
        ExecutorKind::Shell => Some(set.clone().unwrap_or_else(|| working_dir.join(default))),
    };
    let context = RunnerContext {
        name: name.clone(),
        short_token: short.clone(),
        system_id: system_id.to_owned(),
        version: version::VERSION.to_owned(),
        revision: version::REVISION.to_owned(),
        executor: factory.name().to_owned(),
        shell: runner.shell().to_owned(),
        builds_dir: job_dir(&runner.builds_dir, "builds"),
        cache_dir: job_dir(&runner.cache_dir, "cache"),
        environment: runner.environment.to_vec(),
        pre_get_sources_script: runner.pre_get_sources_script.clone(),
        post_get_sources_script: runner.post_get_sources_script.clone(),
        pre_build_script: runner.pre_build_script.clone(),
        post_build_script: runner.post_build_script.clone(),
        feature_flags: runner.feature_flags.clone(),
        clone_url: runner.clone_url.clone(),
        tls_ca_file: client.tls_ca_file(),
        debug_trace_disabled: runner.debug_trace_disabled.unwrap_or(false),
        gitlab_url: Some(runner.url.clone()),
        cache: runner
            .cache
            .as_ref()
            .map(crate::cache_settings::from_config),
        ..RunnerContext::default()
    };
    Ok(RunnerEntry {
        identity: RunnerIdentity {
            name,
            short_token: short,
            kind: TokenKind::classify(token.expose()),
            system_id: system_id.to_owned(),
            url: runner.url.clone(),
        },
        token,
        client,
        info,
        limit: runner.limit().unwrap_or(0),
        request_concurrency: runner.effective_request_concurrency(),
        adaptive_request_concurrency: runner
            .feature_flag("FF_USE_ADAPTIVE_REQUEST_CONCURRENCY")
            .unwrap_or(true),
        unhealthy_interval: runner.unhealthy_interval(),
        output_limit_bytes: runner.output_limit_bytes(),
        final_update_retry_limit: runner.job_status_final_update_retry_limit(),
        debug_trace_disabled: runner.debug_trace_disabled.unwrap_or(false),
        context,
        executor: factory,
    })
}

/// Environment variables of this process that hold the runner token (`token = "$RUNNER_TOKEN"`): never
/// passed on to jobs, whatever they are called.
fn token_env_names(token: &Secret) -> Vec<String> {
    std::env::vars_os()
        .filter(|(_, v)| v.to_str().is_some_and(|v| v.trim() == token.expose()))
        .filter_map(|(k, _)| k.into_string().ok())
        .collect()
}

struct ShellFactory {
    env_removed: Vec<String>,
}

impl ExecutorFactory for ShellFactory {
    fn name(&self) -> &str {
        "shell"
    }

    fn features(&self, features: &mut FeaturesInfo) {
        ShellExecutor::features_info(features);
    }

    fn create(
        &self,
        _job: &JobResponse,
        _ctx: &RunnerContext,
    ) -> Result<Box<dyn Executor>, String> {
        Ok(Box::new(
            ShellExecutor::new().with_env_removed(self.env_removed.iter().cloned()),
        ))
    }
}

/// The directory jobs of the shell executor work in by default.
pub fn default_working_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}
