//! A custom resource against its CRD's structural schema, as apiextensions-apiserver treats it:
//! unknown fields pruned (unless `x-kubernetes-preserve-unknown-fields`), `default`s filled in,
//! then the value validated (types, required, enum, bounds, lengths, pattern, simple formats,
//! `allOf`/`anyOf`/`oneOf`/`not`), with upstream's field paths and messages. Properties named
//! only inside those junctors are not part of the structural schema: pruning drops them.

use regex::Regex;
use serde_json::{Map, Value};

use r8s_api::kinds::FieldError;

/// Recursion bound; decoded bodies are far shallower.
const MAX_DEPTH: usize = 64;

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

fn embedded(schema: &Value) -> bool {
    schema["x-kubernetes-embedded-resource"] == true
}

/// Removes the fields the schema does not know and answers their paths
/// (`spec.bogus`, `spec.items[0].extra`). `apiVersion`, `kind` and `metadata` of the object
/// and of embedded resources are part of the envelope and always kept.
pub fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_at(schema, object, "", true, &mut unknown, 0);
    unknown
}

fn prune_at(
    schema: &Value,
    value: &mut Value,
    path: &str,
    envelope: bool,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let envelope = envelope || embedded(schema);
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties");
            let keep_all = preserves_unknown(schema);
            let mut doomed = Vec::new();
            for (key, item) in map.iter_mut() {
                let item_path = child(path, key);
                if let Some(item_schema) = properties.and_then(|p| p.get(key)) {
                    prune_at(item_schema, item, &item_path, false, unknown, depth + 1);
                } else if let Some(item_schema) = additional.filter(|a| a.is_object()) {
                    prune_at(item_schema, item, &item_path, false, unknown, depth + 1);
                } else if envelope && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                } else if !keep_all && additional != Some(&Value::Bool(true)) {
                    unknown.push(item_path);
                    doomed.push(key.clone());
                }
            }
            for key in doomed {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    prune_at(item_schema, item, &item_path, false, unknown, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Fills missing fields (and nulls the schema does not allow) from their `default`s.
pub fn default(schema: &Value, value: &mut Value) {
    default_at(schema, value, 0);
}

fn default_at(schema: &Value, value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (key, item_schema) in properties {
                    let absent = match map.get(key) {
                        None => true,
                        Some(Value::Null) => item_schema["nullable"] != true,
                        Some(_) => false,
                    };
                    if absent && let Some(default) = item_schema.get("default") {
                        map.insert(key.clone(), default.clone());
                    }
                }
                for (key, item) in map.iter_mut() {
                    if let Some(item_schema) = properties.get(key) {
                        default_at(item_schema, item, depth + 1);
                    }
                }
            } else if let Some(item_schema) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for item in map.values_mut() {
                    default_at(item_schema, item, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default_at(item_schema, item, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// What is wrong with the object, as upstream's schema validator words it.
pub fn validate(schema: &Value, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_at(schema, object, "", &mut errors, 0);
    errors
}

/// The JSON type of a value as Go's validator names it.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as Go's `%v` prints it in `Invalid value: …`.
fn shown(value: &Value) -> String {
    value.to_string()
}

fn type_matches(wanted: &str, value: &Value) -> bool {
    match wanted {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        // Integral floats (`1.0`) are integers in JSON too.
        "number" => value.is_number(),
        _ => true,
    }
}

fn validate_at(
    schema: &Value,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let field = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        let typed = schema["type"].as_str().is_some();
        if typed && schema["nullable"] != true {
            let wanted = schema["type"].as_str().unwrap_or_default();
            errors.push((
                field.to_owned(),
                format!(
                    "Invalid value: \"null\": {field} in body must be of type {wanted}: \"null\""
                ),
            ));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push((
                field.to_owned(),
                format!(
                    "Invalid value: \"{}\": {field} in body must be of type integer,string: \"{}\"",
                    type_name(value),
                    type_name(value)
                ),
            ));
        }
    } else if let Some(wanted) = schema["type"].as_str()
        && !type_matches(wanted, value)
    {
        let actual = type_name(value);
        errors.push((
            field.to_owned(),
            format!("Invalid value: \"{actual}\": {field} in body must be of type {wanted}: \"{actual}\""),
        ));
        return;
    }
    check_junctors(schema, value, path, errors, depth);
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(shown).collect();
        errors.push((
            field.to_owned(),
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                listed.join(", ")
            ),
        ));
    }
    match value {
        Value::Number(n) => {
            check_number(schema, n.as_f64().unwrap_or_default(), value, field, errors)
        }
        Value::String(s) => check_string(schema, s, value, field, errors),
        Value::Array(items) => {
            check_items(schema, items, field, errors);
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_at(
                        item_schema,
                        item,
                        &format!("{path}[{i}]"),
                        errors,
                        depth + 1,
                    );
                }
            }
        }
        Value::Object(map) => check_object(schema, map, path, errors, depth),
        _ => {}
    }
}

