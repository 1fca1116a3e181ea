//! `glrunner helper …` as job scripts run it: the real binary against the GitLab test coordinator (which
//! stores artifacts and serves them back) and a real S3-compatible server on 127.0.0.1, with tokens only
//! in the environment.

use glrunner_archive::{ArtifactFormat, CompressionLevel, Spec};
use glrunner_cache::test_server::S3Server;
use glrunner_cache::{CacheBackend, CacheObject, CacheSettings, CacheTarget};
use glrunner_coordinator::{Coordinator, JobSpec, Options, RunnerSpec};
use glrunner_gitlab::{ClientSettings, GitLabClient, JobRequestOutcome};
use glrunner_protocol::Secret;
use glrunner_protocol::request::JobRequest;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What one helper run printed and how it ended.
struct Run {
    code: Option<i32>,
    output: String,
    argv: Vec<String>,
}

impl Run {
    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit code; output:\n{}", self.output);
        self
    }

    fn assert_contains(&self, part: &str) -> &Self {
        assert!(
            self.output.contains(part),
            "{part:?} missing from:\n{}",
            self.output
        );
        self
    }

    /// The token (or any secret) is in neither the output nor the command line.
    fn assert_hidden(&self, secret: &str) -> &Self {
        assert!(!self.output.contains(secret), "leaked:\n{}", self.output);
        assert!(
            !self.argv.iter().any(|a| a.contains(secret)),
            "{:?}",
            self.argv
        );
        self
    }
}

