//! Decoding what protoc and kubectl encode, into the JSON Go would write.

use serde_json::json;

use super::{decode_protoc, kubectl_cases, round_trip};
use crate::protobuf::{decode, encode};

#[test]
fn decodes_a_configmap_encoded_by_protoc() {
    let object = decode_protoc(
        "v1",
        "ConfigMap",
        "k8s.io/api/core/v1/generated.proto",
        "protoc/configmap.txtpb",
    );
    assert_eq!(
        object,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "default", "labels": {"app": "web"}},
            "data": {"log-level": "debug", "mode": "fast"},
            "binaryData": {"blob": "AAH/"},
            "immutable": false,
        })
    );
}

#[test]
fn decodes_a_namespace_encoded_by_protoc() {
    let object = decode_protoc(
        "v1",
        "Namespace",
        "k8s.io/api/core/v1/generated.proto",
        "protoc/namespace.txtpb",
    );
    assert_eq!(
        object,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "team-a",
                "uid": "4b1c2e1a-0000-4000-8000-000000000001",
                "resourceVersion": "42",
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "annotations": {"owner": "alice"},
                "finalizers": ["example.com/cleanup"],
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        })
    );
}

#[test]
fn decodes_secret_bytes_as_base64() {
    let object = decode_protoc(
        "v1",
        "Secret",
        "k8s.io/api/core/v1/generated.proto",
        "protoc/secret.txtpb",
    );
    assert_eq!(
        object,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "default"},
            "data": {"password": "aHVudGVyMg==", "key.bin": "AP8Q"},
            "stringData": {"note": "plain"},
            "type": "Opaque",
        })
    );
}

#[test]
fn decodes_a_deployment_encoded_by_protoc() {
    let object = decode_protoc(
        "apps/v1",
        "Deployment",
        "k8s.io/api/apps/v1/generated.proto",
        "protoc/deployment.txtpb",
    );
    assert_eq!(
        object,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "generation": 3,
                "creationTimestamp": "2026-01-02T03:04:05Z",
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "args": ["--port", "8080"],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "limits": {"memory": "128Mi"},
                                "requests": {"cpu": "250m"},
                            },
                        }],
                        // A pointer: zero is a value (stop at once), not "unset".
                        "terminationGracePeriodSeconds": 0,
                    },
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
                },
            },
        })
    );
}

#[test]
fn decodes_int_or_string_target_ports_as_numbers_or_strings() {
    let object = decode_protoc(
        "v1",
        "Service",
        "k8s.io/api/core/v1/generated.proto",
        "protoc/service.txtpb",
    );
    let ports = &object["spec"]["ports"];
    assert_eq!(ports[0]["targetPort"], json!(8080));
    assert_eq!(ports[1]["targetPort"], json!("https"));
    assert_eq!(ports[1]["port"], json!(443));
}

#[test]
fn decodes_what_kubectl_sends_into_the_json_kubectl_would_send() {
    for (name, body, expected) in kubectl_cases() {
        let object = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(object, expected, "{name}");
    }
}

#[test]
fn encodes_the_same_bytes_kubectl_sends() {
    for (name, body, object) in kubectl_cases() {
        let encoded = encode(&object).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(encoded == body, "{name}: our bytes differ from kubectl's");
    }
}

#[test]
fn pointer_fields_keep_zero_and_false() {
    round_trip(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "idle"},
        "spec": {
            "replicas": 0,
            "revisionHistoryLimit": 0,
            "selector": {"matchLabels": {"app": "idle"}},
            "template": {
                "metadata": {"labels": {"app": "idle"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsUser": 0, "runAsNonRoot": false},
                    "containers": [{
                        "name": "c",
                        "image": "busybox",
                        "resources": {},
                        "securityContext": {"allowPrivilegeEscalation": false},
                    }],
                },
            },
            "strategy": {},
        },
        "status": {},
    }));
}

#[test]
fn non_pointer_fields_at_zero_read_as_go_writes_them() {
    // kubectl writes every non-pointer field; Go's JSON drops the omitempty ones at zero and
    // keeps the others (a PodDisruptionBudget's status counts).
    let (_, body, _) = kubectl_cases()
        .into_iter()
        .find(|(name, ..)| name == "pdb")
        .unwrap();
    let object = decode(&body).unwrap();
    assert!(object["metadata"].get("generation").is_none());
    assert!(object["metadata"].get("namespace").is_none());
    assert_eq!(object["status"]["disruptionsAllowed"], json!(0));
}
