//! Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` answers a
//! `Table` of rows, as kubectl's `get` asks for. Kinds without columns of their own get
//! upstream's default columns, Name and Created At.

use serde_json::{Value, json};

use r8s_api::kinds::Kind;

use crate::objects::name_of;

/// Whether the client asked for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let params: Vec<&str> = first.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

/// What a row carries besides its cells: `includeObject=None|Metadata|Object`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(raw_query: Option<&str>) -> Self {
        let value = raw_query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "includeObject")
                .map(|(_, v)| v.into_owned())
        });
        match value.as_deref() {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

fn columns() -> Value {
    json!([
        { "name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "priority": 0 },
        { "name": "Created At", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", "priority": 0 },
    ])
}

fn kind_columns(kind: &dyn Kind) -> Value {
    match kind.columns() {
        Some(columns) => columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.kind,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
        None => columns(),
    }
}

fn row(object: &Value, include: Include, kind: &dyn Kind) -> Value {
    let cells = match kind.columns() {
        Some(_) => Value::Array(kind.cells(object)),
        None => json!([name_of(object), object["metadata"]["creationTimestamp"]]),
    };
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
}

/// A Table of one object or of a list's items, with the kind's own columns when it has them.
pub fn render(value: &Value, include: Include, kind: &dyn Kind) -> Value {
    let (rows, metadata) = match value["items"].as_array() {
        Some(items) => (
            items
                .iter()
                .map(|o| row(o, include, kind))
                .collect::<Vec<_>>(),
            json!({
                "resourceVersion": value["metadata"]["resourceVersion"],
                "continue": value["metadata"]["continue"],
            }),
        ),
        None => (
            vec![row(value, include, kind)],
            json!({ "resourceVersion": value["metadata"]["resourceVersion"] }),
        ),
    };
    let mut metadata = metadata;
    if let Some(map) = metadata.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": kind_columns(kind),
        "rows": rows,
    })
}
