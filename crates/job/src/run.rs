//! `run_job`: the job's stages in order, with the familiar header and footer lines.

use crate::context::RunnerContext;
use crate::executor::Executor;
use crate::outcome::JobOutcome;
use glrunner_protocol::JobResponse;
use glrunner_trace::{JobControl, Trace};

/// Run `job` to completion with `executor`, writing everything to `trace`, honouring `control`.
pub async fn run_job(
    job: &JobResponse,
    ctx: &RunnerContext,
    executor: &mut dyn Executor,
    trace: &Trace,
    control: &JobControl,
) -> JobOutcome {
    let _ = (job, ctx, executor, trace, control);
    todo!()
}
