//! The garbage collector: deletes objects whose owners are gone (background), deletes the
//! dependents of an owner being deleted in the foreground before letting it go, and frees the
//! dependents of an owner deleted with `orphan`. It watches every resource of the catalogue and
//! every resource CRDs serve (rediscovered when a CRD changes, and periodically, as upstream
//! resyncs its monitors), and keeps only the ownership graph.

pub mod graph;
pub mod resources;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::stream::{AbortHandle, BoxStream, SelectAll};
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
use resources::{Resources, Watched};

/// How long the collector waits for every informer's first list before acting anyway: a
/// resource that cannot be watched must not stop collection of all the others.
const SYNC_GRACE: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);
/// The longest wait between looks at a dependent whose owner no informer has shown yet.
const RECHECK_MAX: Duration = Duration::from_secs(300);
/// How often the served resources are rediscovered even without a CRD event, as upstream.
const REDISCOVERY: Duration = Duration::from_secs(30);

struct Collector {
    client: Client,
    resources: Resources,
    graph: Graph,
}

impl Collector {
    fn api(&self, resource: &Watched, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| resource.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource.api),
            None => Api::all_with(self.client.clone(), &resource.api),
        }
    }

    fn node_api(&self, node: &Node) -> Api<DynamicObject> {
        self.api(self.resources.get(node.resource), node.namespace.as_deref())
    }

    /// Asks the API server which resources CRDs serve now.
    async fn rediscover(&mut self) -> Result<(), kube::Error> {
        let list = self.client.list_api_groups_aggregated().await?;
        self.resources.update(resources::discovered(&list));
        Ok(())
    }

    /// Resolves an owner the graph does not know with a live read, as upstream does, so a
    /// lagging informer never makes the collector delete a dependent of a living owner.
    async fn resolve(&mut self, node: &Node, reference: &OwnerReference) -> OwnerState {
        let state = graph::owner_state(&self.graph, reference);
        if state != OwnerState::Unknown {
            return state;
        }
        let (group, version) = match reference.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", reference.api_version.as_str()),
        };
        let mut resource = self
            .resources
            .owner_resource(group, version, &reference.kind);
        if resource.is_none() {
            // A kind served since the last discovery (a CRD just established) must be found.
            if let Err(error) = self.rediscover().await {
                tracing::warn!(%error, "garbage collector discovery");
                // Unsure: keep the dependent.
                return OwnerState::Solid;
            }
            resource = self
                .resources
                .owner_resource(group, version, &reference.kind);
        }
        let Some(resource) = resource else {
            // A kind this server does not serve cannot exist: upstream treats it as absent.
            return OwnerState::Dangling;
        };
        match self
            .api(&resource, node.namespace.as_deref())
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

    /// Acts on one object. `Ok(true)`: an owner it keeps was found by a live read, not yet by
    /// an informer, so the object must be looked at again: should that owner go before its
    /// informer ever shows it, no event would bring the object back (upstream requeues such
    /// "virtual" owners the same way).
    async fn process(&mut self, uid: &str) -> Result<bool, kube::Error> {
        let Some(node) = self.graph.get(uid).cloned() else {
            return Ok(false);
        };
        let mut owners = Vec::new();
        let mut unobserved = false;
        if !node.deleting {
            for reference in &node.owners {
                let state = self.resolve(&node, reference).await;
                unobserved |=
                    state == OwnerState::Solid && self.graph.get(&reference.uid).is_none();
                owners.push((reference.clone(), state));
            }
        }
        self.act(&node, &owners).await?;
        Ok(unobserved)
    }

    async fn act(
        &mut self,
        node: &Node,
        owners: &[(OwnerReference, OwnerState)],
    ) -> Result<(), kube::Error> {
        let api = self.node_api(node);
        match graph::decide(&self.graph, node, owners) {
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
                self.remove_finalizer(&api, node, ORPHAN).await
            }
            Step::FinishForeground => self.remove_finalizer(&api, node, FOREGROUND).await,
            Step::RemoveReferences { owners } => {
                let remaining: Vec<&OwnerReference> = node
                    .owners
                    .iter()
                    .filter(|r| !owners.contains(&r.uid))
                    .collect();
                self.patch_owners(node, remaining).await
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

/// The collector's informers (upstream's monitors), one per served resource, and its queue.
#[derive(Default)]
struct Monitors {
    events: SelectAll<BoxStream<'static, Tagged>>,
    /// Each running informer with the resource it watches, to stop it or restart it at
    /// another version.
    running: HashMap<usize, (ApiResource, AbortHandle)>,
    unsynced: HashSet<usize>,
    relisting: HashMap<usize, HashSet<String>>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// The index of CustomResourceDefinitions: their changes change the served resources.
    crds: Option<usize>,
    /// The served resources may have changed: a CRD changed, or the periodic resync is due.
    rediscover: bool,
    /// How many times in a row each object was kept for an owner no informer has shown yet.
    rechecks: HashMap<String, u32>,
    /// The generation of the resources the informers were last matched to.
    synced_generation: Option<u64>,
}

/// The wait before the `looks`-th look again at an object kept for an owner no informer has
/// shown yet: doubling from [`RETRY`], so an owner whose kind cannot be watched costs little.
fn recheck_delay(looks: u32) -> Duration {
    RETRY
        .saturating_mul(1 << looks.saturating_sub(1).min(16))
        .min(RECHECK_MAX)
}

impl Monitors {
    fn enqueue(&mut self, uids: impl IntoIterator<Item = String>) {
        for uid in uids {
            if self.queued.insert(uid.clone()) {
                self.queue.push_back(uid);
            }
        }
    }

    /// Starts an informer for each served resource without one (or watching another version)
    /// and stops those of resources no longer served, forgetting their objects: they went with
    /// their CRD, and their dependents are looked at again.
    fn sync(&mut self, client: &Client, resources: &Resources, graph: &mut Graph) {
        // Called after every item processed: the resources seldom change in between.
        if self.synced_generation == Some(resources.generation()) {
            return;
        }
        self.synced_generation = Some(resources.generation());
        let served: HashMap<usize, &Watched> = resources.served().collect();
        let gone: Vec<usize> = self
            .running
            .keys()
            .filter(|i| !served.contains_key(i))
            .copied()
            .collect();
        for i in gone {
            if let Some((api, handle)) = self.running.remove(&i) {
                handle.abort();
                tracing::info!(
                    resource = api.plural,
                    group = api.group,
                    "garbage collector stops watching"
                );
            }
            self.unsynced.remove(&i);
            self.relisting.remove(&i);
            let touched: Vec<String> = graph
                .uids_of(i)
                .into_iter()
                .flat_map(|uid| graph.remove(&uid))
                .collect();
            self.enqueue(touched);
        }
        for (i, resource) in served {
            if self
                .running
                .get(&i)
                .is_some_and(|(api, _)| *api == resource.api)
            {
                continue;
            }
            if let Some((_, handle)) = self.running.remove(&i) {
                handle.abort();
            }
            // Metadata alone, as upstream's garbage collector watches: owners and finalizers
            // are all it reads, and specs and statuses are most of every object.
            let api: Api<PartialObjectMeta<DynamicObject>> =
                Api::all_with(client.clone(), &resource.api);
            let (stream, handle) = futures::stream::abortable(
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .map(move |event| (i, event)),
            );
            self.events.push(stream.boxed());
            self.running.insert(i, (resource.api.clone(), handle));
            self.unsynced.insert(i);
        }
    }

    fn apply(&mut self, graph: &mut Graph, (resource, event): Tagged) {
        if self.crds == Some(resource)
            && matches!(
                event,
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
            )
        {
            self.rediscover = true;
        }
        let touched = match event {
            Err(error) => {
                tracing::debug!(%error, resource, "garbage collector informer");
                return;
            }
            Ok(watcher::Event::Init) => {
                self.relisting.insert(resource, HashSet::new());
                return;
            }
            Ok(watcher::Event::InitApply(object)) => {
                if let Some(node) = Node::from_meta(resource, &object.metadata) {
                    self.relisting
                        .entry(resource)
                        .or_default()
                        .insert(node.uid.clone());
                    graph.upsert(node)
                } else {
                    return;
                }
            }
            Ok(watcher::Event::InitDone) => {
                self.unsynced.remove(&resource);
                let seen = self.relisting.remove(&resource).unwrap_or_default();
                graph
                    .uids_of(resource)
                    .into_iter()
                    .filter(|uid| !seen.contains(uid))
                    .flat_map(|uid| graph.remove(&uid))
                    .collect()
            }
            Ok(watcher::Event::Apply(object)) => {
                match Node::from_meta(resource, &object.metadata) {
                    Some(node) => graph.upsert(node),
                    None => return,
                }
            }
            Ok(watcher::Event::Delete(object)) => match object.metadata.uid.as_deref() {
                Some(uid) => graph.remove(uid),
                None => return,
            },
        };
        self.enqueue(touched);
    }
}

pub async fn run(client: Client) -> anyhow::Result<()> {
    let mut collector = Collector {
        client: client.clone(),
        graph: Graph::default(),
        resources: Resources::default(),
    };
    let mut monitors = Monitors {
        crds: collector
            .resources
            .index_of("apiextensions.k8s.io", "customresourcedefinitions"),
        ..Default::default()
    };
    if let Err(error) = collector.rediscover().await {
        tracing::warn!(%error, "garbage collector discovery; watching built-in resources only for now");
    }
    monitors.sync(&client, &collector.resources, &mut collector.graph);
    let (retry_tx, mut retry_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let grace = tokio::time::sleep(SYNC_GRACE);
    tokio::pin!(grace);
    let mut grace_over = false;
    let mut rediscovery =
        tokio::time::interval_at(tokio::time::Instant::now() + REDISCOVERY, REDISCOVERY);
    rediscovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if std::mem::take(&mut monitors.rediscover) {
            if let Err(error) = collector.rediscover().await {
                tracing::warn!(%error, "garbage collector discovery");
            }
            monitors.sync(&client, &collector.resources, &mut collector.graph);
        }
        let synced = monitors.unsynced.is_empty() || grace_over;
        if synced && let Some(uid) = monitors.queue.pop_front() {
            monitors.queued.remove(&uid);
            let again = match collector.process(&uid).await {
                Ok(false) => {
                    monitors.rechecks.remove(&uid);
                    None
                }
                Ok(true) => {
                    let looks = monitors.rechecks.entry(uid.clone()).or_default();
                    *looks += 1;
                    Some(recheck_delay(*looks))
                }
                Err(error) => {
                    tracing::warn!(%error, uid, "garbage collector");
                    Some(RETRY)
                }
            };
            if let Some(delay) = again {
                let tx = retry_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(uid);
                });
            }
            // Resolving an owner may have rediscovered the served resources.
            monitors.sync(&client, &collector.resources, &mut collector.graph);
            // Take in what arrived meanwhile before the next item.
            while let Some(Some(tagged)) = monitors.events.next().now_or_never() {
                monitors.apply(&mut collector.graph, tagged);
            }
            continue;
        }
        let tagged: Tagged = tokio::select! {
            Some(tagged) = monitors.events.next() => tagged,
            Some(uid) = retry_rx.recv() => {
                monitors.enqueue([uid]);
                continue;
            }
            _ = rediscovery.tick() => {
                monitors.rediscover = true;
                continue;
            }
            () = &mut grace, if !grace_over => {
                grace_over = true;
                if !monitors.unsynced.is_empty() {
                    let names: Vec<&str> = monitors
                        .unsynced
                        .iter()
                        .map(|i| collector.resources.get(*i).api.plural.as_str())
                        .collect();
                    tracing::warn!(?names, "garbage collector runs before these informers synced");
                }
                continue;
            }
        };
        monitors.apply(&mut collector.graph, tagged);
    }
}
