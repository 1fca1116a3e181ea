//! The uploader against a real HTTP server on 127.0.0.1, through the real `GitLabClient`.

mod support;

use glrunner_protocol::Secret;
use glrunner_protocol::request::VersionInfo;
use glrunner_trace::upload::UploadSettings;
use glrunner_trace::{
    FinalUpdate, JobControl, Trace, TraceConfig, UploadError, UploadJob, Uploader,
};
use std::time::Duration;
use support::{FakeGitLab, JOB_ID, JOB_TOKEN, PatchPlan, PutPlan};

const WAIT: Duration = Duration::from_secs(10);

fn job(debug_trace: bool) -> UploadJob {
    UploadJob {
        id: JOB_ID,
        token: Secret::new(JOB_TOKEN),
        info: VersionInfo {
            name: "glrunner".into(),
            version: "0.1.0-test".into(),
            ..Default::default()
        },
        debug_trace,
    }
}

fn fast() -> UploadSettings {
    UploadSettings {
        update_interval: Duration::from_millis(20),
        final_retry_backoff: Duration::from_millis(10),
        final_retry_backoff_max: Duration::from_millis(40),
        ..Default::default()
    }
}

fn new_trace() -> Trace {
    Trace::new(TraceConfig {
        masked_values: vec!["p4ssw0rd".into()],
        limit_bytes: 64 * 1024 * 1024,
        ..Default::default()
    })
    .expect("trace")
}

fn all(trace: &Trace) -> Vec<u8> {
    trace.read_at(0, usize::MAX).expect("read spool")
}

fn success() -> FinalUpdate {
    FinalUpdate {
        success: true,
        failure_reason: None,
        exit_code: None,
    }
}

fn write_lines(trace: &Trace, from: usize, to: usize) {
    for i in from..to {
        trace.write(
            format!("{i:07} output line with p4ssw0rd and some padding to make it longer\n")
                .as_bytes(),
        );
    }
}

#[tokio::test]
async fn trace_arrives_byte_identical_with_matching_checksum() {
    let server = FakeGitLab::start().await;
    let trace = new_trace();
    let control = JobControl::new();
    let uploader = Uploader::start_with(
        server.client(),
        job(true),
        trace.clone(),
        control.clone(),
        fast(),
    );

    write_lines(&trace, 0, 20_000);
    assert!(
        server
            .wait_until(WAIT, |s| s.stored().len() >= 1024 * 1024)
            .await,
        "incremental PATCHes did not arrive"
    );
    write_lines(&trace, 20_000, 40_000);
    trace.write(b"last words without newline p4ss");
    uploader.finish(success()).await.expect("final update");

    let local = all(&trace);
    let st = server.state();
    assert_eq!(st.stored().len(), local.len());
    assert!(st.stored() == local, "stored trace differs from the spool");
    assert!(local.ends_with(b"last words without newline p4ss"));
    assert!(!String::from_utf8_lossy(st.stored()).contains("p4ssw0rd"));
    assert!(st.patches.iter().all(|p| p.len <= 1024 * 1024 && p.len > 0));
    assert!(
        st.patches
            .iter()
            .all(|p| p.content_range == format!("{}-{}", p.start, p.start + p.len as u64 - 1))
    );
    assert!(
        st.patches
            .iter()
            .all(|p| p.debug_trace.as_deref() == Some("true"))
    );
    assert!(st.patches.len() >= 3, "{} patches", st.patches.len());
    assert_eq!(st.bad_auth, 0);
    drop(st);

    let finals = server.final_puts();
    assert_eq!(finals.len(), 1);
    let body = &finals[0].body;
    let checksum = format!("crc32:{:08x}", crc32fast::hash(&local));
    assert_eq!(body["state"], "success");
    assert_eq!(body["output"]["checksum"], checksum.as_str());
    assert_eq!(body["checksum"], checksum.as_str());
    assert_eq!(body["output"]["bytesize"], local.len() as u64);
    assert_eq!(body["info"]["version"], "0.1.0-test");
    assert_eq!(body["token"], JOB_TOKEN);
    assert!(
        body.get("exit_code").is_none() && body.get("failure_reason").is_none(),
        "{body}"
    );
    assert!(!control.cancel.is_cancelled() && !control.abort.is_cancelled());
}

#[tokio::test]
async fn failed_job_reports_reason_and_exit_code() {
    let server = FakeGitLab::start().await;
    let trace = new_trace();
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        JobControl::new(),
        fast(),
    );
    trace.write(b"boom\n");
    uploader
        .finish(FinalUpdate {
            success: false,
            failure_reason: Some("script_failure".into()),
            exit_code: Some(2),
        })
        .await
        .expect("final update");
    let finals = server.final_puts();
    assert_eq!(finals.len(), 1);
    let body = &finals[0].body;
    assert_eq!(body["state"], "failed");
    assert_eq!(body["failure_reason"], "script_failure");
    assert_eq!(body["exit_code"], 2);
    assert_eq!(server.state().stored(), b"boom\n");
    assert!(
        server
            .state()
            .patches
            .iter()
            .all(|p| p.debug_trace.as_deref() == Some("false"))
    );
}

