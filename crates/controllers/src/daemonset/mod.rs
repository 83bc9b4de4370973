//! The DaemonSet controller: one pod per eligible node, pinned there by required node
//! affinity so the scheduler binds it; RollingUpdate (maxUnavailable, maxSurge) or OnDelete
//! updates; each template kept as a ControllerRevision for `kubectl rollout history|undo`.

pub mod eligibility;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::{Index, Informers};
use serde_json::json;

use crate::clock::Clock;
use crate::deployment::rollout::scaled;
use crate::events::{self, EventRecorder};
use crate::history::{self, HASH_LABEL};
use crate::replicaset::pods::{is_available, is_ready};
use crate::replicaset::{Expectations, slow_start};
use crate::{ownership, selector};

/// Per eligible node: its old pod and its new pod, after clean-up.
type NodePods = BTreeMap<String, (Option<Arc<Pod>>, Option<Arc<Pod>>)>;

const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("daemonset {key}: {action}: {source}")]
pub struct Error {
    key: String,
    action: String,
    source: kube::Error,
}

pub struct Context {
    pub client: Client,
    pub pods: Store<Pod>,
    /// Pods by controller, orphans by namespace.
    pub pods_by_controller: Arc<Index<Pod>>,
    pub nodes: Store<Node>,
    pub revisions: Store<ControllerRevision>,
    pub clock: Arc<dyn Clock>,
    pub expectations: Expectations,
    pub events: EventRecorder,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Nodes to create a daemon pod for.
    pub create: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    pub status: DaemonSetStatus,
}

fn hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Decides one sync: `current` is the hash of the template's revision.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    current: &str,
    now: Timestamp,
) -> Plan {
    let spec = ds.spec.clone();
    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut plan = Plan::default();
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match pod.spec.as_ref().and_then(eligibility::node_of) {
            Some(node) => by_node.entry(node).or_default().push(pod.clone()),
            None => plan.delete.push(pod.clone()),
        }
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref() != Some("OnDelete");
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        ..Default::default()
    };
    // Per eligible node, its old and new pod after clean-up, for the rolling update.
    let mut running: NodePods = BTreeMap::new();
    for node in nodes {
        let name = node.name_any();
        let (should_run, keep) = eligibility::verdict(&template_spec, node);
        let mut here = by_node.remove(&name).unwrap_or_default();
        // Failed daemon pods are replaced; finished ones never count.
        let (live, dead): (Vec<_>, Vec<_>) = here
            .drain(..)
            .partition(|p| !matches!(phase(p), "Failed" | "Succeeded"));
        plan.delete
            .extend(dead.into_iter().filter(|p| phase(p) == "Failed"));
        if !keep {
            if !live.is_empty() {
                status.number_misscheduled += 1;
            }
            plan.delete.extend(live);
            continue;
        }
        if !should_run && !live.is_empty() {
            status.number_misscheduled += 1;
        }
        if !should_run {
            continue;
        }
        status.desired_number_scheduled += 1;
        let (mut new, mut old): (Vec<_>, Vec<_>) =
            live.into_iter().partition(|p| hash(p) == Some(current));
        new.sort_by_key(|p| created(p));
        old.sort_by_key(|p| created(p));
        // One pod per node: the oldest of each kind stays, extras go.
        plan.delete.extend(new.iter().skip(1).cloned());
        plan.delete.extend(old.iter().skip(1).cloned());
        let (new, old) = (new.first().cloned(), old.first().cloned());
        let shown = new.as_ref().or(old.as_ref());
        match shown {
            None => plan.create.push(name.clone()),
            Some(pod) => {
                status.current_number_scheduled += 1;
                if is_ready(pod) {
                    status.number_ready += 1;
                }
                let available = new
                    .iter()
                    .chain(old.iter())
                    .any(|p| is_available(p, min_ready, now));
                if available {
                    status.number_available = Some(status.number_available.unwrap_or(0) + 1);
                }
            }
        }
        if new.is_some() {
            status.updated_number_scheduled =
                Some(status.updated_number_scheduled.unwrap_or(0) + 1);
        }
        running.insert(name, (old, new));
    }
    // Pods on nodes that no longer exist go too.
    plan.delete.extend(by_node.into_values().flatten());
    let desired = status.desired_number_scheduled;
    let unavailable = desired - status.number_available.unwrap_or(0);
    status.number_unavailable = (unavailable > 0).then_some(unavailable);
    if rolling {
        roll(&mut plan, &running, &spec, desired, min_ready, now);
    }
    plan.status = status;
    plan
}

