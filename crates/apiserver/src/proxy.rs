//! The `proxy` subresources of nodes, pods and services: `…/nodes/{name}[:port]/proxy/{path}`
//! goes to the node's kubelet (HTTPS with the apiserver's kubelet client certificate) or, for
//! another port, plain HTTP on the node's address; `…/pods/{name}[:port]/proxy/{path}` to the
//! pod's IP; `…/services/{name}[:port]/proxy/{path}` to one ready endpoint of the service. The
//! method, query, headers (less hop-by-hop ones and the caller's credentials) and body pass
//! through, and the answer streams back as it comes; upgrades (WebSocket, SPDY) are joined to
//! the target's once it switches protocols.

use std::convert::Infallible;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::kubelet_client::KubeletLocation;
use crate::registry::Registry;
use crate::router::ResourcePath;
use crate::server::{RequestBody, ResponseBody, State};
use crate::status::ApiError;

/// What a proxy path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub plural: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub scheme: Option<String>,
    pub port: Option<String>,
    /// The path to ask the target for, from its `/`.
    pub path: String,
}

impl Target {
    /// Parses `/api/v1/nodes/{name}/proxy[/…]` and the namespaced
    /// `/api/v1/namespaces/{ns}/{pods|services}/{name}/proxy[/…]`.
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/api/v1/")?;
        let (plural, namespace, rest) = if let Some(rest) = rest.strip_prefix("nodes/") {
            ("nodes", None, rest)
        } else {
            let rest = rest.strip_prefix("namespaces/")?;
            let (namespace, rest) = rest.split_once('/')?;
            let (plural, rest) = rest.split_once('/')?;
            let plural = match plural {
                "pods" => "pods",
                "services" => "services",
                _ => return None,
            };
            (plural, Some(namespace.to_owned()), rest)
        };
        let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let tail = match rest.strip_prefix("proxy") {
            Some("") => "",
            Some(tail) if tail.starts_with('/') => tail,
            _ => return None,
        };
        // `name`, `name:port` or `scheme:name:port`, as upstream's SplitSchemeNamePort reads it.
        let parts: Vec<&str> = name.split(':').collect();
        let (scheme, name, port) = match parts.as_slice() {
            [name] => (None, *name, None),
            [name, port] => (None, *name, Some(*port)),
            [scheme @ ("http" | "https"), name, port] => (Some(*scheme), *name, Some(*port)),
            _ => return None,
        };
        if name.is_empty() {
            return None;
        }
        Some(Self {
            plural,
            namespace,
            name: name.to_owned(),
            scheme: scheme.map(str::to_owned),
            port: port.filter(|p| !p.is_empty()).map(str::to_owned),
            path: if tail.is_empty() {
                "/".into()
            } else {
                tail.into()
            },
        })
    }

    fn resource_path(&self) -> ResourcePath {
        ResourcePath {
            resource: r8s_api::find("", "v1", self.plural).expect("catalogue has the kind"),
            namespace: self.namespace.clone(),
            name: None,
            subresource: None,
        }
    }
}

/// Where a proxied request goes.
enum Upstream {
    Kubelet(KubeletLocation),
    Http { host: String, port: u16 },
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        message,
    )
}

fn parse_port(port: &str) -> Result<u16, ApiError> {
    port.parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| bad(format!("invalid port {port:?}")))
}

async fn upstream(registry: &Registry, target: &Target) -> Result<Upstream, ApiError> {
    if target.scheme.as_deref() == Some("https") && target.plural != "nodes" {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "proxying to HTTPS ports of pods and services is not built yet in r8s",
        ));
    }
    let object = registry.get(&target.resource_path(), &target.name).await?;
    match target.plural {
        "nodes" => {
            let kubelet = KubeletLocation::of(&object)
                .ok_or_else(|| unavailable(format!("node {:?} has no address", target.name)))?;
            match target.port.as_deref().map(parse_port).transpose()? {
                None => Ok(Upstream::Kubelet(kubelet)),
                Some(port) if port == kubelet.port && target.scheme.as_deref() != Some("http") => {
                    Ok(Upstream::Kubelet(kubelet))
                }
                Some(port) => Ok(Upstream::Http {
                    host: kubelet.host,
                    port,
                }),
            }
        }
        "pods" => pod_upstream(&object, target.port.as_deref()),
        _ => service_upstream(registry, &object, target).await,
    }
}

