//! `additionalPrinterColumns`: the Table `kubectl get <custom resource>` prints, as upstream's
//! CRD table convertor builds it: Name, then each column's JSONPath value typed as declared
//! (`date` as an age like `5m`), with Age over `.metadata.creationTimestamp` when the CRD
//! declares none. JSONPath is upstream's "simple" subset: fields and list indexes.

use serde_json::{Value, json};
use time::OffsetDateTime;

use r8s_api::kinds::printing;

use crate::objects::name_of;
use crate::table::Include;

/// One column as the CRD declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub path: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Field(String),
    Index(usize),
}

/// Parses `.spec.replicas`, `.status.conditions[0].type`, `.metadata.labels['app']`, with or
/// without `{…}`; `None` for what the simple subset does not cover (filters, wildcards).
pub fn parse_path(text: &str) -> Option<Vec<Step>> {
    let text = text.trim();
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let mut rest = text.strip_prefix('.')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            rest = &after[end + 1..];
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|i| i.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|i| i.strip_suffix('"')));
            match quoted {
                Some(field) => steps.push(Step::Field(field.to_owned())),
                None => steps.push(Step::Index(inner.parse().ok()?)),
            }
        } else {
            rest = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let field = &rest[..end];
            if field.is_empty() || field.contains(['*', '?', '@', '(']) {
                return None;
            }
            steps.push(Step::Field(field.to_owned()));
            rest = &rest[end..];
        }
    }
    Some(steps)
}

/// The value a path names in an object, if it is there.
pub fn lookup<'a>(object: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, step| match step {
        Step::Field(name) => value.get(name),
        Step::Index(i) => value.get(*i),
    })
}

/// The columns of a CRD version, from its `additionalPrinterColumns`.
pub fn of_version(version: &Value) -> Vec<PrinterColumn> {
    let declared: Vec<PrinterColumn> = version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let path = c["jsonPath"].as_str()?;
            Some(PrinterColumn {
                name: c["name"].as_str()?.to_owned(),
                kind: c["type"].as_str().unwrap_or("string").to_owned(),
                format: c["format"].as_str().unwrap_or_default().to_owned(),
                description: c["description"].as_str().map_or_else(
                    || format!("Custom resource definition column (in JSONPath format): {path}"),
                    str::to_owned,
                ),
                priority: c["priority"].as_i64().unwrap_or(0),
                path: parse_path(path)?,
            })
        })
        .collect();
    if !declared.is_empty() || version["additionalPrinterColumns"].is_array() {
        return declared;
    }
    vec![PrinterColumn {
        name: "Age".into(),
        kind: "date".into(),
        format: String::new(),
        description:
            "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp"
                .into(),
        priority: 0,
        path: parse_path(".metadata.creationTimestamp").expect("a simple path"),
    }]
}

/// One cell, typed as the column declares; null when the value is missing or mistyped.
fn cell(column: &PrinterColumn, object: &Value, now: OffsetDateTime) -> Value {
    let Some(value) = lookup(object, &column.path).filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match column.kind.as_str() {
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => value.as_f64().map_or(Value::Null, Value::from),
        "boolean" => value.as_bool().map_or(Value::Null, Value::from),
        "date" => match value.as_str() {
            Some(_) if printing::timestamp(value).is_some() => printing::since(value, now).into(),
            Some(_) => "<invalid>".into(),
            None => Value::Null,
        },
        // Strings print as JSONPath prints: scalars bare, objects and lists as JSON.
        _ => match value {
            Value::String(s) => s.clone().into(),
            other => other.to_string().into(),
        },
    }
}

/// The Table of one custom resource or of a list of them.
pub fn render(value: &Value, include: Include, columns: &[PrinterColumn]) -> Value {
    let now = OffsetDateTime::now_utc();
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    })];
    definitions.extend(columns.iter().map(|c| {
        json!({
            "name": c.name, "type": c.kind, "format": c.format,
            "description": c.description, "priority": c.priority,
        })
    }));
    let row = |object: &Value| {
        let mut cells = vec![json!(name_of(object))];
        cells.extend(columns.iter().map(|c| cell(c, object, now)));
        let mut row = json!({ "cells": cells });
        match include {
            Include::None => {}
            Include::Metadata => {
                row["object"] = json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object["metadata"],
                });
            }
            Include::Object => row["object"] = object.clone(),
        }
        row
    };
    let (rows, mut metadata) = match value["items"].as_array() {
        Some(items) => (
            items.iter().map(row).collect::<Vec<_>>(),
            json!({
                "resourceVersion": value["metadata"]["resourceVersion"],
                "continue": value["metadata"]["continue"],
            }),
        ),
        None => (
            vec![row(value)],
            json!({ "resourceVersion": value["metadata"]["resourceVersion"] }),
        ),
    };
    if let Some(map) = metadata.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_paths_parse_into_fields_and_indexes() {
        assert_eq!(
            parse_path(".status.conditions[0].type"),
            Some(vec![
                Step::Field("status".into()),
                Step::Field("conditions".into()),
                Step::Index(0),
                Step::Field("type".into()),
            ])
        );
        assert_eq!(
            parse_path("{.metadata.labels['app.kubernetes.io/name']}"),
            Some(vec![
                Step::Field("metadata".into()),
                Step::Field("labels".into()),
                Step::Field("app.kubernetes.io/name".into()),
            ])
        );
        assert_eq!(parse_path(".items[*].name"), None);
        assert_eq!(parse_path("spec"), None);
    }

    #[test]
    fn cells_follow_the_declared_types() {
        let version = json!({ "additionalPrinterColumns": [
            { "name": "Size", "type": "string", "jsonPath": ".spec.size" },
            { "name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas" },
            { "name": "Missing", "type": "string", "jsonPath": ".spec.nothing" },
            { "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp" },
        ]});
        let columns = of_version(&version);
        let widget = json!({
            "metadata": { "name": "w", "creationTimestamp": "2000-01-01T00:00:00Z" },
            "spec": { "size": "small", "replicas": 3 },
        });
        let table = render(&widget, Include::None, &columns);
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[0], "w");
        assert_eq!(cells[1], "small");
        assert_eq!(cells[2], 3);
        assert_eq!(cells[3], Value::Null);
        assert!(cells[4].as_str().unwrap().ends_with('y'), "{}", cells[4]);
        assert_eq!(table["columnDefinitions"][2]["name"], "Replicas");
    }

    #[test]
    fn a_crd_without_columns_prints_age() {
        let columns = of_version(&json!({}));
        assert_eq!(columns.len(), 1);
        assert_eq!(
            (columns[0].name.as_str(), columns[0].kind.as_str()),
            ("Age", "date")
        );
    }
}
