//! The dynamic half of the catalogue: the resources established CRDs serve, looked up after
//! the static table by the router, discovery, OpenAPI and the registry.
//!
//! The server works on `&'static Resource` throughout, so each served CRD version's `Resource`
//! (and schema) is leaked once per distinct content and reused from then on: memory grows only
//! with CRD definitions never seen before, not with requests or reinstalls. The live table is
//! an `Arc` swapped under a lock, so readers clone a pointer and never wait on a rebuild.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use r8s_api::{Resource, Subresource};
use serde_json::Value;

use super::columns::{self, PrinterColumn};

/// The verbs upstream serves for every custom resource.
const VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];
const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// Where the scale subresource reads and writes, from `subresources.scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: Vec<columns::Step>,
    pub status_replicas: Vec<columns::Step>,
    pub label_selector: Option<Vec<columns::Step>>,
}

/// One served version of one CRD.
#[derive(Debug)]
pub struct Served {
    pub resource: &'static Resource,
    /// The CRD's name, `<plural>.<group>`.
    pub crd: String,
    pub schema: Option<&'static Value>,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// The schema's `x-kubernetes-validations` rules, compiled; `None` without any.
    pub rules: Option<Arc<Rules>>,
    /// The CRD is being deleted: reads and deletes only.
    pub terminating: bool,
    /// How the CRD's versions convert, when it has several.
    pub versions: Option<super::conversion::Versions>,
}

/// Every served CRD version, groups and versions in discovery order.
#[derive(Debug, Default)]
pub struct Table {
    pub served: Vec<Arc<Served>>,
    /// Each group with its served versions, the preferred first.
    pub groups: Vec<(&'static str, Vec<&'static str>)>,
}

static TABLE: LazyLock<RwLock<Arc<Table>>> = LazyLock::new(Default::default);
static STRINGS: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Default::default);
static RESOURCES: LazyLock<Mutex<HashMap<String, &'static Resource>>> =
    LazyLock::new(Default::default);
static SCHEMAS: LazyLock<Mutex<HashMap<String, &'static Value>>> = LazyLock::new(Default::default);
/// Compiled rules by interned schema address: compiled once per distinct schema.
static RULES: LazyLock<Mutex<HashMap<usize, Option<Arc<Rules>>>>> = LazyLock::new(Default::default);

/// A schema's compiled CEL rules, or why they do not compile (a CRD stored before its rules
/// were checked): writes of its resources are then refused, as upstream refuses them.
pub type Rules = Result<r8s_cel::rules::Compiled, String>;

fn rules_of(schema: &'static Value) -> Option<Arc<Rules>> {
    let address = schema as *const Value as usize;
    let mut compiled = RULES.lock().expect("poisoned");
    compiled
        .entry(address)
        .or_insert_with(
            || match r8s_cel::rules::Compiled::new(schema, "openAPIV3Schema") {
                Ok(None) => None,
                Ok(Some(rules)) => Some(Arc::new(Ok(rules))),
                Err(errors) => {
                    let why: Vec<String> =
                        errors.iter().map(|(f, m)| format!("{f}: {m}")).collect();
                    Some(Arc::new(Err(why.join("; "))))
                }
            },
        )
        .clone()
}

fn intern(text: &str) -> &'static str {
    let mut strings = STRINGS.lock().expect("poisoned");
    if let Some(found) = strings.get(text) {
        return found;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    strings.insert(leaked);
    leaked
}

fn intern_list(items: &[String]) -> &'static [&'static str] {
    if items.is_empty() {
        return &[];
    }
    let interned: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    Box::leak(interned.into_boxed_slice())
}

fn intern_resource(resource: Resource) -> &'static Resource {
    let key = format!("{resource:?}");
    let mut resources = RESOURCES.lock().expect("poisoned");
    resources
        .entry(key)
        .or_insert_with(|| Box::leak(Box::new(resource)))
}

fn intern_schema(schema: &Value) -> &'static Value {
    let key = schema.to_string();
    let mut schemas = SCHEMAS.lock().expect("poisoned");
    schemas
        .entry(key)
        .or_insert_with(|| Box::leak(Box::new(schema.clone())))
}

/// The live table.
pub fn table() -> Arc<Table> {
    TABLE.read().expect("poisoned").clone()
}

/// The served CRD version at `/apis/<group>/<version>/<plural>`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<Arc<Served>> {
    table()
        .served
        .iter()
        .find(|s| {
            let r = s.resource;
            r.group == group && r.version == version && r.plural == plural
        })
        .cloned()
}

/// The served CRD version a resource (as routed) belongs to.
pub fn of(resource: &Resource) -> Option<Arc<Served>> {
    find(resource.group, resource.version, resource.plural)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn is_established(crd: &Value) -> bool {
    crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True")
}

/// Kubernetes version order: GA before beta before alpha, higher numbers first, then others
/// alphabetically; the first is the preferred version.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn rank(v: &str) -> (u8, u64, u64, String) {
        let parsed = v.strip_prefix('v').and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let major: u64 = digits.parse().ok()?;
            let tail = &rest[digits.len()..];
            let (level, minor) = match tail {
                "" => (0, 0),
                t if t.starts_with("beta") => (1, t[4..].parse().ok()?),
                t if t.starts_with("alpha") => (2, t[5..].parse().ok()?),
                _ => return None,
            };
            Some((level, u64::MAX - major, u64::MAX - minor))
        });
        match parsed {
            Some((level, major, minor)) => (level, major, minor, String::new()),
            None => (3, 0, 0, v.to_owned()),
        }
    }
    rank(a).cmp(&rank(b))
}

