//! The default RBAC policy upstream's kube-apiserver bootstraps, seen through the real kubectl.

use crate::common;

use common::TestServer;
use serde_json::{Value, json};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn kubectl_lists_the_default_cluster_roles() {
    let server = TestServer::start();
    let out = server.kubectl_ok(&["get", "clusterroles", "-o", "name"]);
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node",
        "system:kube-scheduler",
        "system:discovery",
        "system:controller:deployment-controller",
    ] {
        assert!(
            out.lines()
                .any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{name}")),
            "no {name} in:\n{out}"
        );
    }
    let roles = server.kubectl_ok(&["get", "roles", "-n", "kube-system", "-o", "name"]);
    assert!(
        roles.contains("role.rbac.authorization.k8s.io/extension-apiserver-authentication-reader")
    );
}

#[test]
fn cluster_admin_binding_grants_system_masters() {
    let server = TestServer::start();
    let binding =
        json(&server.kubectl_ok(&["get", "clusterrolebinding", "cluster-admin", "-o", "json"]));
    assert_eq!(binding["roleRef"]["name"], "cluster-admin");
    assert_eq!(
        binding["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}])
    );
    assert_eq!(
        binding["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(
        binding["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
        "true"
    );
}

fn rules(server: &TestServer, role: &str) -> Vec<Value> {
    let role = json(&server.kubectl_ok(&["get", "clusterrole", role, "-o", "json"]));
    role["rules"].as_array().cloned().unwrap_or_default()
}

/// Replaces a ClusterRole's rules with the first `keep` of them.
fn truncate_rules(server: &TestServer, role: &str, keep: usize) {
    let kept = &rules(server, role)[..keep];
    let patch = json!({ "rules": kept }).to_string();
    server.kubectl_ok(&[
        "patch",
        "clusterrole",
        role,
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn a_default_role_gets_back_a_removed_rule_after_a_restart() {
    let server = TestServer::start();
    let basic_user = rules(&server, "system:basic-user");
    truncate_rules(&server, "system:basic-user", 1);
    server.kubectl_ok(&["label", "clusterrole", "system:basic-user", "team=platform"]);
    let server = TestServer::start_in(server.stop());
    assert_eq!(rules(&server, "system:basic-user"), basic_user);
    // What the admin added stays.
    let labels = json(&server.kubectl_ok(&[
        "get",
        "clusterrole",
        "system:basic-user",
        "-o",
        "jsonpath={.metadata.labels}",
    ]));
    assert_eq!(labels["team"], "platform");
}

#[test]
fn a_role_annotated_autoupdate_false_is_left_alone() {
    let server = TestServer::start();
    server.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "clusterrole",
        "system:basic-user",
        "rbac.authorization.kubernetes.io/autoupdate=false",
    ]);
    truncate_rules(&server, "system:basic-user", 1);
    server.kubectl_ok(&["delete", "clusterrolebinding", "system:discovery"]);
    let server = TestServer::start_in(server.stop());
    assert_eq!(rules(&server, "system:basic-user").len(), 1);
    // Deleted defaults come back.
    server.kubectl_ok(&["get", "clusterrolebinding", "system:discovery"]);
}
