//! The two ways a write changes field ownership, as upstream's structured-merge-diff updater
//! does it: an Update takes every field it changed from everyone else; an Apply merges the
//! configuration, owns exactly the fields it specifies, removes what it specified last time
//! and nobody owns any more, and fails on changing another manager's fields unless forced.

use serde_json::{Value, json};

use super::entries::{Entry, Operation};
use super::fieldset::{FieldSet, PathElement};
use super::merge::{merge, remove, with_named_fields_as_members};
use super::typed::{Ty, compare, fields_of};

/// The manager upstream records as owning what an object held before its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Fields no manager ever owns: identity and bookkeeping the server keeps.
const TOP_LEVEL_IGNORED: &[&str] = &["apiVersion", "kind"];
const METADATA_IGNORED: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// Which fields writers to one resource or subresource can own.
#[derive(Clone, Debug)]
pub struct Scope {
    pub ty: Ty,
    /// On a subresource: only these top-level fields count.
    pub only: Option<&'static [&'static str]>,
    /// On the main resource: these top-level fields belong to subresources (`status`).
    pub reset: Vec<&'static str>,
}

impl Scope {
    /// A set without ignored and reset fields (in place: every write filters its sets).
    pub fn filter(&self, mut set: FieldSet) -> FieldSet {
        set.retain_top_level(|element, has_children| {
            let PathElement::Field(field) = element else {
                return self.only.is_none();
            };
            let field = field.as_str();
            // `metadata` itself is never owned, but fields under it are.
            let ignored =
                !has_children && (TOP_LEVEL_IGNORED.contains(&field) || field == "metadata");
            let in_scope = match self.only {
                Some(only) => only.contains(&field),
                None => !self.reset.contains(&field),
            };
            in_scope && !ignored
        });
        set.remove_members_of("metadata", METADATA_IGNORED);
        set
    }
}

/// Who writes.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
}

impl Writer<'_> {
    fn entry(&self, operation: Operation) -> Entry {
        Entry {
            manager: self.manager.to_owned(),
            operation,
            api_version: self.api_version.to_owned(),
            time: None,
            subresource: self.subresource.to_owned(),
            fields: FieldSet::new(),
        }
    }
}

/// An Update from `live` to `new`: the writer's entry gains the fields it added or changed,
/// every other entry loses them, and everyone loses removed fields.
pub fn update(
    scope: &Scope,
    live: &Value,
    new: &Value,
    mut entries: Vec<Entry>,
    writer: &Writer,
    now: &str,
) -> Result<Vec<Entry>, String> {
    let comparison = compare(live, new, scope.ty)?;
    let changed = scope.filter(comparison.changed());
    let removed = scope.filter(comparison.removed);
    if changed.is_empty() && removed.is_empty() {
        return Ok(entries);
    }
    for entry in &mut entries {
        entry.fields = entry.fields.difference(&changed).difference(&removed);
    }
    if !changed.is_empty() {
        let mine = writer.entry(Operation::Update);
        match entries.iter_mut().find(|e| e.same_manager(&mine)) {
            Some(entry) => {
                entry.fields.union_with(&changed);
                entry.time = Some(now.to_owned());
            }
            None => entries.push(Entry {
                fields: changed,
                time: Some(now.to_owned()),
                ..mine
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok(entries)
}

/// Fields of other managers an apply would change.
#[derive(Debug)]
pub struct Conflicts(pub Vec<(Entry, FieldSet)>);

#[derive(Debug)]
pub enum ApplyError {
    Conflicts(Conflicts),
    /// The configuration does not fit its schema (a list element without its key, …).
    Invalid(String),
}

/// What an apply produced: the new object (without managedFields) and the entries.
pub struct Applied {
    pub object: Value,
    pub entries: Vec<Entry>,
}

/// Applies `config` over `live` (none: the object is created).
pub fn apply(
    scope: &Scope,
    live: Option<&Value>,
    config: &Value,
    mut entries: Vec<Entry>,
    writer: &Writer,
    force: bool,
    now: &str,
) -> Result<Applied, ApplyError> {
    let empty = json!({});
    let live_object = live.unwrap_or(&empty);
    if live.is_some() && entries.is_empty() {
        let before = Writer {
            manager: BEFORE_FIRST_APPLY,
            ..writer.clone()
        };
        entries = update(scope, &empty, live_object, Vec::new(), &before, now)
            .map_err(ApplyError::Invalid)?;
    }
    let applied = scope.filter(fields_of(config, scope.ty).map_err(ApplyError::Invalid)?);
    let merged = merge(live_object, config, scope.ty).map_err(ApplyError::Invalid)?;
    let mine = writer.entry(Operation::Apply);
    let (last, time) = match entries.iter().position(|e| e.same_manager(&mine)) {
        Some(i) => {
            let previous = entries.remove(i);
            (Some(previous.fields), previous.time)
        }
        None => (None, None),
    };
    let owned = entries
        .iter()
        .fold(applied.clone(), |all, e| all.union(&e.fields));
    let object = match last.filter(|l| !l.is_empty()) {
        Some(last) => {
            let dropped = with_named_fields_as_members(&last, scope.ty)
                .difference(&with_named_fields_as_members(&owned, scope.ty));
            remove(&merged, &dropped, scope.ty)
        }
        None => merged,
    };
    let comparison = compare(live_object, &object, scope.ty).map_err(ApplyError::Invalid)?;
    let changed = scope.filter(comparison.changed());
    let removed = scope.filter(comparison.removed);
    let conflicts: Vec<(Entry, FieldSet)> = entries
        .iter()
        .filter_map(|e| {
            let taken = e.fields.intersection(&changed);
            (!taken.is_empty()).then(|| (e.clone(), taken))
        })
        .collect();
    if !conflicts.is_empty() && !force {
        let allowed = if writer.manager == "kubectl" {
            live.and_then(|live| last_applied_fields(scope, live))
        } else {
            None
        };
        let remaining = match allowed {
            Some(allowed) => conflicts
                .into_iter()
                .filter_map(|(e, taken)| {
                    let left = taken.difference(&allowed);
                    (!left.is_empty()).then_some((e, left))
                })
                .collect(),
            None => conflicts,
        };
        if !remaining.is_empty() {
            return Err(ApplyError::Conflicts(Conflicts(remaining)));
        }
    }
    for entry in &mut entries {
        entry.fields = entry.fields.difference(&changed).difference(&removed);
    }
    let changed_object = object != *live_object;
    entries.push(Entry {
        fields: applied,
        time: if changed_object {
            Some(now.to_owned())
        } else {
            time
        },
        ..mine
    });
    entries.retain(|e| !e.fields.is_empty());
    Ok(Applied { object, entries })
}

/// The annotation client-side `kubectl apply` keeps the last configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Fields `kubectl apply` (client-side) set and that still hold the value it set: an apply by
/// `kubectl --server-side` may take them without a conflict, as it upgrades from client-side
/// apply.
fn last_applied_fields(scope: &Scope, live: &Value) -> Option<FieldSet> {
    let text = live["metadata"]["annotations"][LAST_APPLIED].as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last["apiVersion"] != live["apiVersion"] {
        return None;
    }
    let fields = fields_of(&last, scope.ty).ok()?;
    let comparison = compare(&last, live, scope.ty).ok()?;
    Some(
        fields
            .difference(&comparison.modified)
            .difference(&comparison.added)
            .difference(&comparison.removed),
    )
}
