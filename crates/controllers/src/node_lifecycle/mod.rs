//! The node lifecycle controller: a node whose kubelet has been silent (no Lease renewal, no
//! Ready heartbeat) for the grace period gets Unknown conditions and its pods are marked not
//! ready; every node carries the managed taints its conditions and `spec.unschedulable` call
//! for (not-ready / unreachable NoExecute and NoSchedule, pressure, unschedulable), removed when
//! it recovers. The NoExecute taints drive `taint_eviction`.

pub mod health;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::Informers;
use serde_json::json;

use crate::clock::Clock;
use crate::events::{self, EventRecorder};
use crate::replicaset::pods::is_ready;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream's `--node-monitor-grace-period` default.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(40);
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("node {node}: {action}: {source}")]
pub struct Error {
    node: String,
    action: String,
    source: kube::Error,
}

pub struct Context {
    pub client: Client,
    pub leases: Store<Lease>,
    pub pods: Store<Pod>,
    pub clock: Arc<dyn Clock>,
    pub grace: SignedDuration,
    pub events: EventRecorder,
}

/// What one sync writes, decided from the caches alone.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New conditions when the node has gone silent.
    pub conditions: Option<Vec<k8s_openapi::api::core::v1::NodeCondition>>,
    /// New taints when the managed ones are out of line.
    pub taints: Option<Vec<k8s_openapi::api::core::v1::Taint>>,
    /// Ready pods on a silent node, to mark not ready.
    pub pods_not_ready: Vec<String>,
    /// When to look again if the node is not silent yet.
    pub recheck_at: Option<Timestamp>,
}

pub fn plan(
    node: &Node,
    lease: Option<&Lease>,
    pods: &Store<Pod>,
    grace: SignedDuration,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let mut judged = node.clone();
    match health::silent_at(node, lease, grace) {
        Some(at) if at > now => plan.recheck_at = Some(at),
        _ => {
            plan.conditions = health::unknown_conditions(node, now);
            if let Some(conditions) = &plan.conditions {
                judged.status.get_or_insert_default().conditions = Some(conditions.clone());
            }
            let name = node.name_any();
            plan.pods_not_ready = pods
                .state_filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(&name) && is_ready(p)
                })
                .iter()
                .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
                .collect();
            plan.pods_not_ready.sort();
        }
    }
    plan.taints = health::reconciled_taints(&judged, now);
    plan
}

async fn sync(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = node.name_any();
    let err = |action: String| {
        let node = name.clone();
        move |source| Error {
            node,
            action,
            source,
        }
    };
    let lease = ctx
        .leases
        .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
    let now = ctx.clock.now();
    let plan = plan(&node, lease.as_deref(), &ctx.pods, ctx.grace, now);
    let api: Api<Node> = Api::all(ctx.client.clone());
    let params = PatchParams::default();
    let mut resource_version = node.metadata.resource_version.clone();
    if let Some(conditions) = &plan.conditions {
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "status": { "conditions": conditions },
        });
        let updated = api
            .patch_status(&name, &params, &Patch::Merge(patch))
            .await
            .map_err(err("mark conditions Unknown".into()))?;
        resource_version = updated.metadata.resource_version;
        let regarding = events::reference("v1", "Node", &node.metadata);
        let note = format!("Node {name} status is now: NodeNotReady");
        ctx.events
            .normal(&regarding, "NodeNotReady", "NodeNotReady", note)
            .await;
    }
    if let Some(taints) = &plan.taints {
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": { "taints": taints },
        });
        api.patch(&name, &params, &Patch::Merge(patch))
            .await
            .map_err(err("update taints".into()))?;
    }
    for key in &plan.pods_not_ready {
        let (namespace, pod) = key.split_once('/').unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        // Strategic merge keys conditions by type, so only Ready changes.
        let patch = json!({ "status": { "conditions": [{
            "type": "Ready",
            "status": "False",
            "lastTransitionTime": now.to_string(),
        }]}});
        pods.patch_status(pod, &params, &Patch::Strategic(patch))
            .await
            .map(drop)
            .or_else(crate::ignore_not_found)
            .map_err(err(format!("mark pod {key} not ready")))?;
    }
    Ok(match plan.recheck_at {
        Some(at) => {
            let wait = at.duration_since(now).unsigned_abs();
            Action::requeue(wait + Duration::from_millis(100))
        }
        None => Action::await_change(),
    })
}

fn error_policy(_node: Arc<Node>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "node lifecycle");
    Action::requeue(RETRY)
}

pub async fn run(
    informers: Arc<Informers>,
    clock: Arc<dyn Clock>,
    grace: Duration,
) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (leases, lease_events) = informers.cache_and_touched::<Lease>().await;
    // Pods only feed the cache; a silent node re-syncs on its own schedule.
    let pods = informers.store::<Pod>().await;
    let ctx = Arc::new(Context {
        events: EventRecorder::new(client.clone(), "node-controller"),
        client: client.clone(),
        leases,
        pods,
        clock,
        grace: SignedDuration::try_from(grace)?,
    });
    crate::controller_for::<Node>(&informers)
        .await
        .watches_shared_stream(lease_events, |lease: Arc<Lease>| {
            (lease.namespace().as_deref() == Some(LEASE_NAMESPACE))
                .then(|| ObjectRef::new(&lease.name_any()))
        })
        .run(sync, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}
