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

    /// A command run inside node `name`'s network namespace (named as the Node).
    fn on_node(&self, name: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", name])
            .args(args)
            .output()
            .expect("run ip netns exec")
    }

    /// What `url` answers from inside node `name`, once it answers with an nginx page.
    fn serves_nginx_from(&self, name: &str, url: &str, curl_args: &[&str]) -> bool {
        eventually(Duration::from_secs(60), || {
            let mut args = vec!["curl", "-sS", "--max-time", "5"];
            args.extend_from_slice(curl_args);
            args.push(url);
            let out = self.on_node(name, &args);
            String::from_utf8_lossy(&out.stdout).contains("Welcome to nginx!")
        })
    }

    /// `kubectl exec POD -- sh -c SCRIPT`'s output.
    fn exec(&self, pod: &str, script: &str) -> String {
        let out = self.kubectl(&["exec", pod, "--", "sh", "-c", script]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Pods of a label selector that are Running and not being deleted, by node.
    fn running_on(&self, selector: &str) -> Vec<String> {
        let pods = self.get_json(&["pods", "-l", selector]);
        let mut nodes: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_owned())
            .collect();
        nodes.sort();
        nodes
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
    # `:latest` is pulled (policy Always): through the devcluster's registry mirror.
    image: nginx:latest
    readinessProbe: {{tcpSocket: {{port: 80}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-lb}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-headless}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: outside}}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
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

    let node_ips: Vec<String> = cluster.get_json(&["nodes"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let addresses = n["status"]["addresses"].as_array().unwrap();
            let internal = addresses
                .iter()
                .find(|a| a["type"] == "InternalIP")
                .unwrap();
            internal["address"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut node_ips = node_ips;
    node_ips.sort_by_key(|ip| ip.parse::<std::net::Ipv4Addr>().unwrap());

    // From the nodes themselves: the ClusterIP, the NodePort on every node's address (asked
    // from another node), and the LoadBalancer address.
    assert!(
        cluster.serves_nginx_from(&names[0], &format!("http://{service_ip}/"), &[]),
        "node 1 cannot reach the ClusterIP {service_ip}\n{}",
        cluster.logs()
    );
    let node_port = cluster.kubectl_ok(&[
        "get",
        "service",
        "web-np",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    for (i, ip) in node_ips.iter().enumerate() {
        let from = &names[(i + 1) % names.len()];
        assert!(
            cluster.serves_nginx_from(from, &format!("http://{ip}:{node_port}/"), &[]),
            "NodePort {node_port} on {ip} does not answer {from}\n{}",
            cluster.logs()
        );
    }
    let mut lb_ip = String::new();
    let assigned = eventually(Duration::from_secs(60), || {
        lb_ip = cluster.kubectl_ok(&[
            "get",
            "service",
            "web-lb",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        !lb_ip.is_empty()
    });
    assert!(assigned, "the LoadBalancer Service got no address");
    assert!(node_ips.contains(&lb_ip), "{lb_ip} is not a node's address");
    assert!(
        cluster.serves_nginx_from(&names[1], &format!("http://{lb_ip}:8080/"), &[]),
        "the LoadBalancer address {lb_ip}:8080 does not answer\n{}",
        cluster.logs()
    );

    // Cluster DNS from a pod on another node than the web pod: service, headless, SRV, pod
    // and ExternalName names, and a service by its short name through the search path.
    cluster.create(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: toolbox}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {}}}
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
"#,
        names[0]
    ));
    let toolbox = eventually(Duration::from_secs(120), || {
        cluster.kubectl_ok(&["get", "pod", "toolbox", "-o", "jsonpath={.status.phase}"])
            == "Running"
    });
    assert!(toolbox, "the toolbox pod never ran\n{}", cluster.logs());
    let dashed = web_ip.replace('.', "-");
    let answers = cluster.exec(
        "toolbox",
        &format!(
            "nslookup web.default.svc.cluster.local; \
             nslookup web-headless.default.svc.cluster.local; \
             nslookup -type=SRV _http._tcp.web-headless.default.svc.cluster.local; \
             nslookup {dashed}.default.pod.cluster.local; \
             nslookup outside.default.svc.cluster.local; \
             wget -q -O - http://web/"
        ),
    );
    assert_eq!(
        answers.matches(&format!("Address: {service_ip}")).count(),
        2,
        "the service and the ExternalName's target: {answers}"
    );
    assert_eq!(
        answers.matches(&format!("Address: {web_ip}")).count(),
        2,
        "the headless service and the pod name: {answers}"
    );
    assert!(
        answers.contains(&format!(
            "80 {dashed}.web-headless.default.svc.cluster.local"
        )),
        "SRV: {answers}"
    );
    assert!(
        answers.contains("canonical name = web.default.svc.cluster.local"),
        "ExternalName: {answers}"
    );
    assert!(answers.contains("Welcome to nginx!"), "{answers}");

    // An Ingress, served by the controller on a worker, by host over HTTP and HTTPS.
    let (crt, key) = common::self_signed_cert(cluster.dir.path(), "web.example");
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        &format!("--cert={}", crt.display()),
        &format!("--key={}", key.display()),
    ]);
    cluster.create(
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  tls: [{hosts: [web.example], secretName: web-tls}]
  rules:
  - host: web.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#,
    );
    let worker_ip = &node_ips[1];
    assert!(
        cluster.serves_nginx_from(
            &names[0],
            "http://web.example/",
            &["--resolve", &format!("web.example:80:{worker_ip}")]
        ),
        "the ingress on {worker_ip} never served web.example\n{}",
        cluster.logs()
    );
    assert!(
        cluster.serves_nginx_from(
            &names[0],
            "https://web.example/",
            &[
                "--cacert",
                crt.to_str().unwrap(),
                "--resolve",
                &format!("web.example:443:{worker_ip}")
            ]
        ),
        "the ingress on {worker_ip} never served https://web.example\n{}",
        cluster.logs()
    );

    // A Deployment whose pods leave an unreachable node quickly; the spread one goes first,
    // as its constraint would keep replacements pending while a node is out.
    cluster.kubectl_ok(&["delete", "deployment", "spread", "--wait=false"]);
    cluster.kubectl_ok(&["delete", "pod", "client", "--wait=false"]);
    cluster.create(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: survivor}
spec:
  replicas: 4
  selector: {matchLabels: {app: survivor}}
  template:
    metadata: {labels: {app: survivor}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - name: c
        image: busybox:1
        imagePullPolicy: IfNotPresent
        command: [sleep, "3600"]
"#,
    );
    let mut on = Vec::new();
    let spread = eventually(Duration::from_secs(120), || {
        on = cluster.running_on("app=survivor");
        on.len() == 4 && on.contains(&names[1]) && on.contains(&names[2])
    });
    assert!(
        spread,
        "survivor pods not on every worker: {on:?}\n{}",
        cluster.logs()
    );

    // `kubectl drain` of worker 2: cordoned, its pods evicted and replaced elsewhere.
    let drained = cluster.kubectl(&[
        "drain",
        &names[1],
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ]);
    assert!(
        drained.status.success(),
        "kubectl drain failed: {}{}",
        String::from_utf8_lossy(&drained.stdout),
        String::from_utf8_lossy(&drained.stderr)
    );
    let cordoned = cluster.kubectl_ok(&[
        "get",
        "node",
        &names[1],
        "-o",
        "jsonpath={.spec.unschedulable}",
    ]);
    assert_eq!(cordoned, "true");
    let replaced = eventually(Duration::from_secs(120), || {
        on = cluster.running_on("app=survivor");
        on.len() == 4 && !on.contains(&names[1])
    });
    assert!(replaced, "after the drain: {on:?}\n{}", cluster.logs());

    // The loss of worker 3: its agent killed, the Node goes NotReady, its pods are evicted
    // and replaced on the nodes left.
    let pid: i32 = std::fs::read_to_string(cluster.dir.path().join("node3/pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: the PID is the agent this test's devcluster started (its pid file).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let not_ready = eventually(Duration::from_secs(120), || {
        !ready(&cluster.get_json(&["node", &names[2]]))
    });
    assert!(not_ready, "node 3 stayed Ready after its agent died");
    let moved = eventually(Duration::from_secs(120), || {
        on = cluster.running_on("app=survivor");
        on.len() == 4 && on.iter().all(|n| n == &names[0])
    });
    assert!(moved, "after node 3's loss: {on:?}\n{}", cluster.logs());

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
    // Nor any process it started (agents, server, forwarder, registry mirror).
    let dir = cluster.dir.path().to_string_lossy().into_owned();
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&dir))
        .collect();
    assert!(survivors.is_empty(), "processes left: {survivors:?}");
    let again = cluster.down();
    assert!(
        again.status.success(),
        "a second down failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
}
