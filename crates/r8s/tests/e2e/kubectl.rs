//! `r8s server` driven by the real kubectl v1.37, as a user drives it.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestServer, tools_bin};
use serde_json::Value;

/// Every namespace holds the cluster CA's ConfigMap (root-ca-cert-publisher); tests counting
/// their own ConfigMaps leave it out.
const NOT_ROOT_CA: &str = "metadata.name!=kube-root-ca.crt";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn kubectl_version_reports_a_1_37_server() {
    let server = TestServer::start();
    let out = json(&server.kubectl_ok(&["version", "-o", "json"]));
    assert_eq!(out["serverVersion"]["major"], "1");
    assert_eq!(out["serverVersion"]["minor"], "37");
}

#[test]
fn new_cluster_has_the_four_initial_namespaces() {
    let server = TestServer::start();
    let out = json(&server.kubectl_ok(&["get", "namespaces", "-o", "json"]));
    let mut names: Vec<&str> = out["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[test]
fn default_kubernetes_service_has_the_first_service_ip() {
    let server = TestServer::start();
    let svc = json(&server.kubectl_ok(&["get", "service", "kubernetes", "-o", "json"]));
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
}

#[test]
fn api_resources_lists_built_in_kinds_with_short_names() {
    let server = TestServer::start();
    let out = server.kubectl_ok(&["api-resources"]);
    let deployments = out
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_else(|| panic!("no deployments in:\n{out}"));
    for field in ["deploy", "apps/v1", "true", "Deployment"] {
        assert!(
            deployments.split_whitespace().any(|f| f == field),
            "{deployments}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("namespaces ") && l.contains(" ns ")),
        "{out}"
    );
}

fn configmap(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {data}\n")
}

#[test]
fn configmap_create_get_delete_round_trip() {
    let server = TestServer::start();
    server.create_ok(&configmap("settings", "{color: blue}"));
    let cm = json(&server.kubectl_ok(&["get", "configmap", "settings", "-o", "json"]));
    assert_eq!(cm["data"]["color"], "blue");
    assert_eq!(cm["metadata"]["namespace"], "default");
    assert!(
        cm["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(cm["metadata"]["resourceVersion"].as_str().is_some());
    server.kubectl_ok(&["delete", "configmap", "settings"]);
    let out = server.kubectl(&["get", "configmap", "settings"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"configmaps "settings" not found"#),
        "{stderr}"
    );
}

#[test]
fn creating_an_existing_object_is_already_exists() {
    let server = TestServer::start();
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n";
    server.create_ok(namespace);
    let out = server.create(namespace);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AlreadyExists"), "{stderr}");
    assert!(
        stderr.contains(r#"namespaces "team-a" already exists"#),
        "{stderr}"
    );
}

#[test]
fn objects_in_a_missing_namespace_are_refused() {
    let server = TestServer::start();
    let out = server.kubectl_input(
        &["create", "-n", "nowhere", "-f", "-"],
        &configmap("x", "{}"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"namespaces "nowhere" not found"#),
        "{stderr}"
    );
}

#[test]
fn create_from_yaml_and_list_by_label() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  labels:\n    app: web\ndata:\n  a: '1'\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\n  labels:\n    app: db\ndata:\n  a: '2'\n",
    )
    .unwrap();
    server.kubectl_ok(&["create", "-f", file.to_str().unwrap()]);
    let names = server.kubectl_ok(&["get", "configmaps", "-l", "app=web", "-o", "name"]);
    assert_eq!(names.trim(), "configmap/web");
    let names = server.kubectl_ok(&["get", "configmaps", "-l", "app in (web,db)", "-o", "name"]);
    assert_eq!(names.lines().count(), 2, "{names}");
}

#[test]
fn merge_and_json_patches_change_objects() {
    let server = TestServer::start();
    server.create_ok(&configmap("p", "{a: '1'}"));
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "p",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "p",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/a"}]"#,
    ]);
    let cm = json(&server.kubectl_ok(&["get", "configmap", "p", "-o", "json"]));
    assert_eq!(cm["data"], serde_json::json!({ "b": "2" }));
}

#[test]
fn label_and_annotate_update_metadata() {
    let server = TestServer::start();
    server.create_ok(&configmap("l", "{}"));
    server.kubectl_ok(&["label", "configmap", "l", "tier=backend"]);
    server.kubectl_ok(&["annotate", "configmap", "l", "note=hello"]);
    let cm = json(&server.kubectl_ok(&["get", "configmap", "l", "-o", "json"]));
    assert_eq!(cm["metadata"]["labels"]["tier"], "backend");
    assert_eq!(cm["metadata"]["annotations"]["note"], "hello");
}

#[test]
fn get_watch_streams_new_objects() {
    let server = TestServer::start();
    let mut watcher = Command::new(tools_bin().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args([
            "get",
            "configmaps",
            "--watch",
            "-o",
            "name",
            "--request-timeout=30s",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(watcher.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The watch has started once the existing object is listed.
    server.create_ok(&configmap("first", "{}"));
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut created_second = false;
    while std::time::Instant::now() < deadline
        && !seen.iter().any(|l: &String| l.ends_with("/second"))
    {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
        if !created_second && seen.iter().any(|l| l.ends_with("/first")) {
            server.create_ok(&configmap("second", "{}"));
            created_second = true;
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(
        seen.iter().any(|l| l.ends_with("/second")),
        "watch saw {seen:?}"
    );
}

#[test]
fn objects_survive_a_server_restart() {
    let server = TestServer::start();
    server.create_ok(&configmap("kept", "{k: v}"));
    let dir = server.stop();
    let server = TestServer::start_in(dir);
    let cm = json(&server.kubectl_ok(&["get", "configmap", "kept", "-o", "json"]));
    assert_eq!(cm["data"]["k"], "v");
}

#[test]
fn requests_without_a_client_certificate_are_unauthorized() {
    let server = TestServer::start();
    let ca = server.data_dir.path().join("server/tls/ca.crt");
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg(format!("{}/api/v1/namespaces", server.url))
        .output()
        .unwrap();
    let status = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 401);
    // Health stays public.
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg(format!("{}/readyz", server.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}

#[test]
fn malformed_bodies_are_bad_requests_and_change_nothing() {
    let server = TestServer::start();
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    for body in [
        "{not json",
        "[1,2,3]",
        "{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"x\"}}",
    ] {
        let (code, text) = server.curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &url,
        ]);
        assert_eq!(code, 400, "{body}: {text}");
        let status = json(&text);
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str()),
            (Some("Status"), Some("BadRequest"))
        );
    }
    let list = json(&server.kubectl_ok(&[
        "get",
        "configmaps",
        "-o",
        "json",
        "--field-selector",
        NOT_ROOT_CA,
    ]));
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[test]
fn oversized_bodies_are_refused_with_413() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    let payload = "x".repeat(4 * 1024 * 1024);
    std::fs::write(
        &big,
        format!(r#"{{"metadata":{{"name":"big"}},"data":{{"a":"{payload}"}}}}"#),
    )
    .unwrap();
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let (code, text) = server.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", big.display()),
        &url,
    ]);
    assert_eq!(code, 413, "{text}");
    assert_eq!(json(&text)["reason"], "RequestEntityTooLarge");
}

#[test]
fn invalid_names_are_unprocessable() {
    let server = TestServer::start();
    let out = server.create(&configmap("Bad_Name", "{}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is invalid"), "{stderr}");
    assert!(stderr.contains("RFC 1123"), "{stderr}");
}

#[test]
fn stale_updates_conflict() {
    let server = TestServer::start();
    server.create_ok(&configmap("c", "{a: '1'}"));
    let mut cm = json(&server.kubectl_ok(&["get", "configmap", "c", "-o", "json"]));
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "c",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    cm["data"]["a"] = "3".into();
    let url = format!("{}/api/v1/namespaces/default/configmaps/c", server.url);
    let (code, text) = server.curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &cm.to_string(),
        &url,
    ]);
    assert_eq!(code, 409, "{text}");
    assert_eq!(json(&text)["reason"], "Conflict");
}

#[test]
fn paged_lists_return_every_object_once() {
    let server = TestServer::start();
    for i in 0..25 {
        server.create_ok(&configmap(&format!("page-{i:02}"), "{}"));
    }
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let mut url = format!(
            "{}/api/v1/namespaces/default/configmaps?limit=10&fieldSelector={}",
            server.url,
            NOT_ROOT_CA.replace('!', "%21").replace('=', "%3D")
        );
        if !token.is_empty() {
            url.push_str(&format!("&continue={token}"));
        }
        let (code, text) = server.curl(&[&url]);
        assert_eq!(code, 200, "{text}");
        let list = json(&text);
        for item in list["items"].as_array().unwrap() {
            names.push(item["metadata"]["name"].as_str().unwrap().to_owned());
        }
        match list["metadata"]["continue"].as_str() {
            Some(next) => {
                token = next
                    .replace('=', "%3D")
                    .replace('+', "%2B")
                    .replace('/', "%2F")
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("page-{i:02}")).collect();
    assert_eq!(names, expected);
    // kubectl pages the same way with --chunk-size.
    let out = server.kubectl_ok(&[
        "get",
        "configmaps",
        "--chunk-size=7",
        "-o",
        "name",
        "--field-selector",
        NOT_ROOT_CA,
    ]);
    assert_eq!(out.lines().count(), 25);
}

#[test]
fn deleting_a_namespace_deletes_everything_in_it() {
    let server = TestServer::start();
    server.create_ok("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n");
    let out = server.kubectl_input(
        &["create", "-n", "doomed", "-f", "-"],
        &configmap("inside", "{a: b}"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = json(&server.kubectl_ok(&["get", "namespace", "doomed", "-o", "json"]));
    assert_eq!(ns["spec"]["finalizers"], serde_json::json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    // kubectl delete waits until the namespace is gone.
    server.kubectl_ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let out = server.kubectl(&["get", "namespace", "doomed"]);
    assert!(!out.status.success(), "the namespace is gone");
    let (code, _) = server.curl(&[&format!(
        "{}/api/v1/namespaces/doomed/configmaps/inside",
        server.url
    )]);
    assert_eq!(code, 404, "its configmap is gone too");
}

#[test]
fn a_terminating_namespace_refuses_new_objects() {
    let server = TestServer::start();
    server.create_ok("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: closing\n  finalizers: [example.com/hold]\n");
    server.kubectl_ok(&["delete", "namespace", "closing", "--wait=false"]);
    let out = server.kubectl_input(
        &["create", "-n", "closing", "-f", "-"],
        &configmap("late", "{}"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("being terminated"), "{stderr}");
    // Releasing the other finalizer lets the namespace go.
    server.kubectl_ok(&[
        "patch",
        "namespace",
        "closing",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    server.kubectl_ok(&["wait", "--for=delete", "namespace/closing", "--timeout=60s"]);
}

fn service(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec: {spec}\n")
}

#[test]
fn services_get_a_cluster_ip_from_the_service_range() {
    let server = TestServer::start();
    server.create_ok(&service(
        "web",
        "{selector: {app: web}, ports: [{port: 80}]}",
    ));
    let svc = json(&server.kubectl_ok(&["get", "service", "web", "-o", "json"]));
    let ip: std::net::Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(ip.octets()[0], 10);
    assert!(
        (96..112).contains(&ip.octets()[1]),
        "{ip} is in 10.96.0.0/12"
    );
    assert_eq!(svc["spec"]["clusterIPs"][0], svc["spec"]["clusterIP"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    // The address is recorded as an IPAddress object, as upstream does.
    let address = json(&server.kubectl_ok(&["get", "ipaddress", &ip.to_string(), "-o", "json"]));
    assert_eq!(address["spec"]["parentRef"]["name"], "web");
}

#[test]
fn a_requested_cluster_ip_is_honoured_once() {
    let server = TestServer::start();
    server.create_ok(&service(
        "first",
        "{clusterIP: 10.96.0.50, ports: [{port: 80}]}",
    ));
    let out = server.create(&service(
        "second",
        "{clusterIP: 10.96.0.50, ports: [{port: 80}]}",
    ));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already allocated"), "{stderr}");
    let out = server.create(&service(
        "outside",
        "{clusterIP: 192.168.1.1, ports: [{port: 80}]}",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not in the valid range"), "{stderr}");
    // Deleting the first frees its address.
    server.kubectl_ok(&["delete", "service", "first"]);
    server.create_ok(&service(
        "second",
        "{clusterIP: 10.96.0.50, ports: [{port: 80}]}",
    ));
}

#[test]
fn node_port_services_get_ports_from_the_range() {
    let server = TestServer::start();
    server.create_ok(&service("np", "{type: NodePort, ports: [{port: 80, name: http}, {port: 443, name: https, nodePort: 30443}]}"));
    let svc = json(&server.kubectl_ok(&["get", "service", "np", "-o", "json"]));
    let first = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&first), "{first}");
    assert_eq!(svc["spec"]["ports"][1]["nodePort"], 30443);
    let out = server.create(&service(
        "clash",
        "{type: NodePort, ports: [{port: 80, nodePort: 30443}]}",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.ports[0].nodePort") && stderr.contains("already allocated"),
        "{stderr}"
    );
    // Changing the type back to ClusterIP releases the ports.
    server.kubectl_ok(&["patch", "service", "np", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/type","value":"ClusterIP"},{"op":"remove","path":"/spec/ports/0/nodePort"},{"op":"remove","path":"/spec/ports/1/nodePort"}]"#]);
    server.create_ok(&service(
        "clash",
        "{type: NodePort, ports: [{port: 80, nodePort: 30443}]}",
    ));
}

#[test]
fn the_cluster_ip_of_a_service_cannot_change() {
    let server = TestServer::start();
    server.create_ok(&service(
        "fixed",
        "{clusterIP: 10.96.0.60, ports: [{port: 80}]}",
    ));
    let out = server.kubectl(&[
        "patch",
        "service",
        "fixed",
        "--type=merge",
        "-p",
        r#"{"spec":{"clusterIP":"10.96.0.61"}}"#,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("may not change once set"), "{stderr}");
}

#[test]
fn a_watch_resumes_from_a_resource_version_and_follows_selectors() {
    let server = TestServer::start();
    let base = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let (_, list) = server.curl(&[&base]);
    let rv = json(&list)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    server.create_ok(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: moving\n  labels: {app: blue}\n",
    );
    server.create_ok(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  labels: {app: green}\n",
    );
    server.kubectl_ok(&["label", "configmap", "moving", "app=green", "--overwrite"]);
    let url =
        format!("{base}?watch=true&resourceVersion={rv}&labelSelector=app%3Dblue&timeoutSeconds=2");
    let (code, body) = server.curl(&[&url]);
    assert_eq!(code, 200, "{body}");
    let events: Vec<(String, String)> = body
        .lines()
        .map(|l| {
            let e = json(l);
            (
                e["type"].as_str().unwrap().to_owned(),
                e["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Leaving the selector is a DELETED for this watcher; "other" never matched.
    assert_eq!(
        events,
        [
            ("ADDED".into(), "moving".into()),
            ("DELETED".into(), "moving".into())
        ]
    );
}

#[test]
fn a_list_at_resource_version_zero_is_served_and_consistent_with_the_store() {
    let server = TestServer::start();
    server.create_ok(&configmap("cached", "{a: b}"));
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?resourceVersion=0&fieldSelector={}",
        server.url,
        NOT_ROOT_CA.replace('!', "%21").replace('=', "%3D")
    );
    // The cache fills on first use and follows the store from then on.
    let (_, first) = server.curl(&[&url]);
    assert_eq!(json(&first)["items"][0]["metadata"]["name"], "cached");
    server.create_ok(&configmap("later", "{}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = server.curl(&[&url]);
        if json(&body)["items"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cache never saw the second object"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn typed_create_commands_work() {
    // kubectl sends these bodies as Kubernetes protobuf.
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "typed"]);
    server.kubectl_ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        "typed",
        "--from-literal=k=v",
    ]);
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "typed",
        "--from-literal=password=hunter2",
    ]);
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "typed",
        "--image=nginx",
        "--replicas=3",
    ]);
    server.kubectl_ok(&[
        "create",
        "service",
        "nodeport",
        "np",
        "-n",
        "typed",
        "--tcp=80:8080",
    ]);
    let cm = json(&server.kubectl_ok(&["get", "configmap", "c", "-n", "typed", "-o", "json"]));
    assert_eq!(cm["data"]["k"], "v");
    let secret = json(&server.kubectl_ok(&["get", "secret", "s", "-n", "typed", "-o", "json"]));
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    let deploy =
        json(&server.kubectl_ok(&["get", "deployment", "web", "-n", "typed", "-o", "json"]));
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    let svc = json(&server.kubectl_ok(&["get", "service", "np", "-n", "typed", "-o", "json"]));
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(svc["spec"]["ports"][0]["nodePort"].as_u64().is_some());
}

#[test]
fn explain_reads_the_served_openapi() {
    let server = TestServer::start();
    let out = server.kubectl_ok(&["explain", "deployment.spec.template.spec.containers"]);
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    let out = server.kubectl_ok(&["explain", "configmap.data"]);
    assert!(out.contains("map[string]string"), "{out}");
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1
        ports: [{containerPort: 80}]
      - name: sidecar
        image: busybox
";

#[test]
fn apply_creates_then_updates_and_prunes_removed_fields() {
    let server = TestServer::start();
    let out = server.kubectl_input(
        &["apply", "-f", "-"],
        &configmap("applied", "{a: '1', b: '2'}"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.kubectl_input(&["apply", "-f", "-"], &configmap("applied", "{a: '3'}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = json(&server.kubectl_ok(&["get", "configmap", "applied", "-o", "json"]));
    assert_eq!(cm["data"], serde_json::json!({ "a": "3" }));
}

#[test]
fn apply_merges_containers_by_name() {
    let server = TestServer::start();
    let out = server.kubectl_input(&["apply", "-f", "-"], DEPLOYMENT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Someone else adds an env var to the sidecar; our apply changes nginx's image only.
    server.kubectl_ok(&[
        "set",
        "env",
        "deployment/web",
        "-c",
        "sidecar",
        "MODE=debug",
    ]);
    let changed = DEPLOYMENT.replace("nginx:1", "nginx:2");
    let out = server.kubectl_input(&["apply", "-f", "-"], &changed);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = json(&server.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    let containers = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:2");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
    assert_eq!(containers[1]["env"][0]["name"], "MODE");
}

#[test]
fn patch_defaults_to_strategic_merge() {
    let server = TestServer::start();
    server.kubectl_input(&["apply", "-f", "-"], DEPLOYMENT);
    server.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:2"}]}}}}"#,
    ]);
    let d = json(&server.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        containers.len(),
        2,
        "the patch merged into the list, not replaced it"
    );
    assert_eq!(containers[1]["image"], "busybox:2");
}

#[test]
fn diff_shows_a_change_and_applies_nothing() {
    let server = TestServer::start();
    server.kubectl_input(&["apply", "-f", "-"], &configmap("d", "{a: '1'}"));
    let out = server.kubectl_input(&["diff", "-f", "-"], &configmap("d", "{a: '2'}"));
    // kubectl diff exits 1 when there are differences.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("-  a: \"1\"") && diff.contains("+  a: \"2\""),
        "{diff}"
    );
    let cm = json(&server.kubectl_ok(&["get", "configmap", "d", "-o", "json"]));
    assert_eq!(cm["data"]["a"], "1");
}

#[test]
fn edit_changes_an_object_through_an_editor() {
    let server = TestServer::start();
    server.create_ok(&configmap("e", "{color: blue}"));
    let out = Command::new(tools_bin().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["edit", "configmap", "e"])
        .env("KUBE_EDITOR", "sed -i s/blue/green/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = json(&server.kubectl_ok(&["get", "configmap", "e", "-o", "json"]));
    assert_eq!(cm["data"]["color"], "green");
}

#[test]
fn unknown_fields_are_refused_under_strict_validation() {
    let server = TestServer::start();
    let out =
        server.create("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ncolour: blue\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"strict decoding error: unknown field "colour""#),
        "{stderr}"
    );
    assert!(
        !server
            .kubectl(&["get", "configmap", "typo"])
            .status
            .success(),
        "nothing was created"
    );
}

#[test]
fn unknown_fields_are_dropped_with_a_warning_by_default() {
    let server = TestServer::start();
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let body = r#"{"metadata":{"name":"w"},"data":{"a":"b"},"colour":"blue"}"#;
    let (code, text) = server.curl(&[
        "-D",
        "/dev/stderr",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        &url,
    ]);
    assert_eq!(code, 201, "{text}");
    assert!(
        json(&text).get("colour").is_none(),
        "the unknown field is not stored"
    );
    let out = server.kubectl_input(
        &["create", "--validate=warn", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w2\ncolour: blue\n",
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"unknown field "colour""#),
        "kubectl shows the server's warning: {stderr}"
    );
}

#[test]
fn scale_changes_the_desired_replicas() {
    let server = TestServer::start();
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    server.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]);
    let d = json(&server.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 5);
    let url = format!(
        "{}/apis/apps/v1/namespaces/default/deployments/web/scale",
        server.url
    );
    let (code, body) = server.curl(&[&url]);
    assert_eq!(code, 200, "{body}");
    let scale = json(&body);
    assert_eq!(
        (scale["kind"].as_str(), scale["apiVersion"].as_str()),
        (Some("Scale"), Some("autoscaling/v1"))
    );
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");
    // A Scale naming an old resourceVersion conflicts.
    let stale = r#"{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"web","namespace":"default","resourceVersion":"1"},"spec":{"replicas":1}}"#;
    let (code, body) = server.curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        stale,
        &url,
    ]);
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        json(&server.kubectl_ok(&["get", "deployment", "web", "-o", "json"]))["spec"]["replicas"],
        5
    );
}

#[test]
fn describe_finds_events_by_their_involved_object() {
    let server = TestServer::start();
    server.create_ok(&configmap("described", "{a: b}"));
    let uid = server.kubectl_ok(&[
        "get",
        "configmap",
        "described",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    // kubectl describe selects events by the object's kind, name, namespace and uid.
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: described.1\ninvolvedObject: {{kind: ConfigMap, name: described, namespace: default, uid: {uid}}}\nreason: Checked\nmessage: looked at it\ntype: Normal\n"
    );
    server.create_ok(&event);
    let out = server.kubectl_ok(&["describe", "configmap", "described"]);
    assert!(
        out.contains("Checked") && out.contains("looked at it"),
        "{out}"
    );
    let listed = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=described,type=Normal",
        "-o",
        "name",
    ]);
    assert_eq!(listed.trim(), "event/described.1");
}

#[test]
fn configmaps_have_no_generation_and_deployments_count_spec_changes() {
    let server = TestServer::start();
    server.create_ok(&configmap("nogen", "{a: '1'}"));
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "nogen",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    let cm = json(&server.kubectl_ok(&["get", "configmap", "nogen", "-o", "json"]));
    assert!(cm["metadata"].get("generation").is_none(), "{cm}");
    server.kubectl_ok(&["create", "deployment", "gen", "--image=nginx"]);
    server.kubectl_ok(&["set", "image", "deployment/gen", "nginx=nginx:2"]);
    server.kubectl_ok(&["label", "deployment", "gen", "touched=yes"]);
    let d = json(&server.kubectl_ok(&["get", "deployment", "gen", "-o", "json"]));
    assert_eq!(
        d["metadata"]["generation"], 2,
        "a label is not a spec change"
    );
}

#[test]
fn binding_assigns_a_pod_to_a_node_once() {
    let server = TestServer::start();
    server.kubectl_ok(&["run", "p", "--image=nginx"]);
    let url = format!("{}/api/v1/namespaces/default/pods/p/binding", server.url);
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"node-a"}}"#;
    let (code, body) = server.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        binding,
        &url,
    ]);
    assert_eq!(code, 201, "{body}");
    let pod = json(&server.kubectl_ok(&["get", "pod", "p", "-o", "json"]));
    assert_eq!(pod["spec"]["nodeName"], "node-a");
    let scheduled = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned();
    assert_eq!(scheduled.unwrap()["status"], "True");
    let again = binding.replace("node-a", "node-b");
    let (code, body) = server.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &again,
        &url,
    ]);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already assigned"), "{body}");
}
