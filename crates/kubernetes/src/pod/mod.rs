//! The job pod: [`PodPlan::build`] turns `[runners.kubernetes]`, the job payload and the job's final
//! variables into the k8s-openapi objects one job needs, with no I/O:
//!
//! - the **Pod**: init container `init-permissions` (prepares the shared volumes), containers `build`,
//!   `helper` and one per service; volumes `repo` (the builds dir), `scripts`, `logs`, `cache` (when
//!   no S3 cache), `variables` (the job's Secret) and every user volume; placement, security and
//!   resources from the configuration and the overwrites it allows;
//! - the **variables Secret**: masked, non-public and file variables and the job token (design
//!   decision 7: they never appear in the pod spec; containers read them through `secretKeyRef` and
//!   the read-only `variables` mount);
//! - the **registry Secret** (`kubernetes.io/dockerconfigjson`) from `DOCKER_AUTH_CONFIG` and the
//!   payload's credentials, when there are any;
//! - a ClusterIP **Service** for each service that declares ports;
//! - with `pod_disruption_budget = true`, a `policy/v1` **PodDisruptionBudget** named like the pod
//!   ([`PodPlan::disruption_budget`]), made once the pod's uid is known.
//!
//! Every object carries the identity labels ([`LABEL_SYSTEM_ID`], [`LABEL_JOB_ID`], [`LABEL_POD`]).
//! Before returning, the whole pod is searched for masked values, tokens and registry passwords, so
//! a `pod_annotations = { x = "$SECRET" }` fails the job instead of publishing the secret.

mod env;
mod error;
mod guard;
mod images;
mod metadata;
mod placement;
mod registry;
mod resources;
mod security;
mod services;
mod volumes;

#[cfg(test)]
mod tests;

pub use env::JOB_TOKEN_KEY;
pub use error::SpecError;
pub use guard::Guard;
pub use images::{DEFAULT_HELPER_IMAGE, parse_pull_policy};
pub use metadata::{
    LABEL_JOB_ID, LABEL_MANAGED_BY, LABEL_POD, LABEL_SYSTEM_ID, MANAGED_BY, is_protected,
};
pub use placement::{NAMESPACE_OVERWRITE, SERVICE_ACCOUNT_OVERWRITE};
pub use registry::{DOCKER_CONFIG_KEY, DOCKER_CONFIG_TYPE};
pub use security::DEFAULT_CAP_DROP;
pub use volumes::RESERVED_NAMES;

use crate::names;
use glrunner_config::KubernetesConfig;
use glrunner_config::kubernetes::{LifecycleHandler, PullPolicy};
use glrunner_job::helper::JOB_TOKEN_ENV;
use glrunner_job::{JobPaths, RunnerContext, Variables};
use glrunner_protocol::JobResponse;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, HTTPHeader, Lifecycle, LifecycleHandler as KubeHandler,
    LocalObjectReference, Pod, PodSpec, Secret, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, TCPSocketAction, Volume,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::fmt;

pub const BUILD_CONTAINER: &str = "build";
pub const HELPER_CONTAINER: &str = "helper";
pub const INIT_CONTAINER: &str = "init-permissions";
/// The builds dir when `builds_dir` is not set.
pub const DEFAULT_BUILDS_DIR: &str = "/builds";
/// The local cache dir when `cache_dir` is not set.
pub const DEFAULT_CACHE_DIR: &str = "/cache";
/// The most data glrunner puts in one Secret (Kubernetes refuses objects over 1 MiB).
pub const MAX_SECRET_DATA: usize = 1024 * 1024 - 8 * 1024;

/// The shell every job container starts as its first process: the first bash, else the first sh,
/// found in the image, reading stage commands from stdin (the attach model).
pub const DETECT_SHELL: &str = "for shell in /usr/local/bin/bash /usr/bin/bash /bin/bash \
/usr/local/bin/sh /usr/bin/sh /bin/sh /busybox/sh; do if [ -x \"$shell\" ]; then exec \"$shell\"; fi; \
done; echo 'glrunner: this image has no bash or sh (looked in /usr/local/bin, /usr/bin, /bin and \
/busybox); use an image with a shell' >&2; exit 1";

