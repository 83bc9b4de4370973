//! Discovery documents, built from the catalogue: the legacy ones (`/api`, `/apis`,
//! `/apis/<group>`, `/api/v1`, `/apis/<group>/<version>`) and the aggregated
//! `apidiscovery.k8s.io/v2` lists kubectl asks for first.

use r8s_api::Resource;
use serde_json::{Value, json};

/// The media type of aggregated discovery responses.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts aggregated discovery (v2).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=APIGroupDiscoveryList")
            && params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
    })
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "emulationMajor": "1",
        "emulationMinor": "37",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "36",
        "gitVersion": concat!("v1.37.0+r8s-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group_json(group: &r8s_api::GroupVersions) -> Value {
    let versions: Vec<Value> = group
        .versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{}/{v}", group.group), "version": v }))
        .collect();
    json!({
        "name": group.group,
        "versions": versions,
        "preferredVersion": {
            "groupVersion": format!("{}/{}", group.group, group.preferred),
            "version": group.preferred,
        },
    })
}

pub fn groups() -> Value {
    let groups: Vec<Value> = crate::crd::groups().iter().map(group_json).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn group(name: &str) -> Option<Value> {
    let groups = crate::crd::groups();
    let group = groups.iter().find(|g| g.group == name)?;
    let mut doc = group_json(group);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static Resource> {
    r8s_api::catalogue()
        .iter()
        .filter(move |r| r.group == group && r.version == version)
        .chain(crate::crd::resources_of(group, version))
}

/// `/api/v1` or `/apis/<group>/<version>`: an APIResourceList, subresources as `pods/status`.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in resources_of(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if sub.group != r.group || sub.version != r.version {
                entry["group"] = json!(sub.group);
                entry["version"] = json!(sub.version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

fn aggregated_version(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = resources_of(group, version)
        .map(|r| {
            let subresources: Vec<Value> = r
                .subresources
                .iter()
                .map(|s| {
                    json!({
                        "subresource": s.name,
                        "responseKind": { "group": s.group, "version": s.version, "kind": s.kind },
                        "verbs": s.verbs,
                    })
                })
                .collect();
            let mut entry = json!({
                "resource": r.plural,
                "responseKind": { "group": r.group, "version": r.version, "kind": r.kind },
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                entry["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                entry["categories"] = json!(r.categories);
            }
            if !subresources.is_empty() {
                entry["subresources"] = json!(subresources);
            }
            entry
        })
        .collect();
    json!({ "version": version, "resources": resources, "freshness": "Current" })
}

fn aggregated_list(items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// Aggregated discovery for `/api` (the core group).
pub fn aggregated_core() -> Value {
    aggregated_list(vec![json!({
        "metadata": { "creationTimestamp": null },
        "versions": [aggregated_version("", "v1")],
    })])
}

/// Aggregated discovery for `/apis` (every other group).
pub fn aggregated_groups() -> Value {
    let items = crate::crd::groups()
        .iter()
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|v| aggregated_version(g.group, v))
                .collect();
            json!({ "metadata": { "name": g.group, "creationTimestamp": null }, "versions": versions })
        })
        .collect();
    aggregated_list(items)
}
