//! NetworkPolicies: upstream's networking/v1 defaults (TCP ports, and the policy types a policy
//! implies when it names none).

use serde_json::{Value, json};

use super::Kind;
use super::defaulting::{items_mut, set_default};

pub struct NetworkPolicies;

impl Kind for NetworkPolicies {
    fn prepare_for_create(&self, object: &mut Value) {
        default_network_policy(object);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_network_policy(new);
    }
}

fn default_network_policy(policy: &mut Value) {
    let Some(spec) = policy.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    for direction in ["ingress", "egress"] {
        for rule in items_mut(spec, direction) {
            for port in items_mut(rule, "ports") {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
    // A policy always governs ingress, and egress too when it has egress rules.
    let named = spec["policyTypes"]
        .as_array()
        .is_some_and(|t| !t.is_empty());
    if !named {
        let has_egress = spec["egress"].as_array().is_some_and(|e| !e.is_empty());
        spec["policyTypes"] = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_without_types_govern_ingress() {
        let mut policy = json!({"spec": {"podSelector": {}}});
        NetworkPolicies.prepare_for_create(&mut policy);
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    }

    #[test]
    fn policies_with_egress_rules_govern_egress_too() {
        let mut policy =
            json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        NetworkPolicies.prepare_for_create(&mut policy);
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(policy["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn named_policy_types_are_kept() {
        let mut policy = json!({"spec": {"podSelector": {}, "policyTypes": ["Egress"]}});
        NetworkPolicies.prepare_for_update(&mut policy, &Value::Null);
        assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]));
    }
}
