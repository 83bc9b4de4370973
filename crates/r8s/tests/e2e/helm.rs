//! The real helm v4 against `r8s server`: a chart of a ConfigMap and a Service through its
//! whole life, with helm 4's default server-side apply and with its client-side apply.

use crate::common;

use std::process::{Command, Output};

use common::{TestServer, tools_bin};

fn helm(server: &TestServer, args: &[&str]) -> Output {
    Command::new(tools_bin().join("helm"))
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("run helm")
}

fn helm_ok(server: &TestServer, args: &[&str]) -> String {
    let out = helm(server, args);
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chart(dir: &std::path::Path) -> String {
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), "color: blue\n").unwrap();
    std::fs::write(
        templates.join("configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  color: {{ .Values.color }}\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}-web\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n",
    )
    .unwrap();
    dir.to_str().unwrap().to_owned()
}

fn color(server: &TestServer) -> String {
    server.kubectl_ok(&[
        "get",
        "configmap",
        "demo-settings",
        "-o",
        "jsonpath={.data.color}",
    ])
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_a_chart() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let chart = chart(dir.path());
    helm_ok(&server, &["install", "demo", &chart, "--wait"]);
    assert_eq!(color(&server), "blue");
    server.kubectl_ok(&["get", "service", "demo-web"]);

    helm_ok(
        &server,
        &["upgrade", "demo", &chart, "--set", "color=green"],
    );
    assert_eq!(color(&server), "green");

    helm_ok(&server, &["rollback", "demo", "1"]);
    assert_eq!(color(&server), "blue");
    let history = helm_ok(&server, &["history", "demo"]);
    assert_eq!(
        history.lines().count(),
        4,
        "header and three revisions:\n{history}"
    );

    helm_ok(&server, &["uninstall", "demo"]);
    assert!(
        !server
            .kubectl(&["get", "configmap", "demo-settings"])
            .status
            .success()
    );
    assert!(
        !server
            .kubectl(&["get", "service", "demo-web"])
            .status
            .success()
    );
    assert!(helm_ok(&server, &["list", "-q"]).trim().is_empty());
}

#[test]
fn helm_applies_server_side_as_its_own_field_manager() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let chart = chart(dir.path());
    helm_ok(&server, &["install", "demo", &chart]);
    let managers = server.kubectl_ok(&[
        "get",
        "configmap",
        "demo-settings",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
    ]);
    assert_eq!(managers.trim(), "helm/Apply");
}

#[test]
fn helm_client_side_apply_still_works() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let chart = chart(dir.path());
    helm_ok(&server, &["install", "demo", &chart, "--server-side=false"]);
    helm_ok(
        &server,
        &[
            "upgrade",
            "demo",
            &chart,
            "--set",
            "color=green",
            "--server-side=false",
        ],
    );
    assert_eq!(color(&server), "green");
}
