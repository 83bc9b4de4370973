//! One sync of a StatefulSet decided from the caches, as upstream's `updateStatefulSet`:
//! replace failed pods and create missing ones (OrderedReady: one at a time in ordinal order,
//! each after its predecessors are Running, Ready and available), then delete pods beyond the
//! replica count from the highest ordinal, then roll pods not at the update revision from the
//! highest ordinal down to the partition, at most maxUnavailable at once.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::identity;
use super::retention::{self, PodRef};
use crate::deployment::rollout::scaled;
use crate::replicaset::pods::{is_available, is_ready};

/// A revision of the set's pod template: the ControllerRevision's name and its template.
#[derive(Clone, Debug)]
pub struct Revision {
    pub name: String,
    pub template: PodTemplateSpec,
}

/// One write to the API server; a sync runs its steps in order and stops at the first error.
#[derive(Clone, Debug)]
pub enum Step {
    /// Creates a claim from a volumeClaimTemplate for the named pod.
    CreateClaim {
        claim: Box<PersistentVolumeClaim>,
        pod: String,
    },
    CreatePod(Box<Pod>),
    DeletePod(Arc<Pod>),
    /// Puts back the labels that name the pod.
    RelabelPod(Arc<Pod>),
    /// Sets a claim's owner references as the retention policy wants them.
    SetClaimOwners {
        claim: Arc<PersistentVolumeClaim>,
        owners: Vec<OwnerReference>,
    },
}

#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub status: StatefulSetStatus,
    /// Why the sync cannot go on until something else changes (a claim being deleted).
    pub blocked: Option<String>,
}

/// A pod of the set's ordinal range: the cached one, or the one to create.
enum Member {
    Live(Arc<Pod>),
    Missing(Box<Pod>),
}

impl Member {
    fn pod(&self) -> &Pod {
        match self {
            Member::Live(pod) => pod,
            Member::Missing(pod) => pod,
        }
    }
}

/// Whether the sync goes on to the next pod or stops here.
#[derive(PartialEq)]
enum Flow {
    Next,
    Stop,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

fn unavailable(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    !is_available(pod, min_ready, now) || terminating(pod)
}

struct Planner<'a> {
    set: &'a StatefulSet,
    claims: &'a HashMap<String, Arc<PersistentVolumeClaim>>,
    min_ready: i32,
    now: Timestamp,
    monotonic: bool,
    steps: Vec<Step>,
    blocked: Option<String>,
}

impl<'a> Planner<'a> {
    /// The pod's claims as the templates make them, each with its cached version.
    fn cached_claims(
        &self,
        ordinal: i32,
    ) -> Vec<(
        PersistentVolumeClaim,
        Option<&'a Arc<PersistentVolumeClaim>>,
    )> {
        let cache: &'a HashMap<String, Arc<PersistentVolumeClaim>> = self.claims;
        identity::claims(self.set, ordinal)
            .into_iter()
            .map(|(_, claim)| {
                let cached = cache.get(&claim.name_any());
                (claim, cached)
            })
            .collect()
    }

    /// Creates the pod's claims missing from the cache (upstream's
    /// `createPersistentVolumeClaims`); a claim being deleted blocks the sync.
    fn create_missing_claims(&mut self, pod: &Pod) -> Flow {
        let Some(ordinal) = identity::ordinal(pod) else {
            return Flow::Next;
        };
        let owner = PodRef::of(pod);
        for (mut claim, cached) in self.cached_claims(ordinal) {
            match cached {
                None => {
                    claim.metadata.owner_references =
                        Some(retention::owners_for(&claim, self.set, owner))
                            .filter(|o| !o.is_empty());
                    self.steps.push(Step::CreateClaim {
                        claim: Box::new(claim),
                        pod: owner.name.to_owned(),
                    });
                }
                Some(cached) if cached.metadata.deletion_timestamp.is_some() => {
                    self.blocked = Some(format!("pvc {} is being deleted", cached.name_any()));
                    return Flow::Stop;
                }
                Some(_) => {}
            }
        }
        Flow::Next
    }

