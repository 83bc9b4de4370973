//! Server-side apply and managedFields, driven by the real kubectl v1.37.

use crate::common;

use common::TestServer;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn deployment(replicas: u32, extra_label: Option<&str>) -> String {
    let label = extra_label
        .map(|l| format!("\n    tier: {l}"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web{label}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
"
    )
}

fn apply_server_side(server: &TestServer, yaml: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", "--server-side", "-f", "-"];
    args.extend_from_slice(extra);
    server.kubectl_input(&args, yaml)
}

fn apply_ok(server: &TestServer, yaml: &str, extra: &[&str]) -> String {
    let out = apply_server_side(server, yaml, extra);
    assert!(
        out.status.success(),
        "kubectl apply --server-side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get_deployment(server: &TestServer) -> Value {
    json(&server.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
}

fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[test]
fn server_side_apply_creates_then_updates() {
    let server = TestServer::start();
    let created = apply_ok(&server, &deployment(1, None), &[]);
    assert!(
        created.contains("deployment.apps/web serverside-applied"),
        "{created}"
    );
    let updated = apply_ok(&server, &deployment(2, Some("front")), &[]);
    assert!(
        updated.contains("deployment.apps/web serverside-applied"),
        "{updated}"
    );
    let live = get_deployment(&server);
    assert_eq!(live["spec"]["replicas"], 2);
    assert_eq!(live["metadata"]["labels"]["tier"], "front");
    let applied = entry(&live, "kubectl", "Apply").expect("kubectl's Apply entry");
    assert_eq!(applied["apiVersion"], "apps/v1");
    assert_eq!(applied["fieldsType"], "FieldsV1");
    assert_eq!(
        applied["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"],
        serde_json::json!({ ".": {}, "f:image": {}, "f:name": {} })
    );
}

#[test]
fn a_field_removed_from_the_manifest_is_removed_on_reapply() {
    let server = TestServer::start();
    apply_ok(&server, &deployment(1, Some("front")), &[]);
    apply_ok(&server, &deployment(1, None), &[]);
    let live = get_deployment(&server);
    assert!(
        live["metadata"]["labels"].get("tier").is_none(),
        "{}",
        live["metadata"]
    );
    assert_eq!(live["metadata"]["labels"]["app"], "web");
}

#[test]
fn conflict_with_kubectl_scale_names_the_manager_and_field() {
    let server = TestServer::start();
    apply_ok(&server, &deployment(1, None), &[]);
    server.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]);
    let out = apply_server_side(&server, &deployment(1, None), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--force-conflicts"), "{stderr}");
    assert_eq!(get_deployment(&server)["spec"]["replicas"], 3);
}

#[test]
fn force_conflicts_takes_the_field_from_the_other_manager() {
    let server = TestServer::start();
    apply_ok(&server, &deployment(1, None), &[]);
    server.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]);
    apply_ok(&server, &deployment(1, None), &["--force-conflicts"]);
    let live = get_deployment(&server);
    assert_eq!(live["spec"]["replicas"], 1);
    assert!(
        entry(&live, "kubectl", "Update").is_none(),
        "kubectl scale owned only spec.replicas: {}",
        live["metadata"]["managedFields"]
    );
}

#[test]
fn show_managed_fields_lists_every_writer() {
    let server = TestServer::start();
    apply_ok(&server, &deployment(1, None), &[]);
    server.kubectl_ok(&["label", "deployment", "web", "team=blue"]);
    let yaml = server.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(yaml.contains("managedFields:"), "{yaml}");
    assert!(yaml.contains("manager: kubectl\n"), "{yaml}");
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    assert!(yaml.contains("manager: kubectl-label"), "{yaml}");
    assert!(yaml.contains("f:team: {}"), "{yaml}");
    // Without the flag kubectl hides them, as it does against upstream.
    let plain = server.kubectl_ok(&["get", "deployment", "web", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");
}

#[test]
fn server_dry_run_apply_changes_nothing() {
    let server = TestServer::start();
    apply_ok(&server, &deployment(1, None), &[]);
    let before = get_deployment(&server);
    let out = apply_ok(&server, &deployment(5, Some("dry")), &["--dry-run=server"]);
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    let after = get_deployment(&server);
    // The deployment controller writes status meanwhile; the spec's generation tells.
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
    assert_eq!(after["spec"]["replicas"], 1);
    // Nor does a dry run create anything.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ghost\ndata:\n  a: b\n";
    apply_ok(&server, cm, &["--dry-run=server"]);
    let missing = server.kubectl(&["get", "configmap", "ghost"]);
    assert!(!missing.status.success());
}

#[test]
fn client_side_apply_records_kubectl_client_side_apply() {
    let server = TestServer::start();
    let cm = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: {value}\n"
        )
    };
    let out = server.kubectl_input(&["apply", "-f", "-"], &cm("blue"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.kubectl_input(&["apply", "-f", "-"], &cm("green"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = json(&server.kubectl_ok(&[
        "get",
        "configmap",
        "settings",
        "-o",
        "json",
        "--show-managed-fields",
    ]));
    assert_eq!(live["data"]["color"], "green");
    let entry = entry(&live, "kubectl-client-side-apply", "Update")
        .expect("kubectl-client-side-apply's entry");
    assert_eq!(
        entry["fieldsV1"]["f:data"]["f:color"],
        serde_json::json!({})
    );
    // Moving to server-side apply takes over without conflicts.
    apply_ok(&server, &cm("red"), &[]);
    let moved = json(&server.kubectl_ok(&["get", "configmap", "settings", "-o", "json"]));
    assert_eq!(moved["data"]["color"], "red");
}
