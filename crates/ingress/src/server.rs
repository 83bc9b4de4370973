//! The listeners: HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) and HTTPS (ALPN `h2` or
//! `http/1.1`, certificate by SNI). Every request and handshake reads the snapshot current at
//! that moment, so a new snapshot never touches an open connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::Snapshot;
use crate::certificates::{self, SniResolver};
use crate::proxy::{Connection, Proxy};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (slow clients hold sockets).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed `accept` (out of file descriptors, say), wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `http` and `https` with the routes and certificates of the latest snapshot in
/// `snapshots`, until dropped. Open connections are served from tasks this future owns, so
/// dropping it closes them too.
pub async fn serve_snapshot(
    http: TcpListener,
    https: TcpListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
) -> anyhow::Result<()> {
    let fallback = certificates::self_signed().context("cannot make the fallback certificate")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("cannot configure TLS")?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(SniResolver {
        snapshots: snapshots.clone(),
        fallback,
    }));
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let proxy = Arc::new(Proxy::new(snapshots));
    let mut connections = JoinSet::new();
    loop {
        let (accepted, tls) = tokio::select! {
            accepted = http.accept() => (accepted, None),
            accepted = https.accept() => (accepted, Some(acceptor.clone())),
            // Reaps finished connections so the set does not grow.
            Some(_) = connections.join_next() => continue,
        };
        match accepted {
            Ok((tcp, peer)) => {
                connections.spawn(serve_connection(proxy.clone(), tcp, peer, tls));
            }
            Err(e) => {
                tracing::warn!("ingress: cannot accept a connection: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve_connection(
    proxy: Arc<Proxy>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let _ = tcp.set_nodelay(true);
    let Ok(local) = tcp.local_addr() else { return };
    let connection = Connection {
        peer,
        local,
        tls: tls.is_some(),
    };
    match tls {
        None => serve_http(proxy, connection, tcp).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_http(proxy, connection, stream).await,
                Ok(Err(e)) => tracing::debug!(%peer, "ingress: TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "ingress: TLS handshake timed out"),
            }
        }
    }
}

/// HTTP/1.1 or HTTP/2, whichever the client speaks (ALPN, or the HTTP/2 preface).
async fn serve_http<IO>(proxy: Arc<Proxy>, connection: Connection, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(request, connection).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(peer = %connection.peer, "ingress: connection ended with an error: {e}");
    }
}
