//! What kube-apiserver's CEL type checker refuses at definition time, for expressions over
//! schema-typed variables: a field the schema does not have (`undefined field 'z'`), field
//! selection on a scalar, an undeclared variable; and the static cost estimate that keeps a
//! rule from iterating without bound (`estimated rule cost exceeds budget`).
//!
//! This is not cel-go's full type checker: what it cannot type (results of functions,
//! dynamic values) it lets through, so it may accept a rule upstream refuses, never the
//! reverse for the checks above. Its cost model follows cel-go's shape (iterations times
//! the cost of each step, string scans at a tenth of their length, sizes bounded by
//! `maxItems`/`maxLength`/`maxProperties` or else by the largest request) and errs low.

use cel::Program;
use cel::common::ast::{Expr, IdedExpr};
use serde_json::Value as Json;

use crate::value::escape;

/// Upstream's `StaticEstimatedCostLimit`: the most one rule may be estimated to cost.
pub const RULE_COST_LIMIT: f64 = 10_000_000.0;
/// Upstream's largest request body, which bounds lists, maps and strings without limits.
const MAX_REQUEST_BYTES: f64 = 3_145_728.0;

/// Type names and namespaces an expression may name bare (`type(x) == string`).
const KNOWN_NAMES: &[&str] = &[
    "format",
    "ip",
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "duration",
    "timestamp",
    "optional",
    "math",
    "strings",
    "lists",
    "base64",
];

