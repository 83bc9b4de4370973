//! ConfigMaps: the `kubectl get configmaps` table (how many keys they hold).

use serde_json::Value;
use time::OffsetDateTime;

use super::defaulting::drop_generation;
use super::printing::{self, AGE, NAME, column};
use super::{Column, Kind};

pub struct ConfigMaps;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
    ),
    AGE,
];

impl Kind for ConfigMaps {
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

fn keys(map: &Value) -> usize {
    map.as_object().map_or(0, |m| m.len())
}

fn row(config_map: &Value, now: OffsetDateTime) -> Vec<Value> {
    let data = keys(&config_map["data"]) + keys(&config_map["binaryData"]);
    vec![
        printing::name(config_map),
        (data as i64).into(),
        printing::age(config_map, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn config_maps_have_no_generation() {
        let mut config_map = json!({"metadata": {"name": "c", "generation": 1}});
        ConfigMaps.prepare_for_create(&mut config_map);
        assert!(config_map["metadata"].get("generation").is_none());
    }

    #[test]
    fn a_config_map_counts_text_and_binary_keys() {
        let config_map = json!({
            "metadata": { "name": "settings", "creationTimestamp": "2026-03-01T11:59:55Z" },
            "data": { "a": "1", "b": "2" },
            "binaryData": { "c": "AA==" },
        });
        assert_eq!(
            json!(row(&config_map, at("2026-03-01T12:00:00Z"))),
            json!(["settings", 3, "5s"])
        );
    }
}
