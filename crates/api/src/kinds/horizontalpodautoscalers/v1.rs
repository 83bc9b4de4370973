//! autoscaling/v1 autoscalers: the stored autoscaling/v2 ones as v1 says them (upstream's
//! `pkg/apis/autoscaling/v1` conversion). v1 has one CPU utilization target and its current
//! value; the rest of a v2 autoscaler (other metrics, their statuses, conditions, behavior)
//! travels in `autoscaling.alpha.kubernetes.io/…` annotations, so a v1 client that reads an
//! object and writes it back loses nothing.

use serde_json::{Map, Value, json};

use crate::kinds::conversion::Conversion;

/// Metric specs other than the CPU utilization target, in v1's metric shape.
const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Every current metric, in v1's metric status shape.
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// The scaling behavior, under the Go field names of upstream's internal type.
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const ROUND_TRIP: [&str; 4] = [METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR];

/// What a v1 autoscaler without a CPU target or other metrics aims at.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

pub(super) struct AutoscalingV1;

impl Conversion for AutoscalingV1 {
    fn to_storage(&self, hpa: Value) -> Value {
        to_v2(hpa)
    }

    fn to_served(&self, hpa: Value) -> Value {
        to_v1(hpa)
    }
}

/// A field of a metric source: its path in v2, its name in v1, and whether v1 always has it
/// (a quantity upstream does not point to, `"0"` when unset).
type Field = (&'static [&'static str], &'static str, bool);

/// A metric source, named alike in both versions, and its fields in specs and statuses.
struct Source {
    key: &'static str,
    spec: &'static [Field],
    status: &'static [Field],
}

const SOURCES: &[Source] = &[
    Source {
        key: "object",
        spec: &[
            (&["describedObject"], "target", false),
            (&["metric", "name"], "metricName", false),
            (&["target", "value"], "targetValue", true),
            (&["metric", "selector"], "selector", false),
            (&["target", "averageValue"], "averageValue", false),
        ],
        status: &[
            (&["describedObject"], "target", false),
            (&["metric", "name"], "metricName", false),
            (&["current", "value"], "currentValue", true),
            (&["metric", "selector"], "selector", false),
            (&["current", "averageValue"], "averageValue", false),
        ],
    },
    Source {
        key: "pods",
        spec: &[
            (&["metric", "name"], "metricName", false),
            (&["target", "averageValue"], "targetAverageValue", true),
            (&["metric", "selector"], "selector", false),
        ],
        status: &[
            (&["metric", "name"], "metricName", false),
            (&["current", "averageValue"], "currentAverageValue", true),
            (&["metric", "selector"], "selector", false),
        ],
    },
    Source {
        key: "resource",
        spec: &[
            (&["name"], "name", false),
            (
                &["target", "averageUtilization"],
                "targetAverageUtilization",
                false,
            ),
            (&["target", "averageValue"], "targetAverageValue", false),
        ],
        status: &[
            (&["name"], "name", false),
            (
                &["current", "averageUtilization"],
                "currentAverageUtilization",
                false,
            ),
            (&["current", "averageValue"], "currentAverageValue", true),
        ],
    },
    Source {
        key: "containerResource",
        spec: &[
            (&["name"], "name", false),
            (&["container"], "container", false),
            (
                &["target", "averageUtilization"],
                "targetAverageUtilization",
                false,
            ),
            (&["target", "averageValue"], "targetAverageValue", false),
        ],
        status: &[
            (&["name"], "name", false),
            (&["container"], "container", false),
            (
                &["current", "averageUtilization"],
                "currentAverageUtilization",
                false,
            ),
            (&["current", "averageValue"], "currentAverageValue", true),
        ],
    },
    Source {
        key: "external",
        spec: &[
            (&["metric", "name"], "metricName", false),
            (&["metric", "selector"], "metricSelector", false),
            (&["target", "value"], "targetValue", false),
            (&["target", "averageValue"], "targetAverageValue", false),
        ],
        status: &[
            (&["metric", "name"], "metricName", false),
            (&["metric", "selector"], "metricSelector", false),
            (&["current", "value"], "currentValue", true),
            (&["current", "averageValue"], "currentAverageValue", false),
        ],
    },
];

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |node, part| &node[*part])
}

