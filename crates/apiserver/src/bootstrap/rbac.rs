//! Keeps the default RBAC objects in place on every start, the way upstream's RBAC post-start
//! hook reconciles them: missing objects are created; existing ones annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` (or not annotated) get back the rules,
//! subjects, labels and aggregation selectors they lack; nothing an admin added is removed, and
//! objects annotated `"false"` are left alone.

use std::collections::HashMap;

use futures::future::join_all;
use http::StatusCode;
use serde_json::{Map, Value};

use super::rbac_policy::{self, AUTOUPDATE, Kind, PolicyObject};
use crate::objects::Query;
use crate::registry::{Body, Registry};
use crate::router::ResourcePath;

/// What start-up must write for one default object.
#[derive(Debug, PartialEq)]
pub enum Action {
    Create(Value),
    Update(Value),
    /// A binding's roleRef cannot change in place: delete it and create this.
    Recreate(Value),
}

pub async fn ensure(registry: &Registry) -> anyhow::Result<()> {
    // One list per kind instead of a get per object keeps start-up in milliseconds.
    // "Any recent state" (resourceVersion=0) is served as soon as the watch cache is filled,
    // without waiting for it to catch up; a write based on a stale read fails with 409.
    let recent = Query {
        resource_version: Some("0".into()),
        ..Query::default()
    };
    let mut existing: HashMap<(Kind, Option<String>, String), Value> = HashMap::new();
    for kind in Kind::ALL {
        let listing = registry
            .list(&path(kind, None), &recent)
            .await
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", kind.plural()))?
            .into_value();
        for item in listing["items"].as_array().into_iter().flatten() {
            let meta = &item["metadata"];
            let key = (
                kind,
                meta["namespace"].as_str().map(str::to_owned),
                meta["name"].as_str().unwrap_or_default().to_owned(),
            );
            existing.insert(key, item.clone());
        }
    }
    let mut writes: HashMap<Kind, Vec<(PolicyObject, Action)>> = HashMap::new();
    for object in rbac_policy::objects()
        .into_iter()
        .chain(rbac_policy::kubeadm_objects())
    {
        let key = (
            object.kind,
            object.namespace.map(str::to_owned),
            object.name.clone(),
        );
        if let Some(action) = reconcile(object.kind, &object.object, existing.get(&key)) {
            writes
                .entry(object.kind)
                .or_default()
                .push((object, action));
        }
    }
    // Writes of one kind go concurrently so the store batches them into few commits; roles
    // are written before the bindings that refer to them.
    for kind in Kind::ALL {
        let results = join_all(
            writes
                .remove(&kind)
                .unwrap_or_default()
                .into_iter()
                .map(|(object, action)| write(registry, object, action)),
        )
        .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    }
    Ok(())
}

fn path(kind: Kind, namespace: Option<&str>) -> ResourcePath {
    ResourcePath {
        resource: r8s_api::find("rbac.authorization.k8s.io", "v1", kind.plural())
            .expect("catalogue has the RBAC kinds"),
        namespace: namespace.map(str::to_owned),
        name: None,
        subresource: None,
    }
}

async fn write(registry: &Registry, object: PolicyObject, action: Action) -> anyhow::Result<()> {
    let path = path(object.kind, object.namespace);
    let what = || format!("{} {}", object.kind.plural(), object.name);
    let query = super::writer();
    let result = match action {
        Action::Create(value) => registry
            .create(&path, Body { object: value }, &query)
            .await
            .map(drop),
        Action::Update(value) => registry
            .update(&path, &object.name, Body { object: value }, &query)
            .await
            .map(drop),
        Action::Recreate(value) => match registry.delete(&path, &object.name, &query).await {
            Err(e) if e.code != StatusCode::NOT_FOUND => Err(e),
            _ => registry
                .create(&path, Body { object: value }, &query)
                .await
                .map(drop),
        },
    };
    match result {
        Ok(()) => Ok(()),
        // Another server reconciling the same object at the same time got there first.
        Err(e) if e.code == StatusCode::CONFLICT => {
            tracing::info!(object = %what(), "default RBAC object changed concurrently; left as is");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("cannot write {}: {e}", what())),
    }
}