/// The errors of one junctor branch, validated at the same path as its parent.
fn branch_errors(branch: &Value, value: &Value, path: &str, depth: usize) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_at(branch, value, path, &mut errors, depth + 1);
    errors
}

/// `anyOf`, `oneOf`, `allOf` and `not` as go-openapi's schema-props validator reports them: one
/// error for the junctor, which apiextensions files under `<nil>` as an `Invalid value: ""`,
/// plus the branch errors it keeps (the closest failing branch for anyOf/oneOf, all for allOf).
fn check_junctors(
    schema: &Value,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    depth: usize,
) {
    // Go's `%q` of the validator's path; the root's is empty.
    let junctor_error = |rule: &str| {
        (
            "<nil>".to_owned(),
            format!("Invalid value: \"\": {path:?} {rule}"),
        )
    };
    let branches = |key: &str| schema[key].as_array().map(Vec::as_slice).unwrap_or(&[]);
    // Upstream keeps the failure of the branch that got furthest; fewest errors stands in for
    // that, the first branch winning ties.
    let closer = |best: &Option<Vec<FieldError>>, candidate: &Vec<FieldError>| {
        best.as_ref().is_none_or(|b| candidate.len() < b.len())
    };

    let any_of = branches("anyOf");
    if !any_of.is_empty() {
        let mut best = None;
        let mut matched = false;
        for branch in any_of {
            let found = branch_errors(branch, value, path, depth);
            if found.is_empty() {
                matched = true;
                break;
            }
            if closer(&best, &found) {
                best = Some(found);
            }
        }
        if !matched {
            errors.push(junctor_error("must validate at least one schema (anyOf)"));
            errors.extend(best.unwrap_or_default());
        }
    }

    let one_of = branches("oneOf");
    if !one_of.is_empty() {
        let mut best = None;
        let mut matched = 0;
        for branch in one_of {
            let found = branch_errors(branch, value, path, depth);
            if found.is_empty() {
                matched += 1;
            } else if matched == 0 && closer(&best, &found) {
                best = Some(found);
            }
        }
        match matched {
            1 => {}
            0 => {
                errors.push(junctor_error(
                    "must validate one and only one schema (oneOf). Found none valid",
                ));
                errors.extend(best.unwrap_or_default());
            }
            n => errors.push(junctor_error(&format!(
                "must validate one and only one schema (oneOf). Found {n} valid alternatives"
            ))),
        }
    }

    let all_of = branches("allOf");
    if !all_of.is_empty() {
        let mut matched = 0;
        for branch in all_of {
            let found = branch_errors(branch, value, path, depth);
            if found.is_empty() {
                matched += 1;
            }
            errors.extend(found);
        }
        if matched == 0 {
            errors.push(junctor_error(
                "must validate all the schemas (allOf). None validated",
            ));
        } else if matched < all_of.len() {
            errors.push(junctor_error("must validate all the schemas (allOf)"));
        }
    }

    if let Some(not) = schema.get("not").filter(|n| n.is_object())
        && branch_errors(not, value, path, depth).is_empty()
    {
        errors.push(junctor_error("must not validate the schema (not)"));
    }
}

fn check_number(schema: &Value, n: f64, value: &Value, field: &str, errors: &mut Vec<FieldError>) {
    let exclusive = |key: &str| schema[key] == true;
    if let Some(min) = schema["minimum"].as_f64() {
        let (bad, words) = match exclusive("exclusiveMinimum") {
            true => (n <= min, "greater than"),
            false => (n < min, "greater than or equal to"),
        };
        if bad {
            errors.push((
                field.to_owned(),
                format!(
                    "Invalid value: {}: {field} in body should be {words} {}",
                    shown(value),
                    schema["minimum"]
                ),
            ));
        }
    }
    if let Some(max) = schema["maximum"].as_f64() {
        let (bad, words) = match exclusive("exclusiveMaximum") {
            true => (n >= max, "less than"),
            false => (n > max, "less than or equal to"),
        };
        if bad {
            errors.push((
                field.to_owned(),
                format!(
                    "Invalid value: {}: {field} in body should be {words} {}",
                    shown(value),
                    schema["maximum"]
                ),
            ));
        }
    }
    if let Some(step) = schema["multipleOf"].as_f64()
        && step > 0.0
        && (n / step).fract() != 0.0
    {
        errors.push((
            field.to_owned(),
            format!(
                "Invalid value: {}: {field} in body should be a multiple of {}",
                shown(value),
                schema["multipleOf"]
            ),
        ));
    }
    if schema["format"] == "int32" && value.as_i64().is_some_and(|i| i32::try_from(i).is_err()) {
        errors.push((
            field.to_owned(),
            format!(
                "Invalid value: {}: {field} in body must be of type int32: {}",
                shown(value),
                shown(value)
            ),
        ));
    }
}

