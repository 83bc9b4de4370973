//! `/exec`, `/attach` and `/portForward`: the runtime is asked (CRI `Exec`, `Attach`,
//! `PortForward`) for a URL on its streaming server, and the client's upgrade request is proxied
//! there, as upstream's kubelet does with streaming not redirected (`getExec`, `getAttach`,
//! `getPortForward`, `proxyStream`). Errors are plain text with upstream's words.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;
use r8s_httpstream::{Connect, ProxyError, Target, Transport, tunnel, upgrade};
use tokio::net::TcpStream;

use super::{Body, Kubelet, bound_pod, text};
use crate::cri::v1;
use crate::pods::spec::{CONTAINER_NAME, POD_UID};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which command stream is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Exec,
    Attach,
}

impl Command {
    /// The stream of a path's first segment: `exec`, else `attach`.
    pub fn of(segment: &str) -> Self {
        if segment == "exec" {
            Self::Exec
        } else {
            Self::Attach
        }
    }
}

/// The streams a request wants, as upstream's `remotecommand.NewOptions` reads them: `1` is
/// true; with a TTY stderr is merged into stdout; at least one stream is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let on = |name: &str| {
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .find(|(key, _)| key == name)
                .is_some_and(|(_, value)| value == "1")
        };
        let tty = on("tty");
        let options = Self {
            stdin: on("input"),
            stdout: on("output"),
            stderr: on("error") && !tty,
            tty,
        };
        if !options.stdin && !options.stdout && !options.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(options)
    }
}

/// The ports of a WebSocket port-forward (`?port=80,443`), as upstream's `NewV4Options`;
/// SPDY clients name them per stream instead.
pub fn websocket_ports(query: Option<&str>) -> Result<Vec<i32>, String> {
    let values: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == "port")
        .map(|(_, value)| value.into_owned())
        .collect();
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for port in value.split(',') {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("unable to parse {value:?} as a port"))?;
            if port < 1 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(i32::from(port));
        }
    }
    Ok(ports)
}

/// A CRI failure as upstream's `streaming.WriteError` answers it.
fn runtime_error(status: &tonic::Status) -> Response<Body> {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(
        code,
        &format!(
            "rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        ),
    )
}

/// The pod `namespace/name` bound to this node whose UID is `uid` when one is given; the
/// error is the answer.
async fn pod(
    kubelet: &Kubelet,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<Pod, Response<Body>> {
    match bound_pod(kubelet, namespace, name).await {
        Ok(Some(pod)) if uid.is_none_or(|uid| pod.metadata.uid.as_deref() == Some(uid)) => Ok(pod),
        Ok(Some(_)) => Err(text(StatusCode::NOT_FOUND, "pod not found")),
        Ok(None) => Err(text(StatusCode::NOT_FOUND, "pod does not exist")),
        Err(message) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, &message)),
    }
}

/// Serves `/exec/{namespace}/{pod}[/{uid}]/{container}` and `/attach/…`.
pub async fn command(
    kubelet: &Arc<Kubelet>,
    kind: Command,
    (namespace, name, uid, container): (&str, &str, Option<&str>, &str),
    request: Request<Incoming>,
) -> Response<Body> {
    let query = request.uri().query();
    let options = match StreamOptions::parse(query) {
        Ok(options) => options,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    let command: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == "command")
        .map(|(_, value)| value.into_owned())
        .collect();
    let pod = match pod(kubelet, namespace, name, uid).await {
        Ok(pod) => pod,
        Err(answer) => return answer,
    };
    if !upgrade::is_upgrade(request.headers()) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ProxyError::UpgradeRequired.to_string(),
        );
    }
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let container_id = match running_container(kubelet, &pod_uid, container).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("container not found ({container:?})"),
            );
        }
        Err(status) => return runtime_error(&status),
    };
    let mut runtime = kubelet.cri.runtime.clone();
    let url = match kind {
        Command::Exec => runtime
            .exec(v1::ExecRequest {
                container_id,
                cmd: command,
                tty: options.tty,
                stdin: options.stdin,
                stdout: options.stdout,
                stderr: options.stderr,
            })
            .await
            .map(|answer| answer.into_inner().url),
        Command::Attach => runtime
            .attach(v1::AttachRequest {
                container_id,
                stdin: options.stdin,
                tty: options.tty,
                stdout: options.stdout,
                stderr: options.stderr,
            })
            .await
            .map(|answer| answer.into_inner().url),
    };
    match url {
        Ok(url) => proxy(request, &url).await,
        Err(status) => runtime_error(&status),
    }
}

