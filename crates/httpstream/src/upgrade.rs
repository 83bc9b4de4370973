//! The upgrade-aware proxy both hops use (apiserver → kubelet, kubelet → runtime), as upstream's
//! `UpgradeAwareHandler` with `upgradeRequired`: the client's upgrade request goes to the backend
//! with its streaming headers; a `101 Switching Protocols` answer is passed back and the two
//! upgraded connections are joined byte for byte until either side closes; any other answer
//! is relayed as it is.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A response body, as both servers build theirs.
pub type Body = BoxBody<Bytes, Infallible>;

/// A connected transport to the backend (TLS to a kubelet, TCP to a runtime).
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// Dials the backend; the error is text for a message.
pub type Connect = Pin<Box<dyn Future<Output = Result<Box<dyn Transport>, String>> + Send>>;

/// `X-Stream-Protocol-Version`: the stream protocols a client offers and the one a server chose.
pub const STREAM_PROTOCOL_VERSION: &str = "x-stream-protocol-version";
/// The `Upgrade` token of SPDY streams.
pub const SPDY_3_1: &str = "SPDY/3.1";

/// The request headers that make an upgrade and choose its protocol; only these reach the
/// backend, so the client's credentials and impersonation headers never do.
const FORWARDED: [&str; 9] = [
    "connection",
    "upgrade",
    STREAM_PROTOCOL_VERSION,
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "origin",
    "user-agent",
];

/// Where the backend serves the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, for the `Host` header.
    pub authority: String,
    pub path_and_query: String,
}

/// Why a stream could not be proxied; each becomes an error answer of the caller's making.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Not an upgrade request, where only one is served.
    #[error("Upgrade request required")]
    UpgradeRequired,
    /// The request is malformed (a bad WebSocket handshake, no protocol to tunnel).
    #[error("{0}")]
    BadRequest(String),
    #[error("error dialing backend: {0}")]
    Dial(String),
    #[error("error proxying to backend: {0}")]
    Backend(String),
}

/// Whether `value` (comma-separated tokens) holds `token`, ignoring case.
fn has_token(value: Option<&HeaderValue>, token: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Whether the request asks to upgrade the connection (`Connection: Upgrade` and an
/// `Upgrade` protocol), as upstream's `httpstream.IsUpgradeRequest`.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers.get(header::CONNECTION), "upgrade") && headers.contains_key(header::UPGRADE)
}

/// Whether the request is a WebSocket upgrade, as upstream's `wsstream.IsWebSocketRequest`.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    has_token(headers.get(header::CONNECTION), "upgrade")
        && has_token(headers.get(header::UPGRADE), "websocket")
}

/// Whether an answer completes an upgrade to `protocol` (`101`, `Connection: Upgrade`,
/// `Upgrade: <protocol>`).
pub fn switched_to(status: StatusCode, headers: &HeaderMap, protocol: &str) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS
        && has_token(headers.get(header::CONNECTION), "upgrade")
        && has_token(headers.get(header::UPGRADE), protocol)
}

/// What a backend answered an upgrade request with.
pub enum Answer {
    /// `101`: its headers, and the connection now speaking the new protocol.
    Switched { headers: HeaderMap, io: Upgraded },
    /// Anything else, body unread.
    Refused(Response<Incoming>),
}

/// Sends an upgrade `request` over `connection` (HTTP/1.1) and reads the answer.
pub async fn send(
    connection: Box<dyn Transport>,
    request: Request<Empty<Bytes>>,
) -> Result<Answer, String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade connection to the backend ended with an error");
        }
    });
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Answer::Refused(response));
    }
    let headers = response.headers().clone();
    let io = hyper::upgrade::on(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Answer::Switched { headers, io })
}

/// A backend's non-upgrade answer, relayed: status, headers and the body as it streams.
pub fn relay(response: Response<Incoming>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let chunks = futures::stream::unfold(body, |mut body| async move {
        loop {
            match body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some((Ok::<_, Infallible>(Frame::data(data)), body)),
                    Err(_) => continue,
                },
                Err(e) => {
                    tracing::debug!(error = %e, "backend answer broke off");
                    return None;
                }
            }
        }
    });
    let mut relayed = Response::new(StreamBody::new(chunks).boxed());
    *relayed.status_mut() = parts.status;
    *relayed.headers_mut() = parts.headers;
    relayed.headers_mut().remove(header::TRANSFER_ENCODING);
    relayed
}

/// Joins the client's upgraded connection (once its `101` is sent) to the backend's, copying
/// both ways until either side closes.
pub fn join(client: OnUpgrade, backend: Upgraded) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(error = %e, "the client's connection did not upgrade");
                return;
            }
        };
        let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!(error = %e, "upgraded stream ended with an error");
        }
    });
}

