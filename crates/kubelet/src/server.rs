//! The kubelet API: HTTPS on the node's IP and kubelet port (10250), what the API server calls
//! for `kubectl logs`, `exec`, `attach`, `cp` and `port-forward`. Every request needs a client
//! certificate from the cluster CA and is authorized as upstream's kubelet does it (see
//! [`auth`]); then `GET /healthz`, `GET /pods`, `GET /containerLogs/{ns}/{pod}/{container}`,
//! and the streams `/exec/…`, `/attach/…` and `/portForward/…` (see [`streaming`]) are served.

mod auth;
mod container_logs;
mod streaming;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use r8s_cluster::tls::Identity;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cri::Cri;

pub type Body = BoxBody<Bytes, Infallible>;

/// The kubelet API's TLS material, PEM.
#[derive(Clone)]
pub struct KubeletTls {
    /// The node's serving certificate and its key.
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA that client certificates must chain to (the cluster CA).
    pub client_ca_pem: String,
}

impl std::fmt::Debug for KubeletTls {
    // Keeps the private key out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletTls")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What the handlers need of the node agent.
pub struct Kubelet {
    pub client: kube::Client,
    pub cri: Cri,
    pub node_name: String,
    pub stats: Arc<crate::stats::Sampler>,
    pub started: std::time::SystemTime,
}

/// Binds `address` and serves the kubelet API there until the returned task is aborted.
pub async fn start(
    address: SocketAddr,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
    kubelet: Arc<Kubelet>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the kubelet API"))?;
    tracing::info!(%address, "kubelet API listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = serve(listener, TlsAcceptor::from(config), kubelet).await {
            tracing::error!("the kubelet API stopped: {e}");
        }
    }))
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    kubelet: Arc<Kubelet>,
) -> std::io::Result<()> {
    r8s_cluster::tls::serve_https(
        listener,
        acceptor,
        "kubelet API",
        move |identity, request| {
            let kubelet = kubelet.clone();
            async move { handle(&kubelet, identity.as_ref(), request).await }
        },
    )
    .await
}

/// A plain-text answer, as upstream's kubelet writes its errors.
pub(crate) fn text(code: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_owned())).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A 200 answer of `content_type`.
fn typed(content_type: &'static str, body: String) -> Response<Body> {
    let mut response = text(StatusCode::OK, &body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Usage is known only after the first sample, moments after the agent starts.
fn not_sampled() -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "resource usage has not been sampled yet",
    )
}

/// `GET /metrics`: the kubelet's own gauges, from the latest sample and this process.
fn own_metrics(kubelet: &Kubelet) -> String {
    let (pods, containers) = kubelet.stats.latest().map_or((0, 0), |s| {
        (
            s.pods.len(),
            s.pods.iter().map(|p| p.containers.len()).sum(),
        )
    });
    let started = kubelet
        .started
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096);
    format!(
        "# HELP kubelet_node_name [ALPHA] The node's name. The count is always 1.\n\
         # TYPE kubelet_node_name gauge\n\
         kubelet_node_name{{node=\"{node}\"}} 1\n\
         # HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox\n\
         # TYPE kubelet_running_pods gauge\n\
         kubelet_running_pods {pods}\n\
         # HELP kubelet_running_containers [ALPHA] Number of containers currently running\n\
         # TYPE kubelet_running_containers gauge\n\
         kubelet_running_containers{{container_state=\"running\"}} {containers}\n\
         # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\n\
         process_resident_memory_bytes {resident}\n\
         # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
         # TYPE process_start_time_seconds gauge\n\
         process_start_time_seconds {started}\n",
        node = kubelet.node_name,
    )
}

