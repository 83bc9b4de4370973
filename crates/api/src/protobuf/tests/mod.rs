//! The protobuf codec against three independent references: protoc's encoder (text-format
//! fixtures in `testdata/protoc/`), the real kubectl 1.37's request bodies with the JSON the
//! same kubectl prints for the same object (`testdata/kubectl/`), and our own encoder.

mod decoding;
mod errors;
mod round_trips;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::wire::put_len;
use super::{decode, encode, supports};

pub(super) fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/protobuf/testdata")
        .join(name)
}

/// Encodes a text-format fixture with protoc (which `build.rs` already needs).
fn protoc_encode(message: &str, proto: &str, fixture: &str) -> Vec<u8> {
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let input = std::fs::File::open(testdata(fixture)).expect("fixture exists");
    let output = Command::new(std::env::var_os("PROTOC").unwrap_or_else(|| "protoc".into()))
        .arg(format!("--encode={message}"))
        .arg(format!("--proto_path={}", proto_dir.display()))
        .arg(proto)
        .stdin(input)
        .output()
        .expect("protoc runs");
    assert!(
        output.status.success(),
        "protoc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `k8s\0` + a `runtime.Unknown` around `raw`, built by hand rather than by the encoder.
pub(super) fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    put_len(&mut type_meta, 1, api_version.as_bytes());
    put_len(&mut type_meta, 2, kind.as_bytes());
    let mut body = b"k8s\0".to_vec();
    put_len(&mut body, 1, &type_meta);
    put_len(&mut body, 2, raw);
    body
}

pub(super) fn decode_protoc(api_version: &str, kind: &str, proto: &str, fixture: &str) -> Value {
    let package = proto
        .trim_end_matches("/generated.proto")
        .replace('/', ".")
        .replace('-', "_");
    let raw = protoc_encode(&format!("{package}.{kind}"), proto, fixture);
    decode(&envelope(api_version, kind, &raw)).expect("decodes")
}

/// The kubectl corpus: (name, request body, the JSON kubectl prints for the same object).
pub(super) fn kubectl_cases() -> Vec<(String, Vec<u8>, Value)> {
    let mut names: Vec<String> = std::fs::read_dir(testdata("kubectl"))
        .expect("testdata/kubectl exists")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".pb")?.to_string())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 10, "the kubectl corpus is there");
    names
        .into_iter()
        .map(|name| {
            let body = std::fs::read(testdata(&format!("kubectl/{name}.pb"))).unwrap();
            let json = std::fs::read(testdata(&format!("kubectl/{name}.json"))).unwrap();
            (name, body, serde_json::from_slice(&json).unwrap())
        })
        .collect()
}

pub(super) fn round_trip(object: Value) {
    let body = encode(&object).unwrap_or_else(|e| panic!("encodes: {e}"));
    assert!(body.starts_with(b"k8s\0"));
    let back = decode(&body).unwrap_or_else(|e| panic!("decodes: {e}"));
    assert_eq!(back, object);
}

#[test]
fn every_served_kind_has_a_schema_and_custom_resources_none() {
    // metrics.k8s.io is answered in JSON only: its .proto is not among the embedded ones.
    for resource in crate::catalogue()
        .iter()
        .filter(|r| r.group != "metrics.k8s.io")
    {
        let api_version = resource.api_version();
        assert!(
            supports(&api_version, resource.kind),
            "{api_version} {}",
            resource.kind
        );
        let list = format!("{}List", resource.kind);
        let listable = resource.verbs.contains(&"list");
        assert!(
            !listable || supports(&api_version, &list),
            "{api_version} {list}"
        );
        for sub in resource.subresources {
            let api_version = if sub.group.is_empty() {
                sub.version.to_string()
            } else {
                format!("{}/{}", sub.group, sub.version)
            };
            assert!(
                supports(&api_version, sub.kind),
                "{api_version} {}",
                sub.kind
            );
        }
    }
    assert!(supports("apps/v1", "DeleteOptions"));
    assert!(!supports("stable.example.com/v1", "CronTab"));
    assert!(!supports("apps.example.com/v1", "Deployment"));
    assert!(!supports("v1", "ObjectMeta"));
}
