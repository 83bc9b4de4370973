//! The node agent: starts (or connects to) the container runtime, imports the images it
//! needs, registers the Node, writes the pod network config, and runs the pods.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use kube::Client;
use r8s_network::routes;

use crate::containerd::{Containerd, ContainerdConfig};
use crate::cri::{Cri, v1};
use crate::events::Recorder;
use crate::node::{self, NodeFacts};
use crate::pods::{self, Shared};
use crate::server::{self, Kubelet, KubeletTls};
use crate::{cni, images, stats};

/// What `r8s agent` (and the agent inside `r8s server`) is told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `<data-dir>/agent`.
    pub dir: PathBuf,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub node_labels: BTreeMap<String, String>,
    /// Another CRI runtime to use instead of starting containerd (`unix:///…`).
    pub container_runtime_endpoint: Option<String>,
    pub containerd_binary: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub registry_mirrors: Vec<(String, String)>,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub max_pods: u32,
    pub kubelet_port: u16,
    /// How the kubelet API gets its certificate; without one it is not served.
    pub tls: Option<ServingTls>,
    /// The cgroup (in every hierarchy) that holds this node's pods.
    pub cgroup_root: String,
    /// The cluster's pod range: unreachable beneath the routes to each node's pods, and the
    /// service proxy masquerades traffic to services from outside it.
    pub cluster_cidr: String,
    /// The service range: local to the node beneath the service proxy's rules.
    pub service_cidr: String,
    /// Where the node's cluster DNS server forwards names outside the cluster domain; `None`:
    /// the nameservers of the host's resolv.conf.
    pub dns_upstream: Option<Vec<std::net::SocketAddr>>,
    /// Serve Ingresses of class `r8s` on ports 80 and 443 of the node's address.
    pub ingress: bool,
}

/// Where the kubelet API's serving certificate comes from.
#[derive(Debug, Clone)]
pub enum ServingTls {
    /// Given (the agent of `r8s server` has the CA at hand).
    Given(KubeletTls),
    /// Asked of the `kubelet-serving` signer once the Node is registered (a joined node);
    /// clients are verified against this CA (PEM).
    Requested { client_ca_pem: String },
}

impl AgentConfig {
    pub fn new(dir: PathBuf, node_name: String, node_ip: IpAddr) -> Self {
        Self {
            cgroup_root: format!("/r8s/{node_name}"),
            dir,
            node_labels: node::default_labels(&node_name),
            node_name,
            node_ip,
            container_runtime_endpoint: None,
            containerd_binary: "containerd".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
            registry_mirrors: Vec::new(),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            max_pods: 110,
            kubelet_port: 10250,
            tls: None,
            cluster_cidr: "10.244.0.0/16".into(),
            service_cidr: "10.96.0.0/12".into(),
            dns_upstream: None,
            ingress: true,
        }
    }

    pub fn containerd(&self) -> ContainerdConfig {
        ContainerdConfig {
            dir: self.dir.join("containerd"),
            cni_bin_dir: self.cni_bin_dir.clone(),
            cni_conf_dir: self.dir.join("cni").join("net.d"),
            sandbox_image: images::PAUSE_IMAGE.into(),
            registry_mirrors: self.registry_mirrors.clone(),
        }
    }
}

/// The address of the interface that holds the default route, else the first address that is
/// not loopback: what upstream's kubelet picks when `--node-ip` is not given.
pub fn detect_node_ip() -> Option<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_iface = routes.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"00000000")).then(|| fields[0].to_string())
    });
    let output = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let addresses: Vec<(String, IpAddr)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let iface = fields.get(1)?.to_string();
            let ip = fields.get(3)?.split('/').next()?.parse().ok()?;
            Some((iface, ip))
        })
        .filter(|(_, ip): &(String, IpAddr)| !ip.is_loopback())
        .collect();
    default_iface
        .and_then(|iface| {
            addresses
                .iter()
                .find(|(i, _)| *i == iface)
                .map(|(_, ip)| *ip)
        })
        .or_else(|| addresses.first().map(|(_, ip)| *ip))
}