#[tokio::test]
async fn lost_patch_answer_is_resynced_by_416() {
    let server = FakeGitLab::start().await;
    // The first PATCH is stored but its answer says otherwise: the retry from the old offset gets 416.
    server
        .state()
        .patch_plan
        .push_back(PatchPlan::StoreButAnswer(400));
    let trace = new_trace();
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        JobControl::new(),
        fast(),
    );
    write_lines(&trace, 0, 100);
    assert!(
        server
            .wait_until(WAIT, |s| s.patches.iter().any(|p| p.status == 416))
            .await,
        "no 416 seen"
    );
    write_lines(&trace, 100, 200);
    uploader.finish(success()).await.expect("final update");
    let st = server.state();
    assert!(
        st.stored() == all(&trace),
        "stored trace differs after resync"
    );
    let statuses: Vec<u16> = st.patches.iter().map(|p| p.status).collect();
    assert_eq!(&statuses[..2], &[400, 416], "{statuses:?}");
    // After the 416 the uploader went on from the server's length. (A second 416 is possible when the
    // final update interrupts the tick that got the first one.)
    let next_accepted = st
        .patches
        .iter()
        .skip(2)
        .find(|p| p.status == 202)
        .expect("an accepted PATCH");
    assert_eq!(next_accepted.start, st.patches[0].len as u64);
    assert!(
        statuses.iter().filter(|s| **s == 416).count() <= 2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn final_put_202_waits_the_servers_interval_then_repeats() {
    let server = FakeGitLab::start().await;
    server.state().put_plan.push_back(PutPlan {
        status: 202,
        interval_secs: Some(1),
        ..Default::default()
    });
    let trace = new_trace();
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        JobControl::new(),
        fast(),
    );
    trace.write(b"some output\n");
    uploader
        .finish(success())
        .await
        .expect("final update after 202");
    let finals = server.final_puts();
    assert_eq!(finals.len(), 2, "one 202, then the 200");
    let gap = finals[1].at - finals[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "re-PUT after {gap:?}, the server asked for 1 s"
    );
    assert_eq!(
        finals[0].body, finals[1].body,
        "the same final state is repeated"
    );
    assert_eq!(server.state().stored(), b"some output\n");
}

#[tokio::test]
async fn final_put_412_resends_the_whole_trace() {
    let server = FakeGitLab::start().await;
    server.state().put_plan.push_back(PutPlan {
        status: 412,
        reset_trace: true,
        ..Default::default()
    });
    let trace = new_trace();
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        JobControl::new(),
        fast(),
    );
    write_lines(&trace, 0, 30_000); // more than one PATCH
    uploader
        .finish(success())
        .await
        .expect("final update after 412");
    let local = all(&trace);
    let st = server.state();
    assert!(
        st.stored() == local,
        "stored trace differs after the resend"
    );
    let accepted: usize = st
        .patches
        .iter()
        .filter(|p| p.status == 202)
        .map(|p| p.len)
        .sum();
    assert_eq!(accepted, 2 * local.len(), "the whole trace was sent twice");
    drop(st);
    let finals = server.final_puts();
    assert_eq!(finals.len(), 2);
    let st = server.state();
    let resend = st
        .patches
        .iter()
        .find(|p| p.at > finals[0].at)
        .expect("a PATCH after the 412");
    assert_eq!(resend.start, 0, "the resend starts at offset 0");
}

#[tokio::test]
async fn job_status_canceling_fires_cancel_only() {
    let server = FakeGitLab::start().await;
    server.state().patch_job_status = Some("canceling");
    let trace = new_trace();
    let control = JobControl::new();
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        control.clone(),
        fast(),
    );
    trace.write(b"working\n");
    tokio::time::timeout(WAIT, control.cancel.cancelled())
        .await
        .expect("cancel fired");
    assert!(!control.abort.is_cancelled());
    trace.runner_line("ERROR: Job failed: canceled");
    uploader
        .finish(FinalUpdate {
            success: false,
            failure_reason: Some("job_canceled".into()),
            exit_code: None,
        })
        .await
        .expect("canceling jobs still take the final update");
    assert!(server.state().stored() == all(&trace));
}

#[tokio::test]
async fn job_status_canceled_fires_abort_and_the_job_is_gone() {
    let server = FakeGitLab::start().await;
    server.state().patch_always = Some(PatchPlan::Answer {
        status: 403,
        job_status: Some("canceled"),
    });
    server.state().put_default = PutPlan {
        status: 403,
        job_status: Some("canceled"),
        ..Default::default()
    };
    let trace = new_trace();
    let control = JobControl::new();
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        control.clone(),
        fast(),
    );
    trace.write(b"working\n");
    tokio::time::timeout(WAIT, control.abort.cancelled())
        .await
        .expect("abort fired");
    let err = uploader.finish(success()).await.expect_err("job is gone");
    assert!(err.is_job_gone(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("canceled") && !text.contains(JOB_TOKEN),
        "{text}"
    );
}

