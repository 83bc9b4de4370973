//! Nodes join with a bootstrap token, as the tutorial's `kubeadm join`: `r8s token create
//! --print-join-command` on the server, `r8s agent --server … --token … --ca-cert-hash …` on the
//! node, which gets its client certificate through a CSR, registers, gets a serving certificate
//! for its kubelet API, and runs pods. Each node is a network namespace on a test switch.

use crate::common;

use std::time::Duration;

use common::node::{JoinedAgent, NodeNet, Switch};
use common::{TestServer, eventually};
use serde_json::Value;

const SERVER_IP: &str = "10.200.0.1";

fn join_command(server: &TestServer) -> Vec<String> {
    let out = server
        .command(common::R8S)
        .args([
            "token",
            "create",
            "--print-join-command",
            "--server",
            &server.url,
        ])
        .arg("--data-dir")
        .arg(server.data_dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    assert_eq!(words[..2], ["r8s", "agent"], "{text}");
    assert!(words.contains(&"--ca-cert-hash".to_owned()), "{text}");
    words[2..].to_vec()
}

fn node_ready(server: &TestServer, name: &str) -> bool {
    let out = server.kubectl(&["get", "node", name, "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|n| {
        n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Runs `r8s agent` that must fail, and returns what it said.
fn failed_join(switch: &Switch, ip: &str, join: &[&str]) -> String {
    let net = NodeNet::on_switch(switch, ip);
    let dir = tempfile::tempdir().unwrap();
    let out = JoinedAgent::command(&net, dir.path(), join)
        .output()
        .unwrap();
    net.teardown(dir.path());
    assert!(!out.status.success(), "the join succeeded: {join:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_node_joins_with_a_token_and_runs_pods() {
    let switch = Switch::create();
    let server = TestServer::start_node_on(&switch, SERVER_IP);
    let join = join_command(&server);
    let join: Vec<&str> = join.iter().map(String::as_str).collect();

    // The token is listed as kubeadm lists it.
    let list = server
        .command(common::R8S)
        .args(["token", "list", "--data-dir"])
        .arg(server.data_dir.path())
        .output()
        .unwrap();
    let token = join[join.iter().position(|w| *w == "--token").unwrap() + 1];
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(token), "{listed}");
    assert!(listed.contains("authentication,signing"), "{listed}");

    // A wrong token or a foreign CA is refused before anything runs.
    let mut wrong_token = join.clone();
    let at = wrong_token.iter().position(|w| *w == "--token").unwrap() + 1;
    wrong_token[at] = "abcdef.0123456789abcdef";
    let said = failed_join(&switch, "10.200.0.3", &wrong_token);
    assert!(
        said.contains("Unauthorized") || said.contains("401"),
        "{said}"
    );
    let mut wrong_ca = join.clone();
    let at = wrong_ca
        .iter()
        .position(|w| *w == "--ca-cert-hash")
        .unwrap()
        + 1;
    let foreign = format!("sha256:{}", "0".repeat(64));
    wrong_ca[at] = &foreign;
    let said = failed_join(&switch, "10.200.0.3", &wrong_ca);
    assert!(said.contains("did not present a CA with hash"), "{said}");

    let agent = JoinedAgent::start(&switch, "10.200.0.2", &join);
    let name = agent.node_name().to_owned();
    let ready = eventually(Duration::from_secs(90), || node_ready(&server, &name));
    assert!(ready, "the joined node never became Ready");

    // Its certificates came through CSRs, approved and signed by the controllers.
    let csrs = server.get_json(&["csr"]);
    let signers: Vec<(&str, &str)> = csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["spec"]["signerName"].as_str().unwrap(),
                c["spec"]["username"].as_str().unwrap(),
            )
        })
        .collect();
    let node_user = format!("system:node:{name}");
    let bootstrap_user = format!("system:bootstrap:{}", &token[..6]);
    assert!(
        signers.contains(&(
            "kubernetes.io/kube-apiserver-client-kubelet",
            bootstrap_user.as_str()
        )),
        "{signers:?}"
    );
    assert!(
        signers.contains(&("kubernetes.io/kubelet-serving", node_user.as_str())),
        "{signers:?}"
    );

    // A pod on the joined node runs, and its logs come through that node's kubelet API.
    server.create_ok(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: there}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {name}}}
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo hello from $(hostname)']
"#
    ));
    let done = eventually(Duration::from_secs(90), || {
        server.kubectl_ok(&["get", "pod", "there", "-o", "jsonpath={.status.phase}"]) == "Succeeded"
    });
    assert!(done, "the pod on the joined node never finished");
    let pod = server.get_json(&["pod", "there"]);
    assert_eq!(pod["spec"]["nodeName"], name.as_str());
    assert_eq!(pod["status"]["hostIP"], "10.200.0.2");
    assert_eq!(
        server.kubectl_ok(&["logs", "there"]).trim(),
        "hello from there"
    );

    // Pods on different nodes reach each other by pod IP: each node routes the other's pod
    // CIDR via its address.
    let server_node = server.node.as_ref().unwrap().node_name.clone();
    server.create_ok(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {server_node}}}
  containers:
  - name: nginx
    image: nginx:latest
    imagePullPolicy: IfNotPresent
    readinessProbe: {{tcpSocket: {{port: 80}}, periodSeconds: 1}}
