//! kube-rs against the test server: CRUD with the exact Status errors (404, 409, 422, 403, 401),
//! patches, watches (resume, 410, the runtime watcher in both list strategies, await_condition),
//! owner-reference garbage collection, admission, identities (certificate, token, in-cluster), plain
//! HTTP, and request counters.

mod common;

use common::{runner_cluster, server};
use futures_util::{StreamExt, TryStreamExt};
use glrunner_apiserver::{ApiServer, Options};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, conditions, wait::await_condition, watcher};
use serde_json::{Value, json};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "ci"}},
        "spec": {"containers": [
            {"name": "build", "image": "alpine:3.20", "command": ["sh"]},
            {"name": "helper", "image": "glrunner:latest"}
        ]}
    }))
    .expect("pod")
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// `Status` as JSON, for exact comparisons (kube-rs drops `kind`, `apiVersion` and `metadata`).
fn status_json(s: &kube::core::Status) -> Value {
    serde_json::to_value(s).expect("status json")
}

async fn pods(s: &ApiServer, ns: &str) -> Api<Pod> {
    Api::namespaced(s.admin_client().await.expect("admin client"), ns)
}

#[tokio::test]
async fn create_get_list_and_the_not_found_and_already_exists_statuses() {
    let s = runner_cluster().await;
    let api = pods(&s, "ci-jobs").await;
    let created = api
        .create(&PostParams::default(), &pod("p1"))
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().expect("uid");
    assert!(created.metadata.creation_timestamp.is_some());
    let got = api.get("p1").await.expect("get");
    assert_eq!(got.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        got.spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref()),
        Some("default")
    );
    let list = api
        .list(&ListParams::default().labels("app=ci"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    assert!(
        api.list(&ListParams::default().labels("app=other"))
            .await
            .expect("list")
            .items
            .is_empty()
    );

    let gone = api_status(api.get("nope").await.expect_err("404"));
    assert_eq!(
        status_json(&gone),
        json!({"metadata":{},"status":"Failure","code":404,"message":"pods \"nope\" not found","reason":"NotFound",
               "details":{"name":"nope","kind":"pods"}})
    );
    let dup = api_status(
        api.create(&PostParams::default(), &pod("p1"))
            .await
            .expect_err("409"),
    );
    assert_eq!(
        status_json(&dup),
        json!({"metadata":{},"status":"Failure","code":409,"message":"pods \"p1\" already exists","reason":"AlreadyExists",
               "details":{"name":"p1","kind":"pods"}})
    );
    let mut generated = pod("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("runner-abc-".into());
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .expect("generateName");
    let name = g.metadata.name.expect("generated name");
    assert!(
        name.starts_with("runner-abc-") && name.len() == "runner-abc-".len() + 5,
        "{name}"
    );
}

#[tokio::test]
async fn invalid_objects_and_stale_updates() {
    let s = runner_cluster().await;
    let api = pods(&s, "ci-jobs").await;
    let mut bad = pod("bad");
    if let Some(spec) = bad.spec.as_mut() {
        spec.containers.clear();
    }
    let invalid = api_status(
        api.create(&PostParams::default(), &bad)
            .await
            .expect_err("422"),
    );
    assert_eq!(
        status_json(&invalid),
        json!({"metadata":{},"status":"Failure","code":422,"message":"Pod \"bad\" is invalid: spec.containers: Required value",
               "reason":"Invalid","details":{"name":"bad","kind":"Pod",
               "causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers"}]}})
    );

    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(s.admin_client().await.expect("client"), "ci-jobs");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata":{"name":"c"},"data":{"a":"1"}})).expect("cm"),
        )
        .await
        .expect("create");
    let mut first = cm.clone();
    first.data = Some([("a".to_owned(), "2".to_owned())].into());
    cms.replace("c", &PostParams::default(), &first)
        .await
        .expect("replace");
    let mut stale = cm;
    stale.data = Some([("a".to_owned(), "3".to_owned())].into());
    let conflict = api_status(
        cms.replace("c", &PostParams::default(), &stale)
            .await
            .expect_err("409"),
    );
    assert_eq!(
        status_json(&conflict),
        json!({"metadata":{},"status":"Failure","code":409,"reason":"Conflict",
               "message":"Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again",
               "details":{"name":"c","kind":"configmaps"}})
    );
}

