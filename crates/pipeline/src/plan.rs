//! A local pipeline run: which jobs run, in which order, and each job's payload once the jobs it
//! depends on have finished.
//!
//! [`crate::Pipeline::plan`] evaluates `workflow:rules` (a pipeline they filter out is an error that
//! says why), then each job's `rules:` or `only`/`except` against the local commit, and orders the jobs
//! that remain the way GitLab would start them: in waves, where a job waits for every job of the earlier
//! stages, or, with `needs:`, only for the jobs it needs (`needs: []` starts in the first wave). Within a
//! wave jobs keep stage and file order.
//!
//! The exec runner then drives the plan:
//! ```text
//! while let Some(next) = plan.next_step() {
//!     match next {
//!         Next::Run(name) => {
//!             let payload = plan.payload(&name, &ctx)?;   // dependencies of earlier jobs included
//!             let result = run(payload);                   // the runner's business
//!             plan.record(&name, result)?;                 // status, exit code, artifacts archive
//!         }
//!         Next::Skip { name, reason } => println!("{name} skipped: {reason}"),
//!     }
//! }
//! ```
//! To run jobs at once, [`Plan::ready`] hands out every job whose prerequisites are done (each to
//! run, or recorded as skipped); call it again after each [`Plan::record`] until [`Plan::is_done`].
//!
//! Whether a job runs follows GitLab: with the statuses of the jobs it waits for combined as GitLab
//! combines them (an allowed failure counts as success, a manual job that may fail is ignored), an
//! `on_success` job runs after success (stage jobs also after all-skipped), `on_failure` after a
//! failure, `always` either way. Manual jobs are reported as skipped unless the runner starts them
//! with [`Plan::play`].
//! Delayed jobs run without waiting for `start_in`.
//!
//! Artifacts: the runner reports the archive a job produced as [`JobResult::artifacts`] (a local path
//! and its size). A later job's payload lists every earlier job it depends on in `dependencies` (the
//! jobs it `needs` with `artifacts: true`, else every job of earlier stages, narrowed by
//! `dependencies:`), with `artifacts_file.filename` set to **the archive's absolute path** (GitLab sends a
//! file name to download by job id; locally there is nothing to download). A `dotenv` report's
//! variables, reported as [`JobResult::dotenv`], reach the dependent jobs as variables, as in GitLab.

use crate::error::{PipelineError, UnsupportedKey};
use crate::job::{AllowFailure, Job};
use crate::needs::Need;
use crate::payload::{self, DependencyArtifacts, Extras};
use crate::rules::{self, Facts, JobWhen, RefFacts};
use crate::variables::{self, YamlVariable};
use crate::{LocalContext, Pipeline};
use glrunner_protocol::{JobResponse, JobVariable};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

/// Which jobs a plan holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every job the pipeline would run for this commit.
    All,
    /// One job (a parallel job's base name selects all its instances), and with `with_needs` the jobs
    /// it waits for, transitively: its `needs`, or for a job without `needs`, every job of the earlier
    /// stages.
    Job { name: String, with_needs: bool },
}

/// A job of the plan.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub name: String,
    pub stage: String,
    /// After `rules:`: on_success, on_failure, always, manual or delayed.
    pub when: JobWhen,
    pub allow_failure: AllowFailure,
    pub start_in: Option<Duration>,
    /// `None`: the job waits for every job of the earlier stages; `Some`: only for these (those in the
    /// plan).
    pub needs: Option<Vec<PlannedNeed>>,
    stage_index: usize,
    dependencies: Option<Vec<String>>,
    variables: Vec<YamlVariable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedNeed {
    pub job: String,
    /// Download its artifacts.
    pub artifacts: bool,
}

/// A job the pipeline leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub name: String,
    pub reason: String,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Build the job's payload with [`Plan::payload`], run it, then [`Plan::record`] the result.
    Run(String),
    /// The job does not run; the plan already recorded it as skipped.
    Skip { name: String, reason: String },
}

