//! CustomResourceDefinitions (apiextensions.k8s.io/v1), as upstream's CRD strategy: the
//! status is the server's (storedVersions kept and grown), the definition is validated (name
//! `<plural>.<group>`, one storage version, a structural schema per version), and a delete
//! first waits for the instances to go (the `customresourcecleanup` finalizer).

use serde_json::{Value, json};

use super::{Deletion, FieldError, Kind};

/// Held by a CRD being deleted until its custom resources are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub struct CustomResourceDefinitions;

fn storage_version(object: &Value) -> Option<&str> {
    object["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"] == true)?["name"]
        .as_str()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": now_rfc3339(),
    })
}

impl Kind for CustomResourceDefinitions {
    fn prepare_for_create(&self, object: &mut Value) {
        let stored: Vec<&str> = storage_version(object).into_iter().collect();
        object["status"] = json!({
            "acceptedNames": { "plural": "", "kind": "" },
            "conditions": [],
            "storedVersions": stored,
        });
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        new["status"] = old["status"].clone();
        if let Some(storage) = storage_version(new).map(str::to_owned) {
            let stored = &mut new["status"]["storedVersions"];
            if !stored.is_array() {
                *stored = json!([]);
            }
            if let Some(list) = stored.as_array_mut()
                && !list.iter().any(|v| v == storage.as_str())
            {
                list.push(json!(storage));
            }
        }
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = &object["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let plural = spec["names"]["plural"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if group.is_empty() {
            errors.push(("spec.group".into(), "Required value".into()));
        } else if !group.contains('.') {
            errors.push((
                "spec.group".into(),
                format!("Invalid value: {group:?}: should be a domain with at least one dot"),
            ));
        }
        for (field, value) in [
            ("plural", plural),
            ("kind", spec["names"]["kind"].as_str().unwrap_or_default()),
        ] {
            if value.is_empty() {
                errors.push((format!("spec.names.{field}"), "Required value".into()));
            }
        }
        if !plural.is_empty() && !is_dns_label(plural) {
            errors.push((
                "spec.names.plural".into(),
                format!("Invalid value: {plural:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
            ));
        }
        if name != format!("{plural}.{group}") {
            errors.push((
                "metadata.name".into(),
                format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
            ));
        }
        match spec["scope"].as_str() {
            Some("Namespaced" | "Cluster") => {}
            other => errors.push((
                "spec.scope".into(),
                format!(
                    "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                    other.unwrap_or_default()
                ),
            )),
        }
        if spec["conversion"]["strategy"] == "Webhook" {
            errors.push((
                "spec.conversion.strategy".into(),
                "Unsupported value: \"Webhook\": conversion webhooks are not built in r8s; use \"None\"".into(),
            ));
        }
        let versions = spec["versions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if versions.is_empty() {
            errors.push((
                "spec.versions".into(),
                "Invalid value: null: must have exactly one version marked as storage version"
                    .into(),
            ));
        } else if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
            let names: Vec<&str> = versions.iter().filter_map(|v| v["name"].as_str()).collect();
            errors.push((
                "spec.versions".into(),
                format!("Invalid value: {names:?}: must have exactly one version marked as storage version"),
            ));
        }
        for (i, version) in versions.iter().enumerate() {
            let at = format!("spec.versions[{i}]");
            if version["name"].as_str().is_none_or(str::is_empty) {
                errors.push((format!("{at}.name"), "Required value".into()));
            }
            let schema = &version["schema"]["openAPIV3Schema"];
            let schema_at = format!("{at}.schema.openAPIV3Schema");
            if !schema.is_object() {
                errors.push((schema_at, "Required value: schemas are required".into()));
                continue;
            }
            if schema["type"] != "object" {
                errors.push((
                    format!("{schema_at}.type"),
                    format!(
                        "Invalid value: {}: must be object at the root",
                        schema["type"]
                            .as_str()
                            .map_or("\"\"".into(), |t| format!("{t:?}"))
                    ),
                ));
            }
            structural(schema, &schema_at, &mut errors, 0);
        }
        errors
    }

    fn on_delete(&self, object: &mut Value) -> Deletion {
        // The first DELETE marks the CRD Terminating and holds it until its instances are gone.
        if object["metadata"]["deletionTimestamp"].is_null() {
            let finalizers = &mut object["metadata"]["finalizers"];
            if !finalizers.is_array() {
                *finalizers = json!([]);
            }
            if let Some(list) = finalizers.as_array_mut()
                && !list.iter().any(|f| f == CLEANUP_FINALIZER)
            {
                list.push(json!(CLEANUP_FINALIZER));
            }
            let terminating = condition(
                "Terminating",
                "True",
                "InstanceDeletionPending",
                "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
            );
            let conditions = &mut object["status"]["conditions"];
            if !conditions.is_array() {
                *conditions = json!([]);
            }
            if let Some(list) = conditions.as_array_mut() {
                list.retain(|c| c["type"] != "Terminating");
                list.push(terminating);
            }
        }
        Deletion::Now
    }
}

