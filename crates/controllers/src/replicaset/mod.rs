//! The ReplicaSet and ReplicationController controllers: keep `spec.replicas` pods matching the
//! selector, owned through a controller reference. A ReplicationController is handled as the
//! ReplicaSet it converts to, as upstream does.

mod expectations;
pub mod pods;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;

use r8s_informers::{Index, Informers, Watchable};

use crate::clock::Clock;
use crate::events::{self, EventRecorder};
use crate::{ownership, selector};
pub use expectations::Expectations;

/// Upstream's `BurstReplicas`: at most this many creates or deletes per sync.
const BURST_REPLICAS: usize = 500;
const RETRY: Duration = Duration::from_secs(5);

/// The kind a controller manages, with the names it uses on the wire.
pub struct Workload {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub plural: &'static str,
    pub group: &'static str,
    pub reporting_controller: &'static str,
}

pub const REPLICA_SET: Workload = Workload {
    kind: "ReplicaSet",
    api_version: "apps/v1",
    plural: "replicasets",
    group: "apps",
    reporting_controller: "replicaset-controller",
};

pub const REPLICATION_CONTROLLER: Workload = Workload {
    kind: "ReplicationController",
    api_version: "v1",
    plural: "replicationcontrollers",
    group: "",
    reporting_controller: "replication-controller",
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {key}: {action}: {source}")]
    Api {
        kind: &'static str,
        key: String,
        action: String,
        source: kube::Error,
    },
}

pub struct Context {
    pub client: Client,
    pub pods: Store<Pod>,
    /// Pods by controller, orphans by namespace: what a sync may claim.
    pub pods_by_controller: Arc<Index<Pod>>,
    pub clock: Arc<dyn Clock>,
    pub expectations: Expectations,
    pub events: EventRecorder,
    pub workload: &'static Workload,
}

/// What one sync will do, decided from the caches alone.
#[derive(Debug, Default)]
pub struct Plan {
    /// Orphans matching the selector, to adopt.
    pub adopt: Vec<Arc<Pod>>,
    /// Pods we control that no longer match, to release.
    pub release: Vec<Arc<Pod>>,
    /// Active pods we control (adopted ones included).
    pub owned: Vec<Arc<Pod>>,
    /// Pods to create now.
    pub create: usize,
    /// Pods to delete now, in upstream's preference order.
    pub delete: Vec<Arc<Pod>>,
}

fn selector_of(rs: &ReplicaSet) -> LabelSelector {
    rs.spec.selector.clone()
}

/// Claims pods among `candidates` (at least ours and our namespace's orphans; others are
/// ignored) and decides how many to create or delete.
pub fn plan(rs: &ReplicaSet, candidates: Vec<Arc<Pod>>, expectations_satisfied: bool) -> Plan {
    let namespace = rs.namespace().unwrap_or_default();
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let selector = selector_of(rs);
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut plan = Plan::default();
    if selector::is_empty(&selector) {
        return plan;
    }
    // The selector is matched only against our pods and orphans: a namespace of many
    // workloads holds mostly pods of others, and matching each of them made every sync cost
    // the namespace's size in selector work.
    let matches = |pod: &Pod| selector::matches(&selector, pod.metadata.labels.as_ref());
    let candidates = candidates.into_iter().filter(|p| {
        p.metadata.namespace.as_deref() == Some(namespace.as_str()) && pods::is_active(p)
    });
    for pod in candidates {
        match ownership::controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches(&pod) {
                    plan.owned.push(pod);
                } else {
                    plan.release.push(pod);
                }
            }
            None if !deleting && matches(&pod) => {
                plan.adopt.push(pod.clone());
                plan.owned.push(pod);
            }
            _ => {}
        }
    }
    if deleting || !expectations_satisfied {
        return plan;
    }
    let wanted = rs.spec.replicas.unwrap_or(1).max(0) as usize;
    let have = plan.owned.len();
    if have < wanted {
        plan.create = (wanted - have).min(BURST_REPLICAS);
    } else if have > wanted {
        let mut ranked = plan.owned.clone();
        pods::deletion_order(&mut ranked);
        ranked.truncate((have - wanted).min(BURST_REPLICAS));
        plan.delete = ranked;
    }
    plan
}

