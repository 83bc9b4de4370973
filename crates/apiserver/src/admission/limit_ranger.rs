//! The LimitRanger plugin: a new pod's containers get the namespace's LimitRange defaults
//! (`default` limits, `defaultRequest` requests) where they say nothing, and a pod or claim
//! outside a range's `min`, `max` or `maxLimitRequestRatio` is refused with upstream's message.

use std::collections::BTreeMap;

use r8s_api::quantity::Quantity;
use r8s_api::quota::{ResourceList, resource_list};
use serde_json::{Value, json};

use super::{Attributes, Operation, cached};
use crate::registry::Registry;
use crate::status::ApiError;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Pods are checked only at create: their containers' resources do not change afterwards.
fn applies(attributes: &Attributes<'_>) -> bool {
    attributes.operation == Operation::Create
        && (attributes.is("", "pods") || attributes.is("", "persistentvolumeclaims"))
}

async fn items(registry: &Registry, attributes: &Attributes<'_>) -> Result<Vec<Value>, ApiError> {
    let ranges = cached(registry, "", "limitranges", attributes.namespace).await?;
    Ok(ranges
        .iter()
        .flat_map(|r| r["spec"]["limits"].as_array().cloned().unwrap_or_default())
        .map(defaulted)
        .collect())
}

pub async fn admit(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &mut Value,
) -> Result<(), ApiError> {
    if !applies(attributes) || !attributes.is("", "pods") {
        return Ok(());
    }
    for item in items(registry, attributes).await? {
        if item["type"] == "Container" {
            set_defaults(object, &item);
        }
    }
    Ok(())
}

pub async fn validate(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &Value,
) -> Result<(), ApiError> {
    if !applies(attributes) {
        return Ok(());
    }
    let mut problems = Vec::new();
    for item in items(registry, attributes).await? {
        problems.extend(check(object, &item, attributes.resource.plural));
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(attributes.forbidden(&problems[0])),
        _ => Err(attributes.forbidden(format!("[{}]", problems.join(", ")))),
    }
}

/// Upstream's LimitRange item defaults: `default` from `max`, `defaultRequest` from `default`,
/// then from `min`.
pub fn defaulted(mut item: Value) -> Value {
    if item["type"] != "Container" {
        return item;
    }
    for (from, to) in [
        ("max", "default"),
        ("default", "defaultRequest"),
        ("min", "defaultRequest"),
    ] {
        let source = item[from].as_object().cloned().unwrap_or_default();
        if !item[to].is_object() {
            item[to] = json!({});
        }
        for (name, q) in source {
            if item[to].get(&name).is_none() {
                item[to][&name] = q;
            }
        }
    }
    item
}

