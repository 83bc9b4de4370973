//! StorageClasses: upstream's storage/v1 defaults (volumes are deleted with their claims and
//! bound as soon as they are created); no generation.

use serde_json::{Value, json};

use super::Kind;
use super::defaulting::{drop_generation, set_default};

pub struct StorageClasses;

impl Kind for StorageClasses {
    fn returns_deleted_object(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        default_storage_class(object);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_storage_class(new);
    }
}

fn default_storage_class(class: &mut Value) {
    set_default(class, "reclaimPolicy", json!("Delete"));
    set_default(class, "volumeBindingMode", json!("Immediate"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_classes_delete_and_bind_immediately() {
        let mut class = json!({"metadata": {"name": "s", "generation": 1}, "provisioner": "p"});
        StorageClasses.prepare_for_create(&mut class);
        assert_eq!(class["reclaimPolicy"], "Delete");
        assert_eq!(class["volumeBindingMode"], "Immediate");
        assert!(class["metadata"].get("generation").is_none());
    }
}
