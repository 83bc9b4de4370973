//! `x-kubernetes-validations` of a CRD's structural schema, as apiextensions-apiserver runs
//! them: each rule sees the value at its schema node as `self` (and, for a transition rule,
//! the correlated old value as `oldSelf`); a rule that is not true fails with its `message`,
//! `messageExpression` or `failed rule: <rule>`, at its node's path (or its `fieldPath`),
//! with its `reason`. Unchanged values keep passing (ratcheting): a failure on a value equal
//! to its old one is a warning, unless the rule reads `oldSelf`.
//!
//! A schema is compiled once (`Compiled::new`), which also answers the errors a CRD with a
//! bad rule is refused with.

use std::collections::HashMap;

use cel::{Program, Value};
use serde_json::Value as Json;

use crate::check::{self, Ty};
use crate::value;

/// Recursion bound, as the structural validator's.
const MAX_DEPTH: usize = 64;

/// One compiled rule.
struct Rule {
    program: Program,
    source: String,
    message: Option<String>,
    message_expression: Option<Program>,
    reason: Reason,
    /// Relative path the failure is reported at, as `.a.b` / `['k']` become `.a.b[k]`.
    field_path: Option<String>,
    uses_old_self: bool,
    optional_old_self: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reason {
    Invalid,
    Forbidden,
    Required,
    Duplicate,
}

/// The rules of one schema node and of the nodes below it that have any.
#[derive(Default)]
pub struct Compiled {
    rules: Vec<Rule>,
    properties: HashMap<String, Compiled>,
    additional: Option<Box<Compiled>>,
    items: Option<Box<Compiled>>,
    schema: Json,
    list_type: ListType,
}

#[derive(Default, Clone, PartialEq)]
enum ListType {
    #[default]
    Atomic,
    Set,
    Map(Vec<String>),
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules: Vec<&str> = self.rules.iter().map(|r| r.source.as_str()).collect();
        f.debug_struct("Compiled")
            .field("rules", &rules)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A rule failure: the field path and upstream's message.
pub type Failure = (String, String);

/// What evaluating a schema's rules found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub errors: Vec<Failure>,
    /// Failures ratcheted on unchanged values, as `Warning` texts.
    pub warnings: Vec<String>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Compiled {
    /// Compiles every rule of a CRD version's `openAPIV3Schema`; `at` is the schema's field
    /// path in the CRD (for errors). `None` when the schema has no rules at all.
    pub fn new(schema: &Json, at: &str) -> Result<Option<Compiled>, Vec<Failure>> {
        let mut errors = Vec::new();
        let compiled = compile_node(schema, at, true, &mut errors, 0);
        if errors.is_empty() {
            Ok(compiled)
        } else {
            Err(errors)
        }
    }

    /// Runs the rules on a custom resource (`old` for an update).
    pub fn validate(&self, object: &Json, old: Option<&Json>) -> Outcome {
        let mut outcome = Outcome::default();
        self.validate_at(object, old, "", true, &mut outcome, 0);
        outcome
    }

    fn validate_at(
        &self,
        value: &Json,
        old: Option<&Json>,
        path: &str,
        root: bool,
        outcome: &mut Outcome,
        depth: usize,
    ) {
        if value.is_null() || depth > MAX_DEPTH {
            return;
        }
        if !self.rules.is_empty() {
            self.evaluate(value, old, path, root, outcome);
        }
        match value {
            Json::Object(fields) => {
                for (name, field) in fields {
                    let (below, child_path) = match self.properties.get(name) {
                        Some(below) => (below, child(path, name)),
                        None => match &self.additional {
                            Some(below) => (below.as_ref(), format!("{path}[{name}]")),
                            None => continue,
                        },
                    };
                    let old_field = old.and_then(|o| o.get(name));
                    below.validate_at(field, old_field, &child_path, false, outcome, depth + 1);
                }
            }
            Json::Array(items) => {
                let Some(below) = &self.items else { return };
                for (i, item) in items.iter().enumerate() {
                    let old_item = old
                        .and_then(Json::as_array)
                        .and_then(|old_items| self.correlate(item, old_items));
                    below.validate_at(
                        item,
                        old_item,
                        &format!("{path}[{i}]"),
                        false,
                        outcome,
                        depth + 1,
                    );
                }
            }
            _ => {}
        }
    }

    /// The old element an element of a list corresponds to: by its keys in a map list, by
    /// value in a set; atomic lists have no correspondence.
    fn correlate<'o>(&self, item: &Json, old_items: &'o [Json]) -> Option<&'o Json> {
        match &self.list_type {
            ListType::Atomic => None,
            ListType::Set => old_items.iter().find(|o| *o == item),
            ListType::Map(keys) => old_items
                .iter()
                .find(|o| keys.iter().all(|k| o.get(k) == item.get(k))),
        }
    }

