//! Pod specs from realistic configurations: the field-notes setup (manager in `ci-system`, jobs in
//! `ci-jobs`, a private CA as a secret volume, host aliases for the internal GitLab), DinD, DooD,
//! resource overwrites, tricky service names, and every way bad input is refused.

use super::*;
use base64::Engine;
use glrunner_job::variables::{self, VariableSources};
use k8s_openapi::api::core::v1::{Container, EnvVar};

const TOKEN: &str = "glcbt-64_jobtokenvalue1234";
const MASKED: &str = "dk-7f3a9c2e5b1d-masked";
const FILE_CONTENT: &str = "apiVersion: v1\nkind: Config\n# kubeconfig-secret-content\n";
const REGISTRY_AUTH: &str = "cHJpdmF0ZTpyZWdpc3RyeS1wYXNzd29yZA==";
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB-private-ca\n-----END CERTIFICATE-----\n";

const SEED_CONFIG: &str = r#"
namespace = "ci-jobs"
image = "alpine:3.20"
service_account = "ci-job"
cpu_request = "500m"
cpu_limit = "2"
cpu_limit_overwrite_max_allowed = "4"
memory_request = "1Gi"
memory_limit = "2Gi"
memory_limit_overwrite_max_allowed = "4Gi"
helper_cpu_request = "100m"
helper_memory_request = "128Mi"
helper_memory_limit = "256Mi"
service_memory_limit = "512Mi"
poll_timeout = 600
pull_policy = ["if-not-present", "always"]
image_pull_secrets = ["regcred"]

[node_selector]
"kubernetes.io/os" = "linux"
"node-role.example/ci" = "true"

[node_tolerations]
"ci=true" = "NoSchedule"
"dedicated" = "NoExecute"

[pod_labels]
team = "platform"
project = "$CI_PROJECT_NAME"

[pod_annotations]
"example.com/job" = "$CI_JOB_ID"

[[host_aliases]]
ip = "10.20.0.5"
hostnames = ["gitlab.internal.example", "registry.internal.example"]

[[volumes.secret]]
name = "gitlab-ca"
mount_path = "/etc/ssl/certs/gitlab-ca.crt"
sub_path = "ca.crt"
read_only = true

[[volumes.empty_dir]]
name = "scratch"
mount_path = "/scratch"
medium = "Memory"
size_limit = "1Gi"
"#;

fn seed_job() -> JobResponse {
    let json = serde_json::json!({
        "id": 4242,
        "token": TOKEN,
        "job_info": {"id": 4242, "name": "build image", "stage": "build", "project_id": 77,
                     "project_name": "shop", "project_full_path": "acme/web/shop",
                     "namespace_id": 12, "root_namespace_id": 10},
        "git_info": {"repo_url": format!("https://gitlab-ci-token:{TOKEN}@gitlab.internal.example/acme/web/shop.git"),
                     "ref": "main", "sha": "0123abcd", "before_sha": "fedc3210", "ref_type": "branch", "depth": 20},
        "runner_info": {"timeout": 3600},
        "variables": [
            {"key": "CI_JOB_ID", "value": "4242", "public": true, "masked": false},
            {"key": "CI_PROJECT_NAME", "value": "shop", "public": true, "masked": false},
            {"key": "CI_JOB_URL", "value": "https://gitlab.internal.example/acme/web/shop/-/jobs/4242", "public": true, "masked": false},
            {"key": "CI_JOB_TOKEN", "value": TOKEN, "public": false, "masked": true},
            {"key": "CI_REPOSITORY_URL", "value": format!("https://gitlab-ci-token:{TOKEN}@gitlab.internal.example/acme/web/shop.git"), "public": false, "masked": false},
            {"key": "CI_REGISTRY_PASSWORD", "value": TOKEN, "public": false, "masked": true},
            {"key": "DEPLOY_KEY", "value": MASKED, "public": false, "masked": true},
            {"key": "KUBECONFIG_FILE", "value": FILE_CONTENT, "public": false, "masked": false, "file": true},
            {"key": "GREETING", "value": "hello $CI_JOB_ID", "public": true, "masked": false},
            {"key": "DB_URL", "value": "postgres://app:$DEPLOY_KEY@db/app", "public": true, "masked": false},
            {"key": "PRICE", "value": "costs $(five) dollars", "public": true, "masked": false, "raw": true},
            {"key": "DOCKER_AUTH_CONFIG", "value": format!("{{\"auths\":{{\"registry.internal.example:5000\":{{\"auth\":\"{REGISTRY_AUTH}\"}}}}}}"), "public": false, "masked": false}
        ],
        "steps": [{"name": "script", "script": ["make image"], "when": "on_success"}],
        "image": {"name": "registry.internal.example:5000/tools/builder:1.4", "pull_policy": ["if-not-present"]},
        "services": [
            {"name": "postgres:14", "alias": "db"},
            {"name": "registry.internal.example:5000/tools/mock-api:2", "alias": "mock_api, mock-api"},
            {"name": "tutum/wordpress:latest"},
            {"name": "redis:7", "ports": [{"number": 6379, "name": "redis"}],
             "variables": [{"key": "REDIS_ARGS", "value": "--requirepass $DEPLOY_KEY", "public": true}]}
        ],
        "credentials": [{"type": "registry", "url": "registry.internal.example:5000", "username": "gitlab-ci-token", "password": TOKEN}]
    });
    serde_json::from_value(json).expect("payload decodes")
}

fn runner() -> RunnerContext {
    RunnerContext {
        name: "k8s-ci".into(),
        short_token: "Ab1cD2eF3".into(),
        system_id: "s_0123456789ab".into(),
        version: "0.1.0".into(),
        concurrent_id: 2,
        ..RunnerContext::default()
    }
}

fn config(toml_text: &str) -> KubernetesConfig {
    toml::from_str(toml_text).expect("config parses")
}

fn plan_with(
    config: &KubernetesConfig,
    job: &JobResponse,
    runner: &RunnerContext,
) -> Result<PodPlan, SpecError> {
    let paths = job_paths(config, runner, job);
    let (vars, _) = variables::build(&VariableSources {
        job,
        ctx: runner,
        paths: &paths,
        disposable: true,
        ca_chain: Some(CA_PEM),
    });
    let ctx = JobContext {
        runner,
        paths: &paths,
        variables: &vars,
        name_suffix: "abcd1234".into(),
    };
    PodPlan::build(config, job, &ctx)
}

fn plan(config: &KubernetesConfig, job: &JobResponse) -> Result<PodPlan, SpecError> {
    plan_with(config, job, &runner())
}

fn seed_plan() -> PodPlan {
    plan(&config(SEED_CONFIG), &seed_job()).unwrap_or_else(|e| panic!("{e}"))
}

fn spec(p: &PodPlan) -> &PodSpec {
    p.pod.spec.as_ref().expect("pod spec")
}

