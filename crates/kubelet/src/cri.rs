//! The CRI v1 client: the generated `runtime.v1` messages and service clients (from
//! `proto/cri.proto`), and a connection to the runtime's Unix socket.

use std::io;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The generated CRI v1 messages and clients (package `runtime.v1`).
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    missing_docs,
    rustdoc::all,
    unreachable_pub
)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

use v1::image_service_client::ImageServiceClient;
use v1::runtime_service_client::RuntimeServiceClient;

/// The largest response either client accepts. tonic's default (4 MiB) is too small for
/// ListImages / ListContainers on a busy node; the kubelet uses 16 MiB too.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported CRI endpoint {0:?}: expected unix:///path/to.sock or a socket path")]
    Endpoint(String),
    #[error("cannot connect to the CRI runtime at unix://{}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
}

/// The socket path of a CRI endpoint: `unix:///run/containerd/containerd.sock`, or the bare
/// path `/run/containerd/containerd.sock`. Other schemes (tcp, npipe, ...) are not supported.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, Error> {
    let path = match endpoint.strip_prefix("unix://") {
        Some(path) => path,
        None if endpoint.contains("://") || endpoint.starts_with("unix:") => {
            return Err(Error::Endpoint(endpoint.to_string()));
        }
        None => endpoint,
    };
    if path.is_empty() {
        return Err(Error::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// Connects to the CRI runtime listening on `endpoint` (see [`socket_path`]). The connection is
/// made (and the HTTP/2 handshake done) before this returns; the channel reconnects to the same
/// socket by itself if the runtime restarts.
pub async fn connect(endpoint: &str) -> Result<Channel, Error> {
    let path = socket_path(endpoint)?;
    connect_path(&path)
        .await
        .map_err(|source| Error::Connect { path, source })
}

async fn connect_path(path: &Path) -> io::Result<Channel> {
    let socket = path.to_path_buf();
    // The URI is never dialled: every connection goes to the socket.
    Endpoint::try_from("http://[::]:50051")
        .map_err(io::Error::other)?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .map_err(|e| io_cause(&e))
}

/// The I/O error at the root of a transport error (e.g. "No such file or directory"), which is
/// what a reader wants to see, rather than tonic's bare "transport error".
fn io_cause(error: &tonic::transport::Error) -> io::Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return match io.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(io.kind(), io.to_string()),
            };
        }
        cause = e.source();
    }
    // No I/O error underneath: e.g. the peer does not speak HTTP/2. Keep the whole chain.
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        message.push_str(": ");
        message.push_str(&e.to_string());
        cause = e.source();
    }
    io::Error::other(message)
}

