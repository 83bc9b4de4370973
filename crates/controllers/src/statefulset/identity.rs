//! A stateful pod's identity, as upstream's `stateful_set_utils.go`: its name
//! `<set>-<ordinal>`, hostname and subdomain, the labels naming it, and the claims from the
//! set's volumeClaimTemplates (`<template>-<set>-<ordinal>`) its volumes point at.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::history::HASH_LABEL;
use crate::ownership;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The set a pod name belongs to and its ordinal (upstream's `(.*)-([0-9]+)$`), if it has
/// the shape of a stateful pod's name.
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = pod_name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref()?).map(|(_, ordinal)| ordinal)
}

/// Whether the pod's name makes it one of the set's pods (upstream's `isMemberOf`).
pub fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    parent_and_ordinal(name).is_some_and(|(parent, _)| parent == set.name_any())
}

/// The first ordinal (`spec.ordinals.start`, 0 when unset).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.replicas.unwrap_or(1).max(0)
}

/// Whether the ordinal is one the set keeps at its current size.
pub fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name_any())
}

pub fn claim_name(template: &PersistentVolumeClaim, set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{}-{ordinal}", template.name_any(), set.name_any())
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The revision a pod runs: the name of a ControllerRevision, in `controller-revision-hash`.
pub fn revision(pod: &Pod) -> &str {
    label(pod, HASH_LABEL).unwrap_or_default()
}

/// The labels that name a pod of the set.
pub fn identity_labels(set: &StatefulSet, ordinal: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (POD_NAME_LABEL.to_owned(), pod_name(set, ordinal)),
        (POD_INDEX_LABEL.to_owned(), ordinal.to_string()),
    ])
}

/// Whether the pod carries the name and labels of its ordinal (upstream's `identityMatches`).
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    parent_and_ordinal(name).is_some_and(|(parent, ordinal)| {
        parent == set.name_any()
            && pod.metadata.namespace == set.metadata.namespace
            && label(pod, POD_NAME_LABEL) == Some(&pod_name(set, ordinal))
    })
}

/// Whether the pod mounts every claim of the set's templates (upstream's `storageMatches`).
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal(pod) else {
        return false;
    };
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    set.spec.volume_claim_templates.iter().flatten().all(|t| {
        volumes
            .into_iter()
            .flatten()
            .find(|v| v.name == t.name_any())
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .is_some_and(|c| c.claim_name == claim_name(t, set, ordinal))
    })
}

/// The claims the pod at `ordinal` uses, one per template, with the template's name: labelled
/// with the set's selector labels on top of the template's, as upstream builds them.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let selector_labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    set.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(template, set, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    finalizers: template.metadata.finalizers.clone(),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            };
            (template.name_any(), claim)
        })
        .collect()
}

/// The set's pod at `ordinal` from `template` (the template of revision `revision`): named
/// `<set>-<ordinal>`, with hostname and subdomain for the headless service, identity and
/// revision labels, a controller reference, and its claim volumes in place of any template
/// volume of the same name.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let name = pod_name(set, ordinal);
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(identity_labels(set, ordinal));
    labels.insert(HASH_LABEL.to_owned(), revision.to_owned());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.service_name.clone().filter(|s| !s.is_empty());
    let claims = claims(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(volume, claim)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .into_iter()
            .flatten()
            .filter(|v| !claims.iter().any(|(name, _)| *name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{}-", set.name_any())),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![ownership::controller_reference(
                "apps/v1",
                "StatefulSet",
                &set.name_any(),
                set.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}
