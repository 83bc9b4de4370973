//! The node's ingress controller: the Ingresses of its IngressClass (see [`class`]) served by
//! an HTTP/1.1 and HTTP/2 reverse proxy on the node, straight to pod endpoints.
//!
//! The cluster is watched into reflector stores; on each change a [`Snapshot`] is built — the
//! merged [`routes`] and the TLS [`certificates`] — and swapped in whole through a
//! `tokio::sync::watch`, so requests and handshakes see one consistent version and no
//! connection is dropped by a reload. [`serve_snapshot`] serves whichever snapshot is current;
//! [`status`] publishes the node's addresses on the Ingresses served.
//!
//! Only this controller lives here: no API objects of its own, no other r8s crate's state. It
//! depends on `r8s-httpstream` for joining upgraded connections, nothing else of r8s.

mod backends;
pub mod certificates;
pub mod class;
mod proxy;
pub mod routes;
mod server;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Client;
use kube::api::Api;
use kube::runtime::{reflector, watcher};
use tokio::sync::watch;

pub use certificates::Certificates;
pub use routes::{Backend, Decision, Routes};
pub use server::serve_snapshot;

/// Changes arriving together are applied once: wait this long after one for the rest.
const SETTLE: Duration = Duration::from_millis(50);
/// How often the snapshot is rebuilt and the status rechecked without changes (a status
/// write or the IngressClass creation may have failed).
const RESYNC: Duration = Duration::from_secs(60);

/// Where and as what the controller serves.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub node_name: String,
    /// Published in the served Ingresses' `status.loadBalancer.ingress`.
    pub node_addresses: Vec<String>,
    /// The IngressClass served (and created as the default if missing): `r8s`.
    pub class: String,
}

/// What the snapshot is built from: the whole of the watched kinds.
pub struct Cluster<'a> {
    pub class: &'a str,
    pub ingresses: &'a [Ingress],
    pub classes: &'a [IngressClass],
    pub services: &'a [Service],
    pub slices: &'a [EndpointSlice],
    pub secrets: &'a [Secret],
}

impl<'a> Cluster<'a> {
    /// The Ingresses of our class, oldest first (the order conflicts are settled in).
    pub fn served(&self) -> Vec<&'a Ingress> {
        let mut served: Vec<&Ingress> = self
            .ingresses
            .iter()
            .filter(|i| class::serves(i, self.classes, self.class))
            .collect();
        served.sort_by(|a, b| routes::age(a).cmp(&routes::age(b)));
        served
    }
}

/// One consistent version of everything the proxy serves.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// False until the cluster has been read once; until then every request gets a 503.
    pub synced: bool,
    pub routes: Routes,
    pub certificates: Certificates,
    /// What could not be served as asked (a TLS Secret missing or broken), for the log.
    pub problems: Vec<String>,
}

impl Snapshot {
    pub fn build(cluster: &Cluster<'_>) -> Snapshot {
        let served = cluster.served();
        let mut problems = Vec::new();
        Snapshot {
            synced: true,
            routes: Routes::build(&served, cluster.services, cluster.slices),
            certificates: Certificates::build(&served, cluster.secrets, &mut problems),
            problems,
        }
    }
}

/// Serves Ingresses on `config.http` and `config.https` until aborted; an error means a port
/// could not be listened on.
pub async fn run(client: Client, config: IngressConfig) -> anyhow::Result<()> {
    let http = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("ingress: cannot listen on {} for HTTP", config.http))?;
    let https = tokio::net::TcpListener::bind(config.https)
        .await
        .with_context(|| format!("ingress: cannot listen on {} for HTTPS", config.https))?;
    tracing::info!(
        "ingress: serving class {} on {} and {} for node {}",
        config.class,
        config.http,
        config.https,
        config.node_name
    );
    let (publish, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    tokio::select! {
        served = serve_snapshot(http, https, snapshots) => served,
        () = reconcile(client, &config, publish) => Ok(()),
    }
}

/// Whether a reflector's store has had its first full list.
fn ready<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some()
}

fn contents<K>(store: &reflector::Store<K>) -> Vec<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// A reflector of every `K` matching `config`, as a stream of "something changed".
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    reflector::Store<K>,
    futures::stream::BoxStream<'static, Result<(), watcher::Error>>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = reflector(writer, watcher(api, config))
        .map(|e| e.map(|_| ()))
        .boxed();
    (store, events)
}

/// Watches the cluster and publishes a new snapshot on each change; never returns.
async fn reconcile(client: Client, config: &IngressConfig, publish: watch::Sender<Arc<Snapshot>>) {
    let all = watcher::Config::default;
    let (ingresses, ingress_events) = reflect(Api::<Ingress>::all(client.clone()), all());
    let (classes, class_events) = reflect(Api::<IngressClass>::all(client.clone()), all());
    let (services, service_events) = reflect(Api::<Service>::all(client.clone()), all());
    let (slices, slice_events) = reflect(Api::<EndpointSlice>::all(client.clone()), all());
    // Only TLS Secrets can back an Ingress; the rest are none of the proxy's business.
    let (secrets, secret_events) = reflect(
        Api::<Secret>::all(client.clone()),
        all().fields("type=kubernetes.io/tls"),
    );
    let mut events = futures::stream::select_all([
        ingress_events,
        class_events,
        service_events,
        slice_events,
        secret_events,
    ]);
    let mut resync = tokio::time::interval(RESYNC);
    let mut class_ensured = false;
    let mut last_error = String::new();
    let mut last_problems: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(())) => {
                    tokio::time::sleep(SETTLE).await;
                    // What arrived meanwhile is in the stores already.
                    while let Some(Some(_)) = events.next().now_or_never() {}
                }
                Some(Err(e)) => {
                    let error = e.to_string();
                    if error != last_error {
                        tracing::warn!("ingress: watch failed: {error}");
                        last_error = error;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => {
                if !class_ensured {
                    match class::ensure(client.clone(), &config.class).await {
                        Ok(done) => class_ensured = done,
                        Err(e) => tracing::warn!("ingress: cannot create IngressClass {}: {e}", config.class),
                    }
                }
            }
        }
        // The stores fill only while the streams are polled: never wait on them here.
        if !(ready(&ingresses)
            && ready(&classes)
            && ready(&services)
            && ready(&slices)
            && ready(&secrets))
        {
            continue;
        }
        let (ingresses, classes) = (contents(&ingresses), contents(&classes));
        let (services, slices, secrets) =
            (contents(&services), contents(&slices), contents(&secrets));
        let cluster = Cluster {
            class: &config.class,
            ingresses: &ingresses,
            classes: &classes,
            services: &services,
            slices: &slices,
            secrets: &secrets,
        };
        let snapshot = Snapshot::build(&cluster);
        if snapshot.problems != last_problems {
            for problem in snapshot
                .problems
                .iter()
                .filter(|p| !last_problems.contains(p))
            {
                tracing::warn!("ingress: {problem}");
            }
            last_problems = snapshot.problems.clone();
        }
        publish.send_replace(Arc::new(snapshot));
        status::publish(&client, &cluster.served(), &config.node_addresses).await;
    }
}
