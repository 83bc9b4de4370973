//! The garbage collector with custom resources, driven by the real kubectl: an object owned by
//! a custom resource lives as long as its owner, and a custom resource owned by a built-in
//! object goes with it, as upstream's collector, which watches what discovery serves.

use crate::common;

use std::time::Duration;

use common::{TestServer, eventually};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.gc.example.com
spec:
  group: gc.example.com
  scope: Namespaced
  names:
    plural: gadgets
    singular: gadget
    kind: Gadget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

/// A server with the gadgets CRD applied and established.
fn with_crd() -> TestServer {
    let server = TestServer::start();
    server.apply_crd(CRD, "gadgets.gc.example.com");
    server
}

fn uid(server: &TestServer, kind: &str, name: &str) -> String {
    server.kubectl_ok(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"])
}

/// `metadata.ownerReferences` naming one owner, as YAML nested under `metadata`.
fn owned_by(api_version: &str, kind: &str, name: &str, uid: &str) -> String {
    format!(
        "  ownerReferences:\n  - apiVersion: {api_version}\n    kind: {kind}\n    name: {name}\n    uid: {uid}\n"
    )
}

fn exists(server: &TestServer, kind: &str, name: &str) -> bool {
    server.kubectl(&["get", kind, name]).status.success()
}

#[test]
fn an_object_owned_by_a_living_custom_resource_is_kept_until_its_owner_goes() {
    let server = with_crd();
    server.create_ok(
        "apiVersion: gc.example.com/v1\nkind: Gadget\nmetadata:\n  name: owner\n  namespace: default\n",
    );
    let owner = uid(&server, "gadget", "owner");
    server.create_ok(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  namespace: default\n{}data:\n  a: b\n",
        owned_by("gc.example.com/v1", "Gadget", "owner", &owner)
    ));
    // Long after the collector has looked at the new dependent.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        exists(&server, "configmap", "dependent"),
        "a dependent of a living custom resource was collected"
    );

    server.kubectl_ok(&["delete", "gadget", "owner"]);
    assert!(
        eventually(Duration::from_secs(30), || !exists(
            &server,
            "configmap",
            "dependent"
        )),
        "the dependent outlived its custom resource owner"
    );
}

#[test]
fn a_custom_resource_owned_by_a_deleted_object_is_collected() {
    let server = with_crd();
    server.kubectl_ok(&["create", "configmap", "owner", "--from-literal=a=b"]);
    let owner = uid(&server, "configmap", "owner");
    server.create_ok(&format!(
        "apiVersion: gc.example.com/v1\nkind: Gadget\nmetadata:\n  name: dependent\n  namespace: default\n{}",
        owned_by("v1", "ConfigMap", "owner", &owner)
    ));
    assert!(exists(&server, "gadget", "dependent"));

    server.kubectl_ok(&["delete", "configmap", "owner"]);
    assert!(
        eventually(Duration::from_secs(30), || !exists(
            &server,
            "gadget",
            "dependent"
        )),
        "the custom resource outlived its owner"
    );
}
