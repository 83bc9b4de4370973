//! Navigation over the 1.37 schema definitions, shared by strategic merge patch, unknown-field
//! pruning and server-side apply: following `$ref`/`allOf`, stepping into a field or a list's
//! items, and reading the `x-kubernetes-*` extensions that say how lists and maps merge.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::Value;

use crate::openapi::definitions;

/// A position in the schema: the resolved node, or unknown (then maps are granular and lists
/// atomic, as upstream deduces for values without a schema).
#[derive(Clone, Copy, Debug, Default)]
pub struct Schema(pub Option<&'static Value>);

thread_local! {
    /// Resolved `$ref`s by the address of the node holding them: the walk visits the same
    /// nodes for every object, so the definition lookup is done once per node and thread.
    static RESOLVED: RefCell<HashMap<usize, Option<&'static Value>>> = RefCell::new(HashMap::new());
}

impl Schema {
    /// The schema of objects of a kind; unknown when the kind has no definition.
    pub fn of_kind(group: &str, version: &str, kind: &str) -> Self {
        match definitions().of_kind(group, version, kind) {
            Some(name) => Self::definition(name),
            None => Self(crate::crd::schema_of_kind(group, version, kind)),
        }
    }

    /// A definition by name (`io.k8s.api.core.v1.Pod`).
    pub fn definition(name: &str) -> Self {
        Self(definitions().schema(name))
    }

    /// Follows `$ref`, which may sit directly on the node or under `allOf`.
    pub fn resolve(value: &'static Value) -> Self {
        let key = value as *const Value as usize;
        if let Some(hit) = RESOLVED.with(|cache| cache.borrow().get(&key).copied()) {
            return Self(hit);
        }
        let resolved = resolve_uncached(value);
        RESOLVED.with(|cache| cache.borrow_mut().insert(key, resolved));
        Self(resolved)
    }

    pub fn node(self) -> Option<&'static Value> {
        self.0
    }

    /// The schema of a field (or of a map's values), and the field's own node, which holds the
    /// extensions written beside a `$ref`.
    pub fn field(self, name: &str) -> (Self, Option<&'static Value>) {
        let Some(node) = self.0 else {
            return (Self(None), None);
        };
        if let Some(property) = node.get("properties").and_then(|p| p.get(name)) {
            return (Self::resolve(property), Some(property));
        }
        if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
            return (Self::resolve(additional), Some(additional));
        }
        (Self(None), None)
    }

    /// Whether the node is a struct with this named field.
    pub fn has_property(self, name: &str) -> bool {
        self.0
            .and_then(|node| node.get("properties"))
            .is_some_and(|p| p.get(name).is_some())
    }

    pub fn items(self) -> Self {
        match self.0.and_then(|node| node.get("items")) {
            Some(items) => Self::resolve(items),
            None => Self(None),
        }
    }

    /// An extension, looked up on the field's own node first, then on the resolved one.
    pub fn extension(self, field: Option<&'static Value>, name: &str) -> Option<&'static Value> {
        field
            .and_then(|f| f.get(name))
            .or_else(|| self.0.and_then(|node| node.get(name)))
    }
}

fn resolve_uncached(value: &'static Value) -> Option<&'static Value> {
    let mut node = value;
    for _ in 0..8 {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            node = definitions().schema(reference.rsplit('/').next().unwrap_or_default())?;
        } else if let Some(first) = node
            .get("allOf")
            .and_then(|a| a.get(0))
            .filter(|first| first.get("$ref").is_some())
        {
            // Only the generator's `allOf: [{$ref}]` wrapping; a CRD's own allOf constrains
            // values and leaves the node's properties where they are.
            node = first;
        } else {
            return Some(node);
        }
    }
    None
}