/// The builds dir of Kubernetes jobs (`builds_dir`, default `/builds`).
pub fn builds_dir(ctx: &RunnerContext) -> String {
    dir_or(ctx.builds_dir.as_deref(), DEFAULT_BUILDS_DIR)
}

/// The local cache dir as job containers see it (`cache_dir`, default `/cache`).
pub fn cache_dir(ctx: &RunnerContext) -> String {
    dir_or(ctx.cache_dir.as_deref(), DEFAULT_CACHE_DIR)
}

/// A configured directory, or `default` when it is unset, empty or not UTF-8.
fn dir_or(dir: Option<&std::path::Path>, default: &str) -> String {
    dir.and_then(|d| d.to_str())
        .filter(|d| !d.is_empty())
        .unwrap_or(default)
        .to_owned()
}

/// Where a job's stage scripts (and the files the executor sends along) are in its pod:
/// `<scripts_base_dir>/scripts-<project>-<job>`.
pub fn scripts_dir(config: &KubernetesConfig, job: &JobResponse) -> String {
    let base = config
        .scripts_base_dir
        .clone()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    format!("{base}/scripts-{}-{}", job.job_info.project_id, job.id)
}

/// The job's directories: `<builds>/<project path>`, or gitlab-runner's shared layout
/// (`<builds>/<short token>/<concurrent id>/<project path>`) when a volume that outlives the pod
/// (host_path, pvc, csi, nfs) is mounted at the builds dir, so concurrent jobs never share a checkout.
pub fn job_paths(config: &KubernetesConfig, ctx: &RunnerContext, job: &JobResponse) -> JobPaths {
    let builds = builds_dir(ctx);
    let b = builds.trim_end_matches('/');
    let v = &config.volumes;
    let persistent = v
        .host_path
        .iter()
        .map(|x| &x.mount_path)
        .chain(v.pvc.iter().map(|x| &x.mount_path))
        .chain(v.csi.iter().map(|x| &x.mount_path))
        .chain(v.nfs.iter().map(|x| &x.mount_path))
        .any(|p| p.trim_end_matches('/') == b);
    if persistent {
        JobPaths::shared(&builds, ctx, job)
    } else {
        JobPaths::isolated(&builds, ctx, job)
    }
}

/// What the runner contributes to one job's pod.
#[derive(Debug, Clone)]
pub struct JobContext<'a> {
    pub runner: &'a RunnerContext,
    pub paths: &'a JobPaths,
    /// The job's final, expanded variables (`glrunner_job::variables::build`).
    pub variables: &'a Variables,
    /// The random part of the job's object names (8 of `[a-z0-9]`).
    pub name_suffix: String,
}

impl<'a> JobContext<'a> {
    /// A context with a fresh random name suffix.
    pub fn new(runner: &'a RunnerContext, paths: &'a JobPaths, variables: &'a Variables) -> Self {
        Self {
            runner,
            paths,
            variables,
            name_suffix: names::random_suffix(),
        }
    }
}

/// Everything one job creates in the cluster, and where things are inside its pod.
#[derive(Clone)]
pub struct PodPlan {
    pub name: String,
    pub namespace: String,
    pub pod: Pod,
    /// The job's variables Secret; create it before the pod.
    pub variables_secret: Secret,
    /// Pull credentials; create it before the pod.
    pub registry_secret: Option<Secret>,
    /// ClusterIP Services for services with ports; create them after the pod, owned by it.
    pub services: Vec<Service>,
    /// The labels on every object of this job.
    pub labels: BTreeMap<String, String>,
    /// Container name → pull policies in fallback order (the pod uses the first; after an image
    /// pull failure the pod is recreated with the next). Empty: Kubernetes' default.
    pub pull_policies: BTreeMap<String, Vec<PullPolicy>>,
    /// Where stage scripts are written (`/scripts-<project>-<job>`).
    pub scripts_dir: String,
    /// Where stage output is teed (`/logs-<project>-<job>`; the log file is `output.log`).
    pub logs_dir: String,
    /// Where the variables Secret is mounted (read-only) in the build and helper containers.
    pub secrets_dir: String,
    /// Names of the variables that reach containers through the Secret, in order.
    pub secret_variables: Vec<String>,
    /// Things that were ignored, for the job's trace.
    pub warnings: Vec<String>,
}