fn container<'p>(p: &'p PodPlan, name: &str) -> &'p Container {
    let s = spec(p);
    s.containers
        .iter()
        .chain(s.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volume<'p>(p: &'p PodPlan, name: &str) -> &'p Volume {
    spec(p)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn volume_names(p: &PodPlan) -> Vec<&str> {
    spec(p)
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect()
}

fn env<'c>(c: &'c Container, name: &str) -> Option<&'c EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name)
}

fn secret_ref(e: &EnvVar) -> Option<(&str, &str)> {
    let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((r.name.as_str(), r.key.as_str()))
}

fn mounts(c: &Container) -> Vec<(&str, &str)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect()
}

fn secret_value<'s>(s: &'s Secret, key: &str) -> Option<&'s str> {
    let data = s.data.as_ref()?.get(key)?;
    std::str::from_utf8(&data.0).ok()
}

/// Everything a job sends to the API server that others can read, as JSON.
fn public_json(p: &PodPlan) -> String {
    let mut out = serde_json::to_string(&p.pod).unwrap();
    for s in &p.services {
        out.push_str(&serde_json::to_string(s).unwrap());
    }
    out
}

#[test]
fn seed_setup_has_gitlab_runners_layout() {
    let p = seed_plan();
    assert_eq!(p.namespace, "ci-jobs");
    assert_eq!(p.name, "runner-ab1cd2ef3-project-77-concurrent-2-abcd1234");
    assert!(p.name.len() <= 63 && crate::names::is_dns_label(&p.name));
    let s = spec(&p);
    let names: Vec<&str> = s.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "build",
            "helper",
            "db",
            "mock-api",
            "tutum-wordpress",
            "redis"
        ]
    );
    let init = s.init_containers.as_ref().unwrap();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].name, INIT_CONTAINER);
    assert_eq!(init[0].image.as_deref(), Some(DEFAULT_HELPER_IMAGE));
    assert!(init[0].command.as_ref().unwrap()[2].contains("/logs-77-4242/output.log"));

    assert_eq!(s.restart_policy.as_deref(), Some("Never"));
    assert_eq!(s.active_deadline_seconds, Some(3601), "job timeout + 1");
    assert_eq!(s.service_account_name.as_deref(), Some("ci-job"));
    assert_eq!(s.enable_service_links, Some(false));
    let selector = s.node_selector.as_ref().unwrap();
    assert_eq!(selector["kubernetes.io/os"], "linux");
    let tolerations = s.tolerations.as_ref().unwrap();
    let ci = tolerations
        .iter()
        .find(|t| t.key.as_deref() == Some("ci"))
        .unwrap();
    assert_eq!(
        (
            ci.operator.as_deref(),
            ci.value.as_deref(),
            ci.effect.as_deref()
        ),
        (Some("Equal"), Some("true"), Some("NoSchedule"))
    );
    let dedicated = tolerations
        .iter()
        .find(|t| t.key.as_deref() == Some("dedicated"))
        .unwrap();
    assert_eq!(
        (dedicated.operator.as_deref(), dedicated.value.as_deref()),
        (Some("Exists"), None)
    );

    // Services answer on localhost by alias; the internal GitLab name resolves inside the pod.
    let aliases = s.host_aliases.as_ref().unwrap();
    assert_eq!(aliases.len(), 2);
    assert_eq!(aliases[0].ip, "127.0.0.1");
    assert_eq!(
        aliases[0].hostnames.as_deref().unwrap(),
        ["db", "postgres", "mock-api", "tutum-wordpress", "redis"]
    );
    assert_eq!(aliases[1].ip, "10.20.0.5");
    assert_eq!(
        aliases[1].hostnames.as_deref().unwrap(),
        ["gitlab.internal.example", "registry.internal.example"]
    );

    // Volumes: the job's own, then the CA secret and scratch space in every container.
    let volumes = volume_names(&p);
    assert_eq!(
        volumes,
        [
            "repo",
            "scripts",
            "logs",
            "cache",
            "variables",
            "gitlab-ca",
            "scratch"
        ]
    );
    let ca = volume(&p, "gitlab-ca");
    assert_eq!(
        ca.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("gitlab-ca")
    );
    let build = container(&p, "build");
    assert_eq!(
        mounts(build),
        [
            ("repo", "/builds"),
            ("scripts", "/scripts-77-4242"),
            ("logs", "/logs-77-4242"),
            ("cache", "/cache"),
            ("variables", "/secrets-77-4242"),
            ("gitlab-ca", "/etc/ssl/certs/gitlab-ca.crt"),
            ("scratch", "/scratch"),
        ]
    );
    assert_eq!(mounts(container(&p, "helper")), mounts(build));
    let ca_mount = build
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "gitlab-ca")
        .unwrap();
    assert_eq!(
        (ca_mount.sub_path.as_deref(), ca_mount.read_only),
        (Some("ca.crt"), Some(true))
    );
    for name in [INIT_CONTAINER, "db", "mock-api", "tutum-wordpress", "redis"] {
        let m = mounts(container(&p, name));
        assert!(
            m.contains(&("gitlab-ca", "/etc/ssl/certs/gitlab-ca.crt")),
            "{name}: {m:?}"
        );
        assert!(m.contains(&("scratch", "/scratch")), "{name}: {m:?}");
        assert!(
            !m.iter().any(|(n, _)| *n == "variables"),
            "{name} has no secrets"
        );
    }
    assert_eq!(p.scripts_dir, "/scripts-77-4242");
    assert_eq!(p.log_file(), "/logs-77-4242/output.log");

    // Images, pull policies, the shell as PID 1 reading stdin.
    assert_eq!(
        build.image.as_deref(),
        Some("registry.internal.example:5000/tools/builder:1.4")
    );
    assert_eq!(build.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        build.command.as_deref().unwrap(),
        ["sh", "-c", DETECT_SHELL]
    );
    assert_eq!(build.stdin, Some(true));
    let helper = container(&p, "helper");
    assert_eq!(helper.image.as_deref(), Some(DEFAULT_HELPER_IMAGE));
    assert_eq!(
        helper.image_pull_policy.as_deref(),
        Some("IfNotPresent"),
        "pinned helper"
    );
    assert_eq!(
        p.pull_policies["db"],
        [PullPolicy::IfNotPresent, PullPolicy::Always],
        "fallback order kept"
    );
    assert_eq!(
        container(&p, "db").image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );

    // Resources.
    let r = build.resources.as_ref().unwrap();
    assert_eq!(r.limits.as_ref().unwrap()["cpu"].0, "2");
    assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "1Gi");
    let h = helper.resources.as_ref().unwrap();
    assert_eq!(h.limits.as_ref().unwrap()["memory"].0, "256Mi");
    assert_eq!(
        init[0].resources, helper.resources,
        "init uses the helper's resources"
    );
    let svc = container(&p, "db").resources.as_ref().unwrap();
    assert_eq!(svc.limits.as_ref().unwrap()["memory"].0, "512Mi");
    assert!(s.resources.is_none());

    // Security: NET_RAW dropped, privileged never set unless configured.
    for c in s.containers.iter().chain(init) {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, None, "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(),
            ["NET_RAW"]
        );
    }

    // Pull credentials: the configured secret and the job's own.
    let pull: Vec<&str> = s
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        pull,
        [
            "regcred",
            "runner-ab1cd2ef3-project-77-concurrent-2-abcd1234-registry"
        ]
    );
}

