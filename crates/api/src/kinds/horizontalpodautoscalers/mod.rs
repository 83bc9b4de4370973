//! HorizontalPodAutoscalers, stored as autoscaling/v2: defaults and the `kubectl get hpa`
//! table (target, metrics as `current/target`, replica bounds and count); autoscaling/v1
//! objects are converted to v2 (`v1.rs`) and behave as the v2 objects they are.

mod v1;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::conversion::Converted;
use super::defaulting::{object_field, set_default};
use super::printing::{self, AGE, NAME, column, int, items, text};
use super::{Column, Kind};

pub struct HorizontalPodAutoscalers;

/// autoscaling/v1 autoscalers: v2 ones under v1's fields.
pub static AUTOSCALING_V1: Converted = Converted {
    stored: &HorizontalPodAutoscalers,
    conversion: &v1::AutoscalingV1,
};

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Reference",
        "string",
        "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
    ),
    column(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond.",
    ),
    column(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.",
    ),
    column(
        "MaxPods",
        "string",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.",
    ),
    column(
        "Replicas",
        "string",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
    ),
    AGE,
];

/// Metrics shown before the rest are counted as `+ N more...`.
const SHOWN: usize = 2;

impl Kind for HorizontalPodAutoscalers {
    fn prepare_for_create(&self, object: &mut Value) {
        default_autoscaler(object);
        object["status"] = json!({ "currentMetrics": null, "desiredReplicas": 0 });
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_autoscaler(new);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// A quantity as stored; `<nil>` when unset, as Go prints a nil quantity.
fn quantity(value: &Value) -> &str {
    value.as_str().unwrap_or("<nil>")
}

/// `current/target` (with `(avg)` for average values) for a source without a name.
fn value_or_average(target: &Value, current: Option<&Value>) -> String {
    if target["averageValue"].is_null() {
        let current = current.map_or("<unknown>", |c| quantity(&c["value"]));
        format!("{current}/{}", quantity(&target["value"]))
    } else {
        let current = current
            .filter(|c| !c["averageValue"].is_null())
            .map_or("<unknown>", |c| quantity(&c["averageValue"]));
        format!("{current}/{} (avg)", quantity(&target["averageValue"]))
    }
}

/// `name: current/target` for a (container) resource source: an average value, else a
/// utilization percentage.
fn resource(source: &Value, current: Option<&Value>) -> String {
    let name = text(&source["name"]);
    let target = &source["target"];
    if !target["averageValue"].is_null() {
        let current = current.map_or("<unknown>", |c| quantity(&c["averageValue"]));
        return format!("{name}: {current}/{}", quantity(&target["averageValue"]));
    }
    let percent = |v: &Value| v.as_i64().map(|p| format!("{p}%"));
    let current = current
        .and_then(|c| percent(&c["averageUtilization"]))
        .unwrap_or_else(|| "<unknown>".into());
    let target = percent(&target["averageUtilization"]).unwrap_or_else(|| "<auto>".into());
    format!("{name}: {current}/{target}")
}

fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    let shown: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            // A status only counts when it sits at the same index and has this source.
            let current = |field: &str| {
                statuses
                    .get(i)
                    .map(|s| &s[field])
                    .filter(|s| !s.is_null())
                    .map(|s| &s["current"])
            };
            match text(&spec["type"]) {
                "External" => value_or_average(&spec["external"]["target"], current("external")),
                "Pods" => {
                    let current =
                        current("pods").map_or("<unknown>", |c| quantity(&c["averageValue"]));
                    format!(
                        "{current}/{}",
                        quantity(&spec["pods"]["target"]["averageValue"])
                    )
                }
                "Object" => value_or_average(&spec["object"]["target"], current("object")),
                "Resource" => resource(&spec["resource"], current("resource")),
                "ContainerResource" => {
                    resource(&spec["containerResource"], current("containerResource"))
                }
                _ => "<unknown type>".into(),
            }
        })
        .take(SHOWN)
        .collect();
    let joined = shown.join(", ");
    if specs.len() > SHOWN {
        format!("{joined} + {} more...", specs.len() - SHOWN)
    } else {
        joined
    }
}

fn row(hpa: &Value, now: OffsetDateTime) -> Vec<Value> {
    let spec = &hpa["spec"];
    let target = &spec["scaleTargetRef"];
    let reference = format!("{}/{}", text(&target["kind"]), text(&target["name"]));
    let specs = items(&spec["metrics"]);
    let statuses = items(&hpa["status"]["currentMetrics"]);
    let min_pods = match spec["minReplicas"].as_i64() {
        Some(min) => min.to_string(),
        None => "<unset>".into(),
    };
    vec![
        printing::name(hpa),
        reference.into(),
        format_metrics(specs, statuses).into(),
        min_pods.into(),
        int(&spec["maxReplicas"]).into(),
        int(&hpa["status"]["currentReplicas"]).into(),
        printing::age(hpa, now),
    ]
}

