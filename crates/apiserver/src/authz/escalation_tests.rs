use serde_json::json;

use super::*;

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: strings(groups),
        resources: strings(resources),
        ..PolicyRule::default()
    }
}

fn named(rule: PolicyRule, names: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: strings(names),
        ..rule
    }
}

fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        non_resource_urls: strings(urls),
        ..PolicyRule::default()
    }
}

fn holds(owner: &[PolicyRule], wanted: PolicyRule) -> bool {
    uncovered(owner, &[wanted]).is_empty()
}

#[test]
fn verbs_are_covered_one_by_one_or_by_star() {
    let owner = [rule(&["get", "list"], &[""], &["pods"])];
    assert!(holds(&owner, rule(&["list", "get"], &[""], &["pods"])));
    assert!(!holds(&owner, rule(&["get", "delete"], &[""], &["pods"])));
    assert!(holds(
        &[rule(&["*"], &[""], &["pods"])],
        rule(&["escalate"], &[""], &["pods"])
    ));
}

#[test]
fn groups_are_covered_exactly_or_by_star() {
    let owner = [rule(&["get"], &["apps"], &["deployments"])];
    assert!(!holds(
        &owner,
        rule(&["get"], &["extensions"], &["deployments"])
    ));
    let any = [rule(&["get"], &["*"], &["deployments"])];
    assert!(holds(
        &any,
        rule(&["get"], &["apps", "extensions"], &["deployments"])
    ));
}

#[test]
fn a_star_is_covered_only_by_a_star() {
    let every_core = [rule(&["get"], &[""], &["pods", "secrets"])];
    assert!(!holds(&every_core, rule(&["get"], &[""], &["*"])));
    assert!(!holds(&every_core, rule(&["*"], &[""], &["pods"])));
    assert!(!holds(&every_core, rule(&["get"], &["*"], &["pods"])));
    let star = [rule(&["*"], &["*"], &["*"])];
    assert!(holds(&star, rule(&["*"], &["*"], &["*"])));
}

#[test]
fn subresources_are_covered_by_name_or_by_star_slash() {
    let pods = [rule(&["get"], &[""], &["pods"])];
    assert!(!holds(&pods, rule(&["get"], &[""], &["pods/log"])));
    let log = [rule(&["get"], &[""], &["pods/log"])];
    assert!(holds(&log, rule(&["get"], &[""], &["pods/log"])));
    assert!(!holds(&log, rule(&["get"], &[""], &["pods/exec"])));
    let any_status = [rule(&["get"], &[""], &["*/status"])];
    assert!(holds(
        &any_status,
        rule(&["get"], &[""], &["pods/status", "nodes/status"])
    ));
    assert!(!holds(&any_status, rule(&["get"], &[""], &["pods"])));
}

#[test]
fn resource_names_narrow_what_is_covered() {
    let unnamed = [rule(&["get"], &[""], &["secrets"])];
    assert!(holds(
        &unnamed,
        named(rule(&["get"], &[""], &["secrets"]), &["a", "b"])
    ));
    let only_a = [named(rule(&["get"], &[""], &["secrets"]), &["a"])];
    assert!(holds(
        &only_a,
        named(rule(&["get"], &[""], &["secrets"]), &["a"])
    ));
    assert!(!holds(
        &only_a,
        named(rule(&["get"], &[""], &["secrets"]), &["a", "b"])
    ));
    assert!(!holds(&only_a, rule(&["get"], &[""], &["secrets"])));
}

#[test]
fn non_resource_urls_are_covered_exactly_or_by_a_star_suffix() {
    let healthz = [urls(&["get"], &["/healthz"])];
    assert!(holds(&healthz, urls(&["get"], &["/healthz"])));
    assert!(!holds(&healthz, urls(&["get"], &["/healthz/ping"])));
    let under_apis = [urls(&["get"], &["/apis/*"])];
    assert!(holds(&under_apis, urls(&["get"], &["/apis/apps/v1"])));
    assert!(holds(&under_apis, urls(&["get"], &["/apis/*"])));
    assert!(!holds(&under_apis, urls(&["get"], &["/api/v1"])));
    assert!(holds(
        &[urls(&["*"], &["*"])],
        urls(&["get", "post"], &["/metrics"])
    ));
    // A resource rule holds no URL.
    assert!(!holds(
        &[rule(&["*"], &["*"], &["*"])],
        urls(&["get"], &["/metrics"])
    ));
}

#[test]
fn missing_pieces_are_compacted_by_resource_and_sorted() {
    let wanted = [
        rule(&["get", "list"], &[""], &["secrets", "pods"]),
        urls(&["get"], &["/metrics"]),
    ];
    let owner = [rule(&["list"], &[""], &["pods"])];
    let described: BTreeSet<String> = compact(uncovered(&owner, &wanted))
        .iter()
        .map(compact_string)
        .collect();
    assert_eq!(
        described.into_iter().collect::<Vec<_>>(),
        [
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["get"]}"#,
            r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}"#,
            r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#,
        ]
    );
}

