//! The Deployment controller: one ReplicaSet per pod template (named `<deployment>-<hash>`),
//! rolled from old to new by RollingUpdate within maxSurge/maxUnavailable or by Recreate,
//! with revision annotations, history cleanup, pause, and upstream's status conditions.

pub mod rollout;
pub mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::{Client, ResourceExt};
use r8s_informers::{Index, Informers};
use serde_json::json;

use crate::clock::Clock;
use crate::events::{self, EventRecorder};
use crate::{ownership, replicaset, selector};
use rollout::{HASH_LABEL, REVISION};
use status::NewReplicaSet;

const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deployment {key}: {action}: {source}")]
    Api {
        key: String,
        action: String,
        source: kube::Error,
    },
}

pub struct Context {
    pub client: Client,
    /// Replica sets by controller, orphans by namespace: what a sync may claim.
    pub sets_by_controller: Arc<Index<ReplicaSet>>,
    /// Pods by controller: whether old replica sets still have pods (Recreate).
    pub pods_by_controller: Arc<Index<Pod>>,
    pub clock: Arc<dyn Clock>,
    pub events: EventRecorder,
}

/// Replica sets a deployment controls (adopted orphans included), orphans to adopt, and
/// replica sets it controls that no longer match its selector.
pub struct Claim {
    pub owned: Vec<Arc<ReplicaSet>>,
    pub adopt: Vec<Arc<ReplicaSet>>,
    pub release: Vec<Arc<ReplicaSet>>,
}

/// Claims among `candidates`: at least the deployment's own sets and its namespace's orphans
/// (others are ignored).
pub fn claim(deployment: &Deployment, candidates: Vec<Arc<ReplicaSet>>) -> Claim {
    let namespace = deployment.namespace();
    let uid = deployment.metadata.uid.as_deref().unwrap_or_default();
    let selector = &deployment.spec.selector;
    let (mut owned, mut adopt, mut release) = (Vec::new(), Vec::new(), Vec::new());
    // Matched against ours and orphans only, not every other deployment's sets.
    let matches = |rs: &ReplicaSet| selector::matches(selector, rs.metadata.labels.as_ref());
    for rs in candidates
        .into_iter()
        .filter(|rs| rs.metadata.namespace == namespace)
    {
        match ownership::controller_of(&rs.metadata) {
            Some(owner) if owner.uid == uid && matches(&rs) => owned.push(rs),
            Some(owner) if owner.uid == uid => release.push(rs),
            None if deployment.metadata.deletion_timestamp.is_none() && matches(&rs) => {
                adopt.push(rs.clone());
                owned.push(rs);
            }
            _ => {}
        }
    }
    Claim {
        owned,
        adopt,
        release,
    }
}

