//! Changing objects by field: merging an applied configuration into a live object, and
//! removing the fields of a set from an object.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use super::typed::{Shape, Ty, is_root_metadata};

/// `config` merged into `live`: granular maps key by key, associative lists and sets element by
/// element (live order kept, new elements placed as upstream places them), everything else
/// replaced by the configuration's value.
pub fn merge(live: &Value, config: &Value, ty: Ty) -> Result<Value, String> {
    merge_at(Some(live), config, ty, &mut Vec::new())
}

fn merge_at(
    live: Option<&Value>,
    config: &Value,
    ty: Ty,
    path: &mut Vec<PathElement>,
) -> Result<Value, String> {
    let Some(live) = live else {
        // Checks the configuration's lists (keys present, no duplicates) on the way.
        return merge_new(config, ty, path);
    };
    let shape = ty.shape(config);
    if shape != ty.shape(live) {
        return merge_new(config, ty, path);
    }
    match (shape, live, config) {
        (Shape::Map { atomic: false }, Value::Object(live_map), Value::Object(config_map)) => {
            let mut out = live_map.clone();
            for (key, value) in config_map {
                path.push(PathElement::Field(key.clone()));
                let merged = merge_at(live_map.get(key), value, ty.child(key), path)?;
                path.pop();
                out.insert(key.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (Shape::Set | Shape::Keyed, Value::Array(live_items), Value::Array(config_items)) => {
            merge_list(live_items, config_items, shape, ty, path)
        }
        _ => Ok(config.clone()),
    }
}

/// A configuration value where nothing lived: itself, once its lists are checked.
fn merge_new(config: &Value, ty: Ty, path: &mut Vec<PathElement>) -> Result<Value, String> {
    match (ty.shape(config), config) {
        (Shape::Map { atomic: false }, Value::Object(map)) => {
            let mut out = Map::new();
            for (key, value) in map {
                path.push(PathElement::Field(key.clone()));
                out.insert(key.clone(), merge_new(value, ty.child(key), path)?);
                path.pop();
            }
            Ok(Value::Object(out))
        }
        (shape @ (Shape::Set | Shape::Keyed), Value::Array(items)) => {
            merge_list(&[], items, shape, ty, path)
        }
        _ => Ok(config.clone()),
    }
}

/// Upstream's list merge: elements only in the live list keep their place; configuration
/// elements come in the configuration's order, each shared element pulling the live elements
/// before it along.
fn merge_list(
    live: &[Value],
    config: &[Value],
    shape: Shape,
    ty: Ty,
    path: &mut Vec<PathElement>,
) -> Result<Value, String> {
    let at = |path: &[PathElement]| super::fieldset::path_string(path);
    let live_elements = ty
        .elements(shape, live)
        .map_err(|e| format!("{}: {e}", at(path)))?;
    let config_elements = ty
        .elements(shape, config)
        .map_err(|e| format!("{}: {e}", at(path)))?;
    let mut in_config: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (element, item) in &config_elements {
        if in_config.insert(element, item).is_some() {
            return Err(format!("{}: duplicate entries for key {element}", at(path)));
        }
    }
    // A duplicated live element merges as absent: the configuration's value wins.
    let mut in_live: BTreeMap<&PathElement, Option<&Value>> = BTreeMap::new();
    for (element, item) in &live_elements {
        in_live
            .entry(element)
            .and_modify(|v| *v = None)
            .or_insert(Some(*item));
    }
    let shared: Vec<&PathElement> = config_elements
        .iter()
        .map(|(e, _)| e)
        .filter(|e| in_live.contains_key(e))
        .collect();
    let mut shared = shared.into_iter();
    let mut next_shared = shared.next();
    let item_ty = ty.items();
    let mut merged_config: std::collections::BTreeSet<&PathElement> = Default::default();
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut l, mut r) = (0, 0);
    let merge_one = |element: &PathElement,
                     path: &mut Vec<PathElement>,
                     live_item: Option<&Value>,
                     config_item: &Value|
     -> Result<Value, String> {
        path.push(element.clone());
        let merged = merge_at(live_item, config_item, item_ty, path);
        path.pop();
        merged
    };
    while l < live_elements.len() || r < config_elements.len() {
        if l < live_elements.len() && r < config_elements.len() {
            let (live_element, _) = &live_elements[l];
            let (config_element, config_item) = &config_elements[r];
            if live_element == config_element {
                merged_config.insert(config_element);
                let live_item = in_live.get(live_element).copied().flatten();
                out.push(merge_one(config_element, path, live_item, config_item)?);
                l += 1;
                r += 1;
                next_shared = shared.next();
                continue;
            }
            if in_config.contains_key(live_element)
                && next_shared.is_some_and(|n| n != live_element)
            {
                l += 1;
                continue;
            }
        }
        if l < live_elements.len() {
            let (live_element, live_item) = &live_elements[l];
            if !in_config.contains_key(live_element) {
                out.push((*live_item).clone());
                l += 1;
                continue;
            } else if merged_config.contains(live_element) {
                l += 1;
            }
        }
        if r < config_elements.len() {
            let (config_element, config_item) = &config_elements[r];
            merged_config.insert(config_element);
            let live_item = in_live.get(config_element).copied().flatten();
            out.push(merge_one(config_element, path, live_item, config_item)?);
            r += 1;
            if next_shared == Some(config_element) {
                next_shared = shared.next();
            }
        }
    }
    Ok(Value::Array(out))
}

/// `value` without the members of `set` (a member takes its whole subtree with it); maps and
/// lists left empty by the removal go too.
pub fn remove(value: &Value, set: &FieldSet, ty: Ty) -> Value {
    remove_at(value, set, ty, &mut Vec::new()).unwrap_or_else(|| Value::Object(Map::new()))
}

fn remove_at(value: &Value, set: &FieldSet, ty: Ty, path: &mut Vec<PathElement>) -> Option<Value> {
    match (ty.shape(value), value) {
        (Shape::Map { atomic: false }, Value::Object(map)) if !map.is_empty() => {
            let mut out = Map::new();
            for (key, child) in map {
                let element = PathElement::Field(key.clone());
                if set.is_member(&element) {
                    continue;
                }
                // The root's managedFields are not the objects's content.
                let kept = match set.child(&element) {
                    Some(below) if !is_root_metadata_child(path, key) => {
                        path.push(element);
                        let kept = remove_at(child, below, ty.child(key), path);
                        path.pop();
                        kept
                    }
                    _ => Some(child.clone()),
                };
                if let Some(kept) = kept {
                    out.insert(key.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (shape @ (Shape::Set | Shape::Keyed), Value::Array(items)) if !items.is_empty() => {
            let Ok(elements) = ty.elements(shape, items) else {
                return Some(value.clone());
            };
            let item_ty = ty.items();
            let mut out = Vec::with_capacity(items.len());
            for (element, item) in elements {
                if set.is_member(&element) {
                    continue;
                }
                match set.child(&element) {
                    Some(below) => {
                        path.push(element);
                        let kept = remove_at(item, below, item_ty, path);
                        path.pop();
                        if let Some(kept) = kept {
                            out.push(kept);
                        }
                    }
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => Some(value.clone()),
    }
}

fn is_root_metadata_child(path: &[PathElement], key: &str) -> bool {
    is_root_metadata(path) && key == "managedFields"
}

/// The set with every struct field that has paths below it made a member too, so removing it
/// removes the field when nothing below is left (upstream's `EnsureNamedFieldsAreMembers`).
pub fn with_named_fields_as_members(set: &FieldSet, ty: Ty) -> FieldSet {
    let mut out = FieldSet::new();
    for member in set.members() {
        out.add_member(member.clone());
    }
    for (element, child) in set.children() {
        if let PathElement::Field(name) = element
            && ty.is_named_field(name)
        {
            out.add_member(element.clone());
        }
        out.set_child(
            element.clone(),
            with_named_fields_as_members(child, ty.step(element)),
        );
    }
    out
}