/// Now, as Kubernetes writes timestamps (seconds, UTC).
pub fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn is_dns_label(text: &str) -> bool {
    text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Upstream's structural-schema rules that matter for pruning and defaulting: every node has a
/// type (unless it preserves unknown fields or is int-or-string), int-or-string has none, and
/// a node has properties or additionalProperties, never both.
fn structural(schema: &Value, at: &str, errors: &mut Vec<FieldError>, depth: usize) {
    if depth > 64 {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    let typed = schema["type"].as_str().is_some_and(|t| !t.is_empty());
    if int_or_string && typed {
        errors.push((
            format!("{at}.type"),
            "Invalid value: \"\": must be empty if x-kubernetes-int-or-string is true".into(),
        ));
    }
    if !typed && !int_or_string && !preserve && depth > 0 {
        errors.push((
            format!("{at}.type"),
            "Required value: must not be empty for specified object fields".into(),
        ));
    }
    if let Some(t) = schema["type"].as_str()
        && !["object", "array", "string", "integer", "number", "boolean"].contains(&t)
    {
        errors.push((
            format!("{at}.type"),
            format!("Unsupported value: {t:?}: supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""),
        ));
    }
    if schema["x-kubernetes-embedded-resource"] == true && schema["type"] != "object" {
        errors.push((
            format!("{at}.type"),
            "Required value: must be object if x-kubernetes-embedded-resource is true".into(),
        ));
    }
    let properties = schema["properties"].as_object();
    if properties.is_some() && schema["additionalProperties"].is_object() {
        errors.push((
            format!("{at}.additionalProperties"),
            "Forbidden: additionalProperties and properties are mutual exclusive".into(),
        ));
    }
    if schema["type"] == "array" && !schema["items"].is_object() {
        errors.push((
            format!("{at}.items"),
            "Required value: must be specified".into(),
        ));
    }
    for (name, child) in properties.into_iter().flatten() {
        structural(
            child,
            &format!("{at}.properties[{name}]"),
            errors,
            depth + 1,
        );
    }
    if schema["additionalProperties"].is_object() {
        structural(
            &schema["additionalProperties"],
            &format!("{at}.additionalProperties"),
            errors,
            depth + 1,
        );
    }
    if schema["items"].is_object() {
        structural(&schema["items"], &format!("{at}.items"), errors, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": { "name": "widgets.example.com" },
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": { "plural": "widgets", "kind": "Widget" },
                "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": { "type": "object", "properties": {
                        "size": { "type": "string" },
                        "port": { "x-kubernetes-int-or-string": true },
                        "free": { "x-kubernetes-preserve-unknown-fields": true },
                    } } },
                } } }],
            },
        })
    }

    fn fields(object: &Value) -> Vec<String> {
        CustomResourceDefinitions
            .validate(object)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    #[test]
    fn a_structural_crd_is_valid() {
        assert!(
            fields(&crd()).is_empty(),
            "{:?}",
            CustomResourceDefinitions.validate(&crd())
        );
    }

    #[test]
    fn the_name_must_be_plural_dot_group() {
        let mut bad = crd();
        bad["metadata"]["name"] = json!("gadgets.example.com");
        assert_eq!(fields(&bad), ["metadata.name"]);
    }

    #[test]
    fn exactly_one_storage_version_is_required() {
        let mut bad = crd();
        bad["spec"]["versions"][0]["storage"] = json!(false);
        assert_eq!(fields(&bad), ["spec.versions"]);
    }

    #[test]
    fn schemas_must_be_structural() {
        let mut bad = crd();
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["size"] = json!({});
        assert_eq!(
            fields(&bad),
            ["spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type"]
        );
        let mut missing = crd();
        missing["spec"]["versions"][0]["schema"] = json!(null);
        assert_eq!(
            fields(&missing),
            ["spec.versions[0].schema.openAPIV3Schema"]
        );
    }

    #[test]
    fn updates_keep_status_and_record_new_storage_versions() {
        let mut old = crd();
        CustomResourceDefinitions.prepare_for_create(&mut old);
        assert_eq!(old["status"]["storedVersions"], json!(["v1"]));
        let mut new = crd();
        new["spec"]["versions"] = json!([
            { "name": "v1", "served": true, "storage": false },
            { "name": "v2", "served": true, "storage": true },
        ]);
        CustomResourceDefinitions.prepare_for_update(&mut new, &old);
        assert_eq!(new["status"]["storedVersions"], json!(["v1", "v2"]));
    }

    #[test]
    fn the_first_delete_holds_the_crd_for_cleanup() {
        let mut object = crd();
        assert_eq!(
            CustomResourceDefinitions.on_delete(&mut object),
            Deletion::Now
        );
        assert_eq!(object["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        assert_eq!(object["status"]["conditions"][0]["type"], "Terminating");
    }
}
