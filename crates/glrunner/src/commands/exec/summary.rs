//! What `glrunner exec` tells about a pipeline: the job list of `--list`, and the summary after a run
//! (each job's result, duration and why it failed or did not run).

use glrunner_pipeline::{AllowFailure, LocalContext, Plan};
use std::fmt::Write as _;
use std::time::Duration;

/// How a job of the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    /// Failed, and allowed to.
    Warned,
    Failed,
    Canceled,
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Passed => "PASS",
            Status::Warned => "WARN",
            Status::Failed => "FAIL",
            Status::Canceled => "STOP",
            Status::Skipped => "SKIP",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Status::Passed => "\x1b[32;1m",
            Status::Warned => "\x1b[33;1m",
            Status::Failed | Status::Canceled => "\x1b[31;1m",
            Status::Skipped => "\x1b[37m",
        }
    }
}

/// One job in the summary.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub stage: String,
    pub status: Status,
    pub duration: Option<Duration>,
    /// The exit code of a failed script.
    pub exit_code: Option<i32>,
    /// Why it failed or did not run.
    pub detail: String,
}

impl Record {
    /// A job that did not run, and why.
    pub fn skipped(name: String, stage: String, detail: String) -> Self {
        Self {
            name,
            stage,
            status: Status::Skipped,
            duration: None,
            exit_code: None,
            detail,
        }
    }
}

/// `branch `main`, pipeline source push` for headers.
pub fn describe(ctx: &LocalContext) -> String {
    let git = &ctx.git;
    let what = match (&git.branch, &git.tag) {
        (Some(b), _) => format!("branch `{b}`"),
        (None, Some(t)) => format!("tag `{t}`"),
        (None, None) => "a detached HEAD".to_owned(),
    };
    format!("{what}, pipeline source `{}`", ctx.pipeline_source)
}

/// The `--list` table: the jobs in run order, then those the pipeline leaves out and why.
pub fn list(plan: &Plan<'_>, file: &str, ctx: &LocalContext) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Jobs of {file} for {}, in run order:", describe(ctx));
    // At least as wide as the headers.
    let width = widest(plan.jobs().iter().map(|j| j.name.as_str())).max(4);
    let stage_width = widest(plan.jobs().iter().map(|j| j.stage.as_str())).max(5);
    let _ = writeln!(
        out,
        "  {:<width$}  {:<stage_width$}  {:<10}  {:<13}  NEEDS",
        "NAME", "STAGE", "WHEN", "ALLOW FAILURE"
    );
    for j in plan.jobs() {
        let allow = match &j.allow_failure {
            AllowFailure::No => "no".to_owned(),
            AllowFailure::Yes => "yes".to_owned(),
            AllowFailure::ExitCodes(codes) => format!(
                "exit {}",
                codes
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        let needs = match &j.needs {
            None => String::new(),
            Some(n) if n.is_empty() => "[]".to_owned(),
            Some(n) => n
                .iter()
                .map(|n| n.job.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:<stage_width$}  {:<10}  {:<13}  {needs}",
            j.name,
            j.stage,
            j.when.as_str(),
            allow
        );
    }
    if !plan.excluded().is_empty() {
        let _ = writeln!(out, "Not in this pipeline:");
        for e in plan.excluded() {
            let _ = writeln!(out, "  {:<width$}  {}", e.name, e.reason);
        }
    }
    out
}

/// The width of the widest text, in characters (0 for none): a column's width.
pub fn widest<'a>(texts: impl IntoIterator<Item = &'a str>) -> usize {
    texts
        .into_iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0)
}

fn seconds(d: Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// The summary after a run.
pub fn render(records: &[Record], total: Duration, passed: bool, colour: bool) -> String {
    let mut out = String::new();
    let width = widest(records.iter().map(|r| r.name.as_str()));
    let stage_width = widest(records.iter().map(|r| r.stage.as_str()));
    let _ = writeln!(out);
    for r in records {
        let label = if colour {
            format!("{}{}\x1b[0m", r.status.colour(), r.status.label())
        } else {
            r.status.label().to_owned()
        };
        let duration = r.duration.map(seconds).unwrap_or_default();
        let line = format!(
            " {label}  {:<width$}  {:<stage_width$}  {:>8}  {}",
            r.name, r.stage, duration, r.detail
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let ran = records
        .iter()
        .filter(|r| r.status != Status::Skipped)
        .count();
    let verdict = if passed { "passed" } else { "failed" };
    let _ = writeln!(
        out,
        "pipeline {verdict}: {ran} of {} jobs ran in {}",
        records.len(),
        seconds(total)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_each_job_with_its_result() {
        let records = vec![
            Record {
                name: "build".into(),
                stage: "build".into(),
                status: Status::Passed,
                duration: Some(Duration::from_millis(1250)),
                exit_code: None,
                detail: String::new(),
            },
            Record {
                name: "lint".into(),
                stage: "test".into(),
                status: Status::Warned,
                duration: Some(Duration::from_secs(61)),
                exit_code: Some(1),
                detail: "exit code 1, allowed to fail".into(),
            },
            Record {
                name: "deploy".into(),
                stage: "deploy".into(),
                status: Status::Skipped,
                duration: None,
                exit_code: None,
                detail: "manual job".into(),
            },
        ];
        let text = render(&records, Duration::from_secs(63), true, false);
        assert!(text.contains(" PASS  build   build     1.25 s"), "{text}");
        assert!(
            text.contains(" WARN  lint    test      1m 01s  exit code 1, allowed to fail"),
            "{text}"
        );
        assert!(
            text.contains(" SKIP  deploy  deploy            manual job"),
            "{text}"
        );
        assert!(
            text.contains("pipeline passed: 2 of 3 jobs ran in 1m 03s"),
            "{text}"
        );
    }
}
