//! Sets of field paths, as server-side apply records ownership (upstream's `fieldpath.Set`),
//! and their `fieldsV1` JSON form.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One step of a path: a field of a map, the element of an associative list with these key
/// field values, the element of a set with this value, or a position (atomic lists only).
#[derive(Clone, Debug)]
pub enum PathElement {
    Field(String),
    /// Key fields sorted by name.
    Key(Vec<(String, Value)>),
    Value(Value),
    Index(usize),
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            Self::Field(_) => 0,
            Self::Key(_) => 1,
            Self::Value(_) => 2,
            Self::Index(_) => 3,
        }
    }

    /// The `fieldsV1` key: `f:name`, `k:{"name":"web"}`, `v:"x"`, `i:0`.
    pub fn serialize(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(fields) => {
                let mut out = String::from("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&go_json(&Value::String(name.clone())));
                    out.push(':');
                    out.push_str(&go_json(value));
                }
                out.push('}');
                out
            }
            Self::Value(value) => format!("v:{}", go_json(value)),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `fieldsV1` key; `None` for a kind of element this version does not know
    /// (upstream skips those), an error for a malformed one.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let Some((kind, body)) = text.split_at_checked(2) else {
            return Err(format!("key {text:?} is too short"));
        };
        let kind = match kind.strip_suffix(':') {
            Some(kind) => kind,
            None => return Err(format!("key {text:?} is missing its colon")),
        };
        let json = |body: &str| {
            serde_json::from_str::<Value>(body).map_err(|e| format!("key {text:?}: {e}"))
        };
        Ok(Some(match kind {
            "f" => Self::Field(body.to_owned()),
            "v" => Self::Value(json(body)?),
            "k" => match json(body)? {
                Value::Object(map) => Self::Key(map.into_iter().collect()),
                _ => return Err(format!("key {text:?} is not a JSON object")),
            },
            "i" => Self::Index(
                body.parse()
                    .map_err(|_| format!("key {text:?} has no index"))?,
            ),
            _ => return Ok(None),
        }))
    }
}

/// How upstream prints an element in a path: `.name`, `[name="web",port=80]`, `[="x"]`, `[0]`.
impl std::fmt::Display for PathElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value_string(value)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(value) => write!(f, "[={}]", value_string(value)),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A value as upstream's `value.ToString` prints it: strings quoted, the rest as JSON.
fn value_string(value: &Value) -> String {
    match value {
        Value::String(_) => go_json(value),
        other => other.to_string(),
    }
}

