//! The CRD controllers upstream's apiextensions-apiserver runs, as one reconcile over the CRD
//! watch cache: naming (`NamesAccepted`, `status.acceptedNames`), establishing (`Established`,
//! after which the resource is served) and finalizing (a deleted CRD's custom resources are
//! removed, then its `customresourcecleanup` finalizer). The served table is rebuilt on every
//! pass, before statuses are written, so a CRD reported Established is already served.

use std::sync::{Arc, Weak};

use r8s_api::kinds::customresourcedefinitions::{CLEANUP_FINALIZER, now_rfc3339};
use r8s_store::RangeOptions;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::cache::Start;
use crate::objects::Query;
use crate::registry::{Body, Registry};
use crate::router::ResourcePath;
use crate::server::State;

use super::catalogue;

const FIELD_MANAGER: &str = "apiextensions-apiserver";

fn crd_resource() -> &'static r8s_api::Resource {
    r8s_api::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("the catalogue has CRDs")
}

/// Every CRD as the watch cache holds it.
pub async fn all(registry: &Registry) -> Vec<Value> {
    let resource = crd_resource();
    match registry.cache.resource(resource).await {
        Ok(cache) => {
            let prefix = format!("{}/", resource.storage_prefix());
            cache
                .snapshot(&prefix)
                .0
                .iter()
                .map(|o| o.value())
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the CRD cache");
            Vec::new()
        }
    }
}

/// Keeps CRD statuses, the served table and deleted CRDs' instances reconciled until the
/// server is gone.
pub async fn run(state: Weak<State>) {
    let Some(strong) = state.upgrade() else {
        return;
    };
    let Some(mut events) = subscribe(&strong).await else {
        return;
    };
    drop(strong);
    loop {
        let Some(strong) = state.upgrade() else {
            return;
        };
        reconcile(&strong.registry).await;
        drop(strong);
        match events.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => {
                let Some(strong) = state.upgrade() else {
                    return;
                };
                match subscribe(&strong).await {
                    Some(fresh) => events = fresh,
                    None => return,
                }
            }
        }
        while events.try_recv().is_ok() {}
    }
}

async fn subscribe(state: &Arc<State>) -> Option<crate::cache::Live> {
    let cache = state.registry.cache.resource(crd_resource()).await.ok()?;
    cache
        .subscribe(Start::After(cache.last_change()), "")
        .ok()
        .map(|s| s.live)
}

fn condition<'a>(crd: &'a Value, type_: &str) -> Option<&'a Value> {
    crd["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Sets a condition, keeping its transition time when the status does not change.
fn set_condition(status: &mut Value, type_: &str, value: &str, reason: &str, message: &str) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"].as_array_mut().expect("an array");
    let since = conditions
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == value)
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(now_rfc3339()));
    let entry = json!({
        "type": type_, "status": value, "reason": reason, "message": message,
        "lastTransitionTime": since,
    });
    match conditions.iter_mut().find(|c| c["type"] == type_) {
        Some(existing) => *existing = entry,
        None => conditions.push(entry),
    }
}

/// The names a CRD asks for, as `status.acceptedNames` holds them (listKind and singular
/// defaulted as upstream does).
fn requested_names(crd: &Value) -> Value {
    let names = &crd["spec"]["names"];
    let kind = names["kind"].as_str().unwrap_or_default();
    let mut accepted = names.clone();
    if accepted["singular"].as_str().is_none_or(str::is_empty) {
        accepted["singular"] = json!(kind.to_lowercase());
    }
    if accepted["listKind"].as_str().is_none_or(str::is_empty) {
        accepted["listKind"] = json!(format!("{kind}List"));
    }
    accepted
}

/// The first of this CRD's names another CRD of its group already holds, with upstream's reason.
fn name_conflict(crd: &Value, names: &Value, others: &[Value]) -> Option<(&'static str, String)> {
    let group = &crd["spec"]["group"];
    let held: Vec<&Value> = others
        .iter()
        .filter(|o| {
            o["metadata"]["name"] != crd["metadata"]["name"] && o["spec"]["group"] == *group
        })
        .map(|o| &o["status"]["acceptedNames"])
        .collect();
    let taken = |value: &Value| {
        value.as_str().filter(|v| !v.is_empty()).is_some_and(|v| {
            held.iter().any(|h| {
                ["plural", "singular"].iter().any(|k| h[*k] == v)
                    || h["shortNames"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s == v))
            })
        })
    };
    let kind_taken = |value: &Value| {
        value
            .as_str()
            .is_some_and(|v| held.iter().any(|h| h["kind"] == v || h["listKind"] == v))
    };
    if taken(&names["plural"]) {
        return Some((
            "PluralConflict",
            format!("{} is already in use", names["plural"]),
        ));
    }
    if taken(&names["singular"]) {
        return Some((
            "SingularConflict",
            format!("{} is already in use", names["singular"]),
        ));
    }
    for short in names["shortNames"].as_array().into_iter().flatten() {
        if taken(short) {
            return Some(("ShortNamesConflict", format!("{short} is already in use")));
        }
    }
    if kind_taken(&names["kind"]) {
        return Some((
            "KindConflict",
            format!("{} is already in use", names["kind"]),
        ));
    }
    if kind_taken(&names["listKind"]) {
        return Some((
            "ListKindConflict",
            format!("{} is already in use", names["listKind"]),
        ));
    }
    None
}

