//! Hollow nodes (`r8s sim nodes`) against a real `r8s server`, observed with the real kubectl:
//! they register Ready nodes, renew leases, run bound pods, complete `true` pods, finish
//! graceful deletion, and stop heartbeating when stopped.

use crate::common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{SimNodes, TestServer, eventually};

fn pod(name: &str, node: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n{extra}  containers:\n  - name: c\n    image: busybox\n"
    )
}

#[test]
fn hollow_nodes_register_as_ready_nodes() {
    let server = TestServer::start();
    let _sim = SimNodes::start(&server, 3);
    let table = server.kubectl_ok(&["get", "nodes"]);
    for name in ["hollow-0", "hollow-1", "hollow-2"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from\n{table}"));
        assert!(line.contains(" Ready "), "{line}");
    }
    let node = server.get_json(&["node", "hollow-1"]);
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "hollow-1"
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(node["status"]["capacity"]["cpu"], "4");
    assert_eq!(node["status"]["allocatable"]["pods"], "110");
    assert!(node["spec"]["podCIDR"].is_string());
}

#[test]
fn a_pod_bound_to_a_hollow_node_runs_with_an_address_from_its_pod_cidr() {
    let server = TestServer::start();
    let _sim = SimNodes::start(&server, 3);
    server.create_ok(&pod("web", "hollow-1", ""));
    server.kubectl_ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    let pod = server.get_json(&["pod", "web"]);
    assert_eq!(pod["status"]["phase"], "Running");
    let node = server.get_json(&["node", "hollow-1"]);
    let (base, prefix) = node["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap();
    let base: Ipv4Addr = base.parse().unwrap();
    let prefix: u32 = prefix.parse().unwrap();
    let ip: Ipv4Addr = pod["status"]["podIP"].as_str().unwrap().parse().unwrap();
    let mask = u32::MAX << (32 - prefix);
    assert_eq!(
        u32::from(ip) & mask,
        u32::from(base),
        "{ip} outside {base}/{prefix}"
    );
    assert_eq!(
        pod["status"]["hostIP"],
        node["status"]["addresses"][0]["address"]
    );
    assert!(pod["status"]["containerStatuses"][0]["state"]["running"].is_object());
}

#[test]
fn a_true_pod_that_never_restarts_succeeds() {
    let server = TestServer::start();
    let _sim = SimNodes::start(&server, 1);
    server.create_ok(&format!(
        "{}    command: [\"true\"]\n",
        pod("done", "hollow-0", "  restartPolicy: Never\n")
    ));
    server.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/done",
        "--timeout=30s",
    ]);
    let pod = server.get_json(&["pod", "done"]);
    let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 0);
    assert_eq!(terminated["reason"], "Completed");
}

#[test]
fn deleting_a_running_pod_completes() {
    let server = TestServer::start();
    let _sim = SimNodes::start(&server, 1);
    server.create_ok(&pod("web", "hollow-0", ""));
    server.kubectl_ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    server.kubectl_ok(&["delete", "pod", "web", "--timeout=30s"]);
    let out = server.kubectl(&["get", "pod", "web"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn leases_are_renewed_until_the_hollow_nodes_stop() {
    let server = TestServer::start();
    let mut sim = SimNodes::start(&server, 2);
    let renew_time = || {
        server.get_json(&["lease", "-n", "kube-node-lease", "hollow-0"])["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let lease = server.get_json(&["lease", "-n", "kube-node-lease", "hollow-0"]);
    assert_eq!(lease["spec"]["holderIdentity"], "hollow-0");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    let first = renew_time();
    assert!(
        eventually(Duration::from_secs(15), || renew_time() != first),
        "the lease was not renewed within 15 s"
    );
    sim.stop();
    let last = renew_time();
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        renew_time(),
        last,
        "a stopped hollow node renewed its lease"
    );
    let node = server.get_json(&["node", "hollow-0"]);
    assert_eq!(
        node["metadata"]["name"], "hollow-0",
        "stopping keeps the Node"
    );
}

#[test]
fn a_hollow_node_marked_not_ready_reports_ready_again_at_once() {
    let server = TestServer::start();
    // No periodic report can come to the rescue within the test.
    let _sim = SimNodes::start_with(&server, 1, &["--node-status-report-frequency", "86400"]);
    // What the node lifecycle controller writes after a missed heartbeat.
    let node = server.get_json(&["node", "hollow-0"]);
    let mut conditions = node["status"]["conditions"].clone();
    for condition in conditions.as_array_mut().unwrap() {
        if condition["type"] == "Ready" {
            condition["status"] = "Unknown".into();
            condition["reason"] = "NodeStatusUnknown".into();
        }
    }
    let patch = serde_json::json!({ "status": { "conditions": conditions } });
    server.kubectl_ok(&[
        "patch",
        "node",
        "hollow-0",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    let back = eventually(Duration::from_secs(20), || {
        server.kubectl_ok(&[
            "get",
            "node",
            "hollow-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True"
    });
    assert!(back, "the hollow node stayed not Ready");
}