/// A field's value as the other version holds it: unset stays unset, unless it is required.
fn carried(value: &Value, required: bool) -> Option<Value> {
    match value {
        Value::Null if required => Some(json!("0")),
        Value::Null => None,
        value => Some(value.clone()),
    }
}

/// An object of the fields that are set.
fn object_of(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

fn fields_of(source: &Source, status: bool) -> &'static [Field] {
    if status { source.status } else { source.spec }
}

/// One v2 metric spec (or status) in v1's metric shape.
fn metric_to_v1(metric: &Value, status: bool) -> Value {
    let mut v1 = json!({ "type": metric["type"] });
    for source in SOURCES {
        let v2 = &metric[source.key];
        if v2.is_null() {
            continue;
        }
        let fields = fields_of(source, status)
            .iter()
            .filter_map(|(path, name, required)| {
                carried(at(v2, path), *required).map(|value| (*name, value))
            });
        v1[source.key] = object_of(fields);
    }
    v1
}

/// One v1 metric spec (or status) in v2's shape; a spec's target gets its type.
fn metric_to_v2(metric: &Value, status: bool) -> Value {
    let mut v2 = json!({ "type": metric["type"] });
    for source in SOURCES {
        let v1 = &metric[source.key];
        if v1.is_null() {
            continue;
        }
        let mut converted = json!({});
        for (path, name, required) in fields_of(source, status) {
            if let Some(value) = carried(&v1[*name], *required) {
                let (last, parents) = path.split_last().expect("paths are not empty");
                let parent = parents.iter().fold(&mut converted, |node, part| {
                    if !node[*part].is_object() {
                        node[*part] = json!({});
                    }
                    &mut node[*part]
                });
                parent[*last] = value;
            }
        }
        if !status {
            let target = &converted["target"];
            let set = |field: &str| !target[field].is_null();
            let kind = match source.key {
                "object" if set("averageValue") => "AverageValue",
                "object" => "Value",
                "resource" | "containerResource" if set("averageUtilization") => "Utilization",
                "external" if set("value") => "Value",
                _ => "AverageValue",
            };
            converted["target"]["type"] = kind.into();
        }
        v2[source.key] = converted;
    }
    v2
}

fn is_cpu(metric: &Value) -> bool {
    metric["type"] == "Resource" && metric["resource"]["name"] == "cpu"
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Object keys with their first letter upper or lower case, all the way down: the behavior
/// annotation holds upstream's internal type marshalled without JSON tags, under Go field names
/// (`ScaleUp`, `StabilizationWindowSeconds`). Nulls (Go's unset pointers) are left out.
fn recased(value: &Value, upper: bool) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(key, v)| {
                    let mut chars = key.chars();
                    let first = chars.next().map_or(String::new(), |c| {
                        if upper {
                            c.to_uppercase().collect()
                        } else {
                            c.to_lowercase().collect()
                        }
                    });
                    (first + chars.as_str(), recased(v, upper))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| recased(v, upper)).collect()),
        other => other.clone(),
    }
}

/// Takes the round-trip annotations off an object, answering them decoded; an annotations map
/// left empty goes too.
fn take_round_trip(hpa: &mut Value) -> Map<String, Value> {
    let mut taken = Map::new();
    let Some(meta) = hpa.get_mut("metadata").and_then(Value::as_object_mut) else {
        return taken;
    };
    let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) else {
        return taken;
    };
    for key in ROUND_TRIP {
        if let Some(text) = annotations.remove(key) {
            // Upstream refuses an object whose annotation does not decode; it is dropped here.
            if let Some(decoded) = text.as_str().and_then(|t| serde_json::from_str(t).ok()) {
                taken.insert(key.to_owned(), decoded);
            }
        }
    }
    if annotations.is_empty() {
        meta.remove("annotations");
    }
    taken
}

