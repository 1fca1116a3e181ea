//! Archive formats and compression levels as the job payload and the runner's variables name them,
//! and the file name an uploaded artifact gets.

use crate::lexical_path;
use crate::message::Message;
use std::fmt;

/// `artifact_format` of a payload entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactFormat {
    /// The default for `archive` artifacts and for caches.
    Zip,
    /// One gzip member per file (junit, cobertura, dotenv, … reports).
    Gzip,
    /// A single file sent as is (security and codequality reports).
    Raw,
}

/// A format this version cannot write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "artifact format {format:?} is not supported by glrunner; it writes \"zip\", \"gzip\" and \"raw\". \
     Likely cause: a newer GitLab or `CACHE_COMPRESSION_FORMAT` asks for a zstd format. \
     Fix: unset CACHE_COMPRESSION_FORMAT (zip is used) or use a supported artifacts format"
)]
pub struct UnsupportedFormat {
    pub format: String,
}

impl ArtifactFormat {
    /// Parses `artifact_format`; an empty value means zip, like gitlab-runner.
    pub fn parse(s: &str) -> Result<Self, UnsupportedFormat> {
        match s {
            "" | "zip" => Ok(Self::Zip),
            "gzip" => Ok(Self::Gzip),
            "raw" => Ok(Self::Raw),
            other => Err(UnsupportedFormat {
                format: other.to_owned(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Gzip => "gzip",
            Self::Raw => "raw",
        }
    }
}

impl fmt::Display for ArtifactFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name prefix of an archive still being written beside its destination (renamed over it when
/// complete): readers of a directory of archives skip such files.
pub const PARTIAL_PREFIX: &str = ".glrunner-partial-";

/// The file name an artifact is uploaded as: the last element of `name` (`default` when there is
/// none) plus `.zip` or `.gz`; raw artifacts keep the bare name.
pub fn artifact_file_name(name: &str, format: ArtifactFormat) -> String {
    let base = match lexical_path::base(name) {
        "" | "." | "/" => "default",
        b => b,
    };
    match format {
        ArtifactFormat::Zip => format!("{base}.zip"),
        ArtifactFormat::Gzip => format!("{base}.gz"),
        ArtifactFormat::Raw => base.to_owned(),
    }
}

/// `ARTIFACT_COMPRESSION_LEVEL` / `CACHE_COMPRESSION_LEVEL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CompressionLevel {
    /// No compression (stored entries).
    Fastest,
    Fast,
    #[default]
    Default,
    Slow,
    Slowest,
}

impl CompressionLevel {
    /// Parses a level name; an unknown name falls back to the default with gitlab-runner's warning.
    pub fn from_name(name: &str) -> (Self, Option<Message>) {
        match name {
            "fastest" => (Self::Fastest, None),
            "fast" => (Self::Fast, None),
            "slow" => (Self::Slow, None),
            "slowest" => (Self::Slowest, None),
            "default" | "" => (Self::Default, None),
            other => (
                Self::Default,
                Some(Message::warning(format!(
                    "compression level {other:?} is invalid, falling back to default"
                ))),
            ),
        }
    }

    /// The deflate level gitlab-runner's zip archiver uses, or `None` for stored entries.
    pub(crate) fn deflate_level(self) -> Option<i64> {
        match self {
            Self::Fastest => None,
            Self::Fast => Some(1),
            Self::Default => Some(5),
            Self::Slow => Some(7),
            Self::Slowest => Some(9),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_like_gitlab_runner() {
        assert_eq!(ArtifactFormat::parse(""), Ok(ArtifactFormat::Zip));
        assert_eq!(ArtifactFormat::parse("gzip"), Ok(ArtifactFormat::Gzip));
        assert_eq!(ArtifactFormat::parse("raw"), Ok(ArtifactFormat::Raw));
        let err = ArtifactFormat::parse("tarzstd").unwrap_err();
        assert!(err.to_string().contains("\"tarzstd\""));
        assert!(err.to_string().contains("Fix:"));
    }

    #[test]
    fn file_names() {
        assert_eq!(
            artifact_file_name("artifacts", ArtifactFormat::Zip),
            "artifacts.zip"
        );
        assert_eq!(
            artifact_file_name("junit.xml", ArtifactFormat::Gzip),
            "junit.xml.gz"
        );
        assert_eq!(
            artifact_file_name("gl-sast-report.json", ArtifactFormat::Raw),
            "gl-sast-report.json"
        );
        assert_eq!(artifact_file_name("", ArtifactFormat::Zip), "default.zip");
        assert_eq!(artifact_file_name("a/b/", ArtifactFormat::Zip), "b.zip");
        assert_eq!(artifact_file_name("../x", ArtifactFormat::Raw), "x");
    }

    #[test]
    fn compression_levels() {
        assert_eq!(
            CompressionLevel::from_name("fastest").0,
            CompressionLevel::Fastest
        );
        assert_eq!(CompressionLevel::from_name("").0, CompressionLevel::Default);
        let (level, warning) = CompressionLevel::from_name("turbo");
        assert_eq!(level, CompressionLevel::Default);
        assert_eq!(
            warning.unwrap().to_string(),
            "WARNING: compression level \"turbo\" is invalid, falling back to default"
        );
        assert_eq!(CompressionLevel::Fastest.deflate_level(), None);
        assert_eq!(CompressionLevel::Slowest.deflate_level(), Some(9));
    }
}
