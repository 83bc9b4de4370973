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
        errors.extend(conversion_errors(&spec["conversion"]));
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

/// Upstream's checks of `spec.conversion`: a webhook exactly when the strategy is Webhook,
/// with somewhere to call and a review version the server speaks.
fn conversion_errors(conversion: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let webhook = &conversion["webhook"];
    match conversion["strategy"].as_str() {
        None | Some("None") => {
            if !webhook.is_null() {
                errors.push((
                    "spec.conversion.webhook".into(),
                    "Forbidden: should not be set when strategy is not set to Webhook".into(),
                ));
            }
        }
        Some("Webhook") => {
            if !webhook.is_object() {
                errors.push((
                    "spec.conversion.webhook".into(),
                    "Required value: required when strategy is set to Webhook".into(),
                ));
                return errors;
            }
            let config = &webhook["clientConfig"];
            if config["url"].is_null() == config["service"].is_null() {
                errors.push((
                    "spec.conversion.webhook.clientConfig".into(),
                    "Required value: exactly one of url or service is required".into(),
                ));
            }
            let versions: Vec<&str> = webhook["conversionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !versions.iter().any(|v| matches!(*v, "v1" | "v1beta1")) {
                errors.push((
                    "spec.conversion.webhook.conversionReviewVersions".into(),
                    format!(
                        "Invalid value: {versions:?}: must include at least one of v1, v1beta1"
                    ),
                ));
            }
        }
        Some(other) => errors.push((
            "spec.conversion.strategy".into(),
            format!("Unsupported value: {other:?}: supported values: \"None\", \"Webhook\""),
        )),
    }
    errors
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
/// type (unless it preserves unknown fields or is int-or-string), int-or-string has none, a
/// node has properties or additionalProperties, never both, and `allOf`/`anyOf`/`oneOf`/`not`
/// only restrict values the structural part already describes.
fn structural(schema: &Value, at: &str, errors: &mut Vec<FieldError>, depth: usize) {
    if depth > 64 {
        return;
    }
    if depth == 0 {
        complete(schema, schema, at, at, errors, 0);
    }
    junctors(
        schema,
        at,
        is_int_or_string_any_of(&schema["anyOf"]),
        is_int_or_string_any_of(&schema["allOf"][0]["anyOf"]),
        errors,
        depth,
    );
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

/// `anyOf: [{type: integer}, {type: string}]`, which upstream lets int-or-string fields spell
/// out (directly or as the first `allOf`), although types are otherwise banned in junctors.
fn is_int_or_string_any_of(any_of: &Value) -> bool {
    *any_of == json!([{ "type": "integer" }, { "type": "string" }])
}

/// The branches of a node's junctors with their paths: `(keyword, index, branch, path)`.
fn junctor_branches<'a>(
    schema: &'a Value,
    at: &str,
) -> Vec<(&'static str, usize, &'a Value, String)> {
    let mut found = Vec::new();
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, branch) in schema[key].as_array().into_iter().flatten().enumerate() {
            found.push((key, i, branch, format!("{at}.{key}[{i}]")));
        }
    }
    if schema["not"].is_object() {
        found.push(("not", 0, &schema["not"], format!("{at}.not")));
    }
    found
}

/// Checks the value validations under a node's junctors (`at` names the node).
fn junctors(
    schema: &Value,
    at: &str,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    errors: &mut Vec<FieldError>,
    depth: usize,
) {
    for (key, i, branch, branch_at) in junctor_branches(schema, at) {
        if key == "anyOf" && skip_any_of {
            continue;
        }
        let skip = key == "allOf" && i == 0 && skip_first_all_of_any_of;
        nested(branch, &branch_at, skip, errors, depth + 1);
    }
}

/// What a value validation inside a junctor may not hold, with upstream's verdict: it may
/// restrict values, never give them a shape, a default, a description or an extension.
const NOT_IN_JUNCTORS: [(&str, &str); 14] = [
    ("type", "must be empty"),
    ("additionalProperties", "must be undefined"),
    ("default", "must be undefined"),
    ("title", "must be empty"),
    ("description", "must be empty"),
    ("nullable", "must be false"),
    ("externalDocs", "must be undefined"),
    ("x-kubernetes-preserve-unknown-fields", "must be false"),
    ("x-kubernetes-embedded-resource", "must be false"),
    ("x-kubernetes-int-or-string", "must be false"),
    ("x-kubernetes-list-map-keys", "must be empty"),
    ("x-kubernetes-list-type", "must be undefined"),
    ("x-kubernetes-map-type", "must be undefined"),
    ("x-kubernetes-validations", "must be empty"),
];