#[tokio::test]
async fn admission_refuses_missing_namespaces_and_service_accounts() {
    let s = runner_cluster().await;
    let nowhere = pods(&s, "nope").await;
    let err = api_status(
        nowhere
            .create(&PostParams::default(), &pod("p"))
            .await
            .expect_err("404"),
    );
    assert_eq!(err.message, "namespaces \"nope\" not found");
    assert_eq!(err.code, 404);

    let api = pods(&s, "ci-jobs").await;
    let mut p = pod("");
    p.metadata.name = None;
    p.metadata.generate_name = Some("runner-".into());
    if let Some(spec) = p.spec.as_mut() {
        spec.service_account_name = Some("sa".into());
    }
    let err = api_status(
        api.create(&PostParams::default(), &p)
            .await
            .expect_err("403"),
    );
    assert_eq!(
        status_json(&err),
        json!({"metadata":{},"status":"Failure","code":403,"reason":"Forbidden",
               "message":"pods \"runner-\" is forbidden: error looking up service account ci-jobs/sa: serviceaccount \"sa\" not found",
               "details":{"name":"runner-","kind":"pods"}})
    );
}

#[tokio::test]
async fn a_service_account_is_denied_attach_with_the_exact_message() {
    let s = runner_cluster().await;
    let sa = s.service_account_token("ci-system", "glrunner");
    let client = s.client_for(&sa).await.expect("client");
    let api: Api<Pod> = Api::namespaced(client.clone(), "ci-jobs");
    api.create(&PostParams::default(), &pod("x"))
        .await
        .expect("the runner may create pods");
    let req =
        http::Request::post("/api/v1/namespaces/ci-jobs/pods/x/attach?container=build&stdin=true")
            .body(Vec::new())
            .expect("request");
    let err = api_status(client.request::<Value>(req).await.expect_err("403"));
    assert_eq!(
        status_json(&err),
        json!({"metadata":{},"status":"Failure","code":403,"reason":"Forbidden",
               "message":"pods \"x\" is forbidden: User \"system:serviceaccount:ci-system:glrunner\" cannot create resource \"pods/attach\" in API group \"\" in the namespace \"ci-jobs\"",
               "details":{"name":"x","kind":"pods"}})
    );
    let secrets: Api<Secret> = Api::namespaced(client, "ci-jobs");
    let err = api_status(secrets.list(&ListParams::default()).await.expect_err("403"));
    assert_eq!(
        err.message,
        "secrets is forbidden: User \"system:serviceaccount:ci-system:glrunner\" cannot list resource \"secrets\" in API group \"\" in the namespace \"ci-jobs\""
    );
    assert_eq!(status_json(&err)["details"], json!({"kind":"secrets"}));
}

