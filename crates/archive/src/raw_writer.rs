//! The raw artifact format: exactly one file sent as it is (security and codequality reports). A
//! symlink is followed only when it leads to a file inside the project directory.

use crate::output::{WriteError, WriteReport, copy};
use crate::selection::Selection;
use std::fs::{self, File};
use std::io::Write;

/// Copies the one selected file to `out`.
pub fn write_raw<W: Write>(selection: &Selection, mut out: W) -> Result<WriteReport, WriteError> {
    let mut paths = selection.paths();
    let name = match (paths.next(), selection.len()) {
        (Some(name), 1) => name,
        (None, _) => return Err(WriteError::NoRawFile),
        (Some(first), count) => {
            return Err(WriteError::TooManyRawFiles {
                count,
                first: first.to_owned(),
            });
        }
    };
    let path = selection.root().join(name);
    let read_err = |source| WriteError::Read {
        path: path.clone(),
        source,
    };
    let real = fs::canonicalize(&path).map_err(read_err)?;
    let root = fs::canonicalize(selection.root()).map_err(read_err)?;
    if !real.starts_with(&root) {
        return Err(WriteError::LinkOutside {
            name: name.to_owned(),
            target: real,
        });
    }
    let mut file = File::open(&real).map_err(read_err)?;
    if !file.metadata().map_err(read_err)?.is_file() {
        return Err(WriteError::NotRegularFile {
            name: name.to_owned(),
        });
    }
    copy(&mut file, &mut out, &path)?;
    out.flush()
        .map_err(|source| WriteError::Output { source })?;
    Ok(WriteReport {
        entries: 1,
        messages: Vec::new(),
    })
}
