//! Job pod failure policies and per-index back-off on hollow nodes, driven with the real
//! kubectl.

use std::time::Duration;

use crate::common;

use common::{SimNodes, TestServer, eventually};

fn condition<'a>(object: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&serde_json::Value::Null)
}

fn job_pods(server: &TestServer, job: &str) -> Vec<serde_json::Value> {
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let pods = server.get_json(&["pods", "-l", &selector]);
    pods["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_pod_failure_policy_fails_the_job_on_exit_code_42() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 1);
    server.create_ok(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: exits\nspec:\n  completions: 2\n  parallelism: 2\n  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: main\n        operator: In\n        values: [42]\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n        command: [\"sleep\", \"3600\"]\n",
    );
    let running = eventually(Duration::from_secs(60), || {
        let pods = job_pods(&server, "exits");
        pods.len() == 2 && pods.iter().all(|p| p["status"]["phase"] == "Running")
    });
    assert!(
        running,
        "job pods never ran: {:?}",
        job_pods(&server, "exits")
    );

    // Hollow containers cannot exit 42: report it as the kubelet would.
    let pod = job_pods(&server, "exits")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = serde_json::json!({ "status": {
        "phase": "Failed",
        "containerStatuses": [{
            "name": "main", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0,
            "state": { "terminated": {
                "exitCode": 42, "reason": "Error",
                "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z",
            }},
        }],
    }});
    server.kubectl_ok(&[
        "patch",
        "pod",
        &pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);

    server.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/exits",
        "--timeout=60s",
    ]);
    let job = server.get_json(&["job", "exits"]);
    let failed = condition(&job, "Failed");
    assert_eq!(failed["reason"], "PodFailurePolicy");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("pod default/{pod} failed with exit code 42")),
        "{message}"
    );
    assert_eq!(
        condition(&job, "FailureTarget")["reason"],
        "PodFailurePolicy"
    );
    // The other pod was stopped rather than left to run, and none was started again.
    assert_eq!(job["status"]["active"], 0);
    assert!(job_pods(&server, "exits").len() <= 2);
}

#[test]
fn an_indexed_job_with_backoff_limit_per_index_lists_its_failed_indexes() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 1);
    server.create_ok(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: perindex\nspec:\n  completions: 2\n  parallelism: 2\n  completionMode: Indexed\n  backoffLimitPerIndex: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n        command: [\"false\"]\n",
    );
    // Each index runs twice (10s back-off between) before it is given up.
    server.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/perindex",
        "--timeout=120s",
    ]);
    let job = server.get_json(&["job", "perindex"]);
    assert_eq!(job["status"]["failedIndexes"], "0,1");
    assert_eq!(condition(&job, "Failed")["reason"], "FailedIndexes");
    assert_eq!(job["status"]["failed"], 4);
    assert_eq!(job["spec"]["backoffLimit"], i32::MAX);

    // The retry of each index carries the index's failure count.
    let pods = job_pods(&server, "perindex");
    for index in ["0", "1"] {
        let counts: Vec<&str> = pods
            .iter()
            .filter(|p| {
                p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == index
            })
            .filter_map(|p| {
                p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"].as_str()
            })
            .collect();
        let mut counts = counts;
        counts.sort();
        assert_eq!(counts, vec!["0", "1"], "index {index}");
    }
}