/// Runs `glrunner helper <args>` in `cwd` with a clean environment plus `env`.
async fn helper(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut argv = vec!["helper".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_glrunner"));
    command
        .args(&argv)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .env("TMPDIR", std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(RUN_LIMIT, command.output())
        .await
        .expect("the helper finishes in time")
        .expect("the helper runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Run {
        code: output.status.code(),
        output: text,
        argv,
    }
}

/// Runs `glrunner helper <command> --url <GitLab> --id <id> <args…>` in `cwd` as job `id`'s script
/// does: its token, if given, only in `GLRUNNER_JOB_TOKEN`.
async fn job_helper(
    cwd: &Path,
    gitlab: &Coordinator,
    command: &str,
    id: i64,
    token: Option<&str>,
    args: &[&str],
) -> Run {
    let id = id.to_string();
    let mut all = vec![command, "--url", gitlab.url(), "--id", &id];
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = token
        .map(|t| ("GLRUNNER_JOB_TOKEN", t))
        .into_iter()
        .collect();
    helper(cwd, &all, &env).await
}

async fn coordinator(options: Options) -> Coordinator {
    Coordinator::start(options)
        .await
        .expect("coordinator starts on loopback")
}

/// Enqueues a job and takes it as a runner would, so it is running and its token authenticates it.
async fn running_job(gitlab: &Coordinator, spec: JobSpec) -> (i64, Secret) {
    let runner = gitlab.add_runner(RunnerSpec::created());
    let id = gitlab.enqueue(spec.for_runner(runner.id)).expect("enqueue");
    let client = GitLabClient::new(ClientSettings {
        url: gitlab.url().to_owned(),
        ..ClientSettings::default()
    })
    .expect("client");
    let reply = client
        .request_job(&JobRequest {
            token: runner.token.clone(),
            ..JobRequest::default()
        })
        .await
        .expect("jobs/request");
    match reply.outcome {
        JobRequestOutcome::Job(job) => {
            assert_eq!(job.id, id);
            (job.id, job.token.clone())
        }
        other => panic!("expected the job, got {other:?}"),
    }
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    std::fs::write(path, content).expect("write");
}

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

/// A project with tracked and untracked files, reports and a directory to exclude.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "README.md", b"# app\n");
    git(root, &["init", "-q"]);
    git(root, &["add", "README.md"]);
    git(
        root,
        &[
            "-c",
            "user.email=ci@glrunner.test",
            "-c",
            "user.name=ci",
            "commit",
            "-qm",
            "init",
        ],
    );
    write(root, "out/app.bin", &pseudo_random(50_000));
    write(root, "out/notes.txt", b"built\n");
    write(root, "out/tmp/scratch.tmp", b"scratch\n");
    write(root, "coverage.log", b"untracked and not under out/\n");
    write(
        root,
        "junit.xml",
        b"<testsuites><testsuite name=\"t\"/></testsuites>\n",
    );
    write(root, "gl-sast-report.json", b"{\"vulnerabilities\":[]}\n");
    dir
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The archive glrunner-archive makes of `spec` in `dir`: what the coordinator must hold, byte for byte.
fn expected_archive(dir: &Path, spec: &Spec, format: ArtifactFormat) -> Vec<u8> {
    let selection = glrunner_archive::select(dir, spec).expect("select");
    let mut bytes = Vec::new();
    glrunner_archive::write_archive(&selection, format, CompressionLevel::Default, &mut bytes)
        .expect("archive");
    bytes
}

/// The entry names of a zip archive, read by the zip crate (not by glrunner's own extraction).
fn unzip_names(archive: &[u8]) -> Vec<String> {
    let zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("a readable zip archive");
    let mut names: Vec<String> = zip
        .file_names()
        .map(|n| n.expect("entry name").into_owned())
        .collect();
    names.sort();
    names
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel)).expect("read dir") {
            let entry = entry.expect("entry");
            let path = rel.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                stack.push(path);
            } else {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn artifacts_upload_zip_gzip_and_raw_reach_gitlab_byte_for_byte() {
    let gitlab = coordinator(Options::default()).await;
    let (id, token) = running_job(&gitlab, JobSpec::script(["true"])).await;
    let project = project();
    let dir = project.path();

    let run = job_helper(
        dir,
        &gitlab,
        "artifacts-upload",
        id,
        Some(token.expose()),
        &[
            "--path",
            "out/",
            "--exclude",
            "out/tmp/**",
            "--untracked",
            "--expire-in",
            "1 week",
        ],
    )
    .await;
    run.assert_code(0)
        .assert_contains("Uploading artifacts as \"archive\" to coordinator... 201 Created")
        .assert_contains("out/: found")
        .assert_hidden(token.expose());

    let stored = gitlab.artifact(id, "archive").expect("archive stored");
    let spec = Spec {
        paths: vec!["out/".into()],
        exclude: vec!["out/tmp/**".into()],
        untracked: true,
    };
    assert!(
        stored == expected_archive(dir, &spec, ArtifactFormat::Zip),
        "the stored zip is the archive of the selection, byte for byte"
    );
    let names = unzip_names(&stored);
    for name in ["out/app.bin", "out/notes.txt", "coverage.log", "junit.xml"] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("scratch.tmp")),
        "excluded: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "README.md"),
        "tracked files come only through paths: {names:?}"
    );

    job_helper(
        dir,
        &gitlab,
        "artifacts-upload",
        id,
        Some(token.expose()),
        &[
            "--path",
            "junit.xml",
            "--name",
            "junit.xml",
            "--artifact-format",
            "gzip",
            "--artifact-type",
            "junit",
        ],
    )
    .await
    .assert_code(0)
    .assert_contains("Uploading artifacts as \"junit\" to coordinator... 201 Created");
    let gz = gitlab.artifact(id, "junit").expect("junit stored");
    assert!(gz == expected_archive(dir, &Spec::paths(["junit.xml"]), ArtifactFormat::Gzip));
    let mut gunzip = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    {
        use std::io::Write;
        let mut stdin = gunzip.stdin.take().expect("stdin");
        stdin.write_all(&gz).expect("feed gzip");
    }
    let plain = gunzip.wait_with_output().expect("gzip output");
    assert_eq!(
        plain.stdout,
        std::fs::read(dir.join("junit.xml")).expect("junit")
    );

    job_helper(
        dir,
        &gitlab,
        "artifacts-upload",
        id,
        Some(token.expose()),
        &[
            "--path",
            "gl-sast-report.json",
            "--name",
            "gl-sast-report.json",
            "--artifact-format",
            "raw",
            "--artifact-type",
            "sast",
        ],
    )
    .await
    .assert_code(0);
    assert_eq!(
        gitlab.artifact(id, "sast").expect("sast stored"),
        std::fs::read(dir.join("gl-sast-report.json")).expect("report")
    );

    let job = gitlab.job(id).expect("job");
    let described: Vec<(String, String, String, Option<String>)> = job
        .artifacts
        .iter()
        .map(|a| {
            (
                a.artifact_type.clone(),
                a.artifact_format.clone(),
                a.filename.clone(),
                a.expire_in.clone(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            (
                "archive".into(),
                "zip".into(),
                "artifacts.zip".into(),
                Some("1 week".into())
            ),
            ("junit".into(), "gzip".into(), "junit.xml.gz".into(), None),
            (
                "sast".into(),
                "raw".into(),
                "gl-sast-report.json".into(),
                None
            ),
        ]
    );
}

#[tokio::test]
async fn nothing_to_upload_is_said_and_not_an_error() {
    let gitlab = coordinator(Options::default()).await;
    let (id, token) = running_job(&gitlab, JobSpec::script(["true"])).await;
    let project = project();
    job_helper(
        project.path(),
        &gitlab,
        "artifacts-upload",
        id,
        Some(token.expose()),
        &["--path", "does-not-exist/"],
    )
    .await
    .assert_code(0)
    .assert_contains("does-not-exist/: no matching files")
    .assert_contains("ERROR: No files to upload");
    assert!(gitlab.job(id).expect("job").artifacts.is_empty());
}

#[tokio::test]
async fn too_large_artifacts_are_explained() {
    let gitlab = coordinator(Options::default().max_artifact_size(4096)).await;
    let (id, token) = running_job(&gitlab, JobSpec::script(["true"])).await;
    let project = project();
    job_helper(
        project.path(),
        &gitlab,
        "artifacts-upload",
        id,
        Some(token.expose()),
        &["--path", "out/app.bin"],
    )
    .await
    .assert_code(1)
    .assert_contains("ERROR: ")
    .assert_contains("413 Request Entity Too Large")
    .assert_contains("artifacts.zip (")
    .assert_contains("max_artifact_size")
    .assert_hidden(token.expose());
    assert!(gitlab.job(id).expect("job").artifacts.is_empty());
}

#[tokio::test]
async fn artifacts_download_extracts_and_explains_refusals() {
    let gitlab = coordinator(Options::default()).await;
    let (build, build_token) = running_job(&gitlab, JobSpec::script(["true"])).await;
    let source = project();
    job_helper(
        source.path(),
        &gitlab,
        "artifacts-upload",
        build,
        Some(build_token.expose()),
        &["--path", "out/"],
    )
    .await
    .assert_code(0);

    // The dependent job's project directory receives the dependency's files.
    let target = tempfile::tempdir().expect("target");
    job_helper(
        target.path(),
        &gitlab,
        "artifacts-download",
        build,
        Some(build_token.expose()),
        &[],
    )
    .await
    .assert_code(0)
    .assert_contains("Downloading artifacts from coordinator... ok")
    .assert_hidden(build_token.expose());
    assert_eq!(
        files_under(target.path()),
        ["out/app.bin", "out/notes.txt", "out/tmp/scratch.tmp"]
    );
    assert_eq!(
        std::fs::read(target.path().join("out/app.bin")).expect("restored"),
        std::fs::read(source.path().join("out/app.bin")).expect("original")
    );

    let (empty, empty_token) = running_job(&gitlab, JobSpec::script(["true"])).await;
    job_helper(
        target.path(),
        &gitlab,
        "artifacts-download",
        empty,
        Some(empty_token.expose()),
        &[],
    )
    .await
    .assert_code(1)
    .assert_contains(&format!("ERROR: GET /api/v4/jobs/{empty}/artifacts"))
    .assert_contains("has no artifacts (they expired or were never uploaded)")
    .assert_hidden(empty_token.expose());

    let stranger = "glcbt-64_notarunningjobtoken0123456789";
    job_helper(
        target.path(),
        &gitlab,
        "artifacts-download",
        build,
        Some(stranger),
        &[],
    )
    .await
    .assert_code(1)
    .assert_contains("403 Forbidden: this job may not read the artifacts")
    .assert_hidden(stranger);

    job_helper(
        target.path(),
        &gitlab,
        "artifacts-download",
        build,
        None,
        &[],
    )
    .await
    .assert_code(1)
    .assert_contains("GLRUNNER_JOB_TOKEN is not set");
}

#[tokio::test]
async fn cache_round_trip_through_a_local_file() {
    let project = project();
    let dir = project.path();
    let cache = tempfile::tempdir().expect("cache dir");
    let file = cache.path().join("group/app/build-main/cache.zip");
    let file_arg = file.to_string_lossy().into_owned();

    helper(
        dir,
        &[
            "cache-archive",
            "--file",
            &file_arg,
            "--path",
            "out/",
            "--path",
            "$CACHED_FILE",
        ],
        &[("CACHED_FILE", "coverage.log")],
    )
    .await
    .assert_code(0)
    .assert_contains("No URL provided, cache will not be uploaded to shared cache server");
    assert!(file.is_file());
    let names = unzip_names(&std::fs::read(&file).expect("cache"));
    assert!(
        names.iter().any(|n| n == "coverage.log"),
        "$VARIABLES in paths are expanded: {names:?}"
    );

    helper(
        dir,
        &["cache-archive", "--file", &file_arg, "--path", "out/"],
        &[],
    )
    .await
    .assert_code(0)
    .assert_contains("Archive is up to date!");

    let fresh = tempfile::tempdir().expect("fresh project");
    helper(fresh.path(), &["cache-extract", "--file", &file_arg], &[])
        .await
        .assert_code(0);
    assert_eq!(
        files_under(fresh.path()),
        [
            "coverage.log",
            "out/app.bin",
            "out/notes.txt",
            "out/tmp/scratch.tmp"
        ]
    );

    let missing = cache.path().join("group/app/other/cache.zip");
    helper(
        fresh.path(),
        &["cache-extract", "--file", &missing.to_string_lossy()],
        &[],
    )
    .await
    .assert_code(2)
    .assert_contains("WARNING: Cache file does not exist");
}

/// Presigned URLs for `key` in a bucket of `s3`, as the manager side makes them.
fn presigned(settings: &CacheSettings, key: &str) -> (String, String) {
    let (backend, warning) = CacheBackend::select(settings);
    assert!(warning.is_none(), "{warning:?}");
    let target = backend
        .target(
            &CacheObject {
                key,
                hashed_keys: false,
                project_id: 9,
                project_path: "group/app",
                empty_git_strategy: false,
                short_token: "aB3dE6gH",
            },
            Duration::from_secs(3600),
        )
        .expect("target");
    match target {
        Some(CacheTarget::Url { get, put }) => (get.to_string(), put.to_string()),
        other => panic!("expected URLs, got {other:?}"),
    }
}

fn s3_settings(s3: &S3Server) -> CacheSettings {
    CacheSettings {
        cache_type: "s3".into(),
        s3: s3.settings("runner-cache"),
        ..CacheSettings::default()
    }
}

#[tokio::test]
async fn cache_round_trip_through_presigned_s3_urls() {
    let s3 = S3Server::start().await.expect("S3 server");
    s3.create_bucket("runner-cache").expect("bucket");
    let (get, put) = presigned(&s3_settings(&s3), "build/main");
    let project = project();

    let run = helper(
        project.path(),
        &["cache-archive", "--url", &put, "--path", "out/"],
        &[],
    )
    .await;
    run.assert_code(0).assert_contains(&format!(
        "Uploading cache.zip to http://{}/runner-cache/runner/aB3dE6gH/project/9/build/main",
        s3.address()
    ));
    assert!(!run.output.contains("X-Amz-Signature"), "{}", run.output);
    let stored = s3.object_path("runner-cache", "runner/aB3dE6gH/project/9/build/main");
    let names = unzip_names(&std::fs::read(&stored).expect("object stored"));
    assert!(names.iter().any(|n| n == "out/app.bin"), "{names:?}");

    let fresh = tempfile::tempdir().expect("fresh project");
    helper(fresh.path(), &["cache-extract", "--url", &get], &[])
        .await
        .assert_code(0)
        .assert_contains("Downloaded cache.zip from http://");
    assert_eq!(
        files_under(fresh.path()),
        ["out/app.bin", "out/notes.txt", "out/tmp/scratch.tmp"]
    );
    assert_eq!(
        std::fs::read(fresh.path().join("out/app.bin")).expect("restored"),
        std::fs::read(project.path().join("out/app.bin")).expect("original")
    );

    let (missing, _) = presigned(&s3_settings(&s3), "never/saved");
    helper(fresh.path(), &["cache-extract", "--url", &missing], &[])
        .await
        .assert_code(2)
        .assert_contains("WARNING: Cache file does not exist");
}

#[tokio::test]
async fn s3_failures_are_warnings_with_the_s3_error() {
    let s3 = S3Server::start().await.expect("S3 server");
    s3.create_bucket("runner-cache").expect("bucket");
    let mut wrong = s3_settings(&s3);
    wrong.s3.secret_key = Secret::new("the-wrong-secret-key");
    let (get, put) = presigned(&wrong, "build/main");
    let project = project();

    let run = helper(
        project.path(),
        &["cache-archive", "--url", &put, "--path", "out/"],
        &[],
    )
    .await;
    run.assert_code(1)
        .assert_contains("WARNING: cache upload to http://")
        .assert_contains("answered 403")
        .assert_contains("code: SignatureDoesNotMatch")
        .assert_contains("AccessKey or SecretKey is wrong");
    assert!(!run.output.contains("X-Amz-Signature"), "{}", run.output);
    assert!(
        !run.output.contains("Created cache"),
        "never reported as saved"
    );

    helper(project.path(), &["cache-extract", "--url", &get], &[])
        .await
        .assert_code(1)
        .assert_contains("WARNING: cache download from http://")
        .assert_contains("code: SignatureDoesNotMatch");
}
