use std::collections::BTreeSet;

use serde_json::Value;

use super::definitions::{Definitions, INT_OR_STRING};
use super::*;

fn parse(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).expect("documents are JSON")
}

fn core_v1() -> Value {
    parse(v3("api/v1").expect("api/v1 is served"))
}

fn schema<'a>(document: &'a Value, name: &str) -> &'a Value {
    let schema = &document["components"]["schemas"][name];
    assert!(schema.is_object(), "{name} is missing");
    schema
}

/// Every `$ref` string in `value`, with the JSON path it was found at.
fn refs(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => found.push((at.to_owned(), target.clone())),
                    _ => refs(child, &format!("{at}/{key}"), found),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                refs(item, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

fn assert_refs_resolve(document: &Value, prefix: &str, targets: &Value) {
    let mut found = Vec::new();
    refs(document, "", &mut found);
    assert!(!found.is_empty());
    for (at, target) in found {
        let name = target
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{at}: {target} is not a {prefix} reference"));
        assert!(
            targets.get(name).is_some(),
            "{at}: {target} does not resolve"
        );
    }
}

#[test]
fn v3_index_lists_every_served_group_version_by_content_hash() {
    let index = parse(v3_index());
    let paths = index["paths"].as_object().expect("the index has paths");
    let served: BTreeSet<String> = r8s_api::catalogue()
        .iter()
        .map(|r| match r.group {
            "" => format!("api/{}", r.version),
            group => format!("apis/{group}/{}", r.version),
        })
        .collect();
    assert_eq!(paths.keys().cloned().collect::<BTreeSet<_>>(), served);
    for (key, entry) in paths {
        let document = v3(key).expect("every listed document is served");
        let url = entry["serverRelativeURL"].as_str().expect("a URL");
        let hash = url
            .strip_prefix(&format!("/openapi/v3/{key}?hash="))
            .expect("the URL names the document");
        assert_eq!(hash, content_hash(document));
        assert_eq!(hash.len(), 128);
    }
    assert!(v3("apis/apps/v1beta1").is_none());
}

#[test]
fn core_v1_describes_configmap_in_upstream_shape() {
    let document = core_v1();
    assert_eq!(document["openapi"], "3.0.0");
    let config_map = schema(&document, "io.k8s.api.core.v1.ConfigMap");
    let properties = &config_map["properties"];
    for field in [
        "apiVersion",
        "binaryData",
        "data",
        "immutable",
        "kind",
        "metadata",
    ] {
        assert!(
            properties[field].is_object(),
            "ConfigMap.{field} is missing"
        );
    }
    assert_eq!(config_map["type"], "object");
    assert_eq!(properties["data"]["type"], "object");
    assert_eq!(properties["data"]["additionalProperties"]["type"], "string");
    assert!(properties["kind"].get("enum").is_none());
    assert_eq!(
        properties["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        config_map["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "", "kind": "ConfigMap", "version": "v1"}])
    );
}

#[test]
fn configmap_patch_takes_field_validation_and_names_its_kind() {
    let document = core_v1();
    let patch = &document["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedConfigMap");
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "", "kind": "ConfigMap", "version": "v1"})
    );
    let params = patch["parameters"]
        .as_array()
        .expect("patch has parameters");
    let takes = |name: &str| {
        params
            .iter()
            .any(|p| p["name"] == name && p["in"] == "query")
    };
    for name in ["fieldValidation", "fieldManager", "dryRun", "force"] {
        assert!(takes(name), "patch lacks {name}");
    }
    let content = &patch["requestBody"]["content"];
    assert!(content["application/strategic-merge-patch+json"].is_object());
    assert!(content["application/apply-patch+yaml"].is_object());
}

