//! exec and attach over WebSocket `v5.channel.k8s.io`, translated to SPDY `v4.channel.k8s.io`
//! towards the kubelet, as upstream's `StreamTranslatorHandler` does (container runtimes speak
//! SPDY and older WebSocket protocols, not v5).
//!
//! The client's handshake is accepted first; then the backend is dialled and upgraded to SPDY,
//! and one SPDY stream opened per requested channel, each named by its `streamtype` header.
//! Each WebSocket message is one byte of channel (0 stdin, 1 stdout, 2 stderr, 3 error,
//! 4 resize) and the data; `[255, channel]` half-closes a channel (v5's addition). When the
//! backend is done, the status it wrote on its error stream (or `Success`) goes out on channel 3,
//! then a close frame, and the client closes the connection once it has read everything.

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::spdy::{self, Frame};
use crate::upgrade::{
    self, Answer, Body, Connect, ProxyError, SPDY_3_1, STREAM_PROTOCOL_VERSION, Target,
};
use crate::websocket;

pub const V4: &str = "v4.channel.k8s.io";
pub const V5: &str = "v5.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How much of a backend's refusal becomes the message, as upstream reads it.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// How long the client has to close the connection once the session is over, as upstream's
/// `finishTimeout`.
const FINISH_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The streams asked for (upstream's `remotecommand` options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Whether a request is the WebSocket v5 one this module translates, as upstream's
/// `IsWebSocketRequestWithStreamCloseProtocol`.
pub fn wants_translation(headers: &http::HeaderMap) -> bool {
    upgrade::is_websocket(headers) && websocket::protocols(headers).iter().any(|p| p == V5)
}

/// Accepts the client's v5 WebSocket and serves the session against the backend at `target`,
/// reached through `connect`.
pub fn translate<B>(
    mut request: Request<B>,
    connect: Connect,
    target: Target,
    options: Options,
) -> Result<Response<Body>, ProxyError> {
    let (response, client) = websocket::accept(&mut request, Some(V5))?;
    tokio::spawn(session(client, connect, target, options));
    Ok(response)
}

/// The SPDY stream ids of each channel the session opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Streams {
    error: u32,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Streams {
    /// The streams upstream's SPDY client opens for `options`, in its order, with the client's
    /// odd ids: error first, then stdin, stdout, stderr (not with a TTY), resize (only with one).
    fn plan(options: Options) -> (Self, Vec<(u32, &'static str)>) {
        let mut next = 1;
        let mut planned = Vec::new();
        let mut open = |wanted: bool, kind: &'static str| {
            wanted.then(|| {
                let id = next;
                next += 2;
                planned.push((id, kind));
                id
            })
        };
        let error = open(true, "error").expect("the error stream is always opened");
        let stdin = open(options.stdin, "stdin");
        let stdout = open(options.stdout, "stdout");
        let stderr = open(options.stderr && !options.tty, "stderr");
        let resize = open(options.tty, "resize");
        (
            Self {
                error,
                stdin,
                stdout,
                stderr,
                resize,
            },
            planned,
        )
    }

    /// The WebSocket channel of output arriving on SPDY stream `id`.
    fn output_channel(&self, id: u32) -> Option<u8> {
        if id == self.error {
            Some(ERROR)
        } else if Some(id) == self.stdout {
            Some(STDOUT)
        } else if Some(id) == self.stderr {
            Some(STDERR)
        } else {
            None
        }
    }

    /// The SPDY stream for input on WebSocket channel `channel`.
    fn input_stream(&self, channel: u8) -> Option<u32> {
        match channel {
            STDIN => self.stdin,
            RESIZE => self.resize,
            _ => None,
        }
    }
}

/// Upstream's `Status` for a session that ran to its end without a word from the backend.
fn success() -> Bytes {
    Bytes::from(json!({ "metadata": {}, "status": "Success" }).to_string())
}

/// Upstream's `NewInternalError` status.
fn internal_error(message: &str) -> Bytes {
    Bytes::from(
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {message}"),
            "reason": "InternalError",
            "details": { "causes": [{ "message": message }] },
            "code": 500,
        })
        .to_string(),
    )
}

fn message(channel: u8, data: &[u8]) -> Message {
    let mut framed = BytesMut::with_capacity(1 + data.len());
    framed.extend_from_slice(&[channel]);
    framed.extend_from_slice(data);
    Message::Binary(framed.freeze())
}

type Sink = futures::stream::SplitSink<websocket::Socket, Message>;
type Source = futures::stream::SplitStream<websocket::Socket>;
type Upstream = (
    spdy::Sender,
    spdy::Receiver<tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>>,
);

async fn session(client: OnUpgrade, connect: Connect, target: Target, options: Options) {
    let Some(socket) = websocket::server(client).await else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    // An empty message on the lowest writable channel tells the client the session is up.
    let hello = if options.stdout {
        STDOUT
    } else if options.stderr {
        STDERR
    } else {
        ERROR
    };
    if sink.send(message(hello, &[])).await.is_err() {
        return;
    }
    let (streams, planned) = Streams::plan(options);
    let status = match open(connect, &target, &planned).await {
        Err(status) => status,
        Ok(upstream) => match pump(upstream, streams, &mut sink, &mut source).await {
            Some(status) => status,
            // The client went away: nothing is left to tell it.
            None => return,
        },
    };
    finish(sink, source, status).await;
}

