//! Field management: `metadata.managedFields` on every write, and server-side apply
//! (`application/apply-patch+yaml`), with upstream's structured-merge-diff semantics.
//!
//! `fieldset` holds sets of field paths and their `fieldsV1` form, `typed` walks objects through
//! their schema (fields of an object, comparison), `merge` merges and removes fields,
//! `entries` reads and writes managedFields, `apply` holds the ownership rules. This module is
//! the registry's door: it knows resources and requests, the others only objects and schemas.

mod apply;
mod entries;
mod fieldset;
mod merge;
mod typed;

#[cfg(test)]
mod tests;

use http::StatusCode;
use r8s_api::Resource;
use r8s_api::kinds;
use serde_json::{Value, json};

use crate::objects;
use crate::schema::Schema;
use crate::status::ApiError;

pub use apply::Writer;
use apply::{ApplyError, LAST_APPLIED, Scope};
use entries::{Entry, Sent};

/// Upstream's limit on a field manager's name.
const MAX_MANAGER_LENGTH: usize = 128;
/// Upstream's limit on all annotations together; a last-applied copy past it is not kept.
const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// The manager a write is recorded under: `fieldManager`, else the User-Agent up to its first
/// `/` (printable characters, at most 128 bytes), as upstream derives it.
pub fn manager_name(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(manager) = field_manager.filter(|m| !m.is_empty()) {
        return manager.to_owned();
    }
    let prefix = user_agent
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let mut name = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if name.len() + c.len_utf8() > MAX_MANAGER_LENGTH {
            break;
        }
        name.push(c);
    }
    name
}

/// Checks `fieldManager` (and `force`) as upstream validates create, update and patch
/// options; `options_kind` is `CreateOptions`, `UpdateOptions` or `PatchOptions`.
pub fn validate_options(
    options_kind: &str,
    field_manager: Option<&str>,
    applying: bool,
    force_given: bool,
) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    let manager = field_manager.unwrap_or_default();
    if applying && manager.is_empty() {
        problems.push((
            "fieldManager".to_owned(),
            "Required value: is required for apply patch".to_owned(),
        ));
    }
    if !applying && force_given {
        problems.push((
            "force".to_owned(),
            "Forbidden: may not be specified for non-apply patch".to_owned(),
        ));
    }
    if manager.len() > MAX_MANAGER_LENGTH {
        problems.push((
            "fieldManager".to_owned(),
            format!("Too long: may not be more than {MAX_MANAGER_LENGTH} bytes"),
        ));
    }
    for (i, c) in manager.char_indices() {
        if c.is_control() {
            problems.push((
                "fieldManager".to_owned(),
                format!(
                    "Invalid value: {manager:?}: invalid character U+{:04X} (at position {i})",
                    c as u32
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(options_kind, "meta.k8s.io", "", problems))
    }
}

/// The fields writers to `resource` (or one of its subresources) can own.
fn scope(resource: &Resource, subresource: Option<&str>) -> Scope {
    let ty = typed::Ty::of(Schema::of_kind(
        resource.group,
        resource.version,
        resource.kind,
    ));
    let kind = kinds::behaviour(resource);
    match subresource {
        Some(sub) => Scope {
            ty,
            // Scale writes `spec.replicas` through its own view of the object.
            only: Some(kind.subresource_fields(sub).unwrap_or(if sub == "scale" {
                &["spec"]
            } else {
                &[]
            })),
            reset: Vec::new(),
        },
        None => Scope {
            ty,
            only: None,
            reset: resource
                .subresources
                .iter()
                .filter_map(|s| kind.subresource_fields(s.name))
                .flatten()
                .copied()
                .filter(|f| *f != "spec")
                .collect(),
        },
    }
}

/// Records an Update (create, update, any non-apply patch, subresource writes) in `new`'s
/// managedFields. `live` is none on create. Managed fields a client sent are honoured as
/// upstream does: `[]` or `[{}]` resets, valid entries replace, anything else keeps the live
/// ones; subresource writes always keep the live ones.
pub fn record_update(
    resource: &Resource,
    subresource: Option<&str>,
    live: Option<&Value>,
    new: &mut Value,
    manager: &str,
) {
    let live_entries = live.map(|l| entries::decode(l).unwrap_or_default());
    let base = match (subresource, entries::sent(new)) {
        (None, Sent::Reset) => Vec::new(),
        (None, Sent::Entries(sent)) => sent,
        _ => live_entries.clone().unwrap_or_default(),
    };
    let api_version = resource.api_version();
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource: subresource.unwrap_or_default(),
    };
    let empty = json!({});
    let scope = scope(resource, subresource);
    let now = objects::now_rfc3339();
    let updated = apply::update(
        &scope,
        live.unwrap_or(&empty),
        new,
        base.clone(),
        &writer,
        &now,
    )
    .map(|mut entries| {
        // An Update takes fields from everyone without conflicts.
        release_in_other_versions(
            resource,
            subresource,
            live.unwrap_or(&empty),
            new,
            &mut entries,
        );
        entries
    });
    match updated {
        // Unchanged entries are written back as they were.
        Ok(entries) if Some(&entries) == live_entries.as_ref() => {
            restore(new, live);
        }
        Ok(entries) => entries::encode(new, entries),
        // An object the schema cannot walk keeps the entries it had, as upstream does.
        Err(e) => {
            tracing::debug!(error = %e, kind = resource.kind, "managed fields not updated");
            restore(new, live);
        }
    }
}

/// Puts the live object's managedFields, exactly as stored, on `new`.
fn restore(new: &mut Value, live: Option<&Value>) {
    let kept = live
        .and_then(|l| l["metadata"].get("managedFields"))
        .cloned();
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        match kept {
            Some(kept) => meta.insert("managedFields".into(), kept),
            None => meta.remove("managedFields"),
        };
    }
}

