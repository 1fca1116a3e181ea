//! The command line: gitlab-runner's commands and flags, plus `exec`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// glrunner: a GitLab Runner compatible runner with a Kubernetes executor.
#[derive(Debug, Parser)]
#[command(name = "glrunner", version, about, long_about = None)]
pub struct Cli {
    /// Log level: error, warn, info, debug (overrides `log_level` in config.toml).
    #[arg(long, global = true, env = "LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json (overrides `log_format`).
    #[arg(long, global = true, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take jobs from GitLab and run them (the manager).
    Run(RunArgs),
    /// Add a runner to config.toml: `--token glrt-…` (new workflow) or `--registration-token` (legacy).
    Register(Box<RegisterArgs>),
    /// Check that GitLab still knows each runner's token.
    Verify(VerifyArgs),
    /// Remove runners from GitLab and from config.toml.
    Unregister(UnregisterArgs),
    /// List the runners in config.toml.
    List(ConfigArgs),
    /// Run a job of a local .gitlab-ci.yml without GitLab, on this machine or in pods (--executor kubernetes).
    Exec(ExecArgs),
    /// Artifact and cache work for job scripts (run by the scripts glrunner generates).
    #[command(subcommand, hide = true)]
    Helper(glrunner_helper::HelperArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// config.toml (default: /etc/gitlab-runner/config.toml as root, ~/.gitlab-runner/config.toml otherwise).
    #[arg(short = 'c', long = "config", env = "CONFIG_FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// Where glrunner keeps what it learns (system ID, tokens from registration). Default: beside the
    /// config file if writable, else a per-user state directory.
    #[arg(long, env = "GLRUNNER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Address for /metrics and /health (overrides `listen_address`).
    #[arg(long, env = "LISTEN_ADDRESS")]
    pub listen_address: Option<String>,
    /// Working directory for the shell executor's builds.
    #[arg(short = 'd', long = "working-directory")]
    pub working_directory: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Do not ask questions; fail if something required is missing.
    #[arg(short = 'n', long, env = "REGISTER_NON_INTERACTIVE")]
    pub non_interactive: bool,
    /// GitLab URL, e.g. https://gitlab.example.com/.
    #[arg(short = 'u', long, env = "CI_SERVER_URL")]
    pub url: Option<String>,
    /// Runner authentication token (glrt-…) of a runner created in GitLab (new workflow).
    #[arg(short = 't', long, env = "CI_SERVER_TOKEN")]
    pub token: Option<String>,
    /// Registration token (GR1348941…): the deprecated legacy workflow.
    #[arg(short = 'r', long, env = "REGISTRATION_TOKEN")]
    pub registration_token: Option<String>,
    /// Runner name (also the description in the legacy workflow).
    #[arg(long, alias = "description", env = "RUNNER_NAME")]
    pub name: Option<String>,
    /// Executor: shell or kubernetes.
    #[arg(long, env = "RUNNER_EXECUTOR")]
    pub executor: Option<String>,
    /// Shell for the shell executor (bash).
    #[arg(long, env = "RUNNER_SHELL")]
    pub shell: Option<String>,
    /// Legacy workflow only: comma-separated tags.
    #[arg(long, env = "RUNNER_TAG_LIST")]
    pub tag_list: Option<String>,
    /// Legacy workflow only: run jobs without tags.
    #[arg(long, env = "REGISTER_RUN_UNTAGGED")]
    pub run_untagged: bool,
    /// Legacy workflow only: lock the runner to the project.
    #[arg(long, env = "REGISTER_LOCKED")]
    pub locked: Option<bool>,
    /// Legacy workflow only: not_protected or ref_protected.
    #[arg(long, env = "REGISTER_ACCESS_LEVEL")]
    pub access_level: Option<String>,
    /// Legacy workflow only: maximum job timeout in seconds.
    #[arg(long, env = "REGISTER_MAXIMUM_TIMEOUT")]
    pub maximum_timeout: Option<u64>,
    /// Legacy workflow only: register the runner paused.
    #[arg(long, env = "REGISTER_PAUSED")]
    pub paused: bool,
    /// Legacy workflow only: maintenance note.
    #[arg(long, env = "REGISTER_MAINTENANCE_NOTE")]
    pub maintenance_note: Option<String>,
    /// Keep the runner in GitLab even if writing config.toml fails.
    #[arg(long)]
    pub leave_runner: bool,
    #[command(flatten)]
    pub fields: RunnerFieldArgs,
}

/// config.toml fields of the new `[[runners]]` entry.
#[derive(Debug, Args, Default)]
pub struct RunnerFieldArgs {
    #[arg(long, env = "RUNNER_BUILDS_DIR")]
    pub builds_dir: Option<String>,
    #[arg(long, env = "RUNNER_CACHE_DIR")]
    pub cache_dir: Option<String>,
    #[arg(long, env = "CLONE_URL")]
    pub clone_url: Option<String>,
    /// `KEY=VALUE` added to every job (repeatable).
    #[arg(long = "env")]
    pub env: Vec<String>,
    #[arg(long, env = "RUNNER_LIMIT")]
    pub limit: Option<i64>,
    #[arg(long, env = "RUNNER_OUTPUT_LIMIT")]
    pub output_limit: Option<i64>,
    #[arg(long, env = "RUNNER_REQUEST_CONCURRENCY")]
    pub request_concurrency: Option<i64>,
    #[arg(long, env = "CI_SERVER_TLS_CA_FILE")]
    pub tls_ca_file: Option<String>,
    #[arg(long, env = "CI_SERVER_TLS_CERT_FILE")]
    pub tls_cert_file: Option<String>,
    #[arg(long, env = "CI_SERVER_TLS_KEY_FILE")]
    pub tls_key_file: Option<String>,
    /// Verify GitLab's certificate against this name (GitLab reached by IP).
    #[arg(long, env = "CI_SERVER_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Read the token from this file at start-up instead of storing it in config.toml.
    #[arg(long)]
    pub token_file: Option<String>,
    #[arg(long, env = "KUBERNETES_HOST")]
    pub kubernetes_host: Option<String>,
    #[arg(long, env = "KUBERNETES_NAMESPACE")]
    pub kubernetes_namespace: Option<String>,
    #[arg(long, env = "KUBERNETES_IMAGE")]
    pub kubernetes_image: Option<String>,
    #[arg(long, env = "KUBERNETES_SERVICE_ACCOUNT")]
    pub kubernetes_service_account: Option<String>,
    #[arg(long, env = "KUBERNETES_PRIVILEGED")]
    pub kubernetes_privileged: Option<bool>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Only this runner.
    #[arg(long)]
    pub name: Option<String>,
    /// Remove runners GitLab no longer knows (403) from config.toml.
    #[arg(long)]
    pub delete: bool,
}

#[derive(Debug, Args)]
pub struct UnregisterArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// The runner with this name.
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// The runner with this token (with --url when several GitLabs are configured).
    #[arg(short = 't', long)]
    pub token: Option<String>,
    #[arg(short = 'u', long)]
    pub url: Option<String>,
    /// Every runner in config.toml.
    #[arg(long)]
    pub all_runners: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The job to run (a parallel job's name runs all its instances). Default: the whole pipeline.
    pub job: Option<String>,
    /// List the jobs the pipeline runs for this commit, in run order, instead of running them.
    #[arg(long)]
    pub list: bool,
    /// With JOB: also run the jobs it waits for (its `needs`, or every job of the earlier stages).
    #[arg(long, requires = "job")]
    pub needs: bool,
    /// Run manual jobs too, as if someone started them in GitLab (a manual JOB named alone always runs).
    #[arg(long)]
    pub manual: bool,
    /// Project directory (default: the current directory).
    #[arg(short = 'C', long = "directory")]
    pub directory: Option<PathBuf>,
    /// Pipeline file, relative to the project directory.
    #[arg(short = 'f', long = "file", default_value = ".gitlab-ci.yml")]
    pub file: PathBuf,
    /// A variable for the whole pipeline, KEY=VALUE (repeatable): seen by `rules:` and every job, and
    /// winning over the file's variables, like a variable given when running a pipeline in GitLab.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Where job checkouts, caches and artifacts are kept (default:
    /// $XDG_CACHE_HOME/glrunner/exec/<project>-<hash>, ~/.cache/… without XDG_CACHE_HOME).
    #[arg(long, env = "GLRUNNER_EXEC_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Executor: shell (on this machine) or kubernetes (a pod per job, in the cluster of the
    /// kubeconfig: KUBECONFIG or ~/.kube/config).
    #[arg(long, default_value = "shell")]
    pub executor: String,
    /// With --executor kubernetes: the kubeconfig context (default: its current context).
    #[arg(long, value_name = "CONTEXT")]
    pub kube_context: Option<String>,
    /// With --executor kubernetes: the namespace of the job pods (default: the context's namespace,
    /// else `default`).
    #[arg(long, value_name = "NAMESPACE")]
    pub kube_namespace: Option<String>,
    /// With --executor kubernetes: the image of jobs that name none.
    #[arg(long, value_name = "IMAGE")]
    pub kube_image: Option<String>,
    /// With --executor kubernetes: the helper image (the glrunner image).
    #[arg(long, value_name = "IMAGE")]
    pub kube_helper_image: Option<String>,
    /// How many jobs run at once, each in its own checkout (CI_CONCURRENT_ID): jobs start as soon as
    /// the jobs they wait for are done. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<std::num::NonZeroUsize>,
}
