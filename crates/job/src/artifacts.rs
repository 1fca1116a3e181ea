//! The download_artifacts and upload_artifacts stages: the dependencies whose archives a job
//! extracts (each downloaded with its own token) and the `artifacts:` entries it uploads (the archive
//! and each report separately, with their paths, excludes, `untracked`, name, format, type and
//! expiry), through `glrunner helper artifacts-download`/`artifacts-upload`. A failed transfer fails
//! the stage, and so the job, as with gitlab-runner. With local artifacts (`glrunner exec`) the same
//! stages write and read archives under [`crate::local_artifacts`] instead of GitLab.

use crate::helper::{HelperCommand, JOB_TOKEN_ENV, guard};
use crate::script::ScriptContext;
use crate::stage_ops::{HelperStep, Op, StageOps};
use crate::variables::CA_FILE_VARIABLE;
use glrunner_archive::{ArtifactFormat, artifact_file_name, notice};
use glrunner_protocol::{Artifact, Dependency, JobResponse};

/// Dependencies with an archive to download. GitLab leaves `artifacts_file` out when a dependency
/// has none (and refuses to start a job whose dependencies' artifacts are gone:
/// `missing_dependency_failure`), so those are skipped.
fn with_archive(job: &JobResponse) -> impl Iterator<Item = &Dependency> {
    job.dependencies.iter().filter(|d| {
        d.artifacts_file
            .as_ref()
            .is_some_and(|f| !f.filename.is_empty())
    })
}

/// Whether the job downloads any artifacts.
pub fn downloads(job: &JobResponse) -> bool {
    with_archive(job).next().is_some()
}

/// Whether an entry has anything to select (gitlab-runner counts excludes too).
fn selects(a: &Artifact) -> bool {
    !a.paths.is_empty() || !a.exclude.is_empty() || a.untracked == Some(true)
}

/// Whether the job uploads any artifacts after it succeeded or failed.
pub fn uploads(job: &JobResponse, job_failed: bool) -> bool {
    job.artifacts
        .iter()
        .flatten()
        .any(|a| selects(a) && a.when.applies(job_failed))
}

/// `--tls-ca-file <path>` when GitLab's CA is known.
fn with_ca(cmd: HelperCommand, sc: &ScriptContext<'_>) -> HelperCommand {
    if sc.variables.get(CA_FILE_VARIABLE).is_some() {
        cmd.flag("tls-ca-file", sc.variables.file_path(CA_FILE_VARIABLE))
    } else {
        cmd
    }
}

/// A helper call whose failure fails the stage.
fn call(program: &str, command: HelperCommand) -> Op {
    Op::Helper(Box::new(HelperStep {
        program: program.to_owned(),
        command,
        branches: None,
    }))
}

/// The steps of download_artifacts. Archives kept on this machine are all extracted by one helper
/// call, which announces each dependency itself; from GitLab, each dependency is its own call with its
/// own token.
pub(crate) fn download_artifacts_ops(sc: &ScriptContext<'_>) -> StageOps {
    let download = guard(
        sc.helper.program.as_deref(),
        "Artifacts downloading",
        |program| {
            if sc.helper.local_artifacts.is_some() {
                let mut cmd = HelperCommand::new("artifacts-download");
                for d in with_archive(sc.job) {
                    let file = d
                        .artifacts_file
                        .as_ref()
                        .map_or("", |f| f.filename.as_str());
                    cmd = cmd
                        .flag("file", file)
                        .flag("dependency", d.id.to_string())
                        .arg(&d.name);
                }
                return vec![call(program, cmd)];
            }
            let mut ops = Vec::new();
            for d in with_archive(sc.job) {
                ops.push(Op::Message(notice::downloading_artifacts(&d.name, d.id)));
                let cmd = HelperCommand::new("artifacts-download")
                    .flag("url", sc.helper.gitlab_url.as_str())
                    .flag("id", d.id.to_string());
                ops.push(call(program, with_ca(cmd, sc).env(JOB_TOKEN_ENV, &d.token)));
            }
            ops
        },
    );
    StageOps {
        ops: vec![sc.environment(), download],
    }
}

/// Where an entry is kept on this machine: its name expanded with the job's variables, as the helper
/// would expand `--name`, and made a file name as GitLab names uploads.
fn local_entry_path(sc: &ScriptContext<'_>, dir: &str, a: &Artifact) -> String {
    let name = sc.variables.expand_value(&a.name);
    // gitlab-runner's helper names an unnamed archive `artifacts`.
    let name = if name.is_empty() {
        "artifacts".to_owned()
    } else {
        name
    };
    let file_name = match ArtifactFormat::parse(a.artifact_format.trim()) {
        Ok(format) => artifact_file_name(&name, format),
        // The helper refuses the format with the reason; the path only has to be valid.
        Err(_) => artifact_file_name(&name, ArtifactFormat::Raw),
    };
    crate::local_artifacts::entry_path(dir, sc.job.id, a.artifact_type.trim(), &file_name)
}

/// The steps of upload_artifacts_on_success (`job_failed` false) or upload_artifacts_on_failure.
pub(crate) fn upload_artifacts_ops(sc: &ScriptContext<'_>, job_failed: bool) -> StageOps {
    let mut ops = vec![sc.environment()];
    let entries = sc
        .job
        .artifacts
        .iter()
        .flatten()
        .filter(|a| selects(a) && a.when.applies(job_failed));
    for a in entries {
        ops.push(guard(
            sc.helper.program.as_deref(),
            "Uploading artifacts",
            |program| {
                let selection = |cmd: HelperCommand| {
                    cmd.flags("path", &a.paths)
                        .flags("exclude", &a.exclude)
                        .switch("untracked", a.untracked == Some(true))
                };
                let format = |cmd: HelperCommand| {
                    cmd.flag_opt("artifact-format", Some(&a.artifact_format))
                        .flag_opt("artifact-type", Some(&a.artifact_type))
                };
                let cmd = match &sc.helper.local_artifacts {
                    Some(dir) => format(selection(
                        HelperCommand::new("artifacts-upload")
                            .flag("file", local_entry_path(sc, dir, a)),
                    )),
                    None => {
                        let cmd = HelperCommand::new("artifacts-upload")
                            .flag("url", sc.helper.gitlab_url.as_str())
                            .flag("id", sc.job.id.to_string());
                        let cmd = selection(with_ca(cmd, sc))
                            .flag_opt("name", Some(&a.name))
                            .flag_opt("expire-in", Some(&a.expire_in));
                        format(cmd).env(JOB_TOKEN_ENV, &sc.job.token)
                    }
                };
                vec![
                    Op::Message(notice::uploading_artifacts()),
                    call(program, cmd),
                ]
            },
        ));
    }
    StageOps { ops }
}