/// The status a CRD should have, given the others (older CRDs keep their names).
pub fn desired_status(crd: &Value, others: &[Value]) -> Value {
    let mut status = crd["status"].clone();
    let names = requested_names(crd);
    match name_conflict(crd, &names, others) {
        None => {
            status["acceptedNames"] = names;
            set_condition(
                &mut status,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
        }
        Some((reason, message)) => {
            set_condition(&mut status, "NamesAccepted", "False", reason, &message);
        }
    }
    let accepted = condition(&json!({ "status": status }), "NamesAccepted")
        .is_some_and(|c| c["status"] == "True");
    let was_established = condition(crd, "Established").is_some_and(|c| c["status"] == "True");
    if accepted || was_established {
        set_condition(
            &mut status,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        );
    } else {
        set_condition(
            &mut status,
            "Established",
            "False",
            "NotAccepted",
            "not all names are accepted",
        );
    }
    status
}

async fn reconcile(registry: &Registry) {
    let mut crds = all(registry).await;
    // Older CRDs keep names a newer one asks for too.
    crds.sort_by(|a, b| {
        let key = |o: &Value| {
            (
                o["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        };
        key(a).cmp(&key(b))
    });
    let stored = crds.clone();
    let mut wanted = Vec::new();
    for i in 0..crds.len() {
        let status = desired_status(&crds[i], &crds[..i]);
        let mut next = crds[i].clone();
        next["status"] = status;
        // Later CRDs are judged against the names this one now holds.
        crds[i]["status"]["acceptedNames"] = next["status"]["acceptedNames"].clone();
        wanted.push(next);
    }
    catalogue::install(&wanted);
    for next in &wanted {
        let name = next["metadata"]["name"].as_str().unwrap_or_default();
        let before = stored.iter().find(|c| c["metadata"]["name"] == name);
        if before.map(|c| &c["status"]) != Some(&next["status"]) {
            write_status(registry, name, next).await;
        }
        if !next["metadata"]["deletionTimestamp"].is_null() {
            finalize(registry, next).await;
        }
    }
}

async fn write_status(registry: &Registry, name: &str, crd: &Value) {
    let path = ResourcePath {
        resource: crd_resource(),
        namespace: None,
        name: Some(name.to_owned()),
        subresource: Some("status".to_owned()),
    };
    let query = Query {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Query::default()
    };
    let body = Body {
        object: crd.clone(),
    };
    // A conflict means the CRD changed: its event brings another pass.
    if let Err(e) = registry.update(&path, name, body, &query).await {
        tracing::debug!(crd = name, error = %e, "cannot write a CRD's status");
    }
}

/// Deletes every instance of a terminating CRD, then lets the CRD go.
async fn finalize(registry: &Registry, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let holds = crd["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == CLEANUP_FINALIZER));
    if !holds {
        return;
    }
    // Every version is stored under one prefix; any served version names it.
    let prefix = match (
        crd["spec"]["group"].as_str(),
        crd["status"]["acceptedNames"]["plural"].as_str(),
    ) {
        (Some(group), Some(plural)) if !plural.is_empty() => format!("/registry/{group}/{plural}"),
        _ => String::new(),
    };
    if !prefix.is_empty() {
        let listed = registry.store.range(&prefix, RangeOptions::default()).await;
        let kvs = match listed {
            Ok(found) => found.kvs,
            Err(e) => {
                tracing::warn!(crd = name, error = %e, "cannot list a deleted CRD's instances");
                return;
            }
        };
        for kv in kvs {
            if let Err(e) = registry.store.delete(&kv.key, None).await {
                tracing::warn!(key = %kv.key, error = %e, "cannot delete a custom resource");
                return;
            }
        }
    }
    let path = ResourcePath {
        resource: crd_resource(),
        namespace: None,
        name: Some(name.to_owned()),
        subresource: None,
    };
    let query = Query {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Query::default()
    };
    let released = registry
        .modify(&path, name, &query, None, |current| {
            let mut next = current.clone();
            if let Some(list) = next["metadata"]["finalizers"].as_array_mut() {
                list.retain(|f| f != CLEANUP_FINALIZER);
            }
            Ok(next)
        })
        .await;
    if let Err(e) = released {
        tracing::debug!(crd = name, error = %e, "cannot release a deleted CRD");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, shorts: &[&str]) -> Value {
        json!({
            "metadata": { "name": name },
            "spec": { "group": "example.com", "names": { "plural": plural, "kind": kind, "shortNames": shorts } },
            "status": {},
        })
    }

    #[test]
    fn free_names_are_accepted_and_established() {
        let widgets = crd("widgets.example.com", "widgets", "Widget", &["wd"]);
        let status = desired_status(&widgets, &[]);
        assert_eq!(status["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(status["acceptedNames"]["singular"], "widget");
        let established = condition(&json!({ "status": status }), "Established")
            .cloned()
            .unwrap();
        assert_eq!(established["status"], "True");
    }

    #[test]
    fn a_short_name_another_crd_holds_is_a_conflict() {
        let mut older = crd("widgets.example.com", "widgets", "Widget", &["wd"]);
        older["status"] = desired_status(&older, &[]);
        let newer = crd("wodgets.example.com", "wodgets", "Wodget", &["wd"]);
        let status = desired_status(&newer, &[older]);
        let wrapped = json!({ "status": status });
        let names = condition(&wrapped, "NamesAccepted").unwrap();
        assert_eq!(
            (
                names["status"].as_str(),
                names["reason"].as_str(),
                names["message"].as_str()
            ),
            (
                Some("False"),
                Some("ShortNamesConflict"),
                Some("\"wd\" is already in use")
            )
        );
        assert_eq!(
            condition(&wrapped, "Established").unwrap()["status"],
            "False"
        );
    }
}
