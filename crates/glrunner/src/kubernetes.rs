//! The Kubernetes executor at the binary's edge: connecting at start-up (saying how and as whom:
//! K5, K6), the permission and object checks (K1–K4; only a configuration that can never work
//! refuses to start), the sweep of what a previous run of this manager left (P2) — failing those jobs
//! in GitLab with a reason, with the job token their Secret kept — and the factory the manager gets.

use glrunner_config::KubernetesConfig;
use glrunner_gitlab::GitLabClient;
use glrunner_job::{Executor, RunnerContext};
use glrunner_kubernetes::connection::{ConnectOptions, connect};
use glrunner_kubernetes::executor::{self, Cluster};
use glrunner_kubernetes::sweep::{self, Orphan};
use glrunner_manager::ExecutorFactory;
use glrunner_protocol::request::{FeaturesInfo, JobState, UpdateJobRequest, VersionInfo};
use glrunner_protocol::{FailureReason, JobResponse};
use std::sync::Arc;

/// Hands the manager a Kubernetes executor per job.
pub struct KubernetesFactory {
    cluster: Arc<Cluster>,
}

impl ExecutorFactory for KubernetesFactory {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn features(&self, features: &mut FeaturesInfo) {
        executor::features_info(features);
    }

    fn create(
        &self,
        _job: &JobResponse,
        _ctx: &RunnerContext,
    ) -> Result<Box<dyn Executor>, String> {
        Ok(Box::new(self.cluster.executor()))
    }
}

/// Why the Kubernetes executor cannot start at all.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("runner {name:?}: {source}")]
    Connect {
        name: String,
        #[source]
        source: glrunner_kubernetes::connection::ConnectError,
    },
    #[error("runner {name:?}: {message}")]
    Refused { name: String, message: String },
}

/// Connect, say how and as whom, and check what the configuration needs.
pub async fn start(
    name: &str,
    config: Option<&KubernetesConfig>,
    system_id: &str,
) -> Result<Arc<Cluster>, StartError> {
    let config = config.cloned().unwrap_or_default();
    let conn = connect(&config, &ConnectOptions::default())
        .await
        .map_err(|source| StartError::Connect {
            name: name.to_owned(),
            source,
        })?;
    let cluster = Cluster::new(&conn, config, system_id);
    let report = cluster.preflight().await;
    tracing::info!(
        runner = %name,
        server = %conn.server,
        via = %conn.source,
        user = %report.user.as_deref().unwrap_or("unknown (the API server did not say)"),
        namespace = %cluster.config().namespace(),
        "Kubernetes: connected to {} using {}, as {}; jobs run in namespace {}",
        conn.server,
        conn.source,
        report.user.as_deref().unwrap_or("an identity the API server did not name"),
        cluster.config().namespace()
    );
    for p in &report.problems {
        tracing::warn!(runner = %name, "Kubernetes: {}", p.message);
    }
    if report.fatal {
        return Err(StartError::Refused {
            name: name.to_owned(),
            message: report.to_string(),
        });
    }
    Ok(cluster)
}

pub fn factory(cluster: Arc<Cluster>) -> Arc<dyn ExecutorFactory> {
    Arc::new(KubernetesFactory { cluster })
}

/// Delete what a previous run of this manager left in the job namespace and fail its jobs in GitLab.
pub async fn sweep(
    name: &str,
    cluster: &Cluster,
    system_id: &str,
    client: &GitLabClient,
    info: &VersionInfo,
) {
    if cluster.config().namespace_per_job == Some(true) {
        return;
    }
    let namespace = cluster.config().namespace();
    let swept = match sweep::sweep(cluster.kube(), namespace, system_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(runner = %name, "Kubernetes: the start-up sweep of namespace {namespace} failed, so objects of jobs from before a restart may be left: {e}");
            return;
        }
    };
    if !swept.deleted.is_empty() {
        tracing::warn!(
            runner = %name,
            deleted = %swept.deleted.join(", "),
            "Kubernetes: deleted {} object(s) a previous run of this manager (system ID {system_id}) left in namespace {namespace}",
            swept.deleted.len()
        );
    }
    for orphan in &swept.orphans {
        fail_orphan(name, orphan, namespace, system_id, client, info).await;
    }
}

async fn fail_orphan(
    name: &str,
    orphan: &Orphan,
    namespace: &str,
    system_id: &str,
    client: &GitLabClient,
    info: &VersionInfo,
) {
    let id = orphan.job_id;
    let Some(token) = orphan.token.clone() else {
        tracing::warn!(runner = %name, job = id, "Kubernetes: job {id} was left running by a previous run, but its token is gone, so GitLab cannot be told; it fails when its timeout passes");
        return;
    };
    let pod = orphan
        .pod
        .as_deref()
        .map(|p| format!(" in pod {namespace}/{p}"))
        .unwrap_or_default();
    let line = glrunner_trace::format::error_text(&format!(
        "Job failed (system failure): glrunner (system ID {system_id}) was restarted while this job ran{pod}; its pod \
         was deleted at start-up. Retry the job"
    ));
    // Append to the trace GitLab has: the first PATCH learns its length (416 Range).
    let body = bytes::Bytes::from(format!("\n{line}"));
    let mut offset = 0u64;
    for _ in 0..2 {
        match client
            .patch_trace(id, &token, offset, body.clone(), false)
            .await
        {
            Ok(r) if r.status == 416 => offset = r.range_end.unwrap_or(offset),
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(job = id, "appending to the trace failed: {e}");
                break;
            }
        }
    }
    let request = UpdateJobRequest {
        info: info.clone(),
        token,
        state: JobState::Failed,
        failure_reason: Some(FailureReason::RunnerSystemFailure.as_str().to_owned()),
        ..UpdateJobRequest::default()
    };
    match client.update_job(id, &request).await {
        Ok(r) if r.status < 300 => tracing::warn!(
            runner = %name,
            job = id,
            "Kubernetes: job {id} was running{pod} when this manager stopped; it was failed in GitLab (runner_system_failure)"
        ),
        Ok(r) => {
            tracing::info!(runner = %name, job = id, status = r.status, "Kubernetes: GitLab did not take the final update of job {id} left by a previous run (it has probably finished or been canceled)")
        }
        Err(e) => {
            tracing::info!(runner = %name, job = id, "Kubernetes: job {id} left by a previous run could not be failed in GitLab: {e}")
        }
    }
}