/// A path segment with its `%xx` escapes decoded.
fn decode(segment: &str) -> String {
    let encoded = format!("s={}", segment.replace('+', "%2B"));
    form_urlencoded::parse(encoded.as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

async fn handle(
    kubelet: &Arc<Kubelet>,
    identity: Option<&Identity>,
    request: Request<Incoming>,
) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let attributes = auth::attributes(&method, &path, &kubelet.node_name);
    if let Err(refusal) = auth::authorize(&kubelet.client, identity, &attributes).await {
        tracing::debug!(%method, %path, user = ?identity.map(|i| &i.user), "kubelet API refused: {}", refusal.message().trim_end());
        return text(refusal.status(), &refusal.message());
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let stream_method = method == Method::GET || method == Method::POST;
    let response = match (segments.as_slice(), &method) {
        (["healthz"], &Method::GET) => text(StatusCode::OK, "ok"),
        (["pods"] | ["pods", ""], &Method::GET) => pods(kubelet).await,
        (["stats", "summary"], &Method::GET) => match kubelet.stats.latest() {
            Some(snapshot) => typed(
                "application/json",
                crate::stats::summary(&snapshot).to_string(),
            ),
            None => not_sampled(),
        },
        (["metrics", "resource"], &Method::GET) => match kubelet.stats.latest() {
            Some(snapshot) => typed(
                PROMETHEUS_TEXT,
                crate::stats::prometheus_resource(&snapshot),
            ),
            None => not_sampled(),
        },
        (["metrics"], &Method::GET) => typed(PROMETHEUS_TEXT, own_metrics(kubelet)),
        (["containerLogs", namespace, pod, container], &Method::GET)
            if !namespace.is_empty() && !pod.is_empty() && !container.is_empty() =>
        {
            container_logs::serve(kubelet, namespace, pod, container, request.uri().query()).await
        }
        ([kind @ ("exec" | "attach"), namespace, pod, container], _) if stream_method => {
            let coordinates = (*namespace, *pod, None, *container);
            streaming::command(kubelet, streaming::Command::of(kind), coordinates, request).await
        }
        ([kind @ ("exec" | "attach"), namespace, pod, uid, container], _) if stream_method => {
            let coordinates = (*namespace, *pod, Some(*uid), *container);
            streaming::command(kubelet, streaming::Command::of(kind), coordinates, request).await
        }
        (["portForward", namespace, pod, uid @ ..], _) if stream_method && uid.len() <= 1 => {
            streaming::port_forward(kubelet, (namespace, pod, uid.first().copied()), request).await
        }
        (
            ["healthz"]
            | ["stats", "summary"]
            | ["metrics"]
            | ["metrics", "resource"]
            | ["pods"]
            | ["pods", ""]
            | ["containerLogs", _, _, _]
            | ["exec" | "attach", _, _, _]
            | ["exec" | "attach", _, _, _, _]
            | ["portForward", _, _]
            | ["portForward", _, _, _],
            _,
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed"),
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "kubelet API request");
    response
}

/// The pod `namespace/name` if it is bound to this node (what upstream's pod manager holds);
/// the error is text for an answer.
pub(crate) async fn bound_pod(
    kubelet: &Kubelet,
    namespace: &str,
    name: &str,
) -> Result<Option<Pod>, String> {
    let pods: Api<Pod> = Api::namespaced(kubelet.client.clone(), namespace);
    match pods.get_opt(name).await {
        Ok(pod) => Ok(pod.filter(|pod| {
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
                == Some(kubelet.node_name.as_str())
        })),
        Err(e) => Err(format!("cannot read pod {name:?}: {e}")),
    }
}

/// `GET /pods`: the pods bound to this node, as a v1 PodList.
async fn pods(kubelet: &Kubelet) -> Response<Body> {
    let api: Api<Pod> = Api::all(kubelet.client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={}", kubelet.node_name));
    match api.list(&params).await {
        Ok(list) => {
            let body = serde_json::json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": list.items,
            });
            typed("application/json", body.to_string())
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot list this node's pods: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_decoded() {
        assert_eq!(decode("web-1"), "web-1");
        assert_eq!(decode("a%20b%2Fc"), "a b/c");
        assert_eq!(decode("a+b"), "a+b");
    }
}