/// A running agent: the runtime it supervises stops with it.
pub struct Agent {
    containerd: Option<Containerd>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    api: Option<tokio::task::JoinHandle<()>>,
    /// Tasks that live as long as the agent: usage sampling, pod routes.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Agent {
    pub async fn start(client: Client, config: AgentConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create {}", config.dir.display()))?;
        let (containerd, endpoint) = match &config.container_runtime_endpoint {
            Some(endpoint) => (None, endpoint.clone()),
            None => {
                let containerd =
                    Containerd::start(&config.containerd(), &config.containerd_binary)?;
                let endpoint = format!("unix://{}", containerd.socket().display());
                (Some(containerd), endpoint)
            }
        };
        let cri = connect_when_up(&endpoint, Duration::from_secs(60)).await?;
        let version = cri
            .runtime
            .clone()
            .version(v1::VersionRequest {
                version: "v1".into(),
            })
            .await
            .context("the container runtime does not answer CRI v1")?
            .into_inner();
        if let Some(containerd) = &containerd {
            let scratch = config.dir.join("tmp");
            std::fs::create_dir_all(&scratch)?;
            images::import_at_start(containerd.socket(), &config.dir.join("images"), &scratch)
                .await
                .context("cannot import the agent's images")?;
        }
        let capacity = node::machine_capacity(&config.dir, config.max_pods);
        let facts = NodeFacts {
            name: config.node_name.clone(),
            ip: config.node_ip,
            kubelet_port: config.kubelet_port,
            labels: config.node_labels.clone(),
            runtime_version: format!("{}://{}", version.runtime_name, version.runtime_version),
            capacity: capacity.clone(),
        };
        let image_list = {
            let cri = cri.clone();
            move || {
                let cri = cri.clone();
                async move { node_images(&cri).await }.boxed()
            }
        };
        node::register(&client, &facts, image_list().await)
            .await
            .context("cannot register the node")?;
        let memory_capacity = capacity
            .get("memory")
            .and_then(|m| r8s_api::quantity::Quantity::parse(m))
            .map_or(0, |q| q.value());
        let stats = Arc::new(stats::Sampler::new(
            cri.clone(),
            &config.cgroup_root,
            &config.node_name,
            u64::try_from(memory_capacity).unwrap_or(0),
            config.dir.clone(),
        ));
        let sampler = tokio::spawn(stats.clone().run());
        let mut background = vec![sampler];
        let tls = match &config.tls {
            Some(ServingTls::Given(tls)) => Some(
                r8s_cluster::tls::server_config(&tls.client_ca_pem, &tls.cert_pem, &tls.key_pem)
                    .context("cannot set up the kubelet API's TLS")?,
            ),
            Some(ServingTls::Requested { client_ca_pem }) => {
                let dir = config.dir.join("tls");
                let pem = crate::csr::serving_certificate(
                    &client,
                    &dir,
                    &config.node_name,
                    config.node_ip,
                )
                .await
                .context("cannot get the kubelet API's serving certificate")?;
                let identity = r8s_cluster::tls::RotatingIdentity::new(&pem)?;
                let rotation = crate::rotation::Rotation {
                    kind: crate::rotation::Kind::Serving(vec![config.node_ip]),
                    node_name: config.node_name.clone(),
                    dir,
                    name: crate::csr::SERVING_NAME,
                    identity: identity.clone(),
                };
                background.push(tokio::spawn(rotation.run(client.clone(), |_| {})));
                Some(
                    r8s_cluster::tls::rotating_server_config(client_ca_pem, identity)
                        .context("cannot set up the kubelet API's TLS")?,
                )
            }
            None => None,
        };
        let api = match &tls {
            Some(tls) => {
                let kubelet = Arc::new(Kubelet {
                    client: client.clone(),
                    cri: cri.clone(),
                    node_name: config.node_name.clone(),
                    stats,
                    started: std::time::SystemTime::now(),
                });
                let address = std::net::SocketAddr::new(config.node_ip, config.kubelet_port);
                Some(server::start(address, tls.clone(), kubelet).await?)
            }
            None => None,
        };
        let heartbeat = tokio::spawn(node::heartbeat(client.clone(), facts.clone(), image_list));
        let pod_cidr = node::wait_for_pod_cidr(&client, &config.node_name).await?;
        let routes = tokio::spawn(routes::run(
            client.clone(),
            config.node_name.clone(),
            routes::Ranges {
                unreachable: vec![config.cluster_cidr.clone()],
                local: vec![config.service_cidr.clone()],
            },
        ));
        // Pods on one bridge reach each other's services: bridged traffic must pass the
        // service rules (br_netfilter), as kube-proxy requires.
        let bridged = std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
        if bridged.exists()
            && let Err(e) = std::fs::write(bridged, "1")
        {
            tracing::warn!("cannot make bridged traffic pass the service rules: {e}");
        }
        let proxy = tokio::spawn(r8s_network::run(
            client.clone(),
            config.node_name.clone(),
            config.cluster_cidr.clone(),
        ));
        background.push(tokio::spawn(r8s_network::announce::run(
            client.clone(),
            config.node_name.clone(),
            config.node_ip,
        )));
        let dns = tokio::spawn(cluster_dns(client.clone(), config.clone()));
        let ingress = tokio::spawn(ingress_controller(client.clone(), config.clone()));
        cni::write(
            &config.dir.join("cni").join("net.d"),
            cni::BRIDGE,
            &pod_cidr,
            &config.dir.join("cni").join("ipam"),
        )
        .context("cannot write the CNI config")?;
        let shared = Arc::new(Shared {
            events: Recorder::new(client.clone(), &config.node_name),
            client,
            cri,
            node_name: config.node_name.clone(),
            node_ip: config.node_ip,
            pods_dir: config.dir.join("pods"),
            logs_dir: config.dir.join("logs"),
            cgroup_root: config.cgroup_root.clone(),
            cluster_dns: config.cluster_dns.clone(),
            cluster_domain: config.cluster_domain.clone(),
            host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            allocatable: capacity,
            memory_capacity,
            tokens: Default::default(),
        });
        std::fs::create_dir_all(&shared.pods_dir)?;
        std::fs::create_dir_all(&shared.logs_dir)?;
        let task = tokio::spawn(async move {
            let result = pods::run(shared).await;
            heartbeat.abort();
            result
        });
        Ok(Self {
            containerd,
            task,
            api,
            background: {
                background.extend([routes, proxy, dns, ingress]);
                background
            },
        })
    }