/// What must be written so `existing` has everything `desired` has (None: nothing).
pub fn reconcile(kind: Kind, desired: &Value, existing: Option<&Value>) -> Option<Action> {
    let Some(existing) = existing else {
        return Some(Action::Create(desired.clone()));
    };
    if existing["metadata"]["annotations"][AUTOUPDATE] == "false" {
        return None;
    }
    let mut updated = existing.clone();
    for field in ["labels", "annotations"] {
        add_missing_keys(&mut updated["metadata"][field], &desired["metadata"][field]);
    }
    let mut recreate = false;
    match kind {
        Kind::ClusterRole | Kind::Role => {
            let uncovered = uncovered_rules(
                existing["rules"].as_array().map_or(&[], Vec::as_slice),
                desired["rules"].as_array().map_or(&[], Vec::as_slice),
            );
            if !uncovered.is_empty() {
                append(&mut updated["rules"], uncovered);
            }
            let selectors = &desired["aggregationRule"]["clusterRoleSelectors"];
            if let Some(selectors) = selectors.as_array() {
                let have = &mut updated["aggregationRule"]["clusterRoleSelectors"];
                let missing = missing(have, selectors);
                append(have, missing);
            }
        }
        Kind::ClusterRoleBinding | Kind::RoleBinding => {
            if existing["roleRef"] != desired["roleRef"] {
                updated["roleRef"] = desired["roleRef"].clone();
                recreate = true;
            }
            let have = updated["subjects"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            let missing: Vec<Value> = desired["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|want| !have.iter().any(|h| same_subject(h, want)))
                .cloned()
                .collect();
            append(&mut updated["subjects"], missing);
        }
    }
    if recreate {
        let meta = updated["metadata"]
            .as_object_mut()
            .expect("object metadata");
        for server_set in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
            meta.remove(server_set);
        }
        return Some(Action::Recreate(updated));
    }
    (updated != *existing).then_some(Action::Update(updated))
}

fn add_missing_keys(have: &mut Value, want: &Value) {
    let Some(want) = want.as_object() else { return };
    if !have.is_object() {
        *have = Value::Object(Map::new());
    }
    let have = have.as_object_mut().expect("just made an object");
    for (key, value) in want {
        have.entry(key.clone()).or_insert_with(|| value.clone());
    }
}

fn missing(have: &Value, want: &[Value]) -> Vec<Value> {
    let have = have.as_array().map_or(&[][..], Vec::as_slice);
    want.iter().filter(|w| !have.contains(w)).cloned().collect()
}

/// Subjects are the same whether or not their apiGroup was written out (it has a default).
fn same_subject(a: &Value, b: &Value) -> bool {
    ["kind", "name", "namespace"]
        .iter()
        .all(|f| a[f].as_str().unwrap_or_default() == b[f].as_str().unwrap_or_default())
}

fn append(list: &mut Value, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    list.as_array_mut()
        .expect("just made an array")
        .extend(items);
}

/// The one-verb, one-resource pieces of `wanted` no rule in `owned` allows, as upstream's
/// `validation.Covers` finds them (and upstream's reconciliation appends them).
pub fn uncovered_rules(owned: &[Value], wanted: &[Value]) -> Vec<Value> {
    let mut uncovered: Vec<Value> = Vec::new();
    for piece in wanted.iter().flat_map(breakdown) {
        if !owned.iter().any(|owner| covers(owner, &piece)) && !uncovered.contains(&piece) {
            uncovered.push(piece);
        }
    }
    uncovered
}

fn strings(rule: &Value, field: &str) -> Vec<String> {
    rule[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Splits a rule into pieces of one group, resource, name (if any) and verb, or one URL and verb.
fn breakdown(rule: &Value) -> Vec<Value> {
    let verbs = strings(rule, "verbs");
    let names = strings(rule, "resourceNames");
    let mut pieces = Vec::new();
    for group in strings(rule, "apiGroups") {
        for resource in strings(rule, "resources") {
            for verb in &verbs {
                if names.is_empty() {
                    pieces.push(serde_json::json!({
                        "verbs": [verb], "apiGroups": [group], "resources": [resource],
                    }));
                }
                for name in &names {
                    pieces.push(serde_json::json!({
                        "verbs": [verb], "apiGroups": [group], "resources": [resource],
                        "resourceNames": [name],
                    }));
                }
            }
        }
    }
    for url in strings(rule, "nonResourceURLs") {
        for verb in &verbs {
            pieces.push(serde_json::json!({ "verbs": [verb], "nonResourceURLs": [url] }));
        }
    }
    pieces
}

/// Whether `owner` allows everything `servant` does (upstream's `ruleCovers`).
fn covers(owner: &Value, servant: &Value) -> bool {
    let has_all_or_star = |field: &str| {
        let own = strings(owner, field);
        own.iter().any(|v| v == "*") || strings(servant, field).iter().all(|v| own.contains(v))
    };
    let own_resources = strings(owner, "resources");
    let resources = own_resources.iter().any(|r| r == "*")
        || strings(servant, "resources").iter().all(|resource| {
            own_resources.contains(resource)
                || resource
                    .split_once('/')
                    .is_some_and(|(_, sub)| own_resources.contains(&format!("*/{sub}")))
        });
    let own_urls = strings(owner, "nonResourceURLs");
    let urls = strings(servant, "nonResourceURLs").iter().all(|url| {
        own_urls.iter().any(|own| {
            own == url
                || own
                    .strip_suffix('*')
                    .is_some_and(|prefix| url.starts_with(prefix))
        })
    });
    let own_names = strings(owner, "resourceNames");
    let servant_names = strings(servant, "resourceNames");
    let names = if servant_names.is_empty() {
        own_names.is_empty()
    } else {
        own_names.is_empty() || servant_names.iter().all(|n| own_names.contains(n))
    };
    has_all_or_star("verbs") && has_all_or_star("apiGroups") && resources && urls && names
}

#[cfg(test)]
mod tests;