fn user(name: &str) -> User {
    User {
        name: name.into(),
        groups: strings(&["devs", "system:authenticated"]),
        ..User::default()
    }
}

fn role(kind: &str, namespace: &str, name: &str, rules: Value) -> Value {
    let mut role = json!({ "kind": kind, "metadata": { "name": name }, "rules": rules });
    if !namespace.is_empty() {
        role["metadata"]["namespace"] = json!(namespace);
    }
    role
}

fn binding(namespace: &str, name: &str, role_kind: &str, role: &str, user: &str) -> Value {
    let mut binding = json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": GROUP, "kind": role_kind, "name": role },
        "subjects": [{ "kind": "User", "apiGroup": GROUP, "name": user }],
    });
    if !namespace.is_empty() {
        binding["metadata"]["namespace"] = json!(namespace);
    }
    binding
}

/// u holds `get pods` in `team`, and what `extra` cluster roles grant there.
fn policy(extra: &[Value]) -> Policy {
    let mut cluster_roles = vec![
        role("ClusterRole", "", "pod-reader", rules(PODS)),
        role("ClusterRole", "", "secret-reader", rules(SECRETS)),
    ];
    let mut bindings = vec![binding(
        "team",
        "u-reads-pods",
        "ClusterRole",
        "pod-reader",
        "u",
    )];
    for (i, rules) in extra.iter().enumerate() {
        let name = format!("extra-{i}");
        cluster_roles.push(role("ClusterRole", "", &name, rules.clone()));
        bindings.push(binding("team", &name, "ClusterRole", &name, "u"));
    }
    Policy::build(&cluster_roles, &[], &[], &bindings)
}

fn write<'a>(plural: &'a str, namespace: &'a str, name: &'a str, object: &'a Value) -> Write<'a> {
    Write {
        plural,
        namespace,
        name,
        object,
        old: None,
    }
}

fn refusal(result: Result<(), Refusal>) -> String {
    match result {
        Err(Refusal::Forbidden(why)) => why,
        Err(Refusal::Error(e)) => panic!("unexpected error {e:?}"),
        Ok(()) => panic!("allowed"),
    }
}

const SECRETS: &str = r#"[{ "verbs": ["get"], "apiGroups": [""], "resources": ["secrets"] }]"#;
const PODS: &str = r#"[{ "verbs": ["get"], "apiGroups": [""], "resources": ["pods"] }]"#;

