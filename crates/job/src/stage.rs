//! The stage plan of a job, in gitlab-runner's order: which stages run, in which container, under
//! which header, and which of them have nothing to do.

use glrunner_protocol::{JobResponse, STEP_AFTER_SCRIPT, STEP_SCRIPT, Step};

/// Which container of a pod a stage runs in. The shell executor ignores it; Kubernetes runs
/// predefined stages (git, cache, artifacts) in the helper and user steps in the build container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Helper,
    Build,
}

/// What a stage does.
#[derive(Debug, Clone, PartialEq)]
pub enum StageKind {
    PrepareExecutor,
    PrepareScript,
    GetSources,
    /// Run before get_sources is tried again; not part of the plan's normal order.
    ClearWorktree,
    RestoreCache,
    DownloadArtifacts,
    /// One `steps[]` entry other than after_script.
    Step {
        script: Vec<String>,
        allow_failure: bool,
    },
    AfterScript {
        script: Vec<String>,
    },
    ArchiveCache {
        on_failure: bool,
    },
    UploadArtifacts {
        on_failure: bool,
    },
    CleanupFileVariables,
}

/// Whether a stage has work to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Run,
    /// Nothing to do for this job: no section, no output.
    Nothing,
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The stage name used for sections and metrics: `get_sources`, `step_script`, …
    pub name: String,
    pub kind: StageKind,
    pub container: Container,
    pub work: Work,
}

impl Stage {
    fn new(name: impl Into<String>, kind: StageKind, container: Container, work: Work) -> Self {
        Self {
            name: name.into(),
            kind,
            container,
            work,
        }
    }

    /// The bold cyan header printed at the start of the stage's section.
    pub fn description(&self, executor: &str) -> String {
        match &self.kind {
            StageKind::PrepareExecutor => format!("Preparing the \"{executor}\" executor"),
            StageKind::PrepareScript => "Preparing environment".into(),
            StageKind::GetSources => "Getting source from Git repository".into(),
            StageKind::ClearWorktree => {
                "Deleting all tracked and untracked files due to source fetch failure".into()
            }
            StageKind::RestoreCache => "Restoring cache".into(),
            StageKind::DownloadArtifacts => "Downloading artifacts".into(),
            StageKind::Step { .. } => {
                format!("Executing \"{}\" stage of the job script", self.name)
            }
            StageKind::AfterScript { .. } => "Running after_script".into(),
            StageKind::ArchiveCache { on_failure: false } => {
                "Saving cache for successful job".into()
            }
            StageKind::ArchiveCache { on_failure: true } => "Saving cache for failed job".into(),
            StageKind::UploadArtifacts { on_failure: false } => {
                "Uploading artifacts for successful job".into()
            }
            StageKind::UploadArtifacts { on_failure: true } => {
                "Uploading artifacts for failed job".into()
            }
            StageKind::CleanupFileVariables => {
                "Cleaning up project directory and file based variables".into()
            }
        }
    }
}

/// `step_<lowercased name>`.
pub fn step_stage_name(step_name: &str) -> String {
    format!("step_{}", step_name.to_lowercase())
}

/// Why a payload cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error(
        "this job uses the `run:` keyword (CI/CD steps run by the step runner), which glrunner does not \
         support yet. Use `script:` for this job, or run it on a gitlab-runner with native steps support"
    )]
    StepRunner,
    #[error(
        "GitLab sent this job without a `script` step, so there is nothing to run. This usually means a \
         newer GitLab feature glrunner does not understand; run the job on gitlab-runner, or upgrade glrunner"
    )]
    NoScriptStep,
    #[error(
        "step {name:?} appears more than once in the job; each step must be unique. This is a GitLab-side \
         problem: retry the job, and report it if it persists"
    )]
    DuplicateStep { name: String },
}

/// The whole plan, in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub stages: Vec<Stage>,
}

