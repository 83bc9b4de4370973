//! What an object charges against a ResourceQuota, as upstream's quota evaluators count it:
//! shared by the ResourceQuota admission plugin (charging a new object) and the resourcequota
//! controller (recounting a namespace), so the two always agree.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::quantity::Quantity;

pub type ResourceList = BTreeMap<String, Quantity>;

/// Reads a `ResourceList` (`status.hard`, a container's `requests`); unreadable entries are skipped.
pub fn resource_list(value: &Value) -> ResourceList {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), Quantity::from_json(q)?)))
        .collect()
}

pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(name, q)| (name.clone(), Value::String(q.to_string())))
            .collect(),
    )
}

/// `count/<plural>` for the core group, `count/<plural>.<group>` otherwise.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// Whether `name` is a quota resource the objects of `group`/`plural` are counted in.
pub fn covers(group: &str, plural: &str, name: &str) -> bool {
    if name == count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    match plural {
        "pods" => {
            matches!(name, "pods" | "cpu" | "memory" | "ephemeral-storage")
                || name.starts_with("requests.")
                || name.starts_with("limits.")
                || name.starts_with("hugepages-")
        }
        "services" => matches!(
            name,
            "services" | "services.loadbalancers" | "services.nodeports"
        ),
        "persistentvolumeclaims" => {
            matches!(name, "persistentvolumeclaims" | "requests.storage")
                || name.contains(".storageclass.storage.k8s.io/")
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => name == plural,
        _ => false,
    }
}

/// Whether a quota (its `spec`) applies to an object: it tracks something the object is
/// counted in, and the object is in each of its scopes (scopes select pods only).
pub fn matches(spec: &Value, group: &str, plural: &str, object: &Value) -> bool {
    let tracked = spec["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(name, _)| covers(group, plural, name));
    if !tracked {
        return false;
    }
    let is_pod = group.is_empty() && plural == "pods";
    let scopes = spec["scopes"].as_array().into_iter().flatten();
    for scope in scopes {
        let scope = scope.as_str().unwrap_or_default();
        if !is_pod || !pod_in_scope(object, scope, "Exists", &[]) {
            return false;
        }
    }
    let expressions = spec["scopeSelector"]["matchExpressions"].as_array();
    for expression in expressions.into_iter().flatten() {
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let scope = expression["scopeName"].as_str().unwrap_or_default();
        let operator = expression["operator"].as_str().unwrap_or_default();
        if !is_pod || !pod_in_scope(object, scope, operator, &values) {
            return false;
        }
    }
    true
}

fn pod_in_scope(pod: &Value, scope: &str, operator: &str, values: &[&str]) -> bool {
    let spec = &pod["spec"];
    let inside = match scope {
        "Terminating" => spec["activeDeadlineSeconds"].as_i64().is_some(),
        "NotTerminating" => spec["activeDeadlineSeconds"].as_i64().is_none(),
        "BestEffort" => best_effort(spec),
        "NotBestEffort" => !best_effort(spec),
        "PriorityClass" => {
            let class = spec["priorityClassName"].as_str().unwrap_or_default();
            return match operator {
                "In" => values.contains(&class),
                "NotIn" => !values.contains(&class),
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                _ => false,
            };
        }
        // Scopes r8s cannot judge (CrossNamespacePodAffinity, VolumeAttributesClass) match nothing.
        _ => return false,
    };
    match operator {
        "Exists" | "In" => inside,
        "DoesNotExist" | "NotIn" => !inside,
        _ => false,
    }
}

/// No container asks for or is limited in CPU or memory.
fn best_effort(spec: &Value) -> bool {
    containers(spec).all(|c| {
        ["requests", "limits"].iter().all(|kind| {
            ["cpu", "memory"]
                .iter()
                .all(|r| c["resources"][kind][r].is_null())
        })
    })
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(move |list| spec[list].as_array().into_iter().flatten())
}

/// A pod that finished no longer holds its quota.
fn terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// What one object charges: its count, and for pods, services and claims what they ask for.
pub fn usage(group: &str, plural: &str, object: &Value) -> ResourceList {
    let one = Quantity::from_units(1);
    let mut usage = ResourceList::new();
    if group.is_empty() && plural == "pods" && terminal(object) {
        return usage;
    }
    usage.insert(count_name(group, plural), one);
    if !group.is_empty() {
        return usage;
    }
    match plural {
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            usage.insert(plural.to_owned(), one);
        }
        "pods" => {
            usage.insert("pods".into(), one);
            let spec = &object["spec"];
            for (name, q) in pod_resources(spec, "requests") {
                if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    usage.insert(name.clone(), q);
                }
                usage.insert(format!("requests.{name}"), q);
            }
            for (name, q) in pod_resources(spec, "limits") {
                if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    usage.insert(format!("limits.{name}"), q);
                }
            }
        }
        "services" => {
            usage.insert("services".into(), one);
            let type_ = object["spec"]["type"].as_str().unwrap_or("ClusterIP");
            let ports = object["spec"]["ports"].as_array().map_or(0, Vec::len) as i64;
            if type_ == "LoadBalancer" {
                usage.insert("services.loadbalancers".into(), one);
            }
            if matches!(type_, "LoadBalancer" | "NodePort") {
                usage.insert("services.nodeports".into(), Quantity::from_units(ports));
            }
        }
        "persistentvolumeclaims" => {
            usage.insert("persistentvolumeclaims".into(), one);
            let storage = Quantity::from_json(&object["spec"]["resources"]["requests"]["storage"])
                .unwrap_or_default();
            usage.insert("requests.storage".into(), storage);
            if let Some(class) = object["spec"]["storageClassName"].as_str() {
                let prefix = format!("{class}.storageclass.storage.k8s.io/");
                usage.insert(format!("{prefix}persistentvolumeclaims"), one);
                usage.insert(format!("{prefix}requests.storage"), storage);
            }
        }
        _ => {}
    }
    usage
}