#[test]
fn configmaps_have_every_verb_and_a_cluster_wide_list() {
    let document = core_v1();
    let paths = &document["paths"];
    let collection = &paths["/api/v1/namespaces/{namespace}/configmaps"];
    assert_eq!(collection["get"]["x-kubernetes-action"], "list");
    assert_eq!(collection["post"]["x-kubernetes-action"], "post");
    assert_eq!(
        collection["delete"]["x-kubernetes-action"],
        "deletecollection"
    );
    let list_params = collection["get"]["parameters"].as_array().unwrap();
    for name in [
        "watch",
        "labelSelector",
        "sendInitialEvents",
        "resourceVersionMatch",
    ] {
        assert!(
            list_params.iter().any(|p| p["name"] == name),
            "list lacks {name}"
        );
    }
    assert_eq!(
        collection["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.ConfigMapList"
    );
    let item = &paths["/api/v1/namespaces/{namespace}/configmaps/{name}"];
    for (method, action) in [("get", "get"), ("put", "put"), ("delete", "delete")] {
        assert_eq!(item[method]["x-kubernetes-action"], action);
    }
    assert_eq!(
        paths["/api/v1/configmaps"]["get"]["operationId"],
        "listCoreV1ConfigMapForAllNamespaces"
    );
}

#[test]
fn subresources_carry_their_own_kind() {
    let apps = parse(v3("apis/apps/v1").unwrap());
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["operationId"],
        "patchAppsV1NamespacedDeploymentScale"
    );
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "Scale"
    );
    assert!(schema(&apps, "io.k8s.api.autoscaling.v1.Scale").is_object());
    let core = core_v1();
    let exec = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"];
    assert_eq!(exec["post"]["x-kubernetes-action"], "connect");
    assert_eq!(
        exec["get"]["operationId"],
        "connectCoreV1GetNamespacedPodExec"
    );
    assert!(core["paths"]["/api/v1/nodes/{name}/proxy/{path}"]["get"].is_object());
    let log = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"];
    assert_eq!(log["operationId"], "readCoreV1NamespacedPodLog");
    let eviction = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"];
    assert_eq!(
        eviction["post"]["x-kubernetes-group-version-kind"]["group"],
        "policy"
    );
    assert!(schema(&core, "io.k8s.api.policy.v1.Eviction").is_object());
}

#[test]
fn every_ref_resolves_within_its_document() {
    for (key, document) in &DOCUMENTS.v3 {
        let document = parse(document);
        let schemas = &document["components"]["schemas"];
        assert!(schemas.is_object(), "{key} has no schemas");
        assert_refs_resolve(&document, "#/components/schemas/", schemas);
    }
    let swagger = parse(v2());
    assert_refs_resolve(&swagger, "#/definitions/", &swagger["definitions"]);
}

#[test]
fn pod_containers_merge_by_name() {
    let core = core_v1();
    let swagger = parse(v2());
    for containers in [
        &schema(&core, "io.k8s.api.core.v1.PodSpec")["properties"]["containers"],
        &swagger["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"],
    ] {
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["type"], "array");
    }
}