/// What is known of an expression's type.
#[derive(Debug, Clone, Copy)]
pub enum Ty<'s> {
    /// A value of this schema; `true` when it is the root of a resource (or an embedded
    /// resource), which also has `apiVersion`, `kind` and `metadata`.
    Schema(&'s Json, bool),
    /// A resource's metadata as CEL sees it: `name` and `generateName`.
    Meta,
    /// A value known only by its CEL type (`int`, `string`, …): literals and the results of
    /// operators and conversions.
    Scalar(&'static str),
    /// A value from a part of the object the schema leaves open
    /// (`x-kubernetes-preserve-unknown-fields`): any type, and as large as a request allows.
    Open,
    Dyn,
}

impl<'s> Ty<'s> {
    pub fn of(schema: &'s Json) -> Self {
        let embedded = schema["x-kubernetes-embedded-resource"] == true;
        Ty::Schema(schema, embedded)
    }

    /// The most elements (or bytes, for strings) a value of this type can have.
    fn size(&self) -> f64 {
        // Lists in open parts are taken to hold up to 100,000 elements (a request's worth of
        // 30-byte ones): enough to refuse nested iteration over them, as upstream refuses it,
        // without refusing a single pass.
        const OPEN: f64 = 100_000.0;
        let schema = match self {
            Ty::Schema(schema, _) => schema,
            Ty::Open => return OPEN,
            _ => return 1.0,
        };
        if type_of(schema).is_none() && schema["x-kubernetes-preserve-unknown-fields"] == true {
            return OPEN;
        }
        let bounded = |key: &str| schema[key].as_f64();
        match type_of(schema) {
            Some("string") => bounded("maxLength").unwrap_or(MAX_REQUEST_BYTES - 2.0),
            Some("array") => bounded("maxItems")
                .unwrap_or_else(|| (MAX_REQUEST_BYTES - 2.0) / (min_size(&schema["items"]) + 1.0)),
            Some("object") => bounded("maxProperties").unwrap_or_else(|| {
                match schema.get("additionalProperties").filter(|a| a.is_object()) {
                    // `"":<value>,`
                    Some(values) => (MAX_REQUEST_BYTES - 2.0) / (min_size(values) + 4.0),
                    None => 1.0,
                }
            }),
            _ => 1.0,
        }
    }

    /// The CEL type of a scalar value of this type, when it is certain.
    fn scalar(&self) -> Option<&'static str> {
        match self {
            Ty::Scalar(name) => Some(name),
            Ty::Schema(schema, _) if schema["x-kubernetes-int-or-string"] != true => {
                match (type_of(schema), schema["format"].as_str()) {
                    (Some("string"), Some("byte")) => Some("bytes"),
                    (Some("string"), Some("duration")) => Some("google.protobuf.Duration"),
                    (Some("string"), Some("date" | "date-time")) => {
                        Some("google.protobuf.Timestamp")
                    }
                    (Some("string"), _) => Some("string"),
                    (Some("integer"), _) => Some("int"),
                    (Some("number"), _) => Some("double"),
                    (Some("boolean"), _) => Some("bool"),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn numeric(name: &str) -> bool {
    matches!(name, "int" | "uint" | "double")
}

/// Whether an operator has an overload for two operands of these CEL types (cel-go's
/// standard declarations, with its cross-type numeric comparisons).
fn overload_exists(operator: &str, left: &str, right: &str) -> bool {
    const TIME: &str = "google.protobuf.Timestamp";
    const SPAN: &str = "google.protobuf.Duration";
    match operator {
        "_<_" | "_<=_" | "_>_" | "_>=_" => {
            left == right && left != "null_type" || (numeric(left) && numeric(right))
        }
        "_==_" | "_!=_" => {
            left == right
                || (numeric(left) && numeric(right))
                || left == "null_type"
                || right == "null_type"
        }
        "_+_" => {
            (left == right && matches!(left, "int" | "uint" | "double" | "string" | "bytes" | SPAN))
                || (left == TIME && right == SPAN)
                || (left == SPAN && right == TIME)
        }
        "_-_" => {
            (left == right && matches!(left, "int" | "uint" | "double" | SPAN | TIME))
                || (left == TIME && right == SPAN)
        }
        "_*_" | "_/_" => left == right && numeric(left),
        "_%_" => left == right && matches!(left, "int" | "uint"),
        _ => true,
    }
}

/// A schema's type: `type` as a name, or as a list of names besides `"null"` (the JSON-schema
/// form of the built-in definitions), or implied by `properties`/`items`.
fn type_of(schema: &Json) -> Option<&str> {
    match &schema["type"] {
        Json::String(name) => Some(name),
        Json::Array(names) => names.iter().filter_map(Json::as_str).find(|n| *n != "null"),
        _ if schema.get("properties").is_some() || schema.get("additionalProperties").is_some() => {
            Some("object")
        }
        _ if schema.get("items").is_some() => Some("array"),
        _ => None,
    }
}

/// The fewest bytes a value of this schema serializes to.
fn min_size(schema: &Json) -> f64 {
    match type_of(schema) {
        Some("string") => 2.0,
        Some("boolean") => 4.0,
        Some("object" | "array") => 2.0,
        _ => 1.0,
    }
}

/// What checking an expression found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The variables it reads.
    pub variables: Vec<String>,
    /// Its estimated worst-case cost.
    pub cost: f64,
}

/// Checks `program` with `variables` declared, answering cel-go-shaped errors
/// (`ERROR: <input>:1:5: undefined field 'z'` and the caret lines).
pub fn check(program: &Program, variables: &[(&str, Ty<'_>)]) -> Result<Checked, String> {
    check_with(program, variables, &|schema| schema)
}

/// [`check`] over schemas whose nodes may be references (`$ref`), which `resolve` follows.
pub fn check_with<'s>(
    program: &Program,
    variables: &[(&str, Ty<'s>)],
    resolve: &dyn Fn(&'s Json) -> &'s Json,
) -> Result<Checked, String> {
    let source = &program.source_info().source;
    let mut checker = Checker {
        resolve,
        scope: variables.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
        declared: variables.len(),
        checked: Checked::default(),
        errors: Vec::new(),
    };
    let (_, cost) = checker.walk(program.expression());
    checker.checked.cost = cost;
    if checker.errors.is_empty() {
        return Ok(checker.checked);
    }
    Err(checker
        .errors
        .iter()
        .map(|(id, message)| located(source, program, *id, message))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `ERROR: <input>:LINE:COL: message`, then the line and a caret under the column.
fn located(source: &str, program: &Program, id: u64, message: &str) -> String {
    let offset = program
        .source_info()
        .offset_for(id)
        .map_or(0, |(start, _)| start as usize);
    let mut line_start = 0;
    let mut line_number = 1;
    for (i, c) in source.chars().enumerate() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line_number += 1;
            line_start = i + 1;
        }
    }
    let column = offset - line_start;
    let line: String = source
        .chars()
        .skip(line_start)
        .take_while(|c| *c != '\n')
        .collect();
    format!(
        "ERROR: <input>:{line_number}:{}: {message}\n | {line}\n | {}^",
        column + 1,
        ".".repeat(column)
    )
}

struct Checker<'r, 's> {
    resolve: &'r dyn Fn(&'s Json) -> &'s Json,
    scope: Vec<(String, Ty<'s>)>,
    /// How many of `scope`'s entries are the declared variables (the rest are iteration
    /// variables, which are not reported as reads).
    declared: usize,
    checked: Checked,
    errors: Vec<(u64, String)>,
}

impl<'s> Checker<'_, 's> {
    fn ty(&self, schema: &'s Json) -> Ty<'s> {
        Ty::of((self.resolve)(schema))
    }

    fn lookup(&mut self, name: &str) -> Option<Ty<'s>> {
        let position = self.scope.iter().rposition(|(n, _)| n == name)?;
        if position < self.declared && !self.checked.variables.iter().any(|v| v == name) {
            self.checked.variables.push(name.to_owned());
        }
        Some(self.scope[position].1)
    }

    fn select(&mut self, id: u64, on: Ty<'s>, field: &str) -> Ty<'s> {
        match on {
            Ty::Dyn => Ty::Dyn,
            Ty::Open => Ty::Open,
            Ty::Meta => match field {
                "name" | "generateName" => Ty::Scalar("string"),
                _ => self.undefined(id, field),
            },
            Ty::Scalar(scalar) => {
                self.errors.push((
                    id,
                    format!("type '{scalar}' does not support field selection"),
                ));
                Ty::Dyn
            }
            Ty::Schema(schema, resource) => {
                if let Some(scalar) = on.scalar() {
                    self.errors.push((
                        id,
                        format!("type '{scalar}' does not support field selection"),
                    ));
                    return Ty::Dyn;
                }
                if type_of(schema) != Some("object") {
                    return Ty::Dyn;
                }
                let property = schema["properties"].as_object().and_then(|properties| {
                    properties
                        .iter()
                        .find(|(name, _)| escape(name).as_deref() == Some(field))
                });
                if let Some((_, property)) = property {
                    return self.ty(property);
                }
                if resource {
                    match field {
                        "apiVersion" | "kind" => return Ty::Dyn,
                        "metadata" => return Ty::Meta,
                        _ => {}
                    }
                }
                match schema.get("additionalProperties") {
                    Some(values) if values.is_object() => return self.ty(values),
                    Some(Json::Bool(true)) => return Ty::Open,
                    _ => {}
                }
                if schema["x-kubernetes-preserve-unknown-fields"] == true {
                    return Ty::Open;
                }
                self.undefined(id, field)
            }
        }
    }

    fn undefined(&mut self, id: u64, field: &str) -> Ty<'s> {
        self.errors.push((id, format!("undefined field '{field}'")));
        Ty::Dyn
    }

    /// The type an index into `on` yields.
    fn element(&self, on: Ty<'s>) -> Ty<'s> {
        match on {
            Ty::Schema(schema, _)
                if type_of(schema) == Some("array") && schema["items"].is_object() =>
            {
                self.ty(&schema["items"])
            }
            Ty::Schema(schema, _) if schema["additionalProperties"].is_object() => {
                self.ty(&schema["additionalProperties"])
            }
            Ty::Schema(schema, _)
                if type_of(schema).is_none()
                    && schema["x-kubernetes-preserve-unknown-fields"] == true =>
            {
                Ty::Open
            }
            Ty::Open => Ty::Open,
            _ => Ty::Dyn,
        }
    }

    /// The expression's type and estimated cost.
    fn walk(&mut self, expr: &'_ IdedExpr) -> (Ty<'s>, f64) {
        match &expr.expr {
            Expr::Ident(name) => match self.lookup(name) {
                Some(ty) => (ty, 1.0),
                None => {
                    if !KNOWN_NAMES.contains(&name.as_str()) && !name.starts_with('@') {
                        self.errors.push((
                            expr.id,
                            format!("undeclared reference to '{name}' (in container '')"),
                        ));
                    }
                    (Ty::Dyn, 1.0)
                }
            },
            Expr::Literal(literal) => {
                use cel::common::ast::LiteralValue as L;
                let name = match literal {
                    L::Boolean(_) => "bool",
                    L::Bytes(_) => "bytes",
                    L::Double(_) => "double",
                    L::Int(_) => "int",
                    L::Null => "null_type",
                    L::String(_) => "string",
                    L::UInt(_) => "uint",
                };
                (Ty::Scalar(name), 0.0)
            }
            Expr::Unspecified => (Ty::Dyn, 0.0),
            Expr::Select(select) => {
                let (on, cost) = self.walk(&select.operand);
                let ty = self.select(expr.id, on, &select.field);
                (if select.test { Ty::Dyn } else { ty }, cost + 1.0)
            }
            Expr::List(list) => {
                let cost = list.elements.iter().map(|e| self.walk(e).1).sum::<f64>();
                (Ty::Dyn, cost + 10.0)
            }
            Expr::Map(map) => {
                let mut cost = 30.0;
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(e) = &entry.expr {
                        cost += self.walk(&e.key).1 + self.walk(&e.value).1;
                    }
                }
                (Ty::Dyn, cost)
            }
            Expr::Struct(s) => {
                let mut cost = 40.0;
                for entry in &s.entries {
                    if let cel::common::ast::EntryExpr::StructField(f) = &entry.expr {
                        cost += self.walk(&f.value).1;
                    }
                }
                (Ty::Dyn, cost)
            }
            Expr::Call(call) => self.call(expr.id, call),
            Expr::Comprehension(c) => {
                let (range, range_cost) = self.walk(&c.iter_range);
                let iterations = range.size();
                let (element, key) = match range {
                    Ty::Schema(schema, _) if type_of(schema) == Some("object") => {
                        (Ty::Dyn, self.element(range))
                    }
                    _ => (self.element(range), Ty::Dyn),
                };
                let (_, init_cost) = self.walk(&c.accu_init);
                let depth = self.scope.len();
                // With one variable it is the element (a list's) or key (a map's); with two,
                // index or key, then value.
                match &c.iter_var2 {
                    None => self.scope.push((c.iter_var.clone(), element)),
                    Some(second) => {
                        self.scope.push((c.iter_var.clone(), Ty::Dyn));
                        self.scope.push((second.clone(), key));
                    }
                }
                self.scope.push((c.accu_var.clone(), Ty::Dyn));
                let (_, condition) = self.walk(&c.loop_cond);
                let (_, step) = self.walk(&c.loop_step);
                let (result, result_cost) = self.walk(&c.result);
                self.scope.truncate(depth);
                let cost = range_cost + init_cost + iterations * (condition + step) + result_cost;
                (result, cost)
            }
        }
    }

    fn call(&mut self, id: u64, call: &cel::common::ast::CallExpr) -> (Ty<'s>, f64) {
        let mut cost = 1.0;
        let target = call.target.as_ref().map(|t| {
            let (ty, c) = self.walk(t);
            cost += c;
            ty
        });
        let mut args = Vec::with_capacity(call.args.len());
        for arg in &call.args {
            let (ty, c) = self.walk(arg);
            cost += c;
            args.push(ty);
        }
        let name = call.func_name.as_str();
        let first = target.or_else(|| args.first().copied()).unwrap_or(Ty::Dyn);
        // Functions that walk a string or list once cost a tenth of its size, as cel-go's.
        let scans = matches!(
            name,
            "contains"
                | "startsWith"
                | "endsWith"
                | "matches"
                | "find"
                | "findAll"
                | "indexOf"
                | "lastIndexOf"
                | "lowerAscii"
                | "upperAscii"
                | "replace"
                | "split"
                | "trim"
                | "substring"
                | "join"
                | "isSorted"
                | "sum"
                | "min"
                | "max"
                | "_==_"
                | "_!=_"
                | "_+_"
                | "@in"
        );
        if scans {
            let sized = if name == "@in" {
                args.get(1).copied()
            } else {
                Some(first)
            };
            // An open value's length is unknown: only iterating over it is charged.
            let scanned = sized.filter(|t| !matches!(t, Ty::Open));
            cost += 0.1 * scanned.map_or(1.0, |t| t.size());
        }
        if let (Some(left), Some(right)) = (
            args.first().and_then(Ty::scalar),
            args.get(1).and_then(Ty::scalar),
        ) && call.target.is_none()
            && args.len() == 2
            && !overload_exists(name, left, right)
        {
            self.errors.push((
                id,
                format!("found no matching overload for '{name}' applied to '({left}, {right})'"),
            ));
        }
        let ty = match name {
            "_<_" | "_<=_" | "_>_" | "_>=_" | "_==_" | "_!=_" | "!_" | "_&&_" | "_||_" | "@in"
            | "matches" | "startsWith" | "endsWith" | "contains" | "has" => Ty::Scalar("bool"),
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => {
                match (first.scalar(), args.get(1).and_then(Ty::scalar)) {
                    (Some(left), Some(right)) if left == right => Ty::Scalar(left),
                    _ => Ty::Dyn,
                }
            }
            "size" | "int" => Ty::Scalar("int"),
            "string" => Ty::Scalar("string"),
            "double" => Ty::Scalar("double"),
            "uint" => Ty::Scalar("uint"),
            "_[_]" | "_[?_]" => self.element(first),
            "_?._" => {
                if let Some(Expr::Literal(cel::common::ast::LiteralValue::String(field))) =
                    call.args.get(1).map(|a| &a.expr)
                {
                    self.select(id, first, field);
                }
                Ty::Dyn
            }
            _ => Ty::Dyn,
        };
        (ty, cost)
    }
}

/// Upstream's wording for a cost over its limit.
pub fn over_budget(what: &str, cost: f64, limit: f64) -> String {
    let factor = cost / limit;
    let factor = if factor > 100.0 {
        "more than 100x".to_owned()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec_schema() -> Json {
        json!({ "type": "object", "properties": {
            "x": { "type": "integer" },
            "name": { "type": "string", "maxLength": 63 },
            "tags": { "type": "array", "maxItems": 10, "items": { "type": "string", "maxLength": 20 } },
            "free": { "type": "array", "items": { "type": "string" } },
            "labels": { "type": "object", "additionalProperties": { "type": "string" } },
            "any": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
            "my-field": { "type": "integer" },
        }})
    }

    fn run(source: &str) -> Result<Checked, String> {
        let schema = spec_schema();
        let program = crate::compile(source).unwrap();
        check(
            &program,
            &[("self", Ty::of(&schema)), ("oldSelf", Ty::of(&schema))],
        )
        .map(|c| Checked {
            variables: c.variables,
            cost: c.cost,
        })
    }

    #[test]
    fn known_fields_pass_and_unknown_ones_are_refused() {
        assert!(run("self.x > 0 && self.name.startsWith('a')").is_ok());
        assert!(run("self.tags.all(t, t.size() < 5)").is_ok());
        assert!(run("self.labels.foo == 'x' && self.any.whatever.deep == 1").is_ok());
        assert!(run("self.my__dash__field > 1").is_ok());
        let error = run("self.z == 100").unwrap_err();
        assert!(error.contains("undefined field 'z'"), "{error}");
        assert!(error.starts_with("ERROR: <input>:1:"), "{error}");
        let error = run("self.tags.all(t, t.nope)").unwrap_err();
        assert!(
            error.contains("does not support field selection"),
            "{error}"
        );
        assert!(
            run("has(self.nope)")
                .unwrap_err()
                .contains("undefined field 'nope'")
        );
        assert!(
            run("self.?nope.orValue(1) == 1")
                .unwrap_err()
                .contains("undefined field")
        );
        assert!(
            run("slef.x == 1")
                .unwrap_err()
                .contains("undeclared reference to 'slef'")
        );
        assert!(run("type(self.x) == int").is_ok());
        // Namespaced library functions are not variables.
        assert!(run("!format.dns1123Label().validate(self.name).hasValue()").is_ok());
        assert!(run("ip.isCanonical(self.name) && isIP(self.name)").is_ok());
    }

    #[test]
    fn operators_on_mismatched_types_are_refused() {
        let error = run("self.x > '1'").unwrap_err();
        assert!(
            error.contains("found no matching overload for '_>_' applied to '(int, string)'"),
            "{error}"
        );
        assert!(error.starts_with("ERROR: <input>:1:8:"), "{error}");
        let error = run("'got ' + self.x").unwrap_err();
        assert!(
            error.contains("'_+_' applied to '(string, int)'"),
            "{error}"
        );
        assert!(run("'got ' + string(self.x) == self.name").is_ok());
        assert!(run("self.x > 1.5 && self.name != null && size(self.tags) >= 1").is_ok());
        assert!(run("self.labels.all(k, k + '=' + self.labels[k] != '')").is_ok());
        assert!(run("self.any.count + 1 > 'dyn is unchecked'").is_ok());
    }

    #[test]
    fn variables_read_are_reported() {
        let checked = run("self.x == oldSelf.x").unwrap();
        assert_eq!(checked.variables, ["self", "oldSelf"]);
        let checked = run("self.tags.all(oldSelf, oldSelf != '')").unwrap();
        assert_eq!(checked.variables, ["self"]);
    }

    #[test]
    fn unbounded_iteration_is_over_budget_and_bounded_is_not() {
        assert!(run("self.tags.all(t, t.matches('^a'))").unwrap().cost < RULE_COST_LIMIT);
        // Lists in open parts of the schema are bounded by the request size only.
        let open = run("self.any.list.all(a, self.any.list.all(b, a == b))")
            .unwrap()
            .cost;
        assert!(open > RULE_COST_LIMIT, "{open}");
        assert!(run("self.any.list.all(a, a != 0)").unwrap().cost < RULE_COST_LIMIT);
        let cost = run("self.free.all(t, t.matches('^a'))").unwrap().cost;
        assert!(cost > RULE_COST_LIMIT, "{cost}");
        let nested = run("self.free.all(a, self.free.all(b, a == b))")
            .unwrap()
            .cost;
        assert!(nested > 100.0 * RULE_COST_LIMIT);
        assert!(
            over_budget("estimated rule cost", nested, RULE_COST_LIMIT)
                .contains("by factor of more than 100x")
        );
    }
}
