//! The scheduler against `r8s server`, driven by the real kubectl: Node objects are created
//! directly (no kubelets: binding needs none) and pods are placed, or not, as upstream would.

use crate::common;

use std::time::{Duration, Instant};

use common::TestServer;

/// Creates a node with `cpu` cores, 8Gi and 110 pods allocatable, and extra labels/taints.
fn add_node(server: &TestServer, name: &str, cpu: &str, labels: &str, taints: &str) {
    server.create_ok(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n{labels}spec:\n  taints: [{taints}]\n"
    ));
    let status = format!(
        r#"{{"status":{{"capacity":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"allocatable":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
    );
    server.kubectl_ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
}

fn add_pod(server: &TestServer, name: &str, cpu: &str, extra_spec: &str) {
    server.create_ok(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n{extra_spec}  containers:\n  - name: c\n    image: nginx\n    resources:\n      requests:\n        cpu: {cpu}\n"
    ));
}

fn node_of(server: &TestServer, pod: &str) -> String {
    server
        .kubectl_ok(&["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"])
        .trim()
        .to_owned()
}

/// Waits until `pod` is bound and returns its node.
fn wait_bound(server: &TestServer, pod: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let node = node_of(server, pod);
        if !node.is_empty() {
            return node;
        }
        assert!(Instant::now() < deadline, "pod {pod} was never bound");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `pod` has `PodScheduled=False` and returns the condition's reason and message.
fn wait_unschedulable(server: &TestServer, pod: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = server.kubectl_ok(&[
            "get",
            "pod",
            pod,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}|{.status.conditions[?(@.type=="PodScheduled")].message}"#,
        ]);
        if let Some((reason, message)) = out.split_once('|')
            && !reason.is_empty()
        {
            return (reason.to_owned(), message.to_owned());
        }
        assert!(
            Instant::now() < deadline,
            "pod {pod} never got PodScheduled=False"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for an events.k8s.io/v1 Event with `reason` whose note contains `text`; returns the list.
fn wait_event(server: &TestServer, reason: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let selector = format!("reason={reason}");
        let events = server.kubectl_ok(&[
            "get",
            "events.v1.events.k8s.io",
            "--field-selector",
            &selector,
        ]);
        if events.contains(text) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} event saying {text:?}: {events}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pods_are_bound_and_spread_over_nodes() {
    let server = TestServer::start();
    for n in ["node-1", "node-2", "node-3"] {
        add_node(&server, n, "4", "", "");
    }
    for i in 1..=6 {
        add_pod(&server, &format!("web-{i}"), "500m", "");
    }
    let mut nodes: Vec<String> = (1..=6)
        .map(|i| wait_bound(&server, &format!("web-{i}")))
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(
        nodes,
        vec!["node-1", "node-2", "node-3"],
        "replicas spread over every node"
    );
    let events = wait_event(
        &server,
        "Scheduled",
        "Successfully assigned default/web-1 to",
    );
    assert!(
        events.contains("Scheduled") && events.contains("Successfully assigned default/web-1 to"),
        "{events}"
    );
}

#[test]
fn node_selector_picks_the_labelled_node() {
    let server = TestServer::start();
    add_node(&server, "plain", "4", "", "");
    add_node(&server, "fast", "4", "    disk: ssd\n", "");
    add_pod(&server, "db", "100m", "  nodeSelector:\n    disk: ssd\n");
    assert_eq!(wait_bound(&server, "db"), "fast");
}

#[test]
fn a_tainted_node_is_avoided_unless_tolerated() {
    let server = TestServer::start();
    add_node(
        &server,
        "tainted",
        "4",
        "",
        "{key: dedicated, value: gpu, effect: NoSchedule}",
    );
    add_node(&server, "open", "1", "", "");
    add_pod(&server, "plain", "100m", "");
    add_pod(
        &server,
        "tolerant",
        "2",
        "  tolerations:\n  - {key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}\n",
    );
    assert_eq!(wait_bound(&server, "plain"), "open");
    assert_eq!(wait_bound(&server, "tolerant"), "tainted");
}

#[test]
fn a_cordoned_node_gets_no_new_pods() {
    let server = TestServer::start();
    add_node(&server, "cordoned", "8", "", "");
    add_node(&server, "small", "1", "", "");
    server.kubectl_ok(&["cordon", "cordoned"]);
    for i in 1..=3 {
        add_pod(&server, &format!("p-{i}"), "100m", "");
    }
    for i in 1..=3 {
        assert_eq!(wait_bound(&server, &format!("p-{i}")), "small");
    }
}

#[test]
fn a_pod_larger_than_any_node_stays_pending_with_insufficient_cpu() {
    let server = TestServer::start();
    for n in ["node-1", "node-2", "node-3"] {
        add_node(&server, n, "2", "", "");
    }
    add_pod(&server, "huge", "16", "");
    let (reason, message) = wait_unschedulable(&server, "huge");
    assert_eq!(reason, "Unschedulable");
    assert_eq!(
        message,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: \
         3 Preemption is not helpful for scheduling."
    );
    let events = wait_event(&server, "FailedScheduling", "Insufficient cpu");
    assert!(events.contains("pod/huge"), "{events}");
    assert_eq!(node_of(&server, "huge"), "");
}

#[test]
fn a_pending_pod_is_scheduled_once_a_fitting_node_appears() {
    let server = TestServer::start();
    add_node(&server, "small", "1", "", "");
    add_pod(&server, "big", "3", "");
    wait_unschedulable(&server, "big");
    add_node(&server, "large", "4", "", "");
    assert_eq!(wait_bound(&server, "big"), "large");
}

#[test]
fn required_anti_affinity_keeps_two_pods_apart() {
    let server = TestServer::start();
    add_node(&server, "node-1", "4", "", "");
    add_node(&server, "node-2", "4", "", "");
    let anti = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: kubernetes.io/hostname\n        labelSelector:\n          matchLabels: {group: cache}\n";
    for name in ["cache-a", "cache-b"] {
        server.create_ok(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{group: cache}}\nspec:\n{anti}  containers:\n  - name: c\n    image: redis\n"
        ));
    }
    let a = wait_bound(&server, "cache-a");
    let b = wait_bound(&server, "cache-b");
    assert_ne!(a, b);
    server.create_ok(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: cache-c\n  labels: {{group: cache}}\nspec:\n{anti}  containers:\n  - name: c\n    image: redis\n"
    ));
    let (_, message) = wait_unschedulable(&server, "cache-c");
    assert!(
        message.starts_with(
            "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."
        ),
        "{message}"
    );
}