"#
    ));
    let ready = eventually(Duration::from_secs(90), || {
        server.kubectl_ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.status.containerStatuses[0].ready}",
        ]) == "true"
    });
    assert!(ready, "the web pod never became ready");
    let web_ip = server.kubectl_ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    server.kubectl_ok(&[
        "expose",
        "pod",
        "web",
        "--port",
        "80",
        "--selector",
        "run=web",
    ]);
    server.kubectl_ok(&["label", "pod", "web", "run=web"]);
    let service_ip = server.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    server.create_ok(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {name}}}
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    # By pod IP across nodes, then through the service (the joined node's proxy) and by
    # name (its DNS).
    command: [sh, -c, 'wget -q -O - http://{web_ip}/ && sleep 3 && wget -q -O - http://{service_ip}/ | grep -q Welcome && echo via-service && nslookup web.default.svc.cluster.local']
"#
    ));
    let fetched = eventually(Duration::from_secs(90), || {
        server.kubectl_ok(&["get", "pod", "client", "-o", "jsonpath={.status.phase}"])
            == "Succeeded"
    });
    let logs = server.kubectl(&["logs", "client"]);
    assert!(
        fetched,
        "the pod on the joined node could not reach {web_ip}: {}",
        String::from_utf8_lossy(&logs.stdout)
    );
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("Welcome to nginx!"), "{logs}");
    assert!(logs.contains("via-service"), "{logs}");
    assert!(logs.contains(&format!("Address: {service_ip}")), "{logs}");

    // The kubeconfig the agent wrote holds the node's own identity.
    let kubeconfig = agent.data_dir.path().join("agent/kubelet.kubeconfig");
    let as_node = server
        .command(common::tools_bin().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&as_node.stdout), node_user);
    // NodeRestriction: a node may change itself, not another node or pods.
    let as_node = |args: &[&str]| {
        server
            .command(common::tools_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        as_node(&["label", "node", &name, "r8s.test/own=yes"])
            .status
            .success()
    );
    let other = as_node(&["label", "node", &server_node, "r8s.test/hacked=yes"]);
    assert!(!other.status.success());
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(said.contains("is not allowed to modify node"), "{said}");
    let pod = as_node(&["label", "pod", "web", "r8s.test/hacked=yes"]);
    assert!(!pod.status.success());
    assert!(String::from_utf8_lossy(&pod.stderr).contains("forbidden"));
    server.kubectl_ok(&["delete", "pod", "there", "--wait=false"]);
}

/// The serial of the certificate in `path`, and whether it is still valid.
fn cert_state(path: &std::path::Path) -> (String, bool) {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-checkend", "0", "-in"])
        .arg(path)
        .output()
        .unwrap();
    let serial = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (serial, out.status.success())
}

#[test]
fn a_joined_node_rotates_its_certificates_before_they_expire() {
    let switch = Switch::create();
    // Short-lived certificates, so that several rotations and an expiry fit in the test.
    let server =
        TestServer::start_node_on_with(&switch, SERVER_IP, &["--cluster-signing-duration", "1m"]);
    let join = join_command(&server);
    let join: Vec<&str> = join.iter().map(String::as_str).collect();
    let agent = JoinedAgent::start(&switch, "10.200.0.2", &join);
    let name = agent.node_name().to_owned();
    let ready = eventually(Duration::from_secs(90), || node_ready(&server, &name));
    assert!(ready, "the joined node never became Ready");
    server.create_ok(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: talker}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {name}}}
  containers:
  - name: c
    image: busybox:1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo talking; sleep 3600']
"#
    ));

    // The first certificates, kept aside to see them expire.
    let tls = agent.data_dir.path().join("agent/tls");
    let scratch = tempfile::tempdir().unwrap();
    let mut first = Vec::new();
    for name in ["kubelet-client", "kubelet-serving"] {
        let copy = scratch.path().join(format!("{name}.crt"));
        std::fs::copy(tls.join(format!("{name}.crt")), &copy).unwrap();
        first.push((name, cert_state(&copy).0, copy));
    }
    // Both are replaced before they end...
    for (name, serial, _) in &first {
        let rotated = eventually(Duration::from_secs(90), || {
            let (now, valid) = cert_state(&tls.join(format!("{name}.crt")));
            valid && &now != serial
        });
        assert!(rotated, "the {name} certificate was never rotated");
    }
    // ...and once they have expired, the node still heartbeats with its new client
    // certificate, and the API server still reaches its kubelet (new serving certificate).
    for (name, _, copy) in &first {
        let expired = eventually(Duration::from_secs(90), || !cert_state(copy).1);
        assert!(expired, "the first {name} certificate never expired");
    }
    let renewed = |since: &str| {
        let now = server.kubectl_ok(&[
            "get",
            "lease",
            &name,
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.spec.renewTime}",
        ]);
        (now != since).then_some(now)
    };
    let seen = renewed("").expect("the node has a Lease");
    assert!(
        eventually(Duration::from_secs(60), || renewed(&seen).is_some()),
        "the node's Lease was not renewed after its first certificate expired"
    );
    assert!(node_ready(&server, &name));
    let logs = eventually(Duration::from_secs(60), || {
        server
            .kubectl(&["logs", "talker"])
            .stdout
            .starts_with(b"talking")
    });
    assert!(
        logs,
        "the kubelet API did not answer with its rotated certificate"
    );

    // The renewals came from the node itself, approved as self-renewals.
    let csrs = server.get_json(&["csr"]);
    let node_user = format!("system:node:{name}");
    let renewals = csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["spec"]["username"] == node_user.as_str()
                && c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
        })
        .count();
    assert!(renewals >= 1, "{csrs:#}");
}
