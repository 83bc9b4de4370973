//! The arithmetic of a rollout, as upstream's `deployment/util` and `rolling.go` do it: the
//! template hash, which replica set is new, how far the new one may grow and the old ones
//! shrink, and which old ones history keeps. Pure functions over cached objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations a replica set does not copy (upstream's `annotationsToSkip`).
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Upstream's `rand.SafeEncodeString` alphabet: no vowels, no look-alikes.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a template: FNV-1a over its serialized form (upstream hashes
/// its Go dump, so values differ but look alike), plus the collision count.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    write(&serde_json::to_vec(template).expect("templates serialize"));
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        write(&bytes);
    }
    hash.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// A template with the hash label taken out, for comparing a replica set with its deployment.
fn without_hash(template: &PodTemplateSpec) -> serde_json::Value {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    serde_json::to_value(template).expect("templates serialize")
}

/// Whether a replica set runs the deployment's current template.
pub fn runs_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    rs.spec
        .template
        .as_ref()
        .is_some_and(|t| without_hash(t) == without_hash(template))
}

pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

/// Splits replica sets into the new one (the oldest running the template, as upstream picks
/// among duplicates) and the old ones, oldest first.
pub fn split(
    deployment: &Deployment,
    mut sets: Vec<Arc<ReplicaSet>>,
) -> (Option<Arc<ReplicaSet>>, Vec<Arc<ReplicaSet>>) {
    sets.sort_by_key(|rs| created(rs));
    let template = &deployment.spec.template;
    let new = sets.iter().position(|rs| runs_template(rs, template));
    let new = new.map(|i| sets.remove(i));
    (new, sets)
}

pub fn desired(deployment: &Deployment) -> i32 {
    deployment.spec.replicas.unwrap_or(1)
}

/// `intstr.GetScaledValueFromIntOrPercent`: percentages of `total`, rounded up or down.
pub fn scaled(value: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => percent(s, total, round_up),
        None => percent(default, total, round_up),
    }
}

fn percent(text: &str, total: i32, round_up: bool) -> i32 {
    let Some(p) = text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
        return 0;
    };
    let product = p * i64::from(total);
    (if round_up {
        (product + 99).div_euclid(100)
    } else {
        product.div_euclid(100)
    }) as i32
}

/// `(maxSurge, maxUnavailable)` resolved against the desired replicas: surge rounds up,
/// unavailability down, and both zero means one may be unavailable (upstream's
/// `ResolveFenceposts`). Recreate has neither.
pub fn fenceposts(deployment: &Deployment) -> (i32, i32) {
    let strategy = deployment.spec.strategy.as_ref();
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return (0, 0);
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let total = desired(deployment);
    let surge = scaled(
        rolling.and_then(|r| r.max_surge.as_ref()),
        "25%",
        total,
        true,
    );
    let unavailable = scaled(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        "25%",
        total,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The size the new replica set may grow to now (upstream's `NewRSNewReplicas`).
pub fn new_replica_set_size(deployment: &Deployment, all: &[&ReplicaSet], new: i32) -> i32 {
    let wanted = desired(deployment);
    let (surge, _) = fenceposts(deployment);
    let is_recreate = deployment
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate");
    if is_recreate {
        return wanted;
    }
    let current: i32 = all.iter().map(|rs| replicas(rs)).sum();
    let max_total = wanted + surge;
    if current >= max_total {
        return new;
    }
    let room = (max_total - current).min(wanted - new).max(0);
    new + room
}

/// How many old pods may go now without dropping below `replicas - maxUnavailable` available
/// (upstream's `reconcileOldReplicaSets`), counting unavailable pods of the new set as lost.
/// Returns the new sizes of old sets, oldest first, unhealthy ones trimmed before healthy.
pub fn scale_down_old(
    deployment: &Deployment,
    new: Option<&ReplicaSet>,
    old: &[Arc<ReplicaSet>],
) -> Vec<(Arc<ReplicaSet>, i32)> {
    let old_count: i32 = old.iter().map(|rs| replicas(rs)).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let all_count = old_count + new.map_or(0, replicas);
    let (_, max_unavailable) = fenceposts(deployment);
    let min_available = desired(deployment) - max_unavailable;
    let new_unavailable = new.map_or(0, |rs| replicas(rs) - available(rs));
    let mut budget = all_count - min_available - new_unavailable;
    if budget <= 0 {
        return Vec::new();
    }
    let mut sizes: Vec<(Arc<ReplicaSet>, i32)> =
        old.iter().map(|rs| (rs.clone(), replicas(rs))).collect();
    // Unhealthy pods first: they cost no availability.
    for (rs, size) in sizes.iter_mut() {
        let unhealthy = (*size - available(rs)).max(0).min(budget);
        *size -= unhealthy;
        budget -= unhealthy;
    }
    // Then healthy ones, as long as availability stays above the floor.
    let available_now: i32 = sizes
        .iter()
        .map(|(rs, size)| available(rs).min(*size))
        .sum::<i32>()
        + new.map_or(0, available);
    let mut removable = (available_now - min_available).min(budget).max(0);
    for (_, size) in sizes.iter_mut() {
        let cut = (*size).min(removable);
        *size -= cut;
        removable -= cut;
    }
    sizes
        .into_iter()
        .filter(|(rs, size)| *size != replicas(rs))
        .collect()
}

/// Old replica sets to delete beyond `revisionHistoryLimit`: empty ones, oldest first.
pub fn beyond_history(deployment: &Deployment, old: &[Arc<ReplicaSet>]) -> Vec<Arc<ReplicaSet>> {
    let limit = deployment.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let mut idle: Vec<&Arc<ReplicaSet>> = old
        .iter()
        .filter(|rs| {
            replicas(rs) == 0
                && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    idle.sort_by_key(|rs| revision(rs));
    let excess = idle.len().saturating_sub(limit);
    idle.into_iter().take(excess).cloned().collect()
}

/// The annotations a replica set carries for its deployment: the deployment's own (minus
/// upstream's skip list) and the revision bookkeeping.
pub fn replica_set_annotations(
    deployment: &Deployment,
    current: Option<&BTreeMap<String, String>>,
    revision: i64,
) -> BTreeMap<String, String> {
    let mut annotations = current.cloned().unwrap_or_default();
    for (k, v) in deployment.metadata.annotations.iter().flatten() {
        if !NOT_COPIED.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    let (surge, _) = fenceposts(deployment);
    let old_revision = annotations
        .get(REVISION)
        .and_then(|r| r.parse::<i64>().ok());
    if old_revision.is_none_or(|r| r < revision) {
        if let Some(old) = old_revision {
            let history = annotations.get(REVISION_HISTORY).cloned();
            let history = match history {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old.to_string(),
            };
            annotations.insert(REVISION_HISTORY.into(), history);
        }
        annotations.insert(REVISION.into(), revision.to_string());
    }
    annotations.insert(DESIRED_REPLICAS.into(), desired(deployment).to_string());
    annotations.insert(
        MAX_REPLICAS.into(),
        (desired(deployment) + surge).to_string(),
    );
    annotations
}
