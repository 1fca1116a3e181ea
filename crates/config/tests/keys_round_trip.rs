//! Every global, runner and `[runners.kubernetes]` key reaches the typed config: the fixture
//! `all-keys.toml` names every field of the structs, loads without warnings, and encodes back to the
//! same TOML values.

use glrunner_config::kubernetes::{DnsPolicy, PatchType, PullPolicy};
use glrunner_config::{
    CacheConfig, Config, KubernetesConfig, LogFormat, LogLevel, RunnerConfig, SessionServer,
};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all-keys.toml")
}

/// A deserializer that only records the field names a struct asks for.
struct FieldNames<'a>(&'a mut Vec<&'static str>);

#[derive(Debug)]
struct Stop;
impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop")
    }
}
impl std::error::Error for Stop {}
impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.extend_from_slice(fields);
        Err(Stop)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields<T: for<'de> Deserialize<'de>>() -> BTreeSet<&'static str> {
    let mut names = Vec::new();
    let _ = T::deserialize(FieldNames(&mut names));
    names.into_iter().collect()
}

fn table_keys(v: &toml::Value) -> BTreeSet<String> {
    v.as_table().unwrap().keys().cloned().collect()
}

fn raw() -> toml::Value {
    toml::from_str(&std::fs::read_to_string(fixture_path()).unwrap()).unwrap()
}

#[test]
fn the_fixture_names_every_field() {
    let raw = raw();
    let runner = &raw["runners"][0];
    let cases: [(&str, BTreeSet<&str>, &toml::Value); 8] = [
        ("global", fields::<Config>(), &raw),
        (
            "session_server",
            fields::<SessionServer>(),
            &raw["session_server"],
        ),
        ("runner", fields::<RunnerConfig>(), runner),
        ("cache", fields::<CacheConfig>(), &runner["cache"]),
        (
            "cache.s3",
            fields::<glrunner_config::CacheS3>(),
            &runner["cache"]["s3"],
        ),
        (
            "cache.gcs",
            fields::<glrunner_config::CacheGcs>(),
            &runner["cache"]["gcs"],
        ),
        (
            "cache.azure",
            fields::<glrunner_config::CacheAzure>(),
            &runner["cache"]["azure"],
        ),
        (
            "kubernetes",
            fields::<KubernetesConfig>(),
            &runner["kubernetes"],
        ),
    ];
    for (what, expected, value) in cases {
        assert!(expected.len() >= 3, "{what}: no field names recorded");
        let present = table_keys(value);
        let missing: Vec<_> = expected.iter().filter(|f| !present.contains(**f)).collect();
        // token and token_file exclude each other; token_file is covered by its own tests.
        let missing: Vec<_> = missing
            .into_iter()
            .filter(|f| !(what == "runner" && **f == "token_file"))
            .collect();
        assert!(missing.is_empty(), "{what}: the fixture lacks {missing:?}");
    }
    // gitlab-runner 19.4 reads 113 keys in [runners.kubernetes].
    assert_eq!(fields::<KubernetesConfig>().len(), 113);
}

#[test]
fn all_keys_encode_back_to_the_same_values() {
    let loaded = Config::load_with_env(fixture_path(), &|_| None).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // Through the document serializer, the one config.toml edits use.
    let back: toml::Value = toml::from_str(&toml::to_string(&loaded.config).unwrap()).unwrap();
    let raw = raw();
    // Compare section by section for readable failures, then the whole.
    let runner_back = &back["runners"][0];
    let runner_raw = &raw["runners"][0];
    for key in table_keys(runner_raw) {
        assert_eq!(
            runner_back.get(&key),
            runner_raw.get(&key),
            "runners[0].{key}"
        );
    }
    for key in table_keys(&raw) {
        assert_eq!(back.get(&key), raw.get(&key), "{key}");
    }
    assert_eq!(back, raw);
}

