//! PodDisruptionBudgets: a new budget's status starts from zero, as upstream's strategy resets
//! it and serializes its counters even when they are zero.

use serde_json::{Value, json};

use super::Kind;

pub struct PodDisruptionBudgets;

impl Kind for PodDisruptionBudgets {
    fn prepare_for_create(&self, object: &mut Value) {
        object["status"] = json!({
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "disruptionsAllowed": 0,
            "expectedPods": 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_start_with_zero_counts() {
        let mut budget = json!({"spec": {"minAvailable": 1}, "status": {"expectedPods": 3}});
        PodDisruptionBudgets.prepare_for_create(&mut budget);
        assert_eq!(budget["status"]["expectedPods"], 0);
        assert_eq!(budget["status"]["disruptionsAllowed"], 0);
    }
}