/// The replica set a deployment creates for its current template.
pub fn new_replica_set(deployment: &Deployment, replicas: i32, revision: i64) -> ReplicaSet {
    let spec = &deployment.spec;
    let collision = deployment.status.as_ref().and_then(|s| s.collision_count);
    let hash = rollout::template_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let name = deployment.name_any();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: deployment.namespace(),
            labels: meta.labels.clone(),
            annotations: Some(rollout::replica_set_annotations(deployment, None, revision)),
            owner_references: Some(vec![ownership::controller_reference(
                "apps/v1",
                "Deployment",
                &name,
                deployment.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    }
}

/// Sizes for a scaling event or a paused deployment (upstream's `scale`): one active set takes
/// the new size; several share the difference in proportion to their sizes, the largest
/// taking the rounding leftover.
pub fn proportional_sizes(
    deployment: &Deployment,
    new: Option<&Arc<ReplicaSet>>,
    old: &[Arc<ReplicaSet>],
) -> Vec<(Arc<ReplicaSet>, i32)> {
    let wanted = rollout::desired(deployment);
    let mut active: Vec<Arc<ReplicaSet>> = new
        .into_iter()
        .chain(old)
        .filter(|rs| rollout::replicas(rs) > 0)
        .cloned()
        .collect();
    if active.len() <= 1 {
        let target = active.pop().or_else(|| new.cloned());
        return target
            .filter(|rs| rollout::replicas(rs) != wanted)
            .map(|rs| vec![(rs, wanted)])
            .unwrap_or_default();
    }
    let (surge, _) = rollout::fenceposts(deployment);
    let total: i32 = active.iter().map(|rs| rollout::replicas(rs)).sum();
    let allowed = wanted + surge;
    let to_add = allowed - total;
    if to_add == 0 {
        return Vec::new();
    }
    active.sort_by_key(|rs| std::cmp::Reverse(rollout::replicas(rs)));
    let mut sizes: Vec<(Arc<ReplicaSet>, i32)> = active
        .iter()
        .map(|rs| {
            let share = rollout::replicas(rs) * to_add / total;
            (rs.clone(), rollout::replicas(rs) + share)
        })
        .collect();
    let given: i32 = sizes
        .iter()
        .map(|(rs, size)| size - rollout::replicas(rs))
        .sum();
    sizes[0].1 = (sizes[0].1 + to_add - given).max(0);
    sizes
        .into_iter()
        .filter(|(rs, size)| *size != rollout::replicas(rs))
        .collect()
}

/// Whether the deployment's size changed since its replica sets were last sized.
fn is_scaling_event(deployment: &Deployment, sets: &[Arc<ReplicaSet>]) -> bool {
    let wanted = rollout::desired(deployment).to_string();
    sets.iter()
        .filter(|rs| rollout::replicas(rs) > 0)
        .any(|rs| {
            rs.annotations()
                .get(rollout::DESIRED_REPLICAS)
                .is_some_and(|d| *d != wanted)
        })
}

struct Sync<'a> {
    ctx: &'a Context,
    deployment: &'a Deployment,
    key: String,
    sets: Api<ReplicaSet>,
}

impl Sync<'_> {
    fn err(&self, action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let (key, action) = (self.key.clone(), action.into());
        move |source| Error::Api {
            key,
            action,
            source,
        }
    }

    /// Sets a replica set's size (and its annotations), with upstream's ScalingReplicaSet event.
    async fn scale(&self, rs: &ReplicaSet, size: i32) -> Result<(), Error> {
        let from = rollout::replicas(rs);
        let annotations =
            rollout::replica_set_annotations(self.deployment, rs.metadata.annotations.as_ref(), 0);
        let patch = json!({
            "metadata": { "annotations": annotations, "resourceVersion": rs.metadata.resource_version },
            "spec": { "replicas": size },
        });
        self.sets
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(self.err(format!("scale replica set {}", rs.name_any())))?;
        if from != size {
            let direction = if size > from { "up" } else { "down" };
            let note = format!(
                "Scaled {direction} replica set {} from {from} to {size}",
                rs.name_any()
            );
            let regarding = events::reference("apps/v1", "Deployment", &self.deployment.metadata);
            self.ctx
                .events
                .normal(&regarding, "ScalingReplicaSet", "Scale", note)
                .await;
        }
        Ok(())
    }

    /// Makes sure the new replica set exists and carries the newest revision.
    async fn new_replica_set(
        &self,
        new: Option<Arc<ReplicaSet>>,
        old: &[Arc<ReplicaSet>],
        create: bool,
    ) -> Result<(Option<Arc<ReplicaSet>>, Option<NewReplicaSet>), Error> {
        let newest_old = old
            .iter()
            .map(|rs| rollout::revision(rs))
            .max()
            .unwrap_or(0);
        let revision = newest_old + 1;
        if let Some(rs) = new {
            if rollout::revision(&rs) < revision {
                // Rolling back to an old template makes its set the newest revision again.
                let annotations = rollout::replica_set_annotations(
                    self.deployment,
                    rs.metadata.annotations.as_ref(),
                    revision,
                );
                let patch = json!({ "metadata": { "annotations": annotations } });
                let updated = self
                    .sets
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(self.err("update revision"))?;
                return Ok((Some(Arc::new(updated)), Some(NewReplicaSet::Found)));
            }
            return Ok((Some(rs), Some(NewReplicaSet::Found)));
        }
        if !create {
            return Ok((None, None));
        }
        let all: Vec<&ReplicaSet> = old.iter().map(|rs| rs.as_ref()).collect();
        let size = rollout::new_replica_set_size(self.deployment, &all, 0);
        let wanted = new_replica_set(self.deployment, size, revision);
        match self.sets.create(&PostParams::default(), &wanted).await {
            Ok(created) => {
                if size > 0 {
                    let note = format!(
                        "Scaled up replica set {} from 0 to {size}",
                        created.name_any()
                    );
                    let regarding =
                        events::reference("apps/v1", "Deployment", &self.deployment.metadata);
                    self.ctx
                        .events
                        .normal(&regarding, "ScalingReplicaSet", "Scale", note)
                        .await;
                }
                Ok((Some(Arc::new(created)), Some(NewReplicaSet::Created)))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // A set of that name with another template: a hash collision. Bump the count
                // so the next hash differs, as upstream does.
                let count = self
                    .deployment
                    .status
                    .as_ref()
                    .and_then(|s| s.collision_count)
                    .unwrap_or(0);
                let api: Api<Deployment> = Api::namespaced(
                    self.ctx.client.clone(),
                    &self.deployment.namespace().unwrap_or_default(),
                );
                let patch = json!({ "status": { "collisionCount": count + 1 } });
                api.patch_status(
                    &self.deployment.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(self.err("record hash collision"))?;
                Ok((None, None))
            }
            Err(e) => Err(self.err("create replica set")(e)),
        }
    }
}

/// Whether pods of old replica sets are still there (Recreate waits for them to go).
fn old_pods_running(pods_by_controller: &Index<Pod>, old: &[Arc<ReplicaSet>]) -> bool {
    old.iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .flat_map(|uid| pods_by_controller.get(uid))
        .any(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
}

async fn reconcile(deployment: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = deployment.namespace().unwrap_or_default();
    let key = format!("{namespace}/{}", deployment.name_any());
    let now = ctx.clock.now();
    let sync = Sync {
        ctx: &ctx,
        deployment: &deployment,
        key,
        sets: Api::namespaced(ctx.client.clone(), &namespace),
    };
    let spec = &deployment.spec;
    if selector::is_empty(&spec.selector) {
        return Ok(Action::await_change());
    }
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let Claim {
        owned,
        adopt,
        release,
    } = claim(
        &deployment,
        ownership::controlled_or_orphans(&ctx.sets_by_controller, &namespace, &uid),
    );
    for rs in &release {
        let patch = ownership::release_patch(&rs.metadata, &uid);
        sync.sets
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(sync.err("release replica set"))?;
    }
    for rs in &adopt {
        let owner =
            ownership::controller_reference("apps/v1", "Deployment", &deployment.name_any(), &uid);
        let patch = ownership::adopt_patch(&rs.metadata, owner);
        sync.sets
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(sync.err("adopt replica set"))?;
    }
    let (new, old) = rollout::split(&deployment, owned.clone());
    let deleting = deployment.metadata.deletion_timestamp.is_some();
    let paused = spec.paused.unwrap_or(false);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let mut event = None;
    let mut new = new;
    if !deleting {
        if paused || is_scaling_event(&deployment, &owned) {
            let (found, e) = sync.new_replica_set(new, &old, false).await?;
            (new, event) = (found, e);
            for (rs, size) in proportional_sizes(&deployment, new.as_ref(), &old) {
                sync.scale(&rs, size).await?;
            }
        } else if recreate {
            let shrink: Vec<_> = old.iter().filter(|rs| rollout::replicas(rs) > 0).collect();
            for rs in &shrink {
                sync.scale(rs, 0).await?;
            }
            if shrink.is_empty() && !old_pods_running(&ctx.pods_by_controller, &old) {
                let (found, e) = sync.new_replica_set(new, &old, true).await?;
                (new, event) = (found, e);
                if let Some(rs) = new
                    .as_ref()
                    .filter(|rs| rollout::replicas(rs) != rollout::desired(&deployment))
                {
                    sync.scale(rs, rollout::desired(&deployment)).await?;
                }
            } else {
                (new, event) = sync.new_replica_set(new, &old, false).await?;
            }
        } else {
            (new, event) = sync.new_replica_set(new, &old, true).await?;
            let mut scaled = false;
            if let Some(rs) = &new {
                let all: Vec<&ReplicaSet> = old
                    .iter()
                    .map(|r| r.as_ref())
                    .chain([rs.as_ref()])
                    .collect();
                let current = rollout::replicas(rs);
                let size = if current > rollout::desired(&deployment) {
                    rollout::desired(&deployment)
                } else {
                    rollout::new_replica_set_size(&deployment, &all, current)
                };
                if size != current {
                    sync.scale(rs, size).await?;
                    scaled = true;
                }
            }
            if !scaled {
                for (rs, size) in rollout::scale_down_old(&deployment, new.as_deref(), &old) {
                    sync.scale(&rs, size).await?;
                }
            }
        }
    }
    let mut all = old.clone();
    all.extend(new.clone());
    let (status, wake) = status::compute(&deployment, new.as_ref(), &all, event, now);
    if status::complete(&deployment, &status) || paused {
        for rs in rollout::beyond_history(&deployment, &old) {
            let deleted = sync
                .sets
                .delete(&rs.name_any(), &DeleteParams::default())
                .await;
            deleted
                .map(drop)
                .or_else(crate::ignore_not_found)
                .map_err(sync.err("delete old replica set"))?;
        }
    }
    let revision = new
        .as_ref()
        .map(|rs| rollout::revision(rs))
        .filter(|r| *r > 0);
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(revision) = revision.map(|r| r.to_string())
        && deployment.annotations().get(REVISION) != Some(&revision)
    {
        let patch = json!({ "metadata": { "annotations": { REVISION: revision } } });
        api.patch(
            &deployment.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(sync.err("record revision"))?;
    }
    if deployment.status.as_ref() != Some(&status) {
        api.patch_status(
            &deployment.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
        .map_err(sync.err("update status"))?;
    }
    Ok(wake.map_or_else(Action::await_change, |w| {
        Action::requeue(w + Duration::from_millis(100))
    }))
}

fn error_policy(_deployment: Arc<Deployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "deployment sync");
    Action::requeue(RETRY)
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let pod_events = informers.subscribe::<Pod>().await.touched();
    let (replica_sets, rs_events) = informers.cache_and_touched::<ReplicaSet>().await;
    let controller = crate::controller_for::<Deployment>(&informers).await;
    let sets_for_pods = replica_sets.clone();
    let sets_by_controller = ownership::by_controller::<ReplicaSet>(&informers).await;
    let pods_by_controller = ownership::by_controller::<Pod>(&informers).await;
    let deployments = controller.store();
    let controller = controller
        .owns_shared_stream(rs_events)
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
            // Only Recreate looks at pods (it waits for the old ones to go), as upstream's
            // controller: a RollingUpdate learns all it needs from its ReplicaSets, and
            // waking it on every pod change costs a reconcile per pod write.
            let namespace = pod.namespace().unwrap_or_default();
            ownership::controller_of(&pod.metadata)
                .filter(|o| o.kind == replicaset::REPLICA_SET.kind)
                .and_then(|o| {
                    sets_for_pods.get(&reflector::ObjectRef::new(&o.name).within(&namespace))
                })
                .and_then(|rs| ownership::controller_of(&rs.metadata).cloned())
                .filter(|o| o.kind == "Deployment")
                .map(|o| reflector::ObjectRef::new(&o.name).within(&namespace))
                .filter(|key| {
                    deployments.get(key).is_some_and(|d| {
                        d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref())
                            == Some("Recreate")
                    })
                })
        });
    let ctx = Arc::new(Context {
        events: EventRecorder::new(client.clone(), "deployment-controller"),
        client,
        sets_by_controller,
        pods_by_controller,
        clock,
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}
