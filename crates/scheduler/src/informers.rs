//! The shared informers' changes keep the cache, the queue and the default spreading selectors
//! up to date.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, Service};
use kube::{Resource, ResourceExt};
use r8s_informers::{Change, Subscription, Watchable};
use tokio::sync::watch;

use crate::SCHEDULER_NAME;
use crate::cache::PodInfo;
use crate::labels::Selector;
use crate::queue::ClusterEvent;
use crate::scheduler::Shared;

/// Feeds one shared informer's changes to `apply` and `delete`; signals `synced` once the
/// objects the informer held when subscribed (queued first) are applied.
async fn inform<K>(
    mut changes: Subscription<K>,
    mut apply: impl FnMut(Arc<K>),
    mut delete: impl FnMut(&K),
    synced: watch::Sender<bool>,
) {
    let mut handle = |change| match change {
        Change::Applied(object) => apply(object),
        Change::Deleted(object) => delete(&object),
    };
    while let Some(Some(change)) = changes.next().now_or_never() {
        handle(change);
    }
    let _ = synced.send(true);
    while let Some(change) = changes.next().await {
        handle(change);
    }
}

fn uid<K: Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_default()
}

/// Placed pods go to the cache, pending ones (ours, not being deleted) to the queue; finished
/// pods count as gone, as upstream's scheduler ignores terminal pods.
pub async fn pods(changes: Subscription<Pod>, shared: Arc<Shared>, synced: watch::Sender<bool>) {
    let apply_shared = shared.clone();
    let apply = move |pod: Arc<Pod>| {
        let shared = &apply_shared;
        let uid = uid(&*pod);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            forget_pod(shared, &uid);
            return;
        }
        let spec = pod.spec.as_ref();
        let node = spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        if let Some(node) = node {
            let info = Arc::new(PodInfo::new(pod));
            shared.cache.lock().unwrap().add_bound_pod(info, &node);
            let mut queue = shared.queue.lock().unwrap();
            queue.remove(&uid);
            queue.on_cluster_event(ClusterEvent::AssignedPodAdded);
            drop(queue);
            shared.wake.notify_one();
            return;
        }
        let ours = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(SCHEDULER_NAME)
            == SCHEDULER_NAME;
        if !ours || pod.metadata.deletion_timestamp.is_some() {
            shared.queue.lock().unwrap().remove(&uid);
            return;
        }
        if shared.cache.lock().unwrap().is_placed(&uid) {
            // Assumed: its binding is in flight.
            return;
        }
        shared
            .queue
            .lock()
            .unwrap()
            .add_or_update(Arc::new(PodInfo::new(pod)));
        shared.wake.notify_one();
    };
    let delete = |pod: &Pod| forget_pod(&shared, &uid(pod));
    inform(changes, apply, delete, synced).await;
}

fn forget_pod(shared: &Shared, uid: &str) {
    let removed = shared.cache.lock().unwrap().remove_pod(uid).is_some();
    let mut queue = shared.queue.lock().unwrap();
    queue.remove(uid);
    if removed {
        queue.on_cluster_event(ClusterEvent::AssignedPodDeleted);
        drop(queue);
        shared.wake.notify_one();
    }
}

pub async fn nodes(changes: Subscription<Node>, shared: Arc<Shared>, synced: watch::Sender<bool>) {
    let apply = |node: Arc<Node>| {
        let mut cache = shared.cache.lock().unwrap();
        let new = cache.node(&node.name_any()).is_none();
        let changed = cache.upsert_node(node);
        drop(cache);
        if changed {
            let event = if new {
                ClusterEvent::NodeAdded
            } else {
                ClusterEvent::NodeChanged
            };
            shared.queue.lock().unwrap().on_cluster_event(event);
            shared.wake.notify_one();
        }
    };
    let delete = |node: &Node| shared.cache.lock().unwrap().remove_node(&node.name_any());
    inform(changes, apply, delete, synced).await;
}

pub async fn namespaces(
    changes: Subscription<Namespace>,
    shared: Arc<Shared>,
    synced: watch::Sender<bool>,
) {
    let apply = |ns: Arc<Namespace>| {
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        shared
            .cache
            .lock()
            .unwrap()
            .namespaces
            .insert(ns.name_any(), labels);
    };
    let delete = |ns: &Namespace| {
        shared
            .cache
            .lock()
            .unwrap()
            .namespaces
            .remove(&ns.name_any());
    };
    inform(changes, apply, delete, synced).await;
}

/// Keeps the selectors of one kind of pod owner for PodTopologySpread's system defaults.
pub async fn selectors<K>(
    changes: Subscription<K>,
    shared: Arc<Shared>,
    selector: fn(&K) -> Option<Selector>,
    synced: watch::Sender<bool>,
) where
    K: Watchable,
{
    let kind = K::kind(&());
    let apply = |object: Arc<K>| {
        let (namespace, name) = (
            object.meta().namespace.clone().unwrap_or_default(),
            object.meta().name.clone().unwrap_or_default(),
        );
        shared
            .default_selectors
            .set(&namespace, format!("{kind}/{name}"), selector(&object));
    };
    let delete = |object: &K| {
        let (namespace, name) = (
            object.meta().namespace.as_deref().unwrap_or_default(),
            object.meta().name.as_deref().unwrap_or_default(),
        );
        shared
            .default_selectors
            .set(namespace, format!("{kind}/{name}"), None);
    };
    inform(changes, apply, delete, synced).await;
}

pub fn service_selector(service: &Service) -> Option<Selector> {
    let map = service.spec.as_ref()?.selector.as_ref()?;
    (!map.is_empty()).then(|| Selector::from_map(map))
}

pub fn replication_controller_selector(rc: &ReplicationController) -> Option<Selector> {
    let map = rc.spec.as_ref()?.selector.as_ref()?;
    (!map.is_empty()).then(|| Selector::from_map(map))
}

pub fn replica_set_selector(rs: &ReplicaSet) -> Option<Selector> {
    Some(Selector::from_label_selector(Some(&rs.spec.selector)))
}

pub fn stateful_set_selector(sts: &StatefulSet) -> Option<Selector> {
    Some(Selector::from_label_selector(Some(&sts.spec.selector)))
}
