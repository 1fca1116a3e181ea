//! One `pods/exec` or `pods/attach` WebSocket (`v5.channel.k8s.io`, or `v4`): a task owns the
//! socket; the executor sends stdin as whole frames (so a command line reaches the container entirely
//! or not at all) and receives output, the exit status and, always, an end event — a connection that
//! breaks says so instead of going quiet.

use super::upgrade::Upgraded;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
/// `v5.channel.k8s.io`: "this channel reached EOF".
const CLOSE: u8 = 255;
/// Keeps idle connections (an attach between stages) open through proxies.
const PING_EVERY: Duration = Duration::from_secs(30);

/// What arrives on a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The process ended: `Ok(())` for success, else the API server's status (exit code in it).
    Exit(Result<(), Box<Status>>),
    /// The connection is gone (after `Exit`, or because it broke); nothing follows.
    Closed(String),
}

impl Event {
    /// The exit code a failed `Exit` carries (`NonZeroExitCode`), if any.
    pub fn exit_code(status: &Status) -> Option<i32> {
        status
            .details
            .as_ref()?
            .causes
            .as_ref()?
            .iter()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))?
            .message
            .as_deref()?
            .parse()
            .ok()
    }
}

enum Input {
    Data(Vec<u8>),
    CloseStdin,
}

/// A running connection; dropping it closes the socket.
pub struct Conn {
    input: mpsc::Sender<Input>,
    events: mpsc::Receiver<Event>,
    task: JoinHandle<()>,
    ended: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("ended", &self.ended).finish()
    }
}

impl Conn {
    /// Take over an upgraded connection.
    pub fn start(connection: Upgraded) -> Self {
        let Upgraded { stream: ws, v5 } = connection;
        let (input_tx, input_rx) = mpsc::channel(16);
        let (events_tx, events_rx) = mpsc::channel(64);
        let task = tokio::spawn(run(ws, v5, input_rx, events_tx));
        Self {
            input: input_tx,
            events: events_rx,
            task,
            ended: false,
        }
    }

    /// Send `data` to the process's stdin as one frame; false when the connection is gone.
    pub async fn send(&self, data: &[u8]) -> bool {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(STDIN);
        frame.extend_from_slice(data);
        self.input.send(Input::Data(frame)).await.is_ok()
    }

    /// Tell the process its stdin ended (v5), or close the connection (v4).
    pub async fn close_stdin(&self) {
        let _ = self.input.send(Input::CloseStdin).await;
    }

    /// The next event; `Closed` once the connection is gone, and again after that.
    pub async fn next(&mut self) -> Event {
        if self.ended {
            return Event::Closed("the connection was already closed".to_owned());
        }
        match self.events.recv().await {
            Some(e) => {
                if matches!(e, Event::Closed(_)) {
                    self.ended = true;
                }
                e
            }
            None => {
                self.ended = true;
                Event::Closed("the connection task ended".to_owned())
            }
        }
    }

    /// Its `Closed` event was taken.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// It cannot carry anything any more (ended, or its task finished).
    pub fn is_closed(&self) -> bool {
        self.ended || self.task.is_finished()
    }
}

async fn run<S>(ws: S, v5: bool, mut input: mpsc::Receiver<Input>, events: mpsc::Sender<Event>)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
        + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let why = loop {
        tokio::select! {
            _ = ping.tick() => {
                if let Err(e) = sink.send(Message::Ping(Bytes::new())).await {
                    break format!("sending a ping failed: {e}");
                }
            }
            msg = input.recv() => match msg {
                Some(Input::Data(frame)) => {
                    if let Err(e) = sink.send(Message::binary(frame)).await {
                        break format!("sending to stdin failed: {e}");
                    }
                }
                Some(Input::CloseStdin) => {
                    let sent = if v5 {
                        sink.send(Message::binary(vec![CLOSE, STDIN])).await
                    } else {
                        sink.close().await
                    };
                    if let Err(e) = sent {
                        break format!("closing stdin failed: {e}");
                    }
                }
                None => {
                    // The executor let go of the connection.
                    let _ = sink.close().await;
                    break "closed by glrunner".to_owned();
                }
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(bin))) if bin.len() > 1 => {
                    let data = bin.slice(1..);
                    let event = match bin[0] {
                        STDOUT => Event::Stdout(data),
                        STDERR => Event::Stderr(data),
                        STATUS => {
                            let status: Status = match serde_json::from_slice(&data) {
                                Ok(s) => s,
                                Err(e) => break format!("the exit status could not be read: {e}"),
                            };
                            if status.status.as_deref() == Some("Success") {
                                Event::Exit(Ok(()))
                            } else {
                                Event::Exit(Err(Box::new(status)))
                            }
                        }
                        _ => continue,
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break match frame {
                        Some(f) if !f.reason.is_empty() => format!("closed by the server: {}", f.reason),
                        _ => "closed by the server".to_owned(),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("the connection broke: {e}"),
                None => break "the connection ended".to_owned(),
            },
        }
    };
    let _ = events.send(Event::Closed(why)).await;
}