#[test]
fn labels_and_annotations_identify_the_job() {
    let p = seed_plan();
    let labels = p.pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_SYSTEM_ID], "s_0123456789ab");
    assert_eq!(labels[LABEL_JOB_ID], "4242");
    assert_eq!(labels[LABEL_POD], p.name);
    assert_eq!(labels[LABEL_MANAGED_BY], "glrunner");
    assert_eq!(labels["team"], "platform");
    assert_eq!(labels["project"], "shop", "pod_labels are expanded");
    assert_eq!(labels["pod"], "runner-Ab1cD2eF3-project-77-concurrent-2");
    assert_eq!(labels["project.runner.gitlab.com/id"], "77");
    assert_eq!(labels["project.runner.gitlab.com/namespace"], "acme_web");
    assert_eq!(labels["project.runner.gitlab.com/root-namespace"], "acme");
    assert_eq!(labels["project.runner.gitlab.com/root-namespace-id"], "10");
    assert_eq!(labels["manager.runner.gitlab.com/name"], "k8s-ci");
    assert_eq!(labels["manager.runner.gitlab.com/id-short"], "Ab1cD2eF3");
    for (k, v) in labels {
        assert!(
            crate::names::label_key_problem(k).is_none() && crate::names::is_label_value(v),
            "{k}={v}"
        );
    }
    let a = p.pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(a["job.runner.gitlab.com/id"], "4242");
    assert_eq!(
        a["job.runner.gitlab.com/url"],
        "https://gitlab.internal.example/acme/web/shop/-/jobs/4242"
    );
    assert_eq!(a["job.runner.gitlab.com/sha"], "0123abcd");
    assert_eq!(a["job.runner.gitlab.com/ref"], "main");
    assert_eq!(a["job.runner.gitlab.com/timeout"], "1h0m0s");
    assert_eq!(a["example.com/job"], "4242");

    // Every object of the job carries the identity labels.
    let objects = [
        &p.variables_secret.metadata,
        &p.registry_secret.as_ref().unwrap().metadata,
        &p.services[0].metadata,
    ];
    for meta in objects {
        assert_eq!(meta.labels.as_ref(), Some(&p.labels), "{:?}", meta.name);
        assert_eq!(meta.namespace.as_deref(), Some("ci-jobs"));
    }
    assert_eq!(
        p.selector(),
        format!(
            "glrunner/job-id=4242,glrunner/pod={},glrunner/system-id=s_0123456789ab",
            p.name
        )
    );
}

#[test]
fn secrets_never_reach_the_pod_spec_and_the_secret_holds_them() {
    let p = seed_plan();
    let public = public_json(&p);
    let expanded_db_url = format!("postgres://app:{MASKED}@db/app");
    for secret in [
        TOKEN,
        MASKED,
        "kubeconfig-secret-content",
        REGISTRY_AUTH,
        CA_PEM.trim(),
        "MIIB-private-ca",
    ] {
        assert!(!public.contains(secret), "{secret:?} is in the pod spec");
    }
    // The Debug form is safe too.
    let debug = format!("{p:?}");
    for secret in [TOKEN, MASKED, "kubeconfig-secret-content", REGISTRY_AUTH] {
        assert!(!debug.contains(secret), "{secret:?} in Debug: {debug}");
    }

    let s = &p.variables_secret;
    assert_eq!(
        s.metadata.name.as_deref(),
        Some(format!("{}-variables", p.name).as_str())
    );
    assert_eq!(secret_value(s, JOB_TOKEN_KEY), Some(TOKEN));
    assert_eq!(secret_value(s, "CI_JOB_TOKEN"), Some(TOKEN));
    assert_eq!(secret_value(s, "DEPLOY_KEY"), Some(MASKED));
    assert_eq!(secret_value(s, "KUBECONFIG_FILE"), Some(FILE_CONTENT));
    assert_eq!(secret_value(s, "CI_SERVER_TLS_CA_FILE"), Some(CA_PEM));
    assert_eq!(
        secret_value(s, "DB_URL"),
        Some(expanded_db_url.as_str()),
        "public but holds a masked value"
    );
    assert_eq!(
        secret_value(s, "redis.REDIS_ARGS"),
        Some(format!("--requirepass {MASKED}").as_str())
    );
    assert!(
        secret_value(s, "GREETING").is_none(),
        "public values stay out of the Secret"
    );

    let build = container(&p, "build");
    let secret_name = s.metadata.name.as_deref().unwrap();
    for name in [
        "CI_JOB_TOKEN",
        "DEPLOY_KEY",
        "CI_REPOSITORY_URL",
        "DB_URL",
        "DOCKER_AUTH_CONFIG",
    ] {
        let e = env(build, name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(e.value, None, "{name}");
        assert_eq!(secret_ref(e), Some((secret_name, name)));
    }
    assert_eq!(
        env(build, "GREETING").unwrap().value.as_deref(),
        Some("hello 4242")
    );
    assert_eq!(
        env(build, "PRICE").unwrap().value.as_deref(),
        Some("costs $$(five) dollars"),
        "$ is escaped against Kubernetes' $(VAR) expansion"
    );
    assert_eq!(
        env(build, "KUBECONFIG_FILE").unwrap().value.as_deref(),
        Some("/builds/acme/web/shop.tmp/KUBECONFIG_FILE"),
        "file variables are paths in env"
    );
    assert_eq!(
        p.secret_variables.first().map(String::as_str),
        Some("CI_SERVER_TLS_CA_FILE")
    );

    // The helper gets the job token from the Secret, nothing else.
    let helper = container(&p, "helper");
    assert_eq!(helper.env.as_ref().unwrap().len(), 1);
    assert_eq!(
        secret_ref(env(helper, JOB_TOKEN_ENV).unwrap()),
        Some((secret_name, JOB_TOKEN_KEY))
    );

    // Services see public variables only.
    let db = container(&p, "db");
    assert!(env(db, "GREETING").is_some());
    assert!(env(db, "DEPLOY_KEY").is_none() && env(db, "CI_JOB_TOKEN").is_none());
    assert!(env(db, "KUBECONFIG_FILE").is_none());
    let redis = container(&p, "redis");
    assert_eq!(
        secret_ref(env(redis, "REDIS_ARGS").unwrap()),
        Some((secret_name, "redis.REDIS_ARGS"))
    );

    // Registry credentials: DOCKER_AUTH_CONFIG wins for its registry.
    let reg = p.registry_secret.as_ref().unwrap();
    assert_eq!(reg.type_.as_deref(), Some(DOCKER_CONFIG_TYPE));
    let doc: serde_json::Value =
        serde_json::from_str(secret_value(reg, DOCKER_CONFIG_KEY).unwrap()).unwrap();
    assert_eq!(
        doc["auths"]["registry.internal.example:5000"]["auth"],
        REGISTRY_AUTH
    );
}

#[test]
fn objects_deserialize_back_into_kubernetes_types() {
    let p = seed_plan();
    let pod: Pod = serde_json::from_str(&serde_json::to_string(&p.pod).unwrap()).unwrap();
    assert_eq!(pod, p.pod);
    let secret: Secret =
        serde_json::from_value(serde_json::to_value(&p.variables_secret).unwrap()).unwrap();
    assert_eq!(secret, p.variables_secret);
    let value = serde_json::to_value(&p.variables_secret).unwrap();
    assert_eq!(value["kind"], "Secret");
    let encoded = value["data"]["DEPLOY_KEY"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
        MASKED.as_bytes(),
        "data is base64 on the wire"
    );
    let registry = p.registry_secret.clone().unwrap();
    let back: Secret = serde_json::from_value(serde_json::to_value(&registry).unwrap()).unwrap();
    assert_eq!(back, registry);
    assert_eq!(p.services.len(), 1);
    let svc: Service =
        serde_json::from_value(serde_json::to_value(&p.services[0]).unwrap()).unwrap();
    assert_eq!(svc, p.services[0]);
    let spec = svc.spec.unwrap();
    assert_eq!(spec.selector.unwrap()[LABEL_POD], p.name);
    let port = &spec.ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("redis"), 6379));
    let name = svc.metadata.name.unwrap();
    assert_eq!(name, "redis-abcd1234");
    assert!(crate::names::is_dns1035_label(&name));
    let json = serde_json::to_value(&p.pod).unwrap();
    assert_eq!(
        (json["apiVersion"].as_str(), json["kind"].as_str()),
        (Some("v1"), Some("Pod"))
    );
}

