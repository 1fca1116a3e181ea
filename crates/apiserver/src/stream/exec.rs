//! `pods/exec` (a new process inside the container's mount namespace) and `pods/attach` (the
//! container's main process: its stdin pipe and its live output). The exit status goes to the
//! status channel as the API server's stream translator writes it for v5 clients and as the
//! kubelet writes it for v4 clients. A connection that drops mid-stream leaves the process
//! running, its output drained, as a real kubelet does.

use super::websocket::{self, Incoming, Outgoing, Protocol, Refusal};
use super::{OpenStream, channel_status, dial_error, pod_and_container};
use crate::api::error_response;
use crate::kubelet::Shared;
use crate::kubelet::logfile::Stream;
use crate::server::{Response, SubresourceRequest};
use crate::status::ApiError;
use crate::store::str_at;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// Go's `strconv.ParseBool` truths.
fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

struct Params {
    container: Option<String>,
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

fn params(query: Option<&str>) -> Params {
    let mut p = Params {
        container: None,
        command: Vec::new(),
        stdin: false,
        stdout: false,
        stderr: false,
    };
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "container" => p.container = Some(v.into_owned()),
            "command" => p.command.push(v.into_owned()),
            "stdin" => p.stdin = truthy(&v),
            "stdout" => p.stdout = truthy(&v),
            "stderr" => p.stderr = truthy(&v),
            _ => {}
        }
    }
    p
}

pub(crate) async fn serve(s: Arc<Shared>, req: SubresourceRequest) -> Response {
    match prepare(s, req) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn prepare(s: Arc<Shared>, req: SubresourceRequest) -> Result<Response, ApiError> {
    let attach = req.subresource == "attach";
    let p = params(req.request.uri().query());
    let (pod, container) = pod_and_container(&req, p.container.as_deref())?;
    if !attach && p.command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    if !(p.stdin || p.stdout || p.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if str_at(&pod, "/spec/nodeName").is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            req.name
        )));
    }
    let (protocol, key) =
        websocket::negotiate(req.request.headers(), &s.options.stream_protocols).map_err(|r| {
            let message = match r {
                Refusal::NotWebsocket { spdy: true } => format!(
                    "this test API server serves pods/{} over websockets only ({}); SPDY is not served: use kubectl 1.30 or newer (websockets are its default) or a websocket client",
                    req.subresource,
                    s.options.stream_protocols.join(", ")
                ),
                Refusal::NotWebsocket { spdy: false } => "Upgrade request required".to_owned(),
                Refusal::Protocols {
                    requested,
                    supported,
                } => format!(
                    "requested protocol(s) are not supported: [{}]; supports [{}]",
                    requested.join(" "),
                    supported.join(" ")
                ),
                Refusal::BadHandshake(why) => format!("bad websocket handshake: {why}"),
            };
            ApiError::bad_request(message)
        })?;
    let open = OpenStream::new(&s)?;
    let upgrade = hyper::upgrade::on(req.request);
    let ns = req.namespace;
    let name = req.name;
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let (out_tx, out_rx) = mpsc::channel(256);
        let (in_tx, in_rx) = mpsc::channel(64);
        let drop_rx = s.drop_streams.subscribe();
        let session = tokio::spawn(async move {
            let end = websocket::run(upgraded, protocol, out_rx, in_tx, drop_rx).await;
            drop(open);
            end
        });
        // An empty message on the lowest writable channel says the connection is established.
        let first = if p.stdout {
            websocket::STDOUT
        } else if p.stderr {
            websocket::STDERR
        } else {
            websocket::STATUS
        };
        let _ = out_tx.send(Outgoing::Data(first, Bytes::new())).await;
        let result = match dial_error(&s) {
            Some(e) => Err(e),
            None if attach => run_attach(&s, &ns, &name, &container, &p, &out_tx, in_rx).await,
            None => run_exec(&s, &ns, &name, &container, &p, protocol, &out_tx, in_rx).await,
        };
        let status = match result {
            Ok(None) => json!({"metadata": {}, "status": "Success"}),
            Ok(Some(v)) => v,
            Err(e) => channel_status(&e),
        };
        let _ = out_tx
            .send(Outgoing::Data(
                websocket::STATUS,
                Bytes::from(serde_json::to_vec(&status).unwrap_or_default()),
            ))
            .await;
        let _ = out_tx.send(Outgoing::Close).await;
        drop(out_tx);
        let _ = session.await;
    });
    Ok(websocket::switching_protocols(protocol, &key))
}

fn not_found(container: &str) -> ApiError {
    ApiError::internal(format!(
        "unable to upgrade connection: container not found (\"{container}\")"
    ))
}

