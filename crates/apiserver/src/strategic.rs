//! Strategic merge patch, driven by the 1.37 schemas' `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key`: lists of containers, ports, volumes… merge element by
//! element on their key, other lists are replaced, maps merge, `null` deletes, and the
//! directives kubectl sends (`$patch`, `$retainKeys`, `$setElementOrder/…`,
//! `$deleteFromPrimitiveList/…`) do what upstream does.

use serde_json::{Map, Value};

use crate::schema::Schema;
use crate::status::ApiError;

const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// How a list field merges.
struct ListStrategy {
    merge: bool,
    key: Option<&'static str>,
}

fn list_strategy(field: Option<&'static Value>) -> ListStrategy {
    let strategy = field
        .and_then(|f| f["x-kubernetes-patch-strategy"].as_str())
        .unwrap_or("");
    ListStrategy {
        merge: strategy.split(',').any(|s| s == "merge"),
        key: field.and_then(|f| f["x-kubernetes-patch-merge-key"].as_str()),
    }
}

/// Applies `patch` to `original`, an object of the kind the definition `definition` describes.
pub fn apply(original: &Value, patch: &Value, definition: &str) -> Result<Value, ApiError> {
    let schema = Schema::definition(definition);
    if schema.node().is_none() {
        return Err(ApiError::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("strategic merge patch is not supported for {definition}"),
        ));
    }
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "a strategic merge patch must be a JSON object",
        ));
    };
    let mut result = original.clone();
    let Value::Object(target) = &mut result else {
        return Err(ApiError::internal("the stored object is not a JSON object"));
    };
    merge_map(target, patch, schema)?;
    Ok(result)
}

fn invalid(message: String) -> ApiError {
    ApiError::new(http::StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
}

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Schema,
) -> Result<(), ApiError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some(other) => return Err(invalid(format!("unknown patch type {other:?} in $patch"))),
        None => {}
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let (field_schema, field) = schema.field(key);
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(sub_patch) => {
                if sub_patch.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(key);
                    continue;
                }
                match target.get_mut(key) {
                    Some(Value::Object(existing)) => merge_map(existing, sub_patch, field_schema)?,
                    _ => {
                        let mut fresh = Map::new();
                        merge_map(&mut fresh, sub_patch, field_schema)?;
                        target.insert(key.clone(), Value::Object(fresh));
                    }
                }
            }
            Value::Array(items) => {
                let strategy = list_strategy(field);
                let merged = match target.remove(key) {
                    Some(Value::Array(existing)) if strategy.merge => {
                        merge_list(existing, items, &strategy, field_schema.items())?
                    }
                    _ => replace_list(items),
                };
                target.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let doomed = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|v| !doomed.contains(v));
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let (_, field_meta) = schema.field(field);
            let merge_key = list_strategy(field_meta).key;
            if let (Some(Value::Array(list)), Some(order)) =
                (target.get_mut(field), value.as_array())
            {
                reorder(list, order, merge_key);
            }
        }
    }
    if let Some(retained) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retained.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn replace_list(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .filter(|item| item.get("$patch").is_none())
        .map(|item| match item {
            Value::Object(map) => Value::Object(strip_directives(map)),
            other => other.clone(),
        })
        .collect()
}

fn merge_list(
    mut existing: Vec<Value>,
    items: &[Value],
    strategy: &ListStrategy,
    item_schema: Schema,
) -> Result<Vec<Value>, ApiError> {
    if items
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(replace_list(items));
    }
    let Some(key) = strategy.key else {
        // A list of scalars with the merge strategy is a set: add what is missing.
        for item in items {
            if !existing.contains(item) {
                existing.push(item.clone());
            }
        }
        return Ok(existing);
    };
    for item in items {
        let Value::Object(patch) = item else {
            return Err(invalid(format!(
                "the list merging on {key:?} holds a non-object element"
            )));
        };
        let id = patch.get(key);
        let position = id.and_then(|id| existing.iter().position(|e| e.get(key) == Some(id)));
        if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(at) = position {
                existing.remove(at);
            }
            continue;
        }
        match position {
            Some(at) => {
                let Value::Object(current) = &mut existing[at] else {
                    continue;
                };
                merge_map(current, patch, item_schema)?;
            }
            None => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, patch, item_schema)?;
                existing.push(Value::Object(fresh));
            }
        }
    }
    Ok(existing)
}

/// Orders a list as `$setElementOrder` says; elements it does not name keep their place after.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let identity = |v: &Value| match key {
        Some(key) => v.get(key).cloned().unwrap_or(Value::Null),
        None => v.clone(),
    };
    let mut ordered = Vec::with_capacity(list.len());
    let mut rest = std::mem::take(list);
    for wanted in order {
        let wanted = identity(wanted);
        if let Some(at) = rest.iter().position(|v| identity(v) == wanted) {
            ordered.push(rest.remove(at));
        }
    }
    ordered.extend(rest);
    *list = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: &str = "io.k8s.api.core.v1.Pod";

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "labels": { "a": "1", "b": "2" } },
            "spec": {
                "containers": [
                    { "name": "web", "image": "nginx:1", "ports": [{ "containerPort": 80 }], "args": ["x"] },
                    { "name": "side", "image": "busybox" },
                ],
                "tolerations": [{ "key": "k1" }],
            },
        })
    }

    #[test]
    fn containers_merge_by_name() {
        let patch = json!({ "spec": { "containers": [{ "name": "web", "image": "nginx:2" }] } });
        let out = apply(&pod(), &patch, POD).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:2");
        assert_eq!(
            out["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        assert_eq!(out["spec"]["containers"][1]["name"], "side");
    }

    #[test]
    fn lists_without_a_strategy_are_replaced() {
        let patch = json!({ "spec": { "containers": [{ "name": "web", "args": ["y"] }], "tolerations": [{ "key": "k2" }] } });
        let out = apply(&pod(), &patch, POD).unwrap();
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["y"]));
        assert_eq!(out["spec"]["tolerations"], json!([{ "key": "k2" }]));
    }

    #[test]
    fn null_deletes_and_maps_merge() {
        let patch = json!({ "metadata": { "labels": { "a": null, "c": "3" } } });
        let out = apply(&pod(), &patch, POD).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({ "b": "2", "c": "3" }));
    }

    #[test]
    fn patch_delete_directive_removes_a_keyed_element() {
        let patch = json!({ "spec": { "containers": [{ "name": "side", "$patch": "delete" }] } });
        let out = apply(&pod(), &patch, POD).unwrap();
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn set_element_order_reorders_and_new_elements_append() {
        let patch = json!({ "spec": {
            "$setElementOrder/containers": [{ "name": "side" }, { "name": "web" }, { "name": "new" }],
            "containers": [{ "name": "new", "image": "x" }],
        } });
        let out = apply(&pod(), &patch, POD).unwrap();
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["side", "web", "new"]);
    }

    #[test]
    fn replace_directive_replaces_a_map() {
        let patch = json!({ "metadata": { "labels": { "$patch": "replace", "z": "9" } } });
        let out = apply(&pod(), &patch, POD).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({ "z": "9" }));
    }

    #[test]
    fn primitive_merge_lists_union_and_delete_from() {
        let obj = json!({ "metadata": { "name": "n", "finalizers": ["a", "b"] } });
        let patch = json!({ "metadata": { "finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"] } });
        let out = apply(&obj, &patch, "io.k8s.api.core.v1.ConfigMap").unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }
}