fn check_string(schema: &Value, s: &str, value: &Value, field: &str, errors: &mut Vec<FieldError>) {
    let length = s.chars().count() as u64;
    if let Some(min) = schema["minLength"].as_u64()
        && length < min
    {
        errors.push((
            field.to_owned(),
            format!(
                "Invalid value: {}: {field} in body should be at least {min} chars long",
                shown(value)
            ),
        ));
    }
    if let Some(max) = schema["maxLength"].as_u64()
        && length > max
    {
        errors.push((
            field.to_owned(),
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        // An unparsable pattern was refused when the CRD was written; skip it here.
        if let Ok(re) = Regex::new(pattern)
            && !re.is_match(s)
        {
            errors.push((
                field.to_owned(),
                format!(
                    "Invalid value: {}: {field} in body should match '{pattern}'",
                    shown(value)
                ),
            ));
        }
    }
    if let Some(format) = schema["format"].as_str()
        && !format_matches(format, s)
    {
        errors.push((
            field.to_owned(),
            format!(
                "Invalid value: {}: {field} in body must be of type {format}: {}",
                shown(value),
                shown(value)
            ),
        ));
    }
}

/// The simple formats upstream checks; others pass, as upstream ignores unknown formats.
fn format_matches(format: &str, s: &str) -> bool {
    use time::format_description::well_known::Rfc3339;
    match format {
        "date-time" | "datetime" => time::OffsetDateTime::parse(s, &Rfc3339).is_ok(),
        "date" => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.len() == 3
                && [4, 2, 2]
                    .iter()
                    .zip(&parts)
                    .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_digit()))
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "uuid" => uuid::Uuid::parse_str(s).is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        _ => true,
    }
}

