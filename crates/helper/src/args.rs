//! The command line of `glrunner helper`: one subcommand per stage job scripts run, as the helper
//! contract spells them. Tokens never appear here: they come from `GLRUNNER_JOB_TOKEN`.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// `glrunner helper <subcommand>`.
#[derive(Debug, Clone, Subcommand)]
pub enum HelperArgs {
    /// Archive files of the project and upload them as the job's artifacts (token: GLRUNNER_JOB_TOKEN).
    ArtifactsUpload(ArtifactsUploadArgs),
    /// Download a job's artifacts and extract them into the project (token: GLRUNNER_JOB_TOKEN, the
    /// dependency's token).
    ArtifactsDownload(ArtifactsDownloadArgs),
    /// Archive the cache paths to a local file and/or a presigned upload URL.
    CacheArchive(CacheArchiveArgs),
    /// Restore a cache from a local file or a presigned download URL; exits 2 when there is no cache.
    CacheExtract(CacheExtractArgs),
    /// Stream a job's log file from a byte offset, following it (the Kubernetes executor's log
    /// stream); exits 100 when the file is deleted.
    ReadLogs(crate::logs::ReadLogsArgs),
}

/// Where the project is.
#[derive(Debug, Clone, Args)]
pub struct ProjectArgs {
    /// The project directory (default: the current directory, CI_PROJECT_DIR in job scripts).
    #[arg(long, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,
}

/// How to reach GitLab. Both are required unless the artifacts stay on this machine (`--file`).
#[derive(Debug, Clone, Args)]
pub struct GitLabArgs {
    /// GitLab's URL (the runner's `url`, CI_SERVER_URL).
    #[arg(long, value_name = "URL", required_unless_present = "file")]
    pub url: Option<String>,
    /// The job whose artifacts are uploaded or downloaded.
    #[arg(long, value_name = "JOB_ID", required_unless_present = "file")]
    pub id: Option<i64>,
    /// A CA certificate file GitLab's certificate chains to, besides the system roots.
    #[arg(long, value_name = "FILE", env = "CI_SERVER_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
}

/// Which files: globs relative to the project directory.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectionArgs {
    /// A glob of files to include (repeatable); `$VARIABLES` are expanded from the environment.
    #[arg(long = "path", value_name = "GLOB")]
    pub paths: Vec<String>,
    /// A glob of files to leave out (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Also include the files git reports as untracked.
    #[arg(long)]
    pub untracked: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ArtifactsUploadArgs {
    #[command(flatten)]
    pub gitlab: GitLabArgs,
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// The artifact's name; the uploaded file is `<name>.zip`, `<name>.gz` or `<name>`.
    #[arg(long, default_value = "artifacts")]
    pub name: String,
    /// zip, gzip or raw.
    #[arg(long, default_value = "zip")]
    pub artifact_format: String,
    /// archive, junit, dotenv, cobertura, …
    #[arg(long, default_value = "archive")]
    pub artifact_type: String,
    /// How long GitLab keeps the artifact, e.g. "1 week" (default: GitLab's setting).
    #[arg(long, value_name = "DURATION")]
    pub expire_in: Option<String>,
    /// fastest, fast, default, slow or slowest (zip only).
    #[arg(long, env = "ARTIFACT_COMPRESSION_LEVEL", default_value = "default")]
    pub compression_level: String,
    /// Where the archive is written before it is sent (default: the temporary directory).
    #[arg(long, value_name = "DIR", env = "ARCHIVER_STAGING_DIR")]
    pub staging_dir: Option<PathBuf>,
    /// Write the archive to this file instead of uploading it (artifacts kept on this machine, as
    /// `glrunner exec` keeps them); `--url` and `--id` are then not needed.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["url", "id"])]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ArtifactsDownloadArgs {
    #[command(flatten)]
    pub gitlab: GitLabArgs,
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Ask GitLab for a redirect to object storage on the first attempt.
    #[arg(
        long,
        env = "FF_USE_DIRECT_DOWNLOAD",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub direct_download: bool,
    /// Where the archive is written before it is extracted (default: the temporary directory).
    #[arg(long, value_name = "DIR", env = "ARCHIVER_STAGING_DIR")]
    pub staging_dir: Option<PathBuf>,
    /// Extract this local archive instead of downloading one (artifacts kept on this machine);
    /// `--url` and `--id` are then not needed. Repeatable: the archives are extracted in turn, up to
    /// the first that fails, so one call serves all of a job's dependencies.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["url", "id"])]
    pub file: Vec<PathBuf>,
    /// The job whose artifacts the `--file` at the same position holds; the job log then says
    /// `Downloading artifacts for <NAME> (<ID>)...` before extracting it. Give one for every `--file`
    /// or none. (Each occurrence adds its two values: `[id, name, id, name, …]`.)
    #[arg(
        long = "dependency",
        num_args = 2,
        value_names = ["ID", "NAME"],
        allow_hyphen_values = true,
        requires = "file"
    )]
    pub dependencies: Vec<String>,
}

