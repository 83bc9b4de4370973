//! CustomResourceDefinitions with the real kubectl v1.37 (and helm): a CRD applied becomes
//! Established and served, its custom resources are validated, pruned and defaulted against
//! its schema, printed with its columns, scaled through its scale subresource, and deleted
//! with it.

use crate::common;
use common::output_text as text;

use std::process::Command;

use common::{TestServer, tools_bin};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Size
      type: string
      jsonPath: .spec.size
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size:
                type: string
                description: How big the widget is.
                enum: [small, large]
              replicas:
                type: integer
                minimum: 0
                default: 1
          status:
            type: object
            properties:
              replicas:
                type: integer
"#;

fn widget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

/// A server with the widgets CRD applied and established.
fn with_crd() -> TestServer {
    let server = TestServer::start();
    server.apply_crd(CRD, "widgets.example.com");
    server
}

fn apply(server: &TestServer, yaml: &str) -> std::process::Output {
    server.kubectl_input(&["apply", "-f", "-"], yaml)
}

fn apply_ok(server: &TestServer, yaml: &str) -> String {
    let out = apply(server, yaml);
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_established_crd_is_listed_by_api_resources_with_its_short_name() {
    let server = with_crd();
    let out = server.kubectl_ok(&["api-resources", "--api-group=example.com"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("widgets"))
        .unwrap_or_else(|| panic!("{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words, ["widgets", "wd", "example.com/v1", "true", "Widget"]);
}

#[test]
fn get_by_short_name_prints_the_printer_columns() {
    let server = with_crd();
    apply_ok(&server, &widget("w1", "  size: large\n  replicas: 3\n"));
    let out = server.kubectl_ok(&["get", "wd"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "REPLICAS", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["w1", "large", "3"]);
}

#[test]
fn a_custom_resource_violating_the_schema_is_refused_naming_the_field() {
    let server = with_crd();
    let out = apply(&server, &widget("bad", "  size: large\n  replicas: many\n"));
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains(r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#),
        "{said}"
    );
    let out = apply(&server, &widget("huge", "  size: huge\n"));
    assert!(
        text(&out).contains(r#"spec.size: Unsupported value: "huge""#),
        "{}",
        text(&out)
    );
}

#[test]
fn unknown_fields_are_pruned_with_a_warning_under_warn_validation() {
    let server = with_crd();
    let out = server.kubectl_input(
        &["apply", "--validate=warn", "-f", "-"],
        &widget("w1", "  size: small\n  colour: red\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let warned = text(&out);
    assert!(
        warned.contains(r#"unknown field "spec.colour""#),
        "{warned}"
    );
    let spec = server.kubectl_ok(&["get", "widget", "w1", "-o", "jsonpath={.spec}"]);
    assert!(!spec.contains("colour"), "{spec}");
    // Defaulted from the schema.
    assert!(spec.contains(r#""replicas":1"#), "{spec}");
}

#[test]
fn unknown_fields_are_refused_under_strict_validation() {
    let server = with_crd();
    let out = server.kubectl_input(
        &["apply", "--validate=strict", "-f", "-"],
        &widget("w1", "  size: small\n  colour: red\n"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(r#"unknown field "spec.colour""#),
        "{}",
        text(&out)
    );
}

#[test]
fn explain_shows_the_crd_schema() {
    let server = with_crd();
    let out = server.kubectl_ok(&["explain", "widget.spec"]);
    assert!(out.contains("How big the widget is."), "{out}");
    assert!(out.contains("replicas"), "{out}");
}

#[test]
fn the_status_subresource_ignores_spec_changes() {
    let server = with_crd();
    apply_ok(&server, &widget("w1", "  size: small\n"));
    server.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":"large"},"status":{"replicas":2}}"#,
    ]);
    let got = server.kubectl_ok(&[
        "get",
        "widget",
        "w1",
        "-o",
        "jsonpath={.spec.size} {.status.replicas} {.metadata.generation}",
    ]);
    assert_eq!(got, "small 2 1");
    server.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":"large"}}"#,
    ]);
    let generation = server.kubectl_ok(&[
        "get",
        "widget",
        "w1",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(generation, "2");
}

#[test]
fn kubectl_scale_goes_through_the_scale_subresource() {
    let server = with_crd();
    apply_ok(&server, &widget("w1", "  size: small\n"));
    server.kubectl_ok(&["scale", "widget/w1", "--replicas=4"]);
    let replicas = server.kubectl_ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "4");
}

#[test]
fn strategic_merge_patch_of_a_custom_resource_is_unsupported() {
    let server = with_crd();
    apply_ok(&server, &widget("w1", "  size: small\n"));
    let out = server.kubectl(&[
        "patch",
        "widget",
        "w1",
        "--type=strategic",
        "-p",
        r#"{"spec":{"size":"large"}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("UnsupportedMediaType") || text(&out).contains("unknown format"),
        "{}",
        text(&out)
    );
}

#[test]
fn server_side_apply_creates_and_updates_a_custom_resource() {
    let server = with_crd();
    let yaml = widget("w1", "  size: small\n");
    let out = server.kubectl_input(&["apply", "--server-side", "-f", "-"], &yaml);
    assert!(out.status.success(), "{}", text(&out));
    let out = server.kubectl_input(
        &["apply", "--server-side", "-f", "-"],
        &widget("w1", "  size: large\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let size = server.kubectl_ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.size}"]);
    assert_eq!(size, "large");
}

#[test]
fn deleting_the_crd_removes_its_instances_and_its_resource() {
    let server = with_crd();
    apply_ok(&server, &widget("w1", "  size: small\n"));
    server.kubectl_ok(&["delete", "crd", "widgets.example.com", "--timeout=60s"]);
    // A fresh discovery cache, as the earlier commands cached the widgets resource on disk.
    let cache = tempfile::tempdir().unwrap();
    let out = server.kubectl(&[
        "get",
        "widgets",
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the server doesn't have a resource type \"widgets\""),
        "{}",
        text(&out)
    );
    // Recreated, the CRD starts empty: the old instances went with it.
    server.apply_crd(CRD, "widgets.example.com");
    let out = server.kubectl_ok(&["get", "widgets", "-o", "name"]);
    assert_eq!(out.trim(), "");
}

#[test]
fn a_crd_whose_name_is_not_plural_dot_group_is_invalid() {
    let server = TestServer::start();
    let out = server.kubectl_input(
        &["apply", "-f", "-"],
        &CRD.replacen("name: widgets.example.com", "name: gadgets.example.com", 1),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#),
        "{}",
        text(&out)
    );
}

#[test]
fn a_helm_chart_with_a_crd_in_crds_installs() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("widgets");
    std::fs::create_dir_all(chart.join("crds")).unwrap();
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: widgets\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(chart.join("crds/widgets.yaml"), CRD).unwrap();
    std::fs::write(
        chart.join("templates/widget.yaml"),
        widget("from-helm", "  size: large\n"),
    )
    .unwrap();
    let out = Command::new(tools_bin().join("helm"))
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args([
            "install",
            "demo",
            chart.to_str().unwrap(),
            "--wait",
            "--timeout",
            "60s",
        ])
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm install: {}", text(&out));
    let size = server.kubectl_ok(&["get", "widget", "from-helm", "-o", "jsonpath={.spec.size}"]);
    assert_eq!(size, "large");
}

#[test]
fn deleting_a_namespace_deletes_the_custom_resources_in_it() {
    let server = with_crd();
    server.kubectl_ok(&["create", "namespace", "doomed"]);
    let yaml = widget("w1", "  size: small\n").replace("namespace: default", "namespace: doomed");
    apply_ok(&server, &yaml);
    apply_ok(&server, &widget("kept", "  size: large\n"));
    server.kubectl_ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let left = server.kubectl_ok(&["get", "widgets", "-A", "-o", "name"]);
    assert_eq!(left.trim(), "widget.example.com/kept", "{left}");
}