#[test]
fn owner_reference_points_every_object_at_the_pod() {
    let mut p = seed_plan();
    p.set_owner("0f6d7a1c-uid");
    let metas = [
        &p.variables_secret.metadata,
        &p.registry_secret.as_ref().unwrap().metadata,
        &p.services[0].metadata,
    ];
    for m in metas {
        let o = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
            ("Pod", p.name.as_str(), "0f6d7a1c-uid")
        );
    }
}

#[test]
fn the_disruption_budget_protects_exactly_the_job_pod_and_goes_with_it() {
    let p = seed_plan();
    let b = p.disruption_budget("0f6d7a1c-uid");
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(
        (json["apiVersion"].as_str(), json["kind"].as_str()),
        (Some("policy/v1"), Some("PodDisruptionBudget"))
    );
    assert_eq!(b.metadata.name.as_deref(), Some(p.name.as_str()));
    assert_eq!(b.metadata.namespace.as_deref(), Some(p.namespace.as_str()));
    let labels = b.metadata.labels.clone().unwrap();
    assert_eq!(labels[LABEL_SYSTEM_ID], "s_0123456789ab");
    assert_eq!(labels[LABEL_JOB_ID], "4242");
    let o = &b.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
        ("Pod", p.name.as_str(), "0f6d7a1c-uid")
    );
    let spec = b.spec.unwrap();
    assert_eq!(spec.min_available, Some(IntOrString::Int(1)));
    assert_eq!(spec.max_unavailable, None);
    let selector = spec.selector.unwrap().match_labels.unwrap();
    // The selector picks this pod only: its name label, and it matches the pod's own labels.
    assert_eq!(selector[LABEL_POD], p.name);
    assert!(!selector.contains_key(LABEL_MANAGED_BY));
    let pod_labels = p.pod.metadata.labels.clone().unwrap();
    for (k, v) in &selector {
        assert_eq!(pod_labels.get(k), Some(v), "{k}");
    }
}

const DIND: &str = r#"
namespace = "ci-jobs"
image = "docker:27"
privileged = true
[[services]]
name = "docker:27-dind"
alias = "docker"
[[volumes.empty_dir]]
name = "docker-certs"
mount_path = "/certs/client"
medium = "Memory"
"#;

fn job_with(vars: &[(&str, &str)]) -> JobResponse {
    let mut job = seed_job();
    job.services.clear();
    job.image = None;
    for (k, v) in vars {
        job.variables
            .push(glrunner_protocol::JobVariable::new(*k, *v));
    }
    job
}

#[test]
fn docker_in_docker_from_config() {
    let job = job_with(&[
        ("DOCKER_HOST", "tcp://docker:2376"),
        ("DOCKER_TLS_CERTDIR", "/certs"),
        ("DOCKER_CERT_PATH", "$DOCKER_TLS_CERTDIR/client"),
        ("DOCKER_TLS_VERIFY", "1"),
    ]);
    let p = plan(&config(DIND), &job).unwrap();
    let names: Vec<&str> = spec(&p)
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["build", "helper", "docker"]);
    let dind = container(&p, "docker");
    assert_eq!(dind.image.as_deref(), Some("docker:27-dind"));
    for c in ["build", "helper", "docker"] {
        let sc = container(&p, c).security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(true), "{c}");
    }
    assert_eq!(
        container(&p, INIT_CONTAINER)
            .security_context
            .as_ref()
            .unwrap()
            .privileged,
        None
    );
    // The daemon and the client share the TLS client certificates.
    for c in ["build", "docker"] {
        assert!(
            mounts(container(&p, c)).contains(&("docker-certs", "/certs/client")),
            "{c}"
        );
    }
    // The daemon sees DOCKER_TLS_CERTDIR (it generates certificates there), the client its settings.
    assert_eq!(
        env(dind, "DOCKER_TLS_CERTDIR").unwrap().value.as_deref(),
        Some("/certs")
    );
    let build = container(&p, "build");
    assert_eq!(
        env(build, "DOCKER_HOST").unwrap().value.as_deref(),
        Some("tcp://docker:2376")
    );
    assert_eq!(
        env(build, "DOCKER_CERT_PATH").unwrap().value.as_deref(),
        Some("/certs/client")
    );
    let aliases = spec(&p).host_aliases.as_ref().unwrap();
    assert_eq!(aliases[0].hostnames.as_deref().unwrap(), ["docker"]);

    // Without TLS the daemon listens on 2375, reachable on localhost.
    let job = job_with(&[
        ("DOCKER_HOST", "tcp://localhost:2375"),
        ("DOCKER_TLS_CERTDIR", ""),
    ]);
    let p = plan(&config(DIND), &job).unwrap();
    let dind = container(&p, "docker");
    assert_eq!(
        env(dind, "DOCKER_TLS_CERTDIR").unwrap().value.as_deref(),
        Some("")
    );
    assert_eq!(
        env(container(&p, "build"), "DOCKER_HOST")
            .unwrap()
            .value
            .as_deref(),
        Some("tcp://localhost:2375")
    );
}

