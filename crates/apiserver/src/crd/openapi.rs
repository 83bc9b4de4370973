//! OpenAPI v3 documents of CRD-served group versions, as `kubectl explain` and kubectl's
//! field-validation probe read them: each kind's schema (with apiVersion, kind and metadata),
//! its list kind, and the object paths with a PATCH that takes `fieldValidation`.

use std::sync::LazyLock;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::catalogue::{self, Served};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

/// The ObjectMeta and ListMeta schemas (and what they reference), from the built-in documents.
static META_SCHEMAS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let Some(doc) = crate::openapi::v3("apis/apiextensions.k8s.io/v1") else {
        return Map::new();
    };
    let doc: Value = serde_json::from_slice(doc).unwrap_or_default();
    doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| name.starts_with(META))
        .map(|(name, schema)| (name.clone(), schema.clone()))
        .collect()
});

/// `com.example.v1.Widget`: upstream's name for a CRD kind's definition.
fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

fn reference(name: &str) -> Value {
    json!({ "allOf": [{ "$ref": format!("#/components/schemas/{name}") }] })
}

fn kind_schema(served: &Served) -> Value {
    let r = served.resource;
    let mut schema = served
        .schema
        .cloned()
        .unwrap_or_else(|| json!({ "type": "object" }));
    let properties = &mut schema["properties"];
    properties["apiVersion"] = json!({ "type": "string", "description": "APIVersion defines the versioned schema of this representation of an object." });
    properties["kind"] = json!({ "type": "string", "description": "Kind is a string value representing the REST resource this object represents." });
    let mut metadata = reference(&format!("{META}ObjectMeta"));
    metadata["description"] = json!(
        "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
    );
    properties["metadata"] = metadata;
    schema["x-kubernetes-group-version-kind"] =
        json!([{ "group": r.group, "version": r.version, "kind": r.kind }]);
    schema
}

fn list_schema(served: &Served, item: &str) -> Value {
    let r = served.resource;
    json!({
        "type": "object",
        "description": format!("{}List is a list of {}", r.kind, r.kind),
        "required": ["items"],
        "properties": {
            "apiVersion": { "type": "string" },
            "kind": { "type": "string" },
            "items": { "type": "array", "items": reference(item) },
            "metadata": reference(&format!("{META}ListMeta")),
        },
        "x-kubernetes-group-version-kind": [{ "group": r.group, "version": r.version, "kind": format!("{}List", r.kind) }],
    })
}

fn object_paths(served: &Served, item: &str, paths: &mut Map<String, Value>) {
    let r = served.resource;
    let collection = match r.namespaced {
        true => format!(
            "/apis/{}/{}/namespaces/{{namespace}}/{}",
            r.group, r.version, r.plural
        ),
        false => format!("/apis/{}/{}/{}", r.group, r.version, r.plural),
    };
    let gvk = json!({ "group": r.group, "version": r.version, "kind": r.kind });
    let query = |name: &str| json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } });
    let object = json!({ "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{item}") } } } });
    let content = object["content"].clone();
    let operation = |verb: &str| {
        json!({
            "operationId": format!("{verb}{}", r.kind),
            "x-kubernetes-action": verb,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
            "responses": { "200": { "description": "OK", "content": content } },
        })
    };
    let mut patch = operation("patch");
    patch["requestBody"] = json!({ "content": {
        "application/json-patch+json": { "schema": { "type": "object" } },
        "application/merge-patch+json": { "schema": { "type": "object" } },
        "application/apply-patch+yaml": { "schema": { "type": "object" } },
    }});
    let mut put = operation("put");
    put["requestBody"] = object.clone();
    let mut post = operation("post");
    post["requestBody"] = object;
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({ "get": operation("get"), "put": put, "patch": patch, "delete": operation("delete") }),
    );
    paths.insert(
        collection,
        json!({ "get": operation("list"), "post": post }),
    );
}

/// The document of one CRD group version (`apis/<group>/<version>`), if one is served.
pub fn v3(path: &str) -> Option<Bytes> {
    let path = path.trim_matches('/');
    let (group, version) = path.strip_prefix("apis/")?.split_once('/')?;
    let table = catalogue::table();
    let served: Vec<_> = table
        .served
        .iter()
        .filter(|s| s.resource.group == group && s.resource.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut schemas = META_SCHEMAS.clone();
    let mut paths = Map::new();
    for s in served {
        let r = s.resource;
        let item = definition_name(r.group, r.version, r.kind);
        let list = definition_name(r.group, r.version, &format!("{}List", r.kind));
        schemas.insert(item.clone(), kind_schema(s));
        schemas.insert(list, list_schema(s, &item));
        object_paths(s, &item, &mut paths);
    }
    let doc = json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes CRD Swagger", "version": "v0.1.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    });
    Some(Bytes::from(doc.to_string()))
}

/// The `/openapi/v3` index: the built-in entries and one per CRD group version.
pub fn v3_index(built_in: &Bytes) -> Bytes {
    let table = catalogue::table();
    if table.served.is_empty() {
        return built_in.clone();
    }
    let mut index: Value =
        serde_json::from_slice(built_in).unwrap_or_else(|_| json!({ "paths": {} }));
    for (group, versions) in &table.groups {
        for version in versions {
            let key = format!("apis/{group}/{version}");
            let Some(doc) = v3(&key) else { continue };
            let hash: String = Sha512::digest(&doc)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            index["paths"][&key] =
                json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}") });
        }
    }
    Bytes::from(index.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_names_reverse_the_group() {
        assert_eq!(
            definition_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }
}
