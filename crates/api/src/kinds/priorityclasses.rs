//! PriorityClasses: pods of a class preempt lower priorities unless it says otherwise; no
//! generation.

use serde_json::{Value, json};

use super::Kind;
use super::defaulting::{drop_generation, set_default};

pub struct PriorityClasses;

impl Kind for PriorityClasses {
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        set_default(object, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        set_default(new, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_classes_preempt_lower_priorities() {
        let mut class = json!({"metadata": {"name": "high", "generation": 1}, "value": 1000});
        PriorityClasses.prepare_for_create(&mut class);
        assert_eq!(class["preemptionPolicy"], "PreemptLowerPriority");
        assert!(class["metadata"].get("generation").is_none());
    }
}