/// How a job ended, as the runner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Success,
    Failed,
    Canceled,
}

/// What the runner reports after running a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub status: JobStatus,
    /// The script's exit code, for `allow_failure: {exit_codes: …}`.
    pub exit_code: Option<i32>,
    /// The job's artifacts archive, if it produced one.
    pub artifacts: Option<LocalArtifacts>,
    /// Variables from the job's `dotenv` report, passed to jobs that depend on it.
    pub dotenv: Vec<(String, String)>,
}

impl JobResult {
    pub fn new(status: JobStatus) -> Self {
        Self {
            status,
            exit_code: None,
            artifacts: None,
            dotenv: Vec::new(),
        }
    }
}

/// An artifacts archive on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalArtifacts {
    pub path: PathBuf,
    pub size: u64,
}

/// Where a job of the plan stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending,
    /// Handed out by [`Plan::next_step`] or [`Plan::ready`]; `id` once its payload was built.
    Running {
        id: Option<i64>,
    },
    Finished {
        id: Option<i64>,
        status: JobStatus,
        /// A failure the job was allowed.
        allowed: bool,
        artifacts: Option<LocalArtifacts>,
        dotenv: Vec<(String, String)>,
    },
    Skipped {
        reason: String,
    },
}

impl JobState {
    /// Finished or skipped: nothing more will happen to the job.
    fn is_over(&self) -> bool {
        matches!(self, JobState::Finished { .. } | JobState::Skipped { .. })
    }
}

/// Misuse of a plan by the runner driving it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "job `{name}` is not part of this plan (planned: {})\n  fix: use a name returned by Plan::next_step",
        planned.join(", ")
    )]
    NotPlanned { name: String, planned: Vec<String> },
    #[error(
        "job `{name}` was not handed out by Plan::next_step or Plan::ready (it is {state})\n  fix: record only \
         jobs those returned to run"
    )]
    NotRunning { name: String, state: &'static str },
}

/// The combined status of the jobs a job waits for, as GitLab computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Composite {
    Success,
    Failed,
    Canceled,
    Skipped,
    /// Waiting on a manual job that is not allowed to fail.
    Blocked,
}

/// A pipeline run for the local commit.
#[derive(Debug)]
pub struct Plan<'p> {
    pipeline: &'p Pipeline,
    jobs: Vec<PlannedJob>,
    states: Vec<JobState>,
    excluded: Vec<Excluded>,
    pipeline_name: Option<String>,
    config_path: String,
    /// Manual jobs started with [`Plan::play`].
    played: HashSet<String>,
}

impl<'p> Plan<'p> {
    /// Start manual job `name` as someone pressing its play button in GitLab would: when its turn
    /// comes it runs like an `on_success` job instead of being skipped. A job that is not manual is
    /// left as it is.
    pub fn play(&mut self, name: &str) -> Result<(), PlanError> {
        let i = self.index(name)?;
        if self.jobs[i].when == JobWhen::Manual {
            self.played.insert(name.to_owned());
        }
        Ok(())
    }

    /// The jobs to run, in run order.
    pub fn jobs(&self) -> &[PlannedJob] {
        &self.jobs
    }

    /// Jobs of the file the pipeline leaves out for this commit, and why.
    pub fn excluded(&self) -> &[Excluded] {
        &self.excluded
    }

    /// `workflow:name`, expanded.
    pub fn pipeline_name(&self) -> Option<&str> {
        self.pipeline_name.as_deref()
    }

    pub fn state(&self, name: &str) -> Option<&JobState> {
        self.index(name).ok().map(|i| &self.states[i])
    }

    fn index(&self, name: &str) -> Result<usize, PlanError> {
        self.jobs
            .iter()
            .position(|j| j.name == name)
            .ok_or_else(|| PlanError::NotPlanned {
                name: name.to_owned(),
                planned: self.jobs.iter().map(|j| j.name.clone()).collect(),
            })
    }