impl fmt::Debug for PodPlan {
    // Secrets hold variable values: only their names and keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |s: &Secret| -> Vec<String> {
            s.data
                .as_ref()
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default()
        };
        f.debug_struct("PodPlan")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("variables_secret_keys", &keys(&self.variables_secret))
            .field(
                "registry_secret",
                &self.registry_secret.as_ref().map(|s| &s.metadata.name),
            )
            .field("services", &self.services.len())
            .field("labels", &self.labels)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl PodPlan {
    /// Build the objects for `job`.
    pub fn build(
        config: &KubernetesConfig,
        job: &JobResponse,
        ctx: &JobContext<'_>,
    ) -> Result<PodPlan, SpecError> {
        let builder = Builder::new(config, job, ctx);
        let mut guard = Guard::default();
        // Whatever went wrong, the message never shows a secret.
        builder
            .build(&mut guard)
            .map_err(|e| e.map_text(|s| guard.redact(s)))
    }

    /// A label selector (`k=v,…`) for every object of this job.
    pub fn selector(&self) -> String {
        self.job_labels()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Make the pod (created with `uid`) the owner of the job's Secrets and Services, so Kubernetes
    /// deletes them with it.
    pub fn set_owner(&mut self, uid: &str) {
        let owner = owner_reference(&self.name, uid);
        let mut objects: Vec<&mut ObjectMeta> = vec![&mut self.variables_secret.metadata];
        if let Some(s) = &mut self.registry_secret {
            objects.push(&mut s.metadata);
        }
        objects.extend(self.services.iter_mut().map(|s| &mut s.metadata));
        for meta in objects {
            meta.owner_references = Some(vec![owner.clone()]);
        }
    }

    /// After an image pull failure of `container`: switch it to its next pull policy (the pod must
    /// then be created again) and return that policy, or `None` when there is no other policy to try.
    pub fn next_pull_policy(&mut self, container: &str) -> Option<PullPolicy> {
        let policies = self.pull_policies.get(container)?;
        let spec = self.pod.spec.as_mut()?;
        let c = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
            .find(|c| c.name == container)?;
        let current = c.image_pull_policy.as_deref()?;
        let at = policies.iter().position(|p| p.as_kubernetes() == current)?;
        let next = *policies.get(at + 1)?;
        c.image_pull_policy = Some(next.as_kubernetes().to_owned());
        Some(next)
    }

    /// The job's PodDisruptionBudget (`pod_disruption_budget = true`): named like the pod, with the
    /// job's identity labels (the sweep finds it by them), owned by the pod created with `uid` (it goes
    /// with the pod), and `minAvailable: 1` over exactly this pod, so a drain or an autoscaler's
    /// Eviction API call is refused while the job runs.
    pub fn disruption_budget(&self, uid: &str) -> PodDisruptionBudget {
        let selector: BTreeMap<String, String> = self
            .job_labels()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels.clone()),
                owner_references: Some(vec![owner_reference(&self.name, uid)]),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(selector),
                    match_expressions: None,
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }
    }

    /// The labels that single out this job's objects (all but `managed-by`).
    fn job_labels(&self) -> impl Iterator<Item = (&String, &String)> {
        self.labels.iter().filter(|(k, _)| *k != LABEL_MANAGED_BY)
    }

    /// The log file stages append to.
    pub fn log_file(&self) -> String {
        format!("{}/output.log", self.logs_dir)
    }
}