/// Server-side apply of `config` by `manager` over `live` (none: the object is created).
/// Answers the merged object carrying its new managedFields.
pub fn apply(
    resource: &Resource,
    subresource: Option<&str>,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    if config["metadata"]
        .get("managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let live_entries = match live {
        Some(live) => entries::decode(live)
            .map_err(|e| ApiError::internal(format!("failed to decode managed fields: {e}")))?,
        None => Vec::new(),
    };
    let api_version = resource.api_version();
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource: subresource.unwrap_or_default(),
    };
    let scope = scope(resource, subresource);
    let now = objects::now_rfc3339();
    let applied = apply::apply(&scope, live, config, live_entries, &writer, force, &now).map_err(
        |e| match e {
            ApplyError::Conflicts(conflicts) => conflict_error(&conflicts),
            ApplyError::Invalid(message) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("failed to create typed patch object: {message}"),
            ),
        },
    )?;
    let mut object = applied.object;
    let mut entries = applied.entries;
    if let Some(live) = live {
        let taken = release_in_other_versions(resource, subresource, live, &object, &mut entries);
        if !force && !taken.0.is_empty() {
            return Err(conflict_error(&taken));
        }
    }
    if manager == "kubectl" {
        keep_last_applied(&mut object, config);
    }
    entries::encode(&mut object, entries);
    Ok(object)
}

/// Managers that wrote through another version of the resource (events.k8s.io for a core
/// event, autoscaling/v1 for a v2 autoscaler) lose the fields a write changed as their version
/// names them: the objects are converted to that version and compared there, as upstream's
/// field manager does; answers what each of them lost. Entries of versions the catalogue does
/// not serve are left alone.
fn release_in_other_versions(
    resource: &Resource,
    subresource: Option<&str>,
    live: &Value,
    new: &Value,
    entries: &mut Vec<Entry>,
) -> apply::Conflicts {
    let mut taken = Vec::new();
    let own = resource.api_version();
    let mut versions: Vec<String> = entries
        .iter()
        .map(|e| e.api_version.clone())
        .filter(|v| *v != own)
        .collect();
    versions.sort();
    versions.dedup();
    let writer = kinds::behaviour(resource);
    for version in versions {
        let prefix = resource.storage_prefix();
        let Some(other) = r8s_api::catalogue()
            .iter()
            .find(|r| r.api_version() == version && r.storage_prefix() == prefix)
        else {
            continue;
        };
        let reader = kinds::behaviour(other);
        let as_other = |object: &Value| reader.to_served(writer.to_storage(object.clone()));
        let scope = scope(other, subresource);
        let Ok(comparison) = typed::compare(&as_other(live), &as_other(new), scope.ty) else {
            continue;
        };
        let released = scope
            .filter(comparison.changed())
            .union(&scope.filter(comparison.removed));
        for entry in entries.iter_mut().filter(|e| e.api_version == version) {
            let lost = entry.fields.intersection(&released);
            if !lost.is_empty() {
                taken.push((entry.clone(), lost));
                entry.fields = entry.fields.difference(&released);
            }
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    apply::Conflicts(taken)
}

/// `kubectl apply --server-side` keeps a client-side apply annotation current, so switching
/// back to client-side apply sees what was applied last.
fn keep_last_applied(object: &mut Value, config: &Value) {
    if object["metadata"]["annotations"]
        .get(LAST_APPLIED)
        .is_none()
    {
        return;
    }
    let mut last = config.clone();
    if let Some(annotations) = last["metadata"]
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty()
            && let Some(meta) = last["metadata"].as_object_mut()
        {
            meta.remove("annotations");
        }
    }
    let text = last.to_string();
    if text.len() <= MAX_ANNOTATION_BYTES {
        object["metadata"]["annotations"][LAST_APPLIED] = Value::String(text);
    }
}

/// 409 naming each manager and field, as upstream words it.
fn conflict_error(conflicts: &apply::Conflicts) -> ApiError {
    let mut listed: Vec<(String, String)> = Vec::new();
    for (entry, fields) in &conflicts.0 {
        for path in fields.paths() {
            listed.push((entry.describe(), fieldset::path_string(&path)));
        }
    }
    let message = if let [(manager, field)] = listed.as_slice() {
        format!("Apply failed with 1 conflict: conflict with {manager}: {field}")
    } else {
        let mut managers: Vec<&String> = listed.iter().map(|(m, _)| m).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for manager in managers {
            lines.push(format!("conflicts with {manager}:"));
            for (_, field) in listed.iter().filter(|(m, _)| m == manager) {
                lines.push(format!("- {field}"));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            listed.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = listed
        .iter()
        .map(|(manager, field)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {manager}"),
                "field": field,
            })
        })
        .collect();
    ApiError {
        details: Some(json!({ "causes": causes })),
        ..ApiError::new(StatusCode::CONFLICT, "Conflict", message)
    }
}
