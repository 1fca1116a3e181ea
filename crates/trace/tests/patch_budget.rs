//! The process-wide PATCH memory budget, in its own test binary so no other test shares the budget.

mod support;

use glrunner_protocol::Secret;
use glrunner_trace::upload::{
    MAX_PATCH_BYTES, PATCH_MEMORY_BUDGET, UploadSettings, patch_budget_available,
};
use glrunner_trace::{FinalUpdate, JobControl, Trace, TraceConfig, UploadJob, Uploader};
use std::time::Duration;
use support::{FakeGitLab, JOB_ID, JOB_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_patches_never_exceed_the_budget() {
    let server = FakeGitLab::start().await;
    server.state().hold_patches = true;
    let jobs = 12;
    let per_job = PATCH_MEMORY_BUDGET / MAX_PATCH_BYTES; // PATCHes the budget allows at once
    assert!(
        jobs > per_job,
        "the test needs more jobs than the budget allows"
    );

    let mut running = Vec::new();
    for n in 0..jobs {
        let trace = Trace::new(TraceConfig {
            limit_bytes: 8 * 1024 * 1024,
            ..Default::default()
        })
        .expect("trace");
        trace.write(&vec![b'a' + (n % 26) as u8; MAX_PATCH_BYTES + 100]);
        let uploader = Uploader::start_with(
            server.client(),
            UploadJob {
                id: JOB_ID + n as i64,
                token: Secret::new(JOB_TOKEN),
                info: Default::default(),
                debug_trace: false,
            },
            trace.clone(),
            JobControl::new(),
            UploadSettings {
                update_interval: Duration::from_millis(10),
                ..Default::default()
            },
        );
        running.push((trace, uploader));
    }

    assert!(
        server
            .wait_until(Duration::from_secs(10), |s| s.in_flight == per_job)
            .await,
        "the budget's worth of PATCHes never arrived"
    );
    // Every permit is taken by the held PATCHes, so the other jobs wait for memory, not for the network.
    assert_eq!(patch_budget_available(), 0);
    assert_eq!(server.state().in_flight_bytes, PATCH_MEMORY_BUDGET);

    server.release_patches();
    let mut traces = Vec::new();
    for (trace, uploader) in running {
        uploader
            .finish(FinalUpdate {
                success: true,
                failure_reason: None,
                exit_code: None,
            })
            .await
            .expect("final update");
        traces.push(trace);
    }
    let st = server.state();
    for (n, trace) in traces.iter().enumerate() {
        let id = JOB_ID + n as i64;
        assert!(
            st.stored_for(id) == trace.read_at(0, usize::MAX).expect("read"),
            "job {id} trace differs"
        );
    }
    assert!(
        st.max_in_flight_bytes <= PATCH_MEMORY_BUDGET,
        "{} bytes were in flight at once",
        st.max_in_flight_bytes
    );
    assert_eq!(
        patch_budget_available(),
        PATCH_MEMORY_BUDGET,
        "every permit came back"
    );
}