/// Replaces old pods within the budget: without surge, delete old pods while at most
/// maxUnavailable nodes lack an available pod; with surge, start new pods beside available
/// old ones (at most maxSurge at once) and delete the old once the new is available.
fn roll(
    plan: &mut Plan,
    running: &NodePods,
    spec: &k8s_openapi::api::apps::v1::DaemonSetSpec,
    desired: i32,
    min_ready: i32,
    now: Timestamp,
) {
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let surge = scaled(rolling.max_surge.as_ref(), "0", desired, true);
    let mut max_unavailable = scaled(rolling.max_unavailable.as_ref(), "1", desired, true);
    if surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let available =
        |p: &Option<Arc<Pod>>| p.as_ref().is_some_and(|p| is_available(p, min_ready, now));
    let mut unavailable = running
        .values()
        .filter(|(old, new)| !available(old) && !available(new))
        .count() as i32;
    let mut surging = running
        .values()
        .filter(|(old, new)| old.is_some() && new.is_some())
        .count() as i32;
    for (node, (old, new)) in running {
        let Some(old) = old else { continue };
        match new {
            Some(new) if is_available(new, min_ready, now) => plan.delete.push(old.clone()),
            Some(_) => {}
            None if !is_available(old, min_ready, now) => plan.delete.push(old.clone()),
            None if surge > 0 => {
                if surging < surge {
                    surging += 1;
                    plan.create.push(node.clone());
                }
            }
            None => {
                if unavailable < max_unavailable {
                    unavailable += 1;
                    plan.delete.push(old.clone());
                }
            }
        }
    }
}