    /// Fixes the owners of the pod's cached claims for the retention policy.
    fn set_claim_owners(&mut self, pod: &Pod) {
        let Some(ordinal) = identity::ordinal(pod) else {
            return;
        };
        let owner = PodRef::of(pod);
        for (_, cached) in self.cached_claims(ordinal) {
            let Some(cached) = cached else { continue };
            if !retention::owners_up_to_date(cached, self.set, owner) {
                self.steps.push(Step::SetClaimOwners {
                    claim: cached.clone(),
                    owners: retention::owners_for(cached, self.set, owner),
                });
            }
        }
    }

    fn claims_match_policy(&self, pod: &Pod) -> bool {
        let Some(ordinal) = identity::ordinal(pod) else {
            return true;
        };
        let owner = PodRef::of(pod);
        self.cached_claims(ordinal)
            .iter()
            .filter_map(|(_, cached)| *cached)
            .all(|c| retention::owners_up_to_date(c, self.set, owner))
    }

    /// A claim still owned by an earlier pod of this name must be gone before the pod is
    /// created again (upstream's `PodClaimIsStale`).
    fn claim_is_stale(&self, pod: &Pod) -> bool {
        let Some(ordinal) = identity::ordinal(pod) else {
            return false;
        };
        let owner = PodRef::of(pod);
        self.cached_claims(ordinal)
            .iter()
            .filter_map(|(_, cached)| *cached)
            .any(|c| retention::is_stale(c, self.set, owner))
    }

    /// Upstream's `processReplica` for the pod at one ordinal of the range.
    fn replica(&mut self, member: &Member) -> Flow {
        let pod = member.pod();
        let live = match member {
            Member::Live(live) => live,
            Member::Missing(pod) => {
                // The claim's deletion, seen through the claim informer, syncs the set again.
                if self.claim_is_stale(pod) {
                    return Flow::Stop;
                }
                if self.create_missing_claims(pod) == Flow::Stop {
                    return Flow::Stop;
                }
                self.steps.push(Step::CreatePod(pod.clone()));
                return if self.monotonic {
                    Flow::Stop
                } else {
                    Flow::Next
                };
            }
        };
        // Failed and Succeeded pods alike are replaced: a pod's final phase follows its exit
        // code, whatever stopped it. The replacement comes once the old one is gone.
        if matches!(phase(pod), "Failed" | "Succeeded") {
            if !terminating(pod) {
                self.steps.push(Step::DeletePod(live.clone()));
            }
            return Flow::Stop;
        }
        if phase(pod) == "Pending" {
            if self.create_missing_claims(pod) == Flow::Stop {
                return Flow::Stop;
            }
            self.set_claim_owners(pod);
        }
        if self.monotonic
            && (terminating(pod)
                || !running_and_ready(pod)
                || !is_available(pod, self.min_ready, self.now))
        {
            return Flow::Stop;
        }
        let identity = identity::identity_matches(self.set, pod);
        let storage = identity::storage_matches(self.set, pod);
        if identity && storage && self.claims_match_policy(pod) {
            return Flow::Next;
        }
        if !identity {
            self.steps.push(Step::RelabelPod(live.clone()));
        }
        // A pod's volumes cannot change once created; its missing claims can still be made.
        if !storage && self.create_missing_claims(pod) == Flow::Stop {
            return Flow::Stop;
        }
        self.set_claim_owners(pod);
        Flow::Next
    }

    /// Upstream's `processCondemned`: OrderedReady deletes one pod at a time, and only while
    /// every pod is healthy but, at most, the lowest unhealthy one (this one).
    fn condemned(&mut self, pod: &Arc<Pod>, first_unhealthy: Option<&str>) -> Flow {
        if terminating(pod) {
            return if self.monotonic {
                Flow::Stop
            } else {
                Flow::Next
            };
        }
        let first = first_unhealthy == pod.metadata.name.as_deref();
        if self.monotonic
            && !first
            && (!running_and_ready(pod) || !is_available(pod, self.min_ready, self.now))
        {
            return Flow::Stop;
        }
        self.steps.push(Step::DeletePod(pod.clone()));
        if self.monotonic {
            Flow::Stop
        } else {
            Flow::Next
        }
    }
}