/// Where a cache archive is: a local file, a presigned URL, or both (the file is then the local copy the
/// URL is filled from, or restored into).
#[derive(Clone, Args)]
#[group(required = true, multiple = true)]
pub struct CacheLocationArgs {
    /// The local cache archive (`<cache_dir>/<project>/<key>/cache.zip`).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A presigned URL of the cache object in S3-compatible storage.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

// By hand: a presigned URL's query is its signature.
impl std::fmt::Debug for CacheLocationArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLocationArgs")
            .field("file", &self.file)
            .field(
                "url",
                &self
                    .url
                    .as_deref()
                    .map(|u| u.split('?').next().unwrap_or_default()),
            )
            .finish()
    }
}

/// A duration like `10m`, `90s` or `1h`; a bare number is minutes, as gitlab-runner's `--timeout`.
pub fn parse_timeout(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(minutes) = value.parse::<u64>() {
        return Ok(Duration::from_secs(minutes.saturating_mul(60)));
    }
    humantime::parse_duration(value).map_err(|e| format!("{e} (write e.g. 10m, 90s or 1h)"))
}

#[derive(Debug, Clone, Args)]
pub struct CacheArchiveArgs {
    #[command(flatten)]
    pub location: CacheLocationArgs,
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Upload only archives up to this size; larger ones stay local (`MaxUploadedArchiveSize`).
    #[arg(long, value_name = "BYTES", env = "CACHE_MAX_UPLOADED_ARCHIVE_SIZE")]
    pub max_size: Option<u64>,
    /// Time allowed for each upload request.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// fastest, fast, default, slow or slowest.
    #[arg(long, env = "CACHE_COMPRESSION_LEVEL", default_value = "default")]
    pub compression_level: String,
    /// A CA certificate file the storage's certificate chains to, besides the system roots.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CacheExtractArgs {
    #[command(flatten)]
    pub location: CacheLocationArgs,
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Time allowed for each download request.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// A CA certificate file the storage's certificate chains to, besides the system roots.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        helper: HelperArgs,
    }

    fn parse(args: &[&str]) -> Result<HelperArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("helper").chain(args.iter().copied())).map(|c| c.helper)
    }

    #[test]
    fn the_contract_command_lines_parse() {
        let HelperArgs::ArtifactsUpload(a) = parse(&[
            "artifacts-upload",
            "--url",
            "https://gitlab.example.com",
            "--id",
            "42",
            "--path",
            "out/",
            "--path",
            "$DIR/*.log",
            "--exclude",
            "out/*.tmp",
            "--untracked",
            "--artifact-format",
            "gzip",
            "--artifact-type",
            "junit",
            "--expire-in",
            "1 week",
            "--name",
            "report.xml",
        ])
        .expect("upload") else {
            panic!("wrong subcommand")
        };
        assert_eq!((a.gitlab.id, a.name.as_str()), (Some(42), "report.xml"));
        assert_eq!(a.selection.paths, ["out/", "$DIR/*.log"]);
        assert!(a.selection.untracked);
        assert_eq!(a.expire_in.as_deref(), Some("1 week"));

        let HelperArgs::CacheExtract(c) = parse(&[
            "cache-extract",
            "--url",
            "http://s3/x?sig",
            "--timeout",
            "90s",
        ])
        .expect("extract") else {
            panic!("wrong subcommand")
        };
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert!(c.location.file.is_none());
        assert!(
            !format!("{c:?}").contains("sig"),
            "Debug hides the presigned URL's query"
        );

        let HelperArgs::CacheArchive(c) = parse(&[
            "cache-archive",
            "--file",
            "/cache/a/cache.zip",
            "--path",
            "node_modules",
            "--max-size",
            "1024",
            "--timeout",
            "10",
        ])
        .expect("archive") else {
            panic!("wrong subcommand")
        };
        assert_eq!(
            c.timeout,
            Duration::from_secs(600),
            "bare numbers are minutes"
        );
        assert_eq!(c.max_size, Some(1024));
    }

    #[test]
    fn a_cache_needs_a_file_or_a_url() {
        let error = parse(&["cache-extract"]).expect_err("no location");
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(parse(&["cache-archive", "--timeout", "soon", "--file", "f"]).is_err());
    }

    #[test]
    fn direct_download_can_be_turned_off() {
        let HelperArgs::ArtifactsDownload(d) = parse(&[
            "artifacts-download",
            "--url",
            "http://gitlab",
            "--id",
            "3",
            "--direct-download",
            "false",
        ])
        .expect("download") else {
            panic!("wrong subcommand")
        };
        assert!(!d.direct_download);
    }
}
