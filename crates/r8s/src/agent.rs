//! The node agent's flags and start-up, shared by `r8s server` (which runs one unless
//! `--disable-agent`) and `r8s agent`, which joins a node with a bootstrap token: it finds the
//! cluster CA by its pinned hash, gets a client certificate through a CSR (TLS bootstrap), and
//! a serving certificate for the kubelet API once its Node is registered.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use r8s_kubelet::csr::CLIENT_NAME;
use r8s_kubelet::{Agent, AgentConfig, KubeletTls, ServingTls, containerd::parse_registry_mirror};

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
    /// Where the node's cluster DNS forwards other names: IP[:PORT] (repeatable), or `none`
    /// to answer only the cluster domain (default: the nameservers of /etc/resolv.conf).
    #[arg(long = "dns-forward", value_parser = parse_dns_forward)]
    dns_forward: Vec<Option<std::net::SocketAddr>>,
    /// Do not serve Ingresses (class `r8s`) on ports 80 and 443 of this node.
    #[arg(long)]
    disable_ingress: bool,
}

fn parse_dns_forward(text: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if text == "none" {
        return Ok(None);
    }
    text.parse::<std::net::SocketAddr>()
        .or_else(|_| {
            text.parse::<IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map(Some)
        .map_err(|_| format!("{text:?} is not IP[:PORT] or none"))
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
    .context("cannot read the admin kubeconfig")?;
    Ok(kube::Client::try_from(config)?)
}

impl NodeArgs {
    pub fn cluster_dns(&self) -> IpAddr {
        self.cluster_dns
    }

    fn name(&self) -> String {
        self.node_name.clone().unwrap_or_else(hostname)
    }

    fn ip(&self) -> anyhow::Result<IpAddr> {
        match self.node_ip {
            Some(ip) => Ok(ip),
            None => r8s_kubelet::detect_node_ip().context(
                "cannot find this machine's address (no interface besides loopback): pass --node-ip",
            ),
        }
    }

    /// The agent's configuration; `ranges` are the cluster's pod and service CIDRs.
    fn config(
        &self,
        data_dir: &Path,
        tls: ServingTls,
        ranges: (String, String),
    ) -> anyhow::Result<AgentConfig> {
        let mut config = AgentConfig::new(data_dir.join("agent"), self.name(), self.ip()?);
        config.tls = Some(tls);
        config.container_runtime_endpoint = self.container_runtime_endpoint.clone();
        config.registry_mirrors = self.registry_mirrors.clone();
        config.cluster_dns = vec![self.cluster_dns.to_string()];
        config.cluster_domain = self.cluster_domain.clone();
        config.cni_bin_dir = self.cni_bin_dir.clone();
        config.max_pods = self.max_pods;
        (config.cluster_cidr, config.service_cidr) = ranges;
        config.ingress = !self.disable_ingress;
        if !self.dns_forward.is_empty() {
            config.dns_upstream = Some(self.dns_forward.iter().flatten().copied().collect());
        }
        Ok(config)
    }
}

/// Starts the agent under `<data-dir>/agent`, its kubelet API served with a certificate from
/// the cluster CA `ca` (kept in `<data-dir>/agent/tls`), accepting clients that CA signed.
pub async fn start(
    client: kube::Client,
    data_dir: &Path,
    ca: &r8s_cluster::Pem,
    args: &NodeArgs,
    ranges: (String, String),
) -> anyhow::Result<Agent> {
    let tls_dir = data_dir.join("agent").join("tls");
    let serving = r8s_cluster::ensure_node_serving_cert(&tls_dir, ca, &args.name(), &[args.ip()?])
        .context("cannot prepare the kubelet's serving certificate")?;
    if let Some(issued) = &serving.issued {
        tracing::info!("{issued}");
    }
    let tls = ServingTls::Given(KubeletTls {
        cert_pem: serving.pem.cert,
        key_pem: serving.pem.key,
        client_ca_pem: ca.cert.clone(),
    });
    Agent::start(client, args.config(data_dir, tls, ranges)?)
        .await
        .context("cannot start the node agent")
}

/// `r8s agent`: a node joining a cluster (like `kubeadm join`).
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The API server to join, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// A bootstrap token (`r8s token create` on the server).
    #[arg(long)]
    token: Option<String>,
    /// The cluster CA's public key hash (sha256:…), as `r8s token create --print-join-command`
    /// prints it: the agent refuses a server whose CA does not match.
    #[arg(long)]
    ca_cert_hash: Option<String>,
    /// Where the agent keeps its state.
    #[arg(long, default_value = "/var/lib/r8s")]
    data_dir: PathBuf,
    /// The cluster's pod range, as the server's --cluster-cidr.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// The cluster's service range, as the server's --service-cidr.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    #[command(flatten)]
    node: NodeArgs,
}

/// The agent's kubeconfig, written once it has its client certificate.
const KUBECONFIG: &str = "kubelet.kubeconfig";

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let uri: http::Uri = args
        .server
        .parse()
        .with_context(|| format!("--server {:?} is not a URL", args.server))?;
    if uri.scheme_str() != Some("https") {
        anyhow::bail!("--server must be an https:// URL");
    }
    let host = uri
        .host()
        .context("--server names no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(6443);
    let url = args.server.trim_end_matches('/').to_owned();
    let dir = args.data_dir.join("agent");
    let tls_dir = dir.join("tls");
    let kubeconfig = dir.join(KUBECONFIG);
    let node_name = args.node.name();
    // Joined before: the CA and the client certificate are kept; a renewal (or a first join)
    // needs the token.
    let known_ca = std::fs::read_to_string(tls_dir.join("ca.crt")).ok();
    let ca_pem = match (&known_ca, &args.ca_cert_hash) {
        (_, Some(hash)) => {
            let ca = r8s_cluster::discover_ca(&host, port, hash).await?;
            if known_ca.as_ref().is_some_and(|known| known != &ca) {
                tracing::warn!("the cluster CA changed since this node joined; using the new one");
            }
            ca
        }
        (Some(ca), None) => ca.clone(),
        (None, None) => anyhow::bail!(
            "--ca-cert-hash is needed to join: `r8s token create --print-join-command` on the \
             server prints it"
        ),
    };
    std::fs::create_dir_all(&tls_dir)?;
    std::fs::write(tls_dir.join("ca.crt"), &ca_pem)?;
    let client_pem = r8s_kubelet::csr::kept_certificate(&tls_dir, CLIENT_NAME, || async {
        let token = args
            .token
            .as_deref()
            .context("--token is needed to join (this node has no valid client certificate yet)")?;
        let bootstrap = bootstrap_client(&url, &ca_pem, token).await?;
        let csr = r8s_cluster::node_csr(&node_name, None)?;
        let cert = r8s_kubelet::csr::request_certificate(
            &bootstrap,
            &csr.csr_pem,
            r8s_kubelet::csr::CLIENT_SIGNER,
            &["digital signature", "client auth"],
        )
        .await
        .context("the server did not issue this node's client certificate")?;
        Ok(r8s_cluster::Pem {
            cert,
            key: csr.key_pem,
        })
    })
    .await?;
    r8s_cluster::write_kubeconfig(
        &kubeconfig,
        &url,
        &ca_pem,
        &format!("system:node:{node_name}"),
        &client_pem,
    )
    .context("cannot write the agent's kubeconfig")?;
    // The client presents the latest certificate, which rotation renews before it ends.
    let identity = r8s_cluster::tls::RotatingIdentity::new(&client_pem)?;
    let client = r8s_kubelet::rotation::client(&url, &ca_pem, identity.clone())?;
    let rotation = r8s_kubelet::rotation::Rotation {
        kind: r8s_kubelet::rotation::Kind::Client,
        node_name: node_name.clone(),
        dir: tls_dir.clone(),
        name: CLIENT_NAME,
        identity,
    };
    let user = format!("system:node:{node_name}");
    let rotated = {
        let (kubeconfig, url, ca_pem) = (kubeconfig.clone(), url.clone(), ca_pem.clone());
        move |pem: &r8s_cluster::Pem| {
            if let Err(e) = r8s_cluster::write_kubeconfig(&kubeconfig, &url, &ca_pem, &user, pem) {
                tracing::warn!("cannot write the rotated certificate to the kubeconfig: {e:#}");
            }
        }
    };
    let _rotation = AbortOnDrop(tokio::spawn(rotation.run(client.clone(), rotated)));
    let tls = ServingTls::Requested {
        client_ca_pem: ca_pem.clone(),
    };
    let ranges = (args.cluster_cidr.clone(), args.service_cidr.clone());
    let mut agent = Agent::start(client, args.node.config(&args.data_dir, tls, ranges)?)
        .await
        .context("cannot start the node agent")?;
    println!("r8s agent: node {node_name} joined {url}");
    tokio::select! {
        result = agent.wait() => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// A task stopped with the agent.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A client that authenticates with the bootstrap token and trusts only `ca_pem`.
async fn bootstrap_client(url: &str, ca_pem: &str, token: &str) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::new(url.parse().context("the server URL")?);
    config.root_cert = Some(vec![
        rustls_pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes())
            .map(|der: rustls_pki_types::CertificateDer<'_>| der.to_vec())
            .context("the cluster CA is not PEM")?,
    ]);
    config.auth_info.token = Some(token.to_owned().into());
    Ok(kube::Client::try_from(config)?)
}
