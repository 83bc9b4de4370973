//! Objects seen through their schema, as structured-merge-diff sees them: which fields an object
//! sets, what changed between two objects, merging an applied configuration into a live object
//! and removing fields. Maps (and structs) are granular unless marked atomic; lists are atomic
//! unless they are sets (`x-kubernetes-list-type: set`) or associative lists keyed by
//! `x-kubernetes-list-map-keys` (or the strategic merge key).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use crate::schema::Schema;

/// Upstream's schemas default these associative-list keys, so an element may omit them; the
/// embedded definitions carry no defaults.
const KEY_DEFAULTS: &[(&str, &str)] = &[("protocol", "TCP")];

/// A position in an object's type: the resolved schema and the field's own node (which holds
/// the extensions written beside a `$ref`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ty {
    schema: Schema,
    field: Option<&'static Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    Scalar,
    Map { atomic: bool },
    AtomicList,
    Set,
    Keyed,
}

impl Ty {
    pub fn of(schema: Schema) -> Self {
        Self {
            schema,
            field: None,
        }
    }

    pub(super) fn shape(self, value: &Value) -> Shape {
        let extension = |name| {
            self.schema
                .extension(self.field, name)
                .and_then(Value::as_str)
        };
        match value {
            Value::Object(_) => Shape::Map {
                atomic: self.schema.node().is_some()
                    && extension("x-kubernetes-map-type") == Some("atomic"),
            },
            Value::Array(_) if self.schema.node().is_none() => Shape::AtomicList,
            Value::Array(_) => match extension("x-kubernetes-list-type") {
                Some("set") => Shape::Set,
                Some("map") => Shape::Keyed,
                Some(_) => Shape::AtomicList,
                None => match extension("x-kubernetes-patch-strategy") {
                    Some(s) if s.split(',').any(|s| s == "merge") => {
                        if extension("x-kubernetes-patch-merge-key").is_some() {
                            Shape::Keyed
                        } else {
                            Shape::Set
                        }
                    }
                    _ => Shape::AtomicList,
                },
            },
            _ => Shape::Scalar,
        }
    }

    pub(super) fn child(self, name: &str) -> Self {
        let (schema, field) = self.schema.field(name);
        Self { schema, field }
    }

    pub(super) fn items(self) -> Self {
        Self::of(self.schema.items())
    }

    /// The type below a path element.
    pub fn step(self, element: &PathElement) -> Self {
        match element {
            PathElement::Field(name) => self.child(name),
            _ => self.items(),
        }
    }

    /// Whether `name` is a declared field of this struct (not a key of a free-form map).
    pub fn is_named_field(self, name: &str) -> bool {
        self.schema.has_property(name)
    }

    /// Key field names of an associative list.
    fn keys(self) -> Vec<&'static str> {
        if let Some(keys) = self
            .schema
            .extension(self.field, "x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
        {
            return keys.iter().filter_map(Value::as_str).collect();
        }
        self.schema
            .extension(self.field, "x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
            .into_iter()
            .collect()
    }

    /// The path element naming one element of a set or associative list.
    fn element(self, shape: Shape, keys: &[&str], item: &Value) -> Result<PathElement, String> {
        if shape == Shape::Set {
            return Ok(PathElement::Value(item.clone()));
        }
        let Value::Object(fields) = item else {
            return Err(format!(
                "an element of an associative list is not an object: {item}"
            ));
        };
        let mut key = Vec::with_capacity(keys.len());
        for name in keys {
            match fields.get(*name) {
                Some(value) => key.push(((*name).to_owned(), value.clone())),
                None => match KEY_DEFAULTS.iter().find(|(k, _)| k == name) {
                    Some((_, default)) => {
                        key.push(((*name).to_owned(), Value::String((*default).to_owned())))
                    }
                    None => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {name:?} (and doesn't have default value)"
                        ));
                    }
                },
            }
        }
        key.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(PathElement::Key(key))
    }

    /// Each element of a set or associative list with its path element.
    pub(super) fn elements(
        self,
        shape: Shape,
        items: &[Value],
    ) -> Result<Vec<(PathElement, &Value)>, String> {
        let keys = if shape == Shape::Keyed {
            self.keys()
        } else {
            Vec::new()
        };
        items
            .iter()
            .map(|item| Ok((self.element(shape, &keys, item)?, item)))
            .collect()
    }
}

/// The root's `metadata.managedFields` is never part of any field set.
fn skipped(at_root_metadata: bool, key: &str) -> bool {
    at_root_metadata && key == "managedFields"
}

pub(super) fn is_root_metadata(path: &[PathElement]) -> bool {
    matches!(path, [PathElement::Field(name)] if name == "metadata")
}

