//! What writing an archive reports, and how it fails. Shared by the zip, gzip and raw writers.

use crate::message::Message;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What a writer did: entries written and the lines gitlab-runner would print (`File ignored: …`,
/// the `.git` warning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub entries: u64,
    pub messages: Vec<Message>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "cannot read {path} while archiving it: {source}. Likely cause: the file was removed or \
         made unreadable while the archive was written. Fix: make sure no process still changes the \
         artifact or cache paths when the job script ends, and that the helper's user can read them"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot write the archive: {source}. Likely cause: the upload connection closed or the disk \
         holding the archive is full. Fix: check free space under the cache or temporary directory \
         and retry the job"
    )]
    Output {
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot build the zip archive: {source}. Likely cause: an entry the zip format cannot hold \
         (a path longer than 65535 bytes). Fix: shorten the artifact or cache paths"
    )]
    Zip {
        #[source]
        source: zip::result::ZipError,
    },
    #[error(
        "the {name:?} is not a regular file. Likely cause: a gzip report path (junit, cobertura, \
         dotenv, …) matched a directory or a symlink; gzip artifacts hold regular files only. \
         Fix: list the report files themselves, for example `reports/*.xml` instead of `reports/`"
    )]
    NotRegularFile { name: String },
    #[error(
        "only one file can be sent as raw, but {count} were selected (first: {first}). Likely cause: \
         the report path of a raw artifact (security, codequality, …) is a glob or a directory. \
         Fix: make the report path name exactly one file"
    )]
    TooManyRawFiles { count: usize, first: String },
    #[error(
        "no file to send as raw. Likely cause: the report file was not created by the job. \
         Fix: check that the job writes the report to the path given in artifacts:reports"
    )]
    NoRawFile,
    #[error(
        "{name} is a symbolic link to {target}, which is outside the project directory, so it is not \
         sent. Fix: write the report inside the project directory instead of linking to it"
    )]
    LinkOutside { name: String, target: PathBuf },
}

impl From<zip::result::ZipError> for WriteError {
    fn from(e: zip::result::ZipError) -> Self {
        match e {
            zip::result::ZipError::Io(source) => WriteError::Output { source },
            source => WriteError::Zip { source },
        }
    }
}

/// Opens an entry that was a regular file when checked, with O_NOFOLLOW: never archive what a
/// symlink swapped in since then points at.
pub(crate) fn open_entry(path: &Path) -> Result<File, WriteError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| WriteError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Copies `input` to `output` in chunks, telling read failures from write failures.
pub(crate) fn copy(
    input: &mut impl Read,
    output: &mut impl Write,
    path: &Path,
) -> Result<u64, WriteError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(WriteError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        output
            .write_all(&buf[..n])
            .map_err(|source| WriteError::Output { source })?;
        total += n as u64;
    }
}
