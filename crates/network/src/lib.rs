//! The node's network: routes to the other nodes' pods (see [`routes`]), the service proxy,
//! which keeps one nftables table (`r8s-proxy`) in step with Services and EndpointSlices,
//! replaced atomically on each change (see [`rules`]), and the announcer that draws traffic
//! for pool load-balancer addresses to one node (see [`announce`]).

pub mod announce;
pub mod routes;
pub mod rules;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::Api;
use kube::runtime::{reflector, watcher};

/// How often the table is checked for (someone may have deleted it; it is then rewritten).
const RESYNC: Duration = Duration::from_secs(60);

/// Loads `ruleset` with `nft -f -`: one transaction, all or nothing.
pub fn load(ruleset: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run nft (is Debian's nftables installed?): {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(ruleset.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "nft refused the service rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the table (when the node goes away).
pub fn remove() {
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", rules::TABLE])
        .stderr(Stdio::null())
        .status();
}

/// A store of every `K` in the cluster and the stream of its changes; the store fills only
/// while the stream is polled.
pub(crate) fn watch_all<K>(
    client: &Client,
) -> (
    reflector::Store<K>,
    futures::stream::BoxStream<'static, Result<(), watcher::Error>>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .map(|e| e.map(|_| ()))
    .boxed();
    (store, events)
}

/// The load-balancer addresses in a Service's status.
pub(crate) fn load_balancer_ips(service: &Service) -> impl Iterator<Item = &str> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref())
}

/// Whether a reflector's store has had its first full list.
pub(crate) fn ready<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    futures::FutureExt::now_or_never(store.wait_until_ready()).is_some()
}

/// Keeps the service rules in step with the cluster until the task is aborted.
pub async fn run(client: Client, node_name: String, cluster_cidr: String) {
    let (services, service_events) = watch_all::<Service>(&client);
    let (slices, slice_events) = watch_all::<EndpointSlice>(&client);
    let mut events = futures::stream::select(service_events, slice_events).boxed();
    let mut resync = tokio::time::interval(RESYNC);
    // What the table holds now, as last written; none: write it whole.
    let mut applied: Option<rules::Ruleset> = None;
    loop {
        tokio::select! {
            event = events.next() => match event {
                // Changes that arrived meanwhile (or while the last write ran) are in the
                // stores already: one write covers them all, with no waiting for more.
                Some(Ok(())) => while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {},
                Some(Err(e)) => {
                    tracing::debug!("service proxy watch failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => {
                if applied.is_some() && !present().await {
                    tracing::warn!("the service rules' table is gone; writing it again");
                    applied = None;
                }
            }
        }
        // The stores fill only while the streams are polled: never wait on them here.
        if !ready(&services) || !ready(&slices) {
            continue;
        }
        let wanted = rules::render(&rules::Input {
            node_name: &node_name,
            cluster_cidr: &cluster_cidr,
            services: &services.state(),
            slices: &slices.state(),
        });
        let changes = match &applied {
            Some(old) if *old == wanted => continue,
            Some(old) => wanted.changes_from(old),
            None => wanted.full(),
        };
        let written = match load_blocking(changes).await {
            Ok(()) => Ok(()),
            // A table changed behind our back refuses the difference: write it whole.
            Err(e) if applied.is_some() => {
                tracing::warn!("{e:#}; writing the whole table");
                load_blocking(wanted.full()).await
            }
            Err(e) => Err(e),
        };
        applied = match written {
            Ok(()) => Some(wanted),
            Err(e) => {
                tracing::warn!("{e:#}");
                None
            }
        };
    }
}

/// [`load`] off the async threads (nft takes a while for a big table).
async fn load_blocking(ruleset: String) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || load(&ruleset))
        .await
        .map_err(|e| anyhow::anyhow!("nft did not finish: {e}"))?
}

/// Whether the table is there (a cheap look at its smallest chain).
async fn present() -> bool {
    tokio::process::Command::new("nft")
        .args(["list", "chain", "ip", rules::TABLE, "services"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}