fn rules(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn a_role_with_rules_the_writer_lacks_is_refused_with_upstreams_text() {
    let role = role("Role", "team", "x", rules(SECRETS));
    let why = refusal(decide(
        &policy(&[]),
        &user("u"),
        &write("roles", "team", "", &role),
    ));
    assert_eq!(
        why,
        "user \"u\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC \
         permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
}

#[test]
fn a_role_within_the_writers_rules_is_allowed() {
    let role = role("Role", "team", "x", rules(PODS));
    assert!(decide(&policy(&[]), &user("u"), &write("roles", "team", "", &role)).is_ok());
}

#[test]
fn rules_held_in_another_namespace_do_not_count() {
    let (policy, u) = (policy(&[]), user("u"));
    let elsewhere = role("Role", "other", "x", rules(PODS));
    assert!(decide(&policy, &u, &write("roles", "other", "", &elsewhere)).is_err());
    // A ClusterRole is checked against cluster-wide rules only.
    let cluster_role = role("ClusterRole", "", "x", rules(PODS));
    assert!(decide(&policy, &u, &write("clusterroles", "", "", &cluster_role)).is_err());
}

#[test]
fn the_escalate_verb_allows_any_rules() {
    let escalate = json!([{ "verbs": ["escalate"], "apiGroups": [GROUP], "resources": ["roles"] }]);
    let role = role("Role", "team", "x", rules(SECRETS));
    assert!(
        decide(
            &policy(&[escalate]),
            &user("u"),
            &write("roles", "team", "", &role)
        )
        .is_ok()
    );
}

#[test]
fn escalate_by_name_applies_to_updates_of_that_role_only() {
    let escalate = json!([{
        "verbs": ["escalate"], "apiGroups": [GROUP], "resources": ["roles"], "resourceNames": ["x"]
    }]);
    let policy = policy(&[escalate]);
    let role = role("Role", "team", "x", rules(SECRETS));
    // A create addresses no name, so a named grant does not reach it.
    assert!(decide(&policy, &user("u"), &write("roles", "team", "", &role)).is_err());
    assert!(decide(&policy, &user("u"), &write("roles", "team", "x", &role)).is_ok());
    assert!(decide(&policy, &user("u"), &write("roles", "team", "y", &role)).is_err());
}

#[test]
fn an_aggregation_rule_needs_everything_even_with_no_rules() {
    let aggregated = json!({
        "metadata": { "name": "agg" },
        "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { "a": "b" } }] },
    });
    let everything_in_team = json!([{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] }]);
    let why = refusal(decide(
        &policy(&[everything_in_team]),
        &user("u"),
        &write("clusterroles", "", "", &aggregated),
    ));
    assert_eq!(
        why,
        "must have cluster-admin privileges to use the aggregationRule"
    );
    let cluster_admin = Policy::build(
        &[role(
            "ClusterRole",
            "",
            "all",
            json!([
                { "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] },
                { "verbs": ["*"], "nonResourceURLs": ["*"] },
            ]),
        )],
        &[],
        &[binding("", "u-all", "ClusterRole", "all", "u")],
        &[],
    );
    let allowed = decide(
        &cluster_admin,
        &user("u"),
        &write("clusterroles", "", "", &aggregated),
    );
    assert!(allowed.is_ok());
}

#[test]
fn removing_an_aggregation_rule_needs_everything_too() {
    let old = json!({
        "metadata": { "name": "agg" },
        "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { "a": "b" } }] },
    });
    let new = json!({ "metadata": { "name": "agg" }, "rules": [] });
    let update = Write {
        old: Some(&old),
        ..write("clusterroles", "", "agg", &new)
    };
    assert!(decide(&policy(&[]), &user("u"), &update).is_err());
}

#[test]
fn binding_a_role_the_writer_holds_is_allowed_and_one_they_lack_refused() {
    let policy = policy(&[]);
    let pods = binding("team", "b", "ClusterRole", "pod-reader", "v");
    assert!(
        decide(
            &policy,
            &user("u"),
            &write("rolebindings", "team", "", &pods)
        )
        .is_ok()
    );
    let secrets = binding("team", "b", "ClusterRole", "secret-reader", "v");
    let why = refusal(decide(
        &policy,
        &user("u"),
        &write("rolebindings", "team", "", &secrets),
    ));
    assert!(
        why.ends_with(r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#),
        "{why}"
    );
}

#[test]
fn the_bind_verb_allows_binding_the_roles_it_names() {
    let bind = json!([{
        "verbs": ["bind"], "apiGroups": [GROUP], "resources": ["clusterroles"],
        "resourceNames": ["secret-reader"]
    }]);
    let policy = policy(&[bind]);
    let secrets = binding("team", "b", "ClusterRole", "secret-reader", "v");
    assert!(
        decide(
            &policy,
            &user("u"),
            &write("rolebindings", "team", "", &secrets)
        )
        .is_ok()
    );
    let admin = binding("team", "b", "ClusterRole", "admin", "v");
    assert!(
        decide(
            &policy,
            &user("u"),
            &write("rolebindings", "team", "", &admin)
        )
        .is_err()
    );
    // Granted in `team`, it does not reach cluster-wide bindings.
    let cluster = binding("", "b", "ClusterRole", "secret-reader", "v");
    assert!(
        decide(
            &policy,
            &user("u"),
            &write("clusterrolebindings", "", "", &cluster)
        )
        .is_err()
    );
}

#[test]
fn binding_a_missing_role_is_not_found_as_the_registry_says_it() {
    let missing = binding("team", "b", "Role", "gone", "v");
    match decide(
        &policy(&[]),
        &user("u"),
        &write("rolebindings", "team", "", &missing),
    ) {
        Err(Refusal::Error(e)) => {
            assert_eq!(e.code.as_u16(), 404);
            assert_eq!(
                e.message,
                r#"roles.rbac.authorization.k8s.io "gone" not found"#
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn roles_that_cannot_be_read_are_named_after_the_missing_rules() {
    let dangling = Policy::build(
        &[],
        &[],
        &[binding("", "d", "ClusterRole", "gone", "u")],
        &[],
    );
    let role = role("Role", "team", "x", rules(PODS));
    let why = refusal(decide(
        &dangling,
        &user("u"),
        &write("roles", "team", "", &role),
    ));
    assert!(
        why.ends_with(
            "Verbs:[\"get\"]}; resolution errors: [clusterroles.rbac.authorization.k8s.io \"gone\" not found]"
        ),
        "{why}"
    );
}

#[test]
fn an_update_of_only_owner_references_and_finalizers_grants_nothing() {
    let old = json!({ "metadata": { "name": "x", "finalizers": ["f"] }, "rules": [] });
    let gc =
        json!({ "metadata": { "name": "x", "ownerReferences": [{ "name": "o" }] }, "rules": [] });
    assert!(only_garbage_collector_fields_change(Some(&old), &gc));
    let grant =
        json!({ "metadata": { "name": "x", "finalizers": ["f"] }, "rules": rules(SECRETS) });
    assert!(!only_garbage_collector_fields_change(Some(&old), &grant));
    assert!(!only_garbage_collector_fields_change(None, &gc));
}
