//! JSON → protobuf → JSON for the shapes the kubectl corpus does not reach.

use serde_json::json;

use super::{envelope, round_trip};
use crate::protobuf::wire::put_len;
use crate::protobuf::{decode, encode};

#[test]
fn round_trips_a_pod_with_inlined_structs() {
    // Volume sources, probe handlers and key selectors embed Go structs: their fields sit in
    // the parent's JSON object but in a nested message on the wire.
    round_trip(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "default",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "deletionTimestamp": "2026-01-02T03:05:05Z",
            "deletionGracePeriodSeconds": 30,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1",
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "volumes": [
                {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}},
                {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
            ],
            "containers": [{
                "name": "app",
                "image": "app:1",
                "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode", "optional": true}}}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10},
                "readinessProbe": {"tcpSocket": {"port": 8080}},
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app", "readOnly": true}],
            }],
            "securityContext": {"supplementalGroups": [1000, 2000]},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:04:06Z"}],
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0, "image": "app:1", "imageID": "",
                "state": {"running": {"startedAt": "2026-01-02T03:04:06Z"}},
                "lastState": {},
            }],
        },
    }));
}

#[test]
fn round_trips_a_custom_resource_definition_schema() {
    round_trip(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList", "shortNames": ["ct"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": false,
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["cronSpec"],
                            "additionalProperties": false,
                            "properties": {
                                "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                                "replicas": {"type": "integer", "minimum": 1, "maximum": 10.5, "default": 1},
                                "mode": {"type": "string", "enum": ["a", "b"]},
                                "port": {"x-kubernetes-int-or-string": true},
                                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                                "extra": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                            "x-kubernetes-validations": [{"rule": "self.replicas <= 10", "message": "too many"}],
                        },
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                }},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}],
            }],
            "conversion": {"strategy": "None"},
        },
        "status": {"conditions": [{"type": "Established", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z", "reason": "InitialNamesAccepted", "message": "ok"}],
                   "acceptedNames": {"plural": "crontabs", "kind": "CronTab"}, "storedVersions": ["v1"]},
    }));
}

#[test]
fn round_trips_micro_times_and_durations() {
    round_trip(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2026-01-02T03:04:05.123456Z", "leaseTransitions": 0},
    }));
    round_trip(json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "eventTime": "2026-01-02T03:04:05.000001Z",
        "reportingController": "r8s/scheduler",
        "reportingInstance": "r8s-1",
        "action": "Binding",
        "reason": "Scheduled",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        "note": "assigned",
        "type": "Normal",
        "deprecatedFirstTimestamp": "2026-01-02T03:04:05Z",
        // A non-pointer struct: Go's JSON writes it even when empty.
        "deprecatedSource": {},
    }));
}

#[test]
fn round_trips_embedded_json_and_wrapped_slices() {
    round_trip(json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": "web-1",
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1", "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}],
        },
        "data": {"spec": {"template": {"$patch": "replace"}}},
        "revision": 1,
    }));
    round_trip(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {},
        "spec": {"token": "abc", "audiences": ["api"]},
        "status": {"authenticated": true, "user": {"username": "alice", "groups": ["devs"], "extra": {"scopes": ["a", "b"]}}},
    }));
    round_trip(json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"service": {"name": "metrics", "namespace": "kube-system", "port": 443}, "group": "metrics.k8s.io", "version": "v1beta1", "caBundle": "AAEC", "groupPriorityMinimum": 100, "versionPriority": 100},
        "status": {},
    }));
}

#[test]
fn round_trips_lists_and_meta_kinds_in_any_group() {
    round_trip(json!({
        "apiVersion": "v1",
        "kind": "ConfigMapList",
        "metadata": {"resourceVersion": "7", "remainingItemCount": 0},
        "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}, {"metadata": {"name": "b"}}],
    }));
    round_trip(json!({
        "apiVersion": "apps/v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u1"},
    }));
    round_trip(json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": "configmaps \"x\" not found",
        "reason": "NotFound",
        "details": {"name": "x", "kind": "configmaps"},
        "code": 404,
    }));
}

#[test]
fn watch_events_embed_their_object_in_protobuf() {
    let event = json!({
        "apiVersion": "v1",
        "kind": "WatchEvent",
        "type": "ADDED",
        "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}},
    });
    let body = encode(&event).unwrap();
    let embedded = b"k8s\0";
    assert!(
        body[4..].windows(4).any(|w| w == embedded),
        "the object is embedded with its own envelope"
    );
    assert_eq!(decode(&body).unwrap(), event);
}

#[test]
fn unknown_fields_are_ignored() {
    let mut raw = Vec::new();
    put_len(&mut raw, 2, b"\x0a\x01a\x12\x01b");
    // Field 999: a field from a newer Kubernetes.
    put_len(&mut raw, 999, b"future");
    let object = decode(&envelope("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(
        object,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}})
    );
}

#[test]
fn packed_repeated_numbers_are_read() {
    // PodSecurityContext.supplementalGroups (field 4) as one packed record.
    let context = [0x22, 0x03, 0x01, 0x02, 0x03];
    let mut spec = Vec::new();
    put_len(&mut spec, 14, &context);
    let mut raw = Vec::new();
    put_len(&mut raw, 2, &spec);
    let object = decode(&envelope("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        object["spec"]["securityContext"]["supplementalGroups"],
        json!([1, 2, 3])
    );
}