    /// The next job to run or skip; `None` when every job is done. A job handed out to run is handed
    /// out again until its result is recorded. Runs one job at a time; [`Plan::ready`] hands out every
    /// job that can start.
    pub fn next_step(&mut self) -> Option<Next> {
        if let Some(i) = self
            .states
            .iter()
            .position(|s| matches!(s, JobState::Running { .. }))
        {
            return Some(Next::Run(self.jobs[i].name.clone()));
        }
        let i = self
            .states
            .iter()
            .position(|s| matches!(s, JobState::Pending))?;
        Some(self.decide_job(i))
    }

    /// Every job whose turn has come, in run order: each pending job whose prerequisites have all
    /// finished or been skipped is decided, as GitLab decides it when the last of them ends. Jobs to
    /// run are marked running (run them at once, each with [`Plan::payload`] and [`Plan::record`]);
    /// skipped ones are recorded, which may decide later jobs in the same call. Empty while the jobs
    /// handed out still run; empty with [`Plan::is_done`] true when nothing is left.
    pub fn ready(&mut self) -> Vec<Next> {
        let mut steps = Vec::new();
        for i in 0..self.jobs.len() {
            if self.states[i] == JobState::Pending && self.prerequisites_done(i) {
                steps.push(self.decide_job(i));
            }
        }
        steps
    }

    /// Whether every job has finished or been skipped.
    pub fn is_done(&self) -> bool {
        self.states.iter().all(JobState::is_over)
    }

    /// Whether every job job `i` waits for has finished or been skipped.
    fn prerequisites_done(&self, i: usize) -> bool {
        self.prerequisite_indices(i)
            .into_iter()
            .all(|j| self.states[j].is_over())
    }

    /// Decide pending job `i`: run it (marked running) or skip it (recorded, with the reason).
    fn decide_job(&mut self, i: usize) -> Next {
        let job = &self.jobs[i];
        let (composite, culprit) = self.prerequisites(i);
        let dag = job.needs.is_some();
        let when = match job.when {
            JobWhen::Manual if self.played.contains(&job.name) => JobWhen::OnSuccess,
            when => when,
        };
        let decision = match when {
            JobWhen::Manual => Err(match composite {
                Composite::Success | Composite::Skipped => {
                    "manual job: in GitLab someone starts it; `glrunner exec --manual` runs manual \
                     jobs, naming it runs it"
                        .to_owned()
                }
                _ => skip_reason(composite, culprit.as_deref()),
            }),
            JobWhen::OnSuccess | JobWhen::Delayed => match composite {
                Composite::Success => Ok(()),
                Composite::Skipped if !dag => Ok(()),
                other => Err(skip_reason(other, culprit.as_deref())),
            },
            JobWhen::OnFailure => match composite {
                Composite::Failed => Ok(()),
                other => Err(format!(
                    "`when: on_failure` and {}",
                    match other {
                        Composite::Success | Composite::Skipped =>
                            "nothing it waits for failed".to_owned(),
                        _ => skip_reason(other, culprit.as_deref()),
                    }
                )),
            },
            JobWhen::Always => match composite {
                Composite::Success | Composite::Failed | Composite::Skipped => Ok(()),
                other => Err(skip_reason(other, culprit.as_deref())),
            },
            JobWhen::Never => Err("`when: never`".to_owned()),
        };
        let name = job.name.clone();
        match decision {
            Ok(()) => {
                self.states[i] = JobState::Running { id: None };
                Next::Run(name)
            }
            Err(reason) => {
                self.states[i] = JobState::Skipped {
                    reason: reason.clone(),
                };
                Next::Skip { name, reason }
            }
        }
    }