/// The pod's IP and the port asked for, else its first container's first port.
fn pod_upstream(pod: &Value, port: Option<&str>) -> Result<Upstream, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let host = pod["status"]["podIP"]
        .as_str()
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| bad(format!("pod {name:?} has no IP address yet")))?;
    let port = match port {
        Some(port) => parse_port(port)?,
        None => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| c["ports"][0]["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(80),
    };
    Ok(Upstream::Http {
        host: host.to_owned(),
        port,
    })
}

/// A ready address of the service's Endpoints on the service port named (by name or number;
/// the only port when none is named), as upstream's service `ResourceLocation` picks one.
async fn service_upstream(
    registry: &Registry,
    service: &Value,
    target: &Target,
) -> Result<Upstream, ApiError> {
    let ports = service["spec"]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wanted = target.port.as_deref().unwrap_or("");
    let port = ports
        .iter()
        .find(|p| {
            wanted.is_empty() && ports.len() == 1
                || p["name"].as_str() == Some(wanted)
                || p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(wanted)
        })
        .ok_or_else(|| {
            unavailable(format!(
                "no service port {wanted:?} found for service {:?}",
                target.name
            ))
        })?;
    let port_name = port["name"].as_str().unwrap_or("");
    let endpoints_path = ResourcePath {
        resource: r8s_api::find("", "v1", "endpoints").expect("catalogue has endpoints"),
        namespace: target.namespace.clone(),
        name: None,
        subresource: None,
    };
    let no_endpoints = || {
        unavailable(format!(
            "no endpoints available for service {:?}",
            target.name
        ))
    };
    let endpoints = registry
        .get(&endpoints_path, &target.name)
        .await
        .map_err(|_| no_endpoints())?;
    let candidates: Vec<(String, u16)> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|subset| {
            let port = subset["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str().unwrap_or("") == port_name)
                .and_then(|p| u16::try_from(p["port"].as_u64()?).ok());
            subset["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |a| Some((a["ip"].as_str()?.to_owned(), port?)))
        })
        .collect();
    if candidates.is_empty() {
        return Err(no_endpoints());
    }
    let pick = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as usize)
        % candidates.len();
    let (host, port) = candidates[pick].clone();
    Ok(Upstream::Http { host, port })
}

/// Headers that describe one hop, or carry the caller's credentials to the apiserver: not
/// passed on.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let hop = matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "host"
                | "authorization"
        ) || name.as_str().starts_with("impersonate-");
        if !hop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// A response body that streams `body`'s data frames; a broken upstream ends it.
pub fn streamed(body: Incoming) -> ResponseBody {
    let chunks = futures::stream::unfold(body, |mut body| async move {
        loop {
            match body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some((Ok::<_, Infallible>(Frame::data(data)), body)),
                    Err(_) => continue,
                },
                Err(e) => {
                    tracing::debug!(error = %e, "proxied stream broke");
                    return None;
                }
            }
        }
    });
    StreamBody::new(chunks).boxed()
}

async fn send_http(
    host: &str,
    port: u16,
    request: Request<RequestBody>,
) -> Result<Response<Incoming>, String> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| format!("dial tcp {host}:{port}: i/o timeout"))?
    .map_err(|e| format!("dial tcp {host}:{port}: connect: {}", e.kind()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "proxied connection ended with an error");
        }
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// What dials `host:port` over plain TCP, for an upgraded connection.
fn plain_connect(host: String, port: u16) -> r8s_httpstream::Connect {
    Box::pin(async move {
        tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map(|tcp| Box::new(tcp) as Box<dyn r8s_httpstream::Transport>)
            .map_err(|e| format!("dial tcp {host}:{port}: connect: {}", e.kind()))
    })
}