/// Dials the backend, upgrades to SPDY and opens the planned streams; a failure is the status
/// to report.
async fn open(
    connect: Connect,
    target: &Target,
    planned: &[(u32, &'static str)],
) -> Result<Upstream, Bytes> {
    let connection = connect
        .await
        .map_err(|e| internal_error(&format!("error dialing backend: {e}")))?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(&target.path_and_query)
        .header(header::HOST, &target.authority)
        .header(header::CONNECTION, HeaderValue::from_static("Upgrade"))
        .header(header::UPGRADE, HeaderValue::from_static(SPDY_3_1))
        .header(STREAM_PROTOCOL_VERSION, HeaderValue::from_static(V4))
        .body(Empty::new())
        .map_err(|e| internal_error(&e.to_string()))?;
    let answer = upgrade::send(connection, request)
        .await
        .map_err(|e| internal_error(&e))?;
    let io = match answer {
        Answer::Switched { headers, io }
            if upgrade::switched_to(http::StatusCode::SWITCHING_PROTOCOLS, &headers, SPDY_3_1) =>
        {
            let chosen = headers
                .get(STREAM_PROTOCOL_VERSION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if chosen != V4 {
                return Err(internal_error(&format!(
                    "unable to upgrade connection: the backend chose stream protocol {chosen:?}, not {V4}"
                )));
            }
            io
        }
        Answer::Switched { .. } => {
            return Err(internal_error(
                "unable to upgrade connection: missing upgrade headers in response",
            ));
        }
        Answer::Refused(response) => return Err(refusal(response).await),
    };
    let (sender, receiver) = spdy::connection(TokioIo::new(io), spdy::Role::Client);
    for &(stream_id, kind) in planned {
        sender
            .send(Frame::SynStream {
                stream_id,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: vec![("streamtype".to_owned(), kind.to_owned())],
            })
            .await
            .map_err(|e| internal_error(&e.to_string()))?;
    }
    Ok((sender, receiver))
}

/// The status for a backend that did not upgrade, as upstream's SPDY client words it: a
/// `Status` it answered with as is, else its text.
async fn refusal(response: Response<Incoming>) -> Bytes {
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            text.extend_from_slice(&data);
        }
        if text.len() >= MAX_ERROR_BYTES {
            text.truncate(MAX_ERROR_BYTES);
            break;
        }
    }
    if let Ok(status) = serde_json::from_slice::<serde_json::Value>(&text)
        && status["kind"] == "Status"
    {
        return Bytes::from(text);
    }
    let text = String::from_utf8_lossy(&text);
    internal_error(&format!("unable to upgrade connection: {}", text.trim()))
}

/// Carries the session both ways until the backend is done (its status, to report) or the
/// client goes away (`None`).
async fn pump(
    (sender, mut receiver): Upstream,
    streams: Streams,
    sink: &mut Sink,
    source: &mut Source,
) -> Option<Bytes> {
    let to_backend = async {
        while let Some(Ok(received)) = source.next().await {
            let data = match received {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            let (stream_id, fin, data) = if channel == CLOSE {
                let Some(id) = payload.first().and_then(|&c| streams.input_stream(c)) else {
                    continue;
                };
                (id, true, Bytes::new())
            } else {
                let Some(id) = streams.input_stream(channel) else {
                    continue;
                };
                (id, false, data.slice(1..))
            };
            let frame = Frame::Data {
                stream_id,
                fin,
                data,
            };
            if sender.send(frame).await.is_err() {
                // The backend is gone; its end is reported by the other direction.
                std::future::pending::<()>().await;
            }
        }
    };
    let to_client = async {
        let mut status = BytesMut::new();
        let mut open: HashSet<u32> = [Some(streams.error), streams.stdout, streams.stderr]
            .into_iter()
            .flatten()
            .collect();
        while !open.is_empty() {
            let frame = match receiver.next().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY stream from the backend broke");
                    break;
                }
            };
            match frame {
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    match streams.output_channel(stream_id) {
                        Some(ERROR) => status.extend_from_slice(&data),
                        Some(channel) if !data.is_empty() => {
                            sink.send(message(channel, &data)).await.ok()?;
                        }
                        _ => {}
                    }
                    if fin {
                        open.remove(&stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    open.remove(&stream_id);
                }
                Frame::SynStream { stream_id, .. } => {
                    let refuse = Frame::RstStream {
                        stream_id,
                        status: spdy::frame::RST_REFUSED_STREAM,
                    };
                    let _ = sender.send(refuse).await;
                }
                _ => {}
            }
        }
        Some(if status.is_empty() {
            success()
        } else {
            status.freeze()
        })
    };
    tokio::select! {
        status = to_client => status,
        () = to_backend => None,
    }
}

/// Reports `status` on the error channel, closes, and waits for the client to close too.
async fn finish(mut sink: Sink, mut source: Source, status: Bytes) {
    let _ = sink.send(message(ERROR, &status)).await;
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(close))).await;
    let _ = tokio::time::timeout(FINISH_TIMEOUT, async {
        while let Some(Ok(_)) = source.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests;
