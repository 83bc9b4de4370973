//! ReplicaSets: the `kubectl get replicasets` table (desired, current, ready).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{default_pod_template, set_default};
use super::printing::{self, AGE, CONTAINERS, IMAGES, NAME, column, int, wide};
use super::{Column, Kind};

pub struct ReplicaSets;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    ),
    column(
        "Current",
        "integer",
        "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset",
    ),
    column(
        "Ready",
        "integer",
        "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

impl Kind for ReplicaSets {
    // The fields upstream's field selectors accept for this kind.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn prepare_for_create(&self, object: &mut Value) {
        default_replica_set(object);
        object["status"] = json!({ "replicas": 0 });
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_replica_set(new);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

fn row(replica_set: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (spec, status) = (&replica_set["spec"], &replica_set["status"]);
    let [containers, images] = printing::container_cells(&spec["template"]["spec"]);
    vec![
        printing::name(replica_set),
        int(&spec["replicas"]).into(),
        int(&status["replicas"]).into(),
        int(&status["readyReplicas"]).into(),
        printing::age(replica_set, now),
        containers,
        images,
        printing::format_label_selector(&spec["selector"]).into(),
    ]
}

fn default_replica_set(replica_set: &mut Value) {
    let Some(spec) = replica_set.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    if let Some(template) = spec.get_mut("template") {
        default_pod_template(template);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn replica_sets_default_to_one_replica_and_start_with_none() {
        let mut replica_set = json!({"spec": {"template": {"spec": {"containers": []}}}});
        ReplicaSets.prepare_for_create(&mut replica_set);
        assert_eq!(replica_set["spec"]["replicas"], 1);
        assert_eq!(
            replica_set["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
        assert_eq!(replica_set["status"], json!({"replicas": 0}));
    }

    #[test]
    fn a_replica_set_shows_desired_current_and_ready_counts() {
        let replica_set = json!({
            "metadata": { "name": "web-7d9f", "creationTimestamp": "2026-03-01T09:00:00Z" },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "web", "pod-template-hash": "7d9f" } },
                "template": { "spec": { "containers": [{ "name": "nginx", "image": "nginx" }] } },
            },
            "status": { "replicas": 3, "readyReplicas": 1 },
        });
        assert_eq!(
            json!(row(&replica_set, at("2026-03-01T12:00:00Z"))),
            json!([
                "web-7d9f",
                3,
                3,
                1,
                "3h",
                "nginx",
                "nginx",
                "app=web,pod-template-hash=7d9f"
            ])
        );
    }
}