    /// The payload of job `name`, with the artifacts and dotenv variables of the jobs it depends on.
    pub fn payload(
        &mut self,
        name: &str,
        ctx: &LocalContext,
    ) -> Result<JobResponse, PipelineError> {
        let i = self.index(name).map_err(PipelineError::Plan)?;
        let planned = &self.jobs[i];
        let job = self.pipeline.job(name)?;
        let mut dependencies = Vec::new();
        let mut dotenv = Vec::new();
        for j in self.dependency_indices(i) {
            if let JobState::Finished {
                id: Some(id),
                artifacts,
                dotenv: vars,
                ..
            } = &self.states[j]
            {
                dependencies.push(DependencyArtifacts {
                    id: *id,
                    name: self.jobs[j].name.clone(),
                    archive: artifacts.as_ref().map(|a| (a.path.clone(), a.size)),
                });
                dotenv.extend(vars.iter().cloned());
            }
        }
        let extras = Extras {
            config_path: self.config_path.clone(),
            pipeline_name: self.pipeline_name.clone(),
            variables: Some(planned.variables.clone()),
            dependencies,
            dependency_variables: dotenv,
        };
        let payload = payload::build(job, ctx, &extras);
        if let JobState::Running { id } = &mut self.states[i] {
            *id = Some(payload.id);
        }
        Ok(payload)
    }

    /// Record how job `name` ended.
    pub fn record(&mut self, name: &str, result: JobResult) -> Result<(), PlanError> {
        let i = self.index(name)?;
        let JobState::Running { id } = self.states[i] else {
            return Err(PlanError::NotRunning {
                name: name.to_owned(),
                state: match self.states[i] {
                    JobState::Pending => "pending",
                    JobState::Finished { .. } => "finished",
                    JobState::Skipped { .. } => "skipped",
                    JobState::Running { .. } => "running",
                },
            });
        };
        let allowed = result.status != JobStatus::Success
            && self.jobs[i].allow_failure.allows(result.exit_code);
        self.states[i] = JobState::Finished {
            id,
            status: result.status,
            allowed,
            artifacts: result.artifacts,
            dotenv: result.dotenv,
        };
        Ok(())
    }

    /// Whether the run so far passed: every finished job succeeded or was allowed to fail.
    pub fn succeeded(&self) -> bool {
        self.states.iter().all(|s| match s {
            JobState::Finished {
                status, allowed, ..
            } => *status == JobStatus::Success || *allowed,
            _ => true,
        })
    }

    /// Indices of the plan's jobs that job `i` waits for.
    fn prerequisite_indices(&self, i: usize) -> Vec<usize> {
        let job = &self.jobs[i];
        match &job.needs {
            Some(needs) => needs
                .iter()
                .filter_map(|n| self.jobs.iter().position(|j| j.name == n.job))
                .collect(),
            None => (0..self.jobs.len())
                .filter(|&j| self.jobs[j].stage_index < job.stage_index)
                .collect(),
        }
    }

    /// Indices of the jobs whose artifacts job `i` downloads.
    fn dependency_indices(&self, i: usize) -> Vec<usize> {
        let job = &self.jobs[i];
        let candidates: Vec<usize> = match &job.needs {
            Some(needs) => needs
                .iter()
                .filter(|n| n.artifacts)
                .filter_map(|n| self.jobs.iter().position(|j| j.name == n.job))
                .collect(),
            None => self.prerequisite_indices(i),
        };
        match &job.dependencies {
            Some(names) => candidates
                .into_iter()
                .filter(|&j| names.contains(&self.jobs[j].name))
                .collect(),
            None => candidates,
        }
    }

