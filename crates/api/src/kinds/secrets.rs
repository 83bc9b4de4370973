//! Secrets: the `kubectl get secrets` table (type and how many keys they hold).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{drop_generation, set_default};
use super::printing::{self, AGE, NAME, column, text};
use super::{Column, Kind};

pub struct Secrets;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    column(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
    ),
    AGE,
];

impl Kind for Secrets {
    // The fields upstream's field selectors accept for this kind.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        set_default(object, "type", json!("Opaque"));
        merge_string_data(object);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        set_default(new, "type", json!("Opaque"));
        merge_string_data(new);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// `stringData` is write-only: its keys go into `data` (base64), over keys of the same name,
/// and it is never stored, as upstream's conversion does.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(strings)) = secret.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        secret["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

fn row(secret: &Value, now: OffsetDateTime) -> Vec<Value> {
    let data = secret["data"].as_object().map_or(0, |m| m.len());
    vec![
        printing::name(secret),
        text(&secret["type"]).into(),
        (data as i64).into(),
        printing::age(secret, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn string_data_is_written_into_data_and_not_kept() {
        let mut secret = json!({
            "data": { "a": "b2xk", "keep": "eA==" },
            "stringData": { "a": "new", "b": "two" },
        });
        Secrets.prepare_for_create(&mut secret);
        assert_eq!(
            secret["data"],
            json!({ "a": "bmV3", "keep": "eA==", "b": "dHdv" })
        );
        assert!(secret.get("stringData").is_none());
    }

    #[test]
    fn secrets_are_opaque_and_have_no_generation() {
        let mut secret = json!({"metadata": {"name": "s", "generation": 1}, "data": {}});
        Secrets.prepare_for_create(&mut secret);
        assert_eq!(secret["type"], "Opaque");
        assert!(secret["metadata"].get("generation").is_none());
    }

    #[test]
    fn a_secret_shows_its_type_and_key_count() {
        let secret = json!({
            "metadata": { "name": "tls", "creationTimestamp": "2026-02-01T12:00:00Z" },
            "type": "kubernetes.io/tls",
            "data": { "tls.crt": "Yw==", "tls.key": "aw==" },
        });
        assert_eq!(
            json!(row(&secret, at("2026-03-01T12:00:00Z"))),
            json!(["tls", "kubernetes.io/tls", 2, "28d"])
        );
    }
}
