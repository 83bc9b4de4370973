//! The node agent with real containers (containerd + runc + CNI), driven by the real kubectl:
//! pods run, report status as upstream's kubelet does, restart by policy, get their env and
//! volumes, and go away cleanly. Each test runs a one-node `r8s server` in a network namespace
//! of its own and removes everything it made.

use crate::common;

use std::time::Duration;

use common::{TestServer, eventually};
use serde_json::Value;

const READY: Duration = Duration::from_secs(60);

fn wait_node_ready(server: &TestServer) {
    let ready = eventually(READY, || {
        let out = server.kubectl(&["get", "nodes", "-o", "json"]);
        let Ok(nodes) = serde_json::from_slice::<Value>(&out.stdout) else {
            return false;
        };
        nodes["items"].as_array().is_some_and(|items| {
            items.iter().any(|n| {
                n["spec"]["podCIDR"].is_string()
                    && n["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    });
    assert!(ready, "the node never became Ready with a pod CIDR");
}

fn node() -> TestServer {
    let server = TestServer::start_node();
    wait_node_ready(&server);
    server
}

fn wait_pod(server: &TestServer, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = eventually(READY, || {
        let out = server.kubectl(&["get", "pod", name, "-o", "json"]);
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(p) => {
                let ok = check(&p);
                last = p;
                ok
            }
            Err(_) => false,
        }
    });
    assert!(ok, "pod {name} never got {what}: {:#}", last["status"]);
    last
}

fn phase_is(phase: &'static str) -> impl Fn(&Value) -> bool {
    move |p| p["status"]["phase"] == phase
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn a_pod_runs_with_its_env_and_volumes_and_reports_status() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello, color: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: env-and-volumes, labels: {app: demo}}
spec:
  restartPolicy: Never
  initContainers:
  - name: init
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo from-init > /work/init.txt']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: busybox:1
    imagePullPolicy: IfNotPresent
    env:
    - {name: PLAIN, value: plain-value}
    - {name: COMPOSED, value: "$(PLAIN)-composed"}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    envFrom:
    - {configMapRef: {name: settings}, prefix: CM_}
    command:
    - sh
    - -c
    - |
      {
        echo "plain=$PLAIN composed=$COMPOSED name=$POD_NAME greeting=$GREETING password=$PASSWORD color=$CM_color"
        echo "ip=$POD_IP"
        echo "init=$(cat /work/init.txt)"
        echo "cm=$(cat /config/greeting) secret=$(cat /secret/password)"
        echo "labels=$(cat /info/labels)"
        echo "token=$(test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo yes)"
        echo "ns=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
        echo "kubernetes=$KUBERNETES_SERVICE_HOST"
        echo "hosts=$(grep env-and-volumes /etc/hosts | cut -f2)"
      } > /dev/termination-log
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: config, mountPath: /config}
    - {name: secret, mountPath: /secret}
    - {name: info, mountPath: /info}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: config, configMap: {name: settings}}
  - {name: secret, secret: {secretName: creds}}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
"#,
    );
    let p = wait_pod(
        &server,
        "env-and-volumes",
        "Succeeded",
        phase_is("Succeeded"),
    );
    let main = container_status(&p, "main");
    let terminated = &main["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 0, "{main:#}");
    assert_eq!(terminated["reason"], "Completed");
    let message = terminated["message"].as_str().unwrap_or_default();
    let pod_ip = p["status"]["podIP"].as_str().expect("a pod IP");
    assert!(pod_ip.starts_with("10.244."), "{pod_ip}");
    for expected in [
        "plain=plain-value composed=plain-value-composed name=env-and-volumes greeting=hello password=s3cret color=blue".to_string(),
        format!("ip={pod_ip}"),
        "init=from-init".into(),
        "cm=hello secret=s3cret".into(),
        "labels=app=\"demo\"".into(),
        "token=yes".into(),
        "ns=default".into(),
        "kubernetes=10.96.0.1".into(),
        "hosts=env-and-volumes".into(),
    ] {
        assert!(message.contains(&expected), "missing {expected:?} in:\n{message}");
    }
    let init = &p["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init:#}");
    assert_eq!(p["status"]["hostIP"], common::node::NODE_IP);
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    let conditions = p["status"]["conditions"].as_array().unwrap();
    for t in [
        "PodScheduled",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodReadyToStartContainers",
    ] {
        assert!(
            conditions.iter().any(|c| c["type"] == t),
            "no {t} condition"
        );
    }
}

#[test]
fn containers_restart_by_policy_with_back_off_and_exit_codes() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - {name: c, image: busybox:1, imagePullPolicy: IfNotPresent, command: [sh, -c, 'exit 3']}
---
apiVersion: v1
kind: Pod
metadata: {name: fails-once}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox:1, imagePullPolicy: IfNotPresent, command: [sh, -c, 'exit 7']}
---
apiVersion: v1
kind: Pod
metadata: {name: on-failure}
spec:
  restartPolicy: OnFailure
  volumes: [{name: state, emptyDir: {}}]
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    # Fails the first time, succeeds the second (the emptyDir survives the restart).
    command: [sh, -c, 'if [ -e /state/ran ]; then exit 0; fi; touch /state/ran; exit 1']
    volumeMounts: [{name: state, mountPath: /state}]
"#,
    );
    let p = wait_pod(&server, "fails-once", "Failed", phase_is("Failed"));
    assert_eq!(
        container_status(&p, "c")["state"]["terminated"]["exitCode"],
        7
    );
    assert_eq!(
        container_status(&p, "c")["state"]["terminated"]["reason"],
        "Error"
    );
    assert_eq!(container_status(&p, "c")["restartCount"], 0);

    let p = wait_pod(&server, "on-failure", "Succeeded", phase_is("Succeeded"));
    assert_eq!(container_status(&p, "c")["restartCount"], 1);
    assert_eq!(
        container_status(&p, "c")["lastState"]["terminated"]["exitCode"],
        1
    );

    let p = wait_pod(&server, "crasher", "a CrashLoopBackOff", |p| {
        let c = container_status(p, "c");
        c["restartCount"].as_i64().unwrap_or(0) >= 1
            && c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let c = container_status(&p, "c");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3, "{c:#}");
    assert!(
        c["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("back-off 10s restarting failed container=c pod=crasher_default"),
        "{c:#}"
    );
    assert_eq!(p["status"]["phase"], "Running");
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=crasher",
    ]);
    assert!(events.contains("BackOff"), "{events}");
}

#[test]
fn deleting_a_pod_stops_it_within_its_grace_period_and_runs_pre_stop() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  terminationGracePeriodSeconds: 30
  volumes: [{name: out, hostPath: {path: /tmp/r8s-prestop-PLACEHOLDER, type: DirectoryOrCreate}}]
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    # Exits promptly on SIGTERM, as a well-behaved server does.
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 0.2; done']
    lifecycle:
      preStop:
        exec: {command: [sh, -c, 'echo stopping > /out/pre-stop']}
    volumeMounts: [{name: out, mountPath: /out}]
"#
        .replace("PLACEHOLDER", &server.node.as_ref().unwrap().node_name)
        .as_str(),
    );
    wait_pod(&server, "graceful", "Running", |p| {
        container_status(p, "c")["ready"] == true
    });
    let out = std::path::PathBuf::from(format!(
        "/tmp/r8s-prestop-{}",
        server.node.as_ref().unwrap().node_name
    ));
    let began = std::time::Instant::now();
    server.kubectl_ok(&["delete", "pod", "graceful", "--wait=true", "--timeout=60s"]);
    let took = began.elapsed();
    let pre_stop = std::fs::read_to_string(out.join("pre-stop")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(pre_stop.trim(), "stopping");
    // Well inside the 30 s grace period: the container left on SIGTERM.
    assert!(took < Duration::from_secs(25), "deletion took {took:?}");
    let pods = std::fs::read_dir(server.data_dir.path().join("agent/pods"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pods, 0, "the pod's directory is left on the node");
}

#[test]
fn an_untagged_image_is_always_pulled_and_a_failed_pull_backs_off() {
    let server = node();
    // busybox:latest is present, but `:latest` means Always: offline, the pull must fail.
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: latest}
spec:
  containers: [{name: c, image: busybox:latest, command: [sleep, "3600"]}]
"#,
    );
    let p = wait_pod(&server, "latest", "ImagePullBackOff", |p| {
        container_status(p, "c")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=latest",
    ]);
    assert!(events.contains("Pulling"), "{events}");
    assert!(events.contains("Failed"), "{events}");
    // The same image with IfNotPresent runs from the node's store.
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: present}
spec:
  containers: [{name: c, image: busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}]
