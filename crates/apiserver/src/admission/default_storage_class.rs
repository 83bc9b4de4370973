//! The DefaultStorageClass plugin: a new PersistentVolumeClaim that names no class gets the
//! StorageClass annotated as the default (the newest one, when several are).

use serde_json::{Value, json};

use super::{Attributes, Operation, cached};
use crate::registry::Registry;
use crate::status::ApiError;

const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];
/// The class a claim named before `storageClassName` existed.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

pub async fn admit(
    registry: &Registry,
    attributes: &Attributes<'_>,
    claim: &mut Value,
) -> Result<(), ApiError> {
    if !attributes.is("", "persistentvolumeclaims") || attributes.operation != Operation::Create {
        return Ok(());
    }
    // An empty string is a choice too: no class at all.
    if !claim["spec"]["storageClassName"].is_null()
        || claim["metadata"]["annotations"][BETA_CLASS_ANNOTATION].is_string()
    {
        return Ok(());
    }
    let classes = cached(registry, "storage.k8s.io", "storageclasses", None).await?;
    if let Some(class) = default_class(&classes) {
        claim["spec"]["storageClassName"] = json!(class);
    }
    Ok(())
}

/// The default class: annotated `"true"`, the newest first, then by name, as upstream picks.
pub fn default_class(classes: &[Value]) -> Option<&str> {
    classes
        .iter()
        .filter(|c| {
            DEFAULT_CLASS_ANNOTATIONS
                .iter()
                .any(|a| c["metadata"]["annotations"][a].as_str() == Some("true"))
        })
        .max_by(|a, b| {
            let created = |c: &Value| {
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .map(str::to_owned)
            };
            let name = |c: &'_ Value| c["metadata"]["name"].as_str().map(str::to_owned);
            created(a)
                .cmp(&created(b))
                .then_with(|| name(b).cmp(&name(a)))
        })
        .and_then(|c| c["metadata"]["name"].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: Option<&str>) -> Value {
        let mut class = json!({ "metadata": { "name": name, "creationTimestamp": created } });
        if let Some(value) = default {
            class["metadata"]["annotations"] = json!({ DEFAULT_CLASS_ANNOTATIONS[0]: value });
        }
        class
    }

    #[test]
    fn only_a_class_annotated_true_is_the_default() {
        let classes = [
            class("plain", "2024-01-01T00:00:00Z", None),
            class("off", "2024-01-02T00:00:00Z", Some("false")),
        ];
        assert_eq!(default_class(&classes), None);
        let classes = [
            class("plain", "2024-01-01T00:00:00Z", None),
            class("fast", "2024-01-01T00:00:00Z", Some("true")),
        ];
        assert_eq!(default_class(&classes), Some("fast"));
    }

    #[test]
    fn of_several_defaults_the_newest_wins_then_the_first_name() {
        let classes = [
            class("old", "2024-01-01T00:00:00Z", Some("true")),
            class("new-b", "2024-02-01T00:00:00Z", Some("true")),
            class("new-a", "2024-02-01T00:00:00Z", Some("true")),
        ];
        assert_eq!(default_class(&classes), Some("new-a"));
    }
}
