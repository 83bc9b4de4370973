use serde_json::json;

use super::*;

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        verbs: strings(verbs),
        api_groups: strings(groups),
        resources: strings(resources),
        ..PolicyRule::default()
    }
}

fn request(verb: &str, group: &str, resource: &str, subresource: &str, name: &str) -> Attributes {
    Attributes {
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        name: name.into(),
        namespace: "default".into(),
        ..Attributes::default()
    }
}

fn non_resource(verb: &str, path: &str) -> Attributes {
    Attributes {
        verb: verb.into(),
        path: path.into(),
        ..Attributes::default()
    }
}

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..User::default()
    }
}

#[test]
fn a_rule_allows_only_its_verbs() {
    let r = rule(&["get", "list"], &[""], &["pods"]);
    assert!(r.allows(&request("list", "", "pods", "", "")));
    assert!(!r.allows(&request("delete", "", "pods", "", "x")));
}

#[test]
fn a_rule_allows_only_its_api_groups() {
    let r = rule(&["get"], &["apps"], &["deployments"]);
    assert!(r.allows(&request("get", "apps", "deployments", "", "web")));
    assert!(!r.allows(&request("get", "extensions", "deployments", "", "web")));
}

#[test]
fn star_matches_every_verb_group_and_resource() {
    let r = rule(&["*"], &["*"], &["*"]);
    assert!(r.allows(&request("deletecollection", "batch", "jobs", "", "")));
    assert!(r.allows(&request("get", "", "pods", "log", "web")));
}

#[test]
fn a_resource_does_not_cover_its_subresources() {
    let r = rule(&["get"], &[""], &["pods"]);
    assert!(!r.allows(&request("get", "", "pods", "log", "web")));
}

#[test]
fn resource_slash_subresource_covers_only_that_subresource() {
    let r = rule(&["get"], &[""], &["pods/log"]);
    assert!(r.allows(&request("get", "", "pods", "log", "web")));
    assert!(!r.allows(&request("get", "", "pods", "status", "web")));
    assert!(!r.allows(&request("get", "", "pods", "", "web")));
}

#[test]
fn star_slash_subresource_covers_that_subresource_of_any_resource() {
    let r = rule(&["get"], &["*"], &["*/scale"]);
    assert!(r.allows(&request("get", "apps", "deployments", "scale", "web")));
    assert!(!r.allows(&request("get", "apps", "deployments", "", "web")));
    assert!(!r.allows(&request("get", "apps", "deployments", "status", "web")));
}

#[test]
fn resource_names_limit_a_rule_to_those_objects() {
    let r = PolicyRule {
        resource_names: vec!["app-config".into()],
        ..rule(&["get", "list"], &[""], &["configmaps"])
    };
    assert!(r.allows(&request("get", "", "configmaps", "", "app-config")));
    assert!(!r.allows(&request("get", "", "configmaps", "", "other")));
    // A list names no object, so a rule with resourceNames never allows it.
    assert!(!r.allows(&request("list", "", "configmaps", "", "")));
}

#[test]
fn non_resource_urls_match_exactly_or_by_trailing_star() {
    let r = PolicyRule {
        verbs: vec!["get".into()],
        non_resource_urls: vec!["/healthz".into(), "/apis/*".into()],
        ..PolicyRule::default()
    };
    assert!(r.allows(&non_resource("get", "/healthz")));
    assert!(r.allows(&non_resource("get", "/apis/apps/v1")));
    assert!(!r.allows(&non_resource("get", "/healthz/etcd")));
    assert!(!r.allows(&non_resource("get", "/apis")));
    assert!(!r.allows(&non_resource("post", "/healthz")));
}

#[test]
fn resource_rules_never_match_non_resource_requests() {
    let r = rule(&["*"], &["*"], &["*"]);
    assert!(!r.allows(&non_resource("get", "/metrics")));
}

#[test]
fn non_resource_rules_never_match_resource_requests() {
    let r = PolicyRule {
        verbs: vec!["*".into()],
        non_resource_urls: vec!["*".into()],
        ..PolicyRule::default()
    };
    assert!(!r.allows(&request("get", "", "pods", "", "web")));
}

fn reader_role(kind: &str, namespace: Option<&str>) -> serde_json::Value {
    json!({
        "kind": kind,
        "metadata": { "name": "reader", "namespace": namespace },
        "rules": [{ "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"] }],
    })
}

