//! CRDs with several versions, with the real kubectl: objects are stored in the storage
//! version and served in the version asked for (conversion strategy None), also after the
//! storage version changes.

use crate::common;

use common::TestServer;

fn crd(storage: &str) -> String {
    let version = |name: &str| {
        format!(
            "  - name: {name}\n    served: true\n    storage: {}\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n              size: {{ type: string }}\n",
            name == storage
        )
    };
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gadgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {{ plural: gadgets, singular: gadget, kind: Gadget }}\n  versions:\n{}{}",
        version("v1"),
        version("v1beta1")
    )
}

fn apply_ok(server: &TestServer, yaml: &str) {
    let out = server.kubectl_input(&["apply", "-f", "-"], yaml);
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn with_crd(storage: &str) -> TestServer {
    let server = TestServer::start();
    server.apply_crd(&crd(storage), "gadgets.example.com");
    server
}

fn gadget(version: &str, name: &str) -> String {
    format!(
        "apiVersion: example.com/{version}\nkind: Gadget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  size: small\n"
    )
}

fn api_version(server: &TestServer, resource: &str, name: &str) -> String {
    server
        .kubectl_ok(&["get", resource, name, "-o", "jsonpath={.apiVersion}"])
        .trim()
        .to_owned()
}

#[test]
fn each_version_serves_the_same_objects_in_its_own_form() {
    let server = with_crd("v1");
    apply_ok(&server, &gadget("v1beta1", "old-style"));
    apply_ok(&server, &gadget("v1", "new-style"));
    for name in ["old-style", "new-style"] {
        assert_eq!(
            api_version(&server, "gadgets.v1.example.com", name),
            "example.com/v1"
        );
        assert_eq!(
            api_version(&server, "gadgets.v1beta1.example.com", name),
            "example.com/v1beta1"
        );
    }
    let listed = server.get_json(&["gadgets.v1beta1.example.com"]);
    let versions: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["apiVersion"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["example.com/v1beta1", "example.com/v1beta1"]);
    // An update through the other version keeps the object and its data.
    server.kubectl_ok(&[
        "label",
        "gadgets.v1beta1.example.com",
        "new-style",
        "touched=yes",
    ]);
    let object = server.get_json(&["gadgets.v1.example.com", "new-style"]);
    assert_eq!(object["apiVersion"], "example.com/v1");
    assert_eq!(object["metadata"]["labels"]["touched"], "yes");
    assert_eq!(object["spec"]["size"], "small");
}

#[test]
fn objects_stored_before_the_storage_version_changed_are_converted_on_read() {
    let server = with_crd("v1");
    apply_ok(&server, &gadget("v1", "first"));
    apply_ok(&server, &crd("v1beta1"));
    apply_ok(&server, &gadget("v1", "second"));
    for name in ["first", "second"] {
        assert_eq!(
            api_version(&server, "gadgets.v1beta1.example.com", name),
            "example.com/v1beta1"
        );
        assert_eq!(
            api_version(&server, "gadgets.v1.example.com", name),
            "example.com/v1"
        );
    }
    let crd = server.get_json(&["crd", "gadgets.example.com"]);
    assert_eq!(
        crd["status"]["storedVersions"],
        serde_json::json!(["v1", "v1beta1"])
    );
}