#[tokio::test]
async fn strategic_merge_json_and_merge_patches() {
    let s = runner_cluster().await;
    let api = pods(&s, "ci-jobs").await;
    api.create(&PostParams::default(), &pod("p"))
        .await
        .expect("create");
    let pp = PatchParams::default();
    let p = api
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"metadata":{"labels":{"stage":"build"}},
            "spec":{"containers":[{"name":"build","image":"alpine:3.21"}]}})),
        )
        .await
        .expect("strategic");
    let spec = p.spec.expect("spec");
    assert_eq!(spec.containers.len(), 2, "containers merge by name");
    assert_eq!(spec.containers[0].image.as_deref(), Some("alpine:3.21"));
    assert_eq!(spec.containers[0].command, Some(vec!["sh".to_owned()]));
    let labels = p.metadata.labels.expect("labels");
    assert_eq!(
        (labels["app"].as_str(), labels["stage"].as_str()),
        ("ci", "build")
    );

    let p = api
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata":{"labels":{"app":null}}})),
        )
        .await
        .expect("merge");
    assert!(!p.metadata.labels.expect("labels").contains_key("app"));
    // JSON patch, sent raw (kube's typed variant needs its `jsonpatch` feature).
    let ops = json!([
        {"op":"add","path":"/metadata/annotations","value":{"job.runner.gitlab.com/id":"42"}},
        {"op":"test","path":"/spec/containers/1/name","value":"helper"}
    ]);
    let req = http::Request::patch("/api/v1/namespaces/ci-jobs/pods/p")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).expect("ops"))
        .expect("request");
    let client = s.admin_client().await.expect("client");
    let p: Pod = client.request(req).await.expect("json patch");
    assert_eq!(
        p.metadata.annotations.expect("annotations")["job.runner.gitlab.com/id"],
        "42"
    );
    let err = api_status(
        api.patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"spec":{"restartPolicy":"Never"}})),
        )
        .await
        .expect_err("pod spec is immutable"),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.starts_with(
            "Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than"
        ),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn deleting_a_pod_collects_what_it_owns_and_orphan_keeps_it() {
    let s = runner_cluster().await;
    let client = s.admin_client().await.expect("client");
    let api: Api<Pod> = Api::namespaced(client.clone(), "ci-jobs");
    let secrets: Api<Secret> = Api::namespaced(client, "ci-jobs");
    for (pod_name, secret_name) in [("owner", "owned"), ("parent", "orphan")] {
        let p = api
            .create(&PostParams::default(), &pod(pod_name))
            .await
            .expect("pod");
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod_name.into(),
            uid: p.metadata.uid.expect("uid"),
            ..Default::default()
        };
        let mut secret: Secret =
            serde_json::from_value(json!({"metadata":{"name":secret_name},"stringData":{"k":"v"}}))
                .expect("secret");
        secret.metadata.owner_references = Some(vec![owner]);
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret");
    }
    api.delete("owner", &DeleteParams::background())
        .await
        .expect("delete");
    assert!(api.get_opt("owner").await.expect("get").is_none());
    assert!(
        secrets.get_opt("owned").await.expect("get").is_none(),
        "the owned secret is collected"
    );

    api.delete("parent", &DeleteParams::orphan())
        .await
        .expect("delete");
    let kept = secrets.get("orphan").await.expect("orphan kept");
    assert!(kept.metadata.owner_references.is_none_or(|r| r.is_empty()));
    assert_eq!(kept.data.expect("data")["k"].0, b"v".to_vec());
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_and_gets_410_when_too_old() {
    let s = runner_cluster().await;
    let api = pods(&s, "ci-jobs").await;
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    api.create(&PostParams::default(), &pod("a"))
        .await
        .expect("a");
    api.create(&PostParams::default(), &pod("b"))
        .await
        .expect("b");
    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete a");
    let stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch");
    let events: Vec<WatchEvent<Pod>> = tokio::time::timeout(LIMIT, stream.take(3).try_collect())
        .await
        .expect("three events in time")
        .expect("events");
    let seen: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(p) => {
                format!("ADDED {}", p.metadata.name.clone().unwrap_or_default())
            }
            WatchEvent::Deleted(p) => {
                format!("DELETED {}", p.metadata.name.clone().unwrap_or_default())
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, vec!["ADDED a", "ADDED b", "DELETED a"]);

    s.store().compact();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    let first = tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("in time")
        .expect("an event")
        .expect("decoded");
    let WatchEvent::Error(status) = first else {
        panic!("expected an ERROR event, got {first:?}")
    };
    assert_eq!(status.code, 410);
    assert_eq!(status.reason, "Expired");
    let floor = s.store().resource_version();
    assert_eq!(
        status.message,
        format!("too old resource version: {rv} ({floor})")
    );
}

#[tokio::test]
async fn the_runtime_watcher_and_await_condition_work_in_both_list_strategies() {
    let s = runner_cluster().await;
    let api = pods(&s, "ci-jobs").await;
    api.create(&PostParams::default(), &pod("before"))
        .await
        .expect("before");
    let mut existing = vec!["before".to_owned()];
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let streaming = config.initial_list_strategy == watcher::InitialListStrategy::StreamingList;
        let mut applied = watcher(api.clone(), config).applied_objects().boxed();
        let mut initial = Vec::new();
        for _ in 0..existing.len() {
            let p = tokio::time::timeout(LIMIT, applied.next())
                .await
                .expect("in time")
                .expect("item")
                .expect("pod");
            initial.push(p.metadata.name.unwrap_or_default());
        }
        initial.sort();
        assert_eq!(initial, existing, "streaming={streaming}");
        let name = if streaming {
            "after-streaming"
        } else {
            "after-list"
        };
        api.create(&PostParams::default(), &pod(name))
            .await
            .expect("create");
        let next = tokio::time::timeout(LIMIT, applied.next())
            .await
            .expect("in time")
            .expect("item")
            .expect("pod");
        assert_eq!(
            next.metadata.name.as_deref(),
            Some(name),
            "streaming={streaming}"
        );
        existing.push(name.to_owned());
        existing.sort();
    }
    let waiting = tokio::spawn(await_condition(
        api.clone(),
        "before",
        conditions::is_pod_running(),
    ));
    s.store()
        .update_pod_status("ci-jobs", "before", |status| {
            status["phase"] = json!("Running")
        })
        .expect("status");
    let running = tokio::time::timeout(LIMIT, waiting)
        .await
        .expect("condition met in time")
        .expect("task")
        .expect("await_condition")
        .expect("pod");
    assert_eq!(
        running.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
    assert!(
        s.request_count("watch", "pods", "") >= 2,
        "{:?}",
        s.request_counts()
    );
    assert!(s.request_count("list", "pods", "") >= 2);
}