"#,
    );
    wait_pod(&server, "present", "Running", phase_is("Running"));
}

#[test]
fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: flag}
data: {ready: "no"}
---
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  # The liveness kill waits this long for `sleep`, which ignores SIGTERM as PID 1.
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: nginx:latest
    imagePullPolicy: IfNotPresent
    readinessProbe:
      exec: {command: [grep, -q, "yes", /flag/ready]}
      periodSeconds: 1
    volumeMounts: [{name: flag, mountPath: /flag}]
  - name: doomed
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    livenessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
      failureThreshold: 2
  volumes: [{name: flag, configMap: {name: flag}}]
"#,
    );
    let p = wait_pod(
        &server,
        "probed",
        "a restart of the unhealthy container",
        |p| {
            container_status(p, "doomed")["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        },
    );
    assert_eq!(
        container_status(&p, "web")["ready"],
        false,
        "ready before its probe passed"
    );
    assert_eq!(container_status(&p, "web")["restartCount"], 0);
    // A configMap update reaches the running pod's volume, and its probe passes.
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "flag",
        "-p",
        r#"{"data":{"ready":"yes"}}"#,
    ]);
    wait_pod(&server, "probed", "web ready", |p| {
        container_status(p, "web")["ready"] == true
    });
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=probed",
    ]);
    assert!(events.contains("Unhealthy"), "{events}");
}