fn binding(
    namespace: Option<&str>,
    role_kind: &str,
    subjects: serde_json::Value,
) -> serde_json::Value {
    json!({
        "metadata": { "name": "read-pods", "namespace": namespace },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": "reader" },
        "subjects": subjects,
    })
}

#[test]
fn a_role_binding_grants_only_in_its_namespace() {
    let policy = Policy::build(
        &[],
        &[reader_role("Role", Some("default"))],
        &[],
        &[binding(
            Some("default"),
            "Role",
            json!([{ "kind": "User", "name": "jane" }]),
        )],
    );
    let jane = user("jane", &["system:authenticated"]);
    let visit = policy.visit(&jane, &request("list", "", "pods", "", ""));
    assert_eq!(
        visit.allowed_by.as_deref(),
        Some(r#"RoleBinding "read-pods/default" of Role "reader" to User "jane""#)
    );
    let elsewhere = Attributes {
        namespace: "kube-system".into(),
        ..request("list", "", "pods", "", "")
    };
    assert!(policy.visit(&jane, &elsewhere).allowed_by.is_none());
}

#[test]
fn a_binding_grants_nothing_to_other_users() {
    let policy = Policy::build(
        &[reader_role("ClusterRole", None)],
        &[],
        &[binding(
            None,
            "ClusterRole",
            json!([{ "kind": "User", "name": "jane" }]),
        )],
        &[],
    );
    let bob = user("bob", &["system:authenticated"]);
    assert!(
        policy
            .visit(&bob, &request("list", "", "pods", "", ""))
            .allowed_by
            .is_none()
    );
}

#[test]
fn a_group_subject_grants_to_its_members() {
    let policy = Policy::build(
        &[reader_role("ClusterRole", None)],
        &[],
        &[binding(
            None,
            "ClusterRole",
            json!([{ "kind": "Group", "name": "developers" }]),
        )],
        &[],
    );
    let dev = user("bob", &["developers", "system:authenticated"]);
    let visit = policy.visit(&dev, &request("get", "", "pods", "", "web"));
    assert_eq!(
        visit.allowed_by.as_deref(),
        Some(r#"ClusterRoleBinding "read-pods" of ClusterRole "reader" to Group "developers""#)
    );
}

#[test]
fn a_service_account_subject_without_namespace_means_the_bindings_namespace() {
    let policy = Policy::build(
        &[reader_role("ClusterRole", None)],
        &[],
        &[],
        &[binding(
            Some("apps"),
            "ClusterRole",
            json!([{ "kind": "ServiceAccount", "name": "builder" }]),
        )],
    );
    let account = user(
        "system:serviceaccount:apps:builder",
        &["system:serviceaccounts", "system:serviceaccounts:apps"],
    );
    let in_apps = Attributes {
        namespace: "apps".into(),
        ..request("list", "", "pods", "", "")
    };
    assert!(policy.visit(&account, &in_apps).allowed_by.is_some());
    let other = user(
        "system:serviceaccount:other:builder",
        &["system:serviceaccounts"],
    );
    let in_other = Attributes {
        namespace: "other".into(),
        ..request("list", "", "pods", "", "")
    };
    assert!(policy.visit(&other, &in_other).allowed_by.is_none());
}

#[test]
fn a_binding_to_a_missing_role_reports_it() {
    let policy = Policy::build(
        &[],
        &[],
        &[],
        &[binding(
            Some("default"),
            "Role",
            json!([{ "kind": "User", "name": "jane" }]),
        )],
    );
    let visit = policy.visit(&user("jane", &[]), &request("list", "", "pods", "", ""));
    assert!(visit.allowed_by.is_none());
    assert_eq!(
        visit.errors,
        vec![r#"role.rbac.authorization.k8s.io "reader" not found"#.to_owned()]
    );
}

#[test]
fn rules_for_gathers_cluster_and_namespace_rules() {
    let policy = Policy::build(
        &[reader_role("ClusterRole", None)],
        &[reader_role("Role", Some("default"))],
        &[binding(
            None,
            "ClusterRole",
            json!([{ "kind": "User", "name": "jane" }]),
        )],
        &[binding(
            Some("default"),
            "Role",
            json!([{ "kind": "User", "name": "jane" }]),
        )],
    );
    let (rules, errors) = policy.rules_for(&user("jane", &[]), "default");
    assert_eq!((rules.len(), errors.len()), (2, 0));
    let (rules, _) = policy.rules_for(&user("jane", &[]), "kube-system");
    assert_eq!(rules.len(), 1);
}
