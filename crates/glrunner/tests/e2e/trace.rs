//! The trace on its way to GitLab: masking across writes and PATCHes, and resync after 416s and lost
//! PATCHes.

use crate::support::*;
use glrunner_coordinator::{Action, Endpoint, Fault, JobStatus, Variable};

const SECRET: &str = "s3cr3t-Value-0123456789abc";
const PAT_BODY: &str = "AbCdEfGhIjKlMnOpQrSt";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_values_never_reach_gitlab_even_split_across_writes_and_patches() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config());
    let lines = 40_000;
    // Every line prints the secret in two `printf` writes, so it straddles pipe reads; ~3.3 MB in all,
    // so PATCH boundaries (1 MiB) fall inside the output too.
    let id = env
        .gitlab
        .enqueue(
            job(&[
                &format!(
                    "for i in $(seq 1 {lines}); do printf '%s' \"${{E2E_SECRET:0:7}}\"; printf '%s' \"${{E2E_SECRET:7}}\"; \
                     printf ' line %06d padding-padding-padding-padding-padding-padding-padding-paddin\\n' \"$i\"; done"
                ),
                "echo \"whole: $E2E_SECRET\"",
                "P=glpat; echo \"token $P-AbCdEfGhIjKlMnOpQrSt end\"",
            ])
            .variable(Variable::new("E2E_SECRET", SECRET).masked()),
        )
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Success, "{:?}", done.failure_reason);
    let trace = &done.trace;
    assert!(
        !contains(trace, SECRET.as_bytes()),
        "the secret reached GitLab"
    );
    let text = done.trace_text();
    assert_eq!(
        text.matches("[MASKED] line ").count(),
        lines,
        "every line masked once"
    );
    assert!(text.contains("[MASKED] line 000001 padding"));
    assert!(text.contains(&format!("[MASKED] line {lines:06} padding")));
    assert!(text.contains("\nwhole: [MASKED]\n"));
    // A GitLab token prefix is kept, the rest masked.
    assert!(text.contains("\ntoken glpat-[MASKED] end\n"), "glpat- line");
    assert!(!text.contains(&format!("glpat-{PAT_BODY}")));
    assert!(
        done.checksum_matches(),
        "checksum {:?} for {} bytes",
        done.checksum,
        done.trace_len
    );

    let patches: Vec<_> = job_requests(&env.gitlab, id)
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::PatchTrace && r.body_size > 0)
        .collect();
    assert!(patches.len() >= 4, "{} PATCHes", patches.len());
    assert!(patches.iter().all(|p| p.body_size <= 1024 * 1024));
    assert!(
        patches
            .iter()
            .filter(|p| p.body_size == 1024 * 1024)
            .count()
            >= 3,
        "several full 1 MiB PATCHes: {:?}",
        patches.iter().map(|p| p.body_size).collect::<Vec<_>>()
    );
    gl.stop().await;
    assert!(
        !gl.output().contains(SECRET),
        "the secret is in glrunner's log"
    );
}