/// Both CRI v1 services of one runtime, over one connection.
#[derive(Debug, Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the runtime at `endpoint` (see [`connect`]).
    pub async fn connect(endpoint: &str) -> Result<Self, Error> {
        Ok(Self::new(connect(endpoint).await?))
    }

    /// Both clients over an existing channel, accepting responses up to [`MAX_MESSAGE_SIZE`].
    pub fn new(channel: Channel) -> Self {
        Self {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE),
            images: ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message;

    use super::v1::*;
    use super::*;

    #[test]
    fn endpoints() {
        let ok = |e: &str| socket_path(e).unwrap();
        assert_eq!(
            ok("unix:///run/containerd/containerd.sock"),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(ok("/run/cri.sock"), PathBuf::from("/run/cri.sock"));
        assert_eq!(ok("run/cri.sock"), PathBuf::from("run/cri.sock"));
        for bad in [
            "",
            "unix://",
            "unix:/run/cri.sock",
            "tcp://127.0.0.1:1234",
            "npipe:////./pipe/containerd",
            "http://localhost",
        ] {
            assert!(
                matches!(socket_path(bad), Err(Error::Endpoint(e)) if e == bad),
                "{bad:?} should be rejected"
            );
        }
    }

    #[tokio::test]
    async fn connect_error_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("missing.sock");
        let endpoint = format!("unix://{}", socket.display());
        let err = Cri::connect(&endpoint).await.unwrap_err();
        let Error::Connect { path, source } = &err else {
            panic!("unexpected error {err:?}")
        };
        assert_eq!(path, &socket);
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        let message = err.to_string();
        assert!(message.contains(&endpoint), "{message}");
        assert!(message.contains("No such file"), "{message}");
    }

    fn create_request() -> CreateContainerRequest {
        let sandbox = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "0b1c".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            hostname: "web".into(),
            log_directory: "/var/log/pods/default_web_0b1c".into(),
            dns_config: Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: vec![PortMapping {
                protocol: Protocol::Udp.into(),
                container_port: 53,
                host_port: 5353,
                host_ip: "0.0.0.0".into(),
            }],
            labels: HashMap::from([("io.kubernetes.pod.name".into(), "web".into())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/burstable/pod0b1c".into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod.into(),
                        pid: NamespaceMode::Container.into(),
                        ipc: NamespaceMode::Pod.into(),
                        ..Default::default()
                    }),
                    run_as_user: Some(Int64Value { value: 1000 }),
                    ..Default::default()
                }),
                sysctls: HashMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "nginx".into(),
                attempt: 2,
            }),
            image: Some(ImageSpec {
                image: "docker.io/library/nginx:1.25".into(),
                user_specified_image: "nginx:1.25".into(),
                ..Default::default()
            }),
            command: vec!["nginx".into()],
            args: vec!["-g".into(), "daemon off;".into()],
            working_dir: "/".into(),
            envs: vec![KeyValue {
                key: "PORT".into(),
                value: "80".into(),
            }],
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/var/lib/r8s/pods/0b1c/volumes/data".into(),
                readonly: true,
                propagation: MountPropagation::PropagationHostToContainer.into(),
                ..Default::default()
            }],
            devices: vec![Device {
                container_path: "/dev/fuse".into(),
                host_path: "/dev/fuse".into(),
                permissions: "rwm".into(),
            }],
            log_path: "nginx/2.log".into(),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 512,
                    memory_limit_in_bytes: 128 << 20,
                    oom_score_adj: 999,
                    hugepage_limits: vec![HugepageLimit {
                        page_size: "2MB".into(),
                        limit: 0,
                    }],
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["NET_BIND_SERVICE".into()],
                        drop_capabilities: vec!["ALL".into()],
                        ..Default::default()
                    }),
                    run_as_user: Some(Int64Value { value: 101 }),
                    run_as_group: Some(Int64Value { value: 101 }),
                    no_new_privs: true,
                    seccomp: Some(SecurityProfile {
                        profile_type: security_profile::ProfileType::RuntimeDefault.into(),
                        localhost_ref: String::new(),
                    }),
                    selinux_options: Some(SeLinuxOption {
                        level: "s0:c1,c2".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            stop_signal: Signal::Sigquit.into(),
            ..Default::default()
        };
        CreateContainerRequest {
            pod_sandbox_id: "f00d".into(),
            config: Some(config),
            sandbox_config: Some(sandbox),
        }
    }

    #[test]
    fn create_container_round_trip() {
        let request = create_request();
        let bytes = request.encode_to_vec();
        let decoded = CreateContainerRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, request);
        let config = decoded.config.unwrap();
        let security = config
            .linux
            .as_ref()
            .unwrap()
            .security_context
            .as_ref()
            .unwrap();
        assert_eq!(security.run_as_group, Some(Int64Value { value: 101 }));
        assert_eq!(
            config.mounts[0].propagation(),
            MountPropagation::PropagationHostToContainer
        );
        assert_eq!(config.stop_signal(), Signal::Sigquit);
    }

    /// Spot checks of field numbers on the wire (tag = number << 3 | wire type), for fields
    /// whose numbers are out of declaration order upstream.
    #[test]
    fn wire_field_numbers() {
        fn tag(number: u32, wire_type: u32) -> Vec<u8> {
            let mut key = Vec::new();
            prost::encoding::encode_varint(u64::from(number << 3 | wire_type), &mut key);
            key
        }
        let image = ImageSpec {
            user_specified_image: "x".into(),
            ..Default::default()
        };
        assert_eq!(image.encode_to_vec(), [tag(18, 2), vec![1, b'x']].concat());

        let security = LinuxContainerSecurityContext {
            run_as_group: Some(Int64Value { value: 7 }),
            ..Default::default()
        };
        assert_eq!(
            security.encode_to_vec(),
            [tag(12, 2), vec![2, 0x08, 7]].concat()
        );

        let sandbox_security = LinuxSandboxSecurityContext {
            run_as_group: Some(Int64Value { value: 7 }),
            ..Default::default()
        };
        assert_eq!(
            sandbox_security.encode_to_vec(),
            [tag(8, 2), vec![2, 0x08, 7]].concat()
        );

        let status = ContainerStatus {
            image_id: "sha256:1".into(),
            ..Default::default()
        };
        assert_eq!(status.encode_to_vec()[..2], tag(17, 2)[..]);

        let config = ContainerConfig {
            stop_signal: Signal::Sigterm.into(),
            ..Default::default()
        };
        assert_eq!(config.encode_to_vec(), [tag(18, 0), vec![23]].concat());
    }
}
