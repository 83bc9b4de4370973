//! The API server as a client of kubelets: where a node's kubelet listens, and HTTPS
//! connections to it with the apiserver's kubelet client certificate, the kubelet's serving
//! certificate checked against the cluster CA: one `GET` (logs), or a connection for a stream
//! (exec, attach, port-forward) to upgrade.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::registry::Registry;
use crate::router::ResourcePath;
use crate::status::ApiError;

/// The kubelet port when a Node does not say, as upstream's default.
const DEFAULT_KUBELET_PORT: u16 = 10250;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a node's kubelet listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletLocation {
    pub host: String,
    pub port: u16,
}

impl KubeletLocation {
    /// The Node's InternalIP (else its first address) and `daemonEndpoints.kubeletEndpoint.Port`.
    pub fn of(node: &Value) -> Option<Self> {
        let addresses = node["status"]["addresses"].as_array()?;
        let address = addresses
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .or_else(|| addresses.first())?["address"]
            .as_str()
            .filter(|a| !a.is_empty())?;
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p > 0)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Some(Self {
            host: address.to_owned(),
            port,
        })
    }

    /// Reads the Node named `node_name`.
    pub async fn find(registry: &Registry, node_name: &str) -> Result<Self, ApiError> {
        let nodes = ResourcePath {
            resource: r8s_api::find("", "v1", "nodes").expect("catalogue has nodes"),
            namespace: None,
            name: None,
            subresource: None,
        };
        let node = registry.get(&nodes, node_name).await?;
        Self::of(&node).ok_or_else(|| {
            ApiError::internal(format!(
                "node {node_name:?} has no address to reach its kubelet"
            ))
        })
    }

    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://{}{path_and_query}", self.authority())
    }
}

/// Makes HTTPS requests to kubelets.
#[derive(Clone)]
pub struct KubeletClient {
    connector: TlsConnector,
}

/// A TLS connection to a kubelet.
type KubeletConnection = tokio_rustls::client::TlsStream<TcpStream>;

impl KubeletClient {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            connector: TlsConnector::from(tls),
        }
    }

    /// Dials the kubelet at `location` and completes the TLS handshake. The error is text
    /// for a message, as Go's dialer words it (after `what`).
    async fn dial(
        &self,
        location: &KubeletLocation,
        what: &str,
    ) -> Result<KubeletConnection, String> {
        let fail = |why: String| format!("{what}: {why}");
        let server_name = ServerName::try_from(location.host.clone())
            .map_err(|e| fail(format!("invalid host {:?}: {e}", location.host)))?;
        let connect = async {
            let tcp = TcpStream::connect((location.host.as_str(), location.port))
                .await
                .map_err(|e| {
                    fail(format!(
                        "dial tcp {}: connect: {}",
                        location.authority(),
                        e.kind()
                    ))
                })?;
            let _ = tcp.set_nodelay(true);
            self.connector
                .connect(server_name, tcp)
                .await
                .map_err(|e| fail(format!("tls: {e}")))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| fail("dial tcp: i/o timeout".into()))?
    }

    /// What dials the kubelet at `location` for a stream, when awaited.
    pub fn connect(&self, location: &KubeletLocation) -> r8s_httpstream::Connect {
        let (client, location) = (self.clone(), location.clone());
        Box::pin(async move {
            let what = format!("dial {}", location.authority());
            client
                .dial(&location, &what)
                .await
                .map(|tls| Box::new(tls) as Box<dyn r8s_httpstream::Transport>)
        })
    }

    /// Sends `GET path_and_query` to the kubelet at `location` over a connection of its own,
    /// which lives as long as the response body is read. The error is text for a message, as
    /// Go's HTTP client words it.
    pub async fn get(
        &self,
        location: &KubeletLocation,
        path_and_query: &str,
    ) -> Result<Response<Incoming>, String> {
        let request = Request::get(path_and_query)
            .header(header::HOST, location.authority())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        self.send(location, request).await
    }

    /// Sends `request` (whose URI is a path and query) to the kubelet at `location`, as
    /// [`get`](Self::get) does.
    pub async fn send<B>(
        &self,
        location: &KubeletLocation,
        request: Request<B>,
    ) -> Result<Response<Incoming>, String>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let url = location.url(&request.uri().to_string());
        let what = format!("{} {url:?}", method_word(request.method()));
        let fail = |why: String| format!("{what}: {why}");
        let tls = self.dial(location, &what).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "kubelet connection ended with an error");
            }
        });
        sender
            .send_request(request)
            .await
            .map_err(|e| fail(e.to_string()))
    }
}

/// `Get`, `Post`…: how Go's HTTP client names a method in its errors.
fn method_word(method: &http::Method) -> String {
    let name = method.as_str();
    let mut word = name[..1].to_owned();
    word.push_str(&name[1..].to_lowercase());
    word
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn location_is_the_internal_ip_and_the_kubelet_port() {
        let node = json!({ "status": {
            "addresses": [
                { "type": "Hostname", "address": "n1" },
                { "type": "InternalIP", "address": "10.0.0.7" },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10350 } },
        }});
        let location = KubeletLocation::of(&node).unwrap();
        assert_eq!(
            location,
            KubeletLocation {
                host: "10.0.0.7".into(),
                port: 10350
            }
        );
        assert_eq!(
            location.url("/containerLogs/a/b/c"),
            "https://10.0.0.7:10350/containerLogs/a/b/c"
        );
    }

    #[test]
    fn location_defaults_the_port_and_falls_back_to_the_first_address() {
        let node = json!({ "status": { "addresses": [{ "type": "Hostname", "address": "n1" }] } });
        let location = KubeletLocation::of(&node).unwrap();
        assert_eq!((location.host.as_str(), location.port), ("n1", 10250));
        assert!(KubeletLocation::of(&json!({ "status": {} })).is_none());
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let location = KubeletLocation {
            host: "fd00::1".into(),
            port: 10250,
        };
        assert_eq!(location.url("/healthz"), "https://[fd00::1]:10250/healthz");
    }
}
