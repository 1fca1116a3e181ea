//! Presigned URLs against a real S3-compatible server on 127.0.0.1 (s3s over a file-system store, see
//! `glrunner_cache::test_server`): bytes round-trip, missing objects, wrong credentials, expiry and
//! unreachable servers, each failure carrying the storage's own error text.

use glrunner_cache::test_server::S3Server;
use glrunner_cache::transfer::{Direction, Downloaded, Transfer, TransferError};
use glrunner_cache::{CacheBackend, CacheObject, CacheSettings, CacheTarget};
use glrunner_protocol::Secret;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use url::Url;

const BUCKET: &str = "runner-cache";
const TIMEOUT: Duration = Duration::from_secs(30);

fn object(key: &str) -> CacheObject<'_> {
    CacheObject {
        key,
        hashed_keys: false,
        project_id: 7,
        project_path: "group/app",
        empty_git_strategy: false,
        short_token: "xY12ab34",
    }
}

async fn server() -> S3Server {
    let server = S3Server::start().await.expect("S3 server starts");
    server.create_bucket(BUCKET).expect("bucket");
    server
}

fn settings(server: &S3Server) -> CacheSettings {
    CacheSettings {
        cache_type: "s3".into(),
        s3: server.settings(BUCKET),
        ..CacheSettings::default()
    }
}

fn urls(settings: &CacheSettings, key: &str, now: SystemTime, valid: Duration) -> (Url, Url) {
    let (backend, warning) = CacheBackend::select(settings);
    assert!(warning.is_none(), "{warning:?}");
    match backend.target_at(&object(key), valid, now).expect("target") {
        Some(CacheTarget::Url { get, put }) => (get, put),
        other => panic!("expected presigned URLs, got {other:?}"),
    }
}

fn client(url: &Url, direction: Direction) -> Transfer {
    Transfer::new(url, TIMEOUT, None, direction).expect("client")
}

async fn upload(put: &Url, file: &Path) -> Result<u64, TransferError> {
    client(put, Direction::Upload).upload(put, file).await
}

async fn download(get: &Url, dest: &Path) -> Result<Downloaded, TransferError> {
    client(get, Direction::Download).download(get, dest).await
}