/// The name of the project's sources in a job's scripts directory (`glrunner exec`).
const SOURCES_FILE: &str = "sources.bundle";
/// The largest sources `glrunner exec` sends into a pod.
const MAX_SOURCES: u64 = 200 * 1024 * 1024;

/// `glrunner exec --executor kubernetes`: jobs of a local pipeline in pods of the cluster the
/// kubeconfig names. The project's sources reach each pod as a git bundle of exec's snapshot
/// repository, sent with the stage scripts, so the cluster needs no access to this machine.
pub struct Exec {
    cluster: Arc<Cluster>,
    /// The bundle, shared by every job's executor.
    sources: Arc<[u8]>,
}

/// What `glrunner exec` lets a user set for Kubernetes.
#[derive(Debug, Clone, Default)]
pub struct ExecSettings {
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub image: Option<String>,
    pub helper_image: Option<String>,
}

impl Exec {
    /// Connect with the kubeconfig (`KUBECONFIG`, else `~/.kube/config`) and check permissions,
    /// printing what was found.
    pub async fn connect(settings: &ExecSettings) -> Result<Self, crate::commands::Failure> {
        use crate::commands::Failure;
        let mut config = KubernetesConfig {
            context: settings.context.clone(),
            image: settings.image.clone(),
            helper_image: settings.helper_image.clone(),
            ..KubernetesConfig::default()
        };
        let conn = connect(&config, &ConnectOptions::default())
            .await
            .map_err(Failure::config)?;
        config.namespace = settings
            .namespace
            .clone()
            .or_else(|| conn.home_namespace.clone());
        // exec's system ID (its RunnerContext's); its pods are deleted on every exit path instead of
        // swept, as several exec runs may share it.
        let cluster = Cluster::new(&conn, config, "local");
        let report = cluster.preflight().await;
        println!(
            "glrunner exec: Kubernetes at {} ({}), as {}; jobs run in namespace {}",
            conn.server,
            conn.source,
            report
                .user
                .as_deref()
                .unwrap_or("an identity the API server did not name"),
            cluster.config().namespace()
        );
        for p in &report.problems {
            println!("WARNING: {}", p.message);
        }
        if report.fatal {
            return Err(Failure::config(report.to_string()));
        }
        Ok(Self {
            cluster,
            sources: Arc::from(Vec::new()),
        })
    }

    /// Bundle the snapshot repository `repo` (every ref and HEAD) for the pods.
    pub fn bundle_sources(
        &mut self,
        repo: &std::path::Path,
    ) -> Result<(), crate::commands::Failure> {
        use crate::commands::Failure;
        let tmp = tempfile::Builder::new()
            .prefix("glrunner-sources-")
            .suffix(".bundle")
            .tempfile()
            .map_err(|e| {
                Failure::other(format!(
                    "a temporary file for the project's sources could not be made: {e}"
                ))
            })?;
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["bundle", "create", "--quiet"])
            .arg(tmp.path())
            .args(["--all", "HEAD"])
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| {
                Failure::other(format!(
                    "git could not be run to bundle the project's sources: {e}"
                ))
            })?;
        if !out.status.success() {
            return Err(Failure::other(format!(
                "bundling the project's sources for the pods failed: `git bundle create` said: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let size = std::fs::metadata(tmp.path()).map(|m| m.len()).unwrap_or(0);
        if size > MAX_SOURCES {
            return Err(Failure::config(format!(
                "the project's git history is {size} bytes, more than the {MAX_SOURCES} glrunner exec sends into a pod\n  \
                 fix: run it with --executor shell, or from a shallow clone of the project"
            )));
        }
        let bytes = std::fs::read(tmp.path())
            .map_err(|e| Failure::other(format!("the bundled sources could not be read: {e}")))?;
        self.sources = Arc::from(bytes);
        Ok(())
    }

    /// Make `job` fetch from the bundle in its pod instead of this machine's snapshot.
    pub fn point_at_sources(&self, job: &mut JobResponse) {
        let path = format!(
            "{}/{SOURCES_FILE}",
            glrunner_kubernetes::pod::scripts_dir(self.cluster.config(), job)
        );
        job.git_info.repo_url = glrunner_protocol::Secret::new(path);
    }

    /// The runner side of a job in a pod: the pod's paths, no local artifacts (a pod cannot write
    /// to this machine).
    pub fn runner_context(&self, base: &RunnerContext) -> RunnerContext {
        RunnerContext {
            executor: "kubernetes".to_owned(),
            builds_dir: None,
            cache_dir: None,
            local_artifacts: None,
            ..base.clone()
        }
    }

    /// An executor for one job, carrying the sources.
    pub fn executor(&self) -> Box<dyn Executor> {
        Box::new(
            self.cluster
                .executor()
                .with_file(SOURCES_FILE, self.sources.clone()),
        )
    }
}
