//! A node's health as the node lifecycle controller judges it: the kubelet's last sign of life
//! (its Lease renewal or Ready heartbeat), the conditions that become Unknown when it has been
//! silent for the grace period, and the taints its conditions call for (upstream's
//! `tryUpdateNodeHealth`, NoExecute tainting pass and TaintNodesByCondition). Pure functions.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";

/// The conditions the kubelet owns, set Unknown together when it goes silent.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The taints only this controller manages; anyone else's taints are left as they are.
const MANAGED: [&str; 7] = [
    NOT_READY,
    UNREACHABLE,
    UNSCHEDULABLE,
    MEMORY_PRESSURE,
    DISK_PRESSURE,
    PID_PRESSURE,
    NETWORK_UNAVAILABLE,
];

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// The kubelet's last sign of life: the newest of its lease renewal, its Ready heartbeat and,
/// for a node that never reported, its creation.
pub fn last_heard(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let renewed = lease
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
        .map(|t| t.0);
    let heartbeat = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    renewed.max(heartbeat).or(created)
}

/// When the node will count as silent, if it is not already.
pub fn silent_at(node: &Node, lease: Option<&Lease>, grace: SignedDuration) -> Option<Timestamp> {
    last_heard(node, lease).map(|t| t + grace)
}

/// The conditions after judging a node silent at `now`: every kubelet condition Unknown, those
/// it never posted added, as upstream writes them. None when nothing changes.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

fn status_of(node: &Node, type_: &str) -> Option<String> {
    condition(node, type_).map(|c| c.status.clone())
}

/// The (key, effect) pairs of managed taints the node's conditions and spec call for.
pub fn wanted_taints(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut wanted = Vec::new();
    match status_of(node, "Ready").as_deref() {
        Some("False") => wanted.extend([(NOT_READY, NO_EXECUTE), (NOT_READY, NO_SCHEDULE)]),
        Some("Unknown") => wanted.extend([(UNREACHABLE, NO_EXECUTE), (UNREACHABLE, NO_SCHEDULE)]),
        _ => {}
    }
    for (type_, key) in [
        ("MemoryPressure", MEMORY_PRESSURE),
        ("DiskPressure", DISK_PRESSURE),
        ("PIDPressure", PID_PRESSURE),
        ("NetworkUnavailable", NETWORK_UNAVAILABLE),
    ] {
        if status_of(node, type_).as_deref() == Some("True") {
            wanted.push((key, NO_SCHEDULE));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((UNSCHEDULABLE, NO_SCHEDULE));
    }
    wanted
}

/// The node's taints with the managed ones brought in line with `wanted_taints`; a taint that
/// stays keeps its `timeAdded`, since eviction deadlines count from it. None when unchanged.
pub fn reconciled_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let wanted = wanted_taints(node);
    let is_wanted = |t: &Taint| wanted.iter().any(|(k, e)| t.key == *k && t.effect == *e);
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !MANAGED.contains(&t.key.as_str()) || is_wanted(t))
        .cloned()
        .collect();
    for (key, effect) in &wanted {
        if !taints.iter().any(|t| t.key == *key && t.effect == *effect) {
            taints.push(Taint {
                key: (*key).into(),
                effect: (*effect).into(),
                // Upstream stamps only NoExecute taints: they start eviction clocks.
                time_added: (*effect == NO_EXECUTE).then_some(Time(now)),
                value: None,
            });
        }
    }
    (taints != current).then_some(taints)
}