#[test]
fn a_scheduler_lease_is_held_in_kube_system() {
    let server = TestServer::start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.holderIdentity}/{.spec.leaseDurationSeconds}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.ends_with("/15") && text.len() > 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no scheduler lease: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `holderIdentity` of a Lease in kube-system, once there is one.
fn lease_holder(server: &TestServer, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let holder = server.kubectl_ok(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            name,
            "-o",
            "jsonpath={.spec.holderIdentity}",
            "--ignore-not-found",
        ]);
        if !holder.is_empty() {
            return holder;
        }
        assert!(Instant::now() < deadline, "no {name} lease");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_controller_manager_stands_by_while_another_holds_its_lease() {
    let server = TestServer::start();
    let ours = lease_holder(&server, "kube-controller-manager");
    // Another server takes the lease (as one sharing the store would once ours lapsed).
    let renewed = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
        .output()
        .unwrap();
    let renewed = String::from_utf8_lossy(&renewed.stdout).trim().to_owned();
    server.kubectl_ok(&[
        "patch",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"spec":{{"holderIdentity":"other-server_1","renewTime":"{renewed}","leaseDurationSeconds":15}}}}"#
        ),
    ]);
    // Its next renewal (every 2 s) finds the lease taken, and the controllers stop.
    std::thread::sleep(Duration::from_secs(3));
    server.kubectl_ok(&["create", "deployment", "standby", "--image=nginx"]);
    std::thread::sleep(Duration::from_secs(5));
    let sets = server.kubectl_ok(&["get", "replicasets", "-o", "name"]);
    assert!(
        sets.is_empty(),
        "a controller ran while standing by: {sets}"
    );
    assert_eq!(
        lease_holder(&server, "kube-controller-manager"),
        "other-server_1"
    );
    // The other holder stops renewing: after the lease duration, ours takes over again.
    let deadline = Instant::now() + Duration::from_secs(45);
    while server
        .kubectl_ok(&["get", "replicasets", "-o", "name"])
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the controller manager never took the lease back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(lease_holder(&server, "kube-controller-manager"), ours);
}