/// One value validation under a junctor, its own junctors, items and properties included.
fn nested(schema: &Value, at: &str, skip_any_of: bool, errors: &mut Vec<FieldError>, depth: usize) {
    if depth > 64 {
        return;
    }
    for (key, verdict) in NOT_IN_JUNCTORS {
        let value = &schema[key];
        let set = match verdict {
            "must be false" => *value == true,
            "must be empty" => !(value.is_null() || *value == "" || *value == json!([])),
            _ => !value.is_null(),
        };
        if set {
            errors.push((
                format!("{at}.{key}"),
                format!("Forbidden: {verdict} to be structural"),
            ));
        }
    }
    junctors(schema, at, skip_any_of, false, errors, depth);
    if schema["items"].is_object() {
        nested(
            &schema["items"],
            &format!("{at}.items"),
            false,
            errors,
            depth + 1,
        );
    }
    let properties = schema["properties"].as_object();
    for (name, child) in properties.into_iter().flatten() {
        let child_at = format!("{at}.properties[{name}]");
        if name == "metadata" {
            errors.push((
                child_at.clone(),
                "Forbidden: must not be specified in a nested context".into(),
            ));
        }
        nested(child, &child_at, false, errors, depth + 1);
    }
}

/// Upstream's completeness rule: every property and items a junctor names must also be in the
/// structural schema. `rules` holds the junctors (at `rules_at`), `shape` is the structural node
/// they restrict (at `shape_at`). Upstream applies it to the root's junctors only, as here.
fn complete(
    rules: &Value,
    shape: &Value,
    shape_at: &str,
    rules_at: &str,
    errors: &mut Vec<FieldError>,
    depth: usize,
) {
    for (_, _, branch, branch_at) in junctor_branches(rules, rules_at) {
        complete_branch(branch, shape, shape_at, &branch_at, errors, depth + 1);
    }
}