#[test]
fn a_deployment_runs_its_replicas_and_pods_survive_an_agent_restart() {
    let mut server = node();
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:latest",
        "--replicas=2",
    ]);
    server.kubectl_ok(&["patch", "deployment", "web", "--type=json", "-p",
        r#"[{"op":"add","path":"/spec/template/spec/containers/0/imagePullPolicy","value":"IfNotPresent"}]"#]);
    // Available, and the first ReplicaSet's pod (pull policy Always, offline) gone.
    let available = eventually(READY, || {
        let d = server.get_json(&["deployment", "web"]);
        let pods = server.get_json(&["pods", "-l", "app=web"]);
        d["status"]["availableReplicas"] == 2
            && d["status"]["updatedReplicas"] == 2
            && pods["items"].as_array().is_some_and(|p| p.len() == 2)
    });
    assert!(
        available,
        "{}",
        server.kubectl_ok(&["get", "pods", "-o", "wide"])
    );
    let before = server.get_json(&["pods", "-l", "app=web"]);
    let ids = |pods: &Value| {
        let mut ids: Vec<String> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                container_status(p, "nginx")["containerID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        ids.sort();
        ids
    };
    let before_ids = ids(&before);
    server.restart();
    wait_node_ready(&server);
    std::thread::sleep(Duration::from_secs(3));
    let after = server.get_json(&["pods", "-l", "app=web"]);
    assert_eq!(
        ids(&after),
        before_ids,
        "containers were replaced across the agent restart"
    );
    for p in after["items"].as_array().unwrap() {
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(container_status(p, "nginx")["restartCount"], 0);
    }
}

#[test]
fn pods_reach_each_other_and_host_ports_forward() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: nginx
    image: nginx:latest
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 80, hostPort: 8080}]
"#,
    );
    let web = wait_pod(&server, "web", "Ready", |p| {
        container_status(p, "nginx")["ready"] == true
    });
    let web_ip = web["status"]["podIP"].as_str().unwrap().to_string();
    server.create_ok(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'wget -q -O /dev/termination-log http://{web_ip}/']
"#
    ));
    let client = wait_pod(&server, "client", "Succeeded", phase_is("Succeeded"));
    let page = container_status(&client, "c")["state"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(page.contains("Welcome to nginx!"), "{page}");
    // The hostPort answers on the node's address.
    let out = server
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            &format!("http://{}:8080/", common::node::NODE_IP),
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("Welcome to nginx!"),
        "{body}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hungry}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    resources: {limits: {memory: 16Mi}}
    # The shell holds the whole output in a variable.
    command: [sh, -c, 'x=$(head -c 134217728 /dev/zero | tr "\\0" a); echo survived']
"#,
    );
    let p = wait_pod(&server, "hungry", "Failed", phase_is("Failed"));
    let terminated = &container_status(&p, "c")["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated:#}");
    assert_eq!(terminated["exitCode"], 137);
    assert_eq!(p["status"]["qosClass"], "Burstable");
}

#[test]
fn pods_keep_running_when_containerd_dies_and_it_comes_back() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  containers: [{name: c, image: busybox:1, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}]
"#,
    );
    let before = wait_pod(&server, "steady", "Running", phase_is("Running"));
    let id = container_status(&before, "c")["containerID"].clone();
    let containerd = containerd_pid(&server);
    unsafe { libc::kill(containerd, libc::SIGKILL) };
    let restarted = eventually(READY, || {
        let pid = containerd_pid(&server);
        pid != 0 && pid != containerd
    });
    assert!(restarted, "containerd was not restarted");
    // A new pod starts through the new containerd; the old one never restarted.
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: after}
spec:
  containers: [{name: c, image: busybox:1, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}]
"#,
    );
    wait_pod(&server, "after", "Running", phase_is("Running"));
    let steady = server.get_json(&["pod", "steady"]);
    assert_eq!(container_status(&steady, "c")["containerID"], id);
    assert_eq!(container_status(&steady, "c")["restartCount"], 0);
    assert_eq!(steady["status"]["phase"], "Running");
}

/// The containerd the node's agent runs (0 when none): found by its config in the data dir.
fn containerd_pid(server: &TestServer) -> i32 {
    let config = server.data_dir.path().join("agent/containerd/config.toml");
    let needle = config.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("containerd ") && cmdline.contains(&needle) {
            return pid;
        }
    }
    0
}

#[test]
fn images_are_imported_and_pulled_through_a_registry_mirror() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_node_in(
        data_dir,
        &["--registry-mirror", "docker.io=http://127.0.0.1:5000"],
    );
    wait_node_ready(&server);
    let scratch = tempfile::tempdir().unwrap();
    // `r8s images import`: a tarball with a tag the node has never seen.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-images.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(["--out"])
        .arg(scratch.path())
        .args(["--tag", "imported:v1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tarball = scratch.path().join("busybox_latest.tar");
    let out = std::process::Command::new(common::R8S)
        .args(["images", "import", "--data-dir"])
        .arg(server.data_dir.path())
        .arg(&tarball)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: imported}
spec:
  containers: [{name: c, image: imported:v1, imagePullPolicy: Never, command: [sleep, "3600"]}]
"#,
    );
    wait_pod(&server, "imported", "Running", phase_is("Running"));

    // A registry inside the node's network namespace, as the mirror of docker.io.
    let registry = Registry::start(&server, scratch.path());
    let out = server
        .command("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", tarball.display()))
        .arg("docker://127.0.0.1:5000/library/busybox:mirrored")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: mirrored}
