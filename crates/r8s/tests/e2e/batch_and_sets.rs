//! Jobs, CronJobs, DaemonSets and StatefulSets on hollow nodes, driven with the real kubectl.

use crate::common;

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

const WEB: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: busybox:1.36
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Gi}
";

/// The set's pods by ordinal, from one consistent list.
fn web_pods(server: &TestServer) -> std::collections::BTreeMap<i64, serde_json::Value> {
    let pods = server.get_json(&["pods", "-l", "app=web"]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?;
            let ordinal = name.strip_prefix("web-")?.parse().ok()?;
            Some((ordinal, p.clone()))
        })
        .collect()
}

fn running_and_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["phase"] == "Running" && condition(pod, "Ready")["status"] == "True"
}

fn image(pod: &serde_json::Value) -> &str {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

fn rolled_out(server: &TestServer, image_name: &str) -> bool {
    let set = server.get_json(&["statefulset", "web"]);
    let status = &set["status"];
    let pods = web_pods(server);
    status["readyReplicas"] == 3
        && status["updatedReplicas"] == 3
        && status["currentRevision"] == status["updateRevision"]
        && pods.len() == 3
        && pods
            .values()
            .all(|p| image(p) == image_name && running_and_ready(p))
}

#[test]
fn a_statefulset_starts_its_pods_in_order_with_claims_and_scales_down_from_the_top() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 2);
    server.create_ok(WEB);
    // In every snapshot, a pod exists only if its predecessor is Running and Ready.
    let mut violations = Vec::new();
    let ready = common::eventually(std::time::Duration::from_secs(90), || {
        let pods = web_pods(&server);
        for (ordinal, _) in pods.iter().filter(|(o, _)| **o > 0) {
            if !pods.get(&(ordinal - 1)).is_some_and(running_and_ready) {
                violations.push(format!(
                    "web-{ordinal} exists before web-{} is ready",
                    ordinal - 1
                ));
            }
        }
        pods.len() == 3 && pods.values().all(running_and_ready)
    });
    assert!(
        ready,
        "{}",
        server.kubectl_ok(&["get", "statefulset,pods", "-o", "yaml"])
    );
    assert!(violations.is_empty(), "{violations:?}");
    let pods = web_pods(&server);
    for ordinal in 1..3 {
        let created = pods[&ordinal]["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap();
        let before = condition(&pods[&(ordinal - 1)], "Ready")["lastTransitionTime"]
            .as_str()
            .unwrap();
        assert!(
            created >= before,
            "web-{ordinal} created {created}, before {before}"
        );
    }
    let web0 = &pods[&0];
    assert_eq!(web0["spec"]["hostname"], "web-0");
    assert_eq!(web0["spec"]["subdomain"], "web");
    assert_eq!(
        web0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-0"
    );
    assert_eq!(
        web0["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "0"
    );
    assert_eq!(
        web0["metadata"]["ownerReferences"][0]["kind"],
        "StatefulSet"
    );
    assert_eq!(
        web0["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "data-web-0"
    );
    let claims = server.kubectl_ok(&["get", "pvc", "-o", "name"]);
    assert_eq!(
        claims.lines().collect::<Vec<_>>(),
        vec![
            "persistentvolumeclaim/data-web-0",
            "persistentvolumeclaim/data-web-1",
            "persistentvolumeclaim/data-web-2"
        ]
    );
    let out = server.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(out.contains("roll out complete"), "{out}");
    let events = server.get_json(&["events.events.k8s.io"]);
    let notes: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["kind"] == "StatefulSet" && e["reason"] == "SuccessfulCreate")
        .filter_map(|e| e["note"].as_str())
        .collect();
    for ordinal in 0..3 {
        let note = format!("create Pod web-{ordinal} in StatefulSet web successful");
        assert!(notes.contains(&note.as_str()), "{notes:?}");
    }

    // A deleted pod comes back under its name.
    let uid = pods[&1]["metadata"]["uid"].clone();
    server.kubectl_ok(&["delete", "pod", "web-1", "--wait=false"]);
    let back = common::eventually(std::time::Duration::from_secs(60), || {
        let pods = web_pods(&server);
        pods.get(&1)
            .is_some_and(|p| p["metadata"]["uid"] != uid && running_and_ready(p))
    });
    assert!(
        back,
        "{}",
        server.kubectl_ok(&["get", "pods", "-o", "yaml"])
    );

    server.kubectl_ok(&["scale", "statefulset", "web", "--replicas=1"]);
    // web-1 goes only once web-2 is gone.
    let mut violations = Vec::new();
    let scaled = common::eventually(std::time::Duration::from_secs(90), || {
        let pods = web_pods(&server);
        if pods.contains_key(&2)
            && !pods
                .get(&1)
                .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null())
        {
            violations.push("web-1 went before web-2".to_string());
        }
        pods.keys().copied().collect::<Vec<_>>() == vec![0]
    });
    assert!(
        scaled,
        "{}",
        server.kubectl_ok(&["get", "statefulset,pods", "-o", "yaml"])
    );
    assert!(violations.is_empty(), "{violations:?}");
    // Claims are retained by default.
    let claims = server.kubectl_ok(&["get", "pvc", "-o", "name"]);
    assert_eq!(claims.lines().count(), 3, "{claims}");
    let set = server.get_json(&["statefulset", "web"]);
    assert_eq!(set["status"]["replicas"], 1);
}

#[test]
fn a_statefulset_rolls_out_from_its_highest_ordinal_and_rolls_back() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 2);
    server.create_ok(WEB);
    server.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=90s"]);

    server.kubectl_ok(&["set", "image", "statefulset/web", "c=busybox:1.37"]);
    // A pod runs the new image only once every higher ordinal does.
    let mut violations = Vec::new();
    let updated = common::eventually(std::time::Duration::from_secs(120), || {
        let pods = web_pods(&server);
        for (ordinal, pod) in pods.iter().filter(|(o, _)| **o < 2) {
            let next = pods.get(&(ordinal + 1));
            if image(pod) == "busybox:1.37" && next.is_none_or(|n| image(n) != "busybox:1.37") {
                violations.push(format!("web-{ordinal} updated before web-{}", ordinal + 1));
            }
        }
        rolled_out(&server, "busybox:1.37")
    });
    assert!(
        updated,
        "{}",
        server.kubectl_ok(&["get", "statefulset,pods", "-o", "yaml"])
    );
    assert!(violations.is_empty(), "{violations:?}");
    let out = server.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(out.contains("roll out complete"), "{out}");
    let history = server.kubectl_ok(&["rollout", "history", "statefulset/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");

    server.kubectl_ok(&["rollout", "undo", "statefulset/web"]);
    let undone = common::eventually(std::time::Duration::from_secs(120), || {
        rolled_out(&server, "busybox:1.36")
    });
    assert!(
        undone,
        "{}",
        server.kubectl_ok(&["get", "statefulset,pods", "-o", "yaml"])
    );
    server.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    // The old revision came back as the newest.
    let history = server.kubectl_ok(&["rollout", "history", "statefulset/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, vec!["2", "3"], "{history}");
}
