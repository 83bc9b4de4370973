//! The pod garbage collector (upstream's `podgc`): a periodic pass over the pod and node caches
//! that deletes the oldest finished pods beyond `terminated-pod-gc-threshold`, pods bound to
//! nodes that no longer exist (confirmed with the API first, as a new node may not be cached
//! yet), and terminating pods that were never scheduled (no kubelet will finish them).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::Informers;
use serde_json::json;

use crate::clock::Clock;

/// Upstream's `--terminated-pod-gc-threshold` default.
pub const TERMINATED_POD_GC_THRESHOLD: usize = 12500;
/// Upstream's `gcCheckPeriod`.
const CHECK_PERIOD: Duration = Duration::from_secs(20);

/// The pods one pass deletes, by reason.
#[derive(Debug, Default)]
pub struct Plan {
    pub terminated: Vec<Arc<Pod>>,
    pub orphaned: Vec<Arc<Pod>>,
    pub unscheduled_terminating: Vec<Arc<Pod>>,
}

fn is_terminated(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

pub fn plan(pods: &Store<Pod>, nodes: &Store<Node>, threshold: usize) -> Plan {
    let all = pods.state();
    let mut terminated: Vec<Arc<Pod>> = all
        .iter()
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    let mut plan = Plan::default();
    if threshold > 0 && terminated.len() > threshold {
        terminated.sort_by_key(|p| (p.creation_timestamp().map(|t| t.0), p.name_any()));
        terminated.truncate(terminated.len() - threshold);
        plan.terminated = terminated;
    }
    for pod in &all {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if let Some(node) = node.filter(|n| !n.is_empty()) {
            // A pod bound to a node is its kubelet's to finish, unless the node is gone.
            if nodes.get(&ObjectRef::new(node)).is_none() {
                plan.orphaned.push(pod.clone());
            }
        } else if pod.metadata.deletion_timestamp.is_some() {
            plan.unscheduled_terminating.push(pod.clone());
        }
    }
    plan
}

async fn delete(client: &Client, pod: &Pod, grace_period: Option<u32>) {
    let namespace = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let params = DeleteParams {
        grace_period_seconds: grace_period,
        ..Default::default()
    };
    let deleted = api.delete(&pod.name_any(), &params).await;
    if let Err(error) = deleted.map(drop).or_else(crate::ignore_not_found) {
        tracing::warn!(%error, pod = %pod.name_any(), %namespace, "pod gc cannot delete pod");
    }
}

/// Marks an orphaned pod Failed with upstream's DisruptionTarget condition, then force-deletes
/// it, as no kubelet is left to finish it.
async fn delete_orphan(client: &Client, pod: &Pod, clock: &dyn Clock) {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get_opt(node.as_deref().unwrap_or_default()).await {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(error) => {
            tracing::warn!(%error, "pod gc cannot confirm a node is gone");
            return;
        }
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let mut status = json!({ "conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByPodGC",
        "message": "PodGC: node no longer exists",
        "lastTransitionTime": clock.now().to_string(),
    }]});
    if !is_terminated(pod) {
        status["phase"] = json!("Failed");
    }
    let patch = Patch::Strategic(json!({ "status": status }));
    if let Err(error) = api
        .patch_status(&pod.name_any(), &PatchParams::default(), &patch)
        .await
    {
        tracing::debug!(%error, pod = %pod.name_any(), "pod gc cannot mark orphan failed");
    }
    delete(client, pod, Some(0)).await;
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let pods = informers.store::<Pod>().await;
    let nodes = informers.store::<Node>().await;
    loop {
        let plan = plan(&pods, &nodes, TERMINATED_POD_GC_THRESHOLD);
        for pod in &plan.terminated {
            delete(&client, pod, Some(0)).await;
        }
        for pod in &plan.orphaned {
            delete_orphan(&client, pod, clock.as_ref()).await;
        }
        for pod in &plan.unscheduled_terminating {
            delete(&client, pod, Some(0)).await;
        }
        tokio::time::sleep(CHECK_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::endpointslice::tests::cache;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn the_oldest_terminated_pods_beyond_the_threshold_are_deleted() {
        let pods = cache(vec![
            pod("new", Some("n"), "Succeeded", 30),
            pod("old", Some("n"), "Failed", 10),
            pod("mid", Some("n"), "Succeeded", 20),
            pod("running", Some("n"), "Running", 0),
        ]);
        let plan = plan(&pods, &cache(vec![node("n")]), 1);
        assert_eq!(names(&plan.terminated), vec!["old", "mid"]);
        assert!(plan.orphaned.is_empty());
    }

    #[test]
    fn pods_on_missing_nodes_are_orphans() {
        let pods = cache(vec![
            pod("here", Some("n"), "Running", 0),
            pod("lost", Some("gone"), "Running", 0),
        ]);
        let plan = plan(&pods, &cache(vec![node("n")]), TERMINATED_POD_GC_THRESHOLD);
        assert_eq!(names(&plan.orphaned), vec!["lost"]);
    }

    #[test]
    fn unscheduled_terminating_pods_are_deleted_but_pending_ones_kept() {
        let mut leaving = pod("leaving", None, "Pending", 0);
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap()));
        let pods = cache(vec![leaving, pod("waiting", None, "Pending", 0)]);
        let plan = plan(&pods, &cache(Vec::new()), TERMINATED_POD_GC_THRESHOLD);
        assert_eq!(names(&plan.unscheduled_terminating), vec!["leaving"]);
    }
}
