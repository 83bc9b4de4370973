//! `pods/exec`, `pods/attach` and `pods/portforward`: the options are read and the container
//! chosen as upstream's `ExecLocation`/`AttachLocation`/`PortForwardLocation` do, then the
//! client's upgraded connection goes to the node's kubelet (`/exec/{ns}/{pod}/{container}`,
//! `/attach/…`, `/portForward/{ns}/{pod}`), over `r8s_httpstream`:
//!
//! - WebSocket `v5.channel.k8s.io` (kubectl's first choice for exec and attach) is translated
//!   to SPDY, which is what kubelets and runtimes speak;
//! - WebSocket `SPDY/3.1+portforward.k8s.io` (kubectl's first choice for port-forward) is
//!   tunnelled to a SPDY upgrade;
//! - anything else (SPDY, older WebSocket protocols) is proxied as it is.

use http::{Method, Request, Response, StatusCode};
use r8s_httpstream::remotecommand::{self, Options};
use r8s_httpstream::{ProxyError, Target, tunnel, upgrade};

use crate::authz::{self, User};
use crate::kubelet_client::KubeletLocation;
use crate::pod_log::{choose_container, escape, flag};
use crate::router::{ResourcePath, Route};
use crate::server::{RequestBody, ResponseBody, State};
use crate::status::ApiError;

/// Which stream subresource is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Exec,
    Attach,
    PortForward,
}

impl Subresource {
    pub fn of(name: &str) -> Option<Self> {
        match name {
            "exec" => Some(Self::Exec),
            "attach" => Some(Self::Attach),
            "portforward" => Some(Self::PortForward),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::PortForward => "portforward",
        }
    }

    /// The kubelet's path segment.
    fn kubelet_path(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::PortForward => "portForward",
        }
    }
}

/// The query of a stream request (upstream's `PodExecOptions`, `PodAttachOptions` and
/// `PodPortForwardOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamQuery {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub ports: Vec<u16>,
}

impl StreamQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut parsed = Self::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "container" if !value.is_empty() => parsed.container = Some(value.into_owned()),
                "command" => parsed.command.push(value.into_owned()),
                "stdin" => parsed.stdin = flag(&value),
                "stdout" => parsed.stdout = flag(&value),
                "stderr" => parsed.stderr = flag(&value),
                "tty" => parsed.tty = flag(&value),
                "ports" => {
                    for port in value.split(',').filter(|p| !p.is_empty()) {
                        let port = port.parse().map_err(|_| {
                            ApiError::bad_request(format!(
                                "strconv.ParseInt: parsing {port:?}: invalid syntax"
                            ))
                        })?;
                        parsed.ports.push(port);
                    }
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// The kubelet's query, as upstream's `streamParams` writes it (keys sorted, as Go's
    /// `url.Values.Encode`).
    pub fn kubelet_query(&self, subresource: Subresource) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if subresource == Subresource::PortForward {
            if !self.ports.is_empty() {
                let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
                query.append_pair("port", &ports.join(","));
            }
            return query.finish();
        }
        if subresource == Subresource::Exec {
            for command in &self.command {
                query.append_pair("command", command);
            }
        }
        for (key, on) in [
            ("error", self.stderr),
            ("input", self.stdin),
            ("output", self.stdout),
            ("tty", self.tty),
        ] {
            if on {
                query.append_pair(key, "1");
            }
        }
        query.finish()
    }
}

