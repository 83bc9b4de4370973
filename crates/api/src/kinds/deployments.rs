//! Deployments: the `kubectl get deployments` table (ready of desired, up-to-date, available).

use serde_json::Value;
use time::OffsetDateTime;

use super::printing::{self, AGE, CONTAINERS, IMAGES, NAME, column, int, wide};
use super::{Column, Kind};

pub struct Deployments;

const COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Number of the pod with ready state"),
    column(
        "Up-to-date",
        "string",
        "Total number of non-terminating pods targeted by this deployment that have the desired template spec.",
    ),
    column(
        "Available",
        "string",
        "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

impl Kind for Deployments {
    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

fn row(deployment: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (spec, status) = (&deployment["spec"], &deployment["status"]);
    let ready = format!(
        "{}/{}",
        int(&status["readyReplicas"]),
        int(&spec["replicas"])
    );
    // Unlike other selectors, an empty or unreadable one prints as empty or `<invalid>`.
    let selector =
        printing::selector_string(&spec["selector"]).unwrap_or_else(|| "<invalid>".into());
    let [containers, images] = printing::container_cells(&spec["template"]["spec"]);
    vec![
        printing::name(deployment),
        ready.into(),
        int(&status["updatedReplicas"]).into(),
        int(&status["availableReplicas"]).into(),
        printing::age(deployment, now),
        containers,
        images,
        selector.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn a_deployment_shows_ready_of_desired_and_its_template() {
        let deployment = json!({
            "metadata": { "name": "web", "creationTimestamp": "2026-03-01T11:50:00Z" },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "spec": { "containers": [
                    { "name": "nginx", "image": "nginx:1.27" },
                    { "name": "log", "image": "busybox" },
                ] } },
            },
            "status": { "replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2 },
        });
        assert_eq!(
            json!(row(&deployment, at("2026-03-01T12:00:00Z"))),
            json!([
                "web",
                "2/3",
                3,
                2,
                "10m",
                "nginx,log",
                "nginx:1.27,busybox",
                "app=web"
            ])
        );
    }

    #[test]
    fn a_new_deployment_without_status_counts_zero() {
        let deployment = json!({ "metadata": { "name": "web" }, "spec": { "replicas": 1 } });
        let cells = row(&deployment, at("2026-03-01T12:00:00Z"));
        assert_eq!(json!(cells[1..4]), json!(["0/1", 0, 0]));
        assert_eq!(cells[7], "");
    }
}
