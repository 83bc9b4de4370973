//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`, hostnames under the
//! set's headless service and claims from its volumeClaimTemplates; created in ordinal order
//! and removed from the highest ordinal (OrderedReady) or all at once (Parallel); rolled by
//! RollingUpdate (partition, maxUnavailable) or OnDelete, each template kept as a
//! ControllerRevision for `kubectl rollout history|undo`.

pub mod identity;
pub mod plan;
pub mod retention;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::{Index, Informers};
use serde_json::json;

use crate::clock::Clock;
use crate::events::{self, EventRecorder};
use crate::history;
use crate::replicaset::pods::until_available;
use crate::{ownership, selector};
use plan::{Revision, Step};

const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("statefulset {key}: {action}: {source}")]
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
    pub claims: Store<PersistentVolumeClaim>,
    pub revisions: Store<ControllerRevision>,
    pub clock: Arc<dyn Clock>,
    pub events: EventRecorder,
}

/// The set's pods, and the pods whose controller reference must change (upstream's
/// `ClaimPods`, with the set's name as filter).
#[derive(Debug, Default)]
pub struct Claim {
    /// Pods the set controls, adopted ones included.
    pub owned: Vec<Arc<Pod>>,
    /// Orphans named and labelled as the set's pods.
    pub adopt: Vec<Arc<Pod>>,
    /// Pods the set controls that no longer match its selector or name.
    pub release: Vec<Arc<Pod>>,
}

/// Claims among `candidates`: at least the set's own pods and its namespace's orphans
/// (others are ignored).
pub fn claim_pods(set: &StatefulSet, candidates: Vec<Arc<Pod>>) -> Claim {
    let uid = set.metadata.uid.as_deref().unwrap_or_default();
    let deleting = set.metadata.deletion_timestamp.is_some();
    let mut claim = Claim::default();
    for pod in candidates
        .into_iter()
        .filter(|p| p.metadata.namespace == set.metadata.namespace)
    {
        let matches = identity::is_member(set, &pod)
            && selector::matches(&set.spec.selector, pod.metadata.labels.as_ref());
        match ownership::controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    claim.owned.push(pod);
                } else if !deleting {
                    claim.release.push(pod);
                }
            }
            None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                claim.adopt.push(pod.clone());
                claim.owned.push(pod);
            }
            _ => {}
        }
    }
    claim
}

/// Orphaned revisions the set's selector matches, to adopt.
pub fn orphan_revisions(
    set: &StatefulSet,
    revisions: &Store<ControllerRevision>,
) -> Vec<Arc<ControllerRevision>> {
    if set.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    revisions.state_filter(|r| {
        r.metadata.namespace == set.metadata.namespace
            && r.metadata.deletion_timestamp.is_none()
            && ownership::controller_of(&r.metadata).is_none()
            && selector::matches(&set.spec.selector, r.metadata.labels.as_ref())
    })
}

fn revision_of(set: &StatefulSet, revision: &ControllerRevision) -> Revision {
    Revision {
        name: revision.name_any(),
        template: history::template_of(revision).unwrap_or_else(|| set.spec.template.clone()),
    }
}

