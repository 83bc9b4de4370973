//! The garbage collector: deletes objects whose owners are gone (background), deletes the
//! dependents of an owner being deleted in the foreground before letting it go, and frees the
//! dependents of an owner deleted with `orphan`. It watches every resource of the catalogue and
//! keeps only the ownership graph.

pub mod graph;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use graph::{FOREGROUND, Graph, Node, ORPHAN, OwnerState, Step};

/// How long the collector waits for every informer's first list before acting anyway: a
/// resource that cannot be watched must not stop collection of all the others.
const SYNC_GRACE: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

/// Every resource that holds objects, once per storage location.
pub fn watched_resources() -> Vec<&'static r8s_api::Resource> {
    let mut seen = HashSet::new();
    r8s_api::catalogue()
        .iter()
        .filter(|r| {
            ["list", "watch", "delete", "patch"]
                .iter()
                .all(|v| r.verbs.contains(v))
        })
        .filter(|r| seen.insert(r.storage_prefix()))
        .collect()
}

fn api_resource(r: &r8s_api::Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_owned(),
        version: r.version.to_owned(),
        api_version: r.api_version(),
        kind: r.kind.to_owned(),
        plural: r.plural.to_owned(),
    }
}

struct Collector {
    client: Client,
    resources: Vec<&'static r8s_api::Resource>,
    graph: Graph,
}