/// The pod the daemon set runs on `node`, from its template at revision `hash`.
pub fn pod_for(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let spec = ds.spec.clone();
    let meta = spec.template.metadata.unwrap_or_default();
    let mut pod_spec = spec.template.spec.unwrap_or_default();
    eligibility::pin_to_node(&mut pod_spec, node);
    eligibility::add_default_tolerations(&mut pod_spec);
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.to_owned());
    if let Some(generation) = ds.metadata.generation {
        labels.insert("pod-template-generation".into(), generation.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![ownership::controller_reference(
                "apps/v1",
                "DaemonSet",
                &ds.name_any(),
                ds.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = format!("{namespace}/{name}");
    let err = |action: &str| {
        let (key, action) = (key.clone(), action.to_owned());
        move |source| Error {
            key,
            action,
            source,
        }
    };
    let spec = ds.spec.clone();
    if ds.metadata.deletion_timestamp.is_some() || selector::is_empty(&spec.selector) {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let revisions = history::owned(&ctx.revisions, &ds.metadata);
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let owner = history::Owner {
        api_version: "apps/v1",
        kind: "DaemonSet",
        meta: &ds.metadata,
        template: &spec.template,
        collision_count,
    };
    let revision = match history::ensure(&ctx.client, &owner, &revisions).await {
        Ok(revision) => revision,
        Err(history::EnsureError::Collision) => {
            let patch = json!({ "status": { "collisionCount": collision_count.unwrap_or(0) + 1 } });
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(err("record hash collision"))?;
            return Ok(Action::requeue(Duration::ZERO));
        }
        Err(history::EnsureError::Api(e)) => return Err(err("store revision")(e)),
    };
    let current = history::hash_of(&revision).unwrap_or_default().to_owned();
    let pods = ownership::controlled(&ctx.pods_by_controller, &ds.metadata);
    let nodes = ctx.nodes.state();
    let mut plan = plan(&ds, &nodes, &pods, &current, now);
    let satisfied = ctx.expectations.satisfied(&key, &namespace, &ctx.pods, now);
    if !satisfied {
        plan.create.clear();
        plan.delete.clear();
    }

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let regarding = events::reference("apps/v1", "DaemonSet", &ds.metadata);
    for pod in &plan.delete {
        let pod_name = pod.name_any();
        let deleted = pods_api.delete(&pod_name, &DeleteParams::default()).await;
        deleted
            .map(drop)
            .or_else(crate::ignore_not_found)
            .map_err(err("delete pod"))?;
        ctx.expectations.deleted(&key, pod_name.clone(), now);
        let note = format!("Deleted pod: {pod_name}");
        ctx.events
            .normal(&regarding, "SuccessfulDelete", "Delete", note)
            .await;
    }
    let nodes_left = std::sync::Mutex::new(plan.create.clone().into_iter());
    let (_, error) = slow_start(plan.create.len(), || {
        let node = nodes_left.lock().unwrap().next().unwrap_or_default();
        let (pods_api, ctx, key, regarding, ds, current) =
            (&pods_api, &ctx, &key, &regarding, &ds, &current);
        async move {
            let pod = pods_api
                .create(&PostParams::default(), &pod_for(ds, &node, current))
                .await?;
            ctx.expectations.created(key, pod.name_any(), now);
            let note = format!("Created pod: {}", pod.name_any());
            ctx.events
                .normal(regarding, "SuccessfulCreate", "Create", note)
                .await;
            Ok::<(), kube::Error>(())
        }
    })
    .await;
    if let Some(error) = &error {
        let note = format!("Error creating: {error}");
        ctx.events
            .warning(&regarding, "FailedCreate", "Create", note)
            .await;
    }

    let live: Vec<&str> = pods.iter().filter_map(|p| hash(p)).collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    history::trim(&ctx.client, &revisions, &live, &[current.as_str()], limit)
        .await
        .map_err(err("trim revisions"))?;
    let mut status = plan.status;
    status.collision_count = collision_count;
    if ds.status.as_ref() != Some(&status) {
        let mut updated = (*ds).clone();
        updated.status = Some(status);
        api.replace_status(&name, &PostParams::default(), &updated)
            .await
            .map_err(err("update status"))?;
    }
    if let Some(error) = error {
        return Err(err("create pods")(error));
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let soonest = pods
        .iter()
        .filter_map(|p| crate::replicaset::pods::until_available(p, min_ready, now))
        .min();
    Ok(match soonest {
        Some(wait) => Action::requeue(wait + Duration::from_millis(100)),
        None if !satisfied => Action::requeue(Duration::from_secs(300)),
        None => Action::await_change(),
    })
}

fn error_policy(_ds: Arc<DaemonSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "daemonset sync");
    Action::requeue(RETRY)
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (pods, pod_events) = informers.cache_and_touched::<Pod>().await;
    let pods_by_controller = ownership::by_controller::<Pod>(&informers).await;
    let (nodes, node_events) = informers.cache_and_touched::<Node>().await;
    let (revisions, revision_events) = informers.cache_and_touched::<ControllerRevision>().await;
    let controller = crate::controller_for::<DaemonSet>(&informers).await;
    let sets = controller.store();
    let owner_of = |meta: &ObjectMeta| {
        let owner = ownership::controller_of(meta).filter(|o| o.kind == "DaemonSet")?;
        Some(
            ObjectRef::<DaemonSet>::new(&owner.name)
                .within(meta.namespace.as_deref().unwrap_or_default()),
        )
    };
    let controller = controller
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| owner_of(&pod.metadata))
        .watches_shared_stream(revision_events, move |r: Arc<ControllerRevision>| {
            owner_of(&r.metadata)
        })
        // Any node change may make a node eligible or not for every daemon set.
        .watches_shared_stream(node_events, move |_: Arc<Node>| {
            sets.state()
                .iter()
                .map(|ds| ObjectRef::from_obj(&**ds))
                .collect::<Vec<_>>()
        });
    let ctx = Arc::new(Context {
        events: EventRecorder::new(client.clone(), "daemonset-controller"),
        client,
        pods,
        pods_by_controller,
        nodes,
        revisions,
        clock,
        expectations: Expectations::default(),
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}