    fn evaluate(
        &self,
        value: &Json,
        old: Option<&Json>,
        path: &str,
        root: bool,
        outcome: &mut Outcome,
    ) {
        let self_value = self.cel_value(value, root);
        let old_value = old.map(|o| self.cel_value(o, root));
        let unchanged = old == Some(value);
        let field = if path.is_empty() { "<nil>" } else { path };
        for rule in &self.rules {
            if rule.uses_old_self && old.is_none() && !rule.optional_old_self {
                continue;
            }
            let mut variables = vec![("self", self_value.clone())];
            if rule.uses_old_self {
                let old_self = match (&old_value, rule.optional_old_self) {
                    (Some(v), false) => v.clone(),
                    (v, true) => optional(v.clone()),
                    (None, false) => continue,
                };
                variables.push(("oldSelf", old_self));
            }
            let context = crate::context(variables);
            let detail = match rule.program.execute(&context) {
                Ok(Value::Bool(true)) => continue,
                Ok(Value::Bool(false)) => None,
                Ok(other) => Some(format!(
                    "rule did not evaluate to a boolean: {:?} evaluating rule: {}",
                    other.type_of(),
                    rule.error_string()
                )),
                Err(e) => Some(format!(
                    "{} evaluating rule: {}",
                    crate::describe(&e),
                    rule.error_string()
                )),
            };
            let failure = match detail {
                Some(detail) => (
                    field.to_owned(),
                    format!("{}{detail}", Self::invalid(value)),
                ),
                None => {
                    let at = match &rule.field_path {
                        Some(relative) => {
                            format!("{}{relative}", if path.is_empty() { "" } else { path })
                                .trim_start_matches('.')
                                .to_owned()
                        }
                        None => field.to_owned(),
                    };
                    let message =
                        rule.message_expression
                            .as_ref()
                            .and_then(|m| match m.execute(&context) {
                                Ok(Value::String(s))
                                    if !s.trim().is_empty() && !s.contains('\n') =>
                                {
                                    Some(s.trim().to_owned())
                                }
                                _ => None,
                            });
                    let from_expression = message.is_some();
                    let detail = message.unwrap_or_else(|| rule.message_or_default());
                    let body = match rule.reason {
                        Reason::Forbidden => format!("Forbidden: {detail}"),
                        Reason::Required => format!("Required value: {detail}"),
                        Reason::Duplicate => format!("Duplicate value: {}", value),
                        Reason::Invalid if from_expression => format!("Invalid value: {detail}"),
                        Reason::Invalid => format!("{}{detail}", Self::invalid(value)),
                    };
                    (at, body)
                }
            };
            if unchanged && !rule.uses_old_self {
                outcome
                    .warnings
                    .push(format!("{}: {}", failure.0, failure.1));
            } else {
                outcome.errors.push(failure);
            }
        }
    }

    fn cel_value(&self, json: &Json, root: bool) -> Value {
        let typed = value::typed(json, &self.schema);
        if !root {
            return typed;
        }
        // The root also shows apiVersion, kind and metadata's name and generateName.
        let Value::Map(mut map) = typed else {
            return typed;
        };
        let entries = std::sync::Arc::make_mut(&mut map.map);
        for field in ["apiVersion", "kind"] {
            if let Some(text) = json[field].as_str() {
                entries.insert(
                    cel::objects::Key::String(field.to_owned().into()),
                    text.into(),
                );
            }
        }
        entries.insert(
            cel::objects::Key::String("metadata".to_owned().into()),
            value::metadata(&json["metadata"]),
        );
        Value::Map(map)
    }

    /// `Invalid value: <value>: ` with scalars printed; objects and lists are left out, as
    /// upstream's `OmitValueType` leaves them.
    fn invalid(value: &Json) -> String {
        match value {
            Json::Object(_) | Json::Array(_) => "Invalid value: ".to_owned(),
            other => format!("Invalid value: {other}: "),
        }
    }
}

fn optional(value: Option<Value>) -> Value {
    let inner = match value {
        Some(v) => cel::objects::OptionalValue::of(v),
        None => cel::objects::OptionalValue::none(),
    };
    Value::Opaque(std::sync::Arc::new(inner))
}

impl Rule {
    fn error_string(&self) -> String {
        match &self.message {
            Some(m) if !m.trim().is_empty() => m.trim().to_owned(),
            _ => self.source.trim().to_owned(),
        }
    }