/// Runs `count` creations in upstream's slow-start batches (1, 2, 4, …), stopping after the
/// first batch with a failure so a broken template costs one failed call, not hundreds.
/// Returns how many succeeded and the first error.
pub async fn slow_start<F, Fut, E>(count: usize, mut create: F) -> (usize, Option<E>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut done = 0;
    for batch in pods::slow_start_batches(count) {
        let results = futures::future::join_all((0..batch).map(|_| create())).await;
        let mut error = None;
        for result in results {
            match result {
                Ok(()) => done += 1,
                Err(e) => error = error.or(Some(e)),
            }
        }
        if error.is_some() {
            return (done, error);
        }
    }
    (done, None)
}

/// The pod a replica set creates from its template.
pub fn pod_from_template(rs: &ReplicaSet, workload: &Workload) -> Pod {
    let template = rs.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![ownership::controller_reference(
                workload.api_version,
                workload.kind,
                &rs.name_any(),
                rs.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn api_resource(workload: &Workload) -> ApiResource {
    ApiResource {
        group: workload.group.to_owned(),
        version: "v1".to_owned(),
        api_version: workload.api_version.to_owned(),
        kind: workload.kind.to_owned(),
        plural: workload.plural.to_owned(),
    }
}

async fn sync(rs: ReplicaSet, ctx: Arc<Context>) -> Result<Action, Error> {
    let workload = ctx.workload;
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let key = format!("{namespace}/{name}");
    let err = |action: String| {
        let key = key.clone();
        move |source| Error::Api {
            kind: workload.kind,
            key,
            action,
            source,
        }
    };
    let now = ctx.clock.now();
    let satisfied = ctx.expectations.satisfied(&key, &namespace, &ctx.pods, now);
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let candidates = ownership::controlled_or_orphans(&ctx.pods_by_controller, &namespace, &uid);
    let plan = plan(&rs, candidates, satisfied);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let merge = PatchParams::default();

    for pod in &plan.release {
        let patch = ownership::release_patch(&pod.metadata, &uid);
        pods_api
            .patch(&pod.name_any(), &merge, &Patch::Merge(&patch))
            .await
            .map_err(err(format!("release pod {}", pod.name_any())))?;
    }
    for pod in &plan.adopt {
        let owner =
            ownership::controller_reference(workload.api_version, workload.kind, &name, &uid);
        let patch = ownership::adopt_patch(&pod.metadata, owner);
        pods_api
            .patch(&pod.name_any(), &merge, &Patch::Merge(&patch))
            .await
            .map_err(err(format!("adopt pod {}", pod.name_any())))?;
    }

    let regarding = events::reference(workload.api_version, workload.kind, &rs.metadata);
    let mut failure = None;
    if plan.create > 0 {
        let template = pod_from_template(&rs, workload);
        let (_, error) = slow_start(plan.create, || {
            let (api, template, ctx, key, regarding) =
                (&pods_api, &template, &ctx, &key, &regarding);
            async move {
                let pod = api.create(&PostParams::default(), template).await?;
                ctx.expectations.created(key, pod.name_any(), now);
                let note = format!("Created pod: {}", pod.name_any());
                ctx.events
                    .normal(regarding, "SuccessfulCreate", "Create", note)
                    .await;
                Ok::<(), kube::Error>(())
            }
        })
        .await;
        if let Some(error) = error {
            let note = format!("Error creating: {error}");
            ctx.events
                .warning(&regarding, "FailedCreate", "Create", note.clone())
                .await;
            failure = Some(("FailedCreate", note));
        }
    }
    for pod in &plan.delete {
        let pod_name = pod.name_any();
        let deleted = pods_api.delete(&pod_name, &DeleteParams::default()).await;
        match deleted.map(drop).or_else(crate::ignore_not_found) {
            Ok(()) => {
                ctx.expectations.deleted(&key, pod_name.clone(), now);
                let note = format!("Deleted pod: {pod_name}");
                ctx.events
                    .normal(&regarding, "SuccessfulDelete", "Delete", note)
                    .await;
            }
            Err(error) => {
                let note = format!("Error deleting: {error}");
                ctx.events
                    .warning(&regarding, "FailedDelete", "Delete", note.clone())
                    .await;
                failure = Some(("FailedDelete", note));
                break;
            }
        }
    }

    let status = pods::status(&rs, &plan.owned, failure.clone(), now);
    if rs.status.as_ref() != Some(&status) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &api_resource(workload));
        let mut body = serde_json::to_value(&status).expect("status serializes");
        if status.conditions.is_none() {
            body["conditions"] = serde_json::Value::Null;
        }
        api.patch_status(&name, &merge, &Patch::Merge(json!({ "status": body })))
            .await
            .map_err(err("update status".into()))?;
    }
    if failure.is_some() {
        return Ok(Action::requeue(RETRY));
    }
    let min_ready = rs.spec.min_ready_seconds.unwrap_or(0);
    let soonest = plan
        .owned
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    Ok(match (soonest, satisfied) {
        (Some(wait), _) => Action::requeue(wait + Duration::from_millis(100)),
        (None, false) => Action::requeue(expectations::TIMEOUT.unsigned_abs()),
        (None, true) => Action::await_change(),
    })
}

/// A ReplicationController as the ReplicaSet it is equivalent to (upstream's conversion).
pub fn replica_set_of(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: spec.selector.or(template_labels),
                match_expressions: None,
            },
            template: spec.template,
        },
        status: rc
            .status
            .as_ref()
            .and_then(|s| serde_json::from_value(serde_json::to_value(s).ok()?).ok()),
    }
}

