//! The cluster DNS server: Services and EndpointSlices served as DNS records under the cluster
//! domain the way CoreDNS's `kubernetes` plugin serves them (the Kubernetes DNS specification,
//! `pods insecure`, PTR for ClusterIPs and endpoints), and every other name forwarded upstream.
//!
//! - `records`: [`Records`], the immutable snapshot built from the API objects.
//! - `answer`: [`Records::answer`], one query answered from a snapshot with no I/O; nearly all
//!   behaviour is tested there.
//! - `server` / `forward`: the UDP and TCP wire ([`serve_records`]) and upstream forwarding.
//! - `informer`: the kube-rs watches that keep the snapshot current ([`serve`]).
//!
//! This crate must not depend on the rest of r8s: it talks to the cluster through `kube` only,
//! so the node agent (or anything else) can run it.

mod answer;
mod forward;
mod informer;
mod records;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

pub use records::{ClusterZone, DEFAULT_TTL, Records};
pub use server::{Sockets, serve_records};

/// How the DNS server is set up.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Addresses to answer on, each over both UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The cluster domain, `cluster.local` by default.
    pub cluster_domain: String,
    /// Resolvers for every other name; empty means such queries are REFUSED.
    pub upstream: Vec<SocketAddr>,
    /// TTL of the cluster records, in seconds (CoreDNS's default is 5, its maximum 3600).
    pub ttl: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            cluster_domain: "cluster.local".to_owned(),
            upstream: Vec::new(),
            ttl: DEFAULT_TTL,
        }
    }
}

/// Serves cluster DNS on every `listen` address (UDP and TCP) from the cluster's Services and
/// EndpointSlices until aborted. Cluster names answer SERVFAIL until both are first listed.
pub async fn serve(client: kube::Client, config: DnsConfig) -> anyhow::Result<()> {
    let zone = ClusterZone::new(&config.cluster_domain, config.ttl)?;
    let sockets = Sockets::bind(&config.listen).await?;
    let (sender, receiver) = tokio::sync::watch::channel(Arc::new(Records::unsynced(zone.clone())));
    tokio::select! {
        result = serve_records(sockets, receiver, config.upstream) => result,
        result = informer::keep_records(client, zone, sender) => result,
    }
}
