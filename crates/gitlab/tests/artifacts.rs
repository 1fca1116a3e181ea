//! Artifact upload and download against real HTTP servers on 127.0.0.1: request shape (multipart field,
//! query, Job-Token), status handling, retries, the 307 re-target and the object storage redirect.

mod support;

use glrunner_gitlab::{ArtifactError, ArtifactUpload};
use glrunner_protocol::Secret;
use std::path::Path;
use support::{Recorded, Reply, Server, random_token};

fn upload<'a>(token: &'a Secret, file: &'a Path) -> ArtifactUpload<'a> {
    ArtifactUpload {
        job_id: 7,
        job_token: token,
        file,
        file_name: "artifacts.zip",
        format: "zip",
        artifact_type: "archive",
        expire_in: Some("1 week"),
    }
}

fn archive(dir: &Path, content: &[u8]) -> std::path::PathBuf {
    let path = dir.join("upload.zip");
    std::fs::write(&path, content).expect("write archive");
    path
}

/// The content of the multipart part named `name`, and its file name.
fn multipart_part(request: &Recorded, name: &str) -> (Option<String>, Vec<u8>) {
    let content_type = request.header("Content-Type").expect("content type");
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("multipart boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let body = &request.body[..];
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let end = find(rest, delimiter.as_bytes()).expect("closing delimiter");
        parts.push(&rest[..end]);
    }
    for part in parts {
        let split = find(part, b"\r\n\r\n").expect("part headers");
        let head = String::from_utf8_lossy(&part[..split]).into_owned();
        if !head.contains(&format!("name=\"{name}\"")) {
            continue;
        }
        let filename = head
            .split("filename=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(str::to_owned);
        let content = &part[split + 4..part.len() - 2];
        return (filename, content.to_vec());
    }
    panic!("no part named {name}");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn upload_streams_the_file_as_the_multipart_field_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let file = archive(dir.path(), &content);
    let token = Secret::new(random_token("glcbt-64_"));
    let server = Server::http(|_, _| Reply::json(201, serde_json::json!({"message": "201"}))).await;

    let receipt = server
        .client()
        .upload_artifact(&upload(&token, &file))
        .await
        .expect("upload");
    assert_eq!(receipt.status, "201 Created");
    assert_eq!(receipt.size, content.len() as u64);
    assert_eq!((receipt.attempts, receipt.retargeted), (1, None));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v4/jobs/7/artifacts")
    );
    assert_eq!(
        r.query.as_deref(),
        Some("expire_in=1+week&artifact_format=zip&artifact_type=archive")
    );
    assert_eq!(r.header("Job-Token"), Some(token.expose()));
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("multipart/form-data")),
        "{:?}",
        r.header("Content-Type")
    );
    let (filename, sent) = multipart_part(r, "file");
    assert_eq!(filename.as_deref(), Some("artifacts.zip"));
    assert!(sent == content, "the part carries the file byte for byte");
}

#[tokio::test]
async fn upload_413_is_explained_with_the_size_and_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = archive(dir.path(), &[7u8; 3 * 1024 * 1024]);
    let token = Secret::new(random_token("glcbt-64_"));
    let server = Server::http(|_, _| {
        Reply::json(
            413,
            serde_json::json!({"message": "413 Request Entity Too Large - file size has reached maximum size limit"}),
        )
    })
    .await;
    let error = server
        .client()
        .upload_artifact(&upload(&token, &file))
        .await
        .expect_err("too large");
    assert!(matches!(error, ArtifactError::TooLarge { .. }), "{error:?}");
    assert_eq!(error.status(), Some(413));
    let text = error.to_string();
    for part in [
        "artifacts.zip",
        "3145728 bytes, 3.0 MiB",
        "file size has reached maximum size limit",
        "max_artifact_size",
        "Maximum artifacts size",
        "artifacts:exclude",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    assert_eq!(server.requests().len(), 1, "413 is not retried");
}

