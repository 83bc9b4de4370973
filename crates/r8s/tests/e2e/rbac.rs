//! Authorization with the real kubectl: RBAC decides what a user may do, denials carry
//! upstream's 403 message, `kubectl auth can-i`/`whoami` answer from the authorizer, and
//! impersonation needs its own permission.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{TestServer, tools_bin};

/// A kubeconfig for `user` in `group`, with a client certificate signed by the cluster CA.
fn kubeconfig_for(server: &TestServer, dir: &Path, user: &str, group: &str) -> PathBuf {
    let tls = server.data_dir.path().join("server/tls");
    let (crt, key) = server.client_cert(dir, user, group);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let config = dir.join(format!("{user}.kubeconfig"));
    let kubectl = |args: &[&str]| {
        let out = Command::new(tools_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    kubectl(&[
        "config",
        "set-cluster",
        "r8s",
        "--server",
        &server.url,
        "--embed-certs",
        "--certificate-authority",
        &s(&tls.join("ca.crt")),
    ]);
    kubectl(&[
        "config",
        "set-credentials",
        user,
        "--embed-certs",
        "--client-certificate",
        &s(&crt),
        "--client-key",
        &s(&key),
    ]);
    kubectl(&[
        "config",
        "set-context",
        "r8s",
        "--cluster",
        "r8s",
        "--user",
        user,
    ]);
    kubectl(&["config", "use-context", "r8s"]);
    config
}

fn kubectl_as(config: &Path, args: &[&str]) -> Output {
    Command::new(tools_bin().join("kubectl"))
        .arg("--kubeconfig")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command until it succeeds: RBAC changes reach the authorizer through the watch cache.
fn eventually(run: impl FnMut() -> Output) -> Output {
    until(run, |out| out.status.success())
}

fn until(mut run: impl FnMut() -> Output, done: impl Fn(&Output) -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run();
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn whoami_names_the_certificate_user_and_groups() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let jane = kubeconfig_for(&server, scratch.path(), "jane", "developers");
    let out = kubectl_as(
        &jane,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["username"], "jane");
    assert_eq!(
        info["groups"],
        serde_json::json!(["developers", "system:authenticated"])
    );
}

#[test]
fn a_user_without_bindings_is_refused_with_upstreams_message() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let jane = kubeconfig_for(&server, scratch.path(), "jane", "developers");
    let out = kubectl_as(&jane, &["get", "pods"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            r#"Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{}",
        text(&out)
    );
    let out = kubectl_as(&jane, &["get", "namespace", "kube-system"]);
    assert!(
        text(&out).contains(
            r#"namespaces "kube-system" is forbidden: User "jane" cannot get resource "namespaces" in API group "" in the namespace "kube-system""#
        ),
        "{}",
        text(&out)
    );
    let out = kubectl_as(&jane, &["get", "--raw", "/metrics"]);
    assert!(
        text(&out).contains(r#"forbidden: User "jane" cannot get path "/metrics""#),
        "{}",
        text(&out)
    );
    // Discovery stays open to every authenticated user (system:discovery).
    let out = kubectl_as(&jane, &["api-versions"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_403_status_has_upstreams_shape() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    kubeconfig_for(&server, scratch.path(), "jane", "developers");
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(server.data_dir.path().join("server/tls/ca.crt"))
        .arg("--cert")
        .arg(scratch.path().join("jane.crt"))
        .arg("--key")
        .arg(scratch.path().join("jane.key"))
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps",
            server.url
        ))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no Status in {}", text(&out)));
    assert_eq!(
        status,
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "configmaps is forbidden: User \"jane\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\"",
            "reason": "Forbidden", "details": { "kind": "configmaps" }, "code": 403,
        })
    );
}

#[test]
fn a_rolebinding_grants_what_its_role_allows_in_its_namespace_only() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let jane = kubeconfig_for(&server, scratch.path(), "jane", "developers");
    let can_list = || server.kubectl(&["auth", "can-i", "list", "pods", "--as", "jane"]);
    let out = can_list();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        (Some(1), "no")
    );
    server.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list,watch",
        "--resource=pods",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "jane-reads-pods",
        "--role=pod-reader",
        "--user=jane",
    ]);
    let out = eventually(can_list);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "yes",
        "{}",
        text(&out)
    );
    let out = kubectl_as(&jane, &["get", "pods"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl_as(&jane, &["get", "secrets"]);
    assert!(
        text(&out).contains(
            r#"secrets is forbidden: User "jane" cannot list resource "secrets" in API group "" in the namespace "default""#
        ),
        "{}",
        text(&out)
    );
    let out = kubectl_as(&jane, &["get", "pods", "-n", "kube-system"]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = kubectl_as(&jane, &["delete", "pod", "anything"]);
    assert!(
        text(&out).contains("cannot delete resource"),
        "{}",
        text(&out)
    );
}

#[test]
fn can_i_list_shows_the_rules_a_user_holds() {
    let server = TestServer::start();
    server.kubectl_ok(&[
        "create",
        "role",
        "cm-reader",
        "--verb=get",
        "--resource=configmaps",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "jane-cm",
        "--role=cm-reader",
        "--user=jane",
    ]);
    let out = until(
        || server.kubectl(&["auth", "can-i", "--list", "--as", "jane"]),
        |out| String::from_utf8_lossy(&out.stdout).contains("configmaps"),
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.starts_with("configmaps "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.ends_with("[get]"), "{table}");
    // What every authenticated user holds (system:basic-user, system:discovery) is listed too.
    assert!(
        table.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{table}"
    );
    assert!(!table.contains("secrets"), "{table}");
}

#[test]
fn a_cluster_role_binding_to_view_lets_a_user_read_but_not_write() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let jane = kubeconfig_for(&server, scratch.path(), "jane", "developers");
    server.kubectl_ok(&["create", "configmap", "settings", "--from-literal=a=b"]);
    server.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "jane-views",
        "--clusterrole=view",
        "--user=jane",
    ]);
    // view's rules are aggregated from system:aggregate-to-view.
    let out = until(
        || kubectl_as(&jane, &["get", "configmaps", "-A"]),
        |out| String::from_utf8_lossy(&out.stdout).contains("settings"),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("settings"),
        "{}",
        text(&out)
    );
    let out = kubectl_as(&jane, &["create", "configmap", "mine"]);
    assert!(
        text(&out).contains(
            r#"configmaps is forbidden: User "jane" cannot create resource "configmaps" in API group "" in the namespace "default""#
        ),
        "{}",
        text(&out)
    );
    let out = kubectl_as(&jane, &["delete", "configmap", "settings"]);
    assert!(!out.status.success(), "{}", text(&out));
    // view never shows secrets.
    let out = kubectl_as(&jane, &["get", "secrets"]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn impersonation_without_the_impersonate_permission_is_refused() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let jane = kubeconfig_for(&server, scratch.path(), "jane", "developers");
    // --raw skips discovery, whose failures kubectl reports without the server's message.
    let out = kubectl_as(
        &jane,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods",
            "--as",
            "bob",
        ],
    );
    assert!(
        text(&out).contains(
            r#"users "bob" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at the cluster scope"#
        ),
        "{}",
        text(&out)
    );
    let out = kubectl_as(
        &jane,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods",
            "--as",
            "system:serviceaccount:default:builder",
        ],
    );
    assert!(
        text(&out).contains(r#"cannot impersonate resource "serviceaccounts" in API group "" in the namespace "default""#),
        "{}",
        text(&out)
    );
    // Granted users only: impersonating bob is allowed, impersonating a group is not.
    server.kubectl_ok(&[
        "create",
        "clusterrole",
        "impersonate-bob",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=bob",
    ]);
    server.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "jane-as-bob",
        "--clusterrole=impersonate-bob",
        "--user=jane",
    ]);
    let out = eventually(|| {
        kubectl_as(
            &jane,
            &[
                "auth",
                "whoami",
                "--as",
                "bob",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        )
    });
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bob",
        "{}",
        text(&out)
    );
    let out = kubectl_as(
        &jane,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods",
            "--as",
            "bob",
            "--as-group",
            "system:masters",
        ],
    );
    assert!(
        text(&out).contains(r#"groups "system:masters" is forbidden"#),
        "{}",
        text(&out)
    );
}