    fn prerequisites(&self, i: usize) -> (Composite, Option<String>) {
        let dag = self.jobs[i].needs.is_some();
        let mut set = HashSet::new();
        let mut culprit = None;
        for j in self.prerequisite_indices(i) {
            let allow = match &self.jobs[j].allow_failure {
                AllowFailure::No => false,
                AllowFailure::Yes | AllowFailure::ExitCodes(_) => true,
            };
            let status = match &self.states[j] {
                JobState::Finished {
                    status: JobStatus::Success,
                    ..
                } => "success",
                JobState::Finished { allowed: true, .. } => "success_with_warnings",
                JobState::Finished {
                    status: JobStatus::Failed,
                    ..
                } => "failed",
                JobState::Finished {
                    status: JobStatus::Canceled,
                    ..
                } => "canceled",
                JobState::Skipped { .. } if self.jobs[j].when == JobWhen::Manual => {
                    if allow {
                        "ignored"
                    } else {
                        "manual"
                    }
                }
                JobState::Skipped { .. } => "skipped",
                // Jobs are decided once their prerequisites are done; anything else is still to come.
                JobState::Pending | JobState::Running { .. } => "pending",
            };
            if culprit.is_none() && matches!(status, "failed" | "canceled" | "manual" | "skipped") {
                culprit = Some(self.jobs[j].name.clone());
            }
            set.insert(status);
        }
        let only = |allowed: &[&str]| !set.is_empty() && set.iter().all(|s| allowed.contains(s));
        let composite = if set.is_empty() {
            Composite::Success
        } else if dag && (set.contains("skipped") || set.contains("ignored")) {
            Composite::Skipped
        } else if dag
            && !only(&[
                "success",
                "failed",
                "canceled",
                "skipped",
                "success_with_warnings",
            ])
        {
            Composite::Blocked
        } else if only(&["skipped", "ignored"]) {
            Composite::Skipped
        } else if only(&["success", "skipped", "success_with_warnings", "ignored"]) {
            Composite::Success
        } else if only(&[
            "canceled",
            "success",
            "skipped",
            "success_with_warnings",
            "ignored",
        ]) {
            Composite::Canceled
        } else if set.contains("manual") || set.contains("pending") {
            Composite::Blocked
        } else {
            Composite::Failed
        };
        (composite, culprit)
    }
}

fn skip_reason(composite: Composite, culprit: Option<&str>) -> String {
    let who = culprit.map_or_else(String::new, |c| format!(" (`{c}`)"));
    match composite {
        Composite::Failed => format!("a job it waits for failed{who}"),
        Composite::Canceled => format!("a job it waits for was canceled{who}"),
        Composite::Skipped => format!("a job it needs did not run{who}"),
        Composite::Blocked => format!("it waits for a manual job that glrunner does not run{who}"),
        Composite::Success => "nothing to wait for".to_owned(),
    }
}

