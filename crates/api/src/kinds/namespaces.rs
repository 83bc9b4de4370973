//! Namespaces: the `kubernetes` finalizer that makes the namespace controller empty a deleted
//! namespace before it goes, the Active/Terminating phase, and the
//! `kubernetes.io/metadata.name` label upstream sets on every namespace.

use serde_json::{Value, json};

use super::defaulting::drop_generation;
use super::{Deletion, FieldError, Kind};

pub struct Namespaces;

/// The finalizer the namespace controller removes once the namespace is empty.
pub const FINALIZER: &str = "kubernetes";
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn set_name_label(object: &mut Value) {
    let name = object["metadata"]["name"].clone();
    object["metadata"]["labels"][NAME_LABEL] = name;
}

impl Kind for Namespaces {
    fn returns_deleted_object(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        set_name_label(object);
        let finalizers = &mut object["spec"]["finalizers"];
        match finalizers.as_array_mut() {
            Some(list) if list.iter().any(|f| f == FINALIZER) => {}
            Some(list) => list.push(json!(FINALIZER)),
            None => *finalizers = json!([FINALIZER]),
        }
        object["status"] = json!({ "phase": "Active" });
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        set_name_label(new);
        // Finalizers change only through the finalize subresource.
        new["spec"]["finalizers"] = old["spec"]["finalizers"].clone();
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(finalizers) = object["spec"]["finalizers"].as_array() {
            for (i, f) in finalizers.iter().enumerate() {
                if f.as_str().is_none_or(str::is_empty) {
                    errors.push((format!("spec.finalizers[{i}]"), "Required value".into()));
                }
            }
        }
        errors
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn subresource_fields(&self, subresource: &str) -> Option<&'static [&'static str]> {
        match subresource {
            "status" => Some(&["status"]),
            "finalize" => Some(&["spec"]),
            _ => None,
        }
    }

    fn on_delete(&self, object: &mut Value) -> Deletion {
        let pending = object["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if pending {
            object["status"]["phase"] = json!("Terminating");
            Deletion::Finalize
        } else {
            Deletion::Now
        }
    }

    fn columns(&self) -> Option<&'static [super::Column]> {
        use super::printing::{AGE, NAME, column};
        const COLUMNS: &[super::Column] = &[
            NAME,
            column("Status", "string", "The status of the namespace"),
            AGE,
        ];
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        use super::printing::{self, text};
        vec![
            printing::name(object),
            text(&object["status"]["phase"]).into(),
            printing::age(object, time::OffsetDateTime::now_utc()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_namespaces_get_the_finalizer_phase_and_name_label() {
        let mut ns = json!({ "metadata": { "name": "team" } });
        Namespaces.prepare_for_create(&mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["metadata"]["labels"][NAME_LABEL], "team");
    }

    #[test]
    fn deleting_a_namespace_with_finalizers_makes_it_terminate() {
        let mut ns =
            json!({ "metadata": { "name": "team" }, "spec": { "finalizers": ["kubernetes"] } });
        assert_eq!(Namespaces.on_delete(&mut ns), Deletion::Finalize);
        assert_eq!(ns["status"]["phase"], "Terminating");
        let mut done = json!({ "metadata": { "name": "team" }, "spec": { "finalizers": [] } });
        assert_eq!(Namespaces.on_delete(&mut done), Deletion::Now);
    }

    #[test]
    fn updates_cannot_change_finalizers() {
        let old = json!({ "metadata": { "name": "a" }, "spec": { "finalizers": ["kubernetes"] } });
        let mut new = json!({ "metadata": { "name": "a" }, "spec": { "finalizers": [] } });
        Namespaces.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
    }
}
