//! Deployments: the `kubectl get deployments` table (ready of desired, up-to-date, available).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{default_pod_template, object_field, set_default};
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
    fn prepare_for_create(&self, object: &mut Value) {
        default_deployment(object);
        object["status"] = json!({});
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_deployment(new);
    }

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

/// Upstream's apps/v1 Deployment defaults: one replica, a 25%/25% rolling update, ten old
/// ReplicaSets kept, ten minutes to progress.
fn default_deployment(deployment: &mut Value) {
    let Some(spec) = deployment.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    if let Some(strategy) = object_field(spec, "strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate"
            && let Some(rolling) = object_field(strategy, "rollingUpdate")
        {
            set_default(rolling, "maxUnavailable", json!("25%"));
            set_default(rolling, "maxSurge", json!("25%"));
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
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
    fn deployments_roll_25_percent_at_a_time_and_start_with_an_empty_status() {
        let mut deployment = json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"replicas": 3}});
        Deployments.prepare_for_create(&mut deployment);
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert!(spec["template"]["spec"].get("enableServiceLinks").is_none());
        assert_eq!(deployment["status"], json!({}));
    }

    #[test]
    fn recreate_deployments_get_no_rolling_update() {
        let mut deployment = json!({"spec": {"strategy": {"type": "Recreate"}, "template": {}}});
        Deployments.prepare_for_update(&mut deployment, &Value::Null);
        assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
    }

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