spec:
  containers: [{name: c, image: busybox:mirrored, imagePullPolicy: Always, command: [sleep, "3600"]}]
"#,
    );
    let p = wait_pod(&server, "mirrored", "Running", phase_is("Running"));
    assert!(
        container_status(&p, "c")["imageID"]
            .as_str()
            .unwrap_or_default()
            .contains("sha256:"),
        "{p:#}"
    );
    drop(registry);
}

/// Debian's docker-registry on 127.0.0.1:5000 inside the node's namespace; stopped by PID.
struct Registry(std::process::Child);

impl Registry {
    fn start(server: &TestServer, dir: &std::path::Path) -> Self {
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
                dir.join("registry").display()
            ),
        )
        .unwrap();
        let child = server
            .command("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let up = eventually(Duration::from_secs(20), || {
            server
                .command("curl")
                .args(["-sf", "http://127.0.0.1:5000/v2/"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(up, "docker-registry did not come up");
        Self(child)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn sidecars_run_beside_the_containers_and_deadlines_fail_pods() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: with-sidecar}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - name: sidecar
    image: busybox:1
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: [sh, -c, 'echo up > /shared/sidecar; sleep 3600']
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: main
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'sleep 1; cat /shared/sidecar > /dev/termination-log']
    volumeMounts: [{name: shared, mountPath: /shared}]
---
apiVersion: v1
kind: Pod
metadata: {name: deadline}
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox:1, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}]
"#,
    );
    let p = wait_pod(&server, "with-sidecar", "Succeeded", phase_is("Succeeded"));
    let main = container_status(&p, "main");
    assert_eq!(main["state"]["terminated"]["message"], "up\n", "{main:#}");
    let p = wait_pod(&server, "deadline", "Failed", phase_is("Failed"));
    assert_eq!(
        p["status"]["reason"], "DeadlineExceeded",
        "{:#}",
        p["status"]
    );
}

#[test]
fn kubectl_logs_reads_current_previous_and_followed_output() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    # stdout and stderr reach the log through separate pipes: their order holds only across
    # a pause.
    command: [sh, -c, 'echo run; for i in 1 2 3; do echo line $i; done; sleep 1; echo oops >&2; sleep 1; exit 1']
