//! Label and field selectors, parsed as upstream does (`a=b,c!=d,e in (f,g),!h`), and the
//! fields of an object they read.

use r8s_api::kinds::Kind;
use serde_json::{Value, json};

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(format!("unable to parse requirement: {why} in {text:?}"))
        };
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement::DoesNotExist(label_key(key.trim()).map_err(|e| bad(&e))?)
            } else if let Some((key, rest)) = split_set_op(term, " notin ") {
                Requirement::NotIn(
                    label_key(key).map_err(|e| bad(&e))?,
                    set(rest).map_err(|e| bad(&e))?,
                )
            } else if let Some((key, rest)) = split_set_op(term, " in ") {
                Requirement::In(
                    label_key(key).map_err(|e| bad(&e))?,
                    set(rest).map_err(|e| bad(&e))?,
                )
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(label_key(key).map_err(|e| bad(&e))?, value.trim().into())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Requirement::Equals(label_key(key).map_err(|e| bad(&e))?, value.trim().into())
            } else {
                Requirement::Exists(label_key(term).map_err(|e| bad(&e))?)
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`); the empty
    /// selector matches everything (the caller decides what an absent one means).
    pub fn from_object(selector: &Value) -> Result<Self, ApiError> {
        let bad = |why: String| ApiError::bad_request(format!("invalid label selector: {why}"));
        let mut requirements = Vec::new();
        if let Some(labels) = selector["matchLabels"].as_object() {
            for (key, value) in labels {
                let value = value
                    .as_str()
                    .ok_or_else(|| bad(format!("{key} is not a string")))?;
                requirements.push(Requirement::Equals(key.clone(), value.to_owned()));
            }
        }
        for expression in selector["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let key = expression["key"].as_str().unwrap_or_default().to_owned();
            let values: Vec<String> = expression["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            requirements.push(match expression["operator"].as_str().unwrap_or_default() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(bad(format!(
                        "{other:?} is not a valid label selector operator"
                    )));
                }
            });
        }
        Ok(Self(requirements))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let get = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// Commas inside `( … )` belong to a set, not between requirements.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn split_set_op<'a>(term: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let at = term.find(op)?;
    Some((&term[..at], &term[at + op.len()..]))
}

fn set(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| "expected a set like (a,b)".to_owned())?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

fn label_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

/// What selectors read of a stored object: `metadata.name`, `metadata.namespace`,
/// `metadata.labels` and the kind's selectable fields, at their usual paths.
pub fn selectable(object: &Value, kind: &dyn Kind) -> Value {
    let meta = &object["metadata"];
    let mut selectable = json!({
        "metadata": { "name": meta["name"], "namespace": meta["namespace"], "labels": meta["labels"] },
    });
    for field in kind.selectable_fields() {
        let target = field
            .split('.')
            .fold(&mut selectable, |node, part| &mut node[part]);
        *target = kind.selectable_value(object, field);
    }
    selectable
}

/// A field selector: `field=value` / `field!=value` terms over the fields a resource supports.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// A selector over the fields `kind` (a served resource's behaviour) supports, naming them
    /// as its stored form does, to be matched against [`selectable`] of stored objects.
    pub fn for_kind(text: &str, kind: &dyn Kind) -> Result<Self, ApiError> {
        let mut selector = Self::parse(text, kind.selectable_fields())?;
        for (field, _, _) in &mut selector.0 {
            *field = kind.stored_field_label(field).to_owned();
        }
        Ok(selector)
    }

    /// `supported` are the fields this resource can be selected by, besides `metadata.name`
    /// and `metadata.namespace`, which every resource supports.
    pub fn parse(text: &str, supported: &[&str]) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace")
                && !supported.contains(&field)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let mut node = object;
            for part in field.split('.') {
                node = &node[part];
            }
            let actual = match node {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({ "metadata": { "labels": labels } })
    }

    #[test]
    fn label_selector_operators_match_as_upstream() {
        let obj = labelled(json!({ "app": "web", "tier": "front" }));
        for (selector, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing,app=web", true),
            ("app=web,tier=back", false),
            ("missing notin (x)", true),
        ] {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(&obj), want, "{selector}");
        }
    }

    #[test]
    fn malformed_label_selector_is_bad_request() {
        let err = LabelSelector::parse("app in web").unwrap_err();
        assert_eq!(err.code, 400);
    }

    #[test]
    fn field_selector_checks_supported_fields() {
        let obj = json!({ "metadata": { "name": "a", "namespace": "n" }, "status": { "phase": "Running" } });
        let sel = FieldSelector::parse("metadata.name=a,status.phase!=Pending", &["status.phase"]);
        assert!(sel.unwrap().matches(&obj));
        let err = FieldSelector::parse("spec.bogus=x", &[]).unwrap_err();
        assert!(err.message.contains("field label not supported"));
    }

    fn kind(group: &str, plural: &str) -> &'static dyn Kind {
        r8s_api::kinds::behaviour(r8s_api::find(group, "v1", plural).expect("catalogue entry"))
    }

    #[test]
    fn events_k8s_io_selectors_match_stored_core_events() {
        let core = kind("", "events");
        let event = json!({
            "metadata": { "name": "e", "namespace": "default" },
            "involvedObject": { "kind": "Pod", "name": "web" },
            "reportingComponent": "default-scheduler",
            "source": {},
            "type": "Normal",
        });
        let stored = selectable(&event, core);
        assert_eq!(stored["source"], "default-scheduler");
        let events_k8s_io = kind("events.k8s.io", "events");
        let by_regarding = FieldSelector::for_kind(
            "regarding.name=web,reportingController=default-scheduler",
            events_k8s_io,
        );
        assert!(by_regarding.unwrap().matches(&stored));
        let other = FieldSelector::for_kind("regarding.kind=Node", events_k8s_io).unwrap();
        assert!(!other.matches(&stored));
        let err = FieldSelector::for_kind("involvedObject.name=web", events_k8s_io).unwrap_err();
        assert!(err.message.contains("field label not supported"));
        let by_core =
            FieldSelector::for_kind("involvedObject.name=web,source=default-scheduler", core);
        assert!(by_core.unwrap().matches(&stored));
    }
}