/// Whether the strategy is OnDelete; anything else rolls.
fn on_delete(set: &StatefulSet) -> bool {
    set.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete")
}

fn partition(set: &StatefulSet) -> Option<i32> {
    set.spec
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?
        .partition
}

/// The pod to create at `ordinal` (upstream's `newVersionedStatefulSetPod`): below the
/// partition (or, without a rollingUpdate, below the count already at the current revision)
/// it runs the current revision, elsewhere the update revision.
fn new_member(set: &StatefulSet, current: &Revision, update: &Revision, ordinal: i32) -> Pod {
    let start = identity::start_ordinal(set);
    let rolling_update = set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let at_current = match rolling_update {
        None => !on_delete(set) && ordinal < start + current_replicas,
        Some(rolling) => ordinal < start + rolling.partition.unwrap_or(0),
    };
    let revision = if at_current { current } else { update };
    identity::new_pod(set, &revision.template, ordinal, &revision.name)
}

/// Counts the pods into the status (upstream's `computeReplicaStatus`).
fn count<'p>(
    status: &mut StatefulSetStatus,
    pods: impl Iterator<Item = &'p Pod>,
    min_ready: i32,
    now: Timestamp,
) {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    let current_name = status.current_revision.clone().unwrap_or_default();
    let update_name = status.update_revision.clone().unwrap_or_default();
    for pod in pods {
        replicas += 1;
        if running_and_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !terminating(pod) {
            let revision = identity::revision(pod);
            current += i32::from(revision == current_name);
            updated += i32::from(revision == update_name);
        }
    }
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
}

/// Decides one sync. `pods` are the set's pods, `claims` the namespace's claims by name,
/// `current` and `update` the revisions the set rolls from and to.
pub fn plan(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    claims: &HashMap<String, Arc<PersistentVolumeClaim>>,
    current: &Revision,
    update: &Revision,
    collision_count: i32,
    now: Timestamp,
) -> Plan {
    let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
    let start = identity::start_ordinal(set);
    let size = identity::replicas(set);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current.name.clone()),
        update_revision: Some(update.name.clone()),
        collision_count: Some(collision_count),
        ..Default::default()
    };

    let mut by_ordinal: HashMap<i32, Arc<Pod>> = HashMap::new();
    let mut condemned: Vec<Arc<Pod>> = Vec::new();
    for pod in pods {
        match identity::ordinal(pod) {
            Some(ordinal) if identity::in_range(set, ordinal) => {
                by_ordinal.insert(ordinal, pod.clone());
            }
            Some(_) => condemned.push(pod.clone()),
            None => {}
        }
    }
    let members: Vec<Member> = (start..start + size)
        .map(|ordinal| match by_ordinal.remove(&ordinal) {
            Some(pod) => Member::Live(pod),
            None => Member::Missing(Box::new(new_member(set, current, update, ordinal))),
        })
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(identity::ordinal(p)));
    let live = |members: &[Member], condemned: &[Arc<Pod>]| -> Vec<Arc<Pod>> {
        members
            .iter()
            .filter_map(|m| match m {
                Member::Live(pod) => Some(pod.clone()),
                Member::Missing(_) => None,
            })
            .chain(condemned.iter().cloned())
            .collect()
    };
    count(
        &mut status,
        live(&members, &condemned).iter().map(|p| &**p),
        min_ready,
        now,
    );

    // The lowest unhealthy ordinal, in range first, then among the condemned.
    let first_unhealthy = members
        .iter()
        .map(Member::pod)
        .chain(condemned.iter().rev().map(|p| &**p))
        .find(|p| unavailable(p, min_ready, now))
        .and_then(|p| p.metadata.name.clone());

    let mut planner = Planner {
        set,
        claims,
        min_ready,
        now,
        monotonic: set.spec.pod_management_policy.as_deref() != Some("Parallel"),
        steps: Vec::new(),
        blocked: None,
    };
    let finish = |planner: Planner, status: StatefulSetStatus| Plan {
        steps: planner.steps,
        status,
        blocked: planner.blocked,
    };
    if set.metadata.deletion_timestamp.is_some() {
        return finish(planner, status);
    }

    for member in &members {
        if planner.replica(member) == Flow::Stop && planner.monotonic {
            return finish(planner, status);
        }
    }
    // A claim being deleted is an error upstream: nothing past the replicas happens.
    if planner.blocked.is_some() {
        return finish(planner, status);
    }
    for pod in &condemned {
        planner.set_claim_owners(pod);
    }
    for pod in &condemned {
        if planner.condemned(pod, first_unhealthy.as_deref()) == Flow::Stop {
            return finish(planner, status);
        }
    }
    if on_delete(set) {
        return finish(planner, status);
    }

    let deleted = roll(&mut planner, set, &members, update, size);
    if let Some(current_replicas) = status.current_replicas.as_mut() {
        *current_replicas -= deleted;
    }
    finish(planner, status)
}