/// Builds the backend's copy of an upgrade request: `method` to `target`, with the streaming
/// headers of `headers` (see [`FORWARDED`]).
pub fn backend_request(
    method: &http::Method,
    headers: &HeaderMap,
    target: &Target,
) -> Result<Request<Empty<Bytes>>, ProxyError> {
    let mut request = Request::builder()
        .method(method)
        .uri(&target.path_and_query)
        .header(header::HOST, &target.authority)
        .body(Empty::new())
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    for name in FORWARDED {
        let name = HeaderName::from_static(name);
        for value in headers.get_all(&name) {
            request.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(request)
}

/// Proxies the upgrade `request` to the backend at `target` over the connection `connect`
/// makes. Errors before any answer are the caller's to write.
pub async fn proxy<B>(
    mut request: Request<B>,
    connect: Connect,
    target: &Target,
) -> Result<Response<Body>, ProxyError> {
    if !is_upgrade(request.headers()) {
        return Err(ProxyError::UpgradeRequired);
    }
    let backend = backend_request(request.method(), request.headers(), target)?;
    let connection = connect.await.map_err(ProxyError::Dial)?;
    match send(connection, backend)
        .await
        .map_err(ProxyError::Backend)?
    {
        Answer::Refused(response) => Ok(relay(response)),
        Answer::Switched { headers, io } => {
            join(hyper::upgrade::on(&mut request), io);
            Ok(switching_protocols(headers))
        }
    }
}

/// A `101` for the client carrying the backend's headers.
fn switching_protocols(mut headers: HeaderMap) -> Response<Body> {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    let mut response = Response::new(Empty::new().map_err(|e| match e {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn upgrade_and_websocket_requests_are_told_apart() {
        let spdy = headers(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]);
        assert!(is_upgrade(&spdy) && !is_websocket(&spdy));
        let ws = headers(&[
            ("Connection", "keep-alive, upgrade"),
            ("Upgrade", "websocket"),
        ]);
        assert!(is_upgrade(&ws) && is_websocket(&ws));
        assert!(!is_upgrade(&headers(&[("Upgrade", "SPDY/3.1")])));
        assert!(!is_upgrade(&headers(&[("Connection", "close")])));
    }

    #[test]
    fn only_streaming_headers_reach_the_backend() {
        let client = headers(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "v3.channel.k8s.io"),
            ("Authorization", "Bearer secret"),
            ("Impersonate-User", "admin"),
            ("User-Agent", "kubectl/v1.37.1"),
        ]);
        let target = Target {
            authority: "10.0.0.7:10250".into(),
            path_and_query: "/exec/default/web/app?command=ls&output=1".into(),
        };
        let request = backend_request(&http::Method::POST, &client, &target).unwrap();
        assert_eq!(request.uri(), "/exec/default/web/app?command=ls&output=1");
        let sent = request.headers();
        assert_eq!(sent[header::HOST], "10.0.0.7:10250");
        assert_eq!(sent.get_all(STREAM_PROTOCOL_VERSION).iter().count(), 2);
        assert_eq!(sent[header::UPGRADE], "SPDY/3.1");
        assert!(sent.get(header::AUTHORIZATION).is_none());
        assert!(sent.get("impersonate-user").is_none());
    }

    async fn front(backend: std::net::SocketAddr) -> std::net::SocketAddr {
        crate::testing::serve(move |request| async move {
            let target = Target {
                authority: backend.to_string(),
                path_and_query: "/exec/token".into(),
            };
            match proxy(request, crate::testing::connect(backend), &target).await {
                Ok(response) => response,
                Err(e) => {
                    let mut response = Response::new(
                        http_body_util::Full::new(Bytes::from(e.to_string())).boxed(),
                    );
                    *response.status_mut() = StatusCode::BAD_GATEWAY;
                    response
                }
            }
        })
        .await
    }

    /// Sends `request` on a new connection to `address`: the answer's head, and the stream.
    async fn raw(address: std::net::SocketAddr, request: &str) -> (String, tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            if tcp.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        (String::from_utf8(head).unwrap(), tcp)
    }

    const SPDY_REQUEST: &str = "POST /api/v1/namespaces/default/pods/web/exec HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n";

    #[tokio::test]
    async fn a_switched_backend_is_joined_to_the_client_byte_for_byte() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let backend = crate::testing::switching_backend("v4.channel.k8s.io", |io| async move {
            let (mut read, mut write) = tokio::io::split(TokioIo::new(io));
            let _ = tokio::io::copy(&mut read, &mut write).await;
        })
        .await;
        let (head, mut tcp) = raw(front(backend).await, SPDY_REQUEST).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-stream-protocol-version: v4.channel.k8s.io"),
            "{head}"
        );
        tcp.write_all(b"spdy frames").await.unwrap();
        let mut echoed = [0u8; 11];
        tcp.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"spdy frames");
    }

    #[tokio::test]
    async fn a_refusing_backend_is_relayed_and_plain_requests_are_refused() {
        let backend = crate::testing::refusing_backend(
            StatusCode::INTERNAL_SERVER_ERROR,
            "container not found (\"app\")",
        )
        .await;
        let address = front(backend).await;
        let (head, mut tcp) = raw(address, SPDY_REQUEST).await;
        assert!(head.starts_with("HTTP/1.1 500"), "{head}");
        // The connection stays open for more requests: read what has come.
        let mut body = vec![0u8; 64];
        let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut body)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body[..n]);
        assert!(body.contains("container not found (\"app\")"), "{body}");
        let (head, _) = raw(
            address,
            "POST /x HTTP/1.1\r\nHost: front\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    }

    #[test]
    fn a_switch_needs_101_and_both_upgrade_headers() {
        let both = headers(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]);
        assert!(switched_to(
            StatusCode::SWITCHING_PROTOCOLS,
            &both,
            SPDY_3_1
        ));
        assert!(!switched_to(StatusCode::OK, &both, SPDY_3_1));
        assert!(!switched_to(
            StatusCode::SWITCHING_PROTOCOLS,
            &both,
            "websocket"
        ));
    }
}
