//! Jobs, CronJobs, DaemonSets and StatefulSets on hollow nodes, driven with the real kubectl.

mod common;

use common::{SimNodes, TestServer};

fn condition<'a>(object: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn a_job_of_true_pods_completes() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 2);
    server.kubectl_ok(&["create", "job", "done", "--image=busybox", "--", "true"]);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/done",
        "--timeout=60s",
    ]);
    let job = server.get_json(&["job", "done"]);
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(job["status"]["completionTime"].is_string());
    assert_eq!(condition(&job, "SuccessCriteriaMet")["status"], "True");
    // Counted pods lose the job-tracking finalizer.
    let pods = server.get_json(&["pods", "-l", "batch.kubernetes.io/job-name=done"]);
    let pod = &pods["items"][0];
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert!(
        pod["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    );
}

#[test]
fn a_job_of_false_pods_fails_with_backoff_limit_exceeded() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 2);
    server.create_ok(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: broken\nspec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        command: [\"false\"]\n",
    );
    server.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/broken",
        "--timeout=90s",
    ]);
    let job = server.get_json(&["job", "broken"]);
    assert_eq!(condition(&job, "Failed")["reason"], "BackoffLimitExceeded");
    assert_eq!(job["status"]["failed"], 2);
}

#[test]
fn a_job_created_from_a_cronjob_runs() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 1);
    server.kubectl_ok(&[
        "create",
        "cronjob",
        "yearly",
        "--image=busybox",
        "--schedule=0 0 1 1 *",
        "--",
        "true",
    ]);
    server.kubectl_ok(&["create", "job", "now", "--from=cronjob/yearly"]);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/now",
        "--timeout=60s",
    ]);
    let job = server.get_json(&["job", "now"]);
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(job["status"]["succeeded"], 1);
}

#[test]
fn a_daemonset_runs_one_pod_per_hollow_node_and_none_on_a_tainted_node() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 3);
    server.kubectl_ok(&["taint", "nodes", "hollow-2", "dedicated=db:NoSchedule"]);
    server.create_ok(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n",
    );
    let ready = common::eventually(std::time::Duration::from_secs(60), || {
        let ds = server.get_json(&["daemonset", "agent"]);
        ds["status"]["numberReady"] == 2 && ds["status"]["desiredNumberScheduled"] == 2
    });
    assert!(
        ready,
        "{}",
        server.kubectl_ok(&["get", "daemonset", "agent", "-o", "yaml"])
    );
    let pods = server.get_json(&["pods", "-l", "app=agent"]);
    let mut nodes: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or(""))
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["hollow-0", "hollow-1"]);
}