"#,
    );
    wait_pod(&server, "talker", "a restart", |p| {
        container_status(p, "c")["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    let previous = server.kubectl_ok(&["logs", "talker", "--previous"]);
    assert_eq!(previous, "run\nline 1\nline 2\nline 3\noops\n");
    let tail = server.kubectl_ok(&["logs", "talker", "--tail=1", "--previous"]);
    assert_eq!(tail, "oops\n");
    let stamped = server.kubectl_ok(&["logs", "talker", "--previous", "--timestamps", "--tail=1"]);
    assert!(
        stamped.ends_with("Z oops\n") && stamped.starts_with("20"),
        "{stamped}"
    );
    let limited = server.kubectl_ok(&["logs", "talker", "--previous", "--limit-bytes=6"]);
    assert_eq!(limited, "run\nli");
    let out = server.kubectl(&["logs", "talker", "-c", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod talker"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Follow ends when the container exits.
    let followed = server.kubectl_ok(&["logs", "-f", "talker"]);
    assert!(followed.contains("line 3"), "{followed}");
}

/// How kubectl carries exec, attach, cp and port-forward: its default WebSocket protocols
/// (translated to SPDY by the apiserver) or the SPDY fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    WebSocket,
    Spdy,
}

const TRANSPORTS: [Transport; 2] = [Transport::WebSocket, Transport::Spdy];

/// kubectl in the node's namespace speaking `transport`; with `limit`, under `timeout` (for
/// commands that end by themselves: a killed `timeout` would leave kubectl running).
fn kubectl_over(
    server: &TestServer,
    transport: Transport,
    limit: Option<u32>,
) -> std::process::Command {
    let websockets = match transport {
        Transport::WebSocket => "true",
        Transport::Spdy => "false",
    };
    let kubectl = common::tools_bin().join("kubectl");
    let mut command = match limit {
        Some(seconds) => {
            let mut command = server.command("timeout");
            command.arg(seconds.to_string()).arg(kubectl);
            command
        }
        None => server.command(kubectl),
    };
    command
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets);
    command
}

/// Runs kubectl over `transport` with `input` on its stdin.
fn stream_output(
    server: &TestServer,
    transport: Transport,
    args: &[&str],
    input: &[u8],
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = kubectl_over(server, transport, Some(120))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("kubectl output");
    let _ = writer.join();
    out
}

/// The lines `out` yields, as they come.
fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (lines, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The first line from `lines` that `wanted` accepts within `timeout`.
fn wait_line(
    lines: &std::sync::mpsc::Receiver<String>,
    timeout: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = std::time::Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SHELL_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  containers:
  - name: sh
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
  - name: done
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: ['true']
  restartPolicy: Never
"#;

#[test]
fn kubectl_exec_runs_commands_with_output_stdin_tty_and_exit_codes() {
    let server = node();
    server.create_ok(SHELL_POD);
    wait_pod(&server, "shell", "a running sh and a finished done", |p| {
        container_status(p, "sh")["state"]["running"].is_object()
            && container_status(p, "done")["state"]["terminated"].is_object()
    });
    let stdin: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for transport in TRANSPORTS {
        // Output on both streams; kubectl says which protocol it negotiated.
        let out = stream_output(
            &server,
            transport,
            &[
                "exec",
                "-v=4",
                "shell",
                "-c",
                "sh",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2",
            ],
            b"",
        );
        assert!(out.status.success(), "{transport:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out\n", "{transport:?}");
        assert!(text(&out.stderr).contains("err\n"), "{transport:?}");
        if transport == Transport::WebSocket {
            assert!(
                text(&out.stderr)
                    .contains(r#""Subprotocol negotiated" protocol="v5.channel.k8s.io""#),
                "{}",
                text(&out.stderr)
            );
        }
        // The exit code comes back.
        let out = stream_output(
            &server,
            transport,
            &["exec", "shell", "-c", "sh", "--", "sh", "-c", "exit 3"],
            b"",
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{transport:?}: {}",
            text(&out.stderr)
        );
        // stdin reaches the command, and its end too.
        let out = stream_output(
            &server,
            transport,
            &[
                "exec",
                "-i",
                "shell",
                "-c",
                "sh",
                "--",
                "sh",
                "-c",
                "cat > /tmp/x; wc -c < /tmp/x",
            ],
            &stdin,
        );
        assert!(out.status.success(), "{transport:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "200000", "{transport:?}");
        // A TTY, under a pseudo-terminal that `script` provides.
        let kubectl = common::tools_bin().join("kubectl");
        let line = format!(
            "{} --kubeconfig {} exec -it shell -c sh -- sh -c 'tty; exit 4'",
            kubectl.display(),
            server.kubeconfig.display()
        );
        let websockets = if transport == Transport::WebSocket {
            "true"
        } else {
            "false"
        };
        let mut script = server
            .command("timeout")
            .args(["120", "script", "-qec", &line, "/dev/null"])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run script");
        // stdin stays open until the command is done, as a terminal's would.
        let _terminal = script.stdin.take();
        let out = script.wait_with_output().unwrap();
        assert!(
            text(&out.stdout).contains("/dev/pts/"),
            "{transport:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(4), "{transport:?}");
        // A container that is not running cannot be entered.
        let out = stream_output(
            &server,
            transport,
            &["exec", "shell", "-c", "done", "--", "true"],
            b"",
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("container not found (\"done\")"),
            "{transport:?}: {}",
            text(&out.stderr)
        );
    }
    // A pod on no node has nowhere to exec.
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {no-such: node}
  containers:
  - {name: c, image: busybox:1, imagePullPolicy: IfNotPresent}
"#,
    );
    let out = server.kubectl(&["exec", "nowhere", "--", "true"]);
    assert!(
        text(&out.stderr).contains("pod nowhere does not have a host assigned"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn kubectl_cp_copies_files_into_and_out_of_a_pod() {
    let server = node();
    server.create_ok(SHELL_POD);
    wait_pod(&server, "shell", "a running sh", |p| {
        container_status(p, "sh")["state"]["running"].is_object()
    });
    let local = tempfile::tempdir().unwrap();
    let upload = local.path().join("upload");
    std::fs::create_dir_all(upload.join("sub")).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(upload.join("big.bin"), &big).unwrap();
    std::fs::write(upload.join("sub/note.txt"), "hello from the host\n").unwrap();
    for transport in TRANSPORTS {
        let remote = format!("shell:/tmp/{transport:?}");
        let out = kubectl_over(&server, transport, Some(120))
            .args(["cp", "-c", "sh", upload.to_str().unwrap(), &remote])
            .output()
            .unwrap();
        assert!(out.status.success(), "{transport:?}: {}", text(&out.stderr));
        let note = server.kubectl_ok(&[
            "exec",
            "shell",
            "-c",
            "sh",
            "--",
            "cat",
            &format!("/tmp/{transport:?}/sub/note.txt"),
        ]);
        assert_eq!(note, "hello from the host\n");
        let back = local.path().join(format!("back-{transport:?}.bin"));
        let out = kubectl_over(&server, transport, Some(120))
            .args([
                "cp",
                "-c",
                "sh",
                &format!("{remote}/big.bin"),
                back.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{transport:?}: {}", text(&out.stderr));
        assert!(
            std::fs::read(&back).unwrap() == big,
            "{transport:?}: the copy differs"
        );
    }
}

#[test]
fn kubectl_attach_joins_a_running_containers_streams() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: echoer}
spec:
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    stdin: true
    command: [sh, -c, 'while read line; do echo "got $line"; done']
"#,
    );
    wait_pod(&server, "echoer", "a running container", |p| {
        container_status(p, "c")["state"]["running"].is_object()
    });
    for transport in TRANSPORTS {
        use std::io::Write;
        let mut attach = kubectl_over(&server, transport, None)
            .args(["attach", "-i", "echoer"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(attach.stdout.take().unwrap());
        let mut stdin = attach.stdin.take().unwrap();
        let word = format!("{transport:?}");
        // A line sent before the attach takes hold is read by nobody: repeat until one
        // comes back.
        let expected = format!("got {word}");
        let mut seen = None;
        for _ in 0..20 {
            writeln!(stdin, "{word}").unwrap();
            stdin.flush().unwrap();
            seen = wait_line(&lines, Duration::from_secs(3), |l| l == expected);
            if seen.is_some() {
                break;
            }
        }
        let _ = attach.kill();
        let out = attach.wait_with_output().unwrap();
        assert!(
            seen.is_some(),
            "{transport:?}: no echo; {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn kubectl_port_forward_reaches_a_pods_port() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: nginx
    image: nginx:latest
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 80}]
"#,
    );
    wait_pod(&server, "web", "Ready", |p| {
        container_status(p, "nginx")["ready"] == true
    });
    for transport in TRANSPORTS {
        let mut forward = kubectl_over(&server, transport, None)
            .args(["port-forward", "-v=4", "pod/web", ":80"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(forward.stdout.take().unwrap());
        let log = lines_of(forward.stderr.take().unwrap());
        let line = wait_line(&lines, READY, |l| {
            l.starts_with("Forwarding from 127.0.0.1:")
        });
        let Some(line) = line else {
            let _ = forward.kill();
            let _ = forward.wait();
            let log: Vec<String> = log.try_iter().collect();
            panic!(
                "{transport:?}: port-forward never listened: {}",
                log.join("\n")
            );
        };
        let port = line
            .trim_start_matches("Forwarding from 127.0.0.1:")
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        // Two requests: each is a connection of its own through the same session.
        for _ in 0..2 {
            let out = server
                .command("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "20",
                    &format!("http://127.0.0.1:{port}/"),
                ])
                .output()
                .unwrap();
            assert!(
                text(&out.stdout).contains("Welcome to nginx!"),
                "{transport:?}: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        let _ = forward.kill();
        let _ = forward.wait();
        let log: Vec<String> = log.try_iter().collect();
        if transport == Transport::WebSocket {
            assert!(
                log.iter().any(|l| l.contains("Negotiation complete") && l.contains("portforward.k8s.io")),
                "the WebSocket tunnel was not used: {}",
                log.join("\n")
            );
        }
    }
}

/// The first `kubectl top` line for `args` that `accept` takes, waited for: usage shows up
/// after two samples of the kubelet's (10 s apart).
fn top_line(server: &TestServer, args: &[&str], accept: impl Fn(&[&str]) -> bool) -> String {
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(90), || {
        let out = server.kubectl(args);
        last = format!("{}{}", text(&out.stdout), text(&out.stderr));
        out.status.success()
            && last.lines().any(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                accept(&fields)
            })
    });
    assert!(
        ok,
        "kubectl {args:?} never showed the usage wanted:\n{last}"
    );
    last
}

/// `500m` → 500, `2` → 2000: kubectl top's CPU column in millicores.
fn millicores(text: &str) -> u64 {
    match text.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => text.parse::<u64>().map_or(0, |cores| cores * 1000),
    }
}

/// `12Mi` → 12.
fn mebibytes(text: &str) -> u64 {
    text.strip_suffix("Mi")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

#[test]
fn kubectl_top_shows_node_and_pod_usage_from_the_kubelet() {
    let server = node();
    let node_name = server.node.as_ref().unwrap().node_name.clone();
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: burner, labels: {app: burn}}
spec:
  containers:
  - name: spin
    image: busybox:1
    imagePullPolicy: IfNotPresent
    # Holds ~24 MiB in a shell variable, then spins on one core.
    command: [sh, -c, 'x=$(head -c 25165824 /dev/zero | tr "\\0" a); while :; do :; done']
  - name: idle
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
"#,
    );
    wait_pod(&server, "burner", "Running", phase_is("Running"));

    // NAME CPU(cores) MEMORY(bytes): a spinning shell uses a good share of a core.
    top_line(&server, &["top", "pod", "burner", "--no-headers"], |f| {
        f.len() == 3 && f[0] == "burner" && millicores(f[1]) >= 100 && mebibytes(f[2]) >= 20
    });
    let containers = top_line(
        &server,
        &[
            "top",
            "pod",
            "-l",
            "app=burn",
            "--containers",
            "--no-headers",
        ],
        |f| f.len() == 4 && f[1] == "spin" && millicores(f[2]) >= 100,
    );
    assert!(
        containers.lines().any(|l| l.contains("idle")),
        "{containers}"
    );
    // NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)
    top_line(&server, &["top", "node", "--no-headers"], |f| {
        f.len() == 5 && f[0] == node_name && millicores(f[1]) >= 100 && mebibytes(f[3]) > 0
    });

    // The API behind it, as metrics-server serves it.
    let pod = raw_json(
        &server,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burner",
    );
    assert_eq!(pod["kind"], "PodMetrics");
    assert_eq!(pod["metadata"]["labels"]["app"], "burn");
    let names: Vec<&str> = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spin", "idle"]);
    let nodes = raw_json(&server, "/apis/metrics.k8s.io/v1beta1/nodes");
    assert_eq!(nodes["kind"], "NodeMetricsList");
    assert_eq!(nodes["items"][0]["metadata"]["name"], node_name.as_str());

    // A pod that does not exist has no metrics; the API is read-only.
    let missing = server.kubectl(&["top", "pod", "nothing-here"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("not found"),
        "{}",
        text(&missing.stderr)
    );
    let url = format!(
        "{}/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burner",
        server.url
    );
    let (code, _) = server.curl(&["-X", "DELETE", &url]);
    assert_eq!(code, 405);
}

#[test]
fn proxy_subresources_reach_the_kubelet_a_pod_and_a_service() {
    let server = node();
    let node_name = server.node.as_ref().unwrap().node_name.clone();
    let node_proxy = format!("/api/v1/nodes/{node_name}/proxy");

    // The kubelet's own API, through the apiserver's kubelet client certificate.
    assert_eq!(
        server.kubectl_ok(&["get", "--raw", &format!("{node_proxy}/healthz")]),
        "ok"
    );
    let summary = raw_json(&server, &format!("{node_proxy}/stats/summary"));
    assert_eq!(summary["node"]["nodeName"], node_name.as_str());
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let resource = server.kubectl_ok(&["get", "--raw", &format!("{node_proxy}/metrics/resource")]);
    assert!(
        resource.contains("# TYPE node_cpu_usage_seconds_total counter"),
        "{resource}"
    );
    let own = server.kubectl_ok(&["get", "--raw", &format!("{node_proxy}/metrics")]);
    assert!(
        own.contains(&format!("kubelet_node_name{{node=\"{node_name}\"}} 1")),
        "{own}"
    );
    let missing = server.kubectl(&["get", "--raw", &format!("{node_proxy}/no-such-thing")]);
    assert!(!missing.status.success());

    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: nginx
    image: nginx:latest
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 80, name: http}]
    readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
"#,
    );
    wait_pod(&server, "web", "Ready", |p| {
        container_status(p, "nginx")["ready"] == true
    });
    // The pod on its first declared port, and on a port named in the path.
    for path in [
        "/api/v1/namespaces/default/pods/web/proxy/",
        "/api/v1/namespaces/default/pods/web:80/proxy/index.html",
    ] {
        let page = server.kubectl_ok(&["get", "--raw", path]);
        assert!(page.contains("Welcome to nginx!"), "{path}: {page}");
    }
    // An upgrade request goes through too; this pod does not switch protocols, so its plain
    // answer comes back.
    let url = format!("{}/api/v1/namespaces/default/pods/web/proxy/", server.url);
    let (code, page) = server.curl(&[
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        &url,
    ]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Welcome to nginx!"), "{page}");
    // The service: one of its ready endpoints, once the endpoints controller lists the pod.
    let through_service = eventually(READY, || {
        let out = server.kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/web:http/proxy/",
        ]);
        text(&out.stdout).contains("Welcome to nginx!")
    });
    assert!(through_service, "the service proxy never reached the pod");
    // A pod with no IP cannot be proxied to; neither can a name that does not exist.
    let nothing = server.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/nothing/proxy/",
    ]);
    assert!(
        text(&nothing.stderr).contains("NotFound") || text(&nothing.stderr).contains("not found"),
        "{}",
        text(&nothing.stderr)
    );
}

/// `kubectl get --raw PATH`, parsed.
fn raw_json(server: &TestServer, path: &str) -> Value {
    let out = server.kubectl_ok(&["get", "--raw", path]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
}

#[test]
fn a_horizontal_pod_autoscaler_scales_on_cpu_measured_by_the_kubelet() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: burn}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      containers:
      - name: spin
        image: busybox:1
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'while :; do :; done']
        # The limit caps the spin at 200m: 200% of the request.
        resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}
"#,
    );
    server.kubectl_ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu=50%",
        "--min=1",
        "--max=2",
    ]);
    let mut last = Value::Null;
    let scaled = eventually(Duration::from_secs(120), || {
        let Ok(out) = serde_json::from_slice::<Value>(
            &server.kubectl(&["get", "hpa", "burn", "-o", "json"]).stdout,
        ) else {
            return false;
        };
        last = out;
        last["status"]["desiredReplicas"] == 2
            && last["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
                .as_u64()
                .is_some_and(|u| u > 50)
    });
    assert!(
        scaled,
        "the autoscaler never scaled up: {:#}",
        last["status"]
    );
    let replicas = eventually(READY, || {
        server.kubectl_ok(&[
            "get",
            "deployment",
            "burn",
            "-o",
            "jsonpath={.spec.replicas}",
        ]) == "2"
    });
    assert!(replicas, "the deployment was not scaled to 2");
}

