//! The server side of a WebSocket handshake (RFC 6455) inside a hyper handler: the request is
//! checked, the `101` built with the chosen subprotocol, and once hyper has sent it the
//! upgraded connection becomes a `tokio-tungstenite` stream.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::upgrade::{Body, ProxyError, is_websocket};

pub const PROTOCOL_HEADER: &str = "sec-websocket-protocol";

/// A server-side WebSocket over an upgraded hyper connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The subprotocols the client offers, in its order.
pub fn protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The client's key, once the request is checked to be a WebSocket handshake we can accept.
fn key<B>(request: &Request<B>) -> Result<&HeaderValue, ProxyError> {
    let bad = |why: &str| Err(ProxyError::BadRequest(format!("websocket: {why}")));
    if !is_websocket(request.headers()) {
        return bad("the client is not using the websocket protocol");
    }
    if request.method() != Method::GET {
        return bad("the client is not using the websocket protocol: request method is not GET");
    }
    if request
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return bad("unsupported version: 13 not found in 'Sec-Websocket-Version' header");
    }
    match request.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => bad("not a websocket handshake: 'Sec-WebSocket-Key' header is missing or blank"),
    }
}

/// Checks that `request` is a WebSocket handshake this server accepts.
pub fn check<B>(request: &Request<B>) -> Result<(), ProxyError> {
    key(request).map(|_| ())
}

/// Accepts the handshake with `protocol` (which the client offered, or none): the `101` to
/// answer with, and the connection to come once it is sent.
pub fn accept<B>(
    request: &mut Request<B>,
    protocol: Option<&str>,
) -> Result<(Response<Body>, OnUpgrade), ProxyError> {
    let accept_key = derive_accept_key(key(request)?.as_bytes());
    let mut response = Response::new(Empty::<Bytes>::new().map_err(|e| match e {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept_key).expect("base64 is a header value"),
    );
    if let Some(protocol) = protocol {
        let value = HeaderValue::from_str(protocol)
            .map_err(|_| ProxyError::BadRequest(format!("bad subprotocol {protocol:?}")))?;
        headers.insert(PROTOCOL_HEADER, value);
    }
    Ok((response, hyper::upgrade::on(request)))
}

/// The WebSocket once the `101` has gone out, or `None` if the client went away first.
pub async fn server(on_upgrade: OnUpgrade) -> Option<Socket> {
    match on_upgrade.await {
        Ok(upgraded) => {
            Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await)
        }
        Err(e) => {
            tracing::debug!(error = %e, "the WebSocket connection did not upgrade");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_read_from_every_header_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
        );
        headers.append(PROTOCOL_HEADER, HeaderValue::from_static("channel.k8s.io"));
        assert_eq!(
            protocols(&headers),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
        );
    }

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example from RFC 6455 section 1.3.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
