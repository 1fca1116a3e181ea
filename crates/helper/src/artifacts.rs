//! `artifacts-upload` and `artifacts-download`: select and archive the job's files and send them to
//! GitLab, or fetch a dependency's archive and extract it into the project, printing the lines
//! gitlab-runner's helper prints.

use crate::args::{ArtifactsDownloadArgs, ArtifactsUploadArgs, GitLabArgs};
use crate::error::HelperError;
use crate::output::Output;
use crate::{expand_all, expand_env, project_dir, staging_file};
use glrunner_archive::{ArtifactFormat, CompressionLevel, Spec, artifact_file_name, notice};
use glrunner_gitlab::{ArtifactUpload, ClientSettings, GitLabClient};
use glrunner_protocol::Secret;
use std::io::{Read, Write};

/// The `User-Agent` of the helper's GitLab requests.
fn user_agent() -> String {
    format!(
        "glrunner {} helper ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn client(gitlab: &GitLabArgs) -> Result<GitLabClient, HelperError> {
    Ok(GitLabClient::new(ClientSettings {
        url: gitlab.url.clone(),
        tls_ca_file: gitlab.tls_ca_file.clone(),
        user_agent: user_agent(),
        ..ClientSettings::default()
    })?)
}

/// Archives the selected files and uploads them as job `--id`'s artifact.
pub async fn upload(
    args: &ArtifactsUploadArgs,
    token: &Secret,
    out: &mut Output<'_>,
) -> Result<(), HelperError> {
    let dir = project_dir(&args.project)?;
    let spec = Spec {
        paths: expand_all(&args.selection.paths),
        exclude: expand_all(&args.selection.exclude),
        untracked: args.selection.untracked,
    };
    let format = ArtifactFormat::parse(args.artifact_format.trim())?;
    let (level, level_warning) = CompressionLevel::from_name(args.compression_level.trim());
    out.messages(&level_warning);

    let selection = glrunner_archive::select(&dir, &spec)?;
    out.messages(selection.messages());
    if selection.is_empty() {
        // gitlab-runner's helper says so and succeeds: an artifact with nothing in it is not an error.
        out.message(&notice::no_files_to_upload());
        return Ok(());
    }

    let staging = staging_file(args.staging_dir.as_deref(), "artifacts_")?;
    let mut writer = std::io::BufWriter::new(staging.as_file());
    let report = glrunner_archive::write_archive(&selection, format, level, &mut writer)?;
    writer
        .flush()
        .map_err(|source| glrunner_archive::WriteError::Output { source })?;
    drop(writer);
    out.messages(&report.messages);

    let name = expand_env(&args.name);
    let file_name = artifact_file_name(&name, format);
    let expire_in = args.expire_in.as_deref().map(expand_env);
    let upload = ArtifactUpload {
        job_id: args.gitlab.id,
        job_token: token,
        file: staging.path(),
        file_name: &file_name,
        format: format.as_str(),
        artifact_type: args.artifact_type.trim(),
        expire_in: expire_in.as_deref(),
    };
    let receipt = client(&args.gitlab)?.upload_artifact(&upload).await?;
    if let Some(base) = &receipt.retargeted {
        out.info(format!("Upload request redirected to {base}"));
    }
    out.info(format!(
        "Uploading artifacts as {:?} to coordinator... {}  id={} responseStatus={}",
        upload.artifact_type, receipt.status, args.gitlab.id, receipt.status
    ));
    Ok(())
}

/// Downloads job `--id`'s artifacts with the dependency's token and extracts them into the project.
pub async fn download(
    args: &ArtifactsDownloadArgs,
    token: &Secret,
    out: &mut Output<'_>,
) -> Result<(), HelperError> {
    let dir = project_dir(&args.project)?;
    let staging = staging_file(args.staging_dir.as_deref(), "artifacts_")?;
    let receipt = client(&args.gitlab)?
        .download_artifacts(args.gitlab.id, token, staging.path(), args.direct_download)
        .await?;
    if let Some(host) = &receipt.object_storage {
        out.info(format!("Direct download from {host}"));
    }
    out.info(format!(
        "Downloading artifacts from coordinator... ok  id={} responseStatus=200 OK",
        args.gitlab.id
    ));

    let magic = read_magic(staging.path());
    if !magic.starts_with(b"PK") {
        return Err(HelperError::NotZip {
            job_id: args.gitlab.id,
            magic: if magic.is_empty() {
                "nothing: the file is empty".to_owned()
            } else {
                magic.iter().map(|b| format!("{b:02x}")).collect()
            },
        });
    }
    let report = glrunner_archive::extract_zip(staging.path(), &dir)?;
    out.messages(&report.messages);
    Ok(())
}

/// The first four bytes of a file (fewer when it is shorter).
fn read_magic(path: &std::path::Path) -> Vec<u8> {
    let mut magic = Vec::with_capacity(4);
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(4).read_to_end(&mut magic);
    }
    magic
}