#[test]
fn all_keys_have_their_typed_values() {
    let c = Config::load_with_env(fixture_path(), &|_| None)
        .unwrap()
        .config;
    assert_eq!(c.concurrent(), 7);
    assert_eq!(c.check_interval(), Duration::from_secs(11));
    assert_eq!(c.log_level, Some(LogLevel::Debug));
    assert_eq!(c.log_format(), LogFormat::Json);
    assert_eq!(c.shutdown_timeout(), Duration::from_secs(45));
    assert_eq!(c.connection_max_age(), Duration::from_secs(1200));
    assert_eq!(
        c.sentry_dsn.as_ref().unwrap().expose(),
        "https://public-key-abc@sentry.example.com/42"
    );
    assert_eq!(c.state_dir.as_deref(), Some(Path::new("/var/lib/glrunner")));

    let r = &c.runners[0];
    assert_eq!(
        r.tls_cert_file.as_deref(),
        Some(Path::new("/certs/client.pem"))
    );
    assert_eq!(
        r.tls_key_file.as_deref(),
        Some(Path::new("/certs/client.key"))
    );
    assert_eq!(
        r.token_expires_at.unwrap().to_rfc3339(),
        "2027-01-02T03:04:05Z"
    );
    assert_eq!(r.shell(), "sh");
    assert_eq!(r.output_limit_bytes(), 8192 * 1024);
    assert_eq!(r.effective_request_concurrency(), 5);
    assert_eq!(r.strict_check_interval, Some(true));
    assert_eq!(r.unhealthy_requests_limit(), 6);
    assert_eq!(r.unhealthy_interval(), Duration::from_secs(5400));
    assert_eq!(r.job_status_final_update_retry_limit(), 12);
    assert_eq!(r.clean_git_config, Some(false));
    assert_eq!(
        r.artifact.as_ref().unwrap().upload_timeout.unwrap().0,
        Duration::from_secs(7200)
    );

    let k = r.kubernetes.as_ref().unwrap();
    assert_eq!(
        k.bearer_token.as_ref().unwrap().expose(),
        "K8S-BEARER-TOKEN-ALL"
    );
    assert_eq!(
        k.dns_policy.unwrap().as_kubernetes(),
        "ClusterFirstWithHostNet"
    );
    assert_eq!(
        k.allowed_pull_policies,
        vec![PullPolicy::Always, PullPolicy::IfNotPresent]
    );
    assert_eq!(k.retry_limit(), 6);
    assert_eq!(k.retry_backoff_max(), Duration::from_millis(3000));
    assert_eq!(k.retry_limits["connection refused"], 8);
    assert_eq!(k.cleanup_resources_timeout(), Duration::from_secs(420));
    assert_eq!(k.pod_spec[0].patch_type, Some(PatchType::Json));
    assert_eq!(
        k.pod_spec[1].patch_path.as_deref(),
        Some(Path::new("/etc/glrunner/patch.yaml"))
    );
    assert_eq!(k.dns_policy, Some(DnsPolicy::ClusterFirstWithHostNet));
    let lifecycle = k.container_lifecycle.as_ref().unwrap();
    assert_eq!(
        lifecycle
            .post_start
            .as_ref()
            .unwrap()
            .exec
            .as_ref()
            .unwrap()
            .command,
        vec!["touch", "/tmp/started"]
    );
    let pre_stop = lifecycle.pre_stop.as_ref().unwrap();
    assert_eq!(pre_stop.http_get.as_ref().unwrap().port, 8080);
    assert_eq!(
        pre_stop.http_get.as_ref().unwrap().http_headers[0].name,
        "X-Reason"
    );
    assert_eq!(pre_stop.tcp_socket.as_ref().unwrap().port, 9000);
    let autoscaler = k.autoscaler.as_ref().unwrap();
    assert_eq!(
        autoscaler.policy[0].idle_time.unwrap().0,
        Duration::from_secs(1800)
    );
    assert_eq!(autoscaler.policy[0].scale_factor, Some(0.5));
    let pod_affinity = &k.affinity.as_ref().unwrap().pod_affinity.as_ref().unwrap();
    let term = &pod_affinity.required_during_scheduling_ignored_during_execution[0];
    assert_eq!(
        term.namespace_selector.as_ref().unwrap().match_labels["ci"],
        "true"
    );
    assert_eq!(
        term.label_selector.as_ref().unwrap().match_expressions[0].operator,
        "Exists"
    );
    assert_eq!(
        k.volumes.host_path[0].mount_propagation.as_deref(),
        Some("HostToContainer")
    );
    assert_eq!(k.volumes.secret[0].items["key2"], "path2");
    assert_eq!(k.volumes.csi[0].fs_type.as_deref(), Some("ext4"));
}
