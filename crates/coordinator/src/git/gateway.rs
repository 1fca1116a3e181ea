//! The HTTP side of git over smart HTTP, answered as GitLab answers it: which paths are git requests,
//! HTTP Basic authentication with `gitlab-ci-token` and a running job's token (401 with
//! `WWW-Authenticate: Basic realm="GitLab"` otherwise), 404 for a project the job may not see, 403 for
//! pushes, then `git http-backend` for the rest.

use crate::api::{ConnInfo, ReplyMeta, header_str, with_meta};
use crate::git::backend::{self, CgiRequest};
use crate::shared::Shared;
use crate::state::GitAuth;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// The user name GitLab expects with a job token.
pub(crate) const CI_USER: &str = "gitlab-ci-token";
pub(crate) const GIT_PROTOCOL: HeaderName = HeaderName::from_static("git-protocol");

const ACCESS_DENIED: &str = "HTTP Basic: Access denied. If a password was provided for Git \
authentication, the password was incorrect or you're required to use a token instead of a password. \
If a token was provided, it was either incorrect, expired, or improperly scoped. See ";
const ACCESS_DENIED_HELP: &str =
    "/help/topics/git/troubleshooting_git.md#error-on-git-fetch-http-basic-access-denied";
const NOT_FOUND: &str = "The project you were looking for could not be found or you don't have \
permission to view it.";
const NO_UPLOAD: &str = "You are not allowed to upload code.";
const NOT_ALLOWED: &str = "The command you're trying to execute is not allowed.";

/// What a git request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// `GET …/info/refs?service=…` (the service name, if any and known).
    InfoRefs(Option<Command>),
    /// `POST …/git-upload-pack` or `…/git-receive-pack`.
    Rpc(Command),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    UploadPack,
    ReceivePack,
}

impl Command {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "git-upload-pack" => Some(Self::UploadPack),
            "git-receive-pack" => Some(Self::ReceivePack),
            _ => None,
        }
    }
}

/// A request path `/<project path>.git/<tail>` split into the project and what is asked of it.
pub(crate) fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (project, tail) = rest.split_once(".git/")?;
    match tail {
        "info/refs" | "git-upload-pack" | "git-receive-pack" => Some((project, tail)),
        _ => None,
    }
}

/// `Authorization: Basic …` as (user, password).
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A text answer; axum labels it `text/plain; charset=utf-8`, as GitLab does.
fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// 401 with GitLab's challenge and message (its help link points at the instance, as GitLab's does).
fn access_denied(base_url: &str) -> Response {
    let text = format!("{ACCESS_DENIED}{base_url}{ACCESS_DENIED_HELP}");
    let mut resp = (StatusCode::UNAUTHORIZED, text).into_response();
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"GitLab\""),
    );
    resp
}

fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    header_str(headers, name).map(str::to_owned)
}

/// Serve a git request for `project` (`tail` from [`split_path`]).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    req: Request,
    project: &str,
    tail: &str,
) -> Response {
    let method = req.method().clone();
    let service = match tail {
        "info/refs" => {
            if method == Method::HEAD {
                // GitLab refuses HEAD on info/refs before anything else.
                return StatusCode::FORBIDDEN.into_response();
            }
            if method != Method::GET {
                return plain(StatusCode::NOT_FOUND, "Not Found");
            }
            let wanted = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "service")
                .and_then(|(_, v)| Command::parse(&v));
            Service::InfoRefs(wanted)
        }
        other => {
            if method != Method::POST {
                return plain(StatusCode::NOT_FOUND, "Not Found");
            }
            match Command::parse(other) {
                Some(c) => Service::Rpc(c),
                None => return plain(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
    };

    let creds = basic_credentials(req.headers());
    let (auth, base_url) = shared.read(|s| {
        let auth = s.git_auth(
            project,
            creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        );
        (auth, s.base_url().to_owned())
    });
    let job_id = match auth {
        GitAuth::Unauthenticated => return access_denied(&base_url),
        GitAuth::NotFound => return plain(StatusCode::NOT_FOUND, NOT_FOUND),
        GitAuth::Job(id) => id,
    };
    let meta = ReplyMeta {
        job_id: Some(job_id),
        ..ReplyMeta::default()
    };
    match service {
        Service::InfoRefs(None) => {
            return with_meta(plain(StatusCode::FORBIDDEN, NOT_ALLOWED), meta);
        }
        Service::InfoRefs(Some(Command::ReceivePack)) | Service::Rpc(Command::ReceivePack) => {
            return with_meta(plain(StatusCode::FORBIDDEN, NO_UPLOAD), meta);
        }
        Service::InfoRefs(Some(Command::UploadPack)) | Service::Rpc(Command::UploadPack) => {}
    }

    let (root, timeout) = (
        shared.git_root.clone(),
        shared.read(|s| s.options().git_timeout),
    );
    let deadline = Instant::now() + timeout;
    let remote_addr = req.extensions().get::<ConnInfo>().map(|c| c.peer.ip());
    let headers = req.headers();
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let content_length = if chunked {
        None
    } else {
        header_str(headers, CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok())
    };
    let git_protocol = header_string(headers, GIT_PROTOCOL).filter(|v| {
        // It becomes an environment variable of the child: printable ASCII only.
        v.bytes().all(|b| (0x20..0x7f).contains(&b))
    });
    let cgi = CgiRequest {
        root,
        path_info: format!("/{project}.git/{tail}"),
        method: method.to_string(),
        query: req.uri().query().unwrap_or("").to_owned(),
        content_type: header_string(headers, CONTENT_TYPE),
        content_length,
        content_encoding: header_string(headers, CONTENT_ENCODING),
        git_protocol,
        remote_user: CI_USER.to_owned(),
        remote_addr,
        body: req.into_body(),
    };
    let body_read = Arc::new(AtomicU64::new(0));
    let result = backend::serve(shared, cgi, deadline, body_read.clone()).await;
    let meta = ReplyMeta {
        body_size: Some(body_read.load(Ordering::Relaxed)),
        ..meta
    };
    match result {
        Ok(resp) => with_meta(resp, meta),
        Err(e) => {
            tracing::warn!(error = %e, project, "git request failed");
            with_meta((e.status(), e.to_string()).into_response(), meta)
        }
    }
}

/// The fallback of the whole router: git requests, or GitLab's JSON 404.
pub(crate) async fn fallback(shared: Arc<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    match split_path(&path) {
        Some((project, tail)) => serve(shared, req, project, tail).await,
        None => crate::api::message(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_paths_split_into_project_and_service() {
        assert_eq!(
            split_path("/acme/demo.git/info/refs"),
            Some(("acme/demo", "info/refs"))
        );
        assert_eq!(
            split_path("/a/b/c.git/git-upload-pack"),
            Some(("a/b/c", "git-upload-pack"))
        );
        assert_eq!(split_path("/acme/demo.git/HEAD"), None);
        assert_eq!(split_path("/api/v4/jobs/request"), None);
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic Z2l0bGFiLWNpLXRva2VuOmdsY2J0LXg6eQ=="),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("gitlab-ci-token".to_owned(), "glcbt-x:y".to_owned()))
        );
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(basic_credentials(&h), None);
    }
}
