//! Artifact and cache archives for glrunner, with gitlab-runner's path semantics. This is the
//! library behind the `glrunner helper` subcommands that upload artifacts and save or restore
//! caches (inside Kubernetes job pods too); it has no GitLab client in it.
//!
//! - [`select`] turns an `artifacts:`/`cache:` entry ([`Spec`]) into a [`Selection`] of files,
//!   with the warnings gitlab-runner prints.
//! - [`write_zip`], [`write_gzip`] and [`write_raw`] stream a selection to any `Write`;
//!   [`write_archive`] picks the writer for an [`ArtifactFormat`].
//! - [`extract_zip`] extracts an archive without letting any entry escape the target directory.
//! - [`cache`] holds the naming rules: key sanitising and hashing, local archive paths and object
//!   names; [`notice`] the log lines around artifact and cache stages.

pub mod cache;
mod confinement;
mod extraction;
mod format;
mod gzip_writer;
mod lexical_path;
mod message;
pub mod notice;
mod output;
mod pattern;
mod raw_writer;
mod selection;
mod spec;
mod timestamp;
mod untracked_files;
mod zip_writer;

pub use extraction::{ExtractError, ExtractReport, Refusal, RefusedEntry, extract_zip};
pub use format::{
    ArtifactFormat, CompressionLevel, PARTIAL_PREFIX, UnsupportedFormat, artifact_file_name,
};
pub use gzip_writer::{gzip_header_name, write_gzip};
pub use message::{Level, Message};
pub use output::{WriteError, WriteReport};
pub use raw_writer::write_raw;
pub use selection::{Entry, EntryKind, SelectError, Selection, select};
pub use spec::Spec;
pub use zip_writer::write_zip;

use std::io::Write;
use std::path::Path;

/// Writes `selection` in `format` (the compression level applies to zip only, as in gitlab-runner).
pub fn write_archive<W: Write>(
    selection: &Selection,
    format: ArtifactFormat,
    level: CompressionLevel,
    out: W,
) -> Result<WriteReport, WriteError> {
    match format {
        ArtifactFormat::Zip => write_zip(selection, out, level),
        ArtifactFormat::Gzip => write_gzip(selection, out),
        ArtifactFormat::Raw => write_raw(selection, out),
    }
}

/// Writes a zip archive to `dest` atomically, the way gitlab-runner saves a cache: the parent
/// directory is created (mode 0700), the archive goes to a temporary file beside `dest` and is
/// renamed over it only when complete. Returns the report and the archive's size.
pub fn write_zip_file(
    selection: &Selection,
    dest: &Path,
    level: CompressionLevel,
) -> Result<(WriteReport, u64), WriteError> {
    use std::os::unix::fs::DirBuilderExt;
    let output = |source| WriteError::Output { source };
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(output)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("archive_")
        .tempfile_in(dir)
        .map_err(output)?;
    let report = write_zip(selection, std::io::BufWriter::new(tmp.as_file_mut()), level)?;
    let size = tmp.as_file().metadata().map_err(output)?.len();
    tmp.persist(dest).map_err(|e| output(e.error))?;
    Ok((report, size))
}
