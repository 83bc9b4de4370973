//! DaemonSets: the `kubectl get daemonsets` table (desired, current, ready, up-to-date and
//! available node counts, and the node selector).

use serde_json::Value;
use time::OffsetDateTime;

use super::printing::{self, AGE, CONTAINERS, IMAGES, NAME, column, int, wide};
use super::{Column, Kind};

pub struct DaemonSets;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
    ),
    column(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
    ),
    column(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    column(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    column(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    column(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set. Must match in order to be controlled. If empty, defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

impl Kind for DaemonSets {
    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

fn row(daemon_set: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (spec, status) = (&daemon_set["spec"], &daemon_set["status"]);
    let pod_spec = &spec["template"]["spec"];
    let [containers, images] = printing::container_cells(pod_spec);
    vec![
        printing::name(daemon_set),
        int(&status["desiredNumberScheduled"]).into(),
        int(&status["currentNumberScheduled"]).into(),
        int(&status["numberReady"]).into(),
        int(&status["updatedNumberScheduled"]).into(),
        int(&status["numberAvailable"]).into(),
        printing::format_labels(&pod_spec["nodeSelector"]).into(),
        printing::age(daemon_set, now),
        containers,
        images,
        printing::format_label_selector(&spec["selector"]).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn a_daemon_set_shows_node_counts_and_its_node_selector() {
        let daemon_set = json!({
            "metadata": { "name": "proxy", "creationTimestamp": "2026-03-01T11:58:30Z" },
            "spec": {
                "selector": { "matchLabels": { "k8s-app": "proxy" } },
                "template": { "spec": {
                    "nodeSelector": { "kubernetes.io/os": "linux" },
                    "containers": [{ "name": "proxy", "image": "r8s/proxy" }],
                } },
            },
            "status": {
                "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                "updatedNumberScheduled": 3, "numberAvailable": 2,
            },
        });
        assert_eq!(
            json!(row(&daemon_set, at("2026-03-01T12:00:00Z"))),
            json!([
                "proxy",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "90s",
                "proxy",
                "r8s/proxy",
                "k8s-app=proxy"
            ])
        );
    }

    #[test]
    fn a_daemon_set_without_a_node_selector_shows_none() {
        let daemon_set =
            json!({ "metadata": { "name": "d" }, "spec": { "template": { "spec": {} } } });
        assert_eq!(row(&daemon_set, at("2026-03-01T12:00:00Z"))[6], "<none>");
    }
}
