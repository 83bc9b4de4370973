//! DaemonSets: the `kubectl get daemonsets` table (desired, current, ready, up-to-date and
//! available node counts, and the node selector).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{default_pod_template, object_field, set_default};
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
    fn prepare_for_create(&self, object: &mut Value) {
        default_daemon_set(object);
        set_template_generation(object, 1);
        object["status"] = json!({
            "currentNumberScheduled": 0,
            "desiredNumberScheduled": 0,
            "numberMisscheduled": 0,
            "numberReady": 0,
        });
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        default_daemon_set(new);
        // The template generation counts template changes, as upstream's annotation does.
        let generation = old["metadata"]["annotations"][TEMPLATE_GENERATION]
            .as_str()
            .and_then(|g| g.parse::<i64>().ok())
            .unwrap_or(0);
        let changed = new["spec"]["template"] != old["spec"]["template"];
        set_template_generation(new, generation + i64::from(changed));
    }

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

/// The annotation apps/v1 DaemonSets carry their template generation in.
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn set_template_generation(daemon_set: &mut Value, generation: i64) {
    let Some(metadata) = object_field(daemon_set, "metadata") else {
        return;
    };
    if let Some(annotations) = object_field(metadata, "annotations") {
        annotations[TEMPLATE_GENERATION] = json!(generation.to_string());
    }
}

/// Upstream's apps/v1 DaemonSet defaults: roll one node at a time without surge, keep ten
/// revisions.
fn default_daemon_set(daemon_set: &mut Value) {
    let Some(spec) = daemon_set.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    if let Some(strategy) = object_field(spec, "updateStrategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate"
            && let Some(rolling) = object_field(strategy, "rollingUpdate")
        {
            set_default(rolling, "maxUnavailable", json!(1));
            set_default(rolling, "maxSurge", json!(0));
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
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
    fn daemon_sets_roll_one_node_at_a_time() {
        let mut set =
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": []}}}});
        DaemonSets.prepare_for_create(&mut set);
        assert_eq!(
            set["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(set["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(set["status"]["numberReady"], 0);
    }

    #[test]
    fn template_changes_bump_the_template_generation_annotation() {
        let mut old =
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": []}}}});
        DaemonSets.prepare_for_create(&mut old);
        assert_eq!(old["metadata"]["annotations"][TEMPLATE_GENERATION], "1");
        let mut same = old.clone();
        DaemonSets.prepare_for_update(&mut same, &old);
        assert_eq!(same["metadata"]["annotations"][TEMPLATE_GENERATION], "1");
        let mut changed = old.clone();
        changed["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        DaemonSets.prepare_for_update(&mut changed, &old);
        assert_eq!(changed["metadata"]["annotations"][TEMPLATE_GENERATION], "2");
    }

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