#[tokio::test]
async fn certificate_and_token_kubeconfigs_both_connect() {
    let s = runner_cluster().await;
    let jane = s.user_certificate("jane", &["dev"]).expect("certificate");
    let token = s.user_token("bob", &["qa"]);
    for (identity, user, groups) in [
        (&jane, "jane", vec!["dev", "system:authenticated"]),
        (&token, "bob", vec!["qa", "system:authenticated"]),
    ] {
        let client = s.client_for(identity).await.expect("client");
        let reviews: Api<SelfSubjectReview> = Api::all(client);
        let r = reviews
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .expect("self review");
        let info = r.status.and_then(|s| s.user_info).expect("user info");
        assert_eq!(info.username.as_deref(), Some(user));
        assert_eq!(
            info.groups,
            Some(groups.into_iter().map(str::to_owned).collect())
        );
    }
    // A service account's token stops working when the account is deleted.
    let sa = s.service_account_token("ci-system", "glrunner");
    let client = s.client_for(&sa).await.expect("client");
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.git_version, "v1.32.4");
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(s.admin_client().await.expect("admin"), "ci-system");
    accounts
        .delete("glrunner", &DeleteParams::default())
        .await
        .expect("delete sa");
    let err = api_status(client.apiserver_version().await.expect_err("401"));
    assert_eq!((err.code, err.message.as_str()), (401, "Unauthorized"));
}

#[tokio::test]
async fn anonymous_requests_are_unauthorized() {
    let s = server().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(s.url().parse().expect("url"));
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(s.ca_pem().as_bytes()).expect("ca");
    config.root_cert = Some(vec![der.to_vec()]);
    let client = kube::Client::try_from(config).expect("client");
    let err = api_status(client.apiserver_version().await.expect_err("401"));
    assert_eq!(
        status_json(&err),
        json!({"metadata":{},"status":"Failure","code":401,"message":"Unauthorized","reason":"Unauthorized"})
    );
}

#[tokio::test]
async fn plain_http_serves_token_users() {
    let s = ApiServer::start(Options::default().with_http())
        .await
        .expect("start");
    s.apply_yaml(&common::RUNNER_RBAC).expect("rbac");
    let sa = s.service_account_token("ci-system", "glrunner");
    let mut config = kube::Config::new(s.http_url().expect("http").parse().expect("url"));
    config.auth_info.token = Some(sa.token().expect("token").expose().to_owned().into());
    config.default_namespace = "ci-jobs".into();
    let client = kube::Client::try_from(config).expect("client");
    let api: Api<Pod> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &pod("over-http"))
        .await
        .expect("create");
    assert!(s.store().get("pods", "ci-jobs", "over-http").is_some());
    let log = s.request_log();
    let create = log
        .iter()
        .find(|r| r.verb == "create" && r.resource == "pods")
        .expect("logged");
    assert_eq!(create.user, "system:serviceaccount:ci-system:glrunner");
    assert_eq!((create.status, create.namespace.as_str()), (201, "ci-jobs"));
}