/// The rolling update (upstream's `updateStatefulSetAfterInvariantEstablished`): delete pods
/// not at the update revision from the highest ordinal down to the partition, while at most
/// maxUnavailable pods of the range are unavailable. Parallel sets first replace old pods that
/// are unavailable anyway, then spend what is left of the budget on available ones. Returns
/// how many pods it deletes.
fn roll(
    planner: &mut Planner,
    set: &StatefulSet,
    members: &[Member],
    update: &Revision,
    size: i32,
) -> i32 {
    let (min_ready, now) = (planner.min_ready, planner.now);
    let rolling = set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let partition = partition(set).unwrap_or(0).max(0) as usize;
    let max_unavailable = scaled(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        "1",
        size,
        false,
    )
    .max(1);
    let outdated = |pod: &Pod| identity::revision(pod) != update.name && !terminating(pod);
    let unavailable_count = members
        .iter()
        .filter(|m| unavailable(m.pod(), min_ready, now))
        .count() as i32;
    let old_and_unavailable = members
        .iter()
        .filter(|m| unavailable(m.pod(), min_ready, now) && outdated(m.pod()))
        .count();
    let parallel = !planner.monotonic;
    if unavailable_count >= max_unavailable && !(parallel && old_and_unavailable > 0) {
        return 0;
    }
    // Candidates from the highest ordinal down to the partition; pods not created yet have
    // nothing to delete.
    let candidates: Vec<&Arc<Pod>> = members
        .iter()
        .enumerate()
        .rev()
        .take_while(|(index, _)| *index >= partition)
        .filter_map(|(_, m)| match m {
            Member::Live(pod) if outdated(pod) => Some(pod),
            _ => None,
        })
        .collect();
    let mut deleted = 0;
    let mut budget = max_unavailable - unavailable_count;
    if parallel {
        for pod in candidates
            .iter()
            .filter(|p| !is_available(p, min_ready, now))
        {
            planner.steps.push(Step::DeletePod((*pod).clone()));
            deleted += 1;
        }
        for pod in candidates
            .iter()
            .filter(|p| is_available(p, min_ready, now))
        {
            if budget <= 0 {
                break;
            }
            planner.steps.push(Step::DeletePod((*pod).clone()));
            budget -= 1;
            deleted += 1;
        }
        return deleted;
    }
    for pod in candidates {
        if budget <= 0 {
            break;
        }
        planner.steps.push(Step::DeletePod(pod.clone()));
        budget -= 1;
        deleted += 1;
    }
    deleted
}

/// Upstream's `completeRollingUpdate`: once every replica is ready at the update revision,
/// the update revision becomes the current one.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let size = identity::replicas(set);
    if !on_delete(set)
        && status.updated_replicas == Some(size)
        && status.ready_replicas == Some(size)
        && status.replicas == size
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}
