//! What upstream's API server does to a pod it stores: the `Pod` defaults (on top of the pod
//! spec's), on create the Priority and DefaultTolerationSeconds admission plugins, and the
//! pod strategy's fresh status: phase Pending with the pod's QoS class.

use serde_json::{Map, Value, json};

use super::defaulting::{default_pod_spec, items_mut, object_field, set_default};
use super::printing::items;

/// Defaults a pod gets on every write (upstream's `SetDefaults_Pod` and the pod spec's).
pub fn default_pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    default_pod_spec(spec);
    for list in ["containers", "initContainers"] {
        for container in items_mut(spec, list) {
            requests_from_limits(container);
        }
    }
    set_default(spec, "enableServiceLinks", json!(true));
    if spec["hostNetwork"] == true {
        for list in ["containers", "initContainers"] {
            for container in items_mut(spec, list) {
                for port in items_mut(container, "ports") {
                    if port["hostPort"].as_i64().unwrap_or(0) == 0 {
                        port["hostPort"] = port["containerPort"].clone();
                    }
                }
            }
        }
    }
}

/// A container that names limits but not requests for a resource requests its limit.
fn requests_from_limits(container: &mut Value) {
    let Some(limits) = container["resources"]["limits"].as_object().cloned() else {
        return;
    };
    let Some(requests) = object_field(&mut container["resources"], "requests") else {
        return;
    };
    if let Some(requests) = requests.as_object_mut() {
        for (name, quantity) in limits {
            requests.entry(name).or_insert(quantity);
        }
    }
}

/// Everything a new pod gets: defaults, admission, and the status it starts with.
pub fn prepare_new_pod(pod: &mut Value) {
    default_pod(pod);
    if let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) {
        admit_priority(spec);
        admit_default_toleration_seconds(spec);
    }
    let mut status = json!({ "phase": "Pending", "qosClass": qos_class(&pod["spec"]) });
    if !items(&pod["spec"]["schedulingGates"]).is_empty() {
        status["conditions"] = json!([{
            "type": "PodScheduled",
            "status": "False",
            "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
            "lastProbeTime": null,
            "lastTransitionTime": null,
        }]);
    }
    pod["status"] = status;
}