/// In-cluster config: the service-account directory is mounted at kube-rs's fixed path inside a
/// private mount namespace (`unshare -m`), and this test binary runs the client there.
#[tokio::test]
async fn in_cluster_config_connects() {
    let s = runner_cluster().await;
    let sa = s.service_account_token("ci-system", "glrunner");
    let dir = s.workdir().join("serviceaccount");
    s.write_service_account_dir(&sa, "ci-jobs", &dir)
        .expect("sa dir");
    let exe = std::env::current_exe().expect("test binary");
    let script = r#"set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount
cp "$SA_DIR"/token "$SA_DIR"/ca.crt "$SA_DIR"/namespace /run/secrets/kubernetes.io/serviceaccount/
exec "$@""#;
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&exe)
    .args([
        "in_cluster_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("SA_DIR", &dir)
    .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    .env("KUBERNETES_SERVICE_PORT", s.addr().port().to_string())
    .env("GLRUNNER_IN_CLUSTER_CHILD", "1")
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("child finished in time")
        .expect(
            "run unshare (util-linux; needs root or CAP_SYS_ADMIN for a private mount namespace)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "in-cluster child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "in-cluster user: system:serviceaccount:ci-system:glrunner namespace: ci-jobs"
        ),
        "{stdout}"
    );
}

#[tokio::test]
#[ignore = "runs inside in_cluster_config_connects' mount namespace"]
async fn in_cluster_child() {
    assert_eq!(
        std::env::var("GLRUNNER_IN_CLUSTER_CHILD").as_deref(),
        Ok("1")
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::incluster().expect("in-cluster config");
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).expect("client");
    let reviews: Api<SelfSubjectReview> = Api::all(client);
    let r = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("self review over in-cluster config");
    let user = r
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default();
    println!("in-cluster user: {user} namespace: {namespace}");
}

#[tokio::test]
async fn label_selected_watches_see_objects_leave_and_get_bookmarks() {
    let s = ApiServer::start(Options::default().bookmark_interval(Duration::from_millis(50)))
        .await
        .expect("start");
    s.apply_yaml(&common::RUNNER_RBAC).expect("rbac");
    let api = pods(&s, "ci-jobs").await;
    api.create(&PostParams::default(), &pod("p"))
        .await
        .expect("create");
    let rv = api
        .get("p")
        .await
        .expect("get")
        .metadata
        .resource_version
        .expect("rv");
    let mut params = WatchParams::default().labels("app=ci").timeout(10);
    params.bookmarks = true;
    let mut stream = api.watch(&params, &rv).await.expect("watch").boxed();
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"labels":{"app":"other"}}})),
    )
    .await
    .expect("relabel");
    let mut saw_delete = false;
    let mut saw_bookmark = false;
    while !(saw_delete && saw_bookmark) {
        let ev = tokio::time::timeout(LIMIT, stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("decoded");
        match ev {
            WatchEvent::Deleted(p) => {
                assert_eq!(p.metadata.labels.expect("labels")["app"], "other");
                saw_delete = true;
            }
            WatchEvent::Bookmark(b) => {
                assert!(
                    b.metadata.resource_version.parse::<u64>().expect("rv")
                        >= rv.parse::<u64>().expect("rv")
                );
                saw_bookmark = true;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
}

#[tokio::test]
async fn dropping_the_server_ends_its_watches() {
    let s = runner_cluster().await;
    let api = pods(&s, "ci-jobs").await;
    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &pod("p"))
        .await
        .expect("create");
    let first = tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("in time")
        .expect("event");
    assert!(matches!(first, Ok(WatchEvent::Added(_))));
    drop(s);
    // The stream ends (or fails) instead of hanging.
    let end = tokio::time::timeout(LIMIT, async {
        loop {
            match stream.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the watch did not end after the server was dropped"
    );
}

// ------------------------------------------------------------------------------ eviction

/// A running, Ready pod `name` labelled `app=ci` in ci-jobs (no kubelet: its status is posted here).
async fn ready_pod(s: &ApiServer, name: &str) {
    pods(s, "ci-jobs")
        .await
        .create(&PostParams::default(), &pod(name))
        .await
        .expect("create");
    s.store()
        .update_pod_status("ci-jobs", name, |st| {
            *st = json!({"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]});
        })
        .expect("status");
}

fn budget(s: &ApiServer, name: &str, rule: &str) {
    s.apply_yaml(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: {name}, namespace: ci-jobs}}\n\
         spec: {{{rule}, selector: {{matchLabels: {{app: ci}}}}}}\n"
    ))
    .expect("budget");
}

/// POST pods/<name>/eviction as the admin: 201 and `{}`, or the error's code and `Status`.
async fn evict(s: &ApiServer, name: &str) -> (u16, Value) {
    let client = s.drain_client().await.expect("client");
    let api: Api<Pod> = Api::namespaced(client, "ci-jobs");
    match tokio::time::timeout(LIMIT, api.evict(name, &kube::api::EvictParams::default()))
        .await
        .expect("in time")
    {
        Ok(_) => (201, json!({})),
        Err(e) => {
            let st = api_status(e);
            (st.code, status_json(&st))
        }
    }
}

#[tokio::test]
async fn an_eviction_that_would_break_a_disruption_budget_is_refused_with_429() {
    let s = runner_cluster().await;
    ready_pod(&s, "a").await;
    ready_pod(&s, "b").await;
    budget(&s, "ci", "minAvailable: 2");
    let (code, body) = evict(&s, "a").await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body,
        json!({"status": "Failure", "metadata": {},
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "reason": "TooManyRequests",
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget ci needs 2 healthy pods and has 2 currently"}]},
            "code": 429})
    );
    let a = s.store().get("pods", "ci-jobs", "a").expect("still there");
    assert!(
        a.pointer("/metadata/deletionTimestamp").is_none()
            && !a.to_string().contains("DisruptionTarget"),
        "{a}"
    );
    // maxUnavailable: 0 refuses too; a second budget over the same pods is not supported.
    budget(&s, "none", "maxUnavailable: 0");
    let (code, body) = evict(&s, "a").await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("This pod has more than one PodDisruptionBudget"),
        "{body}"
    );
    s.store()
        .delete(
            glrunner_apiserver::resource::by_plural("policy", "poddisruptionbudgets")
                .expect("served"),
            "ci-jobs",
            "ci",
            &Default::default(),
        )
        .expect("delete the first budget");
    let (code, body) = evict(&s, "a").await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body.pointer("/details/causes/0/message")
            .and_then(Value::as_str),
        Some("The disruption budget none needs 2 healthy pods and has 2 currently")
    );
}

