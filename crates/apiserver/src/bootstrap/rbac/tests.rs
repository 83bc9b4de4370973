use serde_json::json;

use super::*;

fn role(rules: Value) -> Value {
    json!({
        "kind": "ClusterRole",
        "metadata": {
            "name": "r",
            "resourceVersion": "7",
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {AUTOUPDATE: "true"},
        },
        "rules": rules,
    })
}

fn pods(verbs: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": [""], "resources": ["pods"]})
}

#[test]
fn a_missing_object_is_created() {
    let desired = role(json!([pods(&["get"])]));
    assert_eq!(
        reconcile(Kind::ClusterRole, &desired, None),
        Some(Action::Create(desired.clone()))
    );
}

#[test]
fn an_object_with_everything_is_left_alone_even_with_extra_rules() {
    let desired = role(json!([pods(&["get", "list"])]));
    let existing = role(json!([pods(&["get", "list", "watch"]), pods(&["delete"])]));
    assert_eq!(
        reconcile(Kind::ClusterRole, &desired, Some(&existing)),
        None
    );
}

#[test]
fn missing_permissions_come_back_as_upstream_adds_them() {
    let desired = role(json!([pods(&["get", "list"])]));
    let existing = role(json!([pods(&["get"]), pods(&["delete"])]));
    let Some(Action::Update(updated)) = reconcile(Kind::ClusterRole, &desired, Some(&existing))
    else {
        panic!("expected an update");
    };
    assert_eq!(
        updated["rules"],
        json!([pods(&["get"]), pods(&["delete"]), pods(&["list"])])
    );
    assert_eq!(updated["metadata"]["resourceVersion"], "7");
}

#[test]
fn autoupdate_false_is_never_touched() {
    let desired = role(json!([pods(&["get"])]));
    let mut existing = role(json!([]));
    existing["metadata"]["annotations"][AUTOUPDATE] = json!("false");
    assert_eq!(
        reconcile(Kind::ClusterRole, &desired, Some(&existing)),
        None
    );
}

#[test]
fn missing_labels_and_annotations_are_added_and_admin_values_kept() {
    let desired = role(json!([]));
    let mut existing = role(json!([]));
    existing["metadata"]["labels"] = json!({"team": "a", "kubernetes.io/bootstrapping": "mine"});
    existing["metadata"]["annotations"] = json!({});
    let Some(Action::Update(updated)) = reconcile(Kind::ClusterRole, &desired, Some(&existing))
    else {
        panic!("expected an update");
    };
    assert_eq!(
        updated["metadata"]["labels"],
        json!({"team": "a", "kubernetes.io/bootstrapping": "mine"})
    );
    assert_eq!(updated["metadata"]["annotations"][AUTOUPDATE], "true");
}

#[test]
fn wildcards_subresource_stars_and_url_prefixes_cover() {
    let owned = [
        json!({"verbs": ["*"], "apiGroups": ["apps"], "resources": ["*"]}),
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]}),
        json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/*"]}),
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["a"]}),
    ];
    let wanted = [
        json!({"verbs": ["create", "delete"], "apiGroups": ["apps"], "resources": ["deployments"]}),
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/status"]}),
        json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/etcd", "/livez"]}),
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["a", "b"]}),
        json!({"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"]}),
    ];
    assert_eq!(
        uncovered_rules(&owned, &wanted),
        vec![
            json!({"verbs": ["get"], "nonResourceURLs": ["/livez"]}),
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
                "resourceNames": ["b"]}),
            json!({"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"]}),
        ]
    );
}

fn binding(role: &str, subjects: Value) -> Value {
    json!({
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b", "resourceVersion": "3", "uid": "u",
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

#[test]
fn missing_subjects_are_added_to_bindings() {
    let desired = binding("view", json!([{"kind": "Group", "name": "g"}]));
    let existing = binding(
        "view",
        json!([{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]),
    );
    let Some(Action::Update(updated)) =
        reconcile(Kind::ClusterRoleBinding, &desired, Some(&existing))
    else {
        panic!("expected an update");
    };
    assert_eq!(
        updated["subjects"],
        json!([{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "Group", "name": "g"}])
    );
}

#[test]
fn subjects_match_whatever_their_written_api_group() {
    let desired = binding("view", json!([{"kind": "Group", "name": "g"}]));
    let existing = binding(
        "view",
        json!([{"kind": "Group", "name": "g", "apiGroup": "rbac.authorization.k8s.io"}]),
    );
    assert_eq!(
        reconcile(Kind::ClusterRoleBinding, &desired, Some(&existing)),
        None
    );
}

#[test]
fn a_binding_to_another_role_is_recreated_keeping_its_subjects() {
    let desired = binding("view", json!([{"kind": "Group", "name": "g"}]));
    let existing = binding("edit", json!([{"kind": "User", "name": "u"}]));
    let Some(Action::Recreate(recreated)) =
        reconcile(Kind::ClusterRoleBinding, &desired, Some(&existing))
    else {
        panic!("expected a recreate");
    };
    assert_eq!(recreated["roleRef"]["name"], "view");
    assert_eq!(recreated["subjects"].as_array().unwrap().len(), 2);
    assert!(recreated["metadata"].get("resourceVersion").is_none());
    assert!(recreated["metadata"].get("uid").is_none());
}
