//! The r8s API server: Kubernetes 1.37's REST API over HTTPS, backed by `r8s_store`.
//!
//! Here live routing, discovery, authentication of client certificates, the generic REST
//! registry (CRUD, list, watch, patch), watch streaming, the objects a new cluster starts
//! with, and the subresources served by kubelets (`pods/log`, and the streams of `pods/exec`,
//! `pods/attach` and `pods/portforward`, carried by `r8s_httpstream`), reached over HTTPS with
//! the apiserver's kubelet client certificate. What is special about one kind lives in `r8s_api`,
//! never as `if kind == …` here; PKI, kubeconfigs and TLS configurations live in
//! `r8s_cluster`. Node-side crates must not depend on this one.

mod admission;
mod allocator;
mod authz;
mod binding;
mod bootstrap;
mod bootstrap_token;
mod cache;
mod crd;
mod deletion;
mod discovery;
mod eviction;
mod fields;
mod inflight;
mod kubelet_client;
mod managed;
mod metrics;
mod objects;
mod openapi;
mod partial;
mod pod_log;
mod pod_stream;
mod proxy;
mod registry;
mod router;
mod scale;
mod schema;
mod selectors;
mod server;
mod serviceaccount_token;
mod status;
mod strategic;
mod table;
mod tls;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use r8s_store::Store;
use tokio::net::TcpListener;

pub use server::{MAX_BODY_BYTES, ResponseBody};

/// What an API server needs to start.
pub struct Config {
    pub listen: SocketAddr,
    /// The cluster CA, serving certificate and key, PEM.
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The Service CIDR; its first address belongs to the `kubernetes` Service.
    pub service_cidr: (Ipv4Addr, u8),
    /// The port the `kubernetes` Service forwards to (the port the server is reached on).
    pub advertise_port: u16,
    /// Node ports for NodePort and LoadBalancer Services.
    pub node_port_range: std::ops::RangeInclusive<u16>,
    /// Read-only and mutating requests served at once (0: unlimited); more get 429.
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
    /// The key that signs ServiceAccount tokens (PKCS#8 PEM) and its public half (SPKI PEM).
    pub service_account_key_pem: String,
    pub service_account_public_pem: String,
    /// The `iss` of ServiceAccount tokens, also their default audience.
    pub service_account_issuer: String,
    /// The client certificate and key (PEM) the server shows kubelets, whose serving
    /// certificates it checks against `ca_pem`.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

/// A running API server.
pub struct ApiServer {
    pub address: SocketAddr,
    state: Arc<server::State>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Requests from the components built into this process (controller manager, scheduler, node
/// agent), served without a socket or TLS: the same authentication, admission and
/// authorization as any request, for the identity the loopback was made for.
#[derive(Clone)]
pub struct Loopback {
    state: Arc<server::State>,
    identity: Arc<r8s_cluster::tls::Identity>,
}

impl Loopback {
    pub async fn call<B>(&self, request: http::Request<B>) -> http::Response<ResponseBody>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<server::BoxError>,
    {
        server::handle(
            &self.state,
            Some(&self.identity),
            request.map(server::request_body),
        )
        .await
    }
}

impl ApiServer {
    /// Prepares the store for a new cluster, binds the port and starts serving.
    pub async fn start(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let allocator = allocator::Allocator::new(
            store.clone(),
            config.service_cidr,
            config.node_port_range.clone(),
        );
        let cache = Arc::new(cache::WatchCache::new(store.clone()));
        let registry = registry::Registry {
            store,
            allocator,
            cache,
            authorizer: Default::default(),
        };
        bootstrap::ensure(&registry, &config)
            .await
            .context("cannot create the cluster's initial objects")?;
        // Every watchable resource gets its cache now, as upstream's does, so watches resuming
        // from any revision since the start are served from history; resources stored alike
        // (core and events.k8s.io events) share one.
        let mut seen = std::collections::HashSet::new();
        for resource in r8s_api::catalogue() {
            if !resource.verbs.contains(&"watch") || !seen.insert(resource.storage_prefix()) {
                continue;
            }
            registry.cache.resource(resource).await.map_err(|e| {
                anyhow::anyhow!("cannot fill the watch cache of {}: {e}", resource.plural)
            })?;
        }
        // CRDs established before a restart are served from the first request.
        crd::catalogue::install(&crd::status::all(&registry).await);
        let authorizer = Arc::new(
            authz::Authorizer::new(&registry.cache)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the RBAC objects: {e}"))?,
        );
        let _ = registry.authorizer.set(authorizer.clone());
        // The CA follows the serving certificate so joining agents can find it (and check it
        // against their pinned hash) in the handshake.
        let chain = format!("{}\n{}", config.cert_pem.trim_end(), config.ca_pem);
        let tls = tls::server_config(&config.ca_pem, &chain, &config.key_pem)
            .context("cannot set up TLS")?;
        let kubelet_tls = r8s_cluster::tls::client_config(
            &config.ca_pem,
            &r8s_cluster::Pem {
                cert: config.kubelet_client_cert_pem.clone(),
                key: config.kubelet_client_key_pem.clone(),
            },
        )
        .context("cannot set up TLS towards kubelets")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let state = Arc::new(server::State {
            registry,
            authorizer,
            tokens: serviceaccount_token::TokenIssuer::new(
                &config.service_account_key_pem,
                &config.service_account_public_pem,
                &config.service_account_issuer,
            )
            .context("cannot load the service account signing key")?,
            in_flight: inflight::InFlight::new(
                config.max_requests_inflight,
                config.max_mutating_requests_inflight,
            ),
            address: address.to_string(),
            kubelets: kubelet_client::KubeletClient::new(kubelet_tls),
        });
        tokio::spawn(authz::aggregation::run(Arc::downgrade(&state)));
        tokio::spawn(crd::status::run(Arc::downgrade(&state)));
        let task = tokio::spawn(server::serve(listener, tls, state.clone()));
        Ok(Self {
            address,
            state,
            task,
        })
    }

    /// A loopback for `identity` (a user and its groups, as a client certificate would name).
    pub fn loopback(&self, identity: r8s_cluster::tls::Identity) -> Loopback {
        Loopback {
            state: self.state.clone(),
            identity: Arc::new(identity),
        }
    }

    /// Serves until the listener fails.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        (&mut self.task).await?.context("the API server stopped")
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses `10.96.0.0/12`.
pub fn parse_cidr(text: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (ip, bits) = text
        .split_once('/')
        .with_context(|| format!("{text:?} is not a CIDR like 10.96.0.0/12"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .with_context(|| format!("{text:?}: bad address"))?;
    let bits: u8 = bits
        .parse()
        .with_context(|| format!("{text:?}: bad prefix length"))?;
    anyhow::ensure!(
        (8..=30).contains(&bits),
        "{text:?}: prefix length must be 8 to 30"
    );
    let mask = u32::MAX << (32 - bits);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

/// The first usable address of a CIDR: the `kubernetes` Service's ClusterIP.
pub fn first_service_ip((network, _): (Ipv4Addr, u8)) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(network) + 1)
}

/// Parses a port range like `30000-32767`.
pub fn parse_port_range(text: &str) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    let (low, high) = text
        .split_once('-')
        .with_context(|| format!("{text:?} is not a port range like 30000-32767"))?;
    let (low, high): (u16, u16) = (low.trim().parse()?, high.trim().parse()?);
    anyhow::ensure!(low > 0 && low <= high, "{text:?}: the range is empty");
    Ok(low..=high)
}
