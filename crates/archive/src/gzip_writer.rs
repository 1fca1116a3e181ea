//! The gzip artifact format of gitlab-runner (junit, cobertura, dotenv and other reports): one
//! complete gzip member per selected file, concatenated in path order. Each member's header names
//! the file (`FNAME` = base name, `FCOMMENT` = path relative to the project) and carries its
//! modification time; names with non-ASCII characters or `%` are written `e:<percent-escaped>` like
//! gitlab-runner does. `gzip -dc` of the result is the files' contents one after the other.

use crate::lexical_path;
use crate::message::Message;
use crate::output::{WriteError, WriteReport, copy, open_entry};
use crate::selection::Selection;
use crate::timestamp::{extended_seconds, unix_seconds};
use flate2::{Compression, GzBuilder};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::fs;
use std::io::{self, Write};
use std::time::UNIX_EPOCH;

/// Go's `url.PathEscape` keeps these besides letters and digits.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b':')
    .remove(b'=')
    .remove(b'@');

/// A gzip header name as gitlab-runner writes it.
pub fn gzip_header_name(s: &str) -> String {
    if s.chars().any(|c| !c.is_ascii() || c == '%') {
        format!("e:{}", utf8_percent_encode(s, PATH_SEGMENT))
    } else {
        s.to_owned()
    }
}

/// Writes `selection` as concatenated gzip members to `out`. Entries that vanished are skipped
/// with a warning; a directory or symlink is an error, as in gitlab-runner.
pub fn write_gzip<W: Write>(selection: &Selection, mut out: W) -> Result<WriteReport, WriteError> {
    let mut report = WriteReport::default();
    for name in selection.paths() {
        let path = selection.root().join(name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report
                    .messages
                    .push(Message::warning(format!("File ignored: lstat {name}: {e}")));
                continue;
            }
            Err(source) => return Err(WriteError::Read { path, source }),
        };
        if !meta.is_file() {
            return Err(WriteError::NotRegularFile {
                name: name.to_owned(),
            });
        }
        let mut file = open_entry(&path)?;
        let mtime = unix_seconds(meta.modified().unwrap_or(UNIX_EPOCH));
        let mut gz = GzBuilder::new()
            .filename(gzip_header_name(lexical_path::base(name)))
            .comment(gzip_header_name(name))
            .mtime(extended_seconds(mtime))
            .write(&mut out, Compression::default());
        copy(&mut file, &mut gz, &path)?;
        gz.finish()
            .map_err(|source| WriteError::Output { source })?;
        report.entries += 1;
    }
    out.flush()
        .map_err(|source| WriteError::Output { source })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_escaped_like_gitlab_runner() {
        assert_eq!(gzip_header_name("junit.xml"), "junit.xml");
        assert_eq!(gzip_header_name("a b/c.xml"), "a b/c.xml");
        assert_eq!(gzip_header_name("100%.xml"), "e:100%25.xml");
        assert_eq!(
            gzip_header_name("répertoire/ü b,c;d?.xml"),
            "e:r%C3%A9pertoire%2F%C3%BC%20b%2Cc%3Bd%3F.xml"
        );
        assert_eq!(gzip_header_name("ö$&+:=@~"), "e:%C3%B6$&+:=@~");
    }
}
