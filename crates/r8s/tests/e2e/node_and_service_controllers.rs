//! The service and node controllers on hollow nodes, observed with the real kubectl:
//! EndpointSlices and Endpoints follow a Deployment behind a Service, a PodDisruptionBudget's
//! status allows disruptions, `kubectl drain` evicts through it, and stopped hollow nodes turn
//! Unknown and tainted unreachable.

use crate::common;

use std::time::Duration;

use common::{SimNodes, TestServer, eventually};
use serde_json::Value;

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
";

const BUDGET: &str = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
";

fn slice_endpoints(server: &TestServer) -> Vec<Value> {
    let slices = server.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn ready_count(endpoints: &[Value]) -> usize {
    endpoints
        .iter()
        .filter(|e| e["conditions"]["ready"] == true)
        .count()
}

fn endpoints_addresses(server: &TestServer) -> usize {
    let endpoints = server.get_json(&["endpoints", "web"]);
    endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["addresses"].as_array().map_or(0, Vec::len))
        .sum()
}

fn web_behind_a_service(server: &TestServer) {
    server.create_ok(WEB);
    server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
}

#[test]
fn a_deployment_behind_a_service_gets_an_endpoint_slice_and_endpoints_with_its_ready_pods() {
    let server = TestServer::start();
    let _sim = SimNodes::start(&server, 3);
    web_behind_a_service(&server);
    assert!(
        eventually(Duration::from_secs(30), || {
            ready_count(&slice_endpoints(&server)) == 3
        }),
        "{:#}",
        server.get_json(&["endpointslices"])
    );
    let endpoints = slice_endpoints(&server);
    assert!(endpoints.iter().all(|e| e["nodeName"].is_string()));
    let slices = server.kubectl_ok(&["get", "endpointslices"]);
    assert!(
        slices.contains("IPv4") && slices.contains("8080"),
        "{slices}"
    );
    assert!(eventually(Duration::from_secs(30), || endpoints_addresses(
        &server
    ) == 3));
    let described = server.kubectl_ok(&["describe", "svc", "web"]);
    let line = described
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_else(|| panic!("no Endpoints line in\n{described}"));
    assert!(line.contains(":8080"), "{line}");
}

#[test]
fn scaling_the_deployment_to_one_leaves_one_endpoint() {
    let server = TestServer::start();
    let _sim = SimNodes::start(&server, 3);
    web_behind_a_service(&server);
    assert!(eventually(Duration::from_secs(30), || ready_count(
        &slice_endpoints(&server)
    ) == 3));
    server.kubectl_ok(&["scale", "deployment/web", "--replicas=1"]);
    assert!(
        eventually(Duration::from_secs(30), || {
            slice_endpoints(&server).len() == 1 && endpoints_addresses(&server) == 1
        }),
        "{:#}",
        server.get_json(&["endpointslices"])
    );
}

#[test]
fn a_pod_disruption_budget_reports_the_disruptions_it_allows() {
    let server = TestServer::start();
    let _sim = SimNodes::start(&server, 3);
    web_behind_a_service(&server);
    server.create_ok(BUDGET);
    assert!(
        eventually(Duration::from_secs(30), || {
            let status = &server.get_json(&["pdb", "web"])["status"];
            status["disruptionsAllowed"] == 1
                && status["currentHealthy"] == 3
                && status["desiredHealthy"] == 2
                && status["expectedPods"] == 3
        }),
        "{:#}",
        server.get_json(&["pdb", "web"])
    );
    let table = server.kubectl_ok(&["get", "pdb", "web"]);
    assert!(table.contains("web"), "{table}");
}

#[test]
fn draining_a_node_evicts_its_pods_when_the_budget_allows() {
    let server = TestServer::start();
    let _sim = SimNodes::start(&server, 3);
    web_behind_a_service(&server);
    server.create_ok(BUDGET);
    assert!(eventually(Duration::from_secs(30), || {
        server.get_json(&["pdb", "web"])["status"]["disruptionsAllowed"] == 1
    }));
    let pods = server.get_json(&["pods", "-l", "app=web"]);
    let node = pods["items"][0]["spec"]["nodeName"]
        .as_str()
        .expect("a bound pod")
        .to_owned();
    server.kubectl_ok(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=90s",
    ]);
    let on_node = server.get_json(&[
        "pods",
        "-l",
        "app=web",
        "--field-selector",
        &format!("spec.nodeName={node}"),
    ]);
    let live = on_node["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .count();
    assert_eq!(live, 0, "{on_node:#}");
    let drained = server.get_json(&["node", &node]);
    let taints = drained["spec"]["taints"].to_string();
    assert!(
        taints.contains("node.kubernetes.io/unschedulable"),
        "{taints}"
    );
}

#[test]
fn stopped_hollow_nodes_become_unknown_and_tainted_unreachable() {
    let server = TestServer::start_with(
        tempfile::tempdir().unwrap(),
        &["--node-monitor-grace-period", "5s"],
    );
    let mut sim = SimNodes::start(&server, 2);
    sim.stop();
    assert!(
        eventually(Duration::from_secs(60), || {
            let node = server.get_json(&["node", "hollow-0"]);
            let ready = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .cloned()
                .unwrap_or_default();
            let taints = node["spec"]["taints"].to_string();
            ready["status"] == "Unknown"
                && ready["reason"] == "NodeStatusUnknown"
                && taints.contains("node.kubernetes.io/unreachable")
                && taints.contains("NoExecute")
        }),
        "{:#}",
        server.get_json(&["node", "hollow-0"])
    );
    let table = server.kubectl_ok(&["get", "nodes"]);
    assert!(table.contains("NotReady"), "{table}");
}
