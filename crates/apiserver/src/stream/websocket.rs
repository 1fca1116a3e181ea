//! The websocket side of exec and attach: the upgrade handshake with subprotocol negotiation,
//! and one session's framing — every binary message starts with its channel byte (0 stdin,
//! 1 stdout, 2 stderr, 3 status, 4 resize); `v5.channel.k8s.io` adds the CLOSE signal
//! (`[255, channel]`) that half-closes a stream.

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};

pub const V5_PROTOCOL: &str = "v5.channel.k8s.io";
pub const V4_PROTOCOL: &str = "v4.channel.k8s.io";

pub(crate) const STDIN: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const STATUS: u8 = 3;
pub(crate) const RESIZE: u8 = 4;
pub(crate) const CLOSE: u8 = 255;

/// How long a closing session waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The negotiated subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    V4,
    V5,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => V4_PROTOCOL,
            Self::V5 => V5_PROTOCOL,
        }
    }
}

/// Why a request cannot be upgraded.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not a websocket request (plain POST or SPDY).
    NotWebsocket {
        spdy: bool,
    },
    /// None of the client's subprotocols is served.
    Protocols {
        requested: Vec<String>,
        supported: Vec<String>,
    },
    BadHandshake(&'static str),
}

/// Whether the request asks for a websocket, and with which subprotocol.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    allowed: &[String],
) -> Result<(Protocol, String), Refusal> {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(Refusal::NotWebsocket {
            spdy: upgrade.to_ascii_uppercase().starts_with("SPDY"),
        });
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Refusal::BadHandshake("Sec-WebSocket-Key is missing"));
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() != b"13")
    {
        return Err(Refusal::BadHandshake("Sec-WebSocket-Version must be 13"));
    }
    let requested: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    // The client's order wins, as in kube-apiserver's wsstream handshake.
    for p in &requested {
        if allowed.iter().any(|a| a == p) {
            let proto = if p == V5_PROTOCOL {
                Protocol::V5
            } else if p == V4_PROTOCOL {
                Protocol::V4
            } else {
                continue;
            };
            return Ok((proto, key.to_owned()));
        }
    }
    Err(Refusal::Protocols {
        requested,
        supported: allowed.to_vec(),
    })
}

/// The 101 answer.
pub(crate) fn switching_protocols(protocol: Protocol, key: &str) -> crate::server::Response {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = http::Response::new(crate::server::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.name()),
    );
    resp
}

/// What the server sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Data(u8, Bytes),
    /// A normal close: the session is over.
    Close,
}

/// What the client sent.
#[derive(Debug)]
pub(crate) enum Incoming {
    Stdin(Bytes),
    /// v5 CLOSE of the stdin channel.
    StdinClosed,
    /// A terminal resize (no TTYs here: ignored).
    Resize,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The server finished (status sent, close frame sent).
    Closed,
    /// The client went away or closed the websocket.
    ClientGone,
    /// A fault dropped the connection.
    Dropped,
}

/// Run one websocket session: frames from `out` go to the client, the client's frames to
/// `incoming`, until the server closes, the client goes, or `drop` fires.
pub(crate) async fn run(
    upgraded: hyper::upgrade::Upgraded,
    protocol: Protocol,
    mut out: mpsc::Receiver<Outgoing>,
    incoming: mpsc::Sender<Incoming>,
    mut drop: watch::Receiver<u64>,
) -> End {
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let (mut tx, mut rx) = ws.split();
    let mut stdin_open = true;
    // Bounded by the session: every branch either makes progress on a finite stream or ends it.
    loop {
        tokio::select! {
            _ = drop.changed() => return End::Dropped,
            msg = out.recv() => match msg {
                Some(Outgoing::Data(channel, data)) => {
                    let mut frame = Vec::with_capacity(data.len() + 1);
                    frame.push(channel);
                    frame.extend_from_slice(&data);
                    if tx.send(Message::binary(frame)).await.is_err() {
                        return End::ClientGone;
                    }
                }
                Some(Outgoing::Close) | None => {
                    let _ = tx
                        .send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "".into(),
                        })))
                        .await;
                    // Give the client a moment to answer the close; then go.
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        while let Some(Ok(m)) = rx.next().await {
                            if m.is_close() {
                                break;
                            }
                        }
                    })
                    .await;
                    return End::Closed;
                }
            },
            msg = rx.next() => match msg {
                None | Some(Err(_)) => return End::ClientGone,
                Some(Ok(Message::Close(_))) => return End::ClientGone,
                Some(Ok(Message::Binary(data))) => {
                    let Some((&channel, payload)) = data.split_first() else { continue };
                    let event = match channel {
                        STDIN if stdin_open => Some(Incoming::Stdin(Bytes::copy_from_slice(payload))),
                        RESIZE => Some(Incoming::Resize),
                        CLOSE if protocol == Protocol::V5 && payload == [STDIN] && stdin_open => {
                            stdin_open = false;
                            Some(Incoming::StdinClosed)
                        }
                        _ => None,
                    };
                    if let Some(e) = event {
                        // The reader may be gone (nothing wants stdin); that is fine.
                        let _ = incoming.send(e).await;
                    }
                }
                // Pings are answered by the library; text frames are not part of the protocol.
                Some(Ok(_)) => {}
            },
        }
    }
}
