//! port-forward over WebSocket: the client tunnels its SPDY connection through binary WebSocket
//! messages (subprotocol `SPDY/3.1+portforward.k8s.io`), as upstream's `TunnelingHandler` serves
//! it. The backend gets a plain SPDY upgrade for the protocols after the prefix; once it
//! switches, the client's handshake is accepted with the protocol the backend chose, and the
//! bytes of each message go to the backend and the backend's bytes come back as messages.

use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use futures::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::upgrade::{
    self, Answer, Body, Connect, ProxyError, SPDY_3_1, STREAM_PROTOCOL_VERSION, Target,
};
use crate::websocket;

/// The prefix of tunnelled protocols, and what each must end with.
pub const PREFIX: &str = "SPDY/3.1+";
const SUFFIX: &str = ".k8s.io";
const READ_BUFFER: usize = 32 * 1024;
/// How long the client may take to close once the backend has.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SPDY protocols a tunnelling WebSocket request offers (prefix removed).
pub fn spdy_protocols(headers: &http::HeaderMap) -> Vec<String> {
    websocket::protocols(headers)
        .into_iter()
        .filter(|p| p.ends_with(SUFFIX))
        .filter_map(|p| p.strip_prefix(PREFIX).map(str::to_owned))
        .collect()
}

/// Whether a request is a WebSocket that tunnels SPDY, as upstream's
/// `IsWebSocketRequestWithTunnelingProtocol`.
pub fn wants_tunnel(headers: &http::HeaderMap) -> bool {
    upgrade::is_websocket(headers) && !spdy_protocols(headers).is_empty()
}

/// Serves a tunnelling WebSocket `request` against the backend at `target`.
pub async fn tunnel<B>(
    mut request: Request<B>,
    connect: Connect,
    target: &Target,
) -> Result<Response<Body>, ProxyError> {
    let protocols = spdy_protocols(request.headers());
    if protocols.is_empty() {
        return Err(ProxyError::BadRequest(
            "unable to upgrade: no tunneling spdy protocols provided".into(),
        ));
    }
    websocket::check(&request)?;
    let mut backend = Request::builder()
        .method(Method::POST)
        .uri(&target.path_and_query)
        .header(header::HOST, &target.authority)
        .header(header::CONNECTION, HeaderValue::from_static("Upgrade"))
        .header(header::UPGRADE, HeaderValue::from_static(SPDY_3_1))
        .body(Empty::new())
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    for protocol in &protocols {
        let value = HeaderValue::from_str(protocol)
            .map_err(|_| ProxyError::BadRequest(format!("bad protocol {protocol:?}")))?;
        backend.headers_mut().append(STREAM_PROTOCOL_VERSION, value);
    }
    if let Some(agent) = request.headers().get(header::USER_AGENT) {
        backend
            .headers_mut()
            .insert(header::USER_AGENT, agent.clone());
    }
    let connection = connect.await.map_err(ProxyError::Dial)?;
    match upgrade::send(connection, backend)
        .await
        .map_err(ProxyError::Backend)?
    {
        Answer::Refused(response) => Ok(upgrade::relay(response)),
        Answer::Switched { headers, io } => {
            if !upgrade::switched_to(StatusCode::SWITCHING_PROTOCOLS, &headers, SPDY_3_1) {
                return Err(ProxyError::Backend(
                    "unable to upgrade: missing upgrade headers in response".into(),
                ));
            }
            let chosen = headers
                .get(STREAM_PROTOCOL_VERSION)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| format!("{PREFIX}{p}"));
            let (response, client) = websocket::accept(&mut request, chosen.as_deref())?;
            tokio::spawn(carry(client, io));
            Ok(response)
        }
    }
}

/// Carries bytes between the client's messages and the backend until both are done (or the
/// client is, or the client dawdles past [`CLOSE_TIMEOUT`] after the backend closed).
async fn carry(client: OnUpgrade, backend: Upgraded) {
    let Some(socket) = websocket::server(client).await else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    let (mut from_backend, mut to_backend) = tokio::io::split(TokioIo::new(backend));
    let upstream = async {
        while let Some(Ok(received)) = source.next().await {
            let written = match received {
                Message::Binary(data) => to_backend.write_all(&data).await,
                Message::Close(_) => break,
                _ => Ok(()),
            };
            if written.is_err() {
                break;
            }
        }
        let _ = to_backend.shutdown().await;
    };
    let downstream = async {
        let mut buffer = vec![0u8; READ_BUFFER];
        loop {
            match from_backend.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = Bytes::copy_from_slice(&buffer[..n]);
                    if sink.send(Message::Binary(data)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    };
    let (upstream, downstream) = (std::pin::pin!(upstream), std::pin::pin!(downstream));
    if let Either::Right(((), upstream)) = futures::future::select(upstream, downstream).await {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, upstream).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_carry_the_tunnelled_bytes_both_ways() {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let backend = crate::testing::switching_backend("portforward.k8s.io", |io| async move {
            let (mut read, mut write) = tokio::io::split(TokioIo::new(io));
            let _ = tokio::io::copy(&mut read, &mut write).await;
        })
        .await;
        let front = crate::testing::serve(move |request| async move {
            let target = Target {
                authority: backend.to_string(),
                path_and_query: "/portForward/default/web".into(),
            };
            tunnel(request, crate::testing::connect(backend), &target)
                .await
                .unwrap()
        })
        .await;
        let mut request = format!("ws://{front}/api/v1/namespaces/default/pods/web/portforward")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            websocket::PROTOCOL_HEADER,
            HeaderValue::from_static("SPDY/3.1+portforward.k8s.io"),
        );
        let tcp = tokio::net::TcpStream::connect(front).await.unwrap();
        let (mut socket, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
        assert_eq!(
            response.headers()[websocket::PROTOCOL_HEADER],
            "SPDY/3.1+portforward.k8s.io"
        );
        socket
            .send(Message::Binary(Bytes::from_static(b"\x80\x03frames")))
            .await
            .unwrap();
        match socket.next().await {
            Some(Ok(Message::Binary(data))) => assert_eq!(&data[..], b"\x80\x03frames"),
            other => panic!("expected the bytes back, got {other:?}"),
        }
    }

    #[test]
    fn only_prefixed_kubernetes_protocols_are_tunnelled() {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            websocket::PROTOCOL_HEADER,
            HeaderValue::from_static(
                "SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io, SPDY/3.1+other.example",
            ),
        );
        assert_eq!(spdy_protocols(&headers), ["portforward.k8s.io"]);
        assert!(wants_tunnel(&headers));
        headers.insert(
            websocket::PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert!(!wants_tunnel(&headers));
    }
}