    /// Runs until the pod loop ends (it does not, unless the API goes away for good).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("the agent stopped")?
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
        for task in &self.background {
            task.abort();
        }
        if let Some(api) = &self.api {
            api.abort();
        }
        if let Some(containerd) = &self.containerd {
            containerd.stop();
        }
    }
}

/// The ingress controller on ports 80 and 443 of the node's address.
async fn ingress_controller(client: Client, config: AgentConfig) {
    if !config.ingress {
        return;
    }
    let ingress = r8s_ingress::IngressConfig {
        http: std::net::SocketAddr::new(config.node_ip, 80),
        https: std::net::SocketAddr::new(config.node_ip, 443),
        node_name: config.node_name.clone(),
        node_addresses: vec![config.node_ip.to_string()],
        class: "r8s".into(),
    };
    if let Err(e) = r8s_ingress::run(client, ingress).await {
        tracing::error!("the ingress controller stopped: {e:#}");
    }
}

/// The node's own cluster DNS server, answering on the cluster DNS addresses, which are put
/// on `lo` (as NodeLocal DNSCache puts its address on a local interface): pods reach it by
/// the kube-dns Service address without any proxying, on every node.
async fn cluster_dns(client: Client, config: AgentConfig) {
    let mut listen = Vec::new();
    for address in &config.cluster_dns {
        let Ok(ip) = address.parse::<IpAddr>() else {
            tracing::warn!("the cluster DNS address {address:?} is not an IP address");
            continue;
        };
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        let added = std::process::Command::new("ip")
            .args(["addr", "replace", &format!("{ip}/{prefix}"), "dev", "lo"])
            .output();
        match added {
            Ok(out) if out.status.success() => listen.push(std::net::SocketAddr::new(ip, 53)),
            Ok(out) => tracing::warn!(
                "cannot put the cluster DNS address {ip} on lo: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => tracing::warn!("cannot run ip: {e}"),
        }
    }
    if listen.is_empty() {
        return;
    }
    let upstream = config.dns_upstream.clone().unwrap_or_else(|| {
        resolv_conf_nameservers(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            &listen,
        )
    });
    let dns = r8s_dns::DnsConfig {
        listen,
        cluster_domain: config.cluster_domain.clone(),
        upstream,
        ..Default::default()
    };
    if let Err(e) = r8s_dns::serve(client, dns).await {
        tracing::error!("the cluster DNS server stopped: {e:#}");
    }
}

/// The resolvers a resolv.conf names, less loopback ones and the cluster DNS itself (either
/// would send queries back to this server).
fn resolv_conf_nameservers(text: &str, own: &[std::net::SocketAddr]) -> Vec<std::net::SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback() && !own.iter().any(|o| o.ip() == *ip))
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect()
}

async fn node_images(cri: &Cri) -> serde_json::Value {
    let Ok(answer) = cri
        .images
        .clone()
        .list_images(v1::ListImagesRequest { filter: None })
        .await
    else {
        return serde_json::json!([]);
    };
    let mut images: Vec<serde_json::Value> = answer
        .into_inner()
        .images
        .into_iter()
        .map(|image| {
            let names: Vec<String> = image
                .repo_digests
                .into_iter()
                .chain(image.repo_tags)
                .collect();
            serde_json::json!({ "names": names, "sizeBytes": image.size })
        })
        .collect();
    // Upstream reports the 50 largest.
    images.sort_by_key(|i| std::cmp::Reverse(i["sizeBytes"].as_u64().unwrap_or(0)));
    images.truncate(50);
    serde_json::json!(images)
}

/// Connects to the runtime, waiting for its socket while it starts.
pub async fn connect_when_up(endpoint: &str, limit: Duration) -> anyhow::Result<Cri> {
    let began = tokio::time::Instant::now();
    loop {
        match Cri::connect(endpoint).await {
            Ok(cri) => {
                let ok = cri
                    .runtime
                    .clone()
                    .version(v1::VersionRequest {
                        version: "v1".into(),
                    })
                    .await
                    .is_ok();
                if ok {
                    return Ok(cri);
                }
            }
            Err(e) if began.elapsed() >= limit => {
                return Err(e).context("the container runtime did not come up");
            }
            Err(_) => {}
        }
        if began.elapsed() >= limit {
            anyhow::bail!("the container runtime at {endpoint} did not answer in {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
