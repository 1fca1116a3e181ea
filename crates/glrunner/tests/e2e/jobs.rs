//! A job's life from GitLab's side: acknowledgement, trace, final status.

use crate::support::*;
use glrunner_coordinator::{Endpoint, JobSpec, JobStatus, ProjectSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_fetches_sources_and_is_acknowledged_traced_and_checksummed() {
    let env = TestEnv::new().await;
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo");
    let project = env
        .gitlab
        .add_project(ProjectSpec::new("acme/demo").dir(demo))
        .expect("the coordinator serves the demo project");
    let mut gl = env.start(&env.config());
    let id = env
        .gitlab
        .enqueue(
            JobSpec::script([
                "echo hello from the job",
                "./scripts/test.sh",
                "git rev-parse HEAD",
            ])
            .repository(&project),
        )
        .unwrap();
    let running = env
        .gitlab
        .wait_for(id, |j| j.status != JobStatus::Pending, WAIT)
        .await
        .unwrap();
    assert!(
        matches!(running.status, JobStatus::Running | JobStatus::Success),
        "{running:?}"
    );
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Success, "{trace}");
    assert!(trace.starts_with("\x1b[0KRunning with glrunner"), "{trace}");
    assert!(
        trace.contains(&format!("system ID: {}", env.system_id())),
        "{trace}"
    );
    assert!(
        trace.contains("\x1b[32;1m$ echo hello from the job\x1b[0;m\nhello from the job\n"),
        "{trace}"
    );
    assert!(
        trace.contains("$ ./scripts/test.sh\x1b[0;m\ncheck syntax: ok\n"),
        "{trace}"
    );
    assert!(trace.contains("\n3 checks passed\n"), "{trace}");
    // The checkout is the commit GitLab asked for.
    let payload = env.gitlab.job_payload(id).expect("the payload handed out");
    let sha = payload["git_info"]["sha"].as_str().unwrap_or_default();
    assert_eq!(sha.len(), 40);
    assert!(
        trace.contains(&format!("$ git rev-parse HEAD\x1b[0;m\n{sha}\n")),
        "{trace}"
    );
    assert!(
        trace.ends_with("\x1b[32;1mJob succeeded\x1b[0;m\n"),
        "{trace}"
    );
    assert!(
        !trace.contains(done.token.expose()),
        "job token in the trace"
    );
    assert_eq!(
        done.checksum.as_deref(),
        Some(checksum(&done.trace).as_str())
    );
    assert_eq!(done.bytesize, Some(done.trace.len() as u64));
    assert!(done.checksum_matches());
    assert_eq!(done.manager.as_deref(), Some(env.system_id().as_str()));

    // Two-phase commit: the first request about the job is the PUT that starts it, before any PATCH.
    let log = job_requests(&env.gitlab, id);
    let first = log.first().expect("requests for the job");
    assert_eq!(first.endpoint, Endpoint::UpdateJob, "{log:#?}");
    assert_eq!(first.status, Some(200));
    assert!(
        log.iter()
            .any(|r| r.endpoint == Endpoint::PatchTrace && r.status == Some(202))
    );
    assert!(done.started_at.is_some());
    // The sources came over smart HTTP, authenticated with the job token.
    let git: Vec<_> = env
        .gitlab
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::GitUploadPack)
        .collect();
    assert!(!git.is_empty(), "no git fetch");
    assert!(
        git.iter()
            .all(|r| r.status == Some(200) && r.token_kind == Some("job")),
        "{git:#?}"
    );
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_failure_reports_the_exit_code() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config());
    let id = env
        .gitlab
        .enqueue(job(&["echo before", "exit 42", "echo never printed"]))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}");
    assert_eq!(done.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(done.exit_code, Some(42));
    assert!(trace.contains("\nbefore\n"), "{trace}");
    assert!(!trace.contains("never printed\n"), "{trace}");
    assert!(
        trace.ends_with("\x1b[31;1mERROR: Job failed: exit code 42\x1b[0;m\n"),
        "{trace}"
    );
    assert!(done.checksum_matches(), "{done:?}");
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_script_runs_after_a_failure_and_sees_the_status() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config());
    let id = env
        .gitlab
        .enqueue(
            job(&["exit 3"])
                .after_script(["echo \"after_script saw CI_JOB_STATUS=$CI_JOB_STATUS\""]),
        )
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}");
    assert_eq!(done.exit_code, Some(3));
    assert!(
        trace.contains("\nafter_script saw CI_JOB_STATUS=failed\n"),
        "{trace}"
    );
    // after_script output comes before the final line.
    let after = trace.find("after_script saw").unwrap();
    let footer = trace.find("ERROR: Job failed: exit code 3").unwrap();
    assert!(after < footer, "{trace}");
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_timeout_fails_the_job_and_stops_its_processes() {
    let env = TestEnv::new().await;
    let mut probe = ProcessProbe::new(env.dir.path(), "timeout.fifo");
    let mut gl = env.start(&env.config());
    let id = env
        .gitlab
        .enqueue(job(&[&probe.hold(), "sleep 30"]).timeout(3))
        .unwrap();
    probe.wait_up(WAIT).await;
    let started = std::time::Instant::now();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}");
    assert_eq!(
        done.failure_reason.as_deref(),
        Some("job_execution_timeout"),
        "{trace}"
    );
    assert!(
        trace.contains("ERROR: Job failed: execution took longer than 3s"),
        "{trace}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the 3 s timeout took {:?} to fire",
        started.elapsed()
    );
    probe
        .wait_gone(std::time::Duration::from_secs(15))
        .await
        .unwrap();
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_limit_bounds_the_trace_and_keeps_the_final_line() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config().runner_line("output_limit = 1"));
    // ~200 KiB of output against a 1 KiB limit.
    let id = env
        .gitlab
        .enqueue(job(&[
            "for i in $(seq 1 4000); do echo \"line $i of a job that prints far too much output\"; done",
            "echo finished printing",
        ]))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Success, "{trace}");
    assert!(
        trace.contains("Job's log exceeded limit of 1024 bytes.\nJob execution will continue but no more output will be collected."),
        "{trace}"
    );
    assert!(!trace.contains("line 4000 of"), "{trace}");
    assert!(!trace.contains("finished printing\n"), "{trace}");
    // The limit plus the runner's own lines after it (footer, notice), nothing of the rest.
    assert!(
        done.trace.len() < 1024 + 512,
        "stored trace is {} bytes:\n{trace}",
        done.trace.len()
    );
    assert!(
        trace.ends_with("\x1b[32;1mJob succeeded\x1b[0;m\n"),
        "{trace}"
    );
    assert!(done.checksum_matches(), "{done:?}");
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_glrunner_cannot_read_is_failed_with_an_explanation_not_dropped() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config());
    let id = env
        .gitlab
        .enqueue(job(&["echo never runs"]).merge(serde_json::json!({
            "variables": {"not": "a list of variables"}
        })))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    let trace = done.trace_text();
    assert_eq!(done.status, JobStatus::Failed, "{trace}");
    assert_eq!(
        done.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(trace.contains("could not be read by glrunner"), "{trace}");
    assert!(trace.contains("Upgrade glrunner"), "{trace}");
    assert!(!trace.contains("never runs\n"), "{trace}");
    assert!(done.checksum_matches());

    let next = env
        .gitlab
        .enqueue(job(&["echo the next job runs"]))
        .unwrap();
    let done = env.finished(&gl, next, WAIT).await;
    assert_eq!(done.status, JobStatus::Success, "{}", done.trace_text());
    gl.stop().await;
}