#[tokio::test]
async fn an_allowed_eviction_marks_the_pod_as_disrupted_then_deletes_it() {
    let s = runner_cluster().await;
    ready_pod(&s, "a").await;
    ready_pod(&s, "b").await;
    // One of two may go ("50%" of 2 rounds up to 1 unavailable).
    budget(&s, "ci", "maxUnavailable: \"50%\"");
    let api = pods(&s, "ci-jobs").await;
    let rv = api
        .get("a")
        .await
        .expect("get")
        .metadata
        .resource_version
        .expect("rv");
    let mut events = api
        .watch(&WatchParams::default().fields("metadata.name=a"), &rv)
        .await
        .expect("watch")
        .boxed();
    let (code, body) = evict(&s, "a").await;
    assert_eq!(code, 201, "{body}");
    // The pod is marked first (who disrupted it), then deleted.
    let mut marked = None;
    loop {
        let event = tokio::time::timeout(LIMIT, events.next())
            .await
            .expect("in time")
            .expect("an event")
            .expect("ok");
        match event {
            WatchEvent::Modified(p) if marked.is_none() => {
                marked = p
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_ == "DisruptionTarget");
            }
            WatchEvent::Deleted(_) => break,
            _ => {}
        }
    }
    let c = marked.expect("a DisruptionTarget condition before the deletion");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
        (
            "True",
            Some("EvictionByEvictionAPI"),
            Some("Eviction API: evicting")
        )
    );
    // b is the only one left: with minAvailable 1 it must stay.
    s.apply_yaml(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: ci, namespace: ci-jobs}\n\
         spec: {minAvailable: 1, selector: {matchLabels: {app: ci}}}\n",
    )
    .expect("budget");
    let (code, body) = evict(&s, "b").await;
    assert_eq!(code, 429, "{body}");
    // A pod that is not Ready may go while the budget is met by the others.
    ready_pod(&s, "c").await;
    pods(&s, "ci-jobs")
        .await
        .create(&PostParams::default(), &pod("d"))
        .await
        .expect("create");
    s.store()
        .update_pod_status("ci-jobs", "d", |st| {
            *st = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]});
        })
        .expect("status");
    let (code, body) = evict(&s, "d").await;
    assert_eq!(code, 201, "{body}");
}
