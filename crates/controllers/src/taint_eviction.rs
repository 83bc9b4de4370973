//! The taint eviction controller (upstream's `taint-eviction-controller`): a pod on a node with
//! a NoExecute taint it does not tolerate is deleted at once; one tolerating every such taint
//! for a while is deleted that long after the taint was added (the shortest `tolerationSeconds`
//! among the tolerations used). The deadline counts from the taint's `timeAdded`, so a restart
//! of the controller never pushes an eviction back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::Informers;
use r8s_scheduler::plugins::taint_toleration::tolerates;
use serde_json::json;

use crate::clock::Clock;
use crate::node_lifecycle::health::NO_EXECUTE;

const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    EvictNow,
    EvictAt(Timestamp),
}

/// What to do with the pod given its node's NoExecute taints.
pub fn verdict(pod: &Pod, node: &Node) -> Verdict {
    if pod.metadata.deletion_timestamp.is_some() {
        return Verdict::Keep;
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    let no_execute: Vec<&Taint> = taints
        .into_iter()
        .flatten()
        .filter(|t| t.effect == NO_EXECUTE)
        .collect();
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
    let tolerations: Vec<&Toleration> = tolerations.into_iter().flatten().collect();
    let mut deadline: Option<Timestamp> = None;
    for taint in no_execute {
        let used: Vec<&&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Verdict::EvictNow;
        }
        // A toleration without seconds tolerates forever; otherwise the shortest one counts.
        let Some(seconds) = used.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let since = taint
            .time_added
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
        let at = since + SignedDuration::from_secs(seconds.max(0));
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    match deadline {
        Some(at) => Verdict::EvictAt(at),
        None => Verdict::Keep,
    }
}

pub struct Context {
    pub client: Client,
    pub nodes: Store<Node>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
#[error("pod {key}: {action}: {source}")]
pub struct Error {
    key: String,
    action: &'static str,
    source: kube::Error,
}

async fn sync(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
        return Ok(Action::await_change());
    };
    let Some(node) = ctx.nodes.get(&ObjectRef::new(node_name)) else {
        return Ok(Action::await_change());
    };
    let now = ctx.clock.now();
    match verdict(&pod, &node) {
        Verdict::Keep => Ok(Action::await_change()),
        Verdict::EvictAt(at) if at > now => {
            let wait = at.duration_since(now).unsigned_abs();
            Ok(Action::requeue(wait + Duration::from_millis(100)))
        }
        Verdict::EvictAt(_) | Verdict::EvictNow => {
            evict(&pod, &ctx).await?;
            Ok(Action::await_change())
        }
    }
}

/// Marks the pod with upstream's DisruptionTarget condition, then deletes it.
async fn evict(pod: &Pod, ctx: &Context) -> Result<(), Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let err = |action| {
        let key = format!("{namespace}/{name}");
        move |source| Error {
            key,
            action,
            source,
        }
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let condition = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": ctx.clock.now().to_string(),
    });
    let patch = json!({ "status": { "conditions": [condition] } });
    api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(drop)
        .or_else(crate::ignore_not_found)
        .map_err(err("mark DisruptionTarget"))?;
    tracing::info!(pod = %format!("{namespace}/{name}"), "evicting pod for a NoExecute taint");
    api.delete(&name, &DeleteParams::default())
        .await
        .map(drop)
        .or_else(crate::ignore_not_found)
        .map_err(err("delete"))
}

fn error_policy(_pod: Arc<Pod>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "taint eviction");
    Action::requeue(RETRY)
}

fn has_no_execute_taint(node: &Node) -> bool {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints.into_iter().flatten().any(|t| t.effect == NO_EXECUTE)
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (nodes, node_events) = informers.cache_and_touched::<Node>().await;
    let pods = informers.store::<Pod>().await;
    // Only bound pods can be evicted.
    let bound = informers.subscribe::<Pod>().await.applied().filter(|pod| {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        futures::future::ready(node.is_some_and(|n| !n.is_empty()))
    });
    let controller = Controller::for_shared_stream(bound, pods.clone());
    // Only tainted nodes can evict, so healthy nodes' status updates trigger nothing.
    let controller = controller.watches_shared_stream(node_events, move |node: Arc<Node>| {
        if !has_no_execute_taint(&node) {
            return Vec::new();
        }
        let name = node.name_any();
        pods.state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(&name))
            .iter()
            .map(|p| ObjectRef::from_obj(&**p))
            .collect()
    });
    let ctx = Arc::new(Context {
        client,
        nodes,
        clock,
    });
    controller
        .run(sync, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn node_with(taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("node-a".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn unreachable_since(seconds: i64) -> Taint {
        Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: NO_EXECUTE.into(),
            time_added: Some(Time(at(seconds))),
            value: None,
        }
    }

    fn pod_tolerating(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn unreachable_for(seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some("node.kubernetes.io/unreachable".into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn pods_not_tolerating_a_no_execute_taint_are_evicted_at_once() {
        let node = node_with(vec![unreachable_since(100)]);
        assert_eq!(verdict(&pod_tolerating(vec![]), &node), Verdict::EvictNow);
    }

    #[test]
    fn pods_tolerating_unreachable_for_a_time_are_evicted_after_it() {
        let node = node_with(vec![unreachable_since(100)]);
        let pod = pod_tolerating(vec![unreachable_for(Some(300))]);
        assert_eq!(verdict(&pod, &node), Verdict::EvictAt(at(400)));
    }

    #[test]
    fn pods_tolerating_a_taint_forever_stay() {
        let node = node_with(vec![unreachable_since(100)]);
        let pod = pod_tolerating(vec![unreachable_for(None)]);
        assert_eq!(verdict(&pod, &node), Verdict::Keep);
        let wildcard = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(
            verdict(&pod_tolerating(vec![wildcard]), &node),
            Verdict::Keep
        );
    }

    #[test]
    fn no_schedule_taints_never_evict() {
        let mut taint = unreachable_since(100);
        taint.effect = "NoSchedule".into();
        assert_eq!(
            verdict(&pod_tolerating(vec![]), &node_with(vec![taint])),
            Verdict::Keep
        );
    }

    #[test]
    fn equal_tolerations_need_the_taints_value() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: NO_EXECUTE.into(),
            time_added: None,
        };
        let mut toleration = Toleration {
            key: Some("dedicated".into()),
            value: Some("web".into()),
            ..Default::default()
        };
        assert!(!tolerates(&toleration, &taint));
        toleration.value = Some("db".into());
        assert!(tolerates(&toleration, &taint));
    }
}