fn annotate(hpa: &mut Value, key: &str, value: &Value) {
    if !hpa["metadata"]["annotations"].is_object() {
        hpa["metadata"]["annotations"] = json!({});
    }
    hpa["metadata"]["annotations"][key] = value.to_string().into();
}

/// A stored (v2) autoscaler as autoscaling/v1 serves it.
fn to_v1(mut hpa: Value) -> Value {
    if !hpa.is_object() {
        return hpa;
    }
    take_round_trip(&mut hpa);
    let spec = hpa["spec"].take();
    let status = hpa["status"].take();
    hpa["apiVersion"] = "autoscaling/v1".into();
    let metrics = list(&spec["metrics"]);
    let target_cpu = metrics.iter().find(|m| is_cpu(m)).map_or(Value::Null, |m| {
        m["resource"]["target"]["averageUtilization"].clone()
    });
    hpa["spec"] = object_of([
        ("scaleTargetRef", spec["scaleTargetRef"].clone()),
        ("minReplicas", spec["minReplicas"].clone()),
        ("maxReplicas", spec["maxReplicas"].clone()),
        ("targetCPUUtilizationPercentage", target_cpu),
    ]);
    let current = list(&status["currentMetrics"]);
    let current_cpu = current
        .iter()
        .filter(|m| is_cpu(m))
        .map(|m| &m["resource"]["current"]["averageUtilization"])
        .rfind(|u| !u.is_null())
        .cloned()
        .unwrap_or(Value::Null);
    hpa["status"] = object_of([
        ("observedGeneration", status["observedGeneration"].clone()),
        ("lastScaleTime", status["lastScaleTime"].clone()),
        (
            "currentReplicas",
            json!(status["currentReplicas"].as_i64().unwrap_or(0)),
        ),
        (
            "desiredReplicas",
            json!(status["desiredReplicas"].as_i64().unwrap_or(0)),
        ),
        ("currentCPUUtilizationPercentage", current_cpu),
    ]);
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu(m) || m["resource"]["target"]["averageUtilization"].is_null())
        .map(|m| metric_to_v1(m, false))
        .collect();
    if !others.is_empty() {
        annotate(&mut hpa, METRICS, &Value::Array(others));
    }
    if !current.is_empty() {
        let statuses = current.iter().map(|m| metric_to_v1(m, true)).collect();
        annotate(&mut hpa, CURRENT_METRICS, &Value::Array(statuses));
    }
    if !list(&status["conditions"]).is_empty() {
        annotate(&mut hpa, CONDITIONS, &status["conditions"]);
    }
    if spec["behavior"].is_object() {
        annotate(&mut hpa, BEHAVIOR, &recased(&spec["behavior"], true));
    }
    hpa
}

