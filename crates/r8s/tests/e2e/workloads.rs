//! Workload controllers driven by the real kubectl: Deployments, ReplicaSets and the garbage
//! collector. No scheduler or kubelet runs here: pods stay Pending unless a test marks them
//! Ready through the status subresource, as a kubelet would.

use crate::common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::Value;

fn get(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&server.kubectl_ok(&all)).expect("kubectl printed JSON")
}

/// Polls until `check` holds, failing with `what` after 30 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for: {what}");
}

fn items(server: &TestServer, args: &[&str]) -> Vec<Value> {
    get(server, args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn live_pods(server: &TestServer) -> Vec<Value> {
    items(server, &["pods", "-l", "app=web"])
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn create_web(server: &TestServer, replicas: u32) {
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        &format!("--replicas={replicas}"),
    ]);
}

/// Marks every pending web pod Running and Ready, as a kubelet would.
fn mark_ready(server: &TestServer) {
    for pod in live_pods(server) {
        let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if !ready {
            let name = pod["metadata"]["name"].as_str().unwrap();
            // A pod may be deleted between the list and the patch: that is fine.
            server.kubectl(&[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
            ]);
        }
    }
}

fn replica_sets(server: &TestServer) -> Vec<Value> {
    items(server, &["replicasets", "-l", "app=web"])
}

fn web_with_three_pods() -> TestServer {
    let server = TestServer::start();
    create_web(&server, 3);
    eventually("3 pods", || live_pods(&server).len() == 3);
    server
}

fn image(server: &TestServer) -> String {
    get(server, &["deployment", "web"])["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn create_deployment_makes_one_replica_set_owning_three_pods() {
    let server = web_with_three_pods();
    let sets = replica_sets(&server);
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let rs_name = rs["metadata"]["name"].as_str().unwrap();
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(rs_name, format!("web-{hash}"));
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    for pod in live_pods(&server) {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["name"].as_str()),
            (Some("ReplicaSet"), Some(rs_name))
        );
        assert_eq!(owner["controller"], true);
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{rs_name}-"))
        );
    }
    eventually("replica set status counts 3 pods", || {
        get(&server, &["replicaset", rs_name])["status"]["replicas"] == 3
    });
}

#[test]
fn scale_changes_the_number_of_pods_both_ways() {
    let server = web_with_three_pods();
    server.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]);
    eventually("5 pods", || live_pods(&server).len() == 5);
    server.kubectl_ok(&["scale", "deployment", "web", "--replicas=1"]);
    eventually("1 pod", || live_pods(&server).len() == 1);
}

#[test]
fn a_deleted_pod_is_replaced() {
    let server = web_with_three_pods();
    let before = names(&live_pods(&server));
    server.kubectl_ok(&["delete", "pod", &before[0], "--wait=false"]);
    eventually("a replacement pod", || {
        let now = names(&live_pods(&server));
        now.len() == 3 && !now.contains(&before[0])
    });
}

#[test]
fn set_image_creates_a_second_revision() {
    let server = web_with_three_pods();
    server.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    eventually("two replica sets", || replica_sets(&server).len() == 2);
    let history = server.kubectl_ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    eventually("deployment at revision 2", || {
        get(&server, &["deployment", "web"])["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            == "2"
    });
}

#[test]
fn rollout_undo_goes_back_to_the_previous_template() {
    let server = web_with_three_pods();
    server.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    eventually("two replica sets", || replica_sets(&server).len() == 2);
    server.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    assert_eq!(image(&server), "nginx");
    eventually("the first replica set back at revision 3", || {
        replica_sets(&server).iter().any(|rs| {
            rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"
                && rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        })
    });
    assert_eq!(replica_sets(&server).len(), 2);
}

#[test]
fn rollout_status_finishes_once_pods_are_ready() {
    let server = web_with_three_pods();
    mark_ready(&server);
    let out = server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let conditions = get(&server, &["deployment", "web"])["status"]["conditions"].clone();
    let reason = |t: &str| {
        conditions
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()["reason"]
            .clone()
    };
    assert_eq!(reason("Available"), "MinimumReplicasAvailable");
    assert_eq!(reason("Progressing"), "NewReplicaSetAvailable");
}

/// Waits (marking pods Ready as a kubelet would) until only three pods of `image` are left
/// and the rollout reports success.
fn rolled_out_to(server: &TestServer, image: &str) {
    eventually("three pods of the new image and no old one", || {
        mark_ready(server);
        let pods = live_pods(server);
        pods.len() == 3
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == image)
    });
    // Pods created after the last marking are marked on the next round.
    eventually("the rollout to finish", || {
        mark_ready(server);
        get(server, &["deployment", "web"])["status"]["availableReplicas"] == 3
    });
    let out = server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[test]
fn rolling_update_replaces_every_pod_as_new_ones_become_ready() {
    let server = web_with_three_pods();
    mark_ready(&server);
    server.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    rolled_out_to(&server, "nginx:1.27");
}

#[test]
fn a_recreate_deployment_replaces_its_pods_once_the_old_ones_are_gone() {
    let server = web_with_three_pods();
    mark_ready(&server);
    server.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}"#,
    ]);
    server.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    rolled_out_to(&server, "nginx:1.27");
}

