//! `git http-backend` as a CGI program: the request's facts go into its environment, the request body
//! is streamed to its stdin, its CGI headers (`Status:`, `Content-Type:` …) become the response head
//! and the rest of its stdout is streamed back. Every wait is bounded by one deadline; the child is
//! killed when the client goes away (the response body is dropped) or the deadline passes.

use crate::git::command::isolate;
use crate::shared::Shared;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, StatusCode};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most bytes of CGI headers accepted before the body.
const MAX_HEAD: usize = 64 * 1024;
/// Most bytes of the child's stderr kept for the log.
const MAX_STDERR: usize = 16 * 1024;
const CHUNK: usize = 64 * 1024;

/// What the backend needs to know about one request.
pub(crate) struct CgiRequest {
    /// Where the served repositories live (`GIT_PROJECT_ROOT`).
    pub root: PathBuf,
    /// `/<group>/<project>.git/<info/refs | git-upload-pack>`.
    pub path_info: String,
    pub method: String,
    pub query: String,
    pub content_type: Option<String>,
    /// `None` for a chunked body: the backend then reads to end of input.
    pub content_length: Option<u64>,
    pub content_encoding: Option<String>,
    /// The `Git-Protocol` header (`version=2`).
    pub git_protocol: Option<String>,
    pub remote_user: String,
    pub remote_addr: Option<IpAddr>,
    pub body: Body,
}

/// The backend could not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error(
        "cannot start `git http-backend`: {0}; likely cause: git is not installed or lacks its \
         http-backend program; fix: install git 2.x (apt-get install git)"
    )]
    Spawn(#[source] std::io::Error),
    #[error(
        "`git http-backend` ended without a response ({status}): {stderr}; likely cause: a \
         malformed or truncated request; fix: retry the git command, with GIT_TRACE_CURL=1 to see it"
    )]
    NoResponse { status: String, stderr: String },
    #[error(
        "`git http-backend` sent malformed CGI headers; likely cause: a git bug or a broken install; \
         fix: check `git http-backend` by hand"
    )]
    BadHead,
    #[error(
        "`git http-backend` did not answer before the deadline and was killed; likely cause: a \
         client that stopped sending its request, or a huge repository; fix: raise \
         Options::git_timeout"
    )]
    Timeout,
}

impl BackendError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::NoResponse { .. } | Self::BadHead => StatusCode::BAD_GATEWAY,
            Self::Spawn(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Counts a live backend process in the shared state for as long as it exists.
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: Arc<Shared>) -> Self {
        shared.update(|s| s.git_backends += 1);
        Self(shared)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0
            .update(|s| s.git_backends = s.git_backends.saturating_sub(1));
    }
}

/// Aborts a helper task when the request it serves is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running backend: dropping it kills its process group (the backend and the upload-pack and
/// pack-objects it started) unless it already exited cleanly, and stops its helpers.
struct Running {
    child: Child,
    /// The backend's pid, which is also its process group id.
    group: Option<i32>,
    exited_cleanly: bool,
    feeder: AbortOnDrop<Fed>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    _live: Live,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.exited_cleanly {
            self.kill();
        }
    }
}

impl Running {
    fn kill(&mut self) {
        if let Some(group) = self.group {
            // ESRCH (the group is gone already) is fine.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
    }

    async fn stderr_text(&mut self, deadline: Instant) -> String {
        let Some(task) = self.stderr.take() else {
            return String::new();
        };
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            _ => String::new(),
        }
    }

    /// Wait (until the deadline) for the process to exit; kill it past the deadline.
    async fn finish(&mut self, deadline: Instant) -> String {
        match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.exited_cleanly = status.success();
                status.to_string()
            }
            Ok(Err(e)) => format!("wait failed: {e}"),
            Err(_) => {
                self.kill();
                "killed at the deadline".to_owned()
            }
        }
    }
}