    fn message_or_default(&self) -> String {
        match &self.message {
            Some(m) if !m.trim().is_empty() => m.trim().to_owned(),
            _ => format!("failed rule: {}", self.error_string()),
        }
    }
}

/// Compiles the rules at `schema` and below; `None` when there are none.
fn compile_node(
    schema: &Json,
    at: &str,
    root: bool,
    errors: &mut Vec<Failure>,
    depth: usize,
) -> Option<Compiled> {
    if depth > MAX_DEPTH || !schema.is_object() {
        return None;
    }
    let mut node = Compiled {
        list_type: match schema["x-kubernetes-list-type"].as_str() {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => ListType::Atomic,
        },
        ..Default::default()
    };
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let below = compile_node(
            property,
            &format!("{at}.properties[{name}]"),
            false,
            errors,
            depth + 1,
        );
        if let Some(below) = below {
            node.properties.insert(name.clone(), below);
        }
    }
    if schema["additionalProperties"].is_object() {
        node.additional = compile_node(
            &schema["additionalProperties"],
            &format!("{at}.additionalProperties"),
            false,
            errors,
            depth + 1,
        )
        .map(Box::new);
    }
    if schema["items"].is_object() {
        node.items = compile_node(
            &schema["items"],
            &format!("{at}.items"),
            false,
            errors,
            depth + 1,
        )
        .map(Box::new);
    }
    let declared = schema["x-kubernetes-validations"].as_array();
    for (i, rule) in declared.into_iter().flatten().enumerate() {
        let rule_at = format!("{at}.x-kubernetes-validations[{i}]");
        match compile_rule(schema, rule, root, &rule_at) {
            Ok(compiled) => node.rules.push(compiled),
            Err(e) => errors.push(e),
        }
    }
    let empty = node.rules.is_empty()
        && node.properties.is_empty()
        && node.additional.is_none()
        && node.items.is_none();
    if empty {
        return None;
    }
    if !node.rules.is_empty() {
        node.schema = schema.clone();
    } else {
        // Only the shape below is needed to walk to the rules.
        node.schema = Json::Null;
    }
    Some(node)
}

fn compile_rule(schema: &Json, rule: &Json, root: bool, at: &str) -> Result<Rule, Failure> {
    let text = |key: &str| rule[key].as_str().map(str::to_owned);
    let source = text("rule").unwrap_or_default();
    if source.trim().is_empty() {
        return Err((format!("{at}.rule"), "Required value".to_owned()));
    }
    let self_ty = Ty::Schema(
        schema,
        root || schema["x-kubernetes-embedded-resource"] == true,
    );
    let variables = [("self", self_ty), ("oldSelf", self_ty)];
    let invalid = |field: &str, why: String| {
        (
            format!("{at}.{field}"),
            format!(
                "Invalid value: {}: {why}",
                Json::String(match field {
                    "messageExpression" => text("messageExpression").unwrap_or_default(),
                    "fieldPath" => text("fieldPath").unwrap_or_default(),
                    _ => source.clone(),
                })
            ),
        )
    };
    let program =
        crate::compile(&source).map_err(|e| invalid("rule", format!("compilation failed: {e}")))?;
    let checked = check::check(&program, &variables)
        .map_err(|e| invalid("rule", format!("compilation failed: {e}")))?;
    if checked.cost > check::RULE_COST_LIMIT {
        return Err((
            format!("{at}.rule"),
            format!(
                "Forbidden: {}",
                check::over_budget("estimated rule cost", checked.cost, check::RULE_COST_LIMIT)
            ),
        ));
    }
    let uses_old_self = checked.variables.iter().any(|v| v == "oldSelf");
    let optional_old_self = rule["optionalOldSelf"] == true;
    if optional_old_self && !uses_old_self {
        return Err((
            format!("{at}.optionalOldSelf"),
            "Invalid value: true: may not be set if oldSelf is not used in rule".to_owned(),
        ));
    }
    let message_expression = match text("messageExpression") {
        Some(expression) if !expression.trim().is_empty() => {
            let program = crate::compile(&expression).map_err(|e| {
                invalid(
                    "messageExpression",
                    format!("messageExpression compilation failed: {e}"),
                )
            })?;
            check::check(&program, &variables).map_err(|e| {
                invalid(
                    "messageExpression",
                    format!("messageExpression compilation failed: {e}"),
                )
            })?;
            Some(program)
        }
        _ => None,
    };
    let reason = match rule["reason"].as_str() {
        None | Some("FieldValueInvalid") => Reason::Invalid,
        Some("FieldValueForbidden") => Reason::Forbidden,
        Some("FieldValueRequired") => Reason::Required,
        Some("FieldValueDuplicate") => Reason::Duplicate,
        Some(other) => {
            return Err((
                format!("{at}.reason"),
                format!(
                    "Unsupported value: {other:?}: supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
                ),
            ));
        }
    };
    let field_path = match text("fieldPath") {
        Some(path) if !path.is_empty() => {
            Some(normalize_field_path(&path, schema).map_err(|why| invalid("fieldPath", why))?)
        }
        _ => None,
    };
    Ok(Rule {
        program,
        message: text("message"),
        message_expression,
        reason,
        field_path,
        uses_old_self,
        optional_old_self,
        source,
    })
}