/// A temporary directory holding `cache.zip` with `content`.
fn archive_file(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("cache.zip");
    std::fs::write(&archive, content).expect("archive");
    (dir, archive)
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn assert_no_signature(text: &str) {
    assert!(!text.contains("X-Amz-Signature"), "{text}");
    assert!(!text.contains("X-Amz-Credential"), "{text}");
}

#[tokio::test]
async fn presigned_put_then_get_round_trips_real_bytes() {
    let s3 = server().await;
    let (get, put) = urls(
        &settings(&s3),
        "build/main",
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    let content = random_bytes(3 * 1024 * 1024 + 17);
    let (dir, archive) = archive_file(&content);

    let sent = upload(&put, &archive).await.expect("upload");
    assert_eq!(sent, content.len() as u64);
    let stored = std::fs::read(s3.object_path(BUCKET, "runner/xY12ab34/project/7/build/main"))
        .expect("the store holds the object under gitlab-runner's object name");
    assert!(stored == content, "stored bytes differ");

    let restored = dir.path().join("restored/cache.zip");
    let outcome = download(&get, &restored).await.expect("download");
    assert_eq!(
        outcome,
        Downloaded::Saved {
            size: content.len() as u64
        }
    );
    assert!(std::fs::read(&restored).expect("restored") == content);

    // The restored file carries the object's time, so the next download is skipped.
    let again = download(&get, &restored).await.expect("second download");
    assert_eq!(again, Downloaded::UpToDate);
}

#[tokio::test]
async fn a_missing_object_is_missing_not_an_error() {
    let s3 = server().await;
    let (get, _) = urls(
        &settings(&s3),
        "never/saved",
        SystemTime::now(),
        Duration::from_secs(600),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("cache.zip");
    let outcome = download(&get, &dest).await.expect("404 is an answer");
    assert_eq!(outcome, Downloaded::Missing);
    assert!(!dest.exists());
}

#[tokio::test]
async fn wrong_credentials_reach_the_caller_with_the_s3_error() {
    let s3 = server().await;
    let mut wrong = settings(&s3);
    wrong.s3.secret_key = Secret::new("not-the-secret-key");
    let (get, put) = urls(&wrong, "k", SystemTime::now(), Duration::from_secs(600));
    let (dir, archive) = archive_file(b"PK");

    let error = upload(&put, &archive).await.expect_err("wrong secret key");
    assert_eq!(error.status(), Some(403), "{error:?}");
    assert_eq!(error.storage_code(), Some("SignatureDoesNotMatch"));
    let text = error.to_string();
    for part in [
        "cache upload to http://",
        "/runner-cache/runner/xY12ab34/project/7/k",
        "answered 403",
        "code: SignatureDoesNotMatch",
        "AccessKey or SecretKey is wrong",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    assert_no_signature(&text);
    assert!(!text.contains("not-the-secret-key"), "{text}");

    let mut unknown = settings(&s3);
    unknown.s3.access_key = "AKNOBODY".into();
    let (_, put) = urls(&unknown, "k", SystemTime::now(), Duration::from_secs(600));
    let error = upload(&put, &archive)
        .await
        .expect_err("unknown access key");
    assert_eq!(error.status(), Some(403), "{error:?}");
    assert!(error.storage_code().is_some(), "{error:?}");

    let error = download(&get, &dir.path().join("out.zip"))
        .await
        .expect_err("download with the wrong key");
    assert_eq!(error.storage_code(), Some("SignatureDoesNotMatch"));
    assert!(error.to_string().starts_with("cache download from http://"));
}

#[tokio::test]
async fn expired_urls_are_refused_and_explained() {
    let s3 = server().await;
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    let (get, put) = urls(
        &settings(&s3),
        "k",
        two_hours_ago,
        Duration::from_secs(3600),
    );
    let (dir, archive) = archive_file(b"PK");

    let error = upload(&put, &archive).await.expect_err("expired PUT");
    assert_eq!(error.status(), Some(403));
    assert_eq!(error.storage_code(), Some("AccessDenied"));
    let text = error.to_string();
    assert!(text.contains("Request has expired"), "{text}");
    assert!(text.contains("presigned URL expired"), "{text}");

    let error = download(&get, &dir.path().join("out.zip"))
        .await
        .expect_err("expired GET");
    assert_eq!(error.storage_code(), Some("AccessDenied"));

    // The same object and validity signed now works: only the time differs.
    let (_, fresh) = urls(
        &settings(&s3),
        "k",
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    upload(&fresh, &archive).await.expect("fresh URL");
}

#[tokio::test]
async fn the_bucket_check_names_a_missing_bucket_and_wrong_keys() {
    let s3 = server().await;
    let check = |settings: &CacheSettings| {
        let (backend, _) = CacheBackend::select(settings);
        match backend {
            CacheBackend::S3 { s3, .. } => {
                s3.presign_head_bucket(Duration::from_secs(60), SystemTime::now())
            }
            other => panic!("expected S3, got {other:?}"),
        }
    };
    let good = check(&settings(&s3));
    client(&good, Direction::Check)
        .check_bucket(&good)
        .await
        .expect("the bucket exists and the keys work");

    let mut missing = settings(&s3);
    missing.s3.bucket_name = "no-such-bucket".into();
    let url = check(&missing);
    let error = client(&url, Direction::Check)
        .check_bucket(&url)
        .await
        .expect_err("no bucket");
    assert_eq!(error.status(), Some(404), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("BucketName does not exist"), "{text}");
    assert!(text.contains("/no-such-bucket/"), "{text}");

    let mut wrong = settings(&s3);
    wrong.s3.secret_key = Secret::new("wrong");
    let url = check(&wrong);
    let error = client(&url, Direction::Check)
        .check_bucket(&url)
        .await
        .expect_err("wrong key");
    assert_eq!(error.status(), Some(403), "{error:?}");
    assert!(error.to_string().contains("AccessKey or SecretKey"));
}

#[tokio::test]
async fn an_unreachable_server_is_tried_three_times_and_explained() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url = Url::parse(&format!(
        "http://{addr}/runner-cache/k?X-Amz-Signature=abcdef"
    ))
    .expect("url");
    let (_dir, archive) = archive_file(b"PK");
    let error = upload(&url, &archive).await.expect_err("nothing listens");
    assert!(
        matches!(error, TransferError::Unreachable { attempts: 3, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("ServerAddress"), "{text}");
    assert_no_signature(&text);
}
