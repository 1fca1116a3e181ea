//! Realistic config.toml files (tests/fixtures/) load into the typed config with the values they hold.

use glrunner_config::kubernetes::{DnsPolicy, PullPolicy};
use glrunner_config::{Config, ExecutorKind, Loaded, LogFormat, LogLevel, Timestamp, WarningKind};
use std::path::PathBuf;
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Loaded {
    match Config::load_with_env(fixture(name), &|_| None) {
        Ok(l) => l,
        Err(e) => panic!("{name} failed to load:\n{e}"),
    }
}

#[test]
fn every_fixture_loads_without_unknown_keys() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let loaded = load(&name);
        assert!(!loaded.config.runners.is_empty(), "{name}");
        let unknown: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|w| w.kind == WarningKind::Unknown)
            .collect();
        assert!(unknown.is_empty(), "{name}: {unknown:?}");
        count += 1;
    }
    assert!(count >= 6, "expected the fixtures, found {count}");
}

#[test]
fn typical_minimal_kubernetes_config() {
    let l = load("minimal-kubernetes.toml");
    let c = &l.config;
    assert_eq!(c.concurrent(), 10);
    assert_eq!(c.check_interval(), Duration::from_secs(3));
    let r = &c.runners[0];
    assert_eq!(r.name, "k8s");
    assert_eq!(r.url, "https://gitlab.example.com");
    assert_eq!(r.token().unwrap().expose(), "glrt-t1_MinimalExampleToken");
    assert_eq!(r.executor_kind(), Some(ExecutorKind::Kubernetes));
    assert_eq!(r.effective_request_concurrency(), 4);
    let k = r.kubernetes.as_ref().unwrap();
    assert_eq!(k.namespace(), "gitlab-ci");
    assert_eq!(k.image.as_deref(), Some("alpine:3"));
    assert_eq!(k.service_account.as_deref(), Some("ci"));
    assert_eq!(k.cpu_request.as_deref(), Some("500m"));
    assert_eq!(k.memory_request.as_deref(), Some("1Gi"));
    assert_eq!(k.memory_limit.as_deref(), Some("2Gi"));
    assert_eq!(k.helper_cpu_request.as_deref(), Some("100m"));
    assert_eq!(k.helper_memory_request.as_deref(), Some("128Mi"));
    assert_eq!(k.poll_timeout(), Duration::from_secs(600));
    assert_eq!(k.poll_interval(), Duration::from_secs(3));
    assert_eq!(
        k.pull_policies(),
        &[PullPolicy::IfNotPresent, PullPolicy::Always]
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn shell_runner() {
    let l = load("shell.toml");
    let c = &l.config;
    assert_eq!(c.concurrent(), 2);
    // check_interval = 0 means the default, like gitlab-runner.
    assert_eq!(c.check_interval(), Duration::from_secs(3));
    assert_eq!(c.log_level, Some(LogLevel::Info));
    assert_eq!(c.user.as_deref(), Some("gitlab-runner"));
    assert_eq!(
        c.session_server.as_ref().unwrap().session_timeout(),
        Duration::from_secs(1800)
    );
    let r = &c.runners[0];
    assert_eq!(r.executor_kind(), Some(ExecutorKind::Shell));
    assert_eq!(r.shell(), "bash");
    assert_eq!(r.id, Some(4711));
    assert_eq!(
        r.token_obtained_at,
        Some("2025-06-02T09:15:00Z".parse::<Timestamp>().unwrap())
    );
    // Go's zero time means "does not expire".
    assert_eq!(r.token_expires_at, None);
    assert_eq!(
        r.tls_ca_file.as_deref(),
        Some(std::path::Path::new("/etc/gitlab-runner/certs/ca.crt"))
    );
    assert_eq!(
        r.builds_dir.as_deref(),
        Some(std::path::Path::new("/srv/builds"))
    );
    assert_eq!(
        r.environment.0,
        vec!["LANG=C.UTF-8", "NPM_CONFIG_CACHE=/srv/cache/npm"]
    );
    assert!(
        r.pre_build_script
            .as_deref()
            .unwrap()
            .contains("export PATH=\"$HOME/bin:$PATH\"")
    );
    assert_eq!(r.limit(), Some(2));
    assert_eq!(r.output_limit_bytes(), 16384 * 1024);
    assert_eq!(r.custom_build_dir.as_ref().unwrap().enabled, Some(true));
    assert_eq!(r.feature_flag("FF_ENABLE_JOB_CLEANUP"), Some(true));
    assert_eq!(r.feature_flag("FF_NOT_MENTIONED"), None);
    assert_eq!(r.cache.as_ref().unwrap().max_uploaded_archive_size, Some(0));
}

#[test]
fn config_written_by_gitlab_runner_register() {
    let l = load("registered-by-gitlab-runner.toml");
    let c = &l.config;
    assert_eq!(c.concurrent(), 1);
    assert_eq!(c.shutdown_timeout(), Duration::from_secs(30));
    let r = &c.runners[0];
    assert_eq!(r.url, "https://gitlab.example.com/");
    assert_eq!(r.token_obtained_at.unwrap().unix_secs(), 1_773_500_966);
    let cache = r.cache.as_ref().unwrap();
    assert!(cache.s3.is_some() && cache.gcs.is_some() && cache.azure.is_some());
    let k = r.kubernetes.as_ref().unwrap();
    assert_eq!(k.host.as_deref(), Some(""));
    assert_eq!(k.namespace(), "gitlab-runner");
    assert_eq!(k.namespace_per_job, Some(false));
    let caps = k
        .build_container_security_context
        .as_ref()
        .unwrap()
        .capabilities
        .as_ref()
        .unwrap();
    assert!(caps.add.is_empty() && caps.drop.is_empty());
    assert!(k.volumes.is_empty());
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn kubernetes_runner_with_volumes_affinity_and_cache() {
    let l = load("kubernetes-full.toml");
    let c = &l.config;
    assert_eq!(c.log_format(), LogFormat::Json);
    assert_eq!(c.listen_address.as_deref(), Some(":9252"));
    let r = &c.runners[0];
    assert_eq!(r.tls_server_name.as_deref(), Some("gitlab.corp.example"));
    assert_eq!(
        r.feature_flag("FF_USE_ADAPTIVE_REQUEST_CONCURRENCY"),
        Some(true)
    );

    let cache = r.cache.as_ref().unwrap();
    assert_eq!(cache.r#type.as_deref(), Some("s3"));
    assert_eq!(cache.shared, Some(true));
    let s3 = cache.s3.as_ref().unwrap();
    assert_eq!(s3.server_address.as_deref(), Some("minio.storage.svc:9000"));
    assert_eq!(
        s3.secret_key.as_ref().unwrap().expose(),
        "s3-secret-key-value-123"
    );
    assert_eq!(s3.bucket_name.as_deref(), Some("runner-cache"));
    assert_eq!(s3.insecure, Some(true));
    assert_eq!(s3.authentication_type.as_deref(), Some("access-key"));

    let k = r.kubernetes.as_ref().unwrap();
    assert_eq!(k.privileged, Some(true));
    assert_eq!(k.cap_drop, vec!["NET_RAW", "MKNOD"]);
    assert_eq!(k.pull_policies(), &[PullPolicy::IfNotPresent]);
    assert_eq!(k.dns_policy, Some(DnsPolicy::ClusterFirst));
    assert!(!k.print_pod_warning_events());
    assert_eq!(k.node_selector["kubernetes.io/arch"], "amd64");
    assert_eq!(k.node_tolerations["ci-only=true"], "NoSchedule");
    assert_eq!(
        k.node_tolerations["node.kubernetes.io/disk-pressure"],
        "NoExecute"
    );
    assert_eq!(
        k.pod_annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "false"
    );

    let psc = k.pod_security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_user, psc.fs_group, psc.run_as_non_root),
        (Some(1000), Some(1000), Some(true))
    );
    assert_eq!(psc.supplemental_groups, vec![2000, 2001]);
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().r#type.as_deref(),
        Some("RuntimeDefault")
    );
    let build = k.build_container_security_context.as_ref().unwrap();
    assert_eq!(build.capabilities.as_ref().unwrap().drop, vec!["ALL"]);
    assert_eq!(build.allow_privilege_escalation, Some(false));
    assert_eq!(
        k.helper_container_security_context
            .as_ref()
            .unwrap()
            .run_as_user,
        Some(65534)
    );

    let affinity = k.affinity.as_ref().unwrap();
    let node = affinity.node_affinity.as_ref().unwrap();
    let required = node
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap();
    let expr = &required.node_selector_terms[0].match_expressions[0];
    assert_eq!(
        (expr.key.as_str(), expr.operator.as_str()),
        ("node-role.example.com/ci", "In")
    );
    assert_eq!(expr.values, vec!["true"]);
    let preferred = &node.preferred_during_scheduling_ignored_during_execution[0];
    assert_eq!(preferred.weight, 100);
    assert_eq!(preferred.preference.match_expressions[0].values.len(), 2);
    let anti = &affinity
        .pod_anti_affinity
        .as_ref()
        .unwrap()
        .preferred_during_scheduling_ignored_during_execution[0];
    assert_eq!(anti.weight, 50);
    assert_eq!(
        anti.pod_affinity_term.topology_key.as_deref(),
        Some("kubernetes.io/hostname")
    );
    assert_eq!(
        anti.pod_affinity_term
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels["app.kubernetes.io/name"],
        "database"
    );

    assert_eq!(k.host_aliases[0].ip, "10.20.30.40");
    assert_eq!(k.host_aliases[0].hostnames.len(), 2);
    let dns = k.dns_config.as_ref().unwrap();
    assert_eq!(dns.nameservers, vec!["10.0.0.10"]);
    assert_eq!(dns.options[0].value.as_deref(), Some("2"));
    assert_eq!(dns.options[1].value, None);

    assert_eq!(k.services.len(), 2);
    assert_eq!(k.services[0].alias.as_deref(), Some("docker"));
    assert_eq!(k.services[0].command, vec!["--tls=false"]);
    assert_eq!(k.services[0].environment.0, vec!["DOCKER_TLS_CERTDIR="]);
    assert_eq!(k.services[1].name, "postgres:16");

    let v = &k.volumes;
    assert_eq!(
        v.host_path[0].host_path.as_deref(),
        Some("/var/run/docker.sock")
    );
    assert_eq!(v.host_path[0].read_only, Some(true));
    assert_eq!(v.pvc[0].name, "build-cache-$CI_CONCURRENT_ID");
    assert_eq!(v.config_map[0].items["settings.xml"], "maven/settings.xml");
    assert_eq!(v.secret[0].mount_path, "/etc/ssl/corp");
    assert_eq!(v.empty_dir[0].medium.as_deref(), Some("Memory"));
    assert_eq!(v.empty_dir[0].size_limit.as_deref(), Some("1Gi"));
    assert_eq!(v.csi[0].driver, "secrets-store.csi.k8s.io");
    assert_eq!(
        v.csi[0].volume_attributes["secretProviderClass"],
        "ci-vault"
    );
    assert_eq!(
        (v.nfs[0].server.as_str(), v.nfs[0].path.as_str()),
        ("nfs.storage.corp.example", "/exports/ci")
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn several_runners() {
    let l = load("several-runners.toml");
    let c = &l.config;
    assert_eq!(c.runners.len(), 3);
    assert_eq!(c.check_interval(), Duration::from_secs(10));
    assert_eq!(c.shutdown_timeout(), Duration::from_secs(120));
    assert_eq!(c.connection_max_age(), Duration::from_secs(1800));
    assert_eq!(c.log_level, Some(LogLevel::Warn));
    assert_eq!(c.log_format(), LogFormat::Text);
    let session = c.session_server.as_ref().unwrap();
    assert_eq!(session.listen_address.as_deref(), Some("[::]:8093"));
    assert_eq!(session.session_timeout(), Duration::from_secs(900));

    let names: Vec<_> = c.runners.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["gitlab-com-k8s", "self-managed-k8s", "deploy"]);
    let first = &c.runners[0];
    let labels = first.computed_labels(&c.labels);
    assert_eq!(
        (labels["region"].as_str(), labels["pool"].as_str()),
        ("eu-west", "k8s")
    );
    assert_eq!(first.limit(), Some(4));
    let second = &c.runners[1];
    assert_eq!(second.unhealthy_requests_limit(), 5);
    assert_eq!(second.unhealthy_interval(), Duration::from_secs(600));
    assert_eq!(second.effective_request_concurrency(), 1);
    let deploy = &c.runners[2];
    assert_eq!(deploy.executor_kind(), Some(ExecutorKind::Shell));
    assert_eq!(deploy.prepare_timeout.unwrap().0, Duration::from_secs(120));
    assert_eq!(
        deploy.get_sources_timeout.unwrap().0,
        Duration::from_secs(5400)
    );
    // Defaults for what the file leaves out.
    assert_eq!(deploy.output_limit_bytes(), 4096 * 1024);
    assert_eq!(deploy.unhealthy_requests_limit(), 3);
    assert_eq!(deploy.unhealthy_interval(), Duration::from_secs(3600));
    assert_eq!(deploy.job_status_final_update_retry_limit(), 10);
}
