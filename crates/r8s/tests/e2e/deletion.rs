//! Deleting as upstream does, driven by the real kubectl: graceful deletion of pods, the garbage
//! collector's finalizers, and eviction through PodDisruptionBudgets (`kubectl drain`).

use crate::common;

use common::TestServer;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("kubectl printed JSON")
}

fn pod(name: &str, node: Option<&str>) -> String {
    let node = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n{node}  containers:\n  - name: c\n    image: busybox\n"
    )
}

fn get(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    json(&server.kubectl_ok(&all))
}

fn gone(server: &TestServer, args: &[&str]) -> bool {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let out = server.kubectl(&all);
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not found")
}

#[test]
fn a_pod_on_a_node_terminates_with_its_grace_period_until_forced() {
    let server = TestServer::start();
    server.create_ok(&pod("web", Some("node-1")));
    server.kubectl_ok(&["delete", "pod", "web", "--wait=false"]);
    let terminating = get(&server, &["pod", "web"]);
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    let table = server.kubectl_ok(&["get", "pod", "web"]);
    assert!(table.contains("Terminating"), "{table}");
    server.kubectl_ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    assert!(gone(&server, &["pod", "web"]));
}

#[test]
fn a_pod_no_node_runs_is_deleted_at_once() {
    let server = TestServer::start();
    server.create_ok(&pod("pending", None));
    server.kubectl_ok(&["delete", "pod", "pending", "--wait=false"]);
    assert!(gone(&server, &["pod", "pending"]));
}

/// A dry-run DELETE answers the object as the deletion would leave it, before the garbage
/// collector (which runs in the server) can act on it.
fn marked_by(server: &TestServer, options: &str) -> Value {
    server.kubectl_ok(&["create", "configmap", "owner", "--from-literal=a=b"]);
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps/owner?dryRun=All",
        server.url
    );
    let (code, body) = server.curl(&[
        "-X",
        "DELETE",
        "-H",
        "Content-Type: application/json",
        "--data",
        options,
        &url,
    ]);
    assert_eq!(code, 200, "{body}");
    json(&body)
}

#[test]
fn foreground_deletion_hands_the_object_to_the_garbage_collector() {
    let server = TestServer::start();
    let owner = marked_by(&server, r#"{"propagationPolicy":"Foreground"}"#);
    assert_eq!(
        owner["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    assert!(owner["metadata"]["deletionTimestamp"].is_string());
    // The collector finds no dependents and lets it go.
    server.kubectl_ok(&[
        "delete",
        "configmap",
        "owner",
        "--cascade=foreground",
        "--timeout=20s",
    ]);
    assert!(gone(&server, &["configmap", "owner"]));
}

#[test]
fn orphaning_records_the_orphan_finalizer() {
    let server = TestServer::start();
    let owner = marked_by(&server, r#"{"orphanDependents":true}"#);
    assert_eq!(
        owner["metadata"]["finalizers"],
        serde_json::json!(["orphan"])
    );
}

fn running_pod(server: &TestServer, name: &str, node: &str) {
    server.create_ok(&pod(name, Some(node)));
    server.kubectl_ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
}

fn running_pod_behind_a_budget(server: &TestServer) {
    server.create_ok(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels: {kubernetes.io/hostname: node-1}\n",
    );
    running_pod(server, "web", "node-1");
    server.create_ok(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels: {app: web}\n",
    );
}

fn drain(server: &TestServer) -> std::process::Output {
    server.kubectl(&[
        "drain",
        "node-1",
        "--force",
        "--grace-period=0",
        "--timeout=3s",
    ])
}

#[test]
fn drain_is_refused_while_the_budget_allows_no_disruption() {
    let server = TestServer::start();
    running_pod_behind_a_budget(&server);
    let out = drain(&server);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{stderr}"
    );
    assert!(!gone(&server, &["pod", "web"]));
    let node = get(&server, &["node", "node-1"]);
    assert_eq!(node["spec"]["unschedulable"], true, "drain cordons first");
}

#[test]
fn drain_evicts_a_pod_its_budget_allows_and_spends_the_budget() {
    let server = TestServer::start();
    running_pod_behind_a_budget(&server);
    // A second healthy pod elsewhere: the disruption controller then allows one disruption.
    server.create_ok("apiVersion: v1\nkind: Node\nmetadata:\n  name: node-2\n");
    running_pod(&server, "web-2", "node-2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get(&server, &["pdb", "web"])["status"]["disruptionsAllowed"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the disruption controller never allowed a disruption"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = drain(&server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gone(&server, &["pod", "web"]));
    let budget = get(&server, &["pdb", "web"]);
    assert_eq!(budget["status"]["disruptionsAllowed"], 0);
}

#[test]
fn evicting_a_pod_no_budget_covers_deletes_it() {
    let server = TestServer::start();
    server.create_ok(&pod("free", None));
    let eviction = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"free"}}"#;
    let (code, body) = server.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        eviction,
        &format!(
            "{}/api/v1/namespaces/default/pods/free/eviction",
            server.url
        ),
    ]);
    assert_eq!(code, 201, "{body}");
    assert!(gone(&server, &["pod", "free"]));
}