/// Build the plan for `pipeline` (see the module docs).
pub fn build<'p>(
    pipeline: &'p Pipeline,
    ctx: &LocalContext,
    selection: &Selection,
) -> Result<Plan<'p>, PipelineError> {
    let config = &pipeline.config;
    let config_path = pipeline.config_path(ctx);
    let refs = ref_facts(ctx);
    let predefined = payload::pipeline_predefined(ctx, &config_path, None);
    let lookup = |extra: &[&[YamlVariable]], job: &[JobVariable]| -> HashMap<String, String> {
        let mut map: HashMap<String, String> = predefined
            .iter()
            .chain(job)
            .map(|v| (v.key.clone(), v.value.clone()))
            .collect();
        for list in extra {
            map.extend(list.iter().map(|v| (v.key.clone(), v.value.clone())));
        }
        map.extend(ctx.variables.iter().cloned());
        map
    };
    let facts = Facts::new(
        lookup(&[&config.variables], &[]),
        refs,
        ctx.project_dir.clone(),
    );

    // workflow:rules decide whether there is a pipeline at all.
    let mut workflow_variables = Vec::new();
    if let Some(rules) = &config.workflow.rules {
        match rules::first_match(rules, &facts) {
            Some(rule) if rule.when != Some(JobWhen::Never) => {
                workflow_variables = rule.variables.clone()
            }
            matched => {
                return Err(PipelineError::NotCreated {
                    at: matched.map(|r| r.at.clone()),
                    reason: match matched {
                        Some(_) => "the first matching `workflow:rules` entry says `when: never`"
                            .to_owned(),
                        None => "no `workflow:rules` entry matches".to_owned(),
                    },
                    context: describe(ctx),
                });
            }
        }
    }
    let root_variables = variables::merge(&config.variables, &workflow_variables);
    let pipeline_name = config
        .workflow
        .name
        .as_ref()
        .map(|name| rules::expand(name, &lookup(&[&root_variables], &[])));

    let mut included: Vec<(usize, PlannedJob)> = Vec::new();
    let mut excluded = Vec::new();
    let mut unsupported: HashMap<String, UnsupportedKey> = HashMap::new();
    for (order, entry) in config.jobs.iter().enumerate() {
        let job = match &entry.outcome {
            Ok(job) => job,
            Err(u) => {
                unsupported.insert(entry.name.clone(), u.clone());
                continue;
            }
        };
        let inherited: Vec<YamlVariable> = root_variables
            .iter()
            .filter(|v| job.inherit_variables.allows(&v.key))
            .cloned()
            .collect();
        let yaml = variables::merge(&inherited, &job.own_variables);
        let job_facts = facts.with_variables(lookup(&[&yaml], &payload::job_predefined(job)));
        match decide(
            job,
            &yaml,
            &inherited,
            &job_facts,
            config.workflow.rules.is_some(),
        ) {
            Ok(planned) => included.push((
                order,
                PlannedJob {
                    stage_index: entry.stage_index,
                    ..planned
                },
            )),
            Err(reason) => excluded.push(Excluded {
                name: job.name.clone(),
                reason,
            }),
        }
    }

    // A need on a job the pipeline left out fails the pipeline, unless it is optional. Only jobs that
    // are run fail the plan, so a job elsewhere in the file can still be run on its own.
    let names: HashSet<String> = included.iter().map(|(_, j)| j.name.clone()).collect();
    let mut broken: Vec<(String, PipelineError)> = Vec::new();
    for (_, planned) in &mut included {
        let Some(needs) = &planned.needs else {
            continue;
        };
        let job = pipeline.job(&planned.name)?;
        let mut kept = Vec::new();
        for need in needs {
            if names.contains(&need.job) || unsupported.contains_key(&need.job) {
                kept.push(need.clone());
                continue;
            }
            let written = job.needs.iter().flatten().find(|n| n.job == need.job);
            if written.is_some_and(|n| n.optional) {
                continue;
            }
            let why = excluded
                .iter()
                .find(|e| e.name == need.job)
                .map_or_else(String::new, |e| format!(" ({})", e.reason));
            broken.push((planned.name.clone(), PipelineError::invalid(
                written.map_or_else(|| job.location.clone(), |n| n.at.clone()),
                format!(
                    "'{}' job needs '{}' job, but '{}' is not in any previous stage: the pipeline leaves it \
                     out for this commit{why}",
                    planned.name, need.job, need.job
                ),
                format!(
                    "mark the need `optional: true`, or give `{}` rules that include it here",
                    need.job
                ),
            )));
        }
        planned.needs = Some(kept);
    }

    let selected = select(pipeline, selection, &included, &excluded, &unsupported)?;
    if let Some((_, err)) = broken.into_iter().find(|(name, _)| selected.contains(name)) {
        return Err(err);
    }
    for name in &selected {
        if let Some(u) = unsupported.get(name) {
            return Err(PipelineError::Unsupported(u.clone()));
        }
    }
    let mut chosen: Vec<(usize, PlannedJob)> = included
        .into_iter()
        .filter(|(_, j)| selected.contains(&j.name))
        .collect();
    if let Selection::Job { .. } = selection {
        // Only jobs in the plan are waited for.
        let names: HashSet<String> = chosen.iter().map(|(_, j)| j.name.clone()).collect();
        for (_, job) in &mut chosen {
            if let Some(needs) = &mut job.needs {
                needs.retain(|n| names.contains(&n.job));
            }
        }
    }
    let jobs = order(chosen);
    Ok(Plan {
        pipeline,
        states: vec![JobState::Pending; jobs.len()],
        jobs,
        excluded,
        pipeline_name,
        config_path,
        played: HashSet::new(),
    })
}

