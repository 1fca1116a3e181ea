//! Artifact endpoints: upload (multipart field `file`) and download of a dependency's archive.

use super::jobs::{job_forbidden, job_id};
use super::{error, forbidden, job_token, message, params, text};
use crate::shared::Shared;
use crate::state::{DownloadOutcome, JobForbidden, NewArtifact, UploadOutcome};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;

/// `POST /jobs/:id/artifacts`.
pub(super) async fn upload(
    State(shared): State<Arc<Shared>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let id = or_refuse!(job_id(&raw_id));
    let p = or_refuse!(params(&HeaderMap::new(), query.as_deref(), &[]));
    let token = job_token(&p, &headers);
    // Uploads authenticate the job but, as in GitLab, do not count as runner contact.
    if let Err(f) = shared.update(|s| s.authenticate_job(id, token, None, false)) {
        return job_forbidden(&f);
    }
    let Ok(mut multipart) = multipart else {
        return error(StatusCode::BAD_REQUEST, "file is missing");
    };
    let mut file = None;
    let mut fields = Vec::new();
    // The body was already read and bounded by the gate, so this loop ends with it.
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid multipart body: {e}"),
                );
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let filename = field.file_name().unwrap_or("artifacts.zip").to_owned();
            match field.bytes().await {
                Ok(data) => file = Some((filename, data)),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid multipart body: {e}"),
                    );
                }
            }
        } else if let Ok(value) = field.text().await {
            fields.push((name, value));
        }
    }
    let Some((filename, data)) = file else {
        return error(StatusCode::BAD_REQUEST, "file is missing");
    };
    let param = |key: &str| {
        p.str(key)
            .map(str::to_owned)
            .or_else(|| {
                fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            })
            .filter(|v| !v.is_empty())
    };
    let artifact = NewArtifact {
        artifact_type: param("artifact_type").unwrap_or_else(|| "archive".to_owned()),
        artifact_format: param("artifact_format").unwrap_or_else(|| "zip".to_owned()),
        expire_in: param("expire_in"),
        filename,
        data,
    };
    let outcome = shared.update(|s| {
        // The job may have finished while the body was read.
        s.authenticate_job(id, token, None, false)?;
        Ok::<_, JobForbidden>(s.upload_artifact(id, artifact))
    });
    match outcome {
        Err(f) => job_forbidden(&f),
        Ok(UploadOutcome::Created) => text(StatusCode::CREATED, "201"),
        Ok(UploadOutcome::TooLarge) => message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Request Entity Too Large - file size has reached maximum size limit",
        ),
        Ok(UploadOutcome::Duplicate) => message(
            StatusCode::BAD_REQUEST,
            "400 Bad request - another artifact of the same type already exists",
        ),
    }
}

/// `GET /jobs/:id/artifacts`: the archive of job `id`, with a running job's token or the job's own.
pub(super) async fn download(
    State(shared): State<Arc<Shared>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let id = or_refuse!(job_id(&raw_id));
    let p = or_refuse!(params(&HeaderMap::new(), query.as_deref(), &[]));
    let token = job_token(&p, &headers);
    match shared.read(|s| s.download_artifact(id, token)) {
        DownloadOutcome::Found { filename, data } => {
            let mut resp = (StatusCode::OK, data).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let disposition = format!("attachment; filename=\"{}\"", filename.replace('"', ""));
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        DownloadOutcome::NotFound => message(StatusCode::NOT_FOUND, "404 Not Found"),
        DownloadOutcome::Unauthorized => message(StatusCode::UNAUTHORIZED, "401 Unauthorized"),
        DownloadOutcome::Forbidden => forbidden(),
    }
}
