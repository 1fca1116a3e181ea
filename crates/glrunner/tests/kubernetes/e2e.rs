//! `glrunner run` with the Kubernetes executor: the real binary takes jobs from the GitLab test
//! coordinator and runs them in pods of the test cluster, as the seeds' install does (the manager's
//! service account in `ci-system`, jobs in `ci-jobs`).

use crate::cluster::{self, KubeEnv};
use crate::support::*;
use glrunner_coordinator::JobStatus;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;

/// config.toml for one Kubernetes runner: `lines` go into [runners.kubernetes].
fn write_config(env: &TestEnv, lines: &[&str]) {
    let text = env.config().render(env.dir.path());
    let mut out = String::new();
    for l in text.lines() {
        if l.contains("builds_dir") || l.contains("cache_dir") {
            continue;
        }
        out.push_str(&l.replace("executor = \"shell\"", "executor = \"kubernetes\""));
        out.push('\n');
    }
    out.push_str("  [runners.kubernetes]\n");
    out.push_str(&format!("    namespace = {:?}\n", cluster::JOB_NS));
    out.push_str(&format!("    image = {:?}\n", cluster::BUILD_IMAGE));
    out.push_str(&format!("    helper_image = {:?}\n", cluster::HELPER_IMAGE));
    out.push_str("    poll_interval = 1\n");
    for l in lines {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    std::fs::write(env.config_path(), out).expect("write config.toml");
}

fn start(env: &TestEnv, kubeconfig: &Path) -> Glrunner {
    env.spawn_run(&[("KUBECONFIG", path_str(kubeconfig))])
}

async fn setup(grant: bool) -> Option<(TestEnv, KubeEnv)> {
    let kube = cluster::start(cluster::kubelet(), grant).await?;
    Some((TestEnv::new().await, kube))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_in_a_pod_of_the_two_namespace_install_and_leaves_nothing() {
    let Some((env, kube)) = setup(true).await else {
        return;
    };
    write_config(&env, &[]);
    let gl = start(&env, &kube.kubeconfig);
    // Start-up says how it connected and as whom (K5, K6).
    let log = gl.wait_for_log("Kubernetes: connected to", WAIT).await;
    assert!(
        log.contains(&format!("connected to {}", kube.cluster.url())),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "using kubeconfig {} context \"runner\"",
            kube.kubeconfig.display()
        )),
        "{log}"
    );
    assert!(
        log.contains("as system:serviceaccount:ci-system:glrunner"),
        "{log}"
    );
    assert!(log.contains("jobs run in namespace ci-jobs"), "{log}");
    assert!(
        !log.contains("may not do"),
        "every permission is granted: {log}"
    );

    let id = env
        .gitlab
        .enqueue(job(&[
            "echo hello from $(hostname)",
            "echo \"token: $CI_JOB_TOKEN\"",
        ]))
        .expect("enqueue");
    let done = env.finished(&gl, id, Duration::from_secs(90)).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Success, "{trace}\n{}", gl.output());
    assert!(
        trace.contains("Using Kubernetes namespace: ci-jobs"),
        "{trace}"
    );
    assert!(trace.contains("hello from runner-"), "{trace}");
    assert!(trace.contains("token: [MASKED]"), "{trace}");
    assert!(done.checksum_matches(), "{trace}");
    assert!(!trace.contains(done.token.expose()));
    cluster::until_gone(&kube.cluster, id, "the job's pod and Secret going away").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permissions_are_explained_at_start_up_with_the_role_that_grants_them() {
    let Some((env, kube)) = setup(false).await else {
        return;
    };
    write_config(&env, &[]);
    let gl = start(&env, &kube.kubeconfig);
    let log = gl.wait_for_log("starting the manager", WAIT).await;
    // K1/K4/K5: who it is, what it lacks, and the YAML that fixes it; it starts anyway.
    assert!(
        log.contains("system:serviceaccount:ci-system:glrunner may not do"),
        "{log}"
    );
    assert!(
        log.contains("kubectl auth can-i create pods --subresource=attach -n ci-jobs"),
        "{log}"
    );
    assert!(log.contains("kind: RoleBinding"), "{log}");
    // A job shows the same explanation in its log, and fails as a configuration error.
    let id = env.gitlab.enqueue(job(&["true"])).expect("enqueue");
    let done = env.finished(&gl, id, Duration::from_secs(60)).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}");
    assert_eq!(
        done.failure_reason.as_deref(),
        Some("runner_configuration_error"),
        "{trace}"
    );
    assert!(trace.contains("may not do"), "{trace}");
    assert!(
        trace.contains("refused to let system:serviceaccount:ci-system:glrunner create secrets"),
        "{trace}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_context_that_does_not_exist_refuses_to_start() {
    let Some((env, kube)) = setup(true).await else {
        return;
    };
    write_config(&env, &["context = \"production\""]);
    let mut gl = start(&env, &kube.kubeconfig);
    let status = gl.exited(WAIT).await;
    assert_eq!(status.code(), Some(78), "{}", gl.output());
    let out = gl.output();
    assert!(
        out.contains("no context \"production\" (it has: runner)"),
        "{out}"
    );
    assert!(out.contains("kubectl config get-contexts"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_mid_job_cleans_up_and_fails_the_job_when_it_restarts() {
    let Some((env, kube)) = setup(true).await else {
        return;
    };
    write_config(&env, &[]);
    let mut gl = start(&env, &kube.kubeconfig);
    let id = env
        .gitlab
        .enqueue(job(&["echo started", "sleep 3000"]))
        .expect("enqueue");
    env.trace_contains(&gl, id, "\nstarted", Duration::from_secs(90))
        .await;
    gl.signal(Signal::SIGKILL);
    gl.exited(WAIT).await;
    drop(gl);
    assert!(
        !cluster::job_objects(&kube.cluster, id).is_empty(),
        "the pod outlived the manager"
    );
    assert_eq!(
        env.gitlab.job(id).map(|j| j.status),
        Some(JobStatus::Running)
    );

    // The same manager (same state, same system ID) starts again.
    let gl = start(&env, &kube.kubeconfig);
    let done = env.finished(&gl, id, Duration::from_secs(60)).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}\n{}", gl.output());
    assert_eq!(
        done.failure_reason.as_deref(),
        Some("runner_system_failure")
    );
    assert!(
        trace.contains("was restarted while this job ran in pod ci-jobs/runner-"),
        "{trace}"
    );
    let log = gl.wait_for_log("was failed in GitLab", WAIT).await;
    assert!(log.contains("deleted"), "{log}");
    cluster::until_gone(&kube.cluster, id, "the left-over pod going away").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_a_local_pipeline_in_pods_from_a_kubeconfig() {
    let Some(kube) = cluster::start(cluster::kubelet(), true).await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).expect("project dir");
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["config", "user.email", "dev@example.com"]);
    git(&project, &["config", "user.name", "Dev"]);
    std::fs::write(
        project.join(".gitlab-ci.yml"),
        "stages: [build, test]\n\
         build:\n  stage: build\n  script:\n    - echo \"built in $(hostname)\"\n    - cat notes.txt\n\
         test:\n  stage: test\n  script:\n    - echo \"testing $CI_COMMIT_BRANCH\"\n    - test -f notes.txt\n",
    )
    .expect("pipeline");
    std::fs::write(project.join("notes.txt"), "committed notes\n").expect("notes");
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "-m", "first"]);
    // Not committed yet: jobs still see it, as with the shell executor.
    std::fs::write(project.join("notes.txt"), "notes edited after the commit\n").expect("edit");

    let state = tmp.path().join("state");
    let mut gl = Glrunner::spawn_with_env(
        tmp.path(),
        &[
            "exec",
            "-C",
            path_str(&project),
            "--state-dir",
            path_str(&state),
            "--executor",
            "kubernetes",
            "--kube-namespace",
            cluster::JOB_NS,
            "--kube-image",
            cluster::BUILD_IMAGE,
            "--kube-helper-image",
            cluster::HELPER_IMAGE,
        ],
        None,
        &[("KUBECONFIG", path_str(&kube.kubeconfig))],
    );
    let status = gl.exited(Duration::from_secs(120)).await;
    let out = gl.output();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("Kubernetes at {}", kube.cluster.url())),
        "{out}"
    );
    assert!(out.contains("built in runner-local-project-"), "{out}");
    assert!(out.contains("notes edited after the commit"), "{out}");
    assert!(out.contains("testing main"), "{out}");
    assert!(out.contains("Using Kubernetes namespace: ci-jobs"), "{out}");
    // Every pod is gone.
    cluster::until(&kube.cluster, 30, "the exec pods going away", |c| {
        c.store()
            .list_as::<k8s_openapi::api::core::v1::Pod>(Some(cluster::JOB_NS))
            .is_empty()
    })
    .await;
}