/// The ref facts of the commit `ctx` describes.
fn ref_facts(ctx: &LocalContext) -> RefFacts {
    RefFacts {
        ref_name: ctx.git.ref_name().to_owned(),
        branch: ctx.git.branch.is_some(),
        tag: ctx.git.branch.is_none() && ctx.git.tag.is_some(),
        source: ctx.pipeline_source.clone(),
        project_path: ctx.project_path.clone(),
    }
}

/// What `include:rules` see: the predefined pipeline variables and the user's.
pub(crate) fn base_facts(ctx: &LocalContext, config_path: &str) -> Facts {
    let mut variables: HashMap<String, String> =
        payload::pipeline_predefined(ctx, config_path, None)
            .into_iter()
            .map(|v| (v.key, v.value))
            .collect();
    variables.extend(ctx.variables.iter().cloned());
    Facts::new(variables, ref_facts(ctx), ctx.project_dir.clone())
}

/// `branch main, source push` for messages.
fn describe(ctx: &LocalContext) -> String {
    let git = &ctx.git;
    let what = match (&git.branch, &git.tag) {
        (Some(b), _) => format!("branch `{b}`"),
        (None, Some(t)) => format!("tag `{t}`"),
        (None, None) => "a detached HEAD".to_owned(),
    };
    format!("{what}, pipeline source `{}`", ctx.pipeline_source)
}

/// Whether `job` is part of the pipeline, and how.
fn decide(
    job: &Job,
    yaml: &[YamlVariable],
    inherited: &[YamlVariable],
    facts: &Facts,
    workflow_rules: bool,
) -> Result<PlannedJob, String> {
    let mut planned = PlannedJob {
        name: job.name.clone(),
        stage: job.stage.clone(),
        when: job.when,
        allow_failure: job.allow_failure.clone(),
        start_in: job.start_in,
        needs: job.needs.as_ref().map(|needs| planned_needs(needs)),
        stage_index: 0,
        dependencies: job.dependencies.clone(),
        variables: yaml.to_vec(),
    };
    if let Some(rules) = &job.rules {
        let Some(rule) = rules::first_match(rules, facts) else {
            return Err("no rule in `rules:` matches".to_owned());
        };
        let at = &rule.at;
        if let Some(when) = rule.when {
            planned.when = when;
        }
        if planned.when == JobWhen::Never {
            return Err(format!(
                "the matching rule ({}:{}) says `when: never`",
                at.line, at.column
            ));
        }
        // Without `allow_failure` in the rule the job's own applies, so a job made manual by a rule
        // blocks what waits for it unless it says it may fail (GitLab's behaviour).
        if let Some(allow) = rule.allow_failure {
            planned.allow_failure = if allow {
                AllowFailure::Yes
            } else {
                AllowFailure::No
            };
        }
        if rule.start_in.is_some() {
            planned.start_in = rule.start_in;
        }
        if !rule.variables.is_empty() {
            let own = variables::merge(&job.own_variables, &rule.variables);
            planned.variables = variables::merge(inherited, &own);
        }
        if let Some(needs) = &rule.needs {
            planned.needs = Some(planned_needs(needs));
        }
        return Ok(planned);
    }
    // GitLab gives every job without `only:` the default `only: [branches, tags]`, unless
    // `workflow:rules` exist.
    let default_only = (job.only.is_none() && !workflow_rules).then(rules::default_only);
    if let Some(only) = job.only.as_ref().or(default_only.as_ref())
        && !only.only_holds(facts)
    {
        return Err(format!(
            "`only:` does not match ref `{}` (source `{}`)",
            facts.refs.ref_name, facts.refs.source
        ));
    }
    if let Some(except) = &job.except
        && except.except_holds(facts)
    {
        return Err(format!(
            "`except:` matches ref `{}` (source `{}`)",
            facts.refs.ref_name, facts.refs.source
        ));
    }
    Ok(planned)
}

fn planned_needs(needs: &[Need]) -> Vec<PlannedNeed> {
    needs
        .iter()
        .map(|n| PlannedNeed {
            job: n.job.clone(),
            artifacts: n.artifacts,
        })
        .collect()
}