/// A rule's `fieldPath` (`.spec.x`, `.labels['a.b']`, `.items[0]`) checked against the
/// schema and turned into the suffix of a field path (`.spec.x`, `.labels[a.b]`).
fn normalize_field_path(path: &str, schema: &Json) -> Result<String, String> {
    let mut out = String::new();
    let mut node = schema;
    let mut rest = path;
    let invalid = || "fieldPath must be a valid path: does not refer to a valid field".to_owned();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return Err(invalid());
            }
            node = match node["properties"].get(name) {
                Some(property) => property,
                None if node["additionalProperties"].is_object() => &node["additionalProperties"],
                None => return Err(invalid()),
            };
            out.push('.');
            out.push_str(name);
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']").ok_or_else(invalid)?;
            let name = &after[..end];
            node = match node["properties"].get(name) {
                Some(property) => property,
                None if node["additionalProperties"].is_object() => &node["additionalProperties"],
                None => return Err(invalid()),
            };
            out.push_str(&format!("[{name}]"));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(invalid)?;
            let index = &after[..end];
            if index.parse::<usize>().is_err() || !node["items"].is_object() {
                return Err(invalid());
            }
            node = &node["items"];
            out.push_str(&format!("[{index}]"));
            rest = &after[end + 1..];
        } else {
            return Err(invalid());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(spec_rules: Json) -> Json {
        json!({ "type": "object", "properties": {
            "spec": { "type": "object", "x-kubernetes-validations": spec_rules, "properties": {
                "x": { "type": "integer" }, "y": { "type": "integer" },
                "items": { "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": { "type": "object", "properties": { "name": { "type": "string" }, "v": { "type": "integer" } },
                        "x-kubernetes-validations": [{ "rule": "self.v >= 0", "message": "v must not be negative" }] } },
            }},
        }})
    }

    fn compiled(rules: Json) -> Compiled {
        Compiled::new(&schema(rules), "spec.validation.openAPIV3Schema")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_failing_rule_names_its_field_and_rule() {
        let c = compiled(json!([{ "rule": "self.x + self.y > 0" }]));
        assert!(
            c.validate(&json!({ "spec": { "x": 1, "y": 0 } }), None)
                .errors
                .is_empty()
        );
        let outcome = c.validate(&json!({ "spec": { "x": 0, "y": 0 } }), None);
        assert_eq!(
            outcome.errors,
            [(
                "spec".to_owned(),
                "Invalid value: failed rule: self.x + self.y > 0".to_owned()
            )]
        );
    }

    #[test]
    fn messages_reasons_and_field_paths_shape_the_failure() {
        let c = compiled(json!([
            { "rule": "self.x > 0", "message": "x must be positive", "reason": "FieldValueForbidden", "fieldPath": ".x" },
            { "rule": "self.y > 0", "messageExpression": "'y is ' + string(self.y)" },
        ]));
        let outcome = c.validate(&json!({ "spec": { "x": 0, "y": -1 } }), None);
        assert_eq!(
            outcome.errors,
            [
                (
                    "spec.x".to_owned(),
                    "Forbidden: x must be positive".to_owned()
                ),
                ("spec".to_owned(), "Invalid value: y is -1".to_owned()),
            ]
        );
    }

    #[test]
    fn rules_on_list_items_run_per_item_with_their_path() {
        let c = compiled(json!([]));
        let outcome = c.validate(
            &json!({ "spec": { "items": [{ "name": "a", "v": 1 }, { "name": "b", "v": -1 }] } }),
            None,
        );
        assert_eq!(
            outcome.errors,
            [(
                "spec.items[1]".to_owned(),
                "Invalid value: v must not be negative".to_owned()
            )]
        );
    }

    #[test]
    fn transition_rules_run_only_on_updates() {
        let c =
            compiled(json!([{ "rule": "self.x >= oldSelf.x", "message": "x may not decrease" }]));
        assert!(
            c.validate(&json!({ "spec": { "x": 1 } }), None)
                .errors
                .is_empty()
        );
        let old = json!({ "spec": { "x": 5 } });
        assert!(
            c.validate(&json!({ "spec": { "x": 6 } }), Some(&old))
                .errors
                .is_empty()
        );
        let outcome = c.validate(&json!({ "spec": { "x": 4 } }), Some(&old));
        assert_eq!(outcome.errors.len(), 1);
        let optional = compiled(
            json!([{ "rule": "!oldSelf.hasValue() || self.x >= oldSelf.value().x", "optionalOldSelf": true }]),
        );
        assert!(
            optional
                .validate(&json!({ "spec": { "x": 1 } }), None)
                .errors
                .is_empty()
        );
        assert_eq!(
            optional
                .validate(&json!({ "spec": { "x": 4 } }), Some(&old))
                .errors
                .len(),
            1
        );
    }

    #[test]
    fn unchanged_values_ratchet_to_warnings() {
        let c = compiled(json!([{ "rule": "self.x > 0" }]));
        let old = json!({ "spec": { "x": 0 } });
        let outcome = c.validate(&json!({ "spec": { "x": 0 } }), Some(&old));
        assert!(outcome.errors.is_empty());
        assert_eq!(outcome.warnings.len(), 1);
        // List items correlate by their map keys.
        let old = json!({ "spec": { "x": 1, "items": [{ "name": "a", "v": -1 }] } });
        let new = json!({ "spec": { "x": 1, "items": [{ "name": "b", "v": 2 }, { "name": "a", "v": -1 }] } });
        let outcome = c.validate(&new, Some(&old));
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(outcome.warnings.len(), 1);
    }

    #[test]
    fn the_root_sees_its_name() {
        let schema = json!({ "type": "object", "x-kubernetes-validations": [{ "rule": "self.metadata.name.startsWith('ok-')" }],
            "properties": { "spec": { "type": "object" } } });
        let c = Compiled::new(&schema, "s").unwrap().unwrap();
        assert!(
            c.validate(&json!({ "metadata": { "name": "ok-1" } }), None)
                .errors
                .is_empty()
        );
        let outcome = c.validate(&json!({ "metadata": { "name": "bad" } }), None);
        assert_eq!(outcome.errors[0].0, "<nil>");
    }

    #[test]
    fn evaluation_errors_are_reported_not_passed() {
        let c = compiled(json!([{ "rule": "self.x / self.y > 0" }]));
        let outcome = c.validate(&json!({ "spec": { "x": 1, "y": 0 } }), None);
        assert!(
            outcome.errors[0]
                .1
                .contains("division by zero evaluating rule"),
            "{:?}",
            outcome.errors
        );
    }

    #[test]
    fn bad_rules_refuse_the_schema() {
        let at = "spec.validation.openAPIV3Schema";
        let errors = Compiled::new(&schema(json!([{ "rule": "self.z == 100" }])), at)
            .err()
            .unwrap();
        assert_eq!(
            errors[0].0,
            format!("{at}.properties[spec].x-kubernetes-validations[0].rule")
        );
        assert!(errors[0].1.contains("undefined field 'z'"), "{errors:?}");
        let errors = Compiled::new(&schema(json!([{ "rule": "self.x ==" }])), at)
            .err()
            .unwrap();
        assert!(
            errors[0]
                .1
                .contains("compilation failed: ERROR: <input>:1:"),
            "{errors:?}"
        );
        let errors = Compiled::new(
            &schema(json!([{ "rule": "self.x > 0", "fieldPath": ".nope" }])),
            at,
        )
        .err()
        .unwrap();
        assert!(errors[0].0.ends_with(".fieldPath"), "{errors:?}");
        let errors = Compiled::new(
            &schema(json!([{ "rule": "self.x > 0", "optionalOldSelf": true }])),
            at,
        )
        .err()
        .unwrap();
        assert!(errors[0].0.ends_with(".optionalOldSelf"), "{errors:?}");
        let unbounded = json!({ "type": "object", "properties": { "l": { "type": "array", "items": { "type": "string" },
            "x-kubernetes-validations": [{ "rule": "self.all(a, self.all(b, a != b || a == b))" }] } } });
        let errors = Compiled::new(&unbounded, at).err().unwrap();
        assert!(
            errors[0]
                .1
                .contains("estimated rule cost exceeds budget by factor of more than 100x"),
            "{errors:?}"
        );
        assert!(
            Compiled::new(&json!({ "type": "object" }), at)
                .unwrap()
                .is_none()
        );
    }
}
