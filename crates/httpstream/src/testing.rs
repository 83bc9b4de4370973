//! Loopback servers for this crate's tests: a handler served over HTTP/1.1 with upgrades, and
//! a backend that switches to SPDY and hands each connection to a script.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::upgrade::{Body, Connect, Transport};

/// Serves `handler` on a loopback port until the test ends.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    address
}

/// Dials `address` over TCP.
pub fn connect(address: SocketAddr) -> Connect {
    Box::pin(async move {
        TcpStream::connect(address)
            .await
            .map(|tcp| Box::new(tcp) as Box<dyn Transport>)
            .map_err(|e| e.to_string())
    })
}

/// A backend that switches every request to SPDY/3.1 with stream protocol `protocol` and runs
/// `script` on the upgraded connection.
pub async fn switching_backend<S, Fut>(protocol: &'static str, script: S) -> SocketAddr
where
    S: Fn(Upgraded) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve(move |mut request: Request<Incoming>| {
        let script = script.clone();
        async move {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move { script(upgrade.await.unwrap()).await });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "Upgrade")
                .header("upgrade", "SPDY/3.1")
                .header("x-stream-protocol-version", protocol)
                .body(Empty::new().map_err(|e| match e {}).boxed())
                .unwrap()
        }
    })
    .await
}

/// A backend that answers every request with `code` and `text`.
pub async fn refusing_backend(code: StatusCode, text: &'static str) -> SocketAddr {
    serve(move |_request| async move {
        Response::builder()
            .status(code)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(text.as_bytes())).boxed())
            .unwrap()
    })
    .await
}