/// The served versions of one CRD, as it stands (established or not).
pub fn served_versions(crd: &Value) -> Vec<Served> {
    let spec = &crd["spec"];
    // Served names are the accepted ones, as upstream serves status.acceptedNames.
    let names = if crd["status"]["acceptedNames"]["plural"].is_string() {
        &crd["status"]["acceptedNames"]
    } else {
        &spec["names"]
    };
    let (Some(group), Some(plural), Some(kind)) = (
        spec["group"].as_str(),
        names["plural"].as_str(),
        names["kind"].as_str(),
    ) else {
        return Vec::new();
    };
    let singular = names["singular"]
        .as_str()
        .map_or_else(|| kind.to_lowercase(), str::to_owned);
    let namespaced = spec["scope"] != "Cluster";
    let terminating = !crd["metadata"]["deletionTimestamp"].is_null();
    let crd_name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let mut out = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        let Some(name) = version["name"].as_str() else {
            continue;
        };
        if version["served"] != true {
            continue;
        }
        let subresources = &version["subresources"];
        let mut subs = Vec::new();
        if subresources["scale"].is_object() {
            subs.push(Subresource {
                name: "scale",
                group: "autoscaling",
                version: "v1",
                kind: "Scale",
                verbs: SUBRESOURCE_VERBS,
            });
        }
        if subresources["status"].is_object() {
            subs.push(Subresource {
                name: "status",
                group: intern(group),
                version: intern(name),
                kind: intern(kind),
                verbs: SUBRESOURCE_VERBS,
            });
        }
        let resource = intern_resource(Resource {
            group: intern(group),
            version: intern(name),
            kind: intern(kind),
            plural: intern(plural),
            singular: intern(&singular),
            namespaced,
            verbs: VERBS,
            short_names: intern_list(&strings(&names["shortNames"])),
            categories: intern_list(&strings(&names["categories"])),
            subresources: Box::leak(subs.into_boxed_slice()),
            stored_as: None,
        });
        let schema = version["schema"]["openAPIV3Schema"]
            .is_object()
            .then(|| intern_schema(&version["schema"]["openAPIV3Schema"]));
        let scale = &subresources["scale"];
        let path = |key: &str| scale[key].as_str().and_then(columns::parse_path);
        out.push(Served {
            resource,
            crd: crd_name.to_owned(),
            schema,
            columns: columns::of_version(version),
            scale: match (path("specReplicasPath"), path("statusReplicasPath")) {
                (Some(spec_replicas), Some(status_replicas)) => Some(ScalePaths {
                    spec_replicas,
                    status_replicas,
                    label_selector: path("labelSelectorPath"),
                }),
                _ => None,
            },
            rules: schema.and_then(rules_of),
            terminating,
            versions: super::conversion::versions_of(crd),
        });
    }
    out
}

/// Rebuilds the table from every CRD: the established ones are served.
pub fn install(crds: &[Value]) {
    let mut served: Vec<Arc<Served>> = crds
        .iter()
        .filter(|crd| is_established(crd))
        .flat_map(served_versions)
        .map(Arc::new)
        .collect();
    served.sort_by(|a, b| {
        let (a, b) = (a.resource, b.resource);
        (a.group, a.plural)
            .cmp(&(b.group, b.plural))
            .then_with(|| version_order(a.version, b.version))
    });
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for s in &served {
        let r = s.resource;
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    for (_, versions) in &mut groups {
        versions.sort_by(|a, b| version_order(a, b));
    }
    super::conversion::set_any(served.iter().any(|s| s.versions.is_some()));
    *TABLE.write().expect("poisoned") = Arc::new(Table { served, groups });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_sort_ga_then_beta_then_alpha() {
        let mut versions = vec!["v1alpha1", "v1beta1", "v2", "v1", "v1beta2", "foo"];
        versions.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            versions,
            ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn served_versions_carry_names_scope_and_subresources() {
        let crd = json!({
            "metadata": { "name": "widgets.example.com" },
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"] },
                "versions": [
                    { "name": "v1", "served": true, "storage": true,
                      "subresources": { "status": {}, "scale": { "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas" } } },
                    { "name": "v0", "served": false, "storage": false },
                ],
            },
        });
        let served = served_versions(&crd);
        assert_eq!(served.len(), 1);
        let r = served[0].resource;
        assert_eq!(
            (r.group, r.version, r.plural, r.kind),
            ("example.com", "v1", "widgets", "Widget")
        );
        assert_eq!(r.short_names, ["wd"]);
        assert!(r.has_subresource("status").is_some() && r.has_subresource("scale").is_some());
        assert!(served[0].scale.is_some());
        // The same definition is leaked once.
        assert!(std::ptr::eq(r, served_versions(&crd)[0].resource));
    }
}