/// Proxies `request` to what `target` names; an upgrade (WebSocket, SPDY) becomes a joined
/// pair of connections once the target switches protocols.
pub async fn serve(
    state: &State,
    target: &Target,
    request: Request<RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    let upstream = upstream(&state.registry, target).await?;
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{}?{query}", target.path),
        None => target.path.clone(),
    };
    let authority = match &upstream {
        Upstream::Kubelet(location) => location.authority(),
        Upstream::Http { host, port } => KubeletLocation {
            host: host.clone(),
            port: *port,
        }
        .authority(),
    };
    if r8s_httpstream::upgrade::is_upgrade(request.headers()) {
        let connect = match &upstream {
            Upstream::Kubelet(location) => state.kubelets.connect(location),
            Upstream::Http { host, port } => plain_connect(host.clone(), *port),
        };
        let stream_target = r8s_httpstream::Target {
            authority,
            path_and_query,
        };
        return r8s_httpstream::upgrade::proxy(request, connect, &stream_target)
            .await
            .map_err(|e| match e {
                r8s_httpstream::ProxyError::UpgradeRequired
                | r8s_httpstream::ProxyError::BadRequest(_) => bad(e.to_string()),
                other => unavailable(format!("error trying to reach {}: {other}", target.plural)),
            });
    }
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::builder()
        .method(parts.method)
        .uri(&path_and_query)
        .body(body)
        .map_err(|e| bad(format!("invalid proxy path: {e}")))?;
    *outgoing.headers_mut() = forwardable(&parts.headers);
    outgoing.headers_mut().insert(
        header::HOST,
        HeaderValue::from_str(&authority).map_err(|e| bad(e.to_string()))?,
    );
    let answer = match &upstream {
        Upstream::Kubelet(location) => state.kubelets.send(location, outgoing).await,
        Upstream::Http { host, port } => send_http(host, *port, outgoing).await,
    }
    .map_err(|message| {
        unavailable(format!(
            "error trying to reach {}: {message}",
            target.plural
        ))
    })?;
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(streamed(body));
    *response.status_mut() = parts.status;
    *response.headers_mut() = forwardable(&parts.headers);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_name_their_target() {
        let t = Target::parse("/api/v1/nodes/n1/proxy/stats/summary").unwrap();
        assert_eq!(
            (t.plural, t.name.as_str(), t.path.as_str(), t.port),
            ("nodes", "n1", "/stats/summary", None)
        );
        let t = Target::parse("/api/v1/namespaces/ns/pods/http:web:8080/proxy/").unwrap();
        assert_eq!(t.namespace.as_deref(), Some("ns"));
        assert_eq!(
            (t.scheme.as_deref(), t.name.as_str(), t.port.as_deref()),
            (Some("http"), "web", Some("8080"))
        );
        assert_eq!(t.path, "/");
        let t = Target::parse("/api/v1/namespaces/ns/services/svc:http/proxy").unwrap();
        assert_eq!(
            (t.plural, t.port.as_deref(), t.path.as_str()),
            ("services", Some("http"), "/")
        );
        for not_proxy in [
            "/api/v1/nodes/n1",
            "/api/v1/nodes/n1/status",
            "/api/v1/nodes/n1/proxyx",
            "/api/v1/namespaces/ns/configmaps/c/proxy/x",
            "/apis/apps/v1/nodes/n1/proxy",
            "/api/v1/nodes/a:b:c:d/proxy",
        ] {
            assert_eq!(Target::parse(not_proxy), None, "{not_proxy}");
        }
    }

    #[test]
    fn credentials_and_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        headers.insert("impersonate-user", HeaderValue::from_static("u"));
        headers.insert("connection", HeaderValue::from_static("close"));
        headers.insert("accept", HeaderValue::from_static("text/plain"));
        let out = forwardable(&headers);
        assert_eq!(out.len(), 1);
        assert_eq!(out["accept"], "text/plain");
    }

    #[test]
    fn pods_are_reached_on_the_named_or_first_declared_port() {
        let pod = serde_json::json!({
            "metadata": { "name": "web" },
            "spec": { "containers": [{ "name": "a" }, { "name": "b", "ports": [{ "containerPort": 8080 }] }] },
            "status": { "podIP": "10.244.0.5" },
        });
        let Ok(Upstream::Http { host, port }) = pod_upstream(&pod, None) else {
            panic!()
        };
        assert_eq!((host.as_str(), port), ("10.244.0.5", 8080));
        let Ok(Upstream::Http { port, .. }) = pod_upstream(&pod, Some("9000")) else {
            panic!()
        };
        assert_eq!(port, 9000);
        let pending = serde_json::json!({ "metadata": { "name": "web" }, "status": {} });
        assert!(pod_upstream(&pending, None).is_err());
    }
}
