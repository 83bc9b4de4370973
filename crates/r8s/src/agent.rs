//! The node agent's flags and start-up, shared by `r8s server` (which runs one unless
//! `--disable-agent`) and, with the join issue, `r8s agent`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use r8s_kubelet::{Agent, AgentConfig, KubeletTls, containerd::parse_registry_mirror};

#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// This node's name (default: the machine's hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The address other nodes and the API server reach this node at (default: the address of
    /// the interface with the default route).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Use this CRI runtime (unix:///path.sock) instead of starting containerd.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// Pull from a mirror: REGISTRY=URL, e.g. docker.io=http://127.0.0.1:5000 (repeatable).
    #[arg(long = "registry-mirror", value_parser = parse_registry_mirror)]
    registry_mirrors: Vec<(String, String)>,
    /// The cluster DNS server pods resolve names with.
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: IpAddr,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Where the CNI plugins are (Debian's containernetworking-plugins).
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,
    /// The kubelet's pod limit.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
}

fn hostname() -> String {
    let mut name = [0u8; 256];
    if unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } != 0 {
        return "localhost".into();
    }
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).to_lowercase()
}

pub async fn admin_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("cannot read the admin kubeconfig for the node agent")?;
    Ok(kube::Client::try_from(config)?)
}

/// Starts the agent under `<data-dir>/agent`, its kubelet API served with a certificate from
/// the cluster CA `ca` (kept in `<data-dir>/agent/tls`), accepting clients that CA signed.
pub async fn start(
    client: kube::Client,
    data_dir: &Path,
    ca: &r8s_cluster::Pem,
    args: &NodeArgs,
) -> anyhow::Result<Agent> {
    let node_name = args.node_name.clone().unwrap_or_else(hostname);
    let node_ip = match args.node_ip {
        Some(ip) => ip,
        None => r8s_kubelet::detect_node_ip().context(
            "cannot find this machine's address (no interface besides loopback): pass --node-ip",
        )?,
    };
    let tls_dir = data_dir.join("agent").join("tls");
    let serving = r8s_cluster::ensure_node_serving_cert(&tls_dir, ca, &node_name, &[node_ip])
        .context("cannot prepare the kubelet's serving certificate")?;
    if let Some(issued) = &serving.issued {
        tracing::info!("{issued}");
    }
    let mut config = AgentConfig::new(data_dir.join("agent"), node_name, node_ip);
    config.tls = Some(KubeletTls {
        cert_pem: serving.pem.cert,
        key_pem: serving.pem.key,
        client_ca_pem: ca.cert.clone(),
    });
    config.container_runtime_endpoint = args.container_runtime_endpoint.clone();
    config.registry_mirrors = args.registry_mirrors.clone();
    config.cluster_dns = vec![args.cluster_dns.to_string()];
    config.cluster_domain = args.cluster_domain.clone();
    config.cni_bin_dir = args.cni_bin_dir.clone();
    config.max_pods = args.max_pods;
    Agent::start(client, config)
        .await
        .context("cannot start the node agent")
}