#[test]
fn a_paused_deployment_rolls_out_only_after_resume() {
    let server = web_with_three_pods();
    server.kubectl_ok(&["rollout", "pause", "deployment/web"]);
    server.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replica_sets(&server).len(), 1);
    server.kubectl_ok(&["rollout", "resume", "deployment/web"]);
    eventually("a new replica set after resume", || {
        replica_sets(&server).len() == 2
    });
}

#[test]
fn rollout_restart_creates_a_new_replica_set() {
    let server = web_with_three_pods();
    server.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    eventually("a new replica set", || replica_sets(&server).len() == 2);
}

fn delete_web(server: &TestServer, cascade: &str) {
    server.kubectl_ok(&[
        "delete",
        "deployment",
        "web",
        &format!("--cascade={cascade}"),
        "--wait=false",
    ]);
}

fn deployment_gone(server: &TestServer) -> bool {
    items(server, &["deployments"]).is_empty()
}

#[test]
fn deleting_a_deployment_in_the_background_deletes_its_replica_sets_and_pods() {
    let server = web_with_three_pods();
    delete_web(&server, "background");
    eventually("replica sets and pods gone", || {
        deployment_gone(&server)
            && replica_sets(&server).is_empty()
            && live_pods(&server).is_empty()
    });
}

#[test]
fn deleting_a_deployment_in_the_foreground_deletes_dependents_first() {
    let server = web_with_three_pods();
    delete_web(&server, "foreground");
    eventually("everything gone", || {
        // Read the owner first: dependents seen after it is gone were there when it went.
        let gone = deployment_gone(&server);
        let dependents = !replica_sets(&server).is_empty() || !live_pods(&server).is_empty();
        // The owner stays until its blocking dependents are gone.
        assert!(
            !(gone && dependents),
            "deployment deleted before its dependents"
        );
        gone
    });
}

#[test]
fn deleting_a_deployment_with_orphan_cascade_keeps_its_replica_set_and_pods() {
    let server = web_with_three_pods();
    delete_web(&server, "orphan");
    eventually("deployment gone", || deployment_gone(&server));
    let sets = replica_sets(&server);
    assert_eq!(sets.len(), 1);
    let owners = &sets[0]["metadata"]["ownerReferences"];
    assert!(owners.as_array().is_none_or(|o| o.is_empty()), "{owners}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(live_pods(&server).len(), 3);
}

#[test]
fn an_autoscaler_clamps_its_target_and_says_why_it_cannot_measure() {
    let server = TestServer::start();
    create_web(&server, 1);
    server.kubectl_ok(&[
        "autoscale",
        "deployment",
        "web",
        "--min=3",
        "--max=5",
        "--cpu=50%",
    ]);
    eventually("the deployment scaled up to minReplicas", || {
        get(&server, &["deployment", "web"])["spec"]["replicas"] == 3
    });
    eventually("the autoscaler's status", || {
        let hpa = get(&server, &["hpa", "web"]);
        hpa["status"]["currentReplicas"] == 3
            && hpa["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    c["type"] == "ScalingActive"
                        && c["status"] == "False"
                        && c["reason"] == "FailedGetResourceMetric"
                })
            })
    });
    let hpa = get(&server, &["hpa", "web"]);
    let able = hpa["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "AbleToScale")
        .cloned()
        .unwrap();
    assert_eq!(able["status"], "True", "{hpa:#}");
    // Above maxReplicas, it scales down to it.
    server.kubectl_ok(&["scale", "deployment", "web", "--replicas=9"]);
    eventually("the deployment scaled down to maxReplicas", || {
        get(&server, &["deployment", "web"])["spec"]["replicas"] == 5
    });
    let events = server.kubectl_ok(&["get", "events", "-A"]);
    assert!(
        events.contains("SuccessfulRescale")
            || server
                .kubectl_ok(&["get", "events.events.k8s.io", "-A"])
                .contains("SuccessfulRescale"),
        "{events}"
    );
}
