//! Connecting (K6) and the API wrapper (K1, K4, K5) against the Kubernetes API test server: each way of
//! reaching the API server says which one it was and authenticates as the right identity; a 403
//! names the identity and prints a Role that, applied, fixes it; creates are idempotent; transient
//! failures are retried and counted.

mod common;

use axum::http::StatusCode;
use common::*;
use glrunner_kubernetes::api::{Kube, KubeError};
use glrunner_kubernetes::connection::{ConnectError, ConnectOptions, HostAuth, Source, connect};
use glrunner_kubernetes::permissions::Verb;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

fn labelled_secret(name: &str, job: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("glrunner/system-id".into(), "s_000000000001".into()),
                ("glrunner/job-id".into(), job.into()),
            ])),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    }
}

#[tokio::test]
async fn a_kubeconfig_context_is_used_and_named() {
    let env = env(true).await;
    let conn = env.connect(&ci_jobs()).await;
    assert_eq!(
        conn.source,
        Source::Kubeconfig {
            path: Some(env.kubeconfig.clone()),
            context: "runner".into()
        }
    );
    assert!(conn.source.to_string().contains("context \"runner\""));
    assert_eq!(conn.home_namespace.as_deref(), Some("ci-system"));
    assert_eq!(conn.server, env.server.url());
    let kube = Kube::new(conn.client, &ci_jobs());
    let me = kube.whoami().await.expect("whoami");
    assert_eq!(
        me.username.as_deref(),
        Some("system:serviceaccount:ci-system:glrunner")
    );
    assert_eq!(kube.identity(), Some(manager()));

    let mut config = ci_jobs();
    config.context = Some("elsewhere".into());
    let err = connect(&config, &env.options())
        .await
        .expect_err("no such context");
    let text = err.to_string();
    assert!(text.contains("no context \"elsewhere\""), "{text}");
    assert!(text.contains("it has: runner"), "{text}");
}