#[test]
fn docker_socket_from_the_node() {
    let toml_text = r#"
namespace = "ci-jobs"
image = "docker:27"
[[volumes.host_path]]
name = "docker-sock"
mount_path = "/var/run/docker.sock"
read_only = true
"#;
    let p = plan(&config(toml_text), &job_with(&[])).unwrap();
    let sock = volume(&p, "docker-sock");
    assert_eq!(
        sock.host_path.as_ref().unwrap().path,
        "/var/run/docker.sock",
        "host_path defaults to mount_path"
    );
    for c in ["build", "helper", INIT_CONTAINER] {
        let c = container(&p, c);
        assert!(
            mounts(c).contains(&("docker-sock", "/var/run/docker.sock")),
            "{}",
            c.name
        );
        assert_eq!(
            c.security_context.as_ref().unwrap().privileged,
            None,
            "DooD needs no privileges"
        );
    }
}

#[test]
fn resource_overwrites_within_and_above_the_maximum() {
    let c = config(SEED_CONFIG);
    let with = |vars: &[(&str, &str)]| plan(&c, &job_with(vars));

    let p = with(&[
        ("KUBERNETES_CPU_LIMIT", "3500m"),
        ("KUBERNETES_MEMORY_LIMIT", "4096Mi"),
    ])
    .unwrap();
    let limits = container(&p, "build")
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(
        (limits["cpu"].0.as_str(), limits["memory"].0.as_str()),
        ("3500m", "4096Mi")
    );

    // 4097Mi is more than 4Gi, though the number is smaller.
    let err = with(&[("KUBERNETES_MEMORY_LIMIT", "4097Mi")]).unwrap_err();
    assert!(
        matches!(&err, SpecError::OverwriteAboveMax { variable, max, .. }
            if variable == "KUBERNETES_MEMORY_LIMIT" && max == "4Gi"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("memory_limit_overwrite_max_allowed") && msg.contains("4097Mi"),
        "{msg}"
    );
    assert!(with(&[("KUBERNETES_CPU_LIMIT", "4.5")]).is_err());
    assert!(
        with(&[("KUBERNETES_CPU_LIMIT", "4")]).is_ok(),
        "equal to the maximum is allowed"
    );

    // No maximum: ignored, with a warning.
    let p = with(&[("KUBERNETES_CPU_REQUEST", "3")]).unwrap();
    let requests = container(&p, "build")
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(requests["cpu"].0, "500m");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("cpu_request_overwrite_max_allowed")),
        "{:?}",
        p.warnings
    );

    // A request above its limit is refused before Kubernetes does it less clearly.
    let mut c2 = c.clone();
    c2.memory_request_overwrite_max_allowed = Some("8Gi".into());
    let err = plan(&c2, &job_with(&[("KUBERNETES_MEMORY_REQUEST", "3Gi")])).unwrap_err();
    assert!(
        matches!(&err, SpecError::RequestAboveLimit { request_key, limit_key, .. }
            if request_key == "memory_request" && limit_key == "memory_limit"),
        "{err}"
    );

    // Helper, service and pod overwrites use their own keys.
    let mut c3 = config(SEED_CONFIG);
    c3.helper_cpu_limit_overwrite_max_allowed = Some("1".into());
    c3.pod_memory_limit = Some("6Gi".into());
    let mut job = seed_job();
    job.variables.push(glrunner_protocol::JobVariable::new(
        "KUBERNETES_HELPER_CPU_LIMIT",
        "250m",
    ));
    let p = plan(&c3, &job).unwrap();
    let helper_limits = container(&p, "helper")
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(helper_limits["cpu"].0, "250m");
    let pod_limits = spec(&p).resources.clone().unwrap().limits.unwrap();
    assert_eq!(pod_limits["memory"].0, "6Gi");

    // Bad quantities name the key.
    let mut c4 = config(SEED_CONFIG);
    c4.cpu_limit = Some("two".into());
    let err = plan(&c4, &job_with(&[])).unwrap_err();
    assert!(
        matches!(&err, SpecError::Quantity { key, .. } if key == "cpu_limit"),
        "{err}"
    );
}

#[test]
fn namespace_and_service_account_overwrites() {
    let mut c = config(SEED_CONFIG);
    let p = plan(&c, &job_with(&[(NAMESPACE_OVERWRITE, "ci-team-a")])).unwrap();
    assert_eq!(p.namespace, "ci-jobs", "not allowed: ignored");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("namespace_overwrite_allowed"))
    );

    c.namespace_overwrite_allowed = Some("ci-team-.*".into());
    let p = plan(&c, &job_with(&[(NAMESPACE_OVERWRITE, "ci-team-a")])).unwrap();
    assert_eq!(p.namespace, "ci-team-a");
    assert_eq!(
        p.variables_secret.metadata.namespace.as_deref(),
        Some("ci-team-a")
    );
    let err = plan(&c, &job_with(&[(NAMESPACE_OVERWRITE, "prod-ci-team-a")])).unwrap_err();
    assert!(
        matches!(err, SpecError::OverwriteNotAllowed { .. }),
        "the whole value must match: {err}"
    );

    c.service_account_overwrite_allowed = Some("ci-.*".into());
    let p = plan(&c, &job_with(&[(SERVICE_ACCOUNT_OVERWRITE, "ci-deployer")])).unwrap();
    assert_eq!(
        spec(&p).service_account_name.as_deref(),
        Some("ci-deployer")
    );
    assert!(
        plan(
            &c,
            &job_with(&[(SERVICE_ACCOUNT_OVERWRITE, "cluster-admin")])
        )
        .is_err()
    );

    c.namespace_overwrite_allowed = Some("(".into());
    let err = plan(&c, &job_with(&[(NAMESPACE_OVERWRITE, "x")])).unwrap_err();
    assert!(matches!(err, SpecError::Regex { .. }), "{err}");

    let mut c = config(SEED_CONFIG);
    c.namespace_per_job = Some(true);
    assert_eq!(plan(&c, &job_with(&[])).unwrap().namespace, "ci-job-4242");
}

