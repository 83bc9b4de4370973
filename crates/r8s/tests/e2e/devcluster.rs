//! `r8s devcluster up|down`: the tutorial's three hosts on one machine, each a network
//! namespace on a private switch, driven from the host with the real kubectl through the
//! kubeconfig `up` writes; `down` leaves no namespace behind.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::eventually;
use serde_json::Value;

/// A devcluster in a temporary dir; `down` on drop, so a failing test cleans up too.
struct DevCluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    is_down: bool,
}

impl DevCluster {
    fn up(nodes: u8, images: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The guard exists before `up` runs: a half-made devcluster is removed as well.
        let cluster = Self {
            kubeconfig: dir.path().join("admin.kubeconfig"),
            dir,
            is_down: false,
        };
        let out = Command::new(common::R8S)
            .args(["devcluster", "up", "--nodes", &nodes.to_string(), "--dir"])
            .arg(cluster.dir.path())
            .arg("--images")
            .arg(images)
            .stdin(Stdio::null())
            .output()
            .expect("run r8s devcluster up");
        assert!(
            out.status.success(),
            "r8s devcluster up failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("get nodes"), "{said}");
        cluster
    }

    fn down(&mut self) -> Output {
        self.is_down = true;
        Command::new(common::R8S)
            .args(["devcluster", "down", "--dir"])
            .arg(self.dir.path())
            .output()
            .expect("run r8s devcluster down")
    }

    /// The end of every node's log, for failure messages.
    fn logs(&self) -> String {
        let mut text = String::new();
        for index in 1..=9 {
            let log = self.dir.path().join(format!("node{index}/log"));
            let Ok(all) = std::fs::read_to_string(&log) else {
                continue;
            };
            let lines: Vec<&str> = all.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            text.push_str(&format!("--- {}\n{tail}\n", log.display()));
        }
        text
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(common::tools_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).expect("kubectl printed JSON")
    }

    fn create(&self, yaml: &str) {
        use std::io::Write;
        let mut child = Command::new(common::tools_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["create", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if !self.is_down {
            let out = self.down();
            if !out.status.success() {
                eprintln!(
                    "r8s devcluster down failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

#[test]
fn a_devcluster_runs_pods_across_its_nodes_and_down_removes_it() {
    let images = tempfile::tempdir().unwrap();
    common::node::test_images(images.path());
    let mut cluster = DevCluster::up(3, images.path());

    // Three Ready nodes, seen from the host.
    let nodes = cluster.get_json(&["nodes"]);
    let mut names: Vec<String> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| ready(n))
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}\n{}", cluster.logs());
    let prefix = names[0]
        .strip_suffix("n1")
        .expect("node 1's name")
        .to_owned();
    assert_eq!(names, [1, 2, 3].map(|i| format!("{prefix}n{i}")));

    // A spread Deployment puts one pod on each node.
    cluster.create(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchLabels: {app: spread}}
      containers:
      - name: c
        image: busybox:1
        imagePullPolicy: IfNotPresent
        command: [sleep, "3600"]
"#,
    );
    let mut placed = Vec::new();
    let running = eventually(Duration::from_secs(120), || {
        let pods = cluster.get_json(&["pods", "-l", "app=spread"]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        placed = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_owned())
            .collect();
        placed.sort();
        items.len() == 3 && placed.len() == 3
    });
    assert!(
        running,
        "the spread pods never all ran: {placed:?}\n{}",
        cluster.logs()
    );
    assert_eq!(placed, names, "not one pod per node");

    // A pod on node 2 reaches a web pod on node 3 by its IP and through a ClusterIP Service.
    let (node2, node3) = (&names[1], &names[2]);
    cluster.create(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node3}}}
  containers:
  - name: nginx
    image: nginx:latest
    imagePullPolicy: IfNotPresent
    readinessProbe: {{tcpSocket: {{port: 80}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80}}]
"#
    ));
    let web_ready = eventually(Duration::from_secs(120), || {
        cluster.kubectl_ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.status.containerStatuses[0].ready}",
        ]) == "true"
    });
    assert!(
        web_ready,
        "the web pod never became ready\n{}",
        cluster.logs()
    );
    let web_ip = cluster.kubectl_ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    let service_ip =
        cluster.kubectl_ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    // The node's service rules follow the endpoints a moment later: retry for a while.
    cluster.create(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node2}}}
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command:
    - sh
    - -c
    - |
      fetch() {{ for i in $(seq 30); do wget -q -O - "$1" && return 0; sleep 1; done; return 1; }}
      echo "pod IP:" && fetch http://{web_ip}/ && echo "service:" && fetch http://{service_ip}/
"#
    ));
    let fetched = eventually(Duration::from_secs(120), || {
        let phase = cluster.kubectl_ok(&["get", "pod", "client", "-o", "jsonpath={.status.phase}"]);
        phase == "Succeeded" || phase == "Failed"
    });
    let phase = cluster.kubectl_ok(&["get", "pod", "client", "-o", "jsonpath={.status.phase}"]);
    let logs = String::from_utf8_lossy(&cluster.kubectl(&["logs", "client"]).stdout).into_owned();
    assert!(
        fetched && phase == "Succeeded",
        "the pod on {node2} could not reach {web_ip} or {service_ip} ({phase}): {logs}"
    );
    // One page by pod IP, one through the Service.
    assert_eq!(
        logs.matches("<h1>Welcome to nginx!</h1>").count(),
        2,
        "{logs}"
    );

    // down removes every namespace of the devcluster, and a second down finds nothing to do.
    let out = cluster.down();
    assert!(
        out.status.success(),
        "r8s devcluster down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let again = cluster.down();
    assert!(
        again.status.success(),
        "a second down failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
}