#[test]
fn resource_names_limit_access_to_the_named_object() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let jane = kubeconfig_for(&server, scratch.path(), "jane", "developers");
    server.kubectl_ok(&["create", "configmap", "app-config", "--from-literal=a=b"]);
    server.kubectl_ok(&["create", "configmap", "other", "--from-literal=a=b"]);
    server.kubectl_ok(&[
        "create",
        "role",
        "app-config-reader",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=app-config",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "jane-app-config",
        "--role=app-config-reader",
        "--user=jane",
    ]);
    let out = eventually(|| kubectl_as(&jane, &["get", "configmap", "app-config"]));
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl_as(&jane, &["get", "configmap", "other"]);
    assert!(
        text(&out).contains(
            r#"configmaps "other" is forbidden: User "jane" cannot get resource "configmaps" in API group "" in the namespace "default""#
        ),
        "{}",
        text(&out)
    );
    let out = kubectl_as(&jane, &["get", "configmaps"]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn administrators_impersonate_and_see_the_users_rights() {
    let server = TestServer::start();
    let out = server.kubectl(&["get", "pods", "--as", "jane", "--as-group", "developers"]);
    assert!(
        text(&out).contains(r#"User "jane" cannot list resource "pods""#),
        "{}",
        text(&out)
    );
    let info = server.kubectl_ok(&[
        "auth",
        "whoami",
        "--as",
        "system:serviceaccount:apps:builder",
        "-o",
        "jsonpath={.status.userInfo.groups}",
    ]);
    assert_eq!(
        info,
        r#"["system:serviceaccounts","system:serviceaccounts:apps","system:authenticated"]"#
    );
}
