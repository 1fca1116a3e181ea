//! Zip archives as gitlab-runner writes them for artifacts and caches: entries in byte order of
//! their paths, directories as `name/` entries (so empty directories survive), symlinks as zip
//! symlinks holding their target, Unix modes in the external attributes, the modification time in
//! the DOS fields (UTC) and in an extended-timestamp field, and owner ids in the Info-ZIP Unix field
//! (0x7875). The output is written as a stream (entries carry data descriptors), so any `Write`
//! works and files are never held in memory; the same input gives the same bytes.

use crate::format::CompressionLevel;
use crate::message::{Message, git_directory_warning, is_git_path};
use crate::output::{WriteError, WriteReport, copy, open_entry};
use crate::selection::Selection;
use crate::timestamp::{dos_time, extended_seconds, unix_seconds};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::UNIX_EPOCH;
use zip::write::FullFileOptions;
use zip::{CompressionMethod, System, ZipWriter};

/// Info-ZIP "new Unix" extra field: version 1, 4-byte uid, 4-byte gid.
pub(crate) const UID_GID_FIELD: u16 = 0x7875;

/// Writes `selection` as a zip archive to `out`.
pub fn write_zip<W: Write>(
    selection: &Selection,
    out: W,
    level: CompressionLevel,
) -> Result<WriteReport, WriteError> {
    let mut zip = ZipWriter::new_stream(out);
    let mut report = WriteReport::default();
    let mut git_warned = false;
    for name in selection.paths() {
        if !git_warned && is_git_path(name) {
            git_warned = true;
            report.messages.extend(git_directory_warning("archive"));
        }
        let path = selection.root().join(name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                report
                    .messages
                    .push(Message::warning(format!("File ignored: lstat {name}: {e}")));
                continue;
            }
        };
        let mtime = unix_seconds(meta.modified().unwrap_or(UNIX_EPOCH));
        let mut options = FullFileOptions::default()
            .system(System::Unix)
            .last_modified_time(dos_time(mtime))
            .unix_permissions(meta.mode())
            .with_extended_timestamp(Some(extended_seconds(mtime)), None, None)?;
        options.add_extra_field(UID_GID_FIELD, uid_gid(meta.uid(), meta.gid()), false)?;

        let ft = meta.file_type();
        if ft.is_dir() {
            zip.add_directory(name, options)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|source| WriteError::Read {
                path: path.clone(),
                source,
            })?;
            let Some(target) = target.to_str() else {
                report.messages.push(Message::warning(format!(
                    "File ignored: {name}: the link target is not valid UTF-8"
                )));
                continue;
            };
            zip.add_symlink(name, target, options)?;
        } else if ft.is_file() {
            let mut file = open_entry(&path)?;
            let options = match level.deflate_level() {
                None => options.compression_method(CompressionMethod::Stored),
                Some(l) => options
                    .compression_method(CompressionMethod::Deflated)
                    .compression_level(Some(l)),
            }
            .large_file(meta.len() >= u64::from(u32::MAX));
            zip.start_file(name, options)?;
            copy(&mut file, &mut zip, &path)?;
        } else {
            report
                .messages
                .push(Message::warning(format!("File ignored: {name}")));
            continue;
        }
        report.entries += 1;
    }
    let mut out = zip.finish()?.into_inner();
    out.flush()
        .map_err(|source| WriteError::Output { source })?;
    Ok(report)
}

fn uid_gid(uid: u32, gid: u32) -> Vec<u8> {
    let mut field = Vec::with_capacity(11);
    field.extend_from_slice(&[1, 4]);
    field.extend_from_slice(&uid.to_le_bytes());
    field.push(4);
    field.extend_from_slice(&gid.to_le_bytes());
    field
}

/// Parses the 0x7875 field written above (only the 4-byte form gitlab-runner reads).
pub(crate) fn parse_uid_gid(data: &[u8]) -> Option<(u32, u32)> {
    match data {
        [1, 4, u0, u1, u2, u3, 4, g0, g1, g2, g3] => Some((
            u32::from_le_bytes([*u0, *u1, *u2, *u3]),
            u32::from_le_bytes([*g0, *g1, *g2, *g3]),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_gid_field_round_trips() {
        let f = uid_gid(1000, 4242);
        assert_eq!(f.len(), 11);
        assert_eq!(parse_uid_gid(&f), Some((1000, 4242)));
        assert_eq!(parse_uid_gid(&[1, 2, 0, 0, 2, 0, 0]), None);
    }
}
