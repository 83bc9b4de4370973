//! Unknown fields: a built-in object is decoded into its schema, so fields the schema does not
//! have are never stored. `fieldValidation=Strict` refuses them (400), `Warn` (the default)
//! answers a `Warning` header per field, `Ignore` drops them silently.

use serde_json::Value;

use crate::openapi::definitions;
use crate::schema::Schema;
use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Strict,
    Warn,
    Ignore,
}

impl Validation {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation {other:?} is invalid: valid values are Ignore, Warn and Strict"
            ))),
        }
    }
}

/// Removes the fields of `object` its kind's schema does not know, and answers them as
/// upstream names them (`spec.template.spec.containers[0].imagee`). Kinds without a schema
/// (custom resources) are left alone.
pub fn prune_unknown(group: &str, version: &str, kind: &str, object: &mut Value) -> Vec<String> {
    let Some(name) = definitions().of_kind(group, version, kind) else {
        return Vec::new();
    };
    let Some(schema) = definitions().schema(name) else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    walk(schema, object, String::new(), &mut unknown, 0);
    unknown
}

fn resolve(node: &'static Value) -> Option<&'static Value> {
    Schema::resolve(node).node()
}

fn walk(
    schema: &'static Value,
    value: &mut Value,
    path: String,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    // The decoder refuses deeper documents long before this; it only bounds the recursion.
    if depth > 64 {
        return;
    }
    let Some(schema) = resolve(schema) else {
        return;
    };
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                let mut doomed = Vec::new();
                for (key, child) in map.iter_mut() {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match properties.get(key) {
                        Some(child_schema) => {
                            walk(child_schema, child, child_path, unknown, depth + 1)
                        }
                        // apiVersion and kind are part of every object's envelope.
                        None if path.is_empty() && (key == "apiVersion" || key == "kind") => {}
                        None => {
                            unknown.push(child_path);
                            doomed.push(key.clone());
                        }
                    }
                }
                for key in doomed {
                    map.remove(&key);
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (key, child) in map.iter_mut() {
                    walk(
                        additional,
                        child,
                        format!("{path}.{key}"),
                        unknown,
                        depth + 1,
                    );
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(
                        item_schema,
                        item,
                        format!("{path}[{i}]"),
                        unknown,
                        depth + 1,
                    );
                }
            }
        }
        _ => {}
    }
}

/// The error a Strict request gets for unknown fields.
pub fn strict_error(kind: &str, api_version: &str, unknown: &[String]) -> ApiError {
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    ApiError::bad_request(format!(
        "{kind} in version {:?} cannot be handled as a {kind}: strict decoding error: {}",
        api_version.rsplit('/').next().unwrap_or(api_version),
        fields.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_with_their_paths_and_removed() {
        let mut deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "d", "labels": { "any": "label" } },
            "spec": { "replicas": 1, "bogus": true, "template": { "spec": { "containers": [{ "name": "c", "imagee": "x" }] } } },
        });
        let unknown = prune_unknown("apps", "v1", "Deployment", &mut deployment);
        assert_eq!(
            unknown,
            ["spec.bogus", "spec.template.spec.containers[0].imagee"]
        );
        assert!(deployment["spec"].get("bogus").is_none());
        assert_eq!(deployment["metadata"]["labels"]["any"], "label");
    }

    #[test]
    fn known_objects_pass_untouched() {
        let mut cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "k": "v" } });
        let before = cm.clone();
        assert!(prune_unknown("", "v1", "ConfigMap", &mut cm).is_empty());
        assert_eq!(cm, before);
    }
}