/// Run the backend for one request. The answer's body streams from the running process; the number
/// of request body bytes read so far is in `body_read`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    req: CgiRequest,
    deadline: Instant,
    body_read: Arc<AtomicU64>,
) -> Result<Response, BackendError> {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend").env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    isolate(cmd.as_std_mut());
    cmd.env("HOME", &req.root)
        .env("GIT_PROJECT_ROOT", &req.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path_info)
        .env("QUERY_STRING", &req.query)
        .env("REMOTE_USER", &req.remote_user);
    if let Some(addr) = req.remote_addr {
        cmd.env("REMOTE_ADDR", addr.to_string());
    }
    if let Some(ct) = &req.content_type {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(len) = req.content_length {
        cmd.env("CONTENT_LENGTH", len.to_string());
    }
    if let Some(enc) = &req.content_encoding {
        // http-backend inflates gzip bodies itself when told the encoding.
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(proto) = &req.git_protocol {
        cmd.env("HTTP_GIT_PROTOCOL", proto)
            .env("GIT_PROTOCOL", proto);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a kill reaches the git processes it starts.
        .process_group(0);
    let mut child = cmd.spawn().map_err(BackendError::Spawn)?;
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    let live = Live::new(shared);
    let (Some(stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(BackendError::Spawn(std::io::Error::other(
            "the child's pipes were not created",
        )));
    };
    let feeder = AbortOnDrop(tokio::spawn(feed(req.body, stdin, deadline, body_read)));
    let stderr = tokio::spawn(read_bounded(stderr, MAX_STDERR));
    let mut running = Running {
        child,
        group,
        exited_cleanly: false,
        feeder,
        stderr: Some(stderr),
        _live: live,
    };

    let mut head = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 8 * 1024];
    let (head_len, body_start) = loop {
        if let Some(found) = find_head_end(&head) {
            break found;
        }
        if head.len() > MAX_HEAD {
            return Err(BackendError::BadHead);
        }
        let n = match tokio::time::timeout_at(deadline, stdout.read(&mut chunk)).await {
            Err(_) => return Err(BackendError::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) => {
                let status = running.finish(deadline).await;
                let stderr = running.stderr_text(deadline).await;
                return Err(BackendError::NoResponse { status, stderr });
            }
            Ok(Ok(n)) => n,
        };
        head.extend_from_slice(&chunk[..n]);
    };
    // http-backend writes its headers before it reads the request, and upload-pack reads all of it
    // before answering: wait for the whole body, so a stalled client ends here and the log can
    // show the request's full size.
    match tokio::time::timeout_at(deadline, &mut running.feeder.0).await {
        Ok(Ok(Fed::Deadline)) | Err(_) => return Err(BackendError::Timeout),
        Ok(_) => {}
    }
    let rest = Bytes::copy_from_slice(&head[body_start..]);
    let mut builder = Response::builder();
    let mut status = StatusCode::OK;
    let text = std::str::from_utf8(&head[..head_len]).map_err(|_| BackendError::BadHead)?;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(BackendError::BadHead)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or(BackendError::BadHead)?;
        } else if name.eq_ignore_ascii_case("content-length") {
            // The body is streamed (chunked); a stated length could disagree if the child dies.
        } else if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value),
        ) {
            builder = builder.header(n, v);
        }
    }
    let body = Body::from_stream(body_stream(running, stdout, rest, deadline));
    builder
        .status(status)
        .body(body)
        .map_err(|_| BackendError::BadHead)
}

/// The end of the CGI header block: (length of the headers, start of the body).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

struct Streaming {
    running: Running,
    stdout: ChildStdout,
    pending: Option<Bytes>,
    deadline: Instant,
    done: bool,
}

/// The rest of the backend's stdout as a response body. Dropping it (client gone) kills the child.
fn body_stream(
    running: Running,
    stdout: ChildStdout,
    rest: Bytes,
    deadline: Instant,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let state = Streaming {
        running,
        stdout,
        pending: (!rest.is_empty()).then_some(rest),
        deadline,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(first) = st.pending.take() {
            return Some((Ok(first), st));
        }
        let mut buf = vec![0u8; CHUNK];
        match tokio::time::timeout_at(st.deadline, st.stdout.read(&mut buf)).await {
            Ok(Ok(0)) => {
                let status = st.running.finish(st.deadline).await;
                let stderr = st.running.stderr_text(st.deadline).await;
                if !status.contains("exit status: 0") || !stderr.is_empty() {
                    tracing::debug!(%status, %stderr, "git http-backend finished");
                }
                None
            }
            Ok(Ok(n)) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), st))
            }
            Ok(Err(e)) => {
                st.done = true;
                Some((Err(e), st))
            }
            Err(_) => {
                st.done = true;
                st.running.kill();
                tracing::warn!("git http-backend response passed its deadline; killed");
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "git http-backend passed its deadline",
                    )),
                    st,
                ))
            }
        }
    })
}

/// How feeding the request body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fed {
    /// The whole body was written and stdin closed.
    All,
    /// The client's body failed (it went away) or the child closed its stdin.
    Cut,
    Deadline,
}

/// Copy the request body to the child's stdin, then close it (end of input).
async fn feed(body: Body, mut stdin: ChildStdin, deadline: Instant, read: Arc<AtomicU64>) -> Fed {
    let mut stream = body.into_data_stream();
    // Ends at end of body, a client error, a closed stdin, or the deadline.
    let end = loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                match tokio::time::timeout_at(deadline, stdin.write_all(&chunk)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break Fed::Cut,
                    Err(_) => break Fed::Deadline,
                }
            }
            Ok(None) => break Fed::All,
            Ok(Some(Err(_))) => break Fed::Cut,
            Err(_) => break Fed::Deadline,
        }
    };
    let _ = tokio::time::timeout_at(deadline, stdin.shutdown()).await;
    end
}

/// Read at most `limit` bytes of a pipe, then drain the rest so the child never blocks on it.
async fn read_bounded(mut pipe: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 4096];
    // Ends at end of file: the child's exit (or kill) closes the pipe.
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_head_end;

    #[test]
    fn header_block_ends_at_the_first_blank_line() {
        assert_eq!(find_head_end(b"Status: 200\r\n\r\nbody"), Some((11, 15)));
        assert_eq!(find_head_end(b"A: b\n\nx\r\n\r\n"), Some((4, 6)));
        assert_eq!(find_head_end(b"A: b\r\n"), None);
    }
}