#[test]
fn deployment_document_reaches_the_pod_template_it_embeds() {
    let apps = parse(v3("apis/apps/v1").unwrap());
    let spec = schema(&apps, "io.k8s.api.apps.v1.DeploymentSpec");
    assert_eq!(
        spec["properties"]["template"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"
    );
    assert!(schema(&apps, "io.k8s.api.core.v1.Container").is_object());
    // Only what the group version's paths reach: no Service in apps/v1.
    assert!(apps["components"]["schemas"]["io.k8s.api.core.v1.Service"].is_null());
}

#[test]
fn meta_kinds_list_only_core_and_their_own_group_version() {
    let apps = parse(v3("apis/apps/v1").unwrap());
    let gvks = schema(&apps, "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")
        ["x-kubernetes-group-version-kind"]
        .as_array()
        .unwrap()
        .clone();
    let groups: Vec<&str> = gvks.iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(groups, ["", "apps"]);
}

#[test]
fn int_or_string_is_a_one_of_in_v3_and_a_formatted_string_in_v2() {
    let apps = parse(v3("apis/apps/v1").unwrap());
    let int_or_string = schema(&apps, INT_OR_STRING);
    assert_eq!(int_or_string["format"], "int-or-string");
    assert_eq!(
        int_or_string["oneOf"],
        serde_json::json!([{"type": "integer"}, {"type": "string"}])
    );
    assert!(int_or_string.get("type").is_none());
    let swagger = parse(v2());
    let int_or_string = &swagger["definitions"][INT_OR_STRING];
    assert_eq!(int_or_string["type"], "string");
    assert_eq!(int_or_string["format"], "int-or-string");
    assert!(int_or_string.get("oneOf").is_none());
}

#[test]
fn v2_is_one_swagger_document_of_everything() {
    let swagger = parse(v2());
    assert_eq!(swagger["swagger"], "2.0");
    let definitions = swagger["definitions"].as_object().unwrap();
    assert!(definitions.contains_key("io.k8s.api.core.v1.ConfigMap"));
    assert!(definitions.contains_key("io.k8s.api.apps.v1.Deployment"));
    let metadata = &definitions["io.k8s.api.core.v1.ConfigMap"]["properties"]["metadata"];
    assert_eq!(
        metadata["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let patch =
        &swagger["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let params = patch["parameters"].as_array().unwrap();
    assert_eq!(params[0]["in"], "body");
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
    );
    assert!(
        patch["consumes"]
            .as_array()
            .unwrap()
            .contains(&"application/strategic-merge-patch+json".into())
    );
}

#[test]
fn every_catalogue_kind_has_an_upstream_schema() {
    let definitions = Definitions::load();
    // The embedded definitions are kube-apiserver's; metrics.k8s.io's are metrics-server's, so
    // its resources are served without paths in the OpenAPI documents.
    for resource in r8s_api::catalogue()
        .iter()
        .filter(|r| r.group != "metrics.k8s.io")
    {
        assert!(
            definitions
                .of_kind(resource.group, resource.version, resource.kind)
                .is_some(),
            "no schema for {} {}",
            resource.api_version(),
            resource.kind
        );
        for sub in resource.subresources {
            let connect = sub.kind.ends_with("Options");
            assert!(
                connect
                    || definitions
                        .of_kind(sub.group, sub.version, sub.kind)
                        .is_some(),
                "no schema for {}/{} ({})",
                resource.plural,
                sub.name,
                sub.kind
            );
        }
    }
    for name in [
        operations::API_RESOURCE_LIST,
        operations::DELETE_OPTIONS,
        operations::PATCH_BODY,
        operations::STATUS,
    ] {
        assert!(definitions.contains(name), "no schema {name}");
    }
}

#[test]
fn the_lean_definitions_drop_documentation_and_keep_structure() {
    let full = Definitions::load();
    let lean = Definitions::load_lean();
    let props = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
    assert!(full.schema(props).unwrap()["description"].is_string());
    assert!(lean.schema(props).unwrap().get("description").is_none());
    // JSONSchemaProps has a field named `description`: a property, not documentation.
    let field = &lean.schema(props).unwrap()["properties"]["description"];
    assert!(field.is_object(), "{field}");
    assert!(field.get("description").is_none());
    // Apart from documentation, the two are the same data.
    fn undocumented(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, v)| !(k.as_str() == "description" && v.is_string()))
                    .map(|(k, v)| (k.clone(), undocumented(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(undocumented).collect()),
            other => other.clone(),
        }
    }
    let config_map = "io.k8s.api.core.v1.ConfigMap";
    assert_eq!(
        lean.of_kind("", "v1", "ConfigMap"),
        full.of_kind("", "v1", "ConfigMap")
    );
    for name in [config_map, props, "io.k8s.api.apps.v1.DeploymentSpec"] {
        assert_eq!(
            lean.schema(name).unwrap(),
            &undocumented(full.schema(name).unwrap())
        );
    }
}