impl StagePlan {
    /// The plan for `job`, or why it cannot run.
    pub fn for_job(job: &JobResponse) -> Result<Self, PlanError> {
        if job
            .run
            .as_deref()
            .is_some_and(|r| !r.trim().is_empty() && r.trim() != "[]")
        {
            return Err(PlanError::StepRunner);
        }
        if !job.steps.iter().any(|s| s.name == STEP_SCRIPT) {
            return Err(PlanError::NoScriptStep);
        }
        let mut seen: Vec<String> = Vec::new();
        for s in &job.steps {
            let name = step_stage_name(&s.name);
            if seen.contains(&name) {
                return Err(PlanError::DuplicateStep {
                    name: s.name.clone(),
                });
            }
            seen.push(name);
        }

        let (helper, build) = (Container::Helper, Container::Build);
        let run = Work::Run;
        let wanted = |yes: bool| if yes { Work::Run } else { Work::Nothing };

        let mut stages = vec![
            Stage::new("prepare_executor", StageKind::PrepareExecutor, helper, run),
            Stage::new("prepare_script", StageKind::PrepareScript, helper, run),
            Stage::new("get_sources", StageKind::GetSources, helper, run),
            Stage::new(
                "restore_cache",
                StageKind::RestoreCache,
                helper,
                wanted(crate::cache::restores(job)),
            ),
            Stage::new(
                "download_artifacts",
                StageKind::DownloadArtifacts,
                helper,
                wanted(crate::artifacts::downloads(job)),
            ),
        ];
        for s in job.steps.iter().filter(|s| s.name != STEP_AFTER_SCRIPT) {
            stages.push(Stage::new(
                step_stage_name(&s.name),
                StageKind::Step {
                    script: s.script.clone(),
                    allow_failure: s.allow_failure,
                },
                build,
                if has_commands(s) { run } else { Work::Nothing },
            ));
        }
        if let Some(s) = job.steps.iter().find(|s| s.name == STEP_AFTER_SCRIPT) {
            let work = if has_commands(s) { run } else { Work::Nothing };
            stages.push(Stage::new(
                "after_script",
                StageKind::AfterScript {
                    script: s.script.clone(),
                },
                build,
                work,
            ));
        }
        stages.extend([
            Stage::new(
                "archive_cache",
                StageKind::ArchiveCache { on_failure: false },
                helper,
                wanted(crate::cache::archives(job, false)),
            ),
            Stage::new(
                "archive_cache_on_failure",
                StageKind::ArchiveCache { on_failure: true },
                helper,
                wanted(crate::cache::archives(job, true)),
            ),
            Stage::new(
                "upload_artifacts_on_success",
                StageKind::UploadArtifacts { on_failure: false },
                helper,
                wanted(crate::artifacts::uploads(job, false)),
            ),
            Stage::new(
                "upload_artifacts_on_failure",
                StageKind::UploadArtifacts { on_failure: true },
                helper,
                wanted(crate::artifacts::uploads(job, true)),
            ),
            Stage::new(
                "cleanup_file_variables",
                StageKind::CleanupFileVariables,
                helper,
                run,
            ),
        ]);
        Ok(Self { stages })
    }

    pub fn get(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The stage of this kind, if it has work to do.
    pub fn to_run(&self, kind: &StageKind) -> Option<&Stage> {
        self.stages
            .iter()
            .find(|s| s.kind == *kind)
            .filter(|s| s.work == Work::Run)
    }

    /// The clear_worktree stage, run before get_sources is tried again.
    pub fn clear_worktree() -> Stage {
        Stage::new(
            "clear_worktree",
            StageKind::ClearWorktree,
            Container::Helper,
            Work::Run,
        )
    }

    pub fn names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name.as_str()).collect()
    }
}

