//! `cache-archive` and `cache-extract`: save the cache paths as a zip archive to the local cache
//! directory and/or a presigned URL, and restore it. A transfer that fails is reported with the storage's
//! own error and a non-zero exit, so the job log says "Failed to create cache", never "Created cache".

use crate::Exit;
use crate::args::{CacheArchiveArgs, CacheExtractArgs, CacheLocationArgs};
use crate::error::HelperError;
use crate::output::Output;
use crate::{project_dir, selection_spec, staging_dir, staging_file};
use glrunner_archive::cache::CACHE_ARCHIVE_NAME;
use glrunner_archive::{CompressionLevel, notice};
use glrunner_cache::transfer::{Direction, Downloaded, Transfer, clean_url};
use std::path::Path;
use url::Url;

/// The presigned URL of `--url`, if given.
fn cache_url(location: &CacheLocationArgs) -> Result<Option<Url>, HelperError> {
    let Some(raw) = location.url.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    Url::parse(raw.trim())
        .map(Some)
        .map_err(|e| HelperError::InvalidCacheUrl {
            // The part after `?` is the signature.
            shown: raw.split('?').next().unwrap_or_default().to_owned(),
            problem: e.to_string(),
        })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| CACHE_ARCHIVE_NAME.to_owned())
}

/// Archives the cache paths to `--file` (only when they changed) and uploads the archive to `--url`.
pub async fn archive(args: &CacheArchiveArgs, out: &mut Output<'_>) -> Result<Exit, HelperError> {
    let dir = project_dir(&args.project)?;
    let url = cache_url(&args.location)?;
    let spec = selection_spec(&args.selection);
    let (level, level_warning) = CompressionLevel::from_name(args.compression_level.trim());
    out.messages(&level_warning);

    let selection = glrunner_archive::select(&dir, &spec)?;
    out.messages(selection.messages());
    if selection.is_empty() {
        out.message(&notice::no_files_to_cache());
        return Ok(Exit::Success);
    }

    let staging;
    let (archive, size) = match &args.location.file {
        Some(file) => {
            if !selection.changed_since(file) {
                out.message(&notice::archive_up_to_date());
                return Ok(Exit::Success);
            }
            let (report, size) = glrunner_archive::write_zip_file(&selection, file, level)?;
            out.messages(&report.messages);
            (file.as_path(), size)
        }
        None => {
            staging = staging_file(None, "cache_")?;
            // The writer flushes its output when done.
            let report = glrunner_archive::write_zip(
                &selection,
                std::io::BufWriter::new(staging.as_file()),
                level,
            )?;
            out.messages(&report.messages);
            let size = staging
                .as_file()
                .metadata()
                .map_err(|source| glrunner_archive::WriteError::Output { source })?
                .len();
            (staging.path(), size)
        }
    };

    let Some(url) = url else {
        out.message(&notice::no_upload_url());
        return Ok(Exit::Success);
    };
    if let Some(limit) = args.max_size.filter(|l| *l > 0 && size > *l) {
        if args.location.file.is_some() {
            out.message(&notice::cache_too_big(size, limit));
            return Ok(Exit::Success);
        }
        out.warning(format!(
            "Cache archive size ({size}) is too big (Limit is set to {limit}). It is not uploaded, and no \
             --file was given to keep it locally, so this cache is not saved. Fix: cache fewer files or \
             raise MaxUploadedArchiveSize in [runners.cache]"
        ));
        return Ok(Exit::Failure);
    }
    out.info(format!(
        "Uploading {} to {}",
        file_name(
            args.location
                .file
                .as_deref()
                .unwrap_or(Path::new(CACHE_ARCHIVE_NAME))
        ),
        clean_url(&url)
    ));
    Transfer::new(
        &url,
        args.timeout,
        args.tls_ca_file.as_deref(),
        Direction::Upload,
    )?
    .upload(&url, archive)
    .await?;
    Ok(Exit::Success)
}

/// Restores the cache: downloads `--url` (into `--file` when given) unless the local copy is current,
/// then extracts it into the project. [`Exit::CacheMissing`] when there is no cache.
pub async fn extract(args: &CacheExtractArgs, out: &mut Output<'_>) -> Result<Exit, HelperError> {
    let dir = project_dir(&args.project)?;
    let url = cache_url(&args.location)?;
    // Without --file the download goes to a fresh temporary directory, so no stale copy looks current.
    let staging;
    let archive = match &args.location.file {
        Some(file) => file.clone(),
        None => {
            staging = staging_dir("cache_")?;
            staging.path().join(CACHE_ARCHIVE_NAME)
        }
    };
    let archive = archive.as_path();

    match &url {
        Some(url) => {
            let outcome = Transfer::new(
                url,
                args.timeout,
                args.tls_ca_file.as_deref(),
                Direction::Download,
            )?
            .download(url, archive)
            .await?;
            match outcome {
                Downloaded::Saved { size } => out.info(format!(
                    "Downloaded {} from {} ({size} bytes)",
                    file_name(archive),
                    clean_url(url)
                )),
                Downloaded::UpToDate => out.message(&notice::cache_up_to_date(&file_name(archive))),
                Downloaded::Missing if args.location.file.is_some() && archive.is_file() => {
                    out.info(format!(
                        "No cache at {}; extracting the local copy instead",
                        clean_url(url)
                    ));
                }
                Downloaded::Missing => {
                    out.message(&notice::cache_file_missing());
                    return Ok(Exit::CacheMissing);
                }
            }
        }
        None => {
            out.message(&notice::no_download_url());
            if !archive.is_file() {
                out.message(&notice::cache_file_missing());
                return Ok(Exit::CacheMissing);
            }
        }
    }

    let report = glrunner_archive::extract_zip(archive, &dir)?;
    out.messages(&report.messages);
    Ok(Exit::Success)
}