/// JSON as Go's encoder writes it: `<`, `>` and `&` escaped inside strings.
fn go_json(value: &Value) -> String {
    let text = value.to_string();
    if !text.contains(['<', '>', '&']) {
        return text;
    }
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Upstream's order: fields, then keys, then values, then indexes.
impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Field(a), Self::Field(b)) => a.cmp(b),
            (Self::Key(a), Self::Key(b)) => compare_fields(a, b),
            (Self::Value(a), Self::Value(b)) => compare_values(a, b),
            (Self::Index(a), Self::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

fn compare_fields(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((an, av), (bn, bv)) in a.iter().zip(b) {
        let order = an.cmp(bn).then_with(|| compare_values(av, bv));
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Upstream's value order: numbers, strings, booleans, lists, maps, null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (x, y) in x.iter().zip(y) {
                let order = compare_values(x, y);
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // Maps compare as their sorted (key, value) lists.
            for ((xk, xv), (yk, yv)) in x.iter().zip(y) {
                let order = xk.cmp(yk).then_with(|| compare_values(xv, yv));
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A set of paths: `members` are paths ending here, `children` the sets below an element.
/// Children are never empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    #[cfg(test)]
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub fn is_member(&self, element: &PathElement) -> bool {
        self.members.contains(element)
    }

    /// The paths below an element, without it.
    pub fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    pub fn union_with(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            match self.children.get_mut(element) {
                Some(mine) => mine.union_with(child),
                None => {
                    self.children.insert(element.clone(), child.clone());
                }
            }
        }
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let both = child.intersection(other.children.get(element)?);
                (!both.is_empty()).then(|| (element.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Paths of `self` that are not paths of `other`; a member of `other` does not remove the
    /// paths below it.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let rest = match other.children.get(element) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (element.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Keeps only the top-level members and children (fields with something under them)
    /// that `keep` accepts; it is told which of the two it is asked about.
    pub fn retain_top_level(&mut self, keep: impl Fn(&PathElement, bool) -> bool) {
        self.members.retain(|e| keep(e, false));
        self.children.retain(|e, _| keep(e, true));
    }

    /// Removes the members named `fields` from the child at top-level field `parent` (and
    /// the child, once empty).
    pub fn remove_members_of(&mut self, parent: &str, fields: &[&str]) {
        let parent = PathElement::Field(parent.to_owned());
        let Some(child) = self.children.get_mut(&parent) else {
            return;
        };
        child
            .members
            .retain(|e| !matches!(e, PathElement::Field(f) if fields.contains(&f.as_str())));
        if child.is_empty() {
            self.children.remove(&parent);
        }
    }

    pub(super) fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    pub(super) fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    pub(super) fn add_member(&mut self, element: PathElement) {
        self.members.insert(element);
    }

    pub(super) fn set_child(&mut self, element: PathElement, child: FieldSet) {
        if child.is_empty() {
            self.children.remove(&element);
        } else {
            self.children.insert(element, child);
        }
    }

    /// Every path, members before the paths below, as upstream iterates.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for member in &self.members {
            let mut path = prefix.clone();
            path.push(member.clone());
            out.push(path);
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON text, in upstream's order. Stored entries are `Value`s, whose maps
    /// sort their keys, so only tests compare against this text.
    #[cfg(test)]
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        self.write_contents(false, &mut out);
        out.push('}');
        out
    }

    /// The `fieldsV1` value stored in a managedFields entry: what [`Self::to_json`] writes,
    /// built directly (every write encodes its managedFields).
    pub fn to_value(&self) -> Value {
        self.value_contents(false)
    }

    fn value_contents(&self, include_self: bool) -> Value {
        let mut map = serde_json::Map::new();
        if include_self && !self.is_empty() {
            map.insert(".".to_owned(), Value::Object(Default::default()));
        }
        for (element, below) in self.in_order() {
            let value = match below {
                Some((child, is_member)) => child.value_contents(is_member),
                None => Value::Object(Default::default()),
            };
            map.insert(element.serialize(), value);
        }
        Value::Object(map)
    }

    /// Members and children in upstream's order, each element once: one that is both comes
    /// with its child set and `true`.
    fn in_order(&self) -> Vec<(&PathElement, Option<(&FieldSet, bool)>)> {
        let mut out = Vec::with_capacity(self.members.len() + self.children.len());
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let next_member = members.peek().copied();
            let next_child = children.peek().map(|(e, _)| *e);
            let order = match (next_member, next_child) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(m), Some(c)) => m.cmp(c),
            };
            if order == Ordering::Less {
                out.push((members.next().expect("peeked"), None));
                continue;
            }
            let (element, child) = children.next().expect("peeked");
            let is_member = order == Ordering::Equal;
            if is_member {
                members.next();
            }
            out.push((element, Some((child, is_member))));
        }
        out
    }

    #[cfg(test)]
    fn write_contents(&self, include_self: bool, out: &mut String) {
        let mut first = true;
        let mut key = |out: &mut String, text: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&go_json(&Value::String(text.to_owned())));
            out.push(':');
        };
        if include_self && !self.is_empty() {
            key(out, ".");
            out.push_str("{}");
        }
        for (element, below) in self.in_order() {
            key(out, &element.serialize());
            match below {
                Some((child, is_member)) => {
                    out.push('{');
                    child.write_contents(is_member, out);
                    out.push('}');
                }
                None => out.push_str("{}"),
            }
        }
    }

    /// Reads a `fieldsV1` value. An error names what is malformed.
    pub fn from_value(value: &Value) -> Result<FieldSet, String> {
        match value {
            Value::Object(_) => Ok(Self::read(value, 0)?.0.unwrap_or_default()),
            Value::Null => Ok(FieldSet::new()),
            _ => Err("fieldsV1 must be a JSON object".to_owned()),
        }
    }

    /// The set below a node, and whether the node itself is a member.
    fn read(value: &Value, depth: usize) -> Result<(Option<FieldSet>, bool), String> {
        if depth > 100 {
            return Err("fieldsV1 is nested too deeply".to_owned());
        }
        let Value::Object(map) = value else {
            return Err(format!("expected a JSON object, got {value}"));
        };
        let mut set: Option<FieldSet> = None;
        let mut is_member = false;
        for (key, child) in map {
            if key == "." {
                is_member = true;
                continue;
            }
            let Some(element) = PathElement::parse(key)? else {
                continue;
            };
            let (grandchildren, child_is_member) = Self::read(child, depth + 1)?;
            let set = set.get_or_insert_with(FieldSet::new);
            if child_is_member {
                set.members.insert(element.clone());
            }
            if let Some(grandchildren) = grandchildren.filter(|g| !g.is_empty()) {
                set.children.insert(element, grandchildren);
            }
        }
        // A leaf (`{}`) is a member.
        if set.is_none() {
            is_member = true;
        }
        Ok((set, is_member))
    }
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}
