//! Registration and heartbeats for every hollow node, from one task: each node renews its
//! Lease every 10 s and reports its status every `node_status_report_frequency`, on jittered
//! timers so renewals spread evenly, with a bounded number of requests in flight.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use tokio::time::Instant;

use crate::node::{self, HollowNode, LEASE_NAMESPACE};
use crate::pod_ips::Cidr;
use crate::{FIELD_MANAGER, SimConfig, is_status};

/// How often the heartbeat task looks for due work.
const TICK: Duration = Duration::from_millis(100);
/// Upstream's lease renewal retry after a failure.
const RETRY: Duration = Duration::from_millis(200);
/// How often a failing registration is tried before giving up.
const REGISTRATION_ATTEMPTS: u32 = 8;

/// A small deterministic generator for timer jitter (splitmix64).
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration in `[0, max)`.
    pub fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { self.next() % nanos })
    }

    /// `base` stretched by up to `fraction` of itself, as upstream's `wait.Jitter`.
    pub fn stretch(&mut self, base: Duration, fraction: f64) -> Duration {
        base + self.below(base.mul_f64(fraction))
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Registers every node (with `concurrency` requests in flight) and creates their leases.
pub async fn register_all(client: &Client, config: &SimConfig) -> anyhow::Result<Vec<HollowNode>> {
    let cluster = config.cluster_cidr;
    let mut nodes: Vec<(u32, HollowNode)> = stream::iter(0..config.count)
        .map(|index| {
            let node = HollowNode {
                name: node::node_name(&config.name_prefix, index),
                internal_ip: node::internal_ip(index),
                pod_cidr: cluster
                    .node_cidr(u64::from(index))
                    .expect("the cluster CIDR was widened to hold every node"),
            };
            register_with_retries(client.clone(), config, node, index)
        })
        .buffer_unordered(config.concurrency)
        .try_collect()
        .await?;
    nodes.sort_by_key(|(index, _)| *index);
    Ok(nodes.into_iter().map(|(_, node)| node).collect())
}

async fn register_with_retries(
    client: Client,
    config: &SimConfig,
    node: HollowNode,
    index: u32,
) -> anyhow::Result<(u32, HollowNode)> {
    let mut delay = RETRY;
    for attempt in 1.. {
        match register(&client, config, node.clone()).await {
            Ok(node) => return Ok((index, node)),
            Err(e) if attempt < REGISTRATION_ATTEMPTS => {
                tracing::warn!(node = %node.name, "registration failed, retrying: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(7));
            }
            Err(e) => {
                return Err(anyhow::anyhow!("cannot register node {}: {e}", node.name));
            }
        }
    }
    unreachable!("the loop returns")
}

/// Creates the Node (or adopts an existing one and its podCIDR), reports its status, and
/// creates its Lease, as the kubelet does at start.
async fn register(
    client: &Client,
    config: &SimConfig,
    mut node: HollowNode,
) -> kube::Result<HollowNode> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    let registered = match nodes
        .create(
            &post_params(),
            &node::registration(&node, &config.capacity, now),
        )
        .await
    {
        Ok(created) => created,
        Err(e) if is_status(&e, 409) => {
            let existing = nodes.get(&node.name).await?;
            let cidr = existing
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_deref())
                .and_then(|c| c.parse::<Cidr>().ok());
            match cidr {
                Some(cidr) => node.pod_cidr = cidr,
                None => {
                    let cidr = node.pod_cidr.to_string();
                    let patch =
                        serde_json::json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
                    nodes
                        .patch(&node.name, &patch_params(), &Patch::Merge(&patch))
                        .await?;
                }
            }
            existing
        }
        Err(e) => return Err(e),
    };
    report_status(&nodes, &node, config, Some(&registered)).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let uid = registered.uid().unwrap_or_default();
    let lease = node::lease(&node.name, &uid, config.lease_duration_seconds, now);
    match leases.create(&post_params(), &lease).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 409) => renew(&leases, &nodes, &node, config).await?,
        Err(e) => return Err(e),
    }
    Ok(node)
}