#[tokio::test]
async fn in_cluster_service_account() {
    let env = env(true).await;
    let dir = env.server.workdir().join("serviceaccount");
    env.server
        .write_service_account_dir(&env.sa, "ci-system", &dir)
        .expect("sa dir");
    let options = ConnectOptions {
        service_account_dir: dir.clone(),
        service_host: Some(("127.0.0.1".into(), env.server.addr().port().to_string())),
        kubeconfig: Some(env.server.workdir().join("missing-kubeconfig")),
    };
    let conn = connect(&ci_jobs(), &options).await.expect("in-cluster");
    assert_eq!(conn.source, Source::InCluster { dir: dir.clone() });
    assert_eq!(conn.home_namespace.as_deref(), Some("ci-system"));
    let kube = Kube::new(conn.client, &ci_jobs());
    assert_eq!(
        kube.whoami().await.expect("whoami").username.as_deref(),
        Some("system:serviceaccount:ci-system:glrunner")
    );

    // Outside a pod and without a kubeconfig there is nothing to use: say so and how to fix it.
    let nothing = ConnectOptions {
        service_host: None,
        ..options
    };
    let err = connect(&ci_jobs(), &nothing).await.expect_err("nothing");
    assert!(matches!(err, ConnectError::Nothing { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("KUBECONFIG") && text.contains("`host`"),
        "{text}"
    );
}

#[tokio::test]
async fn explicit_host_with_a_token_or_a_client_certificate() {
    let env = env(true).await;
    let ca = env.server.workdir().join("ca.pem");
    std::fs::write(&ca, env.server.ca_pem()).expect("ca");
    let glrunner_apiserver::Credential::Token(token) = &env.sa.credential else {
        panic!("a service account has a token")
    };
    let mut config = ci_jobs();
    config.host = Some(env.server.url());
    config.ca_file = Some(ca.clone());
    config.bearer_token = Some(token.expose().into());
    let conn = connect(&config, &env.options())
        .await
        .expect("host + token");
    assert_eq!(
        conn.source,
        Source::Host {
            auth: HostAuth::BearerToken
        }
    );
    let kube = Kube::new(conn.client, &config);
    assert_eq!(
        kube.whoami().await.expect("whoami").username.as_deref(),
        Some("system:serviceaccount:ci-system:glrunner")
    );

    let admin = env
        .server
        .user_certificate("ci-admin", &["ci-admins"])
        .expect("certificate");
    let glrunner_apiserver::Credential::ClientCertificate(c) = &admin.credential else {
        panic!("a certificate")
    };
    let (cert, key) = (
        env.server.workdir().join("c.pem"),
        env.server.workdir().join("k.pem"),
    );
    std::fs::write(&cert, &c.cert_pem).expect("cert");
    std::fs::write(&key, c.key_pem.expose()).expect("key");
    let mut config = ci_jobs();
    config.host = Some(env.server.url());
    config.cert_file = Some(cert.clone());
    config.key_file = Some(key.clone());
    config.ca_file = Some(ca);
    let conn = connect(&config, &env.options()).await.expect("host + cert");
    assert!(conn.source.to_string().contains("c.pem"), "{}", conn.source);
    let kube = Kube::new(conn.client, &config);
    let me = kube.whoami().await.expect("whoami");
    assert_eq!(me.username.as_deref(), Some("ci-admin"));
    assert!(
        me.groups
            .unwrap_or_default()
            .contains(&"ci-admins".to_owned())
    );

    // A certificate without its CA file is refused before any request.
    config.ca_file = None;
    let err = connect(&config, &env.options())
        .await
        .expect_err("no ca_file");
    assert!(err.to_string().contains("ca_file"), "{err}");
    config.key_file = None;
    let err = connect(&config, &env.options()).await.expect_err("no key");
    assert!(
        matches!(&err, ConnectError::IncompleteCertificate { missing, .. } if missing == "key_file"),
        "{err}"
    );
}

/// The YAML a Forbidden error prints, without its indentation.
fn yaml_of(err: &KubeError) -> String {
    let KubeError::Forbidden { yaml, .. } = err else {
        panic!("not a 403: {err}")
    };
    yaml.lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn forbidden_names_the_identity_and_the_role_that_fixes_it() {
    let env = env(false).await;
    let kube = env.kube(&ci_jobs()).await;
    let secret = labelled_secret("job-1-variables", "1");
    let err = kube
        .create("ci-jobs", &secret)
        .await
        .expect_err("no Role yet");
    assert_eq!(err.code(), Some(403));
    let text = err.to_string();
    // K1 and K5: who the manager is, what it cannot do, and where.
    assert!(
        text.contains("system:serviceaccount:ci-system:glrunner")
            && text.contains("create secrets")
            && text.contains("in namespace ci-jobs"),
        "{text}"
    );
    assert!(
        text.contains("kubectl auth can-i create secrets -n ci-jobs"),
        "{text}"
    );
    // The printed fix works: apply it and the same call succeeds.
    let yaml = yaml_of(&err);
    assert!(yaml.contains("kind: RoleBinding"), "{yaml}");
    env.server
        .apply_yaml(&yaml)
        .expect("the printed YAML applies");
    kube.create("ci-jobs", &secret)
        .await
        .expect("allowed once the Role is applied");
}

#[tokio::test]
async fn a_missing_subresource_is_explained() {
    let env = env(false).await;
    // A Role from before attach execution: everything but pods/attach (K4).
    let role = role_yaml(&ci_jobs()).replace(
        "resources: [\"pods/attach\"]",
        "resources: [\"pods/portforward\"]",
    );
    env.server.apply_yaml(&role).expect("role without attach");
    let kube = env.kube(&ci_jobs()).await;
    let params = kube::api::AttachParams::default()
        .container("build")
        .stdin(true)
        .stdout(false)
        .stderr(false);
    let err = match kube.attach("ci-jobs", "runner-x", &params).await {
        Ok(_) => panic!("attach must be refused"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(text.contains("pods/attach"), "{text}");
    assert!(
        text.contains("must be listed in the Role on their own"),
        "{text}"
    );
    assert!(yaml_of(&err).contains("resources: [\"pods/attach\"]"));
}

#[tokio::test]
async fn creates_are_idempotent_for_the_same_job_only() {
    let env = env(true).await;
    let kube = env.kube(&ci_jobs()).await;
    let secret = labelled_secret("job-7-variables", "7");
    let first = kube.create("ci-jobs", &secret).await.expect("create");
    let again = kube
        .create("ci-jobs", &secret)
        .await
        .expect("same job: the existing object");
    assert_eq!(first.metadata.uid, again.metadata.uid);
    let other = labelled_secret("job-7-variables", "8");
    let err = kube
        .create("ci-jobs", &other)
        .await
        .expect_err("another job's name");
    assert!(matches!(err, KubeError::Conflict { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("kubectl -n ci-jobs delete secrets job-7-variables"),
        "{err}"
    );
    let counts = kube.counts();
    assert_eq!(counts.get("secrets create"), Some(&3));
    assert_eq!(counts.get("secrets get"), Some(&2));
    assert_eq!(
        env.server.request_count("create", "secrets", ""),
        3,
        "the server saw the same calls"
    );
    // 404 on delete is success; a second delete is harmless.
    kube.delete::<Secret>("ci-jobs", "job-7-variables", &Default::default())
        .await
        .expect("delete");
    kube.delete::<Secret>("ci-jobs", "job-7-variables", &Default::default())
        .await
        .expect("already gone");
    assert!(
        kube.get_opt::<Pod>("ci-jobs", "nothing")
            .await
            .expect("get_opt")
            .is_none()
    );
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_and_counted() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // An API server that answers 503 twice, then serves the pod.
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/api/v1/namespaces/ci/pods/p",
        axum::routing::get(move || {
            let c = c.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: request timed out","reason":"ServiceUnavailable","code":503}"#.to_owned(),
                    )
                } else {
                    (
                        StatusCode::OK,
                        r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"ci"}}"#.to_owned(),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cfg = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    // As `connect` makes them: the wrapper, not kube-rs, retries.
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg).expect("client");
    let mut config = ci_jobs();
    config.retry_backoff_max = Some(500);
    let kube = Kube::new(client, &config);
    let started = std::time::Instant::now();
    let pod: Pod = kube.get("ci", "p").await.expect("third try works");
    assert_eq!(pod.metadata.name.as_deref(), Some("p"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(kube.counts().get("pods get"), Some(&3));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1000),
        "two waits of 500 ms"
    );

    // A limit of 2 tries gives up with the cause and the fix.
    calls.store(0, Ordering::SeqCst);
    config.retry_limit = Some(2);
    let kube = Kube::new(kube.client().clone(), &config);
    let err = kube.get::<Pod>("ci", "p").await.expect_err("gives up");
    assert!(err.is_transport(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("2 time(s)") && text.contains("retry_limit"),
        "{text}"
    );
    assert_eq!(Verb::Get.as_str(), "get");
}