/// Upstream's autoscaling defaults: at least one replica; a v2 autoscaler without metrics
/// aims at 80% CPU, and a behavior it names gets the default scaling rules it leaves out.
fn default_autoscaler(hpa: &mut Value) {
    let Some(spec) = hpa.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "minReplicas", json!(1));
    if spec["metrics"].as_array().is_none_or(Vec::is_empty) {
        spec["metrics"] = json!([{
            "type": "Resource",
            "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 80 } },
        }]);
    }
    let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) else {
        return;
    };
    let scale_up = json!({
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            { "type": "Pods", "value": 4, "periodSeconds": 15 },
            { "type": "Percent", "value": 100, "periodSeconds": 15 },
        ],
    });
    // Scale-down keeps no default window: the controller's flag decides it.
    let scale_down = json!({
        "selectPolicy": "Max",
        "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 15 }],
    });
    for (direction, defaults) in [("scaleUp", scale_up), ("scaleDown", scale_down)] {
        let Some(rules) = object_field(behavior, direction) else {
            continue;
        };
        if let Some(defaults) = defaults.as_object() {
            for (field, value) in defaults {
                set_default(rules, field, value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;

    #[test]
    fn autoscalers_without_metrics_aim_at_80_percent_cpu() {
        let mut hpa = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 5}});
        HorizontalPodAutoscalers.prepare_for_create(&mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 80})
        );
        assert!(hpa["spec"].get("behavior").is_none());
        assert_eq!(
            hpa["status"],
            json!({"currentMetrics": null, "desiredReplicas": 0})
        );
    }

    #[test]
    fn a_named_behavior_gets_the_default_scaling_rules() {
        let mut hpa = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 5,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        HorizontalPodAutoscalers.prepare_for_update(&mut hpa, &Value::Null);
        let behavior = &hpa["spec"]["behavior"];
        assert_eq!(behavior["scaleUp"]["stabilizationWindowSeconds"], 0);
        assert_eq!(
            behavior["scaleUp"]["policies"][0],
            json!({"type": "Pods", "value": 4, "periodSeconds": 15})
        );
        assert_eq!(behavior["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(behavior["scaleDown"]["selectPolicy"], "Max");
    }

    #[test]
    fn v1_autoscalers_are_defaulted_as_the_v2_ones_they_are() {
        let mut hpa = json!({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 5}});
        AUTOSCALING_V1.prepare_for_create(&mut hpa);
        assert_eq!(hpa["apiVersion"], "autoscaling/v1");
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(hpa["spec"]["targetCPUUtilizationPercentage"], 80);
        assert!(hpa["spec"].get("metrics").is_none());
        assert_eq!(
            hpa["status"],
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        );
    }

    const NOW: &str = "2026-03-01T12:00:00Z";

    #[test]
    fn a_v2_autoscaler_shows_cpu_utilization_against_its_target() {
        let hpa = json!({
            "metadata": { "name": "web", "creationTimestamp": "2026-03-01T11:00:00Z" },
            "spec": {
                "scaleTargetRef": { "kind": "Deployment", "name": "web" },
                "minReplicas": 1,
                "maxReplicas": 10,
                "metrics": [{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 80 } } }],
            },
            "status": {
                "currentReplicas": 3,
                "currentMetrics": [{ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": 42, "averageValue": "210m" } } }],
            },
        });
        assert_eq!(
            json!(row(&hpa, at(NOW))),
            json!(["web", "Deployment/web", "cpu: 42%/80%", "1", 10, 3, "60m"])
        );
    }

    #[test]
    fn a_v1_autoscaler_prints_its_cpu_target_as_a_metric() {
        let hpa = json!({
            "apiVersion": "autoscaling/v1",
            "spec": {
                "scaleTargetRef": { "kind": "Deployment", "name": "web" },
                "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 50,
            },
            "status": { "currentReplicas": 1 },
        });
        let cells = AUTOSCALING_V1.cells(&hpa);
        assert_eq!(
            json!(cells[2..5]),
            json!(["cpu: <unknown>/50%", "<unset>", 5])
        );
    }

    #[test]
    fn an_autoscaler_without_metrics_shows_none() {
        let hpa = json!({ "spec": { "scaleTargetRef": { "kind": "StatefulSet", "name": "db" } } });
        assert_eq!(row(&hpa, at(NOW))[2], "<none>");
    }

    #[test]
    fn metrics_past_the_second_are_counted() {
        let specs = vec![
            json!({ "type": "Pods", "pods": { "target": { "averageValue": "1k" } } }),
            json!({ "type": "External", "external": { "target": { "value": "10" } } }),
            json!({ "type": "Object", "object": { "target": { "averageValue": "5" } } }),
        ];
        let statuses = vec![
            json!({ "type": "Pods", "pods": { "current": { "averageValue": "500" } } }),
            json!({ "type": "External", "external": { "current": { "value": "12" } } }),
        ];
        assert_eq!(
            format_metrics(&specs, &statuses),
            "500/1k, 12/10 + 1 more..."
        );
    }

    #[test]
    fn average_value_and_container_metrics_print_their_units() {
        let specs = vec![
            json!({ "type": "Object", "object": { "target": { "averageValue": "5" } } }),
            json!({ "type": "ContainerResource", "containerResource": { "name": "memory", "container": "app", "target": { "averageValue": "256Mi" } } }),
        ];
        assert_eq!(
            format_metrics(&specs, &[]),
            "<unknown>/5 (avg), memory: <unknown>/256Mi"
        );
    }
}