/// The Priority plugin: a pod without a priority class gets priority 0; the built-in
/// classes give theirs. Every pod gets the class's preemption policy (the default one here).
fn admit_priority(spec: &mut Value) {
    let priority = match spec["priorityClassName"].as_str() {
        Some("system-node-critical") => 2_000_001_000,
        Some("system-cluster-critical") => 2_000_000_000,
        _ => 0,
    };
    set_default(spec, "priority", json!(priority));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

/// The DefaultTolerationSeconds plugin: pods tolerate a not-ready or unreachable node for five
/// minutes unless they say otherwise.
fn admit_default_toleration_seconds(spec: &mut Value) {
    let tolerations = items(&spec["tolerations"]);
    let tolerates = |taint: &str| {
        tolerations.iter().any(|t| {
            let key = t["key"].as_str().unwrap_or_default();
            let effect = t["effect"].as_str().unwrap_or_default();
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut added = Vec::new();
    for taint in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(taint) {
            added.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
    if added.is_empty() {
        return;
    }
    set_default(spec, "tolerations", json!([]));
    if let Some(list) = spec.get_mut("tolerations").and_then(Value::as_array_mut) {
        list.extend(added);
    }
}

/// A quantity (`500m`, `1.5Gi`, `2e3`) as a number; malformed ones count as zero.
fn quantity(value: &Value) -> f64 {
    let text = match value {
        Value::Number(n) => return n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim(),
        _ => return 0.0,
    };
    const SUFFIXES: [(&str, f64); 16] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("", 1.0),
    ];
    for (suffix, scale) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix)
            && let Ok(n) = number.parse::<f64>()
        {
            return n * scale;
        }
    }
    0.0
}

fn same_quantity(a: f64, b: f64) -> bool {
    (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()) * 4.0
}

/// Upstream's QoS class: BestEffort without CPU or memory requests or limits, Guaranteed when
/// every container limits both and requests exactly its limits, else Burstable.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut requests: Map<String, Value> = Map::new();
    let mut limits: Map<String, Value> = Map::new();
    let mut guaranteed = true;
    let add = |sum: &mut Map<String, Value>, name: &str, amount: f64| {
        let total = sum.get(name).and_then(Value::as_f64).unwrap_or(0.0) + amount;
        sum.insert(name.to_owned(), json!(total));
    };
    let containers = items(&spec["containers"])
        .iter()
        .chain(items(&spec["initContainers"]).iter());
    for container in containers {
        let resources = &container["resources"];
        let mut limited = 0;
        for name in ["cpu", "memory"] {
            let request = quantity(&resources["requests"][name]);
            if request > 0.0 {
                add(&mut requests, name, request);
            }
            let limit = quantity(&resources["limits"][name]);
            if limit > 0.0 {
                add(&mut limits, name, limit);
                limited += 1;
            }
        }
        if limited < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let requests_match_limits = requests.iter().all(|(name, request)| {
        limits.get(name).is_some_and(|limit| {
            same_quantity(
                request.as_f64().unwrap_or(0.0),
                limit.as_f64().unwrap_or(0.0),
            )
        })
    });
    if guaranteed && requests_match_limits && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": containers}})
    }

    fn created(containers: Value) -> Value {
        let mut pod = pod(containers);
        prepare_new_pod(&mut pod);
        pod
    }

    #[test]
    fn pods_start_pending_with_their_qos_class() {
        let pod = created(json!([{"name": "c", "image": "nginx"}]));
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn a_status_sent_on_create_is_replaced() {
        let mut pod = pod(json!([{"name": "c", "image": "nginx"}]));
        pod["status"] = json!({"phase": "Running", "podIP": "10.0.0.1"});
        prepare_new_pod(&mut pod);
        assert_eq!(pod["status"]["phase"], "Pending");
        assert!(pod["status"].get("podIP").is_none());
    }

    #[test]
    fn pods_get_service_links_priority_and_preemption_policy() {
        let pod = created(json!([{"name": "c", "image": "nginx"}]));
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
        assert_eq!(pod["spec"]["priority"], 0);
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn system_priority_classes_give_their_priority() {
        let mut pod = pod(json!([{"name": "c", "image": "nginx"}]));
        pod["spec"]["priorityClassName"] = json!("system-node-critical");
        prepare_new_pod(&mut pod);
        assert_eq!(pod["spec"]["priority"], 2_000_001_000);
    }

    #[test]
    fn pods_tolerate_unready_and_unreachable_nodes_for_five_minutes() {
        let pod = created(json!([{"name": "c", "image": "nginx"}]));
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
    }

    #[test]
    fn own_tolerations_of_a_node_taint_are_kept() {
        let mut pod = pod(json!([{"name": "c", "image": "nginx"}]));
        pod["spec"]["tolerations"] =
            json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]);
        prepare_new_pod(&mut pod);
        let tolerations = items(&pod["spec"]["tolerations"]);
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/unreachable");
    }

    #[test]
    fn a_toleration_of_everything_needs_no_defaults() {
        let mut pod = pod(json!([{"name": "c", "image": "nginx"}]));
        pod["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        prepare_new_pod(&mut pod);
        assert_eq!(items(&pod["spec"]["tolerations"]).len(), 1);
    }

    #[test]
    fn limits_alone_make_a_pod_guaranteed() {
        let pod = created(json!([{"name": "c", "image": "nginx",
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]));
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "128Mi"})
        );
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    }

    #[test]
    fn equal_quantities_in_other_units_are_guaranteed() {
        let pod = created(json!([{"name": "c", "image": "nginx", "resources": {
            "requests": {"cpu": "0.5", "memory": "1Gi"},
            "limits": {"cpu": "500m", "memory": "1024Mi"}}}]));
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    }

    #[test]
    fn requests_below_limits_are_burstable() {
        let pod = created(json!([{"name": "c", "image": "nginx", "resources": {
            "requests": {"cpu": "100m"}, "limits": {"cpu": "500m", "memory": "1Gi"}}}]));
        assert_eq!(pod["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn one_unlimited_container_makes_a_pod_burstable() {
        let pod = created(json!([
            {"name": "a", "image": "nginx", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b", "image": "nginx"},
        ]));
        assert_eq!(pod["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn host_network_ports_default_to_host_ports() {
        let mut pod =
            pod(json!([{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]));
        pod["spec"]["hostNetwork"] = json!(true);
        default_pod(&mut pod);
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 80);
    }

    #[test]
    fn gated_pods_say_so_in_a_condition() {
        let mut pod = pod(json!([{"name": "c", "image": "nginx"}]));
        pod["spec"]["schedulingGates"] = json!([{"name": "wait"}]);
        prepare_new_pod(&mut pod);
        assert_eq!(pod["status"]["conditions"][0]["reason"], "SchedulingGated");
    }
}
