//! Informers: watches that keep the cache, the queue and the default spreading selectors up to
//! date. A relist (watch restart) deletes what disappeared meanwhile.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, Service};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::SCHEDULER_NAME;
use crate::cache::PodInfo;
use crate::labels::Selector;
use crate::queue::ClusterEvent;
use crate::scheduler::Shared;

/// Drives one watch: `apply` for every object seen, `delete` (by key) for every object gone,
/// including those missing from a relist; signals `synced` after the first full list.
async fn inform<K, S>(
    stream: S,
    key: impl Fn(&K) -> String,
    mut apply: impl FnMut(K),
    mut delete: impl FnMut(&str),
    synced: watch::Sender<bool>,
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut known: HashSet<String> = HashSet::new();
    let mut relisted: HashSet<String> = HashSet::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(object)) => {
                known.insert(key(&object));
                apply(object);
            }
            Ok(Event::Delete(object)) => {
                let k = key(&object);
                known.remove(&k);
                delete(&k);
            }
            Ok(Event::Init) => relisted.clear(),
            Ok(Event::InitApply(object)) => {
                relisted.insert(key(&object));
                apply(object);
            }
            Ok(Event::InitDone) => {
                for gone in known.difference(&relisted) {
                    delete(gone);
                }
                known = std::mem::take(&mut relisted);
                let _ = synced.send(true);
            }
            Err(error) => tracing::warn!(%error, "scheduler watch failed; retrying"),
        }
    }
}

fn stream<K>(
    client: &Client,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static,
{
    watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff()
}

fn uid<K: Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_default()
}

/// Placed pods go to the cache, pending ones (ours, not being deleted) to the queue; finished
/// pods count as gone, as upstream's scheduler ignores terminal pods.
pub async fn pods(client: Client, shared: Arc<Shared>, synced: watch::Sender<bool>) {
    let apply_shared = shared.clone();
    let apply = move |pod: Pod| {
        let shared = &apply_shared;
        let uid = uid(&pod);
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
    let delete = |uid: &str| forget_pod(&shared, uid);
    inform(stream::<Pod>(&client), uid, apply, delete, synced).await;
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

pub async fn nodes(client: Client, shared: Arc<Shared>, synced: watch::Sender<bool>) {
    let apply = |node: Node| {
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
    let delete = |name: &str| shared.cache.lock().unwrap().remove_node(name);
    inform(
        stream::<Node>(&client),
        |n: &Node| n.name_any(),
        apply,
        delete,
        synced,
    )
    .await;
}

pub async fn namespaces(client: Client, shared: Arc<Shared>, synced: watch::Sender<bool>) {
    let apply = |ns: Namespace| {
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        shared
            .cache
            .lock()
            .unwrap()
            .namespaces
            .insert(ns.name_any(), labels);
    };
    let delete = |name: &str| {
        shared.cache.lock().unwrap().namespaces.remove(name);
    };
    inform(
        stream::<Namespace>(&client),
        |n: &Namespace| n.name_any(),
        apply,
        delete,
        synced,
    )
    .await;
}

/// Keeps the selectors of one kind of pod owner for PodTopologySpread's system defaults.
pub async fn selectors<K>(
    client: Client,
    shared: Arc<Shared>,
    selector: fn(&K) -> Option<Selector>,
    synced: watch::Sender<bool>,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let kind = K::kind(&());
    let key = |object: &K| {
        format!(
            "{}/{}",
            object.meta().namespace.as_deref().unwrap_or_default(),
            object.meta().name.as_deref().unwrap_or_default()
        )
    };
    let apply = |object: K| {
        let (namespace, name) = (
            object.meta().namespace.clone().unwrap_or_default(),
            object.meta().name.clone().unwrap_or_default(),
        );
        shared
            .default_selectors
            .set(&namespace, format!("{kind}/{name}"), selector(&object));
    };
    let delete = |k: &str| {
        let (namespace, name) = k.split_once('/').unwrap_or(("", k));
        shared
            .default_selectors
            .set(namespace, format!("{kind}/{name}"), None);
    };
    inform(stream::<K>(&client), key, apply, delete, synced).await;
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
