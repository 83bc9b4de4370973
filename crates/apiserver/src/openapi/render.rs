//! Writes path items and definitions as the two documents kube-apiserver serves: one Swagger 2.0
//! document of everything (`/openapi/v2`) and one OpenAPI 3.0 document per group version
//! (`/openapi/v3/apis/<group>/<version>`), each with exactly the definitions its paths reach.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::definitions::{Definitions, Dialect};
use super::operations::{GroupVersionPaths, Operation, PathItem, Payload};
use super::parameters::Param;

/// Upstream's generated documents say `unversioned` too.
fn info() -> Value {
    json!({"title": "Kubernetes", "version": "unversioned"})
}

fn bearer_token() -> Value {
    json!({
        "description": "Bearer Token authentication",
        "in": "header",
        "name": "authorization",
        "type": "apiKey",
    })
}

/// The Swagger 2.0 document of every group version.
pub fn swagger(groups: &[GroupVersionPaths], definitions: &Definitions) -> Value {
    let mut writer = Writer::new(Dialect::Swagger2);
    let mut paths = Map::new();
    for item in groups.iter().flat_map(|gv| &gv.items) {
        paths.insert(item.path.clone(), writer.path_item(item));
    }
    json!({
        "definitions": writer.definitions(definitions, None),
        "info": info(),
        "paths": paths,
        "security": [{"BearerToken": []}],
        "securityDefinitions": {"BearerToken": bearer_token()},
        "swagger": "2.0",
    })
}

/// The OpenAPI 3.0 document of one group version.
pub fn openapi3(gv: &GroupVersionPaths, definitions: &Definitions) -> Value {
    let mut writer = Writer::new(Dialect::OpenApi3);
    let mut paths = Map::new();
    for item in &gv.items {
        paths.insert(item.path.clone(), writer.path_item(item));
    }
    json!({
        "components": {
            "schemas": writer.definitions(definitions, Some((gv.group, gv.version))),
            "securitySchemes": {"BearerToken": bearer_token()},
        },
        "info": info(),
        "openapi": "3.0.0",
        "paths": paths,
        "security": [{"BearerToken": []}],
    })
}

/// Renders operations in one dialect, remembering which definitions they refer to.
struct Writer {
    dialect: Dialect,
    referenced: BTreeSet<String>,
}

impl Writer {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            referenced: BTreeSet::new(),
        }
    }

    /// Every referenced definition and what those reference, in the dialect's shape.
    fn definitions(&self, definitions: &Definitions, group_version: Option<(&str, &str)>) -> Value {
        let names = definitions.closure(self.referenced.iter().cloned());
        let rendered: Map<String, Value> = names
            .into_iter()
            .filter_map(|name| {
                let schema = definitions.render(&name, self.dialect, group_version)?;
                Some((name, schema))
            })
            .collect();
        Value::Object(rendered)
    }

    fn path_item(&mut self, item: &PathItem) -> Value {
        let mut out = Map::new();
        if !item.params.is_empty() {
            out.insert("parameters".to_owned(), self.params(&item.params));
        }
        for op in &item.operations {
            let rendered = self.operation(op);
            out.insert(op.method.to_owned(), rendered);
        }
        Value::Object(out)
    }

    fn params(&self, params: &[Param]) -> Value {
        Value::Array(params.iter().map(|p| self.param(p)).collect())
    }

    fn param(&self, param: &Param) -> Value {
        let mut out = json!({
            "description": param.description,
            "in": param.location.as_str(),
            "name": param.name,
        });
        if param.required {
            out["required"] = Value::Bool(true);
        }
        // Upstream marks every parameter uniqueItems, an artefact of its generator kept so
        // documents compare equal in shape.
        let ty = json!({"type": param.ty.as_str(), "uniqueItems": true});
        match self.dialect {
            Dialect::Swagger2 => merge(&mut out, ty),
            Dialect::OpenApi3 => out["schema"] = ty,
        }
        out
    }

    fn schema(&mut self, payload: &Payload) -> Value {
        match payload {
            Payload::Definition(name) => {
                self.referenced.insert(name.clone());
                json!({"$ref": self.dialect.reference(name)})
            }
            Payload::Text => json!({"type": "string"}),
        }
    }

    fn operation(&mut self, op: &Operation) -> Value {
        let mut out = json!({
            "description": op.description,
            "operationId": op.id,
            "tags": [op.tag],
        });
        let mut params: Vec<Value> = op.params.iter().map(|p| self.param(p)).collect();
        let mut responses = Map::new();
        for reply in &op.replies {
            let mut response = json!({"description": reply.description()});
            if let Some(payload) = &reply.payload {
                let schema = self.schema(payload);
                match self.dialect {
                    Dialect::Swagger2 => response["schema"] = schema,
                    Dialect::OpenApi3 => response["content"] = content(reply.media, &schema),
                }
            }
            responses.insert(reply.code.to_string(), response);
        }
        out["responses"] = Value::Object(responses);
        match self.dialect {
            Dialect::Swagger2 => {
                let consumes = op.body.as_ref().map_or(&["*/*"][..], |b| b.media);
                out["consumes"] = json!(consumes);
                let produces: BTreeSet<&str> = op
                    .replies
                    .iter()
                    .flat_map(|r| r.media.iter().copied())
                    .collect();
                out["produces"] = json!(produces);
                out["schemes"] = json!(["https"]);
                if let Some(body) = &op.body {
                    let schema = self.schema(&body.payload);
                    params.insert(
                        0,
                        json!({"in": "body", "name": "body", "required": body.required, "schema": schema}),
                    );
                }
            }
            Dialect::OpenApi3 => {
                if let Some(body) = &op.body {
                    let schema = self.schema(&body.payload);
                    let mut request = json!({"content": content(body.media, &schema)});
                    if body.required {
                        request["required"] = Value::Bool(true);
                    }
                    out["requestBody"] = request;
                }
            }
        }
        if !params.is_empty() {
            out["parameters"] = Value::Array(params);
        }
        if let Some(action) = op.action {
            out["x-kubernetes-action"] = json!(action);
        }
        if let Some(gvk) = op.kind {
            out["x-kubernetes-group-version-kind"] = gvk.to_json();
        }
        out
    }
}

/// An OpenAPI 3 `content` map: the same schema under every media type.
fn content(media: &[&str], schema: &Value) -> Value {
    let map: Map<String, Value> = media
        .iter()
        .map(|m| ((*m).to_owned(), json!({"schema": schema})))
        .collect();
    Value::Object(map)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}
