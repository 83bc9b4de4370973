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

/// Changes arriving together are written once: wait this long after one for the rest.
const SETTLE: Duration = Duration::from_millis(50);
/// How often the table is rewritten even without changes (someone may have flushed it).
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

/// Whether a reflector's store has had its first full list.
fn ready<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    futures::FutureExt::now_or_never(store.wait_until_ready()).is_some()
}

/// Keeps the service rules in step with the cluster until the task is aborted.
pub async fn run(client: Client, node_name: String, cluster_cidr: String) {
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector(
        services_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .map(|e| e.map(|_| ()));
    let slice_events = reflector(
        slices_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    )
    .map(|e| e.map(|_| ()));
    let mut events = futures::stream::select(service_events, slice_events).boxed();
    let mut resync = tokio::time::interval(RESYNC);
    let mut last = String::new();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(())) => {
                    tokio::time::sleep(SETTLE).await;
                    // What arrived meanwhile is in the stores already.
                    while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
                }
                Some(Err(e)) => {
                    tracing::debug!("service proxy watch failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => last.clear(),
        }
        // The stores fill only while the streams are polled: never wait on them here.
        if !ready(&services) || !ready(&slices) {
            continue;
        }
        let all_services: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let all_slices: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        let ruleset = rules::render(&rules::Input {
            node_name: &node_name,
            cluster_cidr: &cluster_cidr,
            services: &all_services,
            slices: &all_slices,
        });
        if ruleset == last {
            continue;
        }
        match load(&ruleset) {
            Ok(()) => last = ruleset,
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
}