/// The numbers of the `seq-N` lines of a trace, in order.
fn sequence(trace: &str) -> Vec<u32> {
    trace
        .lines()
        .filter_map(|l| l.strip_prefix("seq-"))
        .map(|n| n.parse().expect("a number after seq-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_survives_416s_and_lost_patches_byte_for_byte() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config());
    let total = 6000;
    // Output keeps coming for about five seconds, a batch every 0.2 s, so every tick (1 s) has new
    // bytes to send and the faults meet PATCHes with data.
    let id = env
        .gitlab
        .enqueue(job(&[&format!(
            "for i in $(seq 1 {total}); do echo \"seq-$i\"; if (( i % 250 == 0 )); then sleep 0.2; fi; done"
        )]))
        .unwrap();
    env.trace_contains(&gl, id, "seq-250\n", WAIT).await;
    env.gitlab.inject(Fault::trace_range_mismatch().job(id));
    env.gitlab
        .inject(Fault::drop_connection(Endpoint::PatchTrace).job(id));
    env.gitlab.inject(
        Fault::new(
            Endpoint::PatchTrace,
            Action::TraceRangeMismatch { reported: Some(0) },
        )
        .job(id),
    );
    env.gitlab.inject(Fault::trace_range_mismatch().job(id));

    let done = env.finished(&gl, id, WAIT).await;
    let text = done.trace_text();
    assert_eq!(done.status, JobStatus::Success, "{text}");
    assert_eq!(
        sequence(&text),
        (1..=total).collect::<Vec<_>>(),
        "every line exactly once, in order"
    );
    assert!(text.ends_with("\x1b[32;1mJob succeeded\x1b[0;m\n"));
    assert_eq!(
        done.checksum.as_deref(),
        Some(checksum(&done.trace).as_str())
    );
    assert_eq!(done.bytesize, Some(done.trace.len() as u64));

    let log = job_requests(&env.gitlab, id);
    let faulted: Vec<_> = log
        .iter()
        .filter(|r| r.endpoint == Endpoint::PatchTrace && r.fault.is_some())
        .collect();
    assert_eq!(faulted.len(), 4, "{log:#?}");
    assert!(
        faulted.iter().all(|r| r.body_size > 0),
        "faults hit PATCHes with data: {faulted:#?}"
    );
    assert!(
        faulted.iter().any(|r| r.status.is_none()),
        "a dropped PATCH"
    );
    assert_eq!(faulted.iter().filter(|r| r.status == Some(416)).count(), 3);
    assert!(env.gitlab.faults().is_empty());
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_update_202_and_412_are_followed_to_a_matching_checksum() {
    let env = TestEnv::new().await;
    let mut gl = env.start(&env.config());
    let total = 2000;
    let id = env
        .gitlab
        .enqueue(job(&[
            &format!("for i in $(seq 1 {total}); do echo \"seq-$i\"; done"),
            "echo about to finish",
        ]))
        .unwrap();
    // Queued before the job ends: GitLab first answers 202 (not yet applied), then 412 (the trace it
    // holds does not match the checksum), so the runner must wait, then send the whole trace again.
    env.gitlab.inject(Fault::final_update_accepted(1).job(id));
    env.gitlab
        .inject(Fault::final_update_trace_invalid().job(id));
    let done = env.finished(&gl, id, WAIT).await;
    let text = done.trace_text();
    assert_eq!(done.status, JobStatus::Success, "{text}");
    assert_eq!(sequence(&text), (1..=total).collect::<Vec<_>>());
    assert!(text.ends_with("\x1b[32;1mJob succeeded\x1b[0;m\n"));
    assert!(done.checksum_matches(), "{done:?}");
    assert_eq!(done.final_updates, 3, "202, 412, then 200");
    let resent = job_requests(&env.gitlab, id)
        .into_iter()
        .filter(|r| {
            r.endpoint == Endpoint::PatchTrace
                && r.content_range
                    .as_deref()
                    .is_some_and(|c| c.starts_with("0-"))
                && r.body_size > 0
        })
        .count();
    assert!(
        resent >= 2,
        "the trace was not sent again from 0 after the 412"
    );
    assert!(env.gitlab.faults().is_empty());
    gl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_trace_size_limit_fails_the_job_and_stops_it() {
    let env = TestEnv::with_options(options().trace_size_limit(64 * 1024)).await;
    let mut probe = ProcessProbe::new(env.dir.path(), "size.fifo");
    let mut gl = env.start(&env.config());
    // 200 KiB, then it would sleep for five minutes: only an abort ends it early.
    let id = env
        .gitlab
        .enqueue(job(&[
            &probe.hold(),
            "for i in $(seq 1 2000); do echo \"line $i padded to about one hundred bytes ..........................................\"; done",
            "sleep 300",
        ]))
        .unwrap();
    probe.wait_up(WAIT).await;
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(done.failure_reason.as_deref(), Some("trace_size_exceeded"));
    assert!(done.trace_len <= 64 * 1024);
    probe
        .wait_gone(std::time::Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gl.output()));
    gl.wait_for_log("job canceled in GitLab; stopped", WAIT)
        .await;
    gl.stop().await;
}
