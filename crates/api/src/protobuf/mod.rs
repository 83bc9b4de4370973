//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`) for every built-in
//! kind, to and from the JSON the rest of r8s works in.
//!
//! A body is the 4 bytes `k8s\0` then a `runtime.Unknown` message: `typeMeta` (apiVersion,
//! kind), `raw` (the object's own message, e.g. `k8s.io.api.core.v1.ConfigMap`),
//! `contentEncoding`, `contentType`. The schema is upstream's `generated.proto` files
//! (`proto/`, compiled by `build.rs`) plus what upstream's Go types say about the JSON form
//! (`proto/go-types.txt`): the JSON produced is what the same Go object marshals to, so a
//! protobuf request reads exactly like the JSON request the same client would have sent.
//!
//! Custom resources never have a protobuf form; [`supports`] tells which kinds do.

mod decode;
mod encode;
mod go_time;
pub use go_time::parse_duration;
mod path;
mod schema;
mod wire;

/// The media type of Kubernetes' protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every Kubernetes protobuf body starts with.
const MAGIC: [u8; 4] = *b"k8s\0";

/// How deep messages may nest: serde_json's limit for JSON bodies, so protobuf clients get no
/// more than JSON ones, and deep enough for real CRD schemas (the deepest objects). Decoding that
/// deep takes under 256 KiB of stack in a release build.
const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("not a Kubernetes protobuf body: it does not start with the 4 bytes \"k8s\\0\"")]
    MissingMagic,
    #[error(
        "no protobuf schema for kind {kind:?} of apiVersion {api_version:?}: only built-in kinds \
         have one; send JSON instead"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error("malformed protobuf at {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("unsupported content encoding {0:?} in the protobuf envelope: only none is")]
    UnsupportedEncoding(String),
    #[error("cannot encode the object as protobuf: it has no apiVersion and kind")]
    MissingTypeMeta,
    #[error("cannot encode {path} as protobuf: {reason}")]
    Unencodable { path: String, reason: String },
}

/// Decodes a protobuf request body (magic + Unknown envelope) into the object's JSON, apiVersion
/// and kind set.
pub fn decode(body: &[u8]) -> Result<serde_json::Value, ProtobufError> {
    decode::decode_body(body, 0)
}

/// Encodes an object's JSON (apiVersion/kind set) as the protobuf wire format, for clients that
/// accept only protobuf.
pub fn encode(object: &serde_json::Value) -> Result<Vec<u8>, ProtobufError> {
    encode::encode_object(object, 0)
}

/// Whether a kind has a protobuf schema (built-in kinds do; custom resources never).
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema::SCHEMA.kind(api_version, kind).is_some()
}

#[cfg(test)]
mod tests;
