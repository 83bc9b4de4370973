use std::collections::HashSet;

use serde_json::{Value, json};

use super::*;

fn find(kind: Kind, name: &str) -> Value {
    objects()
        .into_iter()
        .find(|o| o.kind == kind && o.name == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name}"))
        .object
}

fn rules(role: &Value) -> &Vec<Value> {
    role["rules"].as_array().expect("rules")
}

/// Whether any rule grants `verb` on `resource` in `group`.
fn allows(role: &Value, verb: &str, group: &str, resource: &str) -> bool {
    let has = |rule: &Value, field: &str, want: &str| {
        rule[field]
            .as_array()
            .is_some_and(|l| l.iter().any(|v| v == want || v == "*"))
    };
    rules(role).iter().any(|r| {
        has(r, "verbs", verb) && has(r, "apiGroups", group) && has(r, "resources", resource)
    })
}

#[test]
fn cluster_admin_may_do_anything_anywhere() {
    let admin = find(Kind::ClusterRole, "cluster-admin");
    assert_eq!(
        rules(&admin),
        &vec![
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
        ]
    );
}

#[test]
fn view_reads_workloads_but_never_secrets() {
    let view = find(Kind::ClusterRole, "system:aggregate-to-view");
    assert!(allows(&view, "list", "apps", "deployments"));
    assert!(allows(&view, "get", "", "pods"));
    assert!(!allows(&view, "get", "", "secrets"));
    assert!(!allows(&view, "create", "", "pods"));
    let edit = find(Kind::ClusterRole, "system:aggregate-to-edit");
    assert!(allows(&edit, "get", "", "secrets"));
}

#[test]
fn every_object_is_labelled_and_annotated_as_a_default() {
    for object in objects() {
        let meta = &object.object["metadata"];
        assert_eq!(
            meta["labels"]["kubernetes.io/bootstrapping"],
            "rbac-defaults"
        );
        assert_eq!(meta["annotations"][AUTOUPDATE], "true");
        assert_eq!(meta["name"], object.name.as_str());
    }
}

#[test]
fn names_are_unique_per_kind_and_namespace() {
    let mut seen = HashSet::new();
    for object in objects() {
        assert!(
            seen.insert((object.kind, object.namespace, object.name.clone())),
            "{:?} {} twice",
            object.kind,
            object.name
        );
    }
}

#[test]
fn every_binding_refers_to_a_default_role_of_the_right_kind() {
    let all = objects();
    let roles: HashSet<(Kind, Option<&str>, &str)> = all
        .iter()
        .filter(|o| matches!(o.kind, Kind::ClusterRole | Kind::Role))
        .map(|o| (o.kind, o.namespace, o.name.as_str()))
        .collect();
    for binding in all
        .iter()
        .filter(|o| matches!(o.kind, Kind::ClusterRoleBinding | Kind::RoleBinding))
    {
        let role_ref = &binding.object["roleRef"];
        let kind = match role_ref["kind"].as_str() {
            Some("ClusterRole") => Kind::ClusterRole,
            Some("Role") => Kind::Role,
            other => panic!("{}: roleRef kind {other:?}", binding.name),
        };
        let namespace = if kind == Kind::Role {
            binding.namespace
        } else {
            None
        };
        let name = role_ref["name"].as_str().unwrap();
        assert!(
            roles.contains(&(kind, namespace, name)),
            "{} binds missing {kind:?} {name}",
            binding.name
        );
    }
}

#[test]
fn every_controller_role_is_bound_to_its_service_account() {
    for controller in CONTROLLER_ROLES {
        let name = format!("system:controller:{}", controller.controller);
        find(Kind::ClusterRole, &name);
        let binding = find(Kind::ClusterRoleBinding, &name);
        assert_eq!(binding["roleRef"]["name"], name.as_str());
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": controller.controller,
                "namespace": "kube-system"}])
        );
    }
}

#[test]
fn admin_edit_and_view_aggregate_their_parts_and_nest() {
    let selector = |name: &str| {
        find(Kind::ClusterRole, name)["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
            .clone()
    };
    let aggregate =
        |to: &str| json!({ format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true" });
    assert_eq!(selector("admin"), aggregate("admin"));
    assert_eq!(selector("edit"), aggregate("edit"));
    assert_eq!(selector("view"), aggregate("view"));
    // view's rules flow into edit, edit's into admin; each part joins its aggregate.
    let label = |name: &str, to: &str| {
        find(Kind::ClusterRole, name)["metadata"]["labels"]
            [format!("rbac.authorization.k8s.io/aggregate-to-{to}")]
        .clone()
    };
    for (name, to) in [
        ("edit", "admin"),
        ("view", "edit"),
        ("system:aggregate-to-admin", "admin"),
        ("system:aggregate-to-edit", "edit"),
        ("system:aggregate-to-view", "view"),
    ] {
        assert_eq!(label(name, to), "true", "{name} aggregates to {to}");
    }
    assert!(
        find(Kind::ClusterRole, "cluster-admin")
            .get("aggregationRule")
            .is_none()
    );
}

#[test]
fn rule_lists_render_sorted_and_without_empty_fields() {
    let node = find(Kind::ClusterRole, "system:node");
    for rule in rules(&node) {
        for list in rule.as_object().unwrap().values() {
            let list: Vec<&str> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(!list.is_empty());
            assert!(list.is_sorted(), "{list:?}");
        }
    }
    let discovery = find(Kind::ClusterRole, "system:discovery");
    assert!(rules(&discovery)[0].get("apiGroups").is_none());
}

#[test]
fn system_node_binding_has_no_subjects_and_masters_are_cluster_admins() {
    assert!(
        find(Kind::ClusterRoleBinding, "system:node")
            .get("subjects")
            .is_none()
    );
    assert_eq!(
        find(Kind::ClusterRoleBinding, "cluster-admin")["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}])
    );
}

#[test]
fn namespaced_roles_and_bindings_live_in_kube_system_and_kube_public() {
    let namespaced: Vec<_> = objects()
        .into_iter()
        .filter(|o| matches!(o.kind, Kind::Role | Kind::RoleBinding))
        .collect();
    assert_eq!(namespaced.len(), 14);
    for object in &namespaced {
        let namespace = object.namespace.expect("namespaced");
        assert!(["kube-system", "kube-public"].contains(&namespace));
        assert_eq!(object.object["metadata"]["namespace"], namespace);
    }
    let reader = find(Kind::Role, "extension-apiserver-authentication-reader");
    assert_eq!(
        rules(&reader)[0]["resourceNames"],
        json!(["extension-apiserver-authentication"])
    );
}

#[test]
fn upstream_counts() {
    let count = |kind| objects().into_iter().filter(|o| o.kind == kind).count();
    assert_eq!(CLUSTER_ROLES.len(), 31);
    assert_eq!(CONTROLLER_ROLES.len(), 37);
    assert_eq!(count(Kind::ClusterRole), 31 + 37);
    assert_eq!(count(Kind::ClusterRoleBinding), 12 + 37);
}
