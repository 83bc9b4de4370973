//! JSON values as CEL sees them, typed by their OpenAPI schema as kube-apiserver types them:
//! `integer` is `int` and `number` is `double` whatever the JSON spelling, strings of format
//! `byte`, `duration`, `date` and `date-time` are bytes, durations and timestamps, object
//! properties are fields under their escaped names, and values without a schema (under
//! `x-kubernetes-preserve-unknown-fields` or `x-kubernetes-int-or-string`) are dynamic.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use cel::Value;
use cel::objects::{Key, Map};
use serde_json::Value as Json;

/// CEL's reserved words: a property so named is reached as `__name__`.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The name a property is reached by in CEL, or `None` when it cannot be (upstream's
/// `Escape`): `__` → `__underscores__`, `.` → `__dot__`, `-` → `__dash__`, `/` → `__slash__`.
pub fn escape(name: &str) -> Option<String> {
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let escaped = name
        .replace("__", "__underscores__")
        .replace('.', "__dot__")
        .replace('-', "__dash__")
        .replace('/', "__slash__");
    let mut chars = escaped.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(escaped)
}

fn string(text: &str) -> Value {
    Value::String(Arc::new(text.to_owned()))
}

fn map(entries: HashMap<Key, Value>) -> Value {
    Value::Map(Map {
        map: Arc::new(entries),
    })
}

/// A JSON value with no schema: numbers that are whole are ints, as in unstructured objects.
pub fn untyped(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => n
                .as_u64()
                .map_or_else(|| Value::Float(n.as_f64().unwrap_or_default()), Value::UInt),
        },
        Json::String(s) => string(s),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(untyped).collect())),
        Json::Object(fields) => map(fields
            .iter()
            .map(|(k, v)| (Key::String(Arc::new(k.clone())), untyped(v)))
            .collect()),
    }
}

/// `json` as CEL sees it under `schema`.
pub fn typed(json: &Json, schema: &Json) -> Value {
    if schema["x-kubernetes-int-or-string"] == true {
        return untyped(json);
    }
    match (json, schema["type"].as_str()) {
        (Json::Null, _) => Value::Null,
        (Json::Object(fields), Some("object")) => {
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let embedded = schema["x-kubernetes-embedded-resource"] == true;
            let mut entries = HashMap::new();
            for (name, value) in fields {
                if let Some(property) = properties.and_then(|p| p.get(name)) {
                    if let Some(escaped) = escape(name) {
                        entries.insert(Key::String(Arc::new(escaped)), typed(value, property));
                    }
                } else if let Some(additional) = additional {
                    entries.insert(
                        Key::String(Arc::new(name.clone())),
                        typed(value, additional),
                    );
                } else if embedded && matches!(name.as_str(), "apiVersion" | "kind") {
                    entries.insert(Key::String(Arc::new(name.clone())), untyped(value));
                } else if embedded && name == "metadata" {
                    entries.insert(Key::String(Arc::new(name.clone())), metadata(value));
                } else if let Some(escaped) = escape(name) {
                    // Kept unknown fields (x-kubernetes-preserve-unknown-fields).
                    entries.insert(Key::String(Arc::new(escaped)), untyped(value));
                }
            }
            map(entries)
        }
        (Json::Array(items), Some("array")) => {
            let item_schema = &schema["items"];
            Value::List(Arc::new(
                items
                    .iter()
                    .map(|item| match item_schema.is_object() {
                        true => typed(item, item_schema),
                        false => untyped(item),
                    })
                    .collect(),
            ))
        }
        (Json::Number(n), Some("integer")) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Int(n.as_f64().unwrap_or_default() as i64),
        },
        (Json::Number(n), Some("number")) => Value::Float(n.as_f64().unwrap_or_default()),
        (Json::String(s), Some("string")) => formatted(s, schema["format"].as_str()),
        _ => untyped(json),
    }
}

/// The part of an embedded or root object's metadata CEL sees: its name and generateName.
pub fn metadata(json: &Json) -> Value {
    let mut entries = HashMap::new();
    for field in ["name", "generateName"] {
        if let Some(text) = json[field].as_str() {
            entries.insert(Key::String(Arc::new(field.to_owned())), string(text));
        }
    }
    map(entries)
}

/// A string of a format CEL has a type for; left a string when it does not parse.
fn formatted(text: &str, format: Option<&str>) -> Value {
    let parsed = match format {
        Some("byte") => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .map(|bytes| Value::Bytes(Arc::new(bytes))),
        Some("duration") => parse_duration(text).map(Value::Duration),
        Some("date") => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Value::Timestamp(t.and_utc().fixed_offset())),
        Some("date-time") => chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(Value::Timestamp),
        _ => None,
    };
    parsed.unwrap_or_else(|| string(text))
}

/// A Go duration (`1h30m`, `300ms`, `-1.5h`), as `metav1.Duration` is written.
pub fn parse_duration(text: &str) -> Option<chrono::Duration> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&end| end > 0)?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += number * scale;
        rest = &rest[unit_end..];
    }
    let nanos = if negative { -nanos } else { nanos };
    (nanos.abs() < i64::MAX as f64).then(|| chrono::Duration::nanoseconds(nanos as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_escaped_as_upstream_escapes_them() {
        assert_eq!(escape("foo-bar").as_deref(), Some("foo__dash__bar"));
        assert_eq!(escape("a.b/c").as_deref(), Some("a__dot__b__slash__c"));
        assert_eq!(escape("x__y").as_deref(), Some("x__underscores__y"));
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("1st"), None);
        assert_eq!(escape("a b"), None);
    }

    #[test]
    fn schema_types_pick_cel_types() {
        let schema = json!({ "type": "object", "properties": {
            "count": { "type": "integer" },
            "ratio": { "type": "number" },
            "timeout": { "type": "string", "format": "duration" },
            "at": { "type": "string", "format": "date-time" },
            "data": { "type": "string", "format": "byte" },
            "port": { "x-kubernetes-int-or-string": true },
        }});
        let object = json!({ "count": 2, "ratio": 1, "timeout": "1m30s", "at": "2024-01-02T03:04:05Z", "data": "aGk=", "port": "http" });
        let Value::Map(m) = typed(&object, &schema) else {
            panic!("not a map")
        };
        let get = |k: &str| m.map.get(&Key::String(Arc::new(k.to_owned()))).cloned();
        assert_eq!(get("count"), Some(Value::Int(2)));
        assert_eq!(get("ratio"), Some(Value::Float(1.0)));
        assert_eq!(
            get("timeout"),
            Some(Value::Duration(chrono::Duration::seconds(90)))
        );
        assert!(matches!(get("at"), Some(Value::Timestamp(_))));
        assert_eq!(get("data"), Some(Value::Bytes(Arc::new(b"hi".to_vec()))));
        assert_eq!(get("port"), Some(string("http")));
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("1h30m"), Some(chrono::Duration::minutes(90)));
        assert_eq!(
            parse_duration("-1.5s"),
            Some(chrono::Duration::milliseconds(-1500))
        );
        assert_eq!(parse_duration("0"), Some(chrono::Duration::zero()));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("1d"), None);
    }
}