#[tokio::test]
async fn upload_follows_a_307_to_the_new_address_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = archive(dir.path(), b"zip bytes");
    let token = Secret::new(random_token("glcbt-64_"));
    let target = Server::http(|_, _| Reply::status(201).body("201")).await;
    let location = format!("{}somewhere/else?ignored=1", target.url());
    let first = Server::http(move |_, _| Reply::status(307).header("Location", &location)).await;

    let receipt = first
        .client()
        .upload_artifact(&upload(&token, &file))
        .await
        .expect("upload after redirect");
    assert_eq!(receipt.attempts, 2);
    assert_eq!(
        receipt.retargeted.as_deref(),
        Some(format!("{}api/v4/", target.url()).as_str())
    );
    assert_eq!(first.requests().len(), 1);
    let moved = target.requests();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].path, "/api/v4/jobs/7/artifacts");
    assert_eq!(moved[0].header("Job-Token"), Some(token.expose()));
    assert_eq!(multipart_part(&moved[0], "file").1, b"zip bytes");
}

#[tokio::test]
async fn a_second_307_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = archive(dir.path(), b"zip bytes");
    let token = Secret::new(random_token("glcbt-64_"));
    let loop_back = Server::http(|r: &Recorded, _| {
        let host = r.header("Host").unwrap_or_default().to_owned();
        Reply::status(307).header("Location", &format!("http://{host}/"))
    })
    .await;
    let error = loop_back
        .client()
        .upload_artifact(&upload(&token, &file))
        .await
        .expect_err("redirect loop");
    assert!(
        matches!(error, ArtifactError::BadRedirect { status: 307, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("second time"), "{error}");
    assert_eq!(loop_back.requests().len(), 2);
}

#[tokio::test]
async fn upload_tries_three_times_and_six_while_gitlab_answers_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = archive(dir.path(), b"zip bytes");
    let token = Secret::new(random_token("glcbt-64_"));

    let failing = Server::http(|_, _| Reply::status(502).body("bad gateway")).await;
    let error = failing
        .client()
        .upload_artifact(&upload(&token, &file))
        .await
        .expect_err("502");
    assert!(
        matches!(
            error,
            ArtifactError::Unexpected {
                status: 502,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(failing.requests().len(), 3);

    let unavailable = Server::http(|_, _| Reply::status(503)).await;
    let error = unavailable
        .client()
        .upload_artifact(&upload(&token, &file))
        .await
        .expect_err("503");
    assert_eq!(error.status(), Some(503));
    assert_eq!(unavailable.requests().len(), 6);

    let recovering = Server::http(|_, index| match index {
        0 => Reply::status(503),
        _ => Reply::status(201),
    })
    .await;
    let receipt = recovering
        .client()
        .upload_artifact(&upload(&token, &file))
        .await
        .expect("second attempt succeeds");
    assert_eq!(receipt.attempts, 2);
    let requests = recovering.requests();
    assert_eq!(
        multipart_part(&requests[1], "file").1,
        b"zip bytes",
        "the retry sends the whole file again"
    );
}

#[tokio::test]
async fn upload_403_is_explained_once_without_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = archive(dir.path(), b"zip bytes");
    let token = Secret::new(random_token("glcbt-64_"));
    let echoed = token.expose().to_owned();
    let server = Server::http(move |_, _| {
        Reply::json(
            403,
            serde_json::json!({"message": format!("403 Forbidden {echoed}")}),
        )
    })
    .await;
    let error = server
        .client()
        .upload_artifact(&upload(&token, &file))
        .await
        .expect_err("forbidden");
    assert!(
        matches!(error, ArtifactError::UploadForbidden { job_id: 7, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(!text.contains(token.expose()), "{text}");
    assert!(text.contains("no longer running"), "{text}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn upload_of_a_missing_file_says_which_file() {
    let token = Secret::new("glcbt-x");
    let server = Server::http(|_, _| Reply::status(201)).await;
    let missing = Path::new("/nonexistent/glrunner/artifacts.zip");
    let error = server
        .client()
        .upload_artifact(&upload(&token, missing))
        .await
        .expect_err("missing file");
    assert!(
        matches!(error, ArtifactError::ReadArchive { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("/nonexistent/glrunner/artifacts.zip")
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn download_follows_object_storage_without_the_job_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("artifacts.zip");
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 13) as u8).collect();
    let served = content.clone();
    let storage = Server::http(move |_, _| Reply::status(200).body(served.clone())).await;
    let location = format!(
        "{}bucket/artifacts.zip?X-Amz-Signature=s3cr3tsignature&X-Amz-Expires=300",
        storage.url()
    );
    let gitlab = Server::http(move |_, _| Reply::status(302).header("Location", &location)).await;
    let token = Secret::new(random_token("glcbt-64_"));

    let receipt = gitlab
        .client()
        .download_artifacts(12, &token, &dest, true)
        .await
        .expect("download");
    assert_eq!(receipt.size, content.len() as u64);
    assert_eq!(receipt.object_storage.as_deref(), Some("127.0.0.1"));
    assert!(std::fs::read(&dest).expect("file") == content);

    let asked = gitlab.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/api/v4/jobs/12/artifacts");
    assert_eq!(asked[0].query.as_deref(), Some("direct_download=true"));
    assert_eq!(asked[0].header("Job-Token"), Some(token.expose()));
    let fetched = storage.requests();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].path, "/bucket/artifacts.zip");
    assert!(
        fetched[0].header("Job-Token").is_none(),
        "the job token never goes to object storage"
    );
    assert!(
        fetched[0]
            .query
            .as_deref()
            .is_some_and(|q| q.contains("X-Amz-Signature=s3cr3tsignature"))
    );
}

#[tokio::test]
async fn object_storage_refusals_show_the_storage_error_but_not_the_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("artifacts.zip");
    let storage = Server::http(|_, _| {
        Reply::status(403).body(
            "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message>\
             <Signature>s3cr3tsignature</Signature></Error>",
        )
    })
    .await;
    let location = format!(
        "{}bucket/a.zip?X-Amz-Signature=s3cr3tsignature",
        storage.url()
    );
    let gitlab = Server::http(move |_, _| Reply::status(307).header("Location", &location)).await;
    let error = gitlab
        .client()
        .download_artifacts(12, &Secret::new("glcbt-x"), &dest, true)
        .await
        .expect_err("storage refused");
    assert!(
        matches!(error, ArtifactError::ObjectStorage { status: 403, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("AccessDenied") && text.contains("Request has expired"),
        "{text}"
    );
    assert!(!text.contains("s3cr3tsignature"), "{text}");
}

#[tokio::test]
async fn download_refusals_are_explained_and_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("artifacts.zip");
    let token = Secret::new(random_token("glcbt-64_"));
    let cases: [(u16, &str, &[&str]); 3] = [
        (
            404,
            "NotFound",
            &["job 12 has no artifacts", "expired or were never uploaded"],
        ),
        (
            403,
            "DownloadForbidden",
            &["may not read the artifacts of job 12", "allowlist"],
        ),
        (401, "Unauthorized", &["401 Unauthorized", "Job-Token"]),
    ];
    for (status, kind, parts) in cases {
        let server = Server::http(move |_, _| {
            Reply::json(status, serde_json::json!({"message": format!("{status}")}))
        })
        .await;
        let error = server
            .client()
            .download_artifacts(12, &token, &dest, true)
            .await
            .expect_err("refused");
        assert_eq!(error.status(), Some(status), "{error:?}");
        assert!(format!("{error:?}").starts_with(kind), "{error:?}");
        let text = error.to_string();
        for part in parts {
            assert!(text.contains(part), "{status}: {part:?} missing: {text}");
        }
        assert!(!text.contains(token.expose()));
        assert_eq!(server.requests().len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn download_retries_server_errors_without_direct_download() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("artifacts.zip");
    let server = Server::http(|_, index| match index {
        0 => Reply::status(500),
        _ => Reply::status(200).body("PK zip"),
    })
    .await;
    let receipt = server
        .client()
        .download_artifacts(12, &Secret::new("glcbt-x"), &dest, true)
        .await
        .expect("second attempt");
    assert_eq!((receipt.attempts, receipt.size), (2, 6));
    assert_eq!(std::fs::read(&dest).expect("file"), b"PK zip");
    let requests = server.requests();
    assert_eq!(requests[0].query.as_deref(), Some("direct_download=true"));
    assert_eq!(
        requests[1].query, None,
        "direct_download only on the first attempt"
    );

    let broken = Server::http(|_, _| Reply::status(502)).await;
    let error = broken
        .client()
        .download_artifacts(12, &Secret::new("glcbt-x"), &dest, false)
        .await
        .expect_err("always 502");
    assert!(
        matches!(
            error,
            ArtifactError::Unexpected {
                status: 502,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(broken.requests().len(), 3);
    assert!(broken.requests().iter().all(|r| r.query.is_none()));
}
