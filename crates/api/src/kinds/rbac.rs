//! RBAC roles and bindings: no generation (upstream tracks none for them), and the API group
//! a binding's role reference and its user and group subjects default to.

use serde_json::{Value, json};

use super::Kind;
use super::defaulting::{drop_generation, items_mut};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Roles and ClusterRoles.
pub struct Roles;

/// RoleBindings and ClusterRoleBindings.
pub struct Bindings;

impl Kind for Roles {
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
    }
}

impl Kind for Bindings {
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        default_binding(object);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_binding(new);
    }
}

fn default_binding(binding: &mut Value) {
    if let Some(role_ref) = binding.get_mut("roleRef").filter(|r| r.is_object()) {
        set_default_group(role_ref);
    }
    for subject in items_mut(binding, "subjects") {
        if matches!(subject["kind"].as_str(), Some("User" | "Group")) {
            set_default_group(subject);
        }
    }
}

fn set_default_group(object: &mut Value) {
    if object["apiGroup"].as_str().is_none_or(str::is_empty) {
        object["apiGroup"] = json!(GROUP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_groups_and_role_refs_default_to_the_rbac_group() {
        let mut binding = json!({"metadata": {"name": "b", "generation": 1},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "u"}, {"kind": "Group", "name": "g", "apiGroup": ""},
                {"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]});
        Bindings.prepare_for_create(&mut binding);
        assert_eq!(binding["roleRef"]["apiGroup"], GROUP);
        assert_eq!(binding["subjects"][0]["apiGroup"], GROUP);
        assert_eq!(binding["subjects"][1]["apiGroup"], GROUP);
        assert!(binding["subjects"][2].get("apiGroup").is_none());
        assert!(binding["metadata"].get("generation").is_none());
    }

    #[test]
    fn roles_have_no_generation() {
        let mut role = json!({"metadata": {"name": "r", "generation": 1}, "rules": []});
        Roles.prepare_for_create(&mut role);
        assert!(role["metadata"].get("generation").is_none());
    }
}