/// The fields an object sets: leaves, atomic values, empty maps, map keys that are not struct
/// fields, and every element of a set or associative list.
pub fn fields_of(value: &Value, ty: Ty) -> Result<FieldSet, String> {
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    collect(value, ty, &mut path, &mut set)?;
    Ok(set)
}

fn collect(
    value: &Value,
    ty: Ty,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) -> Result<(), String> {
    match (ty.shape(value), value) {
        (Shape::Map { atomic: false }, Value::Object(map)) => {
            let at_root_metadata = is_root_metadata(path);
            for (key, child) in map {
                if skipped(at_root_metadata, key) {
                    continue;
                }
                let child_ty = ty.child(key);
                path.push(PathElement::Field(key.clone()));
                collect(child, child_ty, path, set)?;
                let empty_map = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_map || !ty.is_named_field(key) {
                    set.insert(path);
                }
                path.pop();
            }
            Ok(())
        }
        (shape @ (Shape::Set | Shape::Keyed), Value::Array(items)) => {
            let elements = ty.elements(shape, items)?;
            let mut seen = BTreeMap::new();
            for (element, _) in &elements {
                *seen.entry(element.clone()).or_insert(0usize) += 1;
            }
            let item_ty = ty.items();
            for (element, item) in elements {
                path.push(element);
                // A duplicated element is owned as a whole.
                if seen[path.last().expect("pushed")] == 1 {
                    collect(item, item_ty, path, set)?;
                }
                set.insert(path);
                path.pop();
            }
            Ok(())
        }
        _ => {
            set.insert(path);
            Ok(())
        }
    }
}

/// What changed from one object to another.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Added or modified: what a writer takes from the others.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

pub fn compare(old: &Value, new: &Value, ty: Ty) -> Result<Comparison, String> {
    let mut out = Comparison::default();
    compare_at(Some(old), Some(new), ty, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn compare_at(
    old: Option<&Value>,
    new: Option<&Value>,
    ty: Ty,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) -> Result<(), String> {
    // An unchanged subtree adds nothing; most of an object is unchanged by most writes, and
    // an equality test costs far less than walking it path by path.
    if let (Some(a), Some(b)) = (old, new)
        && a == b
    {
        return Ok(());
    }
    let shape_of = |v: Option<&Value>| v.map(|v| ty.shape(v));
    let (old_shape, new_shape) = (shape_of(old), shape_of(new));
    let shape = new_shape.or(old_shape).unwrap_or(Shape::Scalar);
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    let same_kind = old_shape.is_none() || new_shape.is_none() || old_shape == new_shape;
    let structured = matches!(
        shape,
        Shape::Map { atomic: false } | Shape::Set | Shape::Keyed
    );
    if !same_kind || !structured || (empty(old) && empty(new)) {
        match (old, new) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(a), Some(b)) if a != b => out.modified.insert(path),
            _ => {}
        }
        return Ok(());
    }
    if matches!(shape, Shape::Map { .. }) {
        let at_root_metadata = is_root_metadata(path);
        let none = Map::new();
        let old_map = old.and_then(Value::as_object).unwrap_or(&none);
        let new_map = new.and_then(Value::as_object).unwrap_or(&none);
        let keys: BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
        for key in keys {
            if skipped(at_root_metadata, key) {
                continue;
            }
            path.push(PathElement::Field(key.clone()));
            compare_at(old_map.get(key), new_map.get(key), ty.child(key), path, out)?;
            path.pop();
        }
    } else {
        let none = Vec::new();
        let old_items = old.and_then(Value::as_array).unwrap_or(&none);
        let new_items = new.and_then(Value::as_array).unwrap_or(&none);
        // Elements by path element, in first-seen order (old ones first).
        let mut order: Vec<PathElement> = Vec::new();
        let mut groups: BTreeMap<PathElement, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
        for (side, items) in [(0, old_items), (1, new_items)] {
            for (element, item) in ty.elements(shape, items)? {
                let entry = groups.entry(element.clone()).or_insert_with(|| {
                    order.push(element);
                    Default::default()
                });
                if side == 0 {
                    entry.0.push(item);
                } else {
                    entry.1.push(item);
                }
            }
        }
        let item_ty = ty.items();
        for element in order {
            let (olds, news) = &groups[&element];
            path.push(element);
            if olds.len() <= 1 && news.len() <= 1 {
                compare_at(
                    olds.first().copied(),
                    news.first().copied(),
                    item_ty,
                    path,
                    out,
                )?;
            } else if olds.is_empty() {
                out.added.insert(path);
            } else if news.is_empty() {
                out.removed.insert(path);
            } else if olds != news {
                out.modified.insert(path);
            }
            path.pop();
        }
    }
    // A granular node that appears or disappears is itself added or removed.
    match (old, new) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
    Ok(())
}