#[test]
fn scheduling_and_metadata_overwrites() {
    let mut c = config(SEED_CONFIG);
    c.node_selector_overwrite_allowed = Some("kubernetes.io/arch=.*".into());
    c.node_tolerations_overwrite_allowed = Some(".*".into());
    c.pod_labels_overwrite_allowed = Some("cost-center=.*".into());
    c.pod_annotations_overwrite_allowed = Some(".*".into());
    let job = job_with(&[
        ("KUBERNETES_NODE_SELECTOR_ARCH", "kubernetes.io/arch=arm64"),
        ("KUBERNETES_NODE_TOLERATIONS_1", "ci=gpu:NoExecute"),
        ("KUBERNETES_POD_LABELS_1", "cost-center=cc-42"),
        ("KUBERNETES_POD_ANNOTATIONS_1", "example.com/owner=team-a"),
    ]);
    let p = plan(&c, &job).unwrap();
    let s = spec(&p);
    assert_eq!(
        s.node_selector.as_ref().unwrap()["kubernetes.io/arch"],
        "arm64"
    );
    let t = s.tolerations.as_ref().unwrap();
    let ci: Vec<_> = t
        .iter()
        .filter(|t| t.key.as_deref() == Some("ci"))
        .collect();
    assert_eq!(
        ci.len(),
        1,
        "the overwrite replaces the configured toleration for the key"
    );
    assert_eq!(
        (ci[0].value.as_deref(), ci[0].effect.as_deref()),
        (Some("gpu"), Some("NoExecute"))
    );
    assert_eq!(
        p.pod.metadata.labels.as_ref().unwrap()["cost-center"],
        "cc-42"
    );
    assert_eq!(
        p.pod.metadata.annotations.as_ref().unwrap()["example.com/owner"],
        "team-a"
    );

    let err = plan(&c, &job_with(&[("KUBERNETES_POD_LABELS_1", "team=other")])).unwrap_err();
    assert!(
        matches!(err, SpecError::OverwriteNotAllowed { .. }),
        "{err}"
    );
    let err = plan(
        &c,
        &job_with(&[("KUBERNETES_NODE_SELECTOR_X", "no-equals-sign")]),
    )
    .unwrap_err();
    assert!(matches!(err, SpecError::OverwriteFormat { .. }), "{err}");

    c.pod_labels_overwrite_allowed = Some(".*".into());
    for key in [
        "glrunner/job-id",
        "project.runner.gitlab.com/id",
        "app.kubernetes.io/managed-by",
    ] {
        let err = plan(
            &c,
            &job_with(&[("KUBERNETES_POD_LABELS_1", &format!("{key}=1"))]),
        )
        .unwrap_err();
        assert!(
            matches!(err, SpecError::ProtectedKey { .. }),
            "{key}: {err}"
        );
    }
    let mut bad = config(SEED_CONFIG);
    bad.pod_labels
        .insert("team".into(), "platform and more".into());
    let err = plan(&bad, &job_with(&[])).unwrap_err();
    assert!(
        matches!(&err, SpecError::Label { key, .. } if key == "team"),
        "{err}"
    );
    let mut bad = config(SEED_CONFIG);
    bad.node_tolerations.insert("x".into(), "Sometimes".into());
    assert!(matches!(
        plan(&bad, &job_with(&[])).unwrap_err(),
        SpecError::Toleration { .. }
    ));
}

