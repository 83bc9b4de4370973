//! StatefulSets: the `kubectl get statefulsets` table (ready of desired).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{
    default_claim_spec, default_pod_template, items_mut, object_field, set_default,
};
use super::printing::{self, AGE, CONTAINERS, IMAGES, NAME, column, int};
use super::{Column, Kind};

pub struct StatefulSets;

const COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

impl Kind for StatefulSets {
    fn prepare_for_create(&self, object: &mut Value) {
        default_stateful_set(object);
        object["status"] = json!({ "replicas": 0, "availableReplicas": 0 });
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_stateful_set(new);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

fn row(stateful_set: &Value, now: OffsetDateTime) -> Vec<Value> {
    let spec = &stateful_set["spec"];
    let ready = format!(
        "{}/{}",
        int(&stateful_set["status"]["readyReplicas"]),
        int(&spec["replicas"])
    );
    let [containers, images] = printing::container_cells(&spec["template"]["spec"]);
    vec![
        printing::name(stateful_set),
        ready.into(),
        printing::age(stateful_set, now),
        containers,
        images,
    ]
}

/// Upstream's apps/v1 StatefulSet defaults, and its claim templates' PVC defaults.
fn default_stateful_set(stateful_set: &mut Value) {
    let Some(spec) = stateful_set.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = object_field(spec, "updateStrategy") {
        // Only a strategy the defaults chose gets a partition; an explicit RollingUpdate
        // without one stays as written.
        if strategy.get("type").is_none_or(Value::is_null) {
            strategy["type"] = json!("RollingUpdate");
            set_default(strategy, "rollingUpdate", json!({}));
        }
        if strategy["type"] == "RollingUpdate"
            && let Some(rolling) = strategy.get_mut("rollingUpdate").filter(|r| r.is_object())
        {
            set_default(rolling, "partition", json!(0));
        }
    }
    if let Some(retention) = object_field(spec, "persistentVolumeClaimRetentionPolicy") {
        set_default(retention, "whenDeleted", json!("Retain"));
        set_default(retention, "whenScaled", json!("Retain"));
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    if let Some(template) = spec.get_mut("template") {
        default_pod_template(template);
    }
    for claim in items_mut(spec, "volumeClaimTemplates") {
        set_default(claim, "apiVersion", json!("v1"));
        set_default(claim, "kind", json!("PersistentVolumeClaim"));
        if let Some(claim_spec) = object_field(claim, "spec") {
            default_claim_spec(claim_spec);
        }
        if let Some(status) = object_field(claim, "status") {
            set_default(status, "phase", json!("Pending"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn stateful_sets_update_in_order_and_retain_their_claims() {
        let mut set = json!({"spec": {"template": {"spec": {"containers": []}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]},
            "status": {"replicas": 2}});
        StatefulSets.prepare_for_create(&mut set);
        let spec = &set["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["status"]["phase"],
            "Pending"
        );
        assert_eq!(
            set["status"],
            json!({"replicas": 0, "availableReplicas": 0})
        );
    }

    #[test]
    fn on_delete_stateful_sets_get_no_partition() {
        let mut set = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        StatefulSets.prepare_for_update(&mut set, &Value::Null);
        assert_eq!(set["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    }

    #[test]
    fn a_stateful_set_shows_ready_of_desired() {
        let stateful_set = json!({
            "metadata": { "name": "db", "creationTimestamp": "2026-02-27T12:00:00Z" },
            "spec": {
                "replicas": 3,
                "template": { "spec": { "containers": [{ "name": "pg", "image": "postgres:17" }] } },
            },
            "status": { "replicas": 3, "readyReplicas": 3 },
        });
        assert_eq!(
            json!(row(&stateful_set, at("2026-03-01T15:00:00Z"))),
            json!(["db", "3/3", "2d3h", "pg", "postgres:17"])
        );
    }
}
