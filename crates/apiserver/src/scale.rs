//! The `scale` subresource of Deployments, ReplicaSets, StatefulSets and
//! ReplicationControllers: an `autoscaling/v1` Scale view of `spec.replicas`, the observed
//! `status.replicas` and the label selector, as `kubectl scale` and autoscalers use it.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::objects::Query;
use crate::registry::{Registry, Tracking};
use crate::router::ResourcePath;
use crate::status::ApiError;
use crate::strategic;

const SCALE_DEFINITION: &str = "io.k8s.api.autoscaling.v1.Scale";

/// A label selector as its string form (`app=web,tier in (a,b)`).
fn selector_string(selector: &Value) -> String {
    let mut terms = Vec::new();
    // ReplicationControllers have a plain map; the others a LabelSelector.
    let labels = match selector.get("matchLabels") {
        Some(labels) => labels,
        None if selector.get("matchExpressions").is_none() => selector,
        None => &Value::Null,
    };
    if let Some(labels) = labels.as_object() {
        let mut pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        pairs.sort();
        terms.extend(pairs);
    }
    for expression in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match expression["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        });
    }
    terms.join(",")
}

/// The Scale view of an object.
pub fn of(object: &Value) -> Value {
    let meta = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(&object["spec"]["selector"]),
        },
    })
}

fn replicas_of(scale: &Value) -> Result<i64, ApiError> {
    match scale["spec"]["replicas"].as_i64() {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "Scale.autoscaling \"\" is invalid: spec.replicas: Invalid value: {}: must be greater than or equal to 0",
                scale["spec"]["replicas"]
            ),
        )),
    }
}

pub async fn get(registry: &Registry, path: &ResourcePath, name: &str) -> Result<Value, ApiError> {
    Ok(view(path, &registry.get(path, name).await?))
}

/// The Scale of a built-in object, or of a custom resource along its CRD's paths.
fn view(path: &ResourcePath, object: &Value) -> Value {
    crate::crd::scale::view(path.resource, object).unwrap_or_else(|| of(object))
}

fn set_replicas(path: &ResourcePath, object: &mut Value, replicas: i64) {
    if !crate::crd::scale::set_replicas(path.resource, object, replicas) {
        object["spec"]["replicas"] = json!(replicas);
    }
}

/// PUT a Scale: sets `spec.replicas`, honouring the Scale's resourceVersion as a precondition.
pub async fn update(
    registry: &Registry,
    path: &ResourcePath,
    name: &str,
    scale: Value,
    query: &Query,
) -> Result<Value, ApiError> {
    let replicas = replicas_of(&scale)?;
    let expected = match scale["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() => Some(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
        _ => None,
    };
    let main = ResourcePath {
        subresource: None,
        ..path.clone()
    };
    let updated = registry
        .modify_tracked(
            &main,
            name,
            query,
            expected,
            Tracking::Update(Some("scale")),
            |current| {
                let mut next = current.clone();
                set_replicas(path, &mut next, replicas);
                Ok(next)
            },
        )
        .await?;
    Ok(view(path, &updated))
}

/// PATCH a Scale (merge, JSON or strategic), then set `spec.replicas` from the result.
pub async fn patch(
    registry: &Registry,
    path: &ResourcePath,
    name: &str,
    content_type: &str,
    patch: Bytes,
    query: &Query,
) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(&patch)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let main = ResourcePath {
        subresource: None,
        ..path.clone()
    };
    let updated = registry
        .modify_tracked(
            &main,
            name,
            query,
            None,
            Tracking::Update(Some("scale")),
            |current| {
                let mut scale = view(path, current);
                match media.as_str() {
                    "application/merge-patch+json" => json_patch::merge(&mut scale, &patch),
                    "application/strategic-merge-patch+json" => {
                        scale = strategic::apply(&scale, &patch, SCALE_DEFINITION)?
                    }
                    "application/json-patch+json" => {
                        let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                            .map_err(|e| {
                                ApiError::bad_request(format!("invalid JSON patch: {e}"))
                            })?;
                        json_patch::patch(&mut scale, &ops).map_err(|e| {
                            ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "Invalid",
                                e.to_string(),
                            )
                        })?;
                    }
                    other => return Err(ApiError::unsupported_media_type(other)),
                }
                let mut next = current.clone();
                set_replicas(path, &mut next, replicas_of(&scale)?);
                Ok(next)
            },
        )
        .await?;
    Ok(view(path, &updated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_print_as_upstream_strings() {
        let selector = json!({
            "matchLabels": { "app": "web", "tier": "front" },
            "matchExpressions": [
                { "key": "env", "operator": "In", "values": ["a", "b"] },
                { "key": "gone", "operator": "DoesNotExist" },
            ],
        });
        assert_eq!(
            selector_string(&selector),
            "app=web,tier=front,env in (a,b),!gone"
        );
        assert_eq!(selector_string(&json!({ "app": "rc" })), "app=rc");
    }

    #[test]
    fn scale_reflects_desired_and_observed_replicas() {
        let deployment = json!({
            "metadata": { "name": "web", "namespace": "default", "resourceVersion": "7" },
            "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } } },
            "status": { "replicas": 2 },
        });
        let scale = of(&deployment);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(
            scale["status"],
            json!({ "replicas": 2, "selector": "app=web" })
        );
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
    }
}
