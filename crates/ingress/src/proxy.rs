//! One request through the proxy: routed by the snapshot current when it arrives, sent over
//! HTTP/1.1 straight to a pod endpoint (not through the ClusterIP, so the pick is ours), with the
//! `X-Forwarded-*` headers and without hop-by-hop ones. HTTP/1.1 upgrades (WebSocket) are
//! joined byte for byte. Not served: WebSocket over HTTP/2 (RFC 8441 extended CONNECT), and
//! HTTP/2 towards the backend (pods are assumed to speak HTTP/1.1, as ingress-nginx assumes).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use r8s_httpstream::upgrade::{self, Answer};
use tokio::sync::watch;

use crate::Snapshot;
use crate::routes::Decision;

/// What the proxy answers with: a backend's streamed body, or one of its own.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A pod that takes longer than this to accept a connection is answered for with a 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Kept-alive connections to pods are closed after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), besides those the
/// `Connection` header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

pub struct Proxy {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    client: Client<HttpConnector, Incoming>,
}

impl Proxy {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            // The client's own Host is kept; see `forwarded_headers`.
            .set_host(false)
            .build(connector);
        Proxy { snapshots, client }
    }

    pub async fn handle(
        &self,
        request: Request<Incoming>,
        connection: Connection,
    ) -> Response<Body> {
        let snapshot = self.snapshots.borrow().clone();
        if !snapshot.synced {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: the ingress controller is still reading the cluster",
            );
        }
        if request.method() == Method::CONNECT {
            return answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: CONNECT is not proxied",
            );
        }
        let host = authority(&request);
        let (endpoint, service) = match snapshot.routes.route(&host, request.uri().path()) {
            Decision::NotFound => {
                return answer(
                    StatusCode::NOT_FOUND,
                    "404 Not Found: no Ingress rule matches this host and path",
                );
            }
            Decision::Unavailable(why) => {
                return answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("503 Service Unavailable: {why}"),
                );
            }
            Decision::Proxy(backend) => (backend.pick(), backend.service().to_owned()),
        };
        let bad_gateway = |e: &dyn std::fmt::Display| {
            tracing::debug!("ingress: {service} at {endpoint}: {e}");
            answer(
                StatusCode::BAD_GATEWAY,
                &format!("502 Bad Gateway: service {service} did not answer at {endpoint}"),
            )
        };
        if request.version() == Version::HTTP_11 && upgrade::is_upgrade(request.headers()) {
            return self
                .upgrade(request, endpoint, &host, connection)
                .await
                .unwrap_or_else(|e| bad_gateway(&e));
        }
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = match format!("http://{endpoint}{path}").parse() {
            Ok(uri) => uri,
            Err(_) => return answer(StatusCode::BAD_REQUEST, "400 Bad Request: bad path"),
        };
        parts.version = Version::HTTP_11;
        forwarded_headers(&mut parts.headers, &host, connection);
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => bad_gateway(&e),
        }
    }

    /// An upgrade request: sent on a connection of its own, which becomes the client's stream
    /// once the pod switches protocols.
    async fn upgrade(
        &self,
        mut request: Request<Incoming>,
        endpoint: SocketAddr,
        host: &str,
        connection: Connection,
    ) -> Result<Response<Body>, String> {
        let protocol = request.headers().get(header::UPGRADE).cloned();
        let mut headers = request.headers().clone();
        forwarded_headers(&mut headers, host, connection);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(protocol) = protocol {
            headers.insert(header::UPGRADE, protocol);
        }
        let mut backend = Request::builder()
            .method(request.method())
            .uri(request.uri().path_and_query().map_or("/", |p| p.as_str()))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        *backend.headers_mut() = headers;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(endpoint))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match upgrade::send(Box::new(tcp), backend).await? {
            Answer::Refused(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, body.boxed()))
            }
            Answer::Switched { mut headers, io } => {
                upgrade::join(hyper::upgrade::on(&mut request), io);
                headers.remove(header::CONTENT_LENGTH);
                headers.remove(header::TRANSFER_ENCODING);
                let mut response = Response::new(empty());
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                *response.headers_mut() = headers;
                Ok(response)
            }
        }
    }
}

/// The host the client asked for, as sent: `:authority` (HTTP/2) or absolute-form, else `Host`.
fn authority(request: &Request<Incoming>) -> String {
    if let Some(authority) = request.uri().authority() {
        return authority.as_str().to_owned();
    }
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// A request's headers as the pod gets them: hop-by-hop ones gone, `Host` kept (set from
/// `:authority` for HTTP/2), and the `X-Forwarded-*` set from this connection. Client-sent
/// `X-Forwarded-*` are replaced, not extended: this proxy is the edge and trusts none.
fn forwarded_headers(headers: &mut HeaderMap, host: &str, connection: Connection) {
    strip_hop_by_hop(headers);
    let peer = connection.peer.ip().to_string();
    let forwarded = [
        (header::HOST, host.to_owned()),
        (HeaderName::from_static("x-forwarded-for"), peer.clone()),
        (HeaderName::from_static("x-real-ip"), peer),
        (
            HeaderName::from_static("x-forwarded-proto"),
            if connection.tls { "https" } else { "http" }.to_owned(),
        ),
        (HeaderName::from_static("x-forwarded-host"), host.to_owned()),
        (
            HeaderName::from_static("x-forwarded-port"),
            connection.local.port().to_string(),
        ),
    ];
    for (name, value) in forwarded {
        // An HTTP/1.0 client may send no host at all: then none is made up.
        if value.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

fn empty() -> Body {
    Empty::new().map_err(|e: Infallible| match e {}).boxed()
}

/// An answer of the proxy's own: `text` and a newline, as plain text.
fn answer(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> Connection {
        Connection {
            peer: "192.0.2.7:50000".parse().unwrap(),
            local: "10.0.0.1:443".parse().unwrap(),
            tls: true,
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("accept", "text/html"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn forwarded_headers_describe_the_client_and_replace_what_it_claimed() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        forwarded_headers(&mut headers, "shop.example.com", connection());
        assert_eq!(headers["host"], "shop.example.com");
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(headers["x-real-ip"], "192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "shop.example.com");
        assert_eq!(headers["x-forwarded-port"], "443");
    }
}
