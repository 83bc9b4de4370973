//! The node agent with real containers (containerd + runc + CNI), driven by the real kubectl:
//! pods run, report status as upstream's kubelet does, restart by policy, get their env and
//! volumes, and go away cleanly. Each test runs a one-node `r8s server` in a network namespace
//! of its own and removes everything it made.

mod common;

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
    let available = eventually(READY, || {
        let d = server.get_json(&["deployment", "web"]);
        d["status"]["availableReplicas"] == 2 && d["status"]["updatedReplicas"] == 2
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
