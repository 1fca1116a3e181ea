//! `artifacts-upload` and `artifacts-download`: select and archive the job's files and send them to
//! GitLab, or fetch a dependency's archive and extract it into the project, printing the lines
//! gitlab-runner's helper prints. With `--file` the archive stays on this machine instead: written to
//! that path, or extracted from it.

use crate::args::{ArtifactsDownloadArgs, ArtifactsUploadArgs, GitLabArgs};
use crate::error::HelperError;
use crate::output::Output;
use crate::{expand_env, project_dir, selection_spec, staging_file};
use glrunner_archive::{
    ArtifactFormat, CompressionLevel, PARTIAL_PREFIX, artifact_file_name, notice,
};
use glrunner_gitlab::{ArtifactUpload, ClientSettings, GitLabClient};
use glrunner_protocol::Secret;
use std::io::Read;
use std::path::Path;

/// The `User-Agent` of the helper's GitLab requests.
fn user_agent() -> String {
    format!(
        "glrunner {} helper ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The GitLab URL and job id of a transfer; clap requires both unless `--file` is given.
fn target(gitlab: &GitLabArgs) -> Result<(&str, i64), HelperError> {
    match (gitlab.url.as_deref(), gitlab.id) {
        (Some(url), Some(id)) => Ok((url, id)),
        _ => Err(HelperError::NoDestination),
    }
}

fn client(url: &str, gitlab: &GitLabArgs) -> Result<GitLabClient, HelperError> {
    Ok(GitLabClient::new(ClientSettings {
        url: url.to_owned(),
        tls_ca_file: gitlab.tls_ca_file.clone(),
        user_agent: user_agent(),
        ..ClientSettings::default()
    })?)
}

/// Selects the files of `args` and writes them as one archive into a temporary file in `dir` (the
/// staging directory when `None`); `None` when nothing matched (gitlab-runner's helper then says so and
/// succeeds: an artifact with nothing in it is not an error).
fn write_selection(
    args: &ArtifactsUploadArgs,
    dir: Option<&Path>,
    prefix: &str,
    out: &mut Output<'_>,
) -> Result<Option<(tempfile::NamedTempFile, ArtifactFormat)>, HelperError> {
    let project = project_dir(&args.project)?;
    let spec = selection_spec(&args.selection);
    let format = ArtifactFormat::parse(args.artifact_format.trim())?;
    let (level, level_warning) = CompressionLevel::from_name(args.compression_level.trim());
    out.messages(&level_warning);

    let selection = glrunner_archive::select(&project, &spec)?;
    out.messages(selection.messages());
    if selection.is_empty() {
        out.message(&notice::no_files_to_upload());
        return Ok(None);
    }

    let staging = staging_file(dir, prefix)?;
    // Every writer flushes its output when done.
    let report = glrunner_archive::write_archive(
        &selection,
        format,
        level,
        std::io::BufWriter::new(staging.as_file()),
    )?;
    out.messages(&report.messages);
    Ok(Some((staging, format)))
}

/// Archives the selected files and uploads them as job `--id`'s artifact.
pub async fn upload(
    args: &ArtifactsUploadArgs,
    token: &Secret,
    out: &mut Output<'_>,
) -> Result<(), HelperError> {
    let (url, job_id) = target(&args.gitlab)?;
    let Some((staging, format)) =
        write_selection(args, args.staging_dir.as_deref(), "artifacts_", out)?
    else {
        return Ok(());
    };
    let name = expand_env(&args.name);
    let file_name = artifact_file_name(&name, format);
    let expire_in = args.expire_in.as_deref().map(expand_env);
    let upload = ArtifactUpload {
        job_id,
        job_token: token,
        file: staging.path(),
        file_name: &file_name,
        format: format.as_str(),
        artifact_type: args.artifact_type.trim(),
        expire_in: expire_in.as_deref(),
    };
    let receipt = client(url, &args.gitlab)?.upload_artifact(&upload).await?;
    if let Some(base) = &receipt.retargeted {
        out.info(format!("Upload request redirected to {base}"));
    }
    out.info(format!(
        "Uploading artifacts as {:?} to coordinator... {}  id={job_id} responseStatus={}",
        upload.artifact_type, receipt.status, receipt.status
    ));
    Ok(())
}

/// Archives the selected files into `--file` instead of uploading them. The archive is written
/// beside its destination and renamed over it when complete, so a reader never sees half of one.
pub fn save(args: &ArtifactsUploadArgs, out: &mut Output<'_>) -> Result<(), HelperError> {
    let Some(dest) = args.file.as_deref() else {
        return Err(HelperError::NoDestination);
    };
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|source| HelperError::Staging {
        dir: dir.to_path_buf(),
        source,
    })?;
    let Some((staging, _)) = write_selection(args, Some(dir), PARTIAL_PREFIX, out)? else {
        return Ok(());
    };
    staging.persist(dest).map_err(|e| HelperError::Staging {
        dir: dir.to_path_buf(),
        source: e.error,
    })?;
    out.info(format!(
        "Saving artifacts as {:?} to {}... ok",
        args.artifact_type.trim(),
        dest.display()
    ));
    Ok(())
}

/// Downloads job `--id`'s artifacts with the dependency's token and extracts them into the project.
pub async fn download(
    args: &ArtifactsDownloadArgs,
    token: &Secret,
    out: &mut Output<'_>,
) -> Result<(), HelperError> {
    let (url, job_id) = target(&args.gitlab)?;
    let dir = project_dir(&args.project)?;
    let staging = staging_file(args.staging_dir.as_deref(), "artifacts_")?;
    let receipt = client(url, &args.gitlab)?
        .download_artifacts(job_id, token, staging.path(), args.direct_download)
        .await?;
    if let Some(host) = &receipt.object_storage {
        out.info(format!("Direct download from {host}"));
    }
    out.info(format!(
        "Downloading artifacts from coordinator... ok  id={job_id} responseStatus=200 OK"
    ));
    extract(
        staging.path(),
        &dir,
        &format!("job {job_id} (downloaded)"),
        out,
    )
}

/// Extracts the local archives `--file` into the project, in order, instead of downloading them; each
/// announced as its `--dependency` job's artifacts when those are given.
pub fn extract_local(
    args: &ArtifactsDownloadArgs,
    out: &mut Output<'_>,
) -> Result<(), HelperError> {
    if args.file.is_empty() {
        return Err(HelperError::NoDestination);
    }
    let dependencies: Vec<&[String]> = args.dependencies.chunks(2).collect();
    if !dependencies.is_empty() && dependencies.len() != args.file.len() {
        return Err(HelperError::DependencyCount {
            files: args.file.len(),
            dependencies: dependencies.len(),
        });
    }
    let dir = project_dir(&args.project)?;
    for (i, archive) in args.file.iter().enumerate() {
        if let Some([id, name]) = dependencies.get(i).copied() {
            let id = id
                .parse::<i64>()
                .map_err(|_| HelperError::DependencyId { value: id.clone() })?;
            out.message(&notice::downloading_artifacts(name, id));
        }
        if !archive.is_file() {
            return Err(HelperError::MissingArchive {
                path: archive.clone(),
            });
        }
        out.info(format!("Extracting artifacts from {}", archive.display()));
        extract(archive, &dir, &archive.display().to_string(), out)?;
    }
    Ok(())
}

/// Extracts a zip archive into `dir`; `what` names where it came from in the error.
fn extract(
    archive: &Path,
    dir: &Path,
    what: &str,
    out: &mut Output<'_>,
) -> Result<(), HelperError> {
    let magic = read_magic(archive);
    if !magic.starts_with(b"PK") {
        return Err(HelperError::NotZip {
            source_name: what.to_owned(),
            magic: if magic.is_empty() {
                "nothing: the file is empty".to_owned()
            } else {
                magic.iter().map(|b| format!("{b:02x}")).collect()
            },
        });
    }
    let report = glrunner_archive::extract_zip(archive, dir)?;
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