/// An autoscaling/v1 autoscaler in the stored (v2) form.
fn to_v2(mut hpa: Value) -> Value {
    if !hpa.is_object() {
        return hpa;
    }
    let kept = take_round_trip(&mut hpa);
    let spec = hpa["spec"].take();
    let status = hpa["status"].take();
    hpa["apiVersion"] = "autoscaling/v2".into();
    let mut metrics: Vec<Value> = list(&kept.get(METRICS).cloned().unwrap_or_default())
        .iter()
        .map(|m| metric_to_v2(m, false))
        .collect();
    let target_cpu = &spec["targetCPUUtilizationPercentage"];
    if !target_cpu.is_null() || metrics.is_empty() {
        let utilization = match target_cpu {
            Value::Null => json!(DEFAULT_CPU_UTILIZATION),
            set => set.clone(),
        };
        metrics.push(json!({
            "type": "Resource",
            "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": utilization } },
        }));
    }
    hpa["spec"] = object_of([
        ("scaleTargetRef", spec["scaleTargetRef"].clone()),
        ("minReplicas", spec["minReplicas"].clone()),
        ("maxReplicas", spec["maxReplicas"].clone()),
        ("metrics", Value::Array(metrics)),
        (
            "behavior",
            kept.get(BEHAVIOR)
                .map_or(Value::Null, |b| recased(b, false)),
        ),
    ]);
    // The annotation has every current metric; the CPU percentage alone is what v1 says.
    let current = match (
        kept.get(CURRENT_METRICS),
        &status["currentCPUUtilizationPercentage"],
    ) {
        (Some(statuses), _) => list(statuses)
            .iter()
            .map(|m| metric_to_v2(m, true))
            .collect(),
        (None, Value::Null) => Value::Null,
        (None, cpu) => json!([{
            "type": "Resource",
            "resource": { "name": "cpu", "current": { "averageUtilization": cpu } },
        }]),
    };
    // v2 leaves out a zero currentReplicas and always writes the current metrics.
    let replicas = status["currentReplicas"].as_i64().filter(|r| *r != 0);
    let mut converted = object_of([
        ("observedGeneration", status["observedGeneration"].clone()),
        ("lastScaleTime", status["lastScaleTime"].clone()),
        ("currentReplicas", replicas.map_or(Value::Null, Value::from)),
        (
            "desiredReplicas",
            json!(status["desiredReplicas"].as_i64().unwrap_or(0)),
        ),
        (
            "conditions",
            kept.get(CONDITIONS).cloned().unwrap_or_default(),
        ),
    ]);
    converted["currentMetrics"] = current;
    hpa["status"] = converted;
    hpa
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 autoscaler with something of everything v1 cannot say.
    fn rich_v2() -> Value {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": { "name": "web", "namespace": "default", "annotations": { "team": "a" } },
            "spec": {
                "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    { "type": "Resource", "resource": { "name": "memory", "target": { "type": "AverageValue", "averageValue": "200Mi" } } },
                    { "type": "Pods", "pods": { "metric": { "name": "qps" }, "target": { "type": "AverageValue", "averageValue": "1k" } } },
                    { "type": "External", "external": { "metric": { "name": "queue", "selector": { "matchLabels": { "q": "jobs" } } }, "target": { "type": "Value", "value": "30" } } },
                    { "type": "Object", "object": { "describedObject": { "apiVersion": "v1", "kind": "Service", "name": "web" }, "metric": { "name": "rps" }, "target": { "type": "AverageValue", "value": "0", "averageValue": "50" } } },
                    { "type": "ContainerResource", "containerResource": { "name": "cpu", "container": "app", "target": { "type": "Utilization", "averageUtilization": 70 } } },
                    { "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 60 } } },
                ],
                "behavior": {
                    "scaleDown": { "stabilizationWindowSeconds": 300, "selectPolicy": "Min", "policies": [{ "type": "Pods", "value": 4, "periodSeconds": 60 }] },
                },
            },
            "status": {
                "observedGeneration": 3,
                "currentReplicas": 4,
                "desiredReplicas": 5,
                "currentMetrics": [
                    { "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": 42, "averageValue": "210m" } } },
                    { "type": "Pods", "pods": { "metric": { "name": "qps" }, "current": { "averageValue": "800" } } },
                ],
                "conditions": [{ "type": "AbleToScale", "status": "True", "lastTransitionTime": "2026-03-01T11:00:00Z", "reason": "ReadyForNewScale" }],
            },
        })
    }

    #[test]
    fn the_cpu_utilization_metric_is_v1s_target_and_the_rest_is_kept_in_annotations() {
        let v1 = to_v1(rich_v2());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(
            v1["spec"],
            json!({
                "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
                "minReplicas": 2,
                "maxReplicas": 10,
                "targetCPUUtilizationPercentage": 60,
            })
        );
        assert_eq!(
            v1["status"],
            json!({ "observedGeneration": 3, "currentReplicas": 4, "desiredReplicas": 5, "currentCPUUtilizationPercentage": 42 })
        );
        let annotations = &v1["metadata"]["annotations"];
        assert_eq!(annotations["team"], "a");
        let others: Value = serde_json::from_str(annotations[METRICS].as_str().unwrap()).unwrap();
        assert_eq!(others.as_array().unwrap().len(), 5, "{others}");
        assert_eq!(
            others[0],
            json!({ "type": "Resource", "resource": { "name": "memory", "targetAverageValue": "200Mi" } })
        );
        assert_eq!(
            others[2],
            json!({ "type": "External", "external": { "metricName": "queue", "metricSelector": { "matchLabels": { "q": "jobs" } }, "targetValue": "30" } })
        );
        let current: Value =
            serde_json::from_str(annotations[CURRENT_METRICS].as_str().unwrap()).unwrap();
        assert_eq!(
            current[0],
            json!({ "type": "Resource", "resource": { "name": "cpu", "currentAverageUtilization": 42, "currentAverageValue": "210m" } })
        );
        let behavior: Value =
            serde_json::from_str(annotations[BEHAVIOR].as_str().unwrap()).unwrap();
        assert_eq!(behavior["ScaleDown"]["Policies"][0]["PeriodSeconds"], 60);
        assert!(
            annotations[CONDITIONS]
                .as_str()
                .unwrap()
                .contains("ReadyForNewScale")
        );
    }

    #[test]
    fn a_v2_autoscaler_read_as_v1_and_written_back_is_unchanged_but_for_metric_order() {
        let original = rich_v2();
        let back = to_v2(to_v1(original.clone()));
        let mut expected = original;
        // Upstream puts the CPU target, which v1 holds apart, after the annotated metrics.
        let metrics = expected["spec"]["metrics"].as_array_mut().unwrap();
        let cpu = metrics.remove(5);
        metrics.push(cpu);
        assert_eq!(back, expected);
    }

    #[test]
    fn a_v1_autoscaler_is_a_v2_one_with_a_cpu_utilization_metric() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": { "name": "web" },
            "spec": { "scaleTargetRef": { "kind": "Deployment", "name": "web" }, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50 },
            "status": { "currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 30 },
        });
        let v2 = to_v2(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 50 } } }])
        );
        assert_eq!(
            v2["status"]["currentMetrics"],
            json!([{ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": 30 } } }])
        );
        assert!(v2["metadata"].get("annotations").is_none());
        let again = to_v1(v2.clone());
        assert_eq!(again["spec"], v1["spec"]);
        assert_eq!(again["status"], v1["status"]);
        assert_eq!(to_v2(again)["spec"], v2["spec"]);
    }

    #[test]
    fn a_v1_autoscaler_without_a_target_aims_at_80_percent_cpu() {
        let v2 = to_v2(json!({ "apiVersion": "autoscaling/v1", "spec": { "maxReplicas": 3 } }));
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            v2["status"],
            json!({ "desiredReplicas": 0, "currentMetrics": null })
        );
    }

    #[test]
    fn annotated_metrics_come_back_with_their_target_types() {
        let mut v1 = json!({ "apiVersion": "autoscaling/v1", "spec": { "maxReplicas": 3 } });
        let kept = json!([
            { "type": "Pods", "pods": { "metricName": "qps", "targetAverageValue": "1k" } },
            { "type": "Object", "object": { "target": { "kind": "Service", "name": "web" }, "metricName": "rps", "targetValue": "100" } },
        ]);
        annotate(&mut v1, METRICS, &kept);
        let v2 = to_v2(v1);
        assert_eq!(
            v2["spec"]["metrics"],
            json!([
                { "type": "Pods", "pods": { "metric": { "name": "qps" }, "target": { "type": "AverageValue", "averageValue": "1k" } } },
                { "type": "Object", "object": { "describedObject": { "kind": "Service", "name": "web" }, "metric": { "name": "rps" }, "target": { "type": "Value", "value": "100" } } },
            ]),
            "no CPU metric is added to metrics a v1 client kept"
        );
        assert!(v2["metadata"].get("annotations").is_none());
    }
}
