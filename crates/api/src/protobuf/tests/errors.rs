//! Bad input gives an error that says what and where, never a panic.

use serde_json::json;

use super::{envelope, kubectl_cases};
use crate::protobuf::wire::put_len;
use crate::protobuf::{ProtobufError, decode, encode};

#[test]
fn a_body_without_the_magic_is_rejected() {
    let error = decode(b"{\"kind\":\"ConfigMap\"}").unwrap_err();
    assert!(matches!(error, ProtobufError::MissingMagic), "{error}");
    assert!(error.to_string().contains("k8s\\0"), "{error}");
}

#[test]
fn a_truncated_message_names_where_it_broke() {
    let (_, body, _) = kubectl_cases()
        .into_iter()
        .find(|(name, ..)| name == "deployment")
        .unwrap();
    let error = decode(&body[..body.len() - 30]).unwrap_err();
    assert!(matches!(error, ProtobufError::Malformed { .. }), "{error}");
    assert!(error.to_string().contains("runtime.Unknown"), "{error}");

    // Cut inside the object but keep the envelope consistent: the path points into it.
    let raw = {
        let mut spec = Vec::new();
        put_len(&mut spec, 1, b"\x0a\x05nginx");
        spec.truncate(spec.len() - 2);
        let mut deployment = Vec::new();
        put_len(&mut deployment, 2, &spec);
        deployment
    };
    let error = decode(&envelope("apps/v1", "Deployment", &raw)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "malformed protobuf at Deployment.spec: a length of 7 bytes runs past the end of the \
         message (5 bytes left)"
    );
}

#[test]
fn a_field_with_the_wrong_wire_type_is_malformed() {
    // ConfigMap.data (field 2) sent as a varint.
    let error = decode(&envelope("v1", "ConfigMap", &[0x10, 0x01])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "malformed protobuf at ConfigMap.data: field 2 is varint on the wire, but its type needs \
         length-delimited"
    );
}

#[test]
fn an_unknown_kind_is_rejected() {
    let error = decode(&envelope("v1", "Gadget", b"")).unwrap_err();
    assert!(
        matches!(error, ProtobufError::UnknownKind { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("\"Gadget\""), "{error}");
    let error = encode(&json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab"}));
    assert!(matches!(error, Err(ProtobufError::UnknownKind { .. })));
}

#[test]
fn embedded_raw_json_must_be_json() {
    let mut data = Vec::new();
    put_len(&mut data, 1, b"not json");
    let mut raw = Vec::new();
    put_len(&mut raw, 2, &data);
    let error = decode(&envelope("apps/v1", "ControllerRevision", &raw)).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "malformed protobuf at ControllerRevision.data: the embedded raw value is not JSON"
        ),
        "{error}"
    );
}

#[test]
fn decoding_hostile_nesting_is_an_error_not_a_stack_overflow() {
    // JSONSchemaProps.not (field 28) inside itself, far deeper than any real schema.
    let mut schema = Vec::new();
    for _ in 0..1_000 {
        let mut outer = Vec::new();
        put_len(&mut outer, 28, &schema);
        schema = outer;
    }
    let mut validation = Vec::new();
    put_len(&mut validation, 1, &schema);
    let mut version = Vec::new();
    put_len(&mut version, 4, &validation);
    let mut spec = Vec::new();
    put_len(&mut spec, 7, &version);
    let mut raw = Vec::new();
    put_len(&mut raw, 2, &spec);
    let body = envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &raw);
    let error = decode(&body).unwrap_err();
    assert!(error.to_string().contains("nested deeper than"), "{error}");
}

#[test]
fn encoding_hostile_nesting_is_an_error_not_a_stack_overflow() {
    // Past the limit, but not so deep that dropping the JSON value overflows the stack.
    let mut schema = json!({"type": "object"});
    for _ in 0..300 {
        schema = json!({"not": schema});
    }
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]},
    });
    let error = encode(&crd).unwrap_err();
    assert!(error.to_string().contains("nested deeper than"), "{error}");
}

#[test]
fn a_deep_but_real_schema_is_fine() {
    // 60 levels of nested objects: deeper than real CRDs get, within the limit.
    let mut schema = json!({"type": "string"});
    for _ in 0..60 {
        schema = json!({"type": "object", "properties": {"child": schema}});
    }
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "deep.example.com"},
        "spec": {"versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]},
    });
    let back = decode(&encode(&crd).unwrap()).unwrap();
    assert_eq!(
        back["spec"]["versions"][0]["schema"],
        crd["spec"]["versions"][0]["schema"]
    );
}

#[test]
fn no_corrupted_or_truncated_body_panics() {
    for (name, body, _) in kubectl_cases() {
        for len in 0..body.len() {
            let _ = decode(&body[..len]);
        }
        for i in 0..body.len() {
            for byte in [0x00, 0x07, 0x80, 0xff] {
                let mut corrupt = body.clone();
                corrupt[i] = byte;
                let _ = decode(&corrupt);
            }
        }
        assert!(decode(&body).is_ok(), "{name}");
    }
}

#[test]
fn encoding_names_the_field_whose_json_has_the_wrong_type() {
    let error = encode(&json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "spec": {"replicas": "three"},
    }))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot encode Deployment.spec.replicas as protobuf: expected an integer in range, got \"three\""
    );
    let error = encode(&json!({"metadata": {"name": "x"}})).unwrap_err();
    assert!(matches!(error, ProtobufError::MissingTypeMeta), "{error}");
}

#[test]
fn a_content_encoded_envelope_is_rejected() {
    let mut body = envelope("v1", "ConfigMap", b"");
    put_len(&mut body, 3, b"gzip");
    let error = decode(&body).unwrap_err();
    assert!(
        matches!(error, ProtobufError::UnsupportedEncoding(ref e) if e == "gzip"),
        "{error}"
    );
}