/// 409: a create found the name taken, or a delete's UID precondition found another pod.
fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let key = format!("{namespace}/{name}");
    let err = |action: &str| {
        let (key, action) = (key.clone(), action.to_owned());
        move |source| Error {
            key,
            action,
            source,
        }
    };
    if selector::is_empty(&set.spec.selector) {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let merge = PatchParams::default();
    let uid = set.metadata.uid.clone().unwrap_or_default();

    let candidates = ownership::controlled_or_orphans(
        &ctx.pods_by_controller,
        set.metadata.namespace.as_deref().unwrap_or_default(),
        set.metadata.uid.as_deref().unwrap_or_default(),
    );
    let claim = claim_pods(&set, candidates);
    for pod in &claim.release {
        let patch = ownership::release_patch(&pod.metadata, &uid);
        pods_api
            .patch(&pod.name_any(), &merge, &Patch::Merge(&patch))
            .await
            .map(drop)
            .or_else(crate::ignore_not_found)
            .map_err(err("release pod"))?;
    }
    let reference = || ownership::controller_reference("apps/v1", "StatefulSet", &name, &uid);
    for pod in &claim.adopt {
        let patch = ownership::adopt_patch(&pod.metadata, reference());
        pods_api
            .patch(&pod.name_any(), &merge, &Patch::Merge(&patch))
            .await
            .map_err(err("adopt pod"))?;
    }
    let revisions_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    for revision in orphan_revisions(&set, &ctx.revisions) {
        let patch = ownership::adopt_patch(&revision.metadata, reference());
        revisions_api
            .patch(&revision.name_any(), &merge, &Patch::Merge(&patch))
            .await
            .map_err(err("adopt controller revision"))?;
    }

    let revisions = history::owned(&ctx.revisions, &set.metadata);
    let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
    let owner = history::Owner {
        api_version: "apps/v1",
        kind: "StatefulSet",
        meta: &set.metadata,
        template: &set.spec.template,
        collision_count,
    };
    let update = match history::ensure(&ctx.client, &owner, &revisions).await {
        Ok(revision) => revision,
        Err(history::EnsureError::Collision) => {
            let patch = json!({ "status": { "collisionCount": collision_count.unwrap_or(0) + 1 } });
            sets.patch_status(&name, &merge, &Patch::Merge(&patch))
                .await
                .map_err(err("record hash collision"))?;
            return Ok(Action::requeue(Duration::ZERO));
        }
        Err(history::EnsureError::Api(e)) => return Err(err("store revision")(e)),
    };
    let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = revisions
        .iter()
        .find(|r| r.metadata.name == current_name)
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());
    let (current, update) = (revision_of(&set, &current), revision_of(&set, &update));

    let claims: HashMap<String, Arc<PersistentVolumeClaim>> = ctx
        .claims
        .state_filter(|c| c.metadata.namespace == set.metadata.namespace)
        .into_iter()
        .map(|c| (c.name_any(), c))
        .collect();
    let mut plan = plan::plan(
        &set,
        &claim.owned,
        &claims,
        &current,
        &update,
        collision_count.unwrap_or(0),
        now,
    );
    let regarding = events::reference("apps/v1", "StatefulSet", &set.metadata);
    let executed = execute(&set, &ctx, &plan.steps, &regarding).await;

    // The status is written even after a failed step, as upstream does.
    plan::complete_rolling_update(&set, &mut plan.status);
    let mut status = plan.status;
    status.conditions = set.status.as_ref().and_then(|s| s.conditions.clone());
    let mut stale = false;
    if set.status.as_ref() != Some(&status) {
        let mut updated = (*set).clone();
        updated.status = Some(status);
        match sets
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            // The cached set is behind, most often by our own last status write: its watch
            // event brings the next sync.
            Err(error) if is_conflict(&error) => stale = true,
            Err(error) => return Err(err("update status")(error)),
        }
    }

    // History keeps the current and update revisions, those pods run, and the newest
    // `revisionHistoryLimit` others.
    let mut live: Vec<&str> = claim.owned.iter().map(|p| identity::revision(p)).collect();
    live.extend([current.name.as_str(), update.name.as_str()]);
    let live_hashes: Vec<&str> = revisions
        .iter()
        .filter(|r| live.contains(&r.name_any().as_str()))
        .filter_map(|r| history::hash_of(r))
        .collect();
    let limit = set.spec.revision_history_limit.unwrap_or(10);
    history::trim(&ctx.client, &revisions, &live_hashes, &[], limit)
        .await
        .map_err(err("trim revisions"))?;
    executed?;
    if stale {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    if let Some(reason) = &plan.blocked {
        tracing::info!(statefulset = key, reason, "statefulset waits");
        return Ok(Action::requeue(RETRY));
    }
    let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
    let soonest = claim
        .owned
        .iter()
        .filter_map(|p| until_available(p, min_ready, now))
        .min();
    Ok(match soonest {
        Some(wait) => Action::requeue(wait + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

/// Runs the plan's steps in order, recording upstream's events; stops at the first failure.
async fn execute(
    set: &StatefulSet,
    ctx: &Context,
    steps: &[Step],
    regarding: &ObjectReference,
) -> Result<(), Error> {
    let namespace = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let fail = |action: String| {
        let key = format!("{namespace}/{set_name}");
        move |source| Error {
            key,
            action,
            source,
        }
    };
    let related = |pod: &Pod| events::reference("v1", "Pod", &pod.metadata);
    for step in steps {
        match step {
            Step::CreateClaim { claim, pod } => {
                let claim_name = claim.name_any();
                match claims.create(&PostParams::default(), claim).await {
                    Ok(created) => {
                        let related =
                            events::reference("v1", "PersistentVolumeClaim", &created.metadata);
                        let note = format!(
                            "create Claim {claim_name} Pod {pod} in StatefulSet {set_name} success"
                        );
                        ctx.events
                            .normal_about(regarding, related, "SuccessfulCreate", "Create", note)
                            .await;
                    }
                    Err(error) if is_conflict(&error) => {}
                    Err(error) => {
                        let related =
                            events::reference("v1", "PersistentVolumeClaim", &claim.metadata);
                        let note = format!(
                            "create Claim {claim_name} for Pod {pod} in StatefulSet {set_name} failed error: {error}"
                        );
                        ctx.events
                            .warning_about(regarding, related, "FailedCreate", "Create", note)
                            .await;
                        return Err(fail(format!("create claim {claim_name}"))(error));
                    }
                }
            }
            Step::CreatePod(pod) => {
                let pod_name = pod.name_any();
                match pods.create(&PostParams::default(), pod).await {
                    Ok(created) => {
                        let related = events::reference("v1", "Pod", &created.metadata);
                        let note =
                            format!("create Pod {pod_name} in StatefulSet {set_name} successful");
                        ctx.events
                            .normal_about(regarding, related, "SuccessfulCreate", "Create", note)
                            .await;
                    }
                    // The informer has not shown the pod yet; its event syncs the set again.
                    Err(error) if is_conflict(&error) => {}
                    Err(error) => {
                        let note = format!(
                            "create Pod {pod_name} in StatefulSet {set_name} failed error: {error}"
                        );
                        ctx.events
                            .warning_about(regarding, related(pod), "FailedCreate", "Create", note)
                            .await;
                        return Err(fail(format!("create pod {pod_name}"))(error));
                    }
                }
            }
            Step::DeletePod(pod) => {
                let pod_name = pod.name_any();
                // The UID precondition spares a pod of the same name created meanwhile.
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pod.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pods.delete(&pod_name, &params).await {
                    Ok(_) => {
                        let note =
                            format!("delete Pod {pod_name} in StatefulSet {set_name} successful");
                        ctx.events
                            .normal_about(
                                regarding,
                                related(pod),
                                "SuccessfulDelete",
                                "Delete",
                                note,
                            )
                            .await;
                    }
                    Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {}
                    Err(error) => {
                        let note = format!(
                            "delete Pod {pod_name} in StatefulSet {set_name} failed error: {error}"
                        );
                        ctx.events
                            .warning_about(regarding, related(pod), "FailedDelete", "Delete", note)
                            .await;
                        return Err(fail(format!("delete pod {pod_name}"))(error));
                    }
                }
            }
            Step::RelabelPod(pod) => {
                let pod_name = pod.name_any();
                let Some(ordinal) = identity::ordinal(pod) else {
                    continue;
                };
                let patch = json!({
                    "metadata": {
                        "labels": identity::identity_labels(set, ordinal),
                        "resourceVersion": pod.metadata.resource_version,
                    }
                });
                let patched = pods
                    .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                match patched {
                    Ok(_) => {
                        let note =
                            format!("update Pod {pod_name} in StatefulSet {set_name} successful");
                        ctx.events
                            .normal_about(
                                regarding,
                                related(pod),
                                "SuccessfulUpdate",
                                "Update",
                                note,
                            )
                            .await;
                    }
                    Err(error) => {
                        let note = format!(
                            "update Pod {pod_name} in StatefulSet {set_name} failed error: {error}"
                        );
                        ctx.events
                            .warning_about(regarding, related(pod), "FailedUpdate", "Update", note)
                            .await;
                        return Err(fail(format!("update pod {pod_name}"))(error));
                    }
                }
            }
            Step::SetClaimOwners { claim, owners } => {
                let claim_name = claim.name_any();
                let patch = ownership::owner_references_patch(&claim.metadata, owners.clone());
                claims
                    .patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(fail(format!("set owners of claim {claim_name}")))?;
            }
        }
    }
    Ok(())
}

fn error_policy(_set: Arc<StatefulSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "statefulset sync");
    Action::requeue(RETRY)
}

/// The sets an object of the namespace concerns: its controlling StatefulSet, or, for an
/// object without one, every set whose selector matches its labels (which may adopt it, or,
/// for a claim, wait for it).
fn sets_for(meta: &ObjectMeta, sets: &Store<StatefulSet>) -> Vec<ObjectRef<StatefulSet>> {
    let namespace = meta.namespace.clone().unwrap_or_default();
    match ownership::controller_of(meta) {
        Some(owner) if owner.kind == "StatefulSet" => {
            vec![ObjectRef::new(&owner.name).within(&namespace)]
        }
        Some(_) => Vec::new(),
        None => sets
            .state_filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .into_iter()
            .filter(|s| {
                !selector::is_empty(&s.spec.selector)
                    && selector::matches(&s.spec.selector, meta.labels.as_ref())
            })
            .map(|s| ObjectRef::from_obj(&*s))
            .collect(),
    }
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (pods, pod_events) = informers.cache_and_touched::<Pod>().await;
    let pods_by_controller = ownership::by_controller::<Pod>(&informers).await;
    let claims = informers.store::<PersistentVolumeClaim>().await;
    let claim_events = informers
        .subscribe::<PersistentVolumeClaim>()
        .await
        .touched();
    let (revisions, revision_events) = informers.cache_and_touched::<ControllerRevision>().await;
    let controller = crate::controller_for::<StatefulSet>(&informers).await;
    let sets = controller.store();
    let (for_pods, for_revisions) = (sets.clone(), sets.clone());
    let controller = controller
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
            sets_for(&pod.metadata, &for_pods)
        })
        .watches_shared_stream(revision_events, move |r: Arc<ControllerRevision>| {
            sets_for(&r.metadata, &for_revisions)
        })
        // Claims carry the set's selector labels, and are owned by the set or a pod, if at all.
        .watches_shared_stream(claim_events, move |c: Arc<PersistentVolumeClaim>| {
            let mut meta = c.metadata.clone();
            meta.owner_references = None;
            sets_for(&meta, &sets)
        });
    let ctx = Arc::new(Context {
        events: EventRecorder::new(client.clone(), "statefulset-controller"),
        client,
        pods,
        pods_by_controller,
        claims,
        revisions,
        clock,
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}