impl Collector {
    fn api(&self, resource: &r8s_api::Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = api_resource(resource);
        match namespace.filter(|_| resource.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    fn node_api(&self, node: &Node) -> Api<DynamicObject> {
        self.api(self.resources[node.resource], node.namespace.as_deref())
    }

    /// Resolves an owner the graph does not know with a live read, as upstream does, so a
    /// lagging informer never makes the collector delete a dependent of a living owner.
    async fn resolve(&self, node: &Node, reference: &OwnerReference) -> OwnerState {
        let state = graph::owner_state(&self.graph, reference);
        if state != OwnerState::Unknown {
            return state;
        }
        let (group, version) = match reference.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", reference.api_version.as_str()),
        };
        let candidates: Vec<&r8s_api::Resource> = r8s_api::catalogue()
            .iter()
            .filter(|r| r.group == group && r.kind == reference.kind)
            .collect();
        let Some(resource) = candidates
            .iter()
            .find(|r| r.version == version)
            .or(candidates.first())
        else {
            // A kind this server does not serve cannot exist: upstream treats it as absent.
            return OwnerState::Dangling;
        };
        match self
            .api(resource, node.namespace.as_deref())
            .get_opt(&reference.name)
            .await
        {
            Ok(Some(owner)) if owner.metadata.uid.as_deref() == Some(reference.uid.as_str()) => {
                OwnerState::Solid
            }
            Ok(_) => OwnerState::Dangling,
            // Unsure: keep the dependent.
            Err(_) => OwnerState::Solid,
        }
    }

    async fn process(&self, uid: &str) -> Result<(), kube::Error> {
        let Some(node) = self.graph.get(uid).cloned() else {
            return Ok(());
        };
        let mut owners = Vec::new();
        if !node.deleting {
            for reference in &node.owners {
                owners.push((reference.clone(), self.resolve(&node, reference).await));
            }
        }
        let api = self.node_api(&node);
        match graph::decide(&self.graph, &node, &owners) {
            Step::Nothing => Ok(()),
            Step::Orphan { dependents } => {
                for dependent in dependents.iter().filter_map(|d| self.graph.get(d)) {
                    let remaining: Vec<&OwnerReference> = dependent
                        .owners
                        .iter()
                        .filter(|r| r.uid != node.uid)
                        .collect();
                    self.patch_owners(dependent, remaining).await?;
                }
                self.remove_finalizer(&api, &node, ORPHAN).await
            }
            Step::FinishForeground => self.remove_finalizer(&api, &node, FOREGROUND).await,
            Step::RemoveReferences { owners } => {
                let remaining: Vec<&OwnerReference> = node
                    .owners
                    .iter()
                    .filter(|r| !owners.contains(&r.uid))
                    .collect();
                self.patch_owners(&node, remaining).await
            }
            Step::Delete { foreground } => {
                let params = DeleteParams {
                    propagation_policy: Some(if foreground {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(node.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                tracing::info!(name = node.name, namespace = ?node.namespace, foreground, "garbage collecting");
                api.delete(&node.name, &params)
                    .await
                    .map(drop)
                    .or_else(crate::ignore_not_found)
            }
        }
    }

    async fn patch_owners(
        &self,
        node: &Node,
        owners: Vec<&OwnerReference>,
    ) -> Result<(), kube::Error> {
        let patch = json!({ "metadata": {
            "ownerReferences": owners,
            "uid": node.uid,
            "resourceVersion": node.resource_version,
        }});
        self.node_api(node)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .or_else(crate::ignore_not_found)
    }

    async fn remove_finalizer(
        &self,
        api: &Api<DynamicObject>,
        node: &Node,
        finalizer: &str,
    ) -> Result<(), kube::Error> {
        let finalizers: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({ "metadata": {
            "finalizers": finalizers,
            "uid": node.uid,
            "resourceVersion": node.resource_version,
        }});
        api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .or_else(crate::ignore_not_found)
    }
}

/// One informer event, tagged with the index of its resource.
type Tagged = (
    usize,
    Result<watcher::Event<PartialObjectMeta<DynamicObject>>, watcher::Error>,
);

pub async fn run(client: Client) -> anyhow::Result<()> {
    let resources = watched_resources();
    let streams = resources.iter().enumerate().map(|(i, r)| {
        // Metadata alone, as upstream's garbage collector watches: owners and finalizers are all
        // it reads, and specs and statuses are most of every object.
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(client.clone(), &api_resource(r));
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |event| (i, event))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut collector = Collector {
        client,
        graph: Graph::default(),
        resources,
    };
    let mut unsynced: HashSet<usize> = (0..collector.resources.len()).collect();
    let mut relisting: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut queued: HashSet<String> = HashSet::new();
    let (retry_tx, mut retry_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let grace = tokio::time::sleep(SYNC_GRACE);
    tokio::pin!(grace);
    let mut grace_over = false;
    loop {
        let synced = unsynced.is_empty() || grace_over;
        if synced && let Some(uid) = queue.pop_front() {
            queued.remove(&uid);
            if let Err(error) = collector.process(&uid).await {
                tracing::warn!(%error, uid, "garbage collector");
                let tx = retry_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY).await;
                    let _ = tx.send(uid);
                });
            }
            // Take in what arrived meanwhile before the next item.
            while let Some(Some(tagged)) = events.next().now_or_never() {
                apply(
                    &mut collector.graph,
                    tagged,
                    &mut unsynced,
                    &mut relisting,
                    &mut queue,
                    &mut queued,
                );
            }
            continue;
        }
        let tagged: Tagged = tokio::select! {
            Some(tagged) = events.next() => tagged,
            Some(uid) = retry_rx.recv() => {
                if queued.insert(uid.clone()) { queue.push_back(uid); }
                continue;
            }
            () = &mut grace, if !grace_over => {
                grace_over = true;
                if !unsynced.is_empty() {
                    let names: Vec<&str> = unsynced.iter().map(|i| collector.resources[*i].plural).collect();
                    tracing::warn!(?names, "garbage collector runs before these informers synced");
                }
                continue;
            }
        };
        apply(
            &mut collector.graph,
            tagged,
            &mut unsynced,
            &mut relisting,
            &mut queue,
            &mut queued,
        );
    }
}

fn apply(
    graph: &mut Graph,
    (resource, event): Tagged,
    unsynced: &mut HashSet<usize>,
    relisting: &mut HashMap<usize, HashSet<String>>,
    queue: &mut VecDeque<String>,
    queued: &mut HashSet<String>,
) {
    let touched = match event {
        Err(error) => {
            tracing::debug!(%error, resource, "garbage collector informer");
            return;
        }
        Ok(watcher::Event::Init) => {
            relisting.insert(resource, HashSet::new());
            return;
        }
        Ok(watcher::Event::InitApply(object)) => {
            if let Some(node) = Node::from_meta(resource, &object.metadata) {
                relisting
                    .entry(resource)
                    .or_default()
                    .insert(node.uid.clone());
                graph.upsert(node)
            } else {
                return;
            }
        }
        Ok(watcher::Event::InitDone) => {
            unsynced.remove(&resource);
            let seen = relisting.remove(&resource).unwrap_or_default();
            graph
                .uids_of(resource)
                .into_iter()
                .filter(|uid| !seen.contains(uid))
                .flat_map(|uid| graph.remove(&uid))
                .collect()
        }
        Ok(watcher::Event::Apply(object)) => match Node::from_meta(resource, &object.metadata) {
            Some(node) => graph.upsert(node),
            None => return,
        },
        Ok(watcher::Event::Delete(object)) => match object.metadata.uid.as_deref() {
            Some(uid) => graph.remove(uid),
            None => return,
        },
    };
    for uid in touched {
        if queued.insert(uid.clone()) {
            queue.push_back(uid);
        }
    }
}
