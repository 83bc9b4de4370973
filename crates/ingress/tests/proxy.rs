//! The proxy end to end on loopback: a fixed snapshot served on ephemeral ports, backends
//! started here, and clients made of hyper and tokio-rustls.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use r8s_ingress::{Cluster, Snapshot, serve_snapshot};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SECURE_HOST: &str = "secure.example.com";

/// A backend answering every request with its name and what it was sent, and echoing the
/// bytes of any upgraded connection.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |request| answer(name, request));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades(),
            );
        }
    });
    address
}

async fn answer(
    name: &str,
    mut request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.headers().contains_key(header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let io = TokioIo::new(upgrade.await.unwrap());
            let (mut read, mut write) = tokio::io::split(io);
            let _ = tokio::io::copy(&mut read, &mut write).await;
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .body(Full::default())
            .unwrap());
    }
    let sent = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let text = format!(
        "{name} {:?} {} {} host={} xff={} proto={} fhost={} keep-alive={}",
        request.version(),
        request.method(),
        request.uri(),
        sent("host"),
        sent("x-forwarded-for"),
        sent("x-forwarded-proto"),
        sent("x-forwarded-host"),
        sent("keep-alive"),
    );
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap()
}

fn slice(service: &str, endpoint: SocketAddr) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": service, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [endpoint.ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": endpoint.port(), "protocol": "TCP"}],
    }))
    .unwrap()
}

fn prefix(path: &str, service: &str) -> serde_json::Value {
    json!({"path": path, "pathType": "Prefix",
           "backend": {"service": {"name": service, "port": {"name": "http"}}}})
}

/// A test CA and the Secret of a certificate it signed for [`SECURE_HOST`].
struct Pki {
    ca: CertificateDer<'static>,
    secret: Secret,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ingress test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![SECURE_HOST.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("secure-tls".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt", cert.pem().into_bytes()),
                ("tls.key", key.serialize_pem().into_bytes()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), k8s_openapi::ByteString(v)))
            .collect(),
        ),
        ..Default::default()
    };
    Pki {
        ca: ca.der().clone(),
        secret,
    }
}

/// What the proxy serves from, kept so a test can change it.
struct World {
    ingresses: Vec<Ingress>,
    classes: Vec<IngressClass>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    secrets: Vec<Secret>,
}

impl World {
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::new(Snapshot::build(&Cluster {
            class: "r8s",
            ingresses: &self.ingresses,
            classes: &self.classes,
            services: &self.services,
            slices: &self.slices,
            secrets: &self.secrets,
        }))
    }
}

struct Proxy {
    http: SocketAddr,
    https: SocketAddr,
    ca: CertificateDer<'static>,
    world: World,
    publish: watch::Sender<Arc<Snapshot>>,
}

impl Proxy {
    fn republish(&self) {
        self.publish.send_replace(self.world.snapshot());
    }
}

