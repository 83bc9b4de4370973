//! Kubernetes 1.37's schema definitions (the embedded upstream data, see
//! `crates/apiserver/openapi/README.md`), turned back from the package's JSON Schema form into
//! the shape kube-apiserver serves them in.

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// `_definitions.json` of the `kubernetes-validate` 1.37.0 package, gzipped.
const DEFINITIONS_GZ: &[u8] = include_bytes!("../../openapi/definitions-v1.37.0.json.gz");
/// How the embedded data spells a reference.
const DATA_REF_PREFIX: &str = "#/$defs/";

pub const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING_DESCRIPTION: &str =
    "An int32 or a string: a port number or name, a count or a percentage.";
const QUANTITY_DESCRIPTION: &str =
    "A fixed-point number with an optional suffix, such as 100m, 1.5Gi or 2e3.";

/// The document format a definition is written for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    /// Swagger 2.0: `#/definitions/…`, `$ref` beside `description` allowed.
    Swagger2,
    /// OpenAPI 3.0: `#/components/schemas/…`; a `$ref` with siblings goes inside `allOf`.
    OpenApi3,
}

impl Dialect {
    pub fn reference(self, name: &str) -> String {
        match self {
            Dialect::Swagger2 => format!("#/definitions/{name}"),
            Dialect::OpenApi3 => format!("#/components/schemas/{name}"),
        }
    }
}

/// A group, version and kind, as `x-kubernetes-group-version-kind` writes one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Gvk {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

impl Gvk {
    pub fn to_json(self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

pub struct Definitions {
    /// By upstream name (`io.k8s.api.core.v1.ConfigMap`), as the data has them.
    schemas: BTreeMap<String, Value>,
    /// `(group, version, kind)` → the definition whose objects have that kind.
    kinds: BTreeMap<(String, String, String), String>,
}

impl Definitions {
    /// Decompresses and indexes the embedded data, documentation included: what the served
    /// OpenAPI documents are built from.
    pub fn load() -> Self {
        Self::decode(Detail::Documented)
    }

    /// The embedded data without its `description` texts (four fifths of it), for the server's
    /// own lookups: patches, field validation and managed fields read the structure only, and
    /// this copy stays in memory for the server's life.
    pub fn load_lean() -> Self {
        Self::decode(Detail::Lean)
    }

    fn decode(detail: Detail) -> Self {
        // Streamed from the decompressor, so the 1.8 MB text is never held whole.
        let text = std::io::BufReader::new(flate2::read::GzDecoder::new(DEFINITIONS_GZ));
        let mut document = detail
            .deserialize(&mut serde_json::Deserializer::from_reader(text))
            .expect("the embedded OpenAPI definitions are JSON");
        let Value::Object(schemas) = document["$defs"].take() else {
            panic!("the embedded OpenAPI definitions have no $defs");
        };
        let mut kinds = BTreeMap::new();
        for (name, schema) in &schemas {
            for gvk in group_version_kinds(schema) {
                let key = |field: &str| gvk[field].as_str().unwrap_or_default().to_owned();
                kinds.insert((key("group"), key("version"), key("kind")), name.clone());
            }
        }
        Self {
            schemas: schemas.into_iter().collect(),
            kinds,
        }
    }

    /// The definition of objects of this kind, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub fn of_kind(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
            .map(String::as_str)
    }

    /// A definition by its upstream name.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.schemas.get(name)
    }

    #[cfg(test)]
    pub fn contains(&self, name: &str) -> bool {
        self.schemas.contains_key(name)
    }

    /// The named definitions and everything they reference, transitively.
    pub fn closure(&self, roots: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<String> = roots.into_iter().collect();
        while let Some(name) = pending.pop() {
            let Some(schema) = self.schemas.get(&name) else {
                continue;
            };
            if seen.insert(name) {
                collect_refs(schema, &mut |target| pending.push(target.to_owned()));
            }
        }
        seen
    }