#[test]
fn a_secret_referenced_from_metadata_fails_the_job_without_showing_it() {
    let mut c = config(SEED_CONFIG);
    c.pod_annotations
        .insert("example.com/leak".into(), "key=$DEPLOY_KEY".into());
    let err = plan(&c, &seed_job()).unwrap_err();
    let SpecError::SecretInPodSpec { what, path, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(what, "the masked variable DEPLOY_KEY");
    assert_eq!(path, "metadata.annotations.example.com/leak");
    assert!(!err.to_string().contains(MASKED), "{err}");

    let mut c = config(SEED_CONFIG);
    c.pod_labels.insert("leak".into(), "$CI_JOB_TOKEN".into());
    let err = plan(&c, &seed_job()).unwrap_err();
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(
        err.to_string().contains("[MASKED]") || matches!(err, SpecError::SecretInPodSpec { .. }),
        "{err}"
    );

    // A job overwrite quoting a secret is refused without echoing it.
    let mut c = config(SEED_CONFIG);
    c.memory_limit_overwrite_max_allowed = Some("4Gi".into());
    let mut job = seed_job();
    job.variables.push(glrunner_protocol::JobVariable::new(
        "KUBERNETES_MEMORY_LIMIT",
        "$DEPLOY_KEY",
    ));
    let err = plan(&c, &job).unwrap_err();
    assert!(matches!(err, SpecError::Quantity { .. }), "{err}");
    assert!(!err.to_string().contains(MASKED), "{err}");
    assert!(
        err.to_string()
            .contains("the job variable KUBERNETES_MEMORY_LIMIT"),
        "{err}"
    );

    // Every error is redacted, whatever field the secret ended up in.
    let mut c = config(SEED_CONFIG);
    c.namespace_overwrite_allowed = Some("ci-.*".into());
    let mut job = seed_job();
    job.variables.push(glrunner_protocol::JobVariable::new(
        NAMESPACE_OVERWRITE,
        "$DEPLOY_KEY",
    ));
    let err = plan(&c, &job).unwrap_err();
    assert!(
        matches!(err, SpecError::OverwriteNotAllowed { .. }),
        "{err}"
    );
    assert!(
        !err.to_string().contains(MASKED) && err.to_string().contains("[MASKED]"),
        "{err}"
    );
    let mut c = config(SEED_CONFIG);
    c.volumes.empty_dir[0].mount_path = "scratch-$DEPLOY_KEY".into();
    let err = plan(&c, &seed_job()).unwrap_err();
    assert!(matches!(err, SpecError::Volume { .. }), "{err}");
    assert!(!err.to_string().contains(MASKED), "{err}");
}

#[test]
fn images_pull_policies_and_users() {
    let mut c = config(SEED_CONFIG);
    c.image = None;
    let mut job = job_with(&[]);
    assert_eq!(plan(&c, &job).unwrap_err(), SpecError::NoImage);

    job.image = Some(glrunner_protocol::Image {
        name: "ruby:3.3".into(),
        pull_policy: vec!["always".into()],
        ..glrunner_protocol::Image::default()
    });
    let p = plan(&c, &job).unwrap();
    assert_eq!(
        container(&p, "build").image_pull_policy.as_deref(),
        Some("Always")
    );

    c.allowed_pull_policies = vec![PullPolicy::IfNotPresent];
    let err = plan(&c, &job).unwrap_err();
    assert!(
        matches!(err, SpecError::PullPolicyNotAllowed { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("allowed_pull_policies"));

    job.image.as_mut().unwrap().pull_policy = vec!["sometimes".into()];
    let err = plan(&c, &job).unwrap_err();
    assert!(
        matches!(&err, SpecError::UnknownPullPolicy { value, .. } if value == "sometimes"),
        "{err}"
    );

    let mut c = config(SEED_CONFIG);
    c.allowed_images = vec!["ruby:*".into(), "registry.internal.example:5000/**".into()];
    job.image.as_mut().unwrap().pull_policy.clear();
    plan(&c, &job).unwrap();
    job.image.as_mut().unwrap().name = "docker.io/evil/miner:latest".into();
    let err = plan(&c, &job).unwrap_err();
    assert!(matches!(err, SpecError::ImageNotAllowed { .. }), "{err}");

    // The helper image is configurable; an unpinned one follows pull_policy.
    let mut c = config(SEED_CONFIG);
    c.helper_image = Some("mirror.example/glrunner:latest".into());
    let p = plan(&c, &job_with(&[])).unwrap();
    let helper = container(&p, "helper");
    assert_eq!(
        helper.image.as_deref(),
        Some("mirror.example/glrunner:latest")
    );
    assert_eq!(helper.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        p.pull_policies["helper"],
        [PullPolicy::IfNotPresent, PullPolicy::Always]
    );

    // A job's user: numeric, and in allowed_users when that is set.
    let mut job = job_with(&[]);
    job.image = Some(glrunner_protocol::Image {
        name: "node:22".into(),
        executor_opts: serde_json::from_str(r#"{"kubernetes": {"user": "1000:1000"}}"#).unwrap(),
        ..glrunner_protocol::Image::default()
    });
    let p = plan(&config(SEED_CONFIG), &job).unwrap();
    let sc = container(&p, "build").security_context.clone().unwrap();
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1000), Some(1000)));
    let mut c = config(SEED_CONFIG);
    c.allowed_users = vec!["1001".into()];
    assert!(matches!(
        plan(&c, &job).unwrap_err(),
        SpecError::JobUser { .. }
    ));
    c.allowed_users = vec!["1000".into()];
    c.allowed_groups = vec!["1000".into()];
    plan(&c, &job).unwrap();
    let mut c = config(SEED_CONFIG);
    c.build_container_security_context =
        Some(glrunner_config::kubernetes::ContainerSecurityContext {
            run_as_user: Some(2000),
            ..Default::default()
        });
    let err = plan(&c, &job).unwrap_err();
    assert!(err.to_string().contains("allowed_users"), "{err}");
}

#[test]
fn volumes_are_validated_and_a_persistent_builds_dir_is_shared() {
    let bad = |t: &str| plan(&config(t), &job_with(&[])).unwrap_err();
    let err = bad("image = \"a\"\n[[volumes.host_path]]\nname = \"x\"\n");
    assert!(
        matches!(&err, SpecError::Volume { problem, .. } if problem.contains("mount_path")),
        "{err}"
    );
    let err =
        bad("image = \"a\"\n[[volumes.empty_dir]]\nname = \"Bad_Name\"\nmount_path = \"/x\"\n");
    assert!(err.to_string().contains("DNS label"), "{err}");
    let err = bad("image = \"a\"\n[[volumes.empty_dir]]\nname = \"repo\"\nmount_path = \"/x\"\n");
    assert!(err.to_string().contains("used by glrunner"), "{err}");
    let err = bad(
        "image = \"a\"\n[[volumes.nfs]]\nname = \"n\"\nmount_path = \"/x\"\nserver = \"nfs\"\n",
    );
    assert!(err.to_string().contains("`path` is required"), "{err}");
    let err = bad("image = \"a\"\n[[volumes.csi]]\nname = \"c\"\nmount_path = \"/x\"\n");
    assert!(err.to_string().contains("`driver` is required"), "{err}");
    let err = bad(
        "image = \"a\"\n[[volumes.empty_dir]]\nname = \"a\"\nmount_path = \"/x\"\n[[volumes.empty_dir]]\nname = \"b\"\nmount_path = \"/x/\"\n",
    );
    assert!(err.to_string().contains("already mounted"), "{err}");
    let err = bad(
        "image = \"a\"\n[[volumes.empty_dir]]\nname = \"a\"\nmount_path = \"/x\"\nsize_limit = \"lots\"\n",
    );
    assert!(err.to_string().contains("size_limit"), "{err}");

    let every_kind = r#"
image = "alpine:3"
[[volumes.pvc]]
name = "builds-$CI_CONCURRENT_ID"
mount_path = "/builds"
[[volumes.config_map]]
name = "ci-settings"
mount_path = "/etc/ci"
[volumes.config_map.items]
"settings.yaml" = "settings.yaml"
[[volumes.csi]]
name = "secrets-store"
mount_path = "/mnt/secrets"
driver = "secrets-store.csi.k8s.io"
read_only = true
[volumes.csi.volume_attributes]
secretProviderClass = "ci"
[[volumes.nfs]]
name = "artifacts"
mount_path = "/artifacts"
server = "nfs.internal.example"
path = "/exports/ci"
"#;
    let c = config(every_kind);
    let job = job_with(&[]);
    let p = plan(&c, &job).unwrap();
    let volumes = volume_names(&p);
    assert_eq!(
        volumes,
        [
            "scripts",
            "logs",
            "cache",
            "variables",
            "builds-2",
            "ci-settings",
            "secrets-store",
            "artifacts"
        ],
        "no repo emptyDir under a PVC"
    );
    let pvc = volume(&p, "builds-2");
    assert_eq!(
        pvc.persistent_volume_claim.as_ref().unwrap().claim_name,
        "builds-2"
    );
    let paths = job_paths(&c, &runner(), &job);
    assert_eq!(
        paths.project_dir, "/builds/Ab1cD2eF3/2/acme/web/shop",
        "shared layout on a PVC"
    );
    assert_eq!(
        job_paths(&config(SEED_CONFIG), &runner(), &job).project_dir,
        "/builds/acme/web/shop"
    );
}

#[test]
fn s3_cache_needs_no_cache_volume_and_base_dirs_move_scripts_and_logs() {
    let mut r = runner();
    r.cache = Some(glrunner_cache::CacheSettings {
        cache_type: "s3".into(),
        ..Default::default()
    });
    let mut c = config(SEED_CONFIG);
    c.scripts_base_dir = Some("/tmp/".into());
    c.logs_base_dir = Some("/var/log".into());
    let p = plan_with(&c, &job_with(&[]), &r).unwrap();
    let volumes = volume_names(&p);
    assert!(!volumes.contains(&"cache"), "{volumes:?}");
    assert_eq!(p.scripts_dir, "/tmp/scripts-77-4242");
    assert_eq!(p.logs_dir, "/var/log/logs-77-4242");
}

#[test]
fn pod_level_settings() {
    let toml_text = r#"
image = "alpine:3"
privileged = false
allow_privilege_escalation = false
cap_add = ["SYS_PTRACE"]
cap_drop = ["ALL"]
automount_service_account_token = false
pod_termination_grace_period_seconds = 30
priority_class_name = "ci-low"
runtime_class_name = "gvisor"
scheduler_name = "bin-packing"
dns_policy = "none"
[dns_config]
nameservers = ["10.0.0.10"]
searches = ["ci.svc.cluster.local"]
[[dns_config.options]]
name = "ndots"
value = "2"
[pod_security_context]
run_as_non_root = true
run_as_user = 1000
fs_group = 1000
[pod_security_context.seccomp_profile]
type = "RuntimeDefault"
[affinity.node_affinity.required_during_scheduling_ignored_during_execution]
[[affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms]]
[[affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms.match_expressions]]
key = "node-pool"
operator = "In"
values = ["ci"]
[container_lifecycle.pre_stop.exec]
command = ["sh", "-c", "sleep 1"]
"#;
    let mut job = job_with(&[("FF_USE_POD_ACTIVE_DEADLINE_SECONDS", "false")]);
    job.runner_info.timeout = Some(600);
    let p = plan(&config(toml_text), &job).unwrap();
    let s = spec(&p);
    assert_eq!(
        s.active_deadline_seconds, None,
        "turned off by the feature flag"
    );
    assert_eq!(s.automount_service_account_token, Some(false));
    assert_eq!(s.termination_grace_period_seconds, Some(30));
    assert_eq!(s.priority_class_name.as_deref(), Some("ci-low"));
    assert_eq!(s.runtime_class_name.as_deref(), Some("gvisor"));
    assert_eq!(s.scheduler_name.as_deref(), Some("bin-packing"));
    assert_eq!(s.dns_policy.as_deref(), Some("None"));
    let dns = s.dns_config.as_ref().unwrap();
    assert_eq!(dns.options.as_ref().unwrap()[0].value.as_deref(), Some("2"));
    let psc = s.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.fs_group),
        (Some(true), Some(1000))
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let terms = &s
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    assert_eq!(
        terms[0].match_expressions.as_ref().unwrap()[0].key,
        "node-pool"
    );
    let build = container(&p, "build");
    let sc = build.security_context.as_ref().unwrap();
    assert_eq!(
        (sc.privileged, sc.allow_privilege_escalation),
        (Some(false), Some(false))
    );
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.add.as_deref().unwrap(), ["SYS_PTRACE"]);
    assert_eq!(caps.drop.as_deref().unwrap(), ["NET_RAW", "ALL"]);
    assert!(
        build
            .lifecycle
            .as_ref()
            .unwrap()
            .pre_stop
            .as_ref()
            .unwrap()
            .exec
            .is_some()
    );

    let err = plan(&config("image = \"a\"\ndns_policy = \"none\"\n"), &job).unwrap_err();
    assert_eq!(err, SpecError::DnsNoneWithoutNameservers);
    let err = plan(
        &config("image = \"a\"\n[[host_aliases]]\nip = \"gitlab\"\nhostnames = [\"x\"]\n"),
        &job,
    )
    .unwrap_err();
    assert!(matches!(err, SpecError::HostAlias { .. }), "{err}");
}