/// An owner reference to the pod `name` with `uid` (garbage collection in the background).
pub fn owner_reference(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Pod".to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// POSIX single-quoting for `sh -c` (the init container may have no bash).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn lifecycle_handler(h: &LifecycleHandler) -> KubeHandler {
    KubeHandler {
        exec: h.exec.as_ref().map(|e| ExecAction {
            command: Some(e.command.clone()),
        }),
        http_get: h.http_get.as_ref().map(|g| HTTPGetAction {
            host: g.host.clone(),
            path: g.path.clone(),
            port: IntOrString::Int(i32::try_from(g.port).unwrap_or_default()),
            scheme: g.scheme.clone(),
            http_headers: (!g.http_headers.is_empty()).then(|| {
                g.http_headers
                    .iter()
                    .map(|h| HTTPHeader {
                        name: h.name.clone(),
                        value: h.value.clone(),
                    })
                    .collect()
            }),
            ..HTTPGetAction::default()
        }),
        tcp_socket: h.tcp_socket.as_ref().map(|t| TCPSocketAction {
            host: t.host.clone(),
            port: IntOrString::Int(i32::try_from(t.port).unwrap_or_default()),
        }),
        ..KubeHandler::default()
    }
}

fn opt_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// A valid Service port name for `port`.
fn port_name(port: &glrunner_protocol::Port) -> String {
    let valid = |n: &str| {
        n.len() <= 15
            && names::is_dns_label(n)
            && n.bytes().any(|b| b.is_ascii_lowercase())
            && !n.contains("--")
    };
    match port.name.as_deref() {
        Some(n) if valid(n) => n.to_owned(),
        _ => format!("port-{}", port.number),
    }
}

struct Builder<'a> {
    config: &'a KubernetesConfig,
    job: &'a JobResponse,
    ctx: &'a JobContext<'a>,
    vars: &'a Variables,
    guard: Guard,
    warnings: Vec<String>,
}

impl<'a> Builder<'a> {
    fn new(config: &'a KubernetesConfig, job: &'a JobResponse, ctx: &'a JobContext<'a>) -> Self {
        Self {
            config,
            job,
            ctx,
            vars: ctx.variables,
            guard: Guard::default(),
            warnings: Vec::new(),
        }
    }