/// The proxy serving: `a.example.com` (`/` → backend a, `/b` → backend b), one label under
/// `wild.example.com` → b, `down.example.com` → a Service without endpoints,
/// `broken.example.com` → an endpoint nothing listens on, and [`SECURE_HOST`] with TLS → a.
/// `other.example.com` belongs to another IngressClass.
async fn proxy() -> Proxy {
    let (a, b, dead) = (backend("a").await, backend("b").await, closed_port().await);
    let pki = pki();
    let web: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "ingressClassName": "r8s",
            "tls": [{"hosts": [SECURE_HOST], "secretName": "secure-tls"}],
            "rules": [
                {"host": "a.example.com", "http": {"paths": [prefix("/", "a"), prefix("/b", "b")]}},
                {"host": "*.wild.example.com", "http": {"paths": [prefix("/", "b")]}},
                {"host": "down.example.com", "http": {"paths": [prefix("/", "down")]}},
                {"host": "broken.example.com", "http": {"paths": [prefix("/", "dead")]}},
                {"host": SECURE_HOST, "http": {"paths": [prefix("/", "a")]}},
            ],
        },
    }))
    .unwrap();
    let other: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "other", "namespace": "default"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "other.example.com", "http": {"paths": [prefix("/", "a")]}}],
        },
    }))
    .unwrap();
    let world = World {
        ingresses: vec![web, other],
        classes: Vec::new(),
        services: ["a", "b", "down", "dead"].map(service).to_vec(),
        slices: vec![slice("a", a), slice("b", b), slice("dead", dead)],
        secrets: vec![pki.secret],
    };
    let (publish, snapshots) = watch::channel(world.snapshot());
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_address, https_address) = (http.local_addr().unwrap(), https.local_addr().unwrap());
    tokio::spawn(serve_snapshot(http, https, snapshots));
    Proxy {
        http: http_address,
        https: https_address,
        ca: pki.ca,
        world,
        publish,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// An HTTP/1.1 connection to `address`.
async fn connect(address: SocketAddr) -> Sender {
    let tcp = TcpStream::connect(address).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// `GET path` with `Host: host` on `sender`: the status and the body.
async fn get_on(sender: &mut Sender, host: &str, path: &str) -> (StatusCode, String) {
    let request = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(address: SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    get_on(&mut connect(address).await, host, path).await
}

/// A TLS connection to `address` asking for `name`, trusting only the test CA, offering h2.
async fn tls(
    address: SocketAddr,
    ca: &CertificateDer<'static>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// `GET uri` over HTTP/2 on `io`: the status and the body.
async fn get_h2<IO>(io: IO, uri: &str) -> (StatusCode, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn requests_are_routed_by_host_and_path() {
    let proxy = proxy().await;
    let (status, body) = get(proxy.http, "a.example.com", "/x").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("a HTTP/1.1 GET /x "), "{body}");
    let (_, body) = get(proxy.http, "a.example.com:80", "/b/c?q=1").await;
    assert!(body.starts_with("b HTTP/1.1 GET /b/c?q=1 "), "{body}");
    let (_, body) = get(proxy.http, "x.wild.example.com", "/").await;
    assert!(body.starts_with("b "), "{body}");
}

#[tokio::test]
async fn unmatched_hosts_and_other_classes_get_404() {
    let proxy = proxy().await;
    for host in [
        "nowhere.example.com",
        "x.y.wild.example.com",
        "other.example.com",
    ] {
        let (status, body) = get(proxy.http, host, "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{host}");
        assert!(body.contains("no Ingress rule"), "{body}");
    }
}

#[tokio::test]
async fn a_service_without_ready_endpoints_gets_503() {
    let proxy = proxy().await;
    let (status, body) = get(proxy.http, "down.example.com", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("default/down:http has no ready endpoints"),
        "{body}"
    );
}

#[tokio::test]
async fn an_endpoint_refusing_connections_gets_502() {
    let proxy = proxy().await;
    let (status, body) = get(proxy.http, "broken.example.com", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("default/dead:http"), "{body}");
}

#[tokio::test]
async fn the_backend_sees_the_client_host_and_forwarded_headers_but_no_hop_headers() {
    let proxy = proxy().await;
    let mut sender = connect(proxy.http).await;
    let request = Request::get("/")
        .header(header::HOST, "a.example.com")
        .header(header::CONNECTION, "keep-alive")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "6.6.6.6")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    for expected in [
        "host=a.example.com",
        "xff=127.0.0.1",
        "proto=http",
        "fhost=a.example.com",
        "keep-alive=-",
    ] {
        assert!(body.contains(expected), "{expected} in {body}");
    }
}

#[tokio::test]
async fn https_serves_the_certificate_sni_asks_for_over_http2() {
    let proxy = proxy().await;
    let stream = tls(proxy.https, &proxy.ca, SECURE_HOST).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, body) = get_h2(stream, &format!("https://{SECURE_HOST}/page")).await;
    assert_eq!(status, StatusCode::OK);
    // HTTP/2 in front, HTTP/1.1 to the pod, with the Host from `:authority`.
    assert!(body.starts_with("a HTTP/1.1 GET /page "), "{body}");
    assert!(body.contains(&format!("host={SECURE_HOST}")), "{body}");
    assert!(body.contains("proto=https"), "{body}");
}

#[tokio::test]
async fn https_for_a_name_without_certificate_gets_the_self_signed_fallback() {
    let proxy = proxy().await;
    let err = tls(proxy.https, &proxy.ca, "a.example.com")
        .await
        .expect_err("the fallback certificate is not signed by the test CA");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn plain_http2_with_prior_knowledge_is_served() {
    let proxy = proxy().await;
    let tcp = TcpStream::connect(proxy.http).await.unwrap();
    let (status, body) = get_h2(tcp, "http://a.example.com/h2c").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("a HTTP/1.1 GET /h2c "), "{body}");
}

#[tokio::test]
async fn a_websocket_upgrade_is_joined_to_the_backend() {
    let proxy = proxy().await;
    let mut tcp = TcpStream::connect(proxy.http).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "the proxy hung up");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp.write_all(b"frames").await.unwrap();
    let mut echoed = [0u8; 6];
    tcp.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"frames");
}

#[tokio::test]
async fn a_new_snapshot_applies_to_an_open_connection() {
    let mut proxy = proxy().await;
    let mut sender = connect(proxy.http).await;
    let (status, _) = get_on(&mut sender, "new.example.com", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let added: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "added", "namespace": "default"},
        "spec": {"ingressClassName": "r8s",
                 "rules": [{"host": "new.example.com", "http": {"paths": [prefix("/", "b")]}}]},
    }))
    .unwrap();
    proxy.world.ingresses.push(added);
    proxy.republish();
    let (status, body) = get_on(&mut sender, "new.example.com", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("b "), "{body}");
}

#[tokio::test]
async fn before_the_first_snapshot_every_request_gets_503() {
    let (_publish, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = http.local_addr().unwrap();
    tokio::spawn(serve_snapshot(http, https, snapshots));
    let (status, _) = get(address, "a.example.com", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
