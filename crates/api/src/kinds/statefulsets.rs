//! StatefulSets: the `kubectl get statefulsets` table (ready of desired).

use serde_json::Value;
use time::OffsetDateTime;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

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