#[tokio::test]
async fn forbidden_patch_aborts() {
    let server = FakeGitLab::start().await;
    server.state().patch_plan.push_back(PatchPlan::Answer {
        status: 403,
        job_status: None,
    });
    let trace = new_trace();
    let control = JobControl::new();
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        control.clone(),
        fast(),
    );
    trace.write(b"working\n");
    tokio::time::timeout(WAIT, control.abort.cancelled())
        .await
        .expect("abort fired on 403");
    assert!(!control.cancel.is_cancelled());
    // The final update still tries once (GitLab accepts it here) and succeeds.
    uploader.finish(success()).await.expect("final update");
    assert_eq!(server.state().stored(), b"working\n");
}

#[tokio::test]
async fn idle_job_is_kept_alive_and_put_answers_are_obeyed() {
    let server = FakeGitLab::start().await;
    server.state().put_plan.push_back(PutPlan {
        status: 200,
        job_status: Some("canceling"),
        ..Default::default()
    });
    let trace = new_trace();
    let control = JobControl::new();
    let settings = UploadSettings {
        force_send_interval: Duration::from_millis(100),
        ..fast()
    };
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        control.clone(),
        settings,
    );
    trace.write(b"hello");
    assert!(
        server
            .wait_until(WAIT, |s| s
                .puts
                .iter()
                .any(|p| p.body["state"] == "running"))
            .await,
        "no keep-alive PUT"
    );
    let keep_alive = server.state().puts[0].clone();
    assert_eq!(keep_alive.body["state"], "running");
    assert_eq!(keep_alive.body["output"]["bytesize"], 5);
    assert_eq!(
        keep_alive.body["output"]["checksum"],
        format!("crc32:{:08x}", crc32fast::hash(b"hello")).as_str()
    );
    assert_eq!(keep_alive.body["info"]["name"], "glrunner");
    let patched_at = server.state().patches.last().expect("hello was patched").at;
    assert!(
        keep_alive.at - patched_at >= Duration::from_millis(100),
        "keep-alive before the idle time"
    );
    tokio::time::timeout(WAIT, control.cancel.cancelled())
        .await
        .expect("Job-Status: canceling on a PUT fires cancel");
    uploader.finish(success()).await.expect("final update");
}

#[tokio::test]
async fn server_update_interval_is_honoured() {
    let server = FakeGitLab::start().await;
    server.state().patch_interval_secs = Some(1);
    let trace = new_trace();
    write_lines(&trace, 0, 25_000); // about 2 MiB: at least two PATCHes
    let start = std::time::Instant::now();
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        JobControl::new(),
        fast(),
    );
    assert!(
        server.wait_until(WAIT, |s| s.patches.len() >= 2).await,
        "second PATCH never came"
    );
    let (first, second) = {
        let st = server.state();
        (st.patches[0].at, st.patches[1].at)
    };
    assert!(
        first - start < Duration::from_millis(900),
        "first PATCH came after {:?}",
        first - start
    );
    assert!(
        second - first >= Duration::from_millis(950),
        "second PATCH {:?} after the first; the server asked for 1 s",
        second - first
    );
    uploader.finish(success()).await.expect("final update");
    assert!(server.state().stored() == all(&trace));
}

#[tokio::test]
async fn final_update_gives_up_after_the_retry_limit() {
    let server = FakeGitLab::start().await;
    server.state().put_default = PutPlan::status(400);
    let trace = new_trace();
    let settings = UploadSettings {
        final_update_retry_limit: 3,
        ..fast()
    };
    let uploader = Uploader::start_with(
        server.client(),
        job(false),
        trace.clone(),
        JobControl::new(),
        settings,
    );
    trace.write(b"x\n");
    let err = uploader
        .finish(success())
        .await
        .expect_err("GitLab never accepts");
    match &err {
        UploadError::FinalUpdateFailed { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert!(last.contains("400"), "{last}");
        }
        other => panic!("unexpected error {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("may show as running")
            && text.contains("job_status_final_update_retry_limit"),
        "{text}"
    );
    assert_eq!(server.final_puts().len(), 3);
}

#[tokio::test]
async fn unreachable_gitlab_fails_the_final_update_with_an_explanation() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = glrunner_gitlab::GitLabClient::new(glrunner_gitlab::ClientSettings {
        url: format!("http://{addr}/"),
        ..Default::default()
    })
    .expect("client");
    let trace = new_trace();
    trace.write(b"output p4ssw0rd\n");
    let settings = UploadSettings {
        final_update_retry_limit: 2,
        ..fast()
    };
    let err = Uploader::start_with(client, job(false), trace, JobControl::new(), settings)
        .finish(success())
        .await
        .expect_err("nothing listens");
    let text = err.to_string();
    assert!(
        matches!(err, UploadError::FinalUpdateFailed { attempts: 2, .. }),
        "{text}"
    );
    assert!(
        text.contains("PATCH failed") && !text.contains(JOB_TOKEN),
        "{text}"
    );
}