/// Fills in what containers leave out, and records it in upstream's annotation.
pub fn set_defaults(pod: &mut Value, item: &Value) {
    requests_from_limits(pod);
    let mut notes = Vec::new();
    for (list, label) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for container in containers {
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            let mut set = BTreeMap::new();
            for (kind, from) in [("requests", "defaultRequest"), ("limits", "default")] {
                let mut added: Vec<String> = Vec::new();
                for (resource, q) in item[from].as_object().into_iter().flatten() {
                    if !container["resources"].is_object() {
                        container["resources"] = json!({});
                    }
                    if !container["resources"][kind].is_object() {
                        container["resources"][kind] = json!({});
                    }
                    if container["resources"][kind].get(resource).is_none() {
                        container["resources"][kind][resource] = q.clone();
                        added.push(resource.clone());
                    }
                }
                added.sort();
                set.insert(kind, added);
            }
            if !set["requests"].is_empty() {
                notes.push(format!(
                    "{} request for {label} {name}",
                    set["requests"].join(", ")
                ));
            }
            if !set["limits"].is_empty() {
                notes.push(format!(
                    "{} limit for {label} {name}",
                    set["limits"].join(", ")
                ));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    if !pod["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = json!({});
    }
    pod["metadata"]["annotations"][ANNOTATION] =
        json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
}

/// Upstream defaults a request to its limit when it decodes the pod, before admission runs;
/// here per-kind defaulting runs after, so do it first or a default request would win instead.
fn requests_from_limits(pod: &mut Value) {
    for list in ["containers", "initContainers"] {
        for container in pod["spec"][list].as_array_mut().into_iter().flatten() {
            let limits = container["resources"]["limits"].as_object().cloned();
            for (resource, q) in limits.into_iter().flatten() {
                if container["resources"]["requests"].get(&resource).is_none() {
                    if !container["resources"]["requests"].is_object() {
                        container["resources"]["requests"] = json!({});
                    }
                    container["resources"]["requests"][&resource] = q;
                }
            }
        }
    }
}

/// What of `object` falls outside one LimitRange item, in upstream's words.
pub fn check(object: &Value, item: &Value, plural: &str) -> Vec<String> {
    let type_ = item["type"].as_str().unwrap_or_default();
    let subjects: Vec<(ResourceList, ResourceList)> = match (plural, type_) {
        ("pods", "Container") => ["initContainers", "containers"]
            .iter()
            .flat_map(|list| object["spec"][list].as_array().cloned().unwrap_or_default())
            .map(|c| {
                let resources = &c["resources"];
                (
                    resource_list(&resources["requests"]),
                    resource_list(&resources["limits"]),
                )
            })
            .collect(),
        ("pods", "Pod") => vec![(pod_total(object, "requests"), pod_total(object, "limits"))],
        // A claim's limits are not the user's to give: its request is held to the range.
        ("persistentvolumeclaims", "PersistentVolumeClaim") => {
            let requests = resource_list(&object["spec"]["resources"]["requests"]);
            vec![(requests, ResourceList::new())]
        }
        _ => return Vec::new(),
    };
    let mut problems = Vec::new();
    for (requests, limits) in &subjects {
        for (resource, enforced) in resource_list(&item["min"]) {
            problems.extend(min_problem(type_, &resource, enforced, requests, limits));
        }
        for (resource, enforced) in resource_list(&item["max"]) {
            if type_ == "PersistentVolumeClaim" {
                match requests.get(&resource) {
                    None => problems.push(format!(
                        "maximum {resource} usage per {type_} is {enforced}.  No request is specified"
                    )),
                    Some(request) if request.millis > enforced.millis => problems.push(format!(
                        "maximum {resource} usage per {type_} is {enforced}, but request is {request}"
                    )),
                    Some(_) => {}
                }
                continue;
            }
            problems.extend(max_problem(type_, &resource, enforced, requests, limits));
        }
        for (resource, enforced) in resource_list(&item["maxLimitRequestRatio"]) {
            problems.extend(ratio_problem(type_, &resource, enforced, requests, limits));
        }
    }
    problems
}

fn min_problem(
    type_: &str,
    resource: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(request) = requests.get(resource) else {
        return Some(format!(
            "minimum {resource} usage per {type_} is {enforced}.  No request is specified"
        ));
    };
    if request.millis < enforced.millis {
        return Some(format!(
            "minimum {resource} usage per {type_} is {enforced}, but request is {request}"
        ));
    }
    match limits.get(resource) {
        Some(limit) if limit.millis < enforced.millis => Some(format!(
            "minimum {resource} usage per {type_} is {enforced}, but limit is {limit}"
        )),
        _ => None,
    }
}

fn max_problem(
    type_: &str,
    resource: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(limit) = limits.get(resource) else {
        return Some(format!(
            "maximum {resource} usage per {type_} is {enforced}.  No limit is specified"
        ));
    };
    if limit.millis > enforced.millis {
        return Some(format!(
            "maximum {resource} usage per {type_} is {enforced}, but limit is {limit}"
        ));
    }
    match requests.get(resource) {
        Some(request) if request.millis > enforced.millis => Some(format!(
            "maximum {resource} usage per {type_} is {enforced}, but request is {request}"
        )),
        _ => None,
    }
}

fn ratio_problem(
    type_: &str,
    resource: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let request = requests.get(resource).filter(|q| q.millis != 0);
    let limit = limits.get(resource).filter(|q| q.millis != 0);
    let Some(request) = request else {
        return Some(format!(
            "{resource} max limit to request ratio per {type_} is {enforced}, but no request is specified or request is 0"
        ));
    };
    let Some(limit) = limit else {
        return Some(format!(
            "{resource} max limit to request ratio per {type_} is {enforced}, but no limit is specified or limit is 0"
        ));
    };
    let ratio = limit.millis as f64 / request.millis as f64;
    (ratio * 1000.0 > enforced.millis as f64).then(|| {
        format!(
            "{resource} max limit to request ratio per {type_} is {enforced}, but provided ratio is {ratio:.6}"
        )
    })
}

/// A pod's requests or limits as a whole, for `Pod` items.
fn pod_total(pod: &Value, kind: &str) -> ResourceList {
    let mut total = ResourceList::new();
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        for (name, q) in resource_list(&container["resources"][kind]) {
            let sum = total.get(&name).copied().unwrap_or_default() + q;
            total.insert(name, sum);
        }
    }
    for container in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (name, q) in resource_list(&container["resources"][kind]) {
            let largest = total.get(&name).copied().unwrap_or_default().max(q);
            total.insert(name, largest);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container_item(spec: Value) -> Value {
        let mut item = spec;
        item["type"] = json!("Container");
        defaulted(item)
    }

    #[test]
    fn defaults_fill_only_what_containers_leave_out_and_are_annotated() {
        let item = container_item(
            json!({ "default": { "cpu": "500m", "memory": "256Mi" }, "defaultRequest": { "cpu": "100m" } }),
        );
        let mut pod = json!({ "metadata": {}, "spec": { "containers": [
            { "name": "web", "resources": { "limits": { "memory": "1Gi" } } },
        ]}});
        set_defaults(&mut pod, &item);
        let resources = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(
            resources["limits"],
            json!({ "cpu": "500m", "memory": "1Gi" })
        );
        // The container's own memory limit is its request, before any default.
        assert_eq!(
            resources["requests"],
            json!({ "cpu": "100m", "memory": "1Gi" })
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu request for container web; cpu limit for container web"
        );
    }

    #[test]
    fn a_request_defaults_to_the_containers_own_limit_before_the_ranges_default() {
        let item = container_item(json!({ "defaultRequest": { "cpu": "100m" } }));
        let mut pod = json!({ "metadata": {}, "spec": { "containers": [
            { "name": "web", "resources": { "limits": { "cpu": "2" } } },
        ]}});
        set_defaults(&mut pod, &item);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "2"
        );
    }

    #[test]
    fn max_becomes_the_default_limit() {
        let item = container_item(json!({ "max": { "cpu": "1" } }));
        assert_eq!(item["default"]["cpu"], "1");
        assert_eq!(item["defaultRequest"]["cpu"], "1");
    }

    #[test]
    fn a_container_above_max_is_refused_with_upstreams_message() {
        let item = container_item(json!({ "max": { "cpu": "1" } }));
        let pod = json!({ "spec": { "containers": [
            { "name": "a", "resources": { "limits": { "cpu": "2" }, "requests": { "cpu": "2" } } },
        ]}});
        assert_eq!(
            check(&pod, &item, "pods"),
            vec!["maximum cpu usage per Container is 1, but limit is 2".to_owned(),]
        );
    }

    #[test]
    fn a_container_below_min_or_without_a_request_is_refused() {
        let item = json!({ "type": "Container", "min": { "memory": "64Mi" } });
        let small = json!({ "spec": { "containers": [
            { "name": "a", "resources": { "requests": { "memory": "32Mi" } } },
        ]}});
        assert_eq!(
            check(&small, &item, "pods"),
            vec!["minimum memory usage per Container is 64Mi, but request is 32Mi".to_owned()]
        );
        let silent = json!({ "spec": { "containers": [{ "name": "a" }] } });
        assert_eq!(
            check(&silent, &item, "pods"),
            vec!["minimum memory usage per Container is 64Mi.  No request is specified".to_owned()]
        );
    }

    #[test]
    fn a_limit_too_far_above_the_request_is_refused() {
        let item = json!({ "type": "Container", "maxLimitRequestRatio": { "cpu": "2" } });
        let pod = json!({ "spec": { "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "100m" }, "limits": { "cpu": "300m" } } },
        ]}});
        assert_eq!(
            check(&pod, &item, "pods"),
            vec![
                "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn claims_are_held_to_their_storage_range() {
        let item = json!({ "type": "PersistentVolumeClaim", "max": { "storage": "2Gi" }, "min": { "storage": "1Gi" } });
        let claim = json!({ "spec": { "resources": { "requests": { "storage": "5Gi" } } } });
        assert_eq!(
            check(&claim, &item, "persistentvolumeclaims"),
            vec![
                "maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"
                    .to_owned()
            ]
        );
        let pod = json!({ "spec": { "containers": [] } });
        assert!(check(&pod, &item, "pods").is_empty());
    }
}