#[test]
fn honor_entrypoint_keeps_the_images_entrypoint() {
    let mut job = job_with(&[("FF_KUBERNETES_HONOR_ENTRYPOINT", "true")]);
    job.image = Some(glrunner_protocol::Image {
        name: "hashicorp/terraform:1.9".into(),
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        ..glrunner_protocol::Image::default()
    });
    let p = plan(&config(SEED_CONFIG), &job).unwrap();
    let build = container(&p, "build");
    assert_eq!(build.command.as_deref().unwrap(), ["/bin/sh", "-c"]);
    assert_eq!(build.args.as_deref().unwrap(), ["sh", "-c", DETECT_SHELL]);
    let plain = seed_plan();
    assert_eq!(container(&plain, "build").args, None);
}

#[test]
fn an_empty_suffix_still_gives_a_unique_name_and_random_contexts_differ() {
    let c = config(SEED_CONFIG);
    let job = seed_job();
    let r = runner();
    let paths = job_paths(&c, &r, &job);
    let vars = Variables::new();
    let a = JobContext::new(&r, &paths, &vars);
    let b = JobContext::new(&r, &paths, &vars);
    assert_ne!(a.name_suffix, b.name_suffix);
    let pa = PodPlan::build(&c, &job, &a).unwrap();
    let pb = PodPlan::build(&c, &job, &b).unwrap();
    assert_ne!(pa.name, pb.name);
    let empty = JobContext {
        name_suffix: String::new(),
        ..a
    };
    let p = PodPlan::build(&c, &job, &empty).unwrap();
    assert!(
        crate::names::is_dns_label(&p.name) && p.name.len() == 49,
        "{}",
        p.name
    );
}

/// Runs `script` with `sh -c` and `stdin`, returning stdout.
fn run_sh(script: &str, stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sh")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_detect_shell_execs_a_shell_that_reads_stdin() {
    let out = run_sh(DETECT_SHELL, "echo \"ran:$BASH_VERSION:$$\"\n");
    assert!(out.starts_with("ran:"), "{out:?}");
    let has_bash = ["/usr/local/bin/bash", "/usr/bin/bash", "/bin/bash"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    assert_eq!(
        out.split(':').nth(1).is_some_and(|v| !v.is_empty()),
        has_bash,
        "bash first: {out:?}"
    );
}

#[test]
fn sh_quoting_survives_a_real_shell() {
    let tricky = "/logs dir/it's $HOME `x` \"q\"";
    let out = run_sh(&format!("printf '%s' {}", sh_quote(tricky)), "");
    assert_eq!(out, tricky);
}

#[test]
fn pull_secrets_follow_the_configuration() {
    let mut c = config(SEED_CONFIG);
    c.use_service_account_image_pull_secrets = Some(true);
    let p = plan(&c, &seed_job()).unwrap();
    assert!(
        spec(&p).image_pull_secrets.is_none(),
        "the service account's are used"
    );
    assert!(p.registry_secret.is_none());

    let mut job = job_with(&[]);
    job.credentials.clear();
    job.variables.retain(|v| v.key != "DOCKER_AUTH_CONFIG");
    let p = plan(&config(SEED_CONFIG), &job).unwrap();
    assert!(p.registry_secret.is_none(), "no credentials, no Secret");
    let pull: Vec<&str> = spec(&p)
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(pull, ["regcred"]);

    let mut c = config(SEED_CONFIG);
    c.image_pull_secrets = vec!["Not A Name".into()];
    assert!(matches!(
        plan(&c, &job).unwrap_err(),
        SpecError::Name { .. }
    ));
}

#[test]
fn service_ports_get_valid_names() {
    let mut job = job_with(&[]);
    job.services = vec![glrunner_protocol::Image {
        name: "9gag/api:1".into(),
        alias: Some("9api".into()),
        ports: vec![
            glrunner_protocol::Port {
                number: 8080,
                name: None,
                protocol: Some("http".into()),
            },
            glrunner_protocol::Port {
                number: 8443,
                name: Some("Not_Valid".into()),
                protocol: None,
            },
        ],
        ..glrunner_protocol::Image::default()
    }];
    let p = plan(&config(SEED_CONFIG), &job).unwrap();
    let svc = &p.services[0];
    let name = svc.metadata.name.clone().unwrap();
    assert_eq!(name, "s9api-abcd1234");
    assert!(
        crate::names::is_dns1035_label(&name),
        "Service names start with a letter"
    );
    let ports: Vec<String> = svc
        .spec
        .clone()
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| p.name.unwrap())
        .collect();
    assert_eq!(ports, ["port-8080", "port-8443"]);
}

#[test]
fn pull_policy_fallback_walks_the_configured_order() {
    let mut p = seed_plan();
    assert_eq!(p.next_pull_policy("db"), Some(PullPolicy::Always));
    assert_eq!(
        container(&p, "db").image_pull_policy.as_deref(),
        Some("Always")
    );
    assert_eq!(p.next_pull_policy("db"), None, "nothing left to try");
    assert_eq!(
        p.next_pull_policy("build"),
        None,
        "the job asked for if-not-present only"
    );
    assert_eq!(p.next_pull_policy("helper"), None, "pinned helper");
    assert_eq!(p.next_pull_policy("no-such-container"), None);
}
