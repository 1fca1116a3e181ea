//! Opening a `pods/exec` or `pods/attach` WebSocket: the upgrade request with the channel
//! subprotocols (v5 first, then v4), the checks of the server's answer, and the WebSocket over the
//! upgraded connection. The client library's own upgrade gives every WebSocket a 128 KiB read buffer
//! that is filled on the first frame; a job holds three of them open for its whole life, so with
//! 100 jobs that alone was ~40 MB of the manager's memory. Ours starts small and grows only for
//! large frames.

use bytes::Bytes;
use http::header::{
    CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use kube::client::{Body, UpgradeConnectionError};
use kube::core::Status;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// The channel subprotocols, preferred first: v5 can close stdin on its own.
const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// What a WebSocket reads into before a frame needs more (frames from the kubelet are output
/// chunks, mostly a few KiB).
const READ_BUFFER: usize = 8 * 1024;
/// Written frames are sent once this much is queued (each stdin frame is flushed at once anyway).
const WRITE_BUFFER: usize = 8 * 1024;

/// An open exec or attach WebSocket.
pub struct Upgraded {
    pub stream: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    /// The server speaks v5 (a stdin close signal) rather than v4.
    pub v5: bool,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded").field("v5", &self.v5).finish()
    }
}

/// Send `request` (a GET built for `pods/exec` or `pods/attach`) as a WebSocket upgrade and take the
/// connection over. A refusal is the API's `Status` (`kube::Error::Api`), as for any other call.
pub async fn open(
    client: &kube::Client,
    request: Request<Vec<u8>>,
) -> Result<Upgraded, kube::Error> {
    let (mut parts, body) = request.into_parts();
    let key = generate_key();
    let headers = &mut parts.headers;
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    headers.insert(
        SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key).map_err(|e| {
            kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e.into()))
        })?,
    );
    headers.insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
    );
    let response = client
        .send(Request::from_parts(parts, Body::from(body)))
        .await?;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_else(|_| Bytes::new());
        return Err(kube::Error::Api(refusal(status, &bytes).boxed()));
    }
    let v5 = accepted(&response, &key).map_err(kube::Error::UpgradeConnection)?;
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| {
        kube::Error::UpgradeConnection(UpgradeConnectionError::GetPendingUpgrade(e))
    })?;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    let stream =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, Some(config)).await;
    Ok(Upgraded { stream, v5 })
}

/// The API's `Status` from a refused upgrade, or one made from the status line and body.
fn refusal(status: StatusCode, body: &[u8]) -> Status {
    serde_json::from_slice::<Status>(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        Status::failure(text.trim(), "Failed to parse error data").with_code(status.as_u16())
    })
}

/// Whether the answer completes the upgrade, and with which subprotocol (true for v5).
fn accepted<B>(response: &http::Response<B>, key: &str) -> Result<bool, UpgradeConnectionError> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpgradeConnectionError::ProtocolSwitch(response.status()));
    }
    let headers = response.headers();
    let is = |name, value: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.eq_ignore_ascii_case(value))
    };
    if !is(UPGRADE, "websocket") {
        return Err(UpgradeConnectionError::MissingUpgradeWebSocketHeader);
    }
    if !is(CONNECTION, "upgrade") {
        return Err(UpgradeConnectionError::MissingConnectionUpgradeHeader);
    }
    if !is(SEC_WEBSOCKET_ACCEPT, &derive_accept_key(key.as_bytes())) {
        return Err(UpgradeConnectionError::SecWebSocketAcceptKeyMismatch);
    }
    match headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|h| h.to_str().ok())
    {
        Some(V5) => Ok(true),
        Some(V4) => Ok(false),
        _ => Err(UpgradeConnectionError::SecWebSocketProtocolMismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(protocol: &str, accept: &str) -> http::Response<()> {
        http::Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .header(SEC_WEBSOCKET_ACCEPT, accept)
            .header(SEC_WEBSOCKET_PROTOCOL, protocol)
            .body(())
            .expect("a response")
    }

    #[test]
    fn the_answer_names_the_subprotocol_and_proves_the_key() {
        let key = generate_key();
        let accept = derive_accept_key(key.as_bytes());
        assert_eq!(accepted(&answer(V5, &accept), &key).ok(), Some(true));
        assert_eq!(accepted(&answer(V4, &accept), &key).ok(), Some(false));
        assert!(matches!(
            accepted(&answer("v3.channel.k8s.io", &accept), &key),
            Err(UpgradeConnectionError::SecWebSocketProtocolMismatch)
        ));
        assert!(matches!(
            accepted(&answer(V5, "bm90IHRoZSBrZXk="), &key),
            Err(UpgradeConnectionError::SecWebSocketAcceptKeyMismatch)
        ));
        let ok = http::Response::builder()
            .status(StatusCode::OK)
            .body(())
            .expect("a response");
        assert!(matches!(
            accepted(&ok, &key),
            Err(UpgradeConnectionError::ProtocolSwitch(StatusCode::OK))
        ));
    }

    #[test]
    fn a_refusal_is_the_api_status_or_made_from_the_body() {
        let json = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"p\" is forbidden","reason":"Forbidden","code":403}"#;
        let s = refusal(StatusCode::FORBIDDEN, json);
        assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
        let s = refusal(StatusCode::BAD_GATEWAY, b"  upstream gone \n");
        assert_eq!((s.code, s.message.as_str()), (502, "upstream gone"));
    }
}