fn error_policy<K>(_object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "replica set sync");
    Action::requeue(RETRY)
}

/// Runs the controller for ReplicaSets (`to_rs` = identity) or ReplicationControllers.
pub async fn run_for<K>(
    informers: Arc<Informers>,
    clock: Arc<dyn Clock>,
    workload: &'static Workload,
    to_rs: fn(&K) -> ReplicaSet,
) -> anyhow::Result<()>
where
    K: Watchable,
{
    let client = informers.client().clone();
    let (pods, pod_events) = informers.cache_and_touched::<Pod>().await;
    let pods_by_controller = ownership::by_controller::<Pod>(&informers).await;
    let controller = crate::controller_for::<K>(&informers).await;
    let owners = controller.store();
    let controller = controller.watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
        owners_of(&pod, workload, &owners, to_rs)
    });
    let ctx = Arc::new(Context {
        events: EventRecorder::new(client.clone(), workload.reporting_controller),
        client,
        pods,
        pods_by_controller,
        clock,
        expectations: Expectations::default(),
        workload,
    });
    controller
        .run(
            move |object: Arc<K>, ctx| sync(to_rs(&object), ctx),
            error_policy,
            ctx,
        )
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// Which controllers a pod event concerns: its controller, or every one whose selector
/// matches an orphan (which may adopt it).
fn owners_of<K>(
    pod: &Pod,
    workload: &Workload,
    owners: &Store<K>,
    to_rs: fn(&K) -> ReplicaSet,
) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    let namespace = pod.namespace().unwrap_or_default();
    match ownership::controller_of(&pod.metadata) {
        Some(owner) if owner.kind == workload.kind => {
            vec![ObjectRef::new(&owner.name).within(&namespace)]
        }
        Some(_) => Vec::new(),
        None => owners
            .state_filter(|o| o.meta().namespace.as_deref() == Some(namespace.as_str()))
            .into_iter()
            .filter(|o| {
                let rs = to_rs(o);
                let selector = selector_of(&rs);
                !selector::is_empty(&selector)
                    && selector::matches(&selector, pod.metadata.labels.as_ref())
            })
            .map(|o| ObjectRef::from_obj(&*o))
            .collect(),
    }
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    run_for::<ReplicaSet>(informers, clock, &REPLICA_SET, Clone::clone).await
}

pub async fn run_replication_controllers(
    informers: Arc<Informers>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    run_for::<ReplicationController>(informers, clock, &REPLICATION_CONTROLLER, replica_set_of)
        .await
}
