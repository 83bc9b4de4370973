//! Hollow nodes: many fake kubelets in one process, like upstream's kubemark and kwok, for
//! tests and scale benchmarks of the control plane. Each hollow node registers a Node, renews
//! its Lease, and reports the pods bound to it as a kubelet would (Running and Ready with an
//! address from its podCIDR, completed or crash-looping by their command, graceful deletion
//! finished); it runs nothing.
//!
//! Hollow nodes talk to the API server only through the Kubernetes API (a kube-rs `Client`), as a
//! real kubelet does. This is a node-side crate: it must never import control-plane crates (the
//! store, the API server, controllers, the scheduler); it may use `r8s_api` and the k8s types.
//! One task serves all nodes' heartbeats and one watch serves all their pods, so thousands of
//! nodes fit in one process.

mod node;
mod node_heartbeat;
mod pod_ips;
mod pod_status;
mod pod_worker;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kube::Client;

pub use node::{Capacity, HollowNode};
pub use pod_ips::Cidr;

/// The field manager and user agent of every write, as a kubelet's are its own.
pub const FIELD_MANAGER: &str = "r8s-sim";

/// What the hollow nodes are and how they behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub count: u32,
    pub name_prefix: String,
    pub capacity: Capacity,
    /// Where nodes' pod CIDRs (/24 each) come from.
    pub cluster_cidr: Cidr,
    /// Upstream's kubelet: 40 s leases renewed every 10 s.
    pub lease_duration_seconds: i32,
    pub lease_renew_interval: Duration,
    /// Upstream's `nodeStatusReportFrequency`: how often an unchanged status is reported.
    pub node_status_report_frequency: Duration,
    /// How many API requests of each kind (registration, heartbeats, pod syncs) are in flight.
    pub concurrency: usize,
}

impl SimConfig {
    /// Upstream's defaults, with the cluster CIDR 10.244.0.0/16 widened to hold `count` nodes.
    pub fn new(count: u32, name_prefix: impl Into<String>) -> Self {
        let cluster_cidr = "10.244.0.0/16"
            .parse::<Cidr>()
            .expect("a valid CIDR")
            .widened_for(u64::from(count));
        Self {
            count,
            name_prefix: name_prefix.into(),
            capacity: Capacity::default(),
            cluster_cidr,
            lease_duration_seconds: 40,
            lease_renew_interval: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(300),
            concurrency: 32,
        }
    }
}

/// A kube-rs client from a kubeconfig file, identifying itself as `r8s-sim`.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kubeconfig_text = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read the kubeconfig {}", kubeconfig.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig_text,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("cannot use the kubeconfig {}", kubeconfig.display()))?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(FIELD_MANAGER),
    ));
    Client::try_from(config).context("cannot build an API client")
}

/// Registered hollow nodes, ready to serve.
pub struct HollowNodes {
    client: Client,
    config: Arc<SimConfig>,
    nodes: Arc<[HollowNode]>,
}

impl HollowNodes {
    /// Registers every node (Node, status and Lease), as kubelets do when they start.
    pub async fn register(client: Client, config: SimConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            u64::from(config.count) <= config.cluster_cidr.node_cidrs(),
            "the cluster CIDR {} holds {} node pod CIDRs, not {}",
            config.cluster_cidr,
            config.cluster_cidr.node_cidrs(),
            config.count
        );
        let nodes = node_heartbeat::register_all(&client, &config).await?;
        Ok(Self {
            client,
            config: Arc::new(config),
            nodes: nodes.into(),
        })
    }

    pub fn nodes(&self) -> &[HollowNode] {
        &self.nodes
    }

    /// Heartbeats and pods, until `shutdown` completes; the Nodes stay registered, so they go
    /// NotReady once their leases expire.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let heartbeat =
            node_heartbeat::heartbeat(self.client.clone(), self.nodes.clone(), self.config.clone());
        let pods = pod_worker::run(
            self.client,
            self.nodes,
            self.config.name_prefix.clone(),
            self.config.concurrency,
        );
        tokio::select! {
            _ = heartbeat => {}
            _ = pods => {}
            _ = shutdown => {}
        }
    }
}

/// Whether an API error is an answer with this HTTP status.
fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}
