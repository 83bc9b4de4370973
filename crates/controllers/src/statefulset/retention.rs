//! `persistentVolumeClaimRetentionPolicy` as owner references on claims, as upstream's
//! `isClaimOwnerUpToDate` and `updateClaimOwnerRefForSetAndPod`: the garbage collector then
//! deletes a claim with the set (`whenDeleted: Delete`, the set owns it) or with its
//! scaled-down pod (`whenScaled: Delete`, the condemned pod owns it). Retain means no owner.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use super::identity;
use crate::ownership;

/// The pod a claim belongs to: its name and UID (empty for a pod not created yet).
#[derive(Clone, Copy, Debug)]
pub struct PodRef<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

impl<'a> PodRef<'a> {
    pub fn of(pod: &'a Pod) -> Self {
        PodRef {
            name: pod.metadata.name.as_deref().unwrap_or_default(),
            uid: pod.metadata.uid.as_deref().unwrap_or_default(),
        }
    }
}

/// Which of the two policies say Delete; anything but Delete retains, as upstream treats an
/// unknown policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub delete_when_deleted: bool,
    pub delete_when_scaled: bool,
}

pub fn policy(set: &StatefulSet) -> Policy {
    let policy = set.spec.persistent_volume_claim_retention_policy.as_ref();
    let deletes = |value: Option<&String>| value.is_some_and(|v| v == "Delete");
    Policy {
        delete_when_deleted: deletes(policy.and_then(|p| p.when_deleted.as_ref())),
        delete_when_scaled: deletes(policy.and_then(|p| p.when_scaled.as_ref())),
    }
}

fn refers_to_set(reference: &OwnerReference, set: &StatefulSet) -> bool {
    reference.api_version == "apps/v1"
        && reference.kind == "StatefulSet"
        && reference.name == set.name_any()
}

fn refers_to_pod(reference: &OwnerReference, pod: PodRef) -> bool {
    reference.api_version == "v1" && reference.kind == "Pod" && reference.name == pod.name
}

fn set_uid(set: &StatefulSet) -> &str {
    set.metadata.uid.as_deref().unwrap_or_default()
}

fn references(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
}

fn owned_by(claim: &PersistentVolumeClaim, uid: &str) -> bool {
    !uid.is_empty() && references(claim).iter().any(|r| r.uid == uid)
}

/// Whether the claim's first reference to the set (or the pod) names another UID: an owner
/// of that name that was deleted and recreated.
fn stale_set_reference(claim: &PersistentVolumeClaim, set: &StatefulSet) -> bool {
    references(claim)
        .iter()
        .find(|r| refers_to_set(r, set))
        .is_some_and(|r| r.uid != set_uid(set))
}

fn stale_pod_reference(claim: &PersistentVolumeClaim, pod: PodRef) -> bool {
    references(claim)
        .iter()
        .find(|r| refers_to_pod(r, pod))
        .is_some_and(|r| r.uid != pod.uid)
}

/// Whether a claim must wait before a new pod uses it: with `whenScaled: Delete`, a claim
/// still owned by an earlier pod of that name is on its way to deletion.
pub fn is_stale(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: PodRef) -> bool {
    policy(set).delete_when_scaled && stale_pod_reference(claim, pod)
}

/// A controller other than the set and pod, or a reference to an earlier set or pod of the
/// same name (upstream's `hasUnexpectedController`).
fn unexpected_controller(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: PodRef) -> bool {
    let policy = policy(set);
    if !policy.delete_when_deleted && !policy.delete_when_scaled {
        return false;
    }
    references(claim).iter().any(|r| {
        if refers_to_set(r, set) {
            r.uid != set_uid(set)
        } else if refers_to_pod(r, pod) {
            r.uid != pod.uid
        } else {
            r.controller == Some(true)
        }
    })
}

/// Whether the claim's owners already say what the policy asks (upstream's
/// `isClaimOwnerUpToDate`). Claims held by an earlier owner or another controller are left
/// alone.
pub fn owners_up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: PodRef) -> bool {
    if stale_set_reference(claim, set) || stale_pod_reference(claim, pod) {
        return true;
    }
    let (by_set, by_pod) = (owned_by(claim, set_uid(set)), owned_by(claim, pod.uid));
    if unexpected_controller(claim, set, pod) {
        return !(by_set || by_pod);
    }
    let not_controller = references(claim).iter().any(|r| {
        (r.uid == set_uid(set) || (!pod.uid.is_empty() && r.uid == pod.uid))
            && r.controller != Some(true)
    });
    if not_controller {
        return false;
    }
    let (want_set, want_pod) = wanted_owners(set, pod);
    by_set == want_set && by_pod == want_pod
}

/// (set owns the claim, pod owns the claim) under the set's policy.
fn wanted_owners(set: &StatefulSet, pod: PodRef) -> (bool, bool) {
    let policy = policy(set);
    let scaled_down = identity::parent_and_ordinal(pod.name)
        .is_none_or(|(_, ordinal)| !identity::in_range(set, ordinal));
    let by_pod = policy.delete_when_scaled && scaled_down;
    let by_set = policy.delete_when_deleted && !(policy.delete_when_scaled && scaled_down);
    (by_set, by_pod)
}

/// The claim's owner references as the policy wants them: ours scrubbed, then the set and/or
/// the pod added as controller. Another controller on the claim wins: ours are only removed.
pub fn owners_for(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: PodRef,
) -> Vec<OwnerReference> {
    let unexpected = unexpected_controller(claim, set, pod);
    let mut owners: Vec<OwnerReference> = references(claim)
        .iter()
        .filter(|r| !refers_to_set(r, set) && !refers_to_pod(r, pod))
        .cloned()
        .collect();
    if unexpected {
        return owners;
    }
    let (want_set, want_pod) = wanted_owners(set, pod);
    if want_set {
        owners.push(ownership::controller_reference(
            "apps/v1",
            "StatefulSet",
            &set.name_any(),
            set_uid(set),
        ));
    }
    // A pod not created yet has no UID to refer to; only scaled-down pods own claims anyway.
    if want_pod && !pod.uid.is_empty() {
        owners.push(ownership::controller_reference(
            "v1", "Pod", pod.name, pod.uid,
        ));
    }
    owners
}