/// The kubelet's status report: the node's status now, patched through `nodes/status`.
async fn report_status(
    nodes: &Api<Node>,
    node: &HollowNode,
    config: &SimConfig,
    current: Option<&Node>,
) -> kube::Result<()> {
    let fetched;
    let current = match current {
        Some(current) => current,
        None => {
            fetched = nodes.get(&node.name).await?;
            &fetched
        }
    };
    let status = node::status(
        node,
        &config.capacity,
        current.status.as_ref(),
        Timestamp::now(),
    );
    let patch = serde_json::json!({ "status": status });
    nodes
        .patch_status(&node.name, &patch_params(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

/// Renews the node's lease; a lease someone deleted is created again.
async fn renew(
    leases: &Api<Lease>,
    nodes: &Api<Node>,
    node: &HollowNode,
    config: &SimConfig,
) -> kube::Result<()> {
    let now = Timestamp::now();
    let patch = node::lease_renewal(&node.name, config.lease_duration_seconds, now);
    match leases
        .patch(&node.name, &patch_params(), &Patch::Merge(&patch))
        .await
    {
        Err(e) if is_status(&e, 404) => {
            let uid = nodes.get(&node.name).await?.uid().unwrap_or_default();
            let lease = node::lease(&node.name, &uid, config.lease_duration_seconds, now);
            leases.create(&post_params(), &lease).await.map(drop)
        }
        other => other.map(drop),
    }
}

/// Whether the server's copy of the node says Ready.
fn reported_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[derive(Clone, Copy)]
enum Work {
    Renew(usize),
    Report(usize),
}

/// Renews every node's lease and reports every node's status, forever. Due work is queued on
/// each tick and kept flowing with `concurrency` requests in flight, so one slow answer never
/// holds up the renewals behind it.
pub async fn heartbeat(client: Client, nodes: Arc<[HollowNode]>, config: Arc<SimConfig>) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let node_api: Api<Node> = Api::all(client);
    let mut jitter = Jitter::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    let start = Instant::now();
    // Registration just renewed and reported: spread the next ones over a whole period.
    // `None`: queued or in flight.
    let mut renew_at: Vec<Option<Instant>> = (0..nodes.len())
        .map(|_| Some(start + jitter.below(config.lease_renew_interval)))
        .collect();
    let mut report_at: Vec<Option<Instant>> = (0..nodes.len())
        .map(|_| Some(start + jitter.below(config.node_status_report_frequency)))
        .collect();
    let mut queue: VecDeque<Work> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    // A node the control plane marked not Ready (a missed heartbeat) reports again at once,
    // as the kubelet does when its status differs from the server's.
    let index: std::collections::HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    let mut node_events =
        kube::runtime::watcher(node_api.clone(), kube::runtime::watcher::Config::default())
            .default_backoff()
            .boxed();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = Instant::now();
                for i in 0..nodes.len() {
                    if renew_at[i].is_some_and(|at| at <= now) {
                        renew_at[i] = None;
                        queue.push_back(Work::Renew(i));
                    }
                    if report_at[i].is_some_and(|at| at <= now) {
                        report_at[i] = None;
                        queue.push_back(Work::Report(i));
                    }
                }
            }
            Some(event) = node_events.next() => {
                use kube::runtime::watcher::Event;
                if let Ok(Event::Apply(node) | Event::InitApply(node)) = event
                    && let Some(&i) = index.get(&node.name_any())
                    && !reported_ready(&node)
                    && report_at[i].is_some()
                {
                    report_at[i] = Some(Instant::now());
                }
            }
            Some((work, ok)) = in_flight.next() => {
                let done = Instant::now();
                match (work, ok) {
                    (Work::Renew(i), true) => {
                        renew_at[i] = Some(done + jitter.stretch(config.lease_renew_interval, 0.04))
                    }
                    (Work::Report(i), true) => {
                        report_at[i] =
                            Some(done + jitter.stretch(config.node_status_report_frequency, 0.04))
                    }
                    (Work::Renew(i), false) => renew_at[i] = Some(done + RETRY),
                    (Work::Report(i), false) => report_at[i] = Some(done + RETRY),
                }
            }
        }
        while in_flight.len() < config.concurrency {
            let Some(work) = queue.pop_front() else {
                break;
            };
            let (leases, node_api, nodes, config) = (
                leases.clone(),
                node_api.clone(),
                nodes.clone(),
                config.clone(),
            );
            in_flight.push(async move {
                let (i, result) = match work {
                    Work::Renew(i) => (i, renew(&leases, &node_api, &nodes[i], &config).await),
                    Work::Report(i) => {
                        (i, report_status(&node_api, &nodes[i], &config, None).await)
                    }
                };
                if let Err(e) = &result {
                    tracing::warn!(node = %nodes[i].name, "heartbeat failed: {e}");
                }
                (work, result.is_ok())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut jitter = Jitter::new(7);
        for _ in 0..1000 {
            let d = jitter.stretch(Duration::from_secs(10), 0.04);
            assert!(d >= Duration::from_secs(10) && d < Duration::from_millis(10_400));
            assert!(jitter.below(Duration::from_secs(1)) < Duration::from_secs(1));
        }
        assert_eq!(jitter.below(Duration::ZERO), Duration::ZERO);
    }
}
