//! Artifacts kept on this machine instead of GitLab (`glrunner exec`, [`RunnerContext::local_artifacts`]):
//! where the upload stage writes each `artifacts:` entry (`<dir>/<job id>/<artifact type>/<file name>`,
//! the archive and each report in its own directory), and reading a finished job's entries back: the
//! archive its dependents extract, and the variables of its `dotenv` report under GitLab's rules.
//!
//! [`RunnerContext::local_artifacts`]: crate::RunnerContext::local_artifacts

use flate2::bufread::GzDecoder;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// GitLab's default limit on a dotenv report (`dotenv_size` plan limit): the stored file must be smaller.
pub const DOTENV_MAX_BYTES: u64 = 5 * 1024;
/// GitLab's default limit on the variables of one dotenv report (`dotenv_variables` plan limit).
pub const DOTENV_MAX_VARIABLES: usize = 20;

/// Where the upload stage writes an entry of `artifact_type` as `file_name` for job `job_id` (a path as
/// the scripts see it, under the local artifacts directory `dir`).
pub fn entry_path(dir: &str, job_id: i64, artifact_type: &str, file_name: &str) -> String {
    format!(
        "{}/{job_id}/{}/{}",
        dir.trim_end_matches('/'),
        segment(artifact_type, "archive"),
        segment(file_name, "artifacts")
    )
}

/// One path segment that cannot leave its directory.
fn segment<'a>(s: &'a str, fallback: &'a str) -> &'a str {
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\0']) {
        fallback
    } else {
        s
    }
}

/// A file a finished job stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// `archive`, `junit`, `dotenv`, …
    pub artifact_type: String,
    pub path: PathBuf,
    pub size: u64,
}

/// Everything one finished job stored under the local artifacts directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredArtifacts {
    /// The `archive` entry (what dependents extract), if the job made one.
    pub archive: Option<StoredFile>,
    /// The reports, by type.
    pub reports: Vec<StoredFile>,
}

impl StoredArtifacts {
    /// What job `job_id` stored under `dir`; nothing when it stored nothing.
    pub fn read(dir: &Path, job_id: i64) -> io::Result<Self> {
        let job_dir = dir.join(job_id.to_string());
        let mut stored = Self::default();
        let types = match std::fs::read_dir(&job_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(stored),
            Err(e) => return Err(e),
        };
        let mut files = Vec::new();
        for entry in types {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let artifact_type = entry.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(entry.path())? {
                let file = file?;
                let meta = file.metadata()?;
                // An archive the helper was still writing.
                let partial = file
                    .file_name()
                    .to_string_lossy()
                    .starts_with(glrunner_archive::PARTIAL_PREFIX);
                if meta.is_file() && !partial {
                    files.push(StoredFile {
                        artifact_type: artifact_type.clone(),
                        path: file.path(),
                        size: meta.len(),
                    });
                }
            }
        }
        files.sort_by(|a, b| (&a.artifact_type, &a.path).cmp(&(&b.artifact_type, &b.path)));
        for f in files {
            if f.artifact_type == "archive" && stored.archive.is_none() {
                stored.archive = Some(f);
            } else {
                stored.reports.push(f);
            }
        }
        Ok(stored)
    }

    /// The variables of the `dotenv` report, if the job stored one.
    pub fn dotenv(&self) -> Option<Result<Vec<(String, String)>, DotenvError>> {
        let report = self.reports.iter().find(|r| r.artifact_type == "dotenv")?;
        Some(read_dotenv_report(&report.path))
    }
}