#[test]
fn services_route_cluster_ips_and_node_ports_to_ready_endpoints() {
    let server = node();
    server.create_ok(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:latest
        imagePullPolicy: IfNotPresent
        ports: [{containerPort: 80, name: http}]
        readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8081, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
"#,
    );
    let web_ip = server.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let nobody_ip =
        server.kubectl_ok(&["get", "svc", "nobody", "-o", "jsonpath={.spec.clusterIP}"]);
    let ready = eventually(READY, || {
        server.kubectl_ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]) == "2"
    });
    assert!(ready, "the web deployment never became ready");
    // A pod reaches the service by ClusterIP and by name through its environment.
    server.create_ok(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'for i in 1 2 3 4 5 6; do wget -q -O - http://{web_ip}:8080/ | grep -q Welcome && echo reached; done; wget -q -O - http://{nobody_ip}/ 2>&1; echo "nobody: $?"']
"#
    ));
    wait_pod(&server, "client", "Succeeded", phase_is("Succeeded"));
    let logs = server.kubectl_ok(&["logs", "client"]);
    assert_eq!(
        logs.lines().filter(|l| *l == "reached").count(),
        6,
        "{logs}"
    );
    // No endpoints: refused at once, not hung or sent elsewhere.
    assert!(logs.contains("nobody: 1"), "{logs}");
    // The node's cluster DNS answers for services and pods (and nothing else: no forwarding
    // in tests).
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: resolver}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'nslookup web.default.svc.cluster.local; nslookup 10-244-0-9.default.pod.cluster.local; nslookup nothing.default.svc.cluster.local; echo "nothing: $?"']
"#,
    );
    wait_pod(&server, "resolver", "Succeeded", phase_is("Succeeded"));
    let answers = server.kubectl_ok(&["logs", "resolver"]);
    assert!(answers.contains(&format!("Address: {web_ip}")), "{answers}");
    assert!(answers.contains("Address: 10.244.0.9"), "{answers}");
    assert!(answers.contains("NXDOMAIN"), "{answers}");
    assert!(answers.contains("nothing: 1"), "{answers}");
    let dns = server.get_json(&["service", "kube-dns", "-n", "kube-system"]);
    assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");

    // The built-in load balancer gives the node's address, where the service answers.
    let lb = eventually(READY, || {
        server.kubectl_ok(&[
            "get",
            "svc",
            "web-lb",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]) == common::node::NODE_IP
    });
    assert!(lb, "the LoadBalancer Service never got the node's address");
    assert_serves_nginx(&server, &format!("http://{}:8081/", common::node::NODE_IP));

    // The node port answers on the node's address.
    assert_serves_nginx(&server, &format!("http://{}:30080/", common::node::NODE_IP));
}