/// Copy `r` to the client on `channel`; once the client is gone, keep reading so the process
/// never blocks on a full pipe.
async fn pump<R: AsyncRead + Unpin>(mut r: R, channel: u8, out: mpsc::Sender<Outgoing>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut client = true;
    // Bounded by the pipe: it ends when the process (and whatever inherited it) is gone.
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if client
            && out
                .send(Outgoing::Data(channel, Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
        {
            client = false;
        }
    }
}

/// A Go `%v` of a string slice (`[sh -c exit 3]`).
fn go_slice(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

#[allow(clippy::too_many_arguments)]
async fn run_exec(
    s: &Shared,
    ns: &str,
    name: &str,
    container: &str,
    p: &Params,
    protocol: Protocol,
    out: &mpsc::Sender<Outgoing>,
    mut incoming: mpsc::Receiver<Incoming>,
) -> Result<Option<Value>, ApiError> {
    let (lc, process) = s
        .live(ns, name)
        .and_then(|live| live.running_container(container))
        .ok_or_else(|| not_found(container))?;
    let tools = s
        .tools()
        .map_err(|e| ApiError::internal(format!("error executing command in container: {e}")))?;
    let request = crate::kubelet::ExecRequest {
        argv: &p.command,
        env: &lc.env,
        working_dir: &lc.working_dir,
        user: lc.user,
        stdin: p.stdin,
        stdout: p.stdout,
        stderr: p.stderr,
    };
    let mut child = crate::kubelet::exec_in(tools, &process, &request).map_err(|e| {
        ApiError::internal(format!(
            "error executing command in container: failed to exec in container: {e}"
        ))
    })?;
    let mut pumps = Vec::new();
    if let Some(o) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(o, websocket::STDOUT, out.clone())));
    }
    if let Some(e) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(e, websocket::STDERR, out.clone())));
    }
    let stdin = child.stdin.take();
    let feeder = tokio::spawn(async move {
        let Some(mut w) = stdin else { return };
        // Bounded by the session: it ends on the client's CLOSE, or when the session ends.
        while let Some(msg) = incoming.recv().await {
            match msg {
                Incoming::Stdin(data) => {
                    if w.write_all(&data).await.is_err() {
                        return;
                    }
                }
                Incoming::StdinClosed => return,
                Incoming::Resize => {}
            }
        }
    });
    let status = child.wait().await;
    // Like containerd, the exec ends when its output pipes close too.
    for t in pumps {
        let _ = t.await;
    }
    feeder.abort();
    let code = match status {
        Ok(st) => {
            use std::os::unix::process::ExitStatusExt as _;
            st.code()
                .or_else(|| st.signal().map(|sig| 128 + sig))
                .unwrap_or(255)
        }
        Err(e) => {
            return Err(ApiError::internal(format!(
                "error executing command in container: {e}"
            )));
        }
    };
    if code == 0 {
        return Ok(None);
    }
    let detail = match protocol {
        // What the API server's websocket-to-SPDY translator reports.
        Protocol::V5 => format!("command terminated with exit code {code}"),
        // What the kubelet's own websocket server reports.
        Protocol::V4 => format!(
            "error executing command {}, exit code {code}",
            go_slice(&p.command)
        ),
    };
    Ok(Some(json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: {detail}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })))
}

async fn run_attach(
    s: &Shared,
    ns: &str,
    name: &str,
    container: &str,
    p: &Params,
    out: &mpsc::Sender<Outgoing>,
    mut incoming: mpsc::Receiver<Incoming>,
) -> Result<Option<Value>, ApiError> {
    let (lc, process) = s
        .live(ns, name)
        .and_then(|live| live.running_container(container))
        .ok_or_else(|| not_found(container))?;
    let mut output = (p.stdout || p.stderr).then(|| process.subscribe());
    // Bounded by the container and the session: each branch ends on exit, close or EOF.
    loop {
        tokio::select! {
            _ = process.wait() => break,
            chunk = async { output.as_mut()?.recv().await }, if output.is_some() => {
                let Some((stream, data)) = chunk else { break };
                let channel = match stream {
                    Stream::Stdout if p.stdout => websocket::STDOUT,
                    Stream::Stderr if p.stderr => websocket::STDERR,
                    _ => continue,
                };
                if out.send(Outgoing::Data(channel, data)).await.is_err() {
                    break;
                }
            }
            msg = incoming.recv(), if p.stdin => match msg {
                Some(Incoming::Stdin(data)) => {
                    process.write_stdin(&data).await;
                }
                Some(Incoming::Resize) => {}
                Some(Incoming::StdinClosed) | None => {
                    if lc.stdin_once {
                        process.close_stdin().await;
                    }
                    // The client is done with stdin: the attach ends.
                    break;
                }
            },
            _ = out.closed() => break,
        }
    }
    Ok(None)
}