/// Serves `/portForward/{namespace}/{pod}[/{uid}]`.
pub async fn port_forward(
    kubelet: &Arc<Kubelet>,
    (namespace, name, uid): (&str, &str, Option<&str>),
    request: Request<Incoming>,
) -> Response<Body> {
    // A tunnelling WebSocket names its ports per stream, as SPDY does; other WebSockets in
    // the query.
    let headers = request.headers();
    let port = if upgrade::is_websocket(headers) && !tunnel::wants_tunnel(headers) {
        match websocket_ports(request.uri().query()) {
            Ok(ports) => ports,
            Err(message) => return text(StatusCode::BAD_REQUEST, &message),
        }
    } else {
        Vec::new()
    };
    let pod = match pod(kubelet, namespace, name, uid).await {
        Ok(pod) => pod,
        Err(answer) => return answer,
    };
    if !upgrade::is_upgrade(request.headers()) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ProxyError::UpgradeRequired.to_string(),
        );
    }
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let sandbox = match ready_sandbox(kubelet, &pod_uid).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("pod not found (\"{name}_{namespace}\")"),
            );
        }
        Err(status) => return runtime_error(&status),
    };
    let answer = kubelet
        .cri
        .runtime
        .clone()
        .port_forward(v1::PortForwardRequest {
            pod_sandbox_id: sandbox,
            port,
        })
        .await;
    match answer {
        Ok(answer) => proxy(request, &answer.into_inner().url).await,
        Err(status) => runtime_error(&status),
    }
}

/// The running container `name` of the pod with `pod_uid`, as upstream's `findContainer`
/// looks among running containers only.
async fn running_container(
    kubelet: &Kubelet,
    pod_uid: &str,
    name: &str,
) -> Result<Option<String>, tonic::Status> {
    let filter = v1::ContainerFilter {
        state: Some(v1::ContainerStateValue {
            state: v1::ContainerState::ContainerRunning as i32,
        }),
        label_selector: HashMap::from([
            (POD_UID.to_owned(), pod_uid.to_owned()),
            (CONTAINER_NAME.to_owned(), name.to_owned()),
        ]),
        ..Default::default()
    };
    let mut containers = kubelet
        .cri
        .runtime
        .clone()
        .list_containers(v1::ListContainersRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .containers;
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(containers.into_iter().next().map(|c| c.id))
}

/// The newest ready sandbox of the pod with `pod_uid`.
async fn ready_sandbox(kubelet: &Kubelet, pod_uid: &str) -> Result<Option<String>, tonic::Status> {
    let filter = v1::PodSandboxFilter {
        state: Some(v1::PodSandboxStateValue {
            state: v1::PodSandboxState::SandboxReady as i32,
        }),
        label_selector: HashMap::from([(POD_UID.to_owned(), pod_uid.to_owned())]),
        ..Default::default()
    };
    let mut sandboxes = kubelet
        .cri
        .runtime
        .clone()
        .list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .items;
    sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(sandboxes.into_iter().next().map(|s| s.id))
}

/// Where a runtime's streaming URL points.
pub fn stream_target(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("bad stream URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "stream URL {url:?}: only plain http streaming servers are supported"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("stream URL {url:?} has no host"))?
        .to_string();
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), ToString::to_string);
    Ok(Target {
        authority,
        path_and_query,
    })
}

/// Proxies the client's upgrade to the runtime's streaming server at `url`; failures are
/// answered as upstream's kubelet responder does (500 and the error's text).
async fn proxy(request: Request<Incoming>, url: &str) -> Response<Body> {
    let target = match stream_target(url) {
        Ok(target) => target,
        Err(message) => return text(StatusCode::INTERNAL_SERVER_ERROR, &message),
    };
    let authority = target.authority.clone();
    let connect: Connect = Box::pin(async move {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                Ok(Box::new(tcp) as Box<dyn Transport>)
            }
            Ok(Err(e)) => Err(format!("dial tcp {authority}: {e}")),
            Err(_) => Err(format!("dial tcp {authority}: i/o timeout")),
        }
    });
    match upgrade::proxy(request, connect, &target).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, "error while proxying a stream to the runtime");
            text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_options_follow_upstreams_new_options() {
        let options = StreamOptions::parse(Some("command=ls&input=1&output=1&error=1")).unwrap();
        assert_eq!(
            options,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        // A TTY merges stderr into stdout.
        let tty = StreamOptions::parse(Some("output=1&error=1&tty=1")).unwrap();
        assert!(tty.tty && tty.stdout && !tty.stderr);
        // Only `1` is true.
        let err = StreamOptions::parse(Some("input=true&output=0")).unwrap_err();
        assert_eq!(err, "you must specify at least 1 of stdin, stdout, stderr");
    }

    #[test]
    fn websocket_port_forwards_name_their_ports_in_the_query() {
        assert_eq!(
            websocket_ports(Some("port=80,443&port=8080")).unwrap(),
            [80, 443, 8080]
        );
        assert_eq!(
            websocket_ports(None).unwrap_err(),
            "query parameter \"port\" is required"
        );
        assert!(websocket_ports(Some("port=0")).is_err());
        assert!(websocket_ports(Some("port=http")).is_err());
    }

    #[test]
    fn the_runtimes_stream_url_becomes_the_target() {
        let target = stream_target("http://127.0.0.1:38451/exec/Ab3dE").unwrap();
        assert_eq!(
            target,
            Target {
                authority: "127.0.0.1:38451".into(),
                path_and_query: "/exec/Ab3dE".into(),
            }
        );
        assert!(stream_target("https://127.0.0.1:1/exec/x").is_err());
        assert!(stream_target("not a url").is_err());
    }

    #[test]
    fn runtime_errors_are_answered_as_upstreams_write_error() {
        let missing = runtime_error(&tonic::Status::not_found("no such container"));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let other = runtime_error(&tonic::Status::unknown("boom"));
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