    /// Every value that must not reach the pod spec, with what it is.
    fn sensitive(&self, registry: &registry::RegistryAuths) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for v in self.vars.iter().chain(self.job.variables.iter()) {
            if v.masked {
                out.push((v.value.clone(), format!("the masked variable {}", v.key)));
            }
        }
        for value in glrunner_job::masked_values(self.job) {
            let what = if value == self.job.token.expose() {
                "the job token".to_owned()
            } else {
                "a job secret (token or masked value)".to_owned()
            };
            out.push((value, what));
        }
        for c in &self.job.credentials {
            out.push((
                c.password.expose().to_owned(),
                format!("the registry password for {}", c.url),
            ));
        }
        out.extend(registry.secrets());
        out
    }

    /// Build the plan; `guard_out` gets the guard, so errors can be redacted.
    fn build(mut self, guard_out: &mut Guard) -> Result<PodPlan, SpecError> {
        let (config, job, ctx, vars) = (self.config, self.job, self.ctx, self.vars);
        let registry = registry::collect(job, vars);
        self.guard = Guard::new(self.sensitive(&registry));
        *guard_out = self.guard.clone();
        self.warnings.extend(registry.warnings.iter().cloned());
        let guard = self.guard.clone();
        let redact = move |s: &str| guard.redact(s);

        // Identity.
        let runner = ctx.runner;
        let concurrent = runner.concurrent_project_id.unwrap_or(runner.concurrent_id);
        let unique =
            names::project_unique_name(&runner.short_token, job.job_info.project_id, concurrent);
        let suffix = names::sanitize_dns(&ctx.name_suffix);
        let suffix = if suffix.is_empty() {
            names::random_suffix()
        } else {
            suffix
        };
        let name = names::pod_name(&unique, &suffix);
        let namespace = placement::namespace(config, vars, job.id, &mut self.warnings)?;
        let identity = metadata::identity(&runner.system_id, job.id, &name);
        let meta = |object_name: String| ObjectMeta {
            name: Some(object_name),
            namespace: Some(namespace.clone()),
            labels: Some(identity.clone()),
            ..ObjectMeta::default()
        };

        // Directories.
        let (project, job_id) = (job.job_info.project_id, job.id);
        let base = |b: &Option<String>| {
            b.clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned()
        };
        let scripts_dir = scripts_dir(config, job);
        let logs_dir = format!("{}/logs-{project}-{job_id}", base(&config.logs_base_dir));
        let secrets_dir = format!("/secrets-{project}-{job_id}");
        let builds = ctx.paths.builds_dir.clone();
        let cache = cache_dir(runner);

        // Variables: env entries and the Secret.
        let variables_secret_name = format!("{name}-variables");
        let job_env = env::route(vars, &self.guard, &variables_secret_name);
        let mut secret_data = job_env.secret.clone();
        if !job.token.is_empty() {
            secret_data.insert(JOB_TOKEN_KEY.to_owned(), job.token.expose().to_owned());
        }

        // Images.
        let build_image = images::build_image(config, job.image.as_ref(), vars)?;
        let build_policies =
            images::pull_policies(config, job.image.as_ref(), "the job's image:pull_policy")?;
        let (helper_image, helper_policies) = images::helper(config, vars);
        let (job_uid, job_gid) = images::job_user(config, job.image.as_ref())?;
        let service_specs = services::resolve(
            config,
            &job.services,
            vars,
            &[BUILD_CONTAINER, HELPER_CONTAINER, INIT_CONTAINER],
        )?;

        // Resources.
        let mut res = |t| resources::requirements(config, vars, t, &redact, &mut self.warnings);
        let build_resources = res(resources::Target::Build)?;
        let helper_resources = res(resources::Target::Helper)?;
        let service_resources = res(resources::Target::Service)?;
        let pod_resources = res(resources::Target::Pod)?;

        // Volumes.
        let user = volumes::user_volumes(&config.volumes, vars)?;
        for (dir, what) in [
            (&scripts_dir, "scripts"),
            (&logs_dir, "logs"),
            (&secrets_dir, "variables"),
        ] {
            if user.mounts_at(dir) {
                return Err(SpecError::Volume {
                    kind: "*".into(),
                    name: dir.clone(),
                    problem: format!(
                        "{dir} is where glrunner mounts the job's {what}; mount the volume elsewhere"
                    ),
                });
            }
        }
        let mut pod_volumes: Vec<Volume> = Vec::new();
        let mut shared_mounts = Vec::new();
        if !user.mounts_at(&builds) {
            pod_volumes.push(volumes::empty_dir("repo"));
            shared_mounts.push(volumes::mount("repo", &builds, false));
        }
        pod_volumes.push(volumes::empty_dir("scripts"));
        shared_mounts.push(volumes::mount("scripts", &scripts_dir, false));
        pod_volumes.push(volumes::empty_dir("logs"));
        shared_mounts.push(volumes::mount("logs", &logs_dir, false));
        let s3_cache = runner
            .cache
            .as_ref()
            .is_some_and(|c| c.cache_type.eq_ignore_ascii_case("s3"));
        let mut job_mounts = shared_mounts.clone();
        if !s3_cache && !user.mounts_at(&cache) {
            pod_volumes.push(volumes::empty_dir("cache"));
            job_mounts.push(volumes::mount("cache", &cache, false));
        }
        pod_volumes.push(Volume {
            name: "variables".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(variables_secret_name.clone()),
                default_mode: Some(0o444),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        job_mounts.push(volumes::mount("variables", &secrets_dir, true));
        job_mounts.extend(user.mounts.iter().cloned());
        shared_mounts.extend(user.mounts.iter().cloned());
        pod_volumes.extend(user.volumes.iter().cloned());

        // Containers.
        let first = |p: &[PullPolicy]| p.first().map(|p| p.as_kubernetes().to_owned());
        let honor_entrypoint = vars.bool("FF_KUBERNETES_HONOR_ENTRYPOINT").unwrap_or(false);
        let detect = vec!["sh".to_owned(), "-c".to_owned(), DETECT_SHELL.to_owned()];
        let job_image = job.image.as_ref();
        let (build_command, build_args) = if honor_entrypoint {
            (
                job_image.map(|i| i.entrypoint.clone()).and_then(opt_vec),
                Some(detect.clone()),
            )
        } else {
            (
                Some(detect.clone()),
                job_image.map(|i| i.command.clone()).and_then(opt_vec),
            )
        };
        let mut build_sc = security::container(
            config,
            config.build_container_security_context.as_ref(),
            true,
        );
        if job_uid.is_some() {
            build_sc.run_as_user = job_uid;
        }
        if job_gid.is_some() {
            build_sc.run_as_group = job_gid;
        }
        let lifecycle = config.container_lifecycle.as_ref().map(|l| Lifecycle {
            post_start: l.post_start.as_ref().map(lifecycle_handler),
            pre_stop: l.pre_stop.as_ref().map(lifecycle_handler),
            ..Lifecycle::default()
        });
        let build = Container {
            name: BUILD_CONTAINER.to_owned(),
            image: Some(build_image),
            image_pull_policy: first(&build_policies),
            command: build_command,
            args: build_args,
            stdin: Some(true),
            env: opt_vec(job_env.build.clone().into_vec()),
            volume_mounts: Some(job_mounts.clone()),
            resources: build_resources,
            security_context: Some(build_sc),
            lifecycle,
            ..Container::default()
        };
        let helper_env = (!job.token.is_empty()).then(|| {
            vec![env::from_secret(
                JOB_TOKEN_ENV,
                &variables_secret_name,
                JOB_TOKEN_KEY,
            )]
        });
        let helper = Container {
            name: HELPER_CONTAINER.to_owned(),
            image: Some(helper_image.clone()),
            image_pull_policy: first(&helper_policies),
            command: Some(detect.clone()),
            stdin: Some(true),
            env: helper_env,
            volume_mounts: Some(job_mounts),
            resources: helper_resources.clone(),
            security_context: Some(security::container(
                config,
                config.helper_container_security_context.as_ref(),
                true,
            )),
            ..Container::default()
        };
        let log_file = format!("{logs_dir}/output.log");
        let init = Container {
            name: INIT_CONTAINER.to_owned(),
            image: Some(helper_image),
            image_pull_policy: first(&helper_policies),
            command: Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                format!(
                    "touch {f} && (chmod 666 {f} || exit 0)",
                    f = sh_quote(&log_file)
                ),
            ]),
            volume_mounts: Some(shared_mounts),
            resources: helper_resources,
            security_context: Some(security::container(
                config,
                config.init_permissions_container_security_context.as_ref(),
                false,
            )),
            ..Container::default()
        };
        let mut containers = vec![build, helper];
        let mut pull_policies = BTreeMap::from([
            (BUILD_CONTAINER.to_owned(), build_policies),
            (HELPER_CONTAINER.to_owned(), helper_policies.clone()),
            (INIT_CONTAINER.to_owned(), helper_policies),
        ]);
        let mut service_hostnames = Vec::new();
        let mut kube_services = Vec::new();
        for s in &service_specs {
            let mut env = job_env.services.clone();
            for (k, v) in &s.variables {
                if !glrunner_job::variables::is_valid_name(k) {
                    continue;
                }
                if self.guard.contains_secret(v) {
                    let key = format!("{}.{k}", s.container);
                    secret_data.insert(key.clone(), v.clone());
                    env.set(env::from_secret(k, &variables_secret_name, &key));
                } else {
                    env.set(env::literal(k, v));
                }
            }
            containers.push(Container {
                name: s.container.clone(),
                image: Some(s.image.clone()),
                image_pull_policy: first(&s.pull_policies),
                command: opt_vec(s.entrypoint.clone()),
                args: opt_vec(s.command.clone()),
                env: opt_vec(env.into_vec()),
                volume_mounts: opt_vec(user.mounts.clone()),
                resources: service_resources.clone(),
                security_context: Some(security::container(
                    config,
                    config.service_container_security_context.as_ref(),
                    true,
                )),
                ..Container::default()
            });
            pull_policies.insert(s.container.clone(), s.pull_policies.clone());
            for h in &s.hostnames {
                if !service_hostnames.contains(h) {
                    service_hostnames.push(h.clone());
                }
            }
            if !s.ports.is_empty() {
                let cut = names::MAX_LABEL - suffix.len() - 1;
                let mut base: String = s.container.chars().take(cut).collect();
                base = base.trim_end_matches('-').to_owned();
                if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
                    base = format!("s{}", &base[..base.len().min(cut - 1)]);
                }
                kube_services.push(Service {
                    metadata: meta(format!("{base}-{suffix}")),
                    spec: Some(ServiceSpec {
                        type_: Some("ClusterIP".to_owned()),
                        selector: Some(BTreeMap::from([(LABEL_POD.to_owned(), name.clone())])),
                        ports: Some(
                            s.ports
                                .iter()
                                .map(|p| ServicePort {
                                    name: Some(port_name(p)),
                                    port: i32::from(p.number),
                                    target_port: Some(IntOrString::Int(i32::from(p.number))),
                                    protocol: Some("TCP".to_owned()),
                                    ..ServicePort::default()
                                })
                                .collect(),
                        ),
                        ..ServiceSpec::default()
                    }),
                    ..Service::default()
                });
            }
        }

        // Registry credentials.
        let use_sa_secrets = config.use_service_account_image_pull_secrets == Some(true);
        let registry_secret = (!registry.auths.is_empty() && !use_sa_secrets).then(|| Secret {
            metadata: meta(format!("{name}-registry")),
            type_: Some(DOCKER_CONFIG_TYPE.to_owned()),
            data: Some(BTreeMap::from([(
                DOCKER_CONFIG_KEY.to_owned(),
                ByteString(registry.to_json().into_bytes()),
            )])),
            ..Secret::default()
        });
        let mut pull_secrets: Vec<LocalObjectReference> = Vec::new();
        if !use_sa_secrets {
            for s in &config.image_pull_secrets {
                if !names::is_dns_subdomain(s) {
                    return Err(SpecError::Name {
                        what: "image pull secret".into(),
                        value: s.clone(),
                        source_name: "`image_pull_secrets` in [runners.kubernetes]".into(),
                        problem: "Secret names are lower-case DNS names".into(),
                    });
                }
                pull_secrets.push(LocalObjectReference { name: s.clone() });
            }
            if let Some(s) = &registry_secret {
                pull_secrets.push(LocalObjectReference {
                    name: s.metadata.name.clone().unwrap_or_default(),
                });
            }
        }

        // Placement and metadata.
        let service_account = placement::service_account(config, vars, &mut self.warnings)?;
        let node_selector = placement::node_selector(config, vars, &redact, &mut self.warnings)?;
        let tolerations = placement::tolerations(config, vars, &redact, &mut self.warnings)?;
        let (dns_policy, dns_config) = placement::dns(config)?;
        let host_aliases = placement::host_aliases(config, &service_hostnames)?;
        let inputs = metadata::Inputs {
            config,
            job,
            vars,
            unique_name: &unique,
            runner_name: &runner.name,
            short_token: &runner.short_token,
            redact: &redact,
        };
        let labels = metadata::pod_labels(&inputs, &identity, &mut self.warnings)?;
        let annotations = metadata::pod_annotations(&inputs, &mut self.warnings)?;
        if let Some(v) = config
            .pod_termination_grace_period_seconds
            .filter(|v| *v < 0)
        {
            return Err(SpecError::Negative {
                key: "pod_termination_grace_period_seconds".to_owned(),
                value: v,
            });
        }
        let deadline = vars
            .bool("FF_USE_POD_ACTIVE_DEADLINE_SECONDS")
            .unwrap_or(true)
            .then(|| {
                i64::try_from(job.timeout_seconds())
                    .unwrap_or(i64::MAX - 1)
                    .saturating_add(1)
            });
        if !config.pod_spec.is_empty() {
            self.warnings.push(
                "[[runners.kubernetes.pod_spec]] patches are not supported by glrunner yet and were not \
                 applied; express the change with the dedicated [runners.kubernetes] keys"
                    .to_owned(),
            );
        }

        let text = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(vec![init]),
                containers,
                volumes: Some(pod_volumes),
                restart_policy: Some("Never".to_owned()),
                service_account_name: service_account,
                automount_service_account_token: config.automount_service_account_token,
                node_selector,
                tolerations,
                affinity: placement::affinity(config),
                image_pull_secrets: opt_vec(pull_secrets),
                host_aliases,
                dns_policy,
                dns_config,
                security_context: security::pod(config),
                termination_grace_period_seconds: config.pod_termination_grace_period_seconds,
                active_deadline_seconds: deadline,
                runtime_class_name: text(&config.runtime_class_name),
                priority_class_name: text(&config.priority_class_name),
                scheduler_name: text(&config.scheduler_name),
                resources: pod_resources,
                // Per-job Services would otherwise add variables to every later pod in the namespace.
                enable_service_links: Some(false),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };

        // Nothing secret may be in the pod or the Services.
        let check = |value: serde_json::Result<serde_json::Value>| -> Result<(), SpecError> {
            let Ok(value) = value else { return Ok(()) };
            match self.guard.scan(&value) {
                Some((path, what)) => Err(SpecError::SecretInPodSpec {
                    hint: hint(&path),
                    what,
                    path,
                }),
                None => Ok(()),
            }
        };
        check(serde_json::to_value(&pod))?;
        for s in &kube_services {
            check(serde_json::to_value(s))?;
        }

        let size: usize = secret_data.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_SECRET_DATA {
            return Err(SpecError::SecretTooLarge {
                size,
                max: MAX_SECRET_DATA,
            });
        }
        let variables_secret = Secret {
            metadata: meta(variables_secret_name),
            type_: Some("Opaque".to_owned()),
            data: Some(
                secret_data
                    .into_iter()
                    .map(|(k, v)| (k, ByteString(v.into_bytes())))
                    .collect(),
            ),
            ..Secret::default()
        };

        Ok(PodPlan {
            name,
            namespace,
            pod,
            variables_secret,
            registry_secret,
            services: kube_services,
            labels: identity,
            pull_policies,
            scripts_dir,
            logs_dir,
            secrets_dir,
            secret_variables: job_env.secret_names,
            warnings: self.warnings,
        })
    }
}

/// Where a secret found at `path` most likely came from.
fn hint(path: &str) -> String {
    if path.starts_with("metadata.labels") {
        "`pod_labels` or a KUBERNETES_POD_LABELS_* variable".to_owned()
    } else if path.starts_with("metadata.annotations") {
        "`pod_annotations` or a KUBERNETES_POD_ANNOTATIONS_* variable".to_owned()
    } else if path.ends_with(".image") {
        "the image name in .gitlab-ci.yml or `image`/`helper_image` in [runners.kubernetes]"
            .to_owned()
    } else if path.contains("volume") || path.contains("mountPath") || path.contains("subPath") {
        "[runners.kubernetes.volumes]".to_owned()
    } else {
        "the [runners.kubernetes] setting or job variable that produced it".to_owned()
    }
}