fn has_commands(step: &Step) -> bool {
    step.script.iter().any(|c| !c.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_protocol::{Artifact, ArtifactsFile, Cache, Dependency, When};

    fn step(name: &str, script: &[&str]) -> Step {
        Step {
            name: name.into(),
            script: script.iter().map(|s| s.to_string()).collect(),
            ..Step::default()
        }
    }

    #[test]
    fn plan_for_release_and_unknown_steps() {
        let job = JobResponse {
            steps: vec![
                step("script", &["make"]),
                step("release", &["release-cli create"]),
                step("Deploy_New", &["./deploy"]),
                Step {
                    allow_failure: true,
                    when: When::Always,
                    ..step("after_script", &["echo bye"])
                },
            ],
            ..JobResponse::default()
        };
        let plan = StagePlan::for_job(&job).unwrap();
        assert_eq!(
            plan.names(),
            [
                "prepare_executor",
                "prepare_script",
                "get_sources",
                "restore_cache",
                "download_artifacts",
                "step_script",
                "step_release",
                "step_deploy_new",
                "after_script",
                "archive_cache",
                "archive_cache_on_failure",
                "upload_artifacts_on_success",
                "upload_artifacts_on_failure",
                "cleanup_file_variables",
            ]
        );
        let release = plan.get("step_release").unwrap();
        assert_eq!(release.container, Container::Build);
        assert_eq!(
            release.description("shell"),
            "Executing \"step_release\" stage of the job script"
        );
        assert_eq!(
            plan.get("get_sources").unwrap().container,
            Container::Helper
        );
        assert_eq!(
            plan.get("after_script").unwrap().container,
            Container::Build
        );
        assert_eq!(plan.get("after_script").unwrap().work, Work::Run);
        assert_eq!(plan.get("restore_cache").unwrap().work, Work::Nothing);
        assert_eq!(
            plan.get("upload_artifacts_on_success").unwrap().work,
            Work::Nothing
        );
        assert_eq!(
            plan.get("prepare_executor")
                .unwrap()
                .description("kubernetes"),
            "Preparing the \"kubernetes\" executor"
        );
    }

    #[test]
    fn cache_and_artifact_stages_run_only_with_something_to_do() {
        let mut job = JobResponse {
            steps: vec![step("script", &["true"]), step("after_script", &[""])],
            ..JobResponse::default()
        };
        job.cache = vec![Cache {
            key: "k".into(),
            policy: "pull-push".into(),
            paths: vec!["vendor".into()],
            when: When::OnSuccess,
            ..Cache::default()
        }];
        job.artifacts = Some(vec![Artifact {
            paths: vec!["out/".into()],
            when: When::OnFailure,
            ..Artifact::default()
        }]);
        job.dependencies = vec![Dependency {
            artifacts_file: Some(ArtifactsFile::default()),
            ..Dependency::default()
        }];
        let plan = StagePlan::for_job(&job).unwrap();
        let work = |n: &str| plan.get(n).unwrap().work;
        assert_eq!(work("restore_cache"), Work::Run);
        assert_eq!(
            work("download_artifacts"),
            Work::Nothing,
            "a dependency without an archive file name has nothing to download"
        );
        assert_eq!(work("archive_cache"), Work::Run);
        assert_eq!(
            work("archive_cache_on_failure"),
            Work::Nothing,
            "cache.when is on_success"
        );
        assert_eq!(work("upload_artifacts_on_success"), Work::Nothing);
        assert_eq!(work("upload_artifacts_on_failure"), Work::Run);
        job.dependencies.push(Dependency {
            artifacts_file: Some(ArtifactsFile {
                filename: "artifacts.zip".into(),
                size: 1,
            }),
            ..Dependency::default()
        });
        job.cache[0].paths.clear();
        let plan = StagePlan::for_job(&job).unwrap();
        let work = |n: &str| plan.get(n).unwrap().work;
        assert_eq!(work("download_artifacts"), Work::Run);
        assert_eq!(
            work("restore_cache"),
            Work::Nothing,
            "a cache without paths"
        );
        assert_eq!(work("archive_cache"), Work::Nothing);
        assert_eq!(
            work("after_script"),
            Work::Nothing,
            "blank after_script has nothing to run"
        );
    }

    #[test]
    fn payloads_that_cannot_run() {
        let mut job = JobResponse::default();
        assert_eq!(StagePlan::for_job(&job), Err(PlanError::NoScriptStep));
        job.steps = vec![step("script", &["true"])];
        job.run = Some(r#"[{"name":"hello","script":"echo hi"}]"#.into());
        assert_eq!(StagePlan::for_job(&job), Err(PlanError::StepRunner));
        job.run = None;
        job.steps.push(step("SCRIPT", &["again"]));
        assert!(matches!(
            StagePlan::for_job(&job),
            Err(PlanError::DuplicateStep { .. })
        ));
    }
}