#[test]
fn an_ingress_routes_by_host_and_path_over_http_and_https() {
    let server = node();
    let dir = server.data_dir.path();
    let (crt, key) = common::self_signed_cert(dir, "web.example");
    server.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        &format!("--cert={}", crt.display()),
        &format!("--key={}", key.display()),
    ]);
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: nginx
    image: nginx:latest
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 80}]
    readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  tls: [{hosts: [web.example], secretName: web-tls}]
  rules:
  - host: web.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
  - host: empty.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: missing, port: {number: 80}}}}
"#,
    );
    wait_pod(&server, "web", "Ready", |p| {
        container_status(p, "nginx")["ready"] == true
    });
    let ip = common::node::NODE_IP;
    let curl = |args: &[&str]| {
        let out = server
            .command("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let http = format!("web.example:80:{ip}");
    let served = eventually(READY, || {
        curl(&["--resolve", &http, "http://web.example/"]).contains("Welcome to nginx!")
    });
    assert!(served, "the ingress never routed web.example");
    let https = format!("web.example:443:{ip}");
    let secure = curl(&[
        "--cacert",
        crt.to_str().unwrap(),
        "--resolve",
        &https,
        "https://web.example/",
    ]);
    assert!(secure.contains("Welcome to nginx!"), "{secure}");
    // No rule for the host: 404; a backend without endpoints: 503.
    let other = format!("other.example:80:{ip}");
    assert!(curl(&["--resolve", &other, "http://other.example/"]).ends_with("404"));
    let empty = format!("empty.example:80:{ip}");
    assert!(curl(&["--resolve", &empty, "http://empty.example/"]).ends_with("503"));
    let status = eventually(READY, || {
        server.kubectl_ok(&[
            "get",
            "ingress",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]) == ip
    });
    assert!(status, "the ingress status never got the node's address");
    let class = server.kubectl_ok(&[
        "get",
        "ingressclass",
        "r8s",
        "-o",
        "jsonpath={.spec.controller}",
    ]);
    assert_eq!(class, "r8s.io/ingress");
}

/// curl from the node's network namespace gets the test nginx page at `url`.
fn assert_serves_nginx(server: &TestServer, url: &str) {
    let out = server
        .command("curl")
        .args(["-sS", "--max-time", "10", url])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Welcome to nginx!"),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