/// One value validation under a junctor against the structural node at the same place.
fn complete_branch(
    branch: &Value,
    shape: &Value,
    shape_at: &str,
    branch_at: &str,
    errors: &mut Vec<FieldError>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    complete(branch, shape, shape_at, branch_at, errors, depth);
    let mut named = Vec::new();
    if branch["items"].is_object() {
        named.push((&branch["items"], &shape["items"], "items".to_owned()));
    }
    for (name, child) in branch["properties"].as_object().into_iter().flatten() {
        named.push((
            child,
            &shape["properties"][name],
            format!("properties[{name}]"),
        ));
    }
    for (child, shape_child, step) in named {
        let child_shape_at = format!("{shape_at}.{step}");
        let child_at = format!("{branch_at}.{step}");
        if shape_child.is_object() {
            complete_branch(
                child,
                shape_child,
                &child_shape_at,
                &child_at,
                errors,
                depth + 1,
            );
        } else {
            errors.push((
                child_shape_at,
                format!("Required value: because it is defined in {child_at}"),
            ));
        }
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

    const ROOT: &str = "spec.versions[0].schema.openAPIV3Schema";

    /// The CRD with `extra` merged into the schema of `spec`.
    fn with_spec_schema(extra: Value) -> Value {
        let mut object = crd();
        let spec =
            &mut object["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        object
    }

    #[test]
    fn junctors_may_restrict_values_but_not_type_them() {
        let object = with_spec_schema(json!({
            "oneOf": [{ "required": ["size"] }, { "required": ["port"] }],
            "not": { "properties": { "size": { "enum": ["huge"] } }, "required": ["size"] },
            "allOf": [{ "anyOf": [{ "properties": { "size": { "minLength": 2 } } }] }],
        }));
        assert!(
            fields(&object).is_empty(),
            "{:?}",
            CustomResourceDefinitions.validate(&object)
        );
        let typed = with_spec_schema(json!({
            "anyOf": [{ "type": "string" }, { "required": ["size"] }]
        }));
        assert_eq!(
            CustomResourceDefinitions.validate(&typed),
            [(
                format!("{ROOT}.properties[spec].anyOf[0].type"),
                "Forbidden: must be empty to be structural".to_owned()
            )]
        );
    }

    #[test]
    fn junctors_may_not_shape_default_describe_or_extend() {
        let object = with_spec_schema(json!({
            "oneOf": [{
                "description": "one",
                "default": {},
                "nullable": true,
                "additionalProperties": { "type": "string" },
                "x-kubernetes-preserve-unknown-fields": true,
            }],
            "allOf": [{ "properties": { "size": { "x-kubernetes-list-type": "set" } } }],
            "not": { "items": { "x-kubernetes-validations": [{ "rule": "true" }] } },
        }));
        let at = format!("{ROOT}.properties[spec]");
        let found: Vec<String> = CustomResourceDefinitions
            .validate(&object)
            .into_iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect();
        assert_eq!(
            found,
            [
                format!(
                    "{at}.allOf[0].properties[size].x-kubernetes-list-type: Forbidden: must be undefined to be structural"
                ),
                format!(
                    "{at}.oneOf[0].additionalProperties: Forbidden: must be undefined to be structural"
                ),
                format!("{at}.oneOf[0].default: Forbidden: must be undefined to be structural"),
                format!("{at}.oneOf[0].description: Forbidden: must be empty to be structural"),
                format!("{at}.oneOf[0].nullable: Forbidden: must be false to be structural"),
                format!(
                    "{at}.oneOf[0].x-kubernetes-preserve-unknown-fields: Forbidden: must be false to be structural"
                ),
                format!(
                    "{at}.not.items.x-kubernetes-validations: Forbidden: must be empty to be structural"
                ),
            ]
        );
    }

    #[test]
    fn fields_a_root_junctor_names_must_be_specified_outside_it() {
        let mut object = crd();
        object["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["anyOf"] = json!([
            { "properties": { "spec": { "properties": { "size": { "minLength": 1 } } } } },
            { "properties": { "bar": { "minimum": 42 }, "spec": { "properties": { "gone": {} } } } },
            { "properties": { "metadata": { "required": ["name"] } } },
        ]);
        let found: Vec<String> = CustomResourceDefinitions
            .validate(&object)
            .into_iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect();
        assert_eq!(
            found,
            [
                format!(
                    "{ROOT}.properties[bar]: Required value: because it is defined in {ROOT}.anyOf[1].properties[bar]"
                ),
                format!(
                    "{ROOT}.properties[spec].properties[gone]: Required value: because it is defined in {ROOT}.anyOf[1].properties[spec].properties[gone]"
                ),
                format!(
                    "{ROOT}.properties[metadata]: Required value: because it is defined in {ROOT}.anyOf[2].properties[metadata]"
                ),
                format!(
                    "{ROOT}.anyOf[2].properties[metadata]: Forbidden: must not be specified in a nested context"
                ),
            ]
        );
    }

    #[test]
    fn int_or_string_may_spell_out_its_types_in_any_of_only_exactly() {
        let mut object = crd();
        let properties = &mut object["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["spec"]["properties"];
        let both = json!([{ "type": "integer" }, { "type": "string" }]);
        properties["port"]["anyOf"] = both.clone();
        properties["target"] = json!({
            "x-kubernetes-int-or-string": true,
            "allOf": [{ "anyOf": both }, { "pattern": "^[0-9a-z]+$" }],
        });
        assert!(
            fields(&object).is_empty(),
            "{:?}",
            CustomResourceDefinitions.validate(&object)
        );
        properties_of(&mut object)["port"]["anyOf"] =
            json!([{ "type": "integer" }, { "type": "string", "pattern": "^[a-z]+$" }]);
        assert_eq!(
            fields(&object),
            [
                format!("{ROOT}.properties[spec].properties[port].anyOf[0].type"),
                format!("{ROOT}.properties[spec].properties[port].anyOf[1].type"),
            ]
        );
    }

    fn properties_of(object: &mut Value) -> &mut Value {
        &mut object["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
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

    #[test]
    fn a_webhook_conversion_needs_a_webhook_it_can_call() {
        let paths = |conversion: Value| -> Vec<String> {
            conversion_errors(&conversion)
                .into_iter()
                .map(|(f, _)| f)
                .collect()
        };
        assert!(paths(json!({ "strategy": "None" })).is_empty());
        assert_eq!(
            paths(json!({ "strategy": "Webhook" })),
            ["spec.conversion.webhook"]
        );
        let ok = json!({ "strategy": "Webhook", "webhook": {
            "conversionReviewVersions": ["v1"], "clientConfig": { "url": "https://x/convert" } } });
        assert!(paths(ok).is_empty());
        let old_only = json!({ "strategy": "Webhook", "webhook": {
            "conversionReviewVersions": ["v0"], "clientConfig": { "url": "https://x/convert" } } });
        assert_eq!(
            paths(old_only),
            ["spec.conversion.webhook.conversionReviewVersions"]
        );
        let nowhere =
            json!({ "strategy": "Webhook", "webhook": { "conversionReviewVersions": ["v1"] } });
        assert_eq!(paths(nowhere), ["spec.conversion.webhook.clientConfig"]);
        assert_eq!(
            paths(json!({ "strategy": "Magic" })),
            ["spec.conversion.strategy"]
        );
        let stray = json!({ "strategy": "None", "webhook": {} });
        assert_eq!(paths(stray), ["spec.conversion.webhook"]);
    }
}
