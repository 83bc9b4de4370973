//! The Node authorizer with the real kubectl: a node's identity (a `system:node:<name>`
//! certificate) reads a Secret, ConfigMap, claim or volume, or gets a ServiceAccount token,
//! only for pods bound to it, and is refused with upstream's reason otherwise. Pods are bound
//! by setting `spec.nodeName`, so no kubelet or container runs.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{TestServer, tools_bin};

const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: { name: n1 }
---
apiVersion: v1
kind: Node
metadata: { name: n2 }
---
apiVersion: v1
kind: Secret
metadata: { name: mine }
stringData: { key: a }
---
apiVersion: v1
kind: Secret
metadata: { name: theirs }
stringData: { key: b }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: settings }
data: { MODE: fast }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: unused }
data: { MODE: slow }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: builder }
---
apiVersion: v1
kind: PersistentVolume
metadata: { name: pv-data }
spec:
  capacity: { storage: 1Gi }
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: { path: /tmp/pv-data }
  claimRef: { namespace: default, name: data }
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: data }
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: pv-data
  resources: { requests: { storage: 1Gi } }
---
apiVersion: v1
kind: Pod
metadata: { name: web }
spec:
  nodeName: n1
  containers:
  - name: app
    image: busybox:1
    envFrom: [{ configMapRef: { name: settings } }]
  volumes:
  - { name: certs, secret: { secretName: mine } }
  - { name: data, persistentVolumeClaim: { claimName: data } }
---
apiVersion: v1
kind: Pod
metadata: { name: db }
spec:
  nodeName: n2
  containers: [{ name: app, image: busybox:1 }]
  volumes: [{ name: certs, secret: { secretName: theirs } }]
"#;

/// A kubeconfig for node `node`, with a `system:node:<node>` client certificate in
/// `system:nodes` signed by the cluster CA.
fn node_kubeconfig(server: &TestServer, dir: &Path, node: &str) -> PathBuf {
    let (crt, key) = server.client_cert(dir, &format!("system:node:{node}"), "system:nodes");
    let ca = server.data_dir.path().join("server/tls/ca.crt");
    let config = dir.join(format!("{node}.kubeconfig"));
    // JSON is YAML, and spares quoting the certificate paths (the user's colons are in them).
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "r8s",
            "cluster": { "server": server.url, "certificate-authority": ca },
        }],
        "users": [{ "name": node, "user": { "client-certificate": crt, "client-key": key } }],
        "contexts": [{ "name": node, "context": { "cluster": "r8s", "user": node } }],
        "current-context": node,
    });
    std::fs::write(&config, kubeconfig.to_string()).unwrap();
    config
}

fn kubectl_as(config: &Path, args: &[&str]) -> Output {
    Command::new(tools_bin().join("kubectl"))
        .arg("--kubeconfig")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command until `done` holds: the graph follows pods through the watch cache.
fn until(mut run: impl FnMut() -> Output, done: impl Fn(&Output) -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run();
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Upstream's 403 for node `n1` denied `verb` on `resource` in `default` by the Node authorizer.
fn refused(object: &str, verb: &str, resource: &str, reason: &str) -> String {
    format!(
        "{object} is forbidden: User \"system:node:n1\" cannot {verb} resource \"{resource}\" \
         in API group \"\" in the namespace \"default\": {reason}"
    )
}

const NO_RELATIONSHIP: &str = "no relationship found between node 'n1' and this object";

#[test]
fn a_node_reads_only_what_pods_bound_to_it_use() {
    let server = TestServer::start();
    server.create_ok(OBJECTS);
    let scratch = tempfile::tempdir().unwrap();
    let n1 = node_kubeconfig(&server, scratch.path(), "n1");
    let n1 = |args: &[&str]| kubectl_as(&n1, args);

    // What web (on n1) uses: its secret volume, its envFrom configmap, its claim and the
    // volume bound to it, a token for its service account.
    let out = until(|| n1(&["get", "secret", "mine"]), |o| o.status.success());
    assert!(out.status.success(), "{}", text(&out));
    for object in [
        ["configmap", "settings"],
        ["pvc", "data"],
        ["pv", "pv-data"],
    ] {
        let out = n1(&["get", object[0], object[1]]);
        assert!(out.status.success(), "{object:?}: {}", text(&out));
    }
    let token = n1(&["create", "token", "default"]);
    assert!(token.status.success(), "{}", text(&token));
    // The kubelet's per-object watch: a list selecting exactly one related object.
    let one = n1(&[
        "get",
        "configmaps",
        "--field-selector",
        "metadata.name=settings",
        "-o",
        "name",
    ]);
    assert_eq!(text(&one).trim(), "configmap/settings");

    // What only db (on n2) uses, or nothing uses.
    let out = n1(&["get", "secret", "theirs"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&refused(
            r#"secrets "theirs""#,
            "get",
            "secrets",
            NO_RELATIONSHIP
        )),
        "{}",
        text(&out)
    );
    let out = n1(&["get", "configmap", "unused"]);
    assert!(
        text(&out).contains(&refused(
            r#"configmaps "unused""#,
            "get",
            "configmaps",
            NO_RELATIONSHIP
        )),
        "{}",
        text(&out)
    );
    let out = n1(&["create", "token", "builder"]);
    assert!(
        text(&out).contains(&refused(
            r#"serviceaccounts "builder""#,
            "create",
            "serviceaccounts/token",
            NO_RELATIONSHIP
        )),
        "{}",
        text(&out)
    );
    // Listing every configmap names no object the graph could relate.
    let out = n1(&["get", "configmaps"]);
    assert!(
        text(&out).contains(&refused(
            "configmaps",
            "list",
            "configmaps",
            "No Object name found"
        )),
        "{}",
        text(&out)
    );

    // Once web is gone, n1 has no pod using its objects.
    server.kubectl_ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    let out = until(|| n1(&["get", "secret", "mine"]), |o| !o.status.success());
    assert!(
        text(&out).contains(&refused(
            r#"secrets "mine""#,
            "get",
            "secrets",
            NO_RELATIONSHIP
        )),
        "{}",
        text(&out)
    );
    let out = n1(&["get", "pv", "pv-data"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(NO_RELATIONSHIP), "{}", text(&out));
}