/// Serves a stream subresource of a pod for `user`.
pub async fn serve(
    state: &State,
    path: &ResourcePath,
    request: Request<RequestBody>,
    user: &User,
    subresource: Subresource,
) -> Result<Response<ResponseBody>, ApiError> {
    let method = request.method().clone();
    if method != Method::GET && method != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "pods/{} accepts only connect (GET or POST)",
            subresource.name()
        )));
    }
    let Some(name) = path.name.as_deref() else {
        return Err(ApiError::not_found_path());
    };
    // A WebSocket upgrade is a GET, authorized as `get`; it must also be allowed to `create`,
    // as upstream's AuthorizePodWebsocketUpgradeCreatePermission asks.
    if method == Method::GET && upgrade::is_websocket(request.headers()) {
        let attributes = authz::request_info::attributes(
            &Method::POST,
            request.uri().path(),
            request.uri().query(),
            &Route::Resource(path.clone()),
        );
        state.authorizer.check(user, &attributes)?;
    }
    let query = StreamQuery::parse(request.uri().query())?;
    let pods = ResourcePath {
        subresource: None,
        ..path.clone()
    };
    let pod = state.registry.get(&pods, name).await?;
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut kubelet_path = format!(
        "/{}/{}/{}",
        subresource.kubelet_path(),
        escape(namespace),
        escape(name)
    );
    if subresource != Subresource::PortForward {
        let container = choose_container(&pod, query.container.as_deref())?;
        kubelet_path = format!("{kubelet_path}/{}", escape(&container));
    }
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let location = KubeletLocation::find(&state.registry, node_name).await?;
    let kubelet_query = query.kubelet_query(subresource);
    if !kubelet_query.is_empty() {
        kubelet_path = format!("{kubelet_path}?{kubelet_query}");
    }
    let target = Target {
        authority: location.authority(),
        path_and_query: kubelet_path,
    };
    let connect = state.kubelets.connect(&location);
    let headers = request.headers();
    let answer = match subresource {
        Subresource::Exec | Subresource::Attach if remotecommand::wants_translation(headers) => {
            let options = Options {
                stdin: query.stdin,
                stdout: query.stdout,
                stderr: query.stderr,
                tty: query.tty,
            };
            remotecommand::translate(request, connect, target, options)
        }
        Subresource::PortForward if tunnel::wants_tunnel(headers) => {
            tunnel::tunnel(request, connect, &target).await
        }
        _ => upgrade::proxy(request, connect, &target).await,
    };
    answer.map_err(|e| match e {
        ProxyError::UpgradeRequired | ProxyError::BadRequest(_) => {
            ApiError::bad_request(e.to_string())
        }
        ProxyError::Dial(_) | ProxyError::Backend(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "", e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_options_become_the_kubelets_query() {
        let query = StreamQuery::parse(Some(
            "command=sh&command=-c&command=exit+3&container=app&stdin=true&stdout=1&stderr=false&tty=true",
        ))
        .unwrap();
        assert_eq!(query.container.as_deref(), Some("app"));
        assert_eq!(query.command, ["sh", "-c", "exit 3"]);
        assert!(query.stdin && query.stdout && !query.stderr && query.tty);
        assert_eq!(
            query.kubelet_query(Subresource::Exec),
            "command=sh&command=-c&command=exit+3&input=1&output=1&tty=1"
        );
        // attach has no command.
        assert_eq!(
            query.kubelet_query(Subresource::Attach),
            "input=1&output=1&tty=1"
        );
    }

    #[test]
    fn port_forward_ports_are_passed_as_one_list() {
        let query = StreamQuery::parse(Some("ports=80&ports=443,8080")).unwrap();
        assert_eq!(query.ports, [80, 443, 8080]);
        assert_eq!(
            query.kubelet_query(Subresource::PortForward),
            "port=80%2C443%2C8080"
        );
        assert_eq!(
            StreamQuery::default().kubelet_query(Subresource::PortForward),
            ""
        );
        let err = StreamQuery::parse(Some("ports=http")).unwrap_err();
        assert_eq!(err.code, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn subresources_map_to_the_kubelets_paths() {
        assert_eq!(
            Subresource::of("portforward").map(Subresource::kubelet_path),
            Some("portForward")
        );
        assert_eq!(Subresource::of("exec"), Some(Subresource::Exec));
        assert_eq!(Subresource::of("log"), None);
    }
}