/// Why a dotenv report gives no variables. GitLab refuses such a report as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DotenvError {
    #[error(
        "the dotenv report {path} could not be read: {source}. Likely cause: it was removed while the \
         pipeline ran. Fix: run the pipeline again"
    )]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the dotenv report is {size} bytes; GitLab accepts less than {limit} bytes. Fix: write fewer or \
         shorter variables to the file named in `artifacts:reports:dotenv`"
    )]
    TooBig { size: u64, limit: u64 },
    #[error(
        "the dotenv report has {count} variables; GitLab accepts at most {limit}. Fix: pass fewer \
         variables, or put the rest in a file in `artifacts:paths`"
    )]
    TooManyVariables { count: usize, limit: usize },
    #[error(
        "line {line} of the dotenv report is not `KEY=value`: {text:?}. GitLab allows no empty lines \
         and no comments in it. Fix: write only `KEY=value` lines, e.g. `echo \"VERSION=1.2.3\" >> build.env`"
    )]
    InvalidLine { line: usize, text: String },
    #[error(
        "line {line} of the dotenv report names the variable {key:?}; GitLab accepts only letters, \
         digits and `_` (at most 255). Fix: rename the variable"
    )]
    InvalidKey { line: usize, key: String },
}

/// The variables of a stored dotenv report (gzip, one member per file), with GitLab's rules: the
/// stored file smaller than [`DOTENV_MAX_BYTES`]; every line `KEY=value`, both sides trimmed, one pair
/// of matching quotes around the value removed, no empty or comment lines; keys of letters, digits
/// and `_`; no expansion; the last value of a key wins; at most [`DOTENV_MAX_VARIABLES`] keys.
pub fn read_dotenv_report(path: &Path) -> Result<Vec<(String, String)>, DotenvError> {
    let read_error = |source| DotenvError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size >= DOTENV_MAX_BYTES {
        return Err(DotenvError::TooBig {
            size,
            limit: DOTENV_MAX_BYTES,
        });
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut reader = BufReader::new(file);
    let mut members = Vec::new();
    // Each file of the report is one gzip member; GitLab parses each on its own.
    while !reader.fill_buf().map_err(read_error)?.is_empty() {
        let mut text = Vec::new();
        GzDecoder::new(&mut reader)
            .take(DOTENV_MAX_BYTES * 64)
            .read_to_end(&mut text)
            .map_err(read_error)?;
        members.push(String::from_utf8_lossy(&text).into_owned());
    }
    parse_dotenv(&members)
}

/// Parse the files of a dotenv report (see [`read_dotenv_report`]).
pub fn parse_dotenv<S: AsRef<str>>(files: &[S]) -> Result<Vec<(String, String)>, DotenvError> {
    let mut variables: Vec<(String, String)> = Vec::new();
    let mut line_number = 0;
    for file in files {
        let text = file.as_ref();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for line in text.split_inclusive('\n') {
            line_number += 1;
            let content = line.strip_suffix('\n').unwrap_or(line);
            let Some((key, value)) = content.split_once('=') else {
                return Err(DotenvError::InvalidLine {
                    line: line_number,
                    text: content.to_owned(),
                });
            };
            let key = key.trim();
            let valid_key = !key.is_empty()
                && key.len() <= 255
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid_key {
                return Err(DotenvError::InvalidKey {
                    line: line_number,
                    key: key.to_owned(),
                });
            }
            let value = unquote(value.trim());
            match variables.iter_mut().find(|(k, _)| k == key) {
                Some(existing) => existing.1 = value.to_owned(),
                None => variables.push((key.to_owned(), value.to_owned())),
            }
        }
    }
    if variables.len() > DOTENV_MAX_VARIABLES {
        return Err(DotenvError::TooManyVariables {
            count: variables.len(),
            limit: DOTENV_MAX_VARIABLES,
        });
    }
    Ok(variables)
}

/// `'value'` or `"value"` → `value`.
fn unquote(value: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = value.strip_prefix(q).and_then(|rest| rest.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn dotenv_lines_follow_gitlabs_rules() {
        let parsed = parse_dotenv(&[
            "VERSION=1.2.3\nURL = https://x.example/a=b \nQUOTED='two words'\nDQ=\"x\"\nEMPTY=\nVERSION=1.2.4\r\n",
        ])
        .unwrap();
        assert_eq!(
            parsed,
            vars(&[
                ("VERSION", "1.2.4"),
                ("URL", "https://x.example/a=b"),
                ("QUOTED", "two words"),
                ("DQ", "x"),
                ("EMPTY", ""),
            ])
        );
        assert_eq!(
            parse_dotenv(&["A=$B\nC='unbalanced\"\n"]).unwrap(),
            vars(&[("A", "$B"), ("C", "'unbalanced\"")]),
            "no expansion; only matching quotes go"
        );
    }

    #[test]
    fn empty_lines_comments_and_bad_keys_refuse_the_report() {
        let e = parse_dotenv(&["A=1\n\nB=2\n"]).unwrap_err();
        assert!(matches!(e, DotenvError::InvalidLine { line: 2, .. }), "{e}");
        let e = parse_dotenv(&["# comment\n"]).unwrap_err();
        assert!(matches!(e, DotenvError::InvalidLine { line: 1, .. }), "{e}");
        assert!(e.to_string().contains("no comments"), "{e}");
        let e = parse_dotenv(&["A=1\n", "MY-VAR=2\n"]).unwrap_err();
        assert!(
            matches!(&e, DotenvError::InvalidKey { line: 2, key } if key == "MY-VAR"),
            "{e}"
        );
        let e = parse_dotenv(&["#X=1\n"]).unwrap_err();
        assert!(matches!(e, DotenvError::InvalidKey { .. }), "{e}");
        let many: String = (0..21).map(|i| format!("V{i}=x\n")).collect();
        assert!(matches!(
            parse_dotenv(&[many]).unwrap_err(),
            DotenvError::TooManyVariables {
                count: 21,
                limit: 20
            }
        ));
    }

    fn gz(text: &str) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn each_gzip_member_is_its_own_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".env.gz");
        // The first file has no final newline: joined with the next it would make one bad line.
        let mut bytes = gz("A=1\nB=2");
        bytes.extend(gz("C=3\n"));
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            read_dotenv_report(&path).unwrap(),
            vars(&[("A", "1"), ("B", "2"), ("C", "3")])
        );
        let big: String = (0..2000).map(|i| format!("K{i}=v{i}\n")).collect();
        let mut encoder = GzEncoder::new(Vec::new(), Compression::none());
        encoder.write_all(big.as_bytes()).unwrap();
        std::fs::write(&path, encoder.finish().unwrap()).unwrap();
        assert!(matches!(
            read_dotenv_report(&path).unwrap_err(),
            DotenvError::TooBig { .. }
        ));
    }

    #[test]
    fn the_layout_and_reading_it_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_str().unwrap();
        assert_eq!(
            entry_path("/s/", 4, "archive", "build.zip"),
            "/s/4/archive/build.zip"
        );
        assert_eq!(
            entry_path("/s", 4, "../x", ".."),
            "/s/4/archive/artifacts",
            "nothing climbs out"
        );
        assert_eq!(
            StoredArtifacts::read(tmp.path(), 9).unwrap(),
            StoredArtifacts::default()
        );
        for (t, name, bytes) in [
            ("archive", "out.zip", b"PK..".to_vec()),
            ("junit", "junit.xml.gz", gz("<x/>")),
            ("dotenv", ".env.gz", gz("V=1\n")),
        ] {
            let p = PathBuf::from(entry_path(dir, 9, t, name));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let stored = StoredArtifacts::read(tmp.path(), 9).unwrap();
        let archive = stored.archive.clone().unwrap();
        assert_eq!(
            (archive.path.ends_with("9/archive/out.zip"), archive.size),
            (true, 4)
        );
        let types: Vec<&str> = stored
            .reports
            .iter()
            .map(|r| r.artifact_type.as_str())
            .collect();
        assert_eq!(types, ["dotenv", "junit"]);
        assert_eq!(stored.dotenv().unwrap().unwrap(), vars(&[("V", "1")]));
    }
}