/// The names of the jobs `selection` picks.
fn select(
    pipeline: &Pipeline,
    selection: &Selection,
    included: &[(usize, PlannedJob)],
    excluded: &[Excluded],
    unsupported: &HashMap<String, UnsupportedKey>,
) -> Result<HashSet<String>, PipelineError> {
    let (name, with_needs) = match selection {
        Selection::All => {
            let mut all: HashSet<String> = included.iter().map(|(_, j)| j.name.clone()).collect();
            all.extend(unsupported.keys().cloned());
            return Ok(all);
        }
        Selection::Job { name, with_needs } => (name, *with_needs),
    };
    let config = &pipeline.config;
    let group: Vec<&str> = config
        .jobs
        .iter()
        .filter(|e| e.name == *name || e.base_name == *name)
        .map(|e| e.name.as_str())
        .collect();
    if group.is_empty() {
        return Err(PipelineError::UnknownJob {
            name: name.clone(),
            file: pipeline.path().to_path_buf(),
            available: pipeline
                .job_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        });
    }
    let mut selected: HashSet<String> = HashSet::new();
    for member in &group {
        if unsupported.contains_key(*member) {
            selected.insert((*member).to_owned());
        } else if let Some(e) = excluded.iter().find(|e| e.name == *member) {
            if group.len() == 1 {
                return Err(PipelineError::NotInPipeline {
                    job: e.name.clone(),
                    reason: e.reason.clone(),
                });
            }
        } else {
            selected.insert((*member).to_owned());
        }
    }
    if selected.is_empty() {
        return Err(PipelineError::NotInPipeline {
            job: name.clone(),
            reason: "none of its parallel instances is part of the pipeline for this commit".into(),
        });
    }
    if with_needs {
        let mut queue: Vec<String> = selected.iter().cloned().collect();
        while let Some(current) = queue.pop() {
            let Some((_, job)) = included.iter().find(|(_, j)| j.name == current) else {
                continue;
            };
            let waits_for: Vec<String> = match &job.needs {
                Some(needs) => needs.iter().map(|n| n.job.clone()).collect(),
                None => included
                    .iter()
                    .filter(|(_, j)| j.stage_index < job.stage_index)
                    .map(|(_, j)| j.name.clone())
                    .collect(),
            };
            for w in waits_for {
                if selected.insert(w.clone()) {
                    queue.push(w);
                }
            }
        }
    }
    Ok(selected)
}

/// Run order: by wave (a job starts one wave after the last job it waits for), then stage, then file
/// order.
fn order(jobs: Vec<(usize, PlannedJob)>) -> Vec<PlannedJob> {
    let mut wave: HashMap<String, usize> = HashMap::new();
    // Stage order is a valid processing order: needs point to the same or earlier stages and same-stage
    // needs were checked for cycles, so a few passes settle every wave.
    let mut sorted = jobs;
    sorted.sort_by_key(|(file, j)| (j.stage_index, *file));
    for _ in 0..=sorted.len() {
        let mut changed = false;
        for (_, job) in &sorted {
            let waits: Vec<&str> = match &job.needs {
                Some(needs) => needs.iter().map(|n| n.job.as_str()).collect(),
                None => sorted
                    .iter()
                    .filter(|(_, j)| j.stage_index < job.stage_index)
                    .map(|(_, j)| j.name.as_str())
                    .collect(),
            };
            let w = waits
                .iter()
                .map(|n| wave.get(*n).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            if wave.get(&job.name) != Some(&w) {
                wave.insert(job.name.clone(), w);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    sorted.sort_by_key(|(file, j)| {
        (
            wave.get(&j.name).copied().unwrap_or(0),
            j.stage_index,
            *file,
        )
    });
    sorted.into_iter().map(|(_, j)| j).collect()
}

impl PlannedJob {
    /// The YAML variables the job gets in this run (workflow and rule variables applied).
    pub fn variables(&self) -> &[YamlVariable] {
        &self.variables
    }
}