/// A pod's effective requests or limits: its containers' sum, at least any one init
/// container's, plus the pod overhead, as upstream's `PodRequests`/`PodLimits`.
fn pod_resources(spec: &Value, kind: &str) -> ResourceList {
    let mut total = ResourceList::new();
    for container in spec["containers"].as_array().into_iter().flatten() {
        for (name, q) in resource_list(&container["resources"][kind]) {
            let sum = total.get(&name).copied().unwrap_or_default() + q;
            total.insert(name, sum);
        }
    }
    for container in spec["initContainers"].as_array().into_iter().flatten() {
        for (name, q) in resource_list(&container["resources"][kind]) {
            let largest = total.get(&name).copied().unwrap_or_default().max(q);
            total.insert(name, largest);
        }
    }
    for (name, q) in resource_list(&spec["overhead"]) {
        let sum = total.get(&name).copied().unwrap_or_default() + q;
        total.insert(name, sum);
    }
    total
}

/// Upstream's pod evaluator constraint: when a quota limits CPU or memory, every container
/// must say how much it asks for (or is limited to). The message lists what is missing where.
pub fn pod_constraints(required: &[String], pod: &Value) -> Result<(), String> {
    let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for name in required {
        let (kind, resource) = match name.as_str() {
            "cpu" | "requests.cpu" => ("requests", "cpu"),
            "memory" | "requests.memory" => ("requests", "memory"),
            "limits.cpu" => ("limits", "cpu"),
            "limits.memory" => ("limits", "memory"),
            _ => continue,
        };
        for container in containers(&pod["spec"]) {
            if container["resources"][kind][resource].is_null() {
                let who = container["name"].as_str().unwrap_or_default();
                missing.entry(name.as_str()).or_default().insert(who);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(name, who)| {
            let who: Vec<&str> = who.iter().copied().collect();
            format!("{name} for: {}", who.join(","))
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap()
    }

    #[test]
    fn a_pod_charges_its_count_and_summed_requests_and_limits() {
        let pod = json!({ "spec": {
            "containers": [
                { "name": "a", "resources": { "requests": { "cpu": "250m", "memory": "64Mi" }, "limits": { "cpu": "500m" } } },
                { "name": "b", "resources": { "requests": { "cpu": "250m" } } },
            ],
            "initContainers": [{ "name": "i", "resources": { "requests": { "cpu": "2" } } }],
        }});
        let usage = usage("", "pods", &pod);
        assert_eq!(usage["pods"], q("1"));
        assert_eq!(usage["count/pods"], q("1"));
        assert_eq!(
            usage["requests.cpu"],
            q("2"),
            "an init container alone asks more"
        );
        assert_eq!(usage["cpu"], q("2"));
        assert_eq!(usage["requests.memory"], q("64Mi"));
        assert_eq!(usage["limits.cpu"], q("500m"));
    }

    #[test]
    fn a_finished_pod_charges_nothing() {
        let pod = json!({ "spec": {}, "status": { "phase": "Succeeded" } });
        assert!(usage("", "pods", &pod).is_empty());
    }

    #[test]
    fn services_count_load_balancers_and_node_ports() {
        let service = json!({ "spec": { "type": "LoadBalancer", "ports": [{}, {}] } });
        let usage = usage("", "services", &service);
        assert_eq!(usage["services.loadbalancers"], q("1"));
        assert_eq!(usage["services.nodeports"], q("2"));
    }

    #[test]
    fn any_resource_is_counted_by_its_group_qualified_name() {
        let usage = usage("apps", "deployments", &json!({}));
        assert_eq!(usage["count/deployments.apps"], q("1"));
        assert!(covers("apps", "deployments", "count/deployments.apps"));
        assert!(!covers("apps", "deployments", "pods"));
    }

    #[test]
    fn scoped_quotas_match_only_pods_in_scope() {
        let spec = json!({ "hard": { "pods": "1" }, "scopes": ["BestEffort"] });
        let best_effort = json!({ "spec": { "containers": [{ "name": "a" }] } });
        let burstable = json!({ "spec": { "containers": [{ "name": "a", "resources": { "requests": { "cpu": "1" } } }] } });
        assert!(matches(&spec, "", "pods", &best_effort));
        assert!(!matches(&spec, "", "pods", &burstable));
        let counts_configmaps = json!({ "hard": { "pods": "1" } });
        assert!(!matches(&counts_configmaps, "", "configmaps", &json!({})));
    }

    #[test]
    fn cpu_quotas_require_every_container_to_ask() {
        let pod = json!({ "spec": { "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "1" } } },
            { "name": "b" },
        ]}});
        let required = vec!["requests.cpu".to_owned(), "limits.memory".to_owned()];
        assert_eq!(
            pod_constraints(&required, &pod),
            Err("must specify limits.memory for: a,b; requests.cpu for: b".into())
        );
        assert_eq!(pod_constraints(&["pods".to_owned()], &pod), Ok(()));
    }
}