    /// One definition as served in `dialect`. In an OpenAPI 3 document of `group_version`, the
    /// kind lists of meta types keep only that group version and core v1, as upstream's
    /// per-group-version documents do.
    pub fn render(
        &self,
        name: &str,
        dialect: Dialect,
        group_version: Option<(&str, &str)>,
    ) -> Option<Value> {
        let schema = self.schemas.get(name)?;
        let mut out = match (name, dialect) {
            // Upstream's generator writes these two as strings in Swagger 2.0 and as a oneOf of
            // their JSON types in OpenAPI 3 (the data has neither exactly).
            (INT_OR_STRING, Dialect::Swagger2) => json!({
                "description": INT_OR_STRING_DESCRIPTION,
                "format": "int-or-string",
                "type": "string",
            }),
            (INT_OR_STRING, Dialect::OpenApi3) => json!({
                "description": INT_OR_STRING_DESCRIPTION,
                "format": "int-or-string",
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            }),
            (QUANTITY, Dialect::Swagger2) => json!({
                "description": QUANTITY_DESCRIPTION,
                "type": "string",
            }),
            (QUANTITY, Dialect::OpenApi3) => json!({
                "description": QUANTITY_DESCRIPTION,
                "oneOf": [{"type": "string"}, {"type": "number"}],
            }),
            _ => convert(schema, dialect),
        };
        if let Some(Value::Object(properties)) = out.get_mut("properties")
            && schema.get("x-kubernetes-group-version-kind").is_some()
        {
            // The generator pinned apiVersion and kind with an enum; upstream does not.
            for field in ["apiVersion", "kind"] {
                if let Some(Value::Object(property)) = properties.get_mut(field) {
                    property.remove("enum");
                }
            }
        }
        if let (Some((group, version)), Some(Value::Array(gvks))) = (
            group_version,
            out.get_mut("x-kubernetes-group-version-kind"),
        ) {
            let kept: Vec<Value> = gvks
                .iter()
                .filter(|gvk| {
                    let is = |g: &str, v: &str| gvk["group"] == g && gvk["version"] == v;
                    is("", "v1") || is(group, version)
                })
                .cloned()
                .collect();
            if !kept.is_empty() {
                *gvks = kept;
            }
        }
        Some(out)
    }
}

/// How much of the embedded data a decode keeps.
#[derive(Clone, Copy)]
enum Detail {
    Documented,
    /// Drops every `description` whose value is text: a schema's documentation. A property
    /// named `description` (JSONSchemaProps has one) is an object and stays.
    Lean,
}

impl<'de> DeserializeSeed<'de> for Detail {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Detail::Documented => Value::deserialize(deserializer),
            Detail::Lean => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Detail {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            if key == "description" && value.is_string() {
                continue;
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

fn group_version_kinds(schema: &Value) -> &[Value] {
    match schema.get("x-kubernetes-group-version-kind") {
        Some(Value::Array(list)) => list,
        _ => &[],
    }
}

/// Calls `found` with the definition name of every `$ref` in `schema`.
fn collect_refs(schema: &Value, found: &mut impl FnMut(&str)) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        found(target.strip_prefix(DATA_REF_PREFIX).unwrap_or(target));
                    }
                    _ => collect_refs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, found)),
        _ => {}
    }
}

/// One schema from the data's JSON Schema form into `dialect`'s. Walks only schema positions,
/// so a property that happens to be named `$ref` or `type` (JSONSchemaProps has both) stays.
fn convert(schema: &Value, dialect: Dialect) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match (key.as_str(), value) {
            ("$ref", Value::String(target)) => {
                let name = target.strip_prefix(DATA_REF_PREFIX).unwrap_or(target);
                Value::String(dialect.reference(name))
            }
            // `["string", "null"]`: the generator's way of saying optional.
            ("type", Value::Array(types)) => types
                .iter()
                .find(|t| *t != "null")
                .cloned()
                .unwrap_or(Value::Null),
            ("properties" | "patternProperties", Value::Object(fields)) => Value::Object(
                fields
                    .iter()
                    .map(|(name, field)| (name.clone(), convert(field, dialect)))
                    .collect(),
            ),
            ("items" | "additionalProperties" | "not", Value::Object(_)) => convert(value, dialect),
            ("allOf" | "anyOf" | "oneOf", Value::Array(options)) => {
                Value::Array(options.iter().map(|o| convert(o, dialect)).collect())
            }
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if dialect == Dialect::OpenApi3
        && out.len() > 1
        && let Some(reference) = out.remove("$ref")
    {
        out.insert("allOf".to_owned(), json!([{ "$ref": reference }]));
    }
    Value::Object(out)
}