fn check_items(schema: &Value, items: &[Value], field: &str, errors: &mut Vec<FieldError>) {
    let count = items.len() as u64;
    if let Some(min) = schema["minItems"].as_u64()
        && count < min
    {
        errors.push((
            field.to_owned(),
            format!("Invalid value: {count}: {field} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = schema["maxItems"].as_u64()
        && count > max
    {
        errors.push((
            field.to_owned(),
            format!("Too many: {count}: must have at most {max} items"),
        ));
    }
    let set = schema["x-kubernetes-list-type"] == "set" || schema["uniqueItems"] == true;
    if set {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                errors.push((
                    format!("{field}[{i}]"),
                    format!("Duplicate value: {}", shown(item)),
                ));
            }
        }
    }
}

fn check_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
    depth: usize,
) {
    let field = if path.is_empty() { "<root>" } else { path };
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str()
            && !map.contains_key(name)
        {
            errors.push((child(path, name), "Required value".to_owned()));
        }
    }
    let count = map.len() as u64;
    if let Some(min) = schema["minProperties"].as_u64()
        && count < min
    {
        errors.push((
            field.to_owned(),
            format!(
                "Invalid value: {count}: {field} in body should have at least {min} properties"
            ),
        ));
    }
    if let Some(max) = schema["maxProperties"].as_u64()
        && count > max
    {
        errors.push((
            field.to_owned(),
            format!("Too many: {count}: must have at most {max} items"),
        ));
    }
    let properties = schema["properties"].as_object();
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, item) in map {
        let item_schema = properties.and_then(|p| p.get(key)).or(additional);
        if let Some(item_schema) = item_schema {
            validate_at(item_schema, item, &child(path, key), errors, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": { "type": "string", "enum": ["small", "large"] },
                        "replicas": { "type": "integer", "minimum": 1, "maximum": 10, "default": 1 },
                        "name": { "type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 5 },
                        "ports": { "type": "array", "maxItems": 2, "items": { "type": "integer" } },
                        "port": { "x-kubernetes-int-or-string": true },
                        "free": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                        "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                        "when": { "type": "string", "format": "date-time" },
                    },
                },
                "status": { "type": "object", "properties": { "ready": { "type": "boolean" } } },
            },
        })
    }

    #[test]
    fn wrong_types_are_named_with_upstreams_message() {
        let errors = validate(
            &widget_schema(),
            &json!({ "spec": { "size": "small", "replicas": "three" } }),
        );
        assert_eq!(
            errors,
            [(
                "spec.replicas".to_owned(),
                "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"".to_owned()
            )]
        );
    }

    #[test]
    fn required_enum_bounds_lengths_and_patterns_are_checked() {
        let object = json!({ "spec": { "replicas": 0, "name": "ABCDEFG", "ports": [1, 2, 3] } });
        let fields: Vec<String> = validate(&widget_schema(), &object)
            .into_iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect();
        assert!(
            fields.contains(&"spec.size: Required value".to_owned()),
            "{fields:?}"
        );
        assert!(fields.contains(
            &"spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1".to_owned()
        ));
        assert!(fields.contains(&"spec.name: Too long: may not be more than 5 bytes".to_owned()));
        assert!(
            fields.contains(
                &"spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'"
                    .to_owned()
            )
        );
        assert!(fields.contains(&"spec.ports: Too many: 3: must have at most 2 items".to_owned()));
        let bad_enum = validate(&widget_schema(), &json!({ "spec": { "size": "huge" } }));
        assert_eq!(
            bad_enum[0].1,
            "Unsupported value: \"huge\": supported values: \"small\", \"large\""
        );
    }

    #[test]
    fn int_or_string_formats_and_maps_are_checked() {
        let ok = json!({ "spec": { "size": "small", "port": "http", "labels": { "a": "b" }, "when": "2024-01-02T03:04:05Z" } });
        assert!(validate(&widget_schema(), &ok).is_empty());
        let bad = json!({ "spec": { "size": "small", "port": true, "labels": { "a": 1 }, "when": "yesterday" } });
        let fields: Vec<String> = validate(&widget_schema(), &bad)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["spec.labels.a", "spec.port", "spec.when"]);
    }

    #[test]
    fn unknown_fields_are_pruned_except_where_preserved() {
        let mut object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w" },
            "spec": { "size": "small", "bogus": 1, "free": { "anything": { "goes": true } } },
            "extra": "x",
        });
        let unknown = prune(&widget_schema(), &mut object);
        assert_eq!(unknown, ["extra", "spec.bogus"]);
        assert_eq!(object["spec"]["free"]["anything"]["goes"], true);
        assert_eq!(object["metadata"]["name"], "w");
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let mut object = json!({ "spec": { "size": "small" } });
        default(&widget_schema(), &mut object);
        assert_eq!(object["spec"]["replicas"], 1);
        let mut explicit = json!({ "spec": { "size": "small", "replicas": 4 } });
        default(&widget_schema(), &mut explicit);
        assert_eq!(explicit["spec"]["replicas"], 4);
    }

    fn spec_schema(spec: Value) -> Value {
        json!({ "type": "object", "properties": { "spec": spec } })
    }

    fn messages(schema: &Value, object: &Value) -> Vec<String> {
        validate(schema, object)
            .into_iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect()
    }

    fn a_or_b() -> Value {
        spec_schema(json!({
            "type": "object",
            "properties": { "a": { "type": "string" }, "b": { "type": "string" } },
            "oneOf": [{ "required": ["a"] }, { "required": ["b"] }],
        }))
    }

    #[test]
    fn one_of_accepts_exactly_one_matching_branch() {
        assert!(validate(&a_or_b(), &json!({ "spec": { "a": "x" } })).is_empty());
        assert_eq!(
            messages(&a_or_b(), &json!({ "spec": { "a": "x", "b": "y" } })),
            [
                "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
            ]
        );
    }

    #[test]
    fn one_of_with_no_match_names_the_closest_branchs_errors() {
        assert_eq!(
            messages(&a_or_b(), &json!({ "spec": {} })),
            [
                "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found none valid",
                "spec.a: Required value",
            ]
        );
    }

    #[test]
    fn any_of_needs_one_matching_branch() {
        let schema = spec_schema(json!({
            "type": "object",
            "properties": { "n": { "type": "integer" } },
            "anyOf": [
                { "required": ["n"], "properties": { "n": { "minimum": 10 } } },
                { "properties": { "n": { "maximum": 0 } } },
            ],
        }));
        assert!(validate(&schema, &json!({ "spec": { "n": 20 } })).is_empty());
        assert!(validate(&schema, &json!({ "spec": { "n": -3 } })).is_empty());
        assert_eq!(
            messages(&schema, &json!({ "spec": { "n": 5 } })),
            [
                "<nil>: Invalid value: \"\": \"spec\" must validate at least one schema (anyOf)",
                "spec.n: Invalid value: 5: spec.n in body should be greater than or equal to 10",
            ]
        );
    }

    #[test]
    fn all_of_reports_every_failing_branch() {
        let schema = spec_schema(json!({
            "type": "object",
            "properties": { "n": { "type": "integer" } },
            "allOf": [
                { "properties": { "n": { "minimum": 1 } } },
                { "properties": { "n": { "multipleOf": 2 } } },
            ],
        }));
        assert!(validate(&schema, &json!({ "spec": { "n": 4 } })).is_empty());
        assert_eq!(
            messages(&schema, &json!({ "spec": { "n": 3 } })),
            [
                "spec.n: Invalid value: 3: spec.n in body should be a multiple of 2",
                "<nil>: Invalid value: \"\": \"spec\" must validate all the schemas (allOf)",
            ]
        );
        let none = messages(&schema, &json!({ "spec": { "n": -1 } }));
        assert_eq!(
            none.last().map(String::as_str),
            Some(
                "<nil>: Invalid value: \"\": \"spec\" must validate all the schemas (allOf). None validated"
            )
        );
        assert_eq!(none.len(), 3, "{none:?}");
    }

    #[test]
    fn not_refuses_a_value_matching_its_schema() {
        let schema = spec_schema(json!({
            "type": "object",
            "properties": { "a": { "type": "string" }, "b": { "type": "string" } },
            "not": { "required": ["a", "b"] },
        }));
        assert!(validate(&schema, &json!({ "spec": { "a": "x" } })).is_empty());
        assert_eq!(
            messages(&schema, &json!({ "spec": { "a": "x", "b": "y" } })),
            ["<nil>: Invalid value: \"\": \"spec\" must not validate the schema (not)"]
        );
    }

    #[test]
    fn junctors_apply_at_the_path_of_nested_items_and_the_root() {
        let schema = json!({
            "type": "object",
            "not": { "required": ["forbidden"] },
            "properties": {
                "forbidden": { "type": "string" },
                "spec": { "type": "object", "properties": { "list": {
                    "type": "array",
                    "items": { "type": "string", "oneOf": [{ "enum": ["a"] }, { "pattern": "^b" }] },
                } } },
            },
        });
        assert!(validate(&schema, &json!({ "spec": { "list": ["a", "bee"] } })).is_empty());
        assert_eq!(
            messages(
                &schema,
                &json!({ "forbidden": "x", "spec": { "list": ["a", "c"] } })
            ),
            [
                "<nil>: Invalid value: \"\": \"\" must not validate the schema (not)",
                "<nil>: Invalid value: \"\": \"spec.list[1]\" must validate one and only one schema (oneOf). Found none valid",
                "spec.list[1]: Unsupported value: \"c\": supported values: \"a\"",
            ]
        );
    }

    #[test]
    fn int_or_string_with_its_any_of_pattern_checks_both_branches() {
        let schema = spec_schema(json!({
            "type": "object",
            "properties": { "port": {
                "x-kubernetes-int-or-string": true,
                "anyOf": [{ "type": "integer" }, { "type": "string" }],
            } },
        }));
        assert!(validate(&schema, &json!({ "spec": { "port": 80 } })).is_empty());
        assert!(validate(&schema, &json!({ "spec": { "port": "http" } })).is_empty());
        let bad = messages(&schema, &json!({ "spec": { "port": true } }));
        assert!(
            bad.contains(
                &"<nil>: Invalid value: \"\": \"spec.port\" must validate at least one schema (anyOf)"
                    .to_owned()
            ),
            "{bad:?}"
        );
    }

    #[test]
    fn fields_named_only_inside_a_junctor_are_pruned_before_it_is_checked() {
        let schema = spec_schema(json!({
            "type": "object",
            "properties": { "a": { "type": "string" } },
            "anyOf": [{ "required": ["a"] }, { "required": ["b"] }],
        }));
        let mut object = json!({ "spec": { "b": "kept?" } });
        assert_eq!(prune(&schema, &mut object), ["spec.b"]);
        default(&schema, &mut object);
        assert_eq!(object, json!({ "spec": {} }));
        assert_eq!(
            messages(&schema, &object)[0],
            "<nil>: Invalid value: \"\": \"spec\" must validate at least one schema (anyOf)"
        );
    }
}
