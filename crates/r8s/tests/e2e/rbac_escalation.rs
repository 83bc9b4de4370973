//! RBAC privilege-escalation prevention with the real kubectl: a user who may write roles and
//! bindings still grants only what they hold, unless they may `escalate` roles or `bind` the
//! role; refusals carry upstream's 403 text.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, tools_bin};

/// A kubeconfig for `user` in `group`, with a client certificate signed by the cluster CA.
fn kubeconfig_for(server: &TestServer, dir: &Path, user: &str, group: &str) -> PathBuf {
    let (crt, key) = server.client_cert(dir, user, group);
    let ca = server.data_dir.path().join("server/tls/ca.crt");
    let config = dir.join(format!("{user}.kubeconfig"));
    // JSON is YAML, and spares quoting the paths.
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "r8s",
            "cluster": { "server": server.url, "certificate-authority": ca },
        }],
        "users": [{ "name": user, "user": { "client-certificate": crt, "client-key": key } }],
        "contexts": [{ "name": user, "context": { "cluster": "r8s", "user": user } }],
        "current-context": user,
    });
    std::fs::write(&config, kubeconfig.to_string()).unwrap();
    config
}

/// Runs kubectl as the user of `config`, with `input` on its stdin.
fn kubectl_as(config: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(tools_bin().join("kubectl"))
        .arg("--kubeconfig")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn create_as(config: &Path, yaml: &str) -> Output {
    kubectl_as(config, &["create", "-f", "-"], yaml)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command until it succeeds: RBAC changes reach the server's checks through the watch
/// cache.
fn eventually(mut run: impl FnMut() -> Output) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run();
        if out.status.success() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn role(name: &str, resource: &str) -> String {
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{ name: {name}, namespace: team }}
rules:
- {{ apiGroups: [""], resources: [{resource}], verbs: [get] }}
"#
    )
}

/// A RoleBinding in `team` of the ClusterRole or Role `role_kind`/`role` to `user`.
fn binding(name: &str, role_kind: &str, role: &str, user: &str) -> String {
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{ name: {name}, namespace: team }}
roleRef: {{ apiGroup: rbac.authorization.k8s.io, kind: {role_kind}, name: {role} }}
subjects:
- {{ apiGroup: rbac.authorization.k8s.io, kind: User, name: {user} }}
"#
    )
}

/// In namespace `team`, dave may write roles and rolebindings and get pods, nothing more.
const DAVE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: team }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: rbac-writer, namespace: team }
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, create, update, patch, delete]
- { apiGroups: [""], resources: [pods], verbs: [get] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: dave-writes-rbac, namespace: team }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbac-writer }
subjects:
- { apiGroup: rbac.authorization.k8s.io, kind: User, name: dave }
"#;

#[test]
fn a_role_writer_grants_only_what_they_hold_unless_allowed_to_escalate_or_bind() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let dave = kubeconfig_for(&server, scratch.path(), "dave", "devs");
    server.create_ok(DAVE);

    // Rules dave holds, he may hand out.
    let out = eventually(|| create_as(&dave, &role("pod-reader", "pods")));
    assert!(out.status.success(), "{}", text(&out));

    let out = create_as(&dave, &role("secret-reader", "secrets"));
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "Error from server (Forbidden): error when creating \"STDIN\": \
             roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"dave\" \
             (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC \
             permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
        ),
        "{}",
        text(&out)
    );
    // An update may not add them either.
    let out = kubectl_as(
        &dave,
        &[
            "patch",
            "role",
            "pod-reader",
            "-n",
            "team",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}}]"#,
        ],
        "",
    );
    assert!(
        text(&out).contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        text(&out)
    );

    // Binding a role whose rules he holds is fine; binding admin is not.
    let out = create_as(&dave, &binding("erin-reads", "Role", "pod-reader", "erin"));
    assert!(out.status.success(), "{}", text(&out));
    let out = create_as(
        &dave,
        &binding("erin-nothing", "ClusterRole", "gone", "erin"),
    );
    assert!(
        text(&out).contains(r#"clusterroles.rbac.authorization.k8s.io "gone" not found"#),
        "{}",
        text(&out)
    );
    let out = create_as(
        &dave,
        &binding("erin-admin", "ClusterRole", "admin", "erin"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "rolebindings.rbac.authorization.k8s.io \"erin-admin\" is forbidden: user \"dave\" \
             (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC \
             permissions not currently held:\n"
        ),
        "{}",
        text(&out)
    );

    // `bind` on admin, by name, lets him bind admin and nothing else.
    server.create_ok(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: admin-binder, namespace: team }
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  resourceNames: [admin]
  verbs: [bind]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: dave-binds-admin, namespace: team }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: admin-binder }
subjects:
- { apiGroup: rbac.authorization.k8s.io, kind: User, name: dave }
"#,
    );
    let out = eventually(|| {
        create_as(
            &dave,
            &binding("erin-admin", "ClusterRole", "admin", "erin"),
        )
    });
    assert!(out.status.success(), "{}", text(&out));
    let out = create_as(
        &dave,
        &binding("erin-cluster-admin", "ClusterRole", "cluster-admin", "erin"),
    );
    assert!(
        text(&out).contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        text(&out)
    );

    // `escalate` on roles lets him write any rules into a Role.
    server.create_ok(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: role-escalator, namespace: team }
rules:
- { apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: dave-escalates, namespace: team }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-escalator }
subjects:
- { apiGroup: rbac.authorization.k8s.io, kind: User, name: dave }
"#,
    );
    let out = eventually(|| create_as(&dave, &role("secret-reader", "secrets")));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn namespace_admins_and_editors_keep_their_default_rights() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let ann = kubeconfig_for(&server, scratch.path(), "ann", "devs");
    let ed = kubeconfig_for(&server, scratch.path(), "ed", "devs");
    server.create_ok("apiVersion: v1\nkind: Namespace\nmetadata: { name: team }\n");
    server.create_ok(&binding("ann-admin", "ClusterRole", "admin", "ann"));
    server.create_ok(&binding("ed-edit", "ClusterRole", "edit", "ed"));

    // An admin hands out what admin holds in the namespace: a secrets role, edit, view.
    let out = eventually(|| create_as(&ann, &role("secret-reader", "secrets")));
    assert!(out.status.success(), "{}", text(&out));
    let out = create_as(&ann, &binding("ed-view", "ClusterRole", "view", "ed"));
    assert!(out.status.success(), "{}", text(&out));
    let out = create_as(&ann, &binding("ed-edit-too", "ClusterRole", "edit", "ed"));
    assert!(out.status.success(), "{}", text(&out));
    // Not what admin lacks: nodes are cluster-scoped, cluster-admin holds everything.
    let out = create_as(&ann, &role("node-reader", "nodes"));
    assert!(
        text(&out).contains(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}"#),
        "{}",
        text(&out)
    );
    let out = create_as(
        &ann,
        &binding("ed-root", "ClusterRole", "cluster-admin", "ed"),
    );
    assert!(
        text(&out).contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        text(&out)
    );

    // An editor writes workloads and secrets, and may not touch RBAC at all.
    let out = eventually(|| {
        kubectl_as(
            &ed,
            &[
                "create",
                "secret",
                "generic",
                "s",
                "-n",
                "team",
                "--from-literal=k=v",
            ],
            "",
        )
    });
    assert!(out.status.success(), "{}", text(&out));
    let out = create_as(&ed, &role("pod-reader", "pods"));
    assert!(
        text(&out).contains(
            r#"User "ed" cannot create resource "roles" in API group "rbac.authorization.k8s.io" in the namespace "team""#
        ),
        "{}",
        text(&out)
    );
}
