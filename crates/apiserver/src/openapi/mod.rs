//! The OpenAPI documents kubectl and client libraries read: `/openapi/v2` (Swagger 2.0) and
//! `/openapi/v3` (an index of one OpenAPI 3.0 document per group version).
//!
//! kubectl needs them to validate (`create -f` asks the v3 document whether PATCH of a kind
//! takes `fieldValidation`, and validates client-side if not), to explain fields, and to build
//! strategic merge patches (`x-kubernetes-patch-merge-key`). The schemas are upstream's 1.37
//! definitions, embedded (`crates/apiserver/openapi/`); the paths come from the catalogue, so a
//! resource is described exactly when it is served. Everything is built once, on first use.

mod definitions;
mod operations;
mod parameters;
mod render;
mod resource_paths;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use definitions::Definitions;

/// Swagger 2.0 document of every built-in resource.
pub fn v2() -> &'static Bytes {
    &DOCUMENTS.v2
}

/// The /openapi/v3 discovery index.
pub fn v3_index() -> &'static Bytes {
    &DOCUMENTS.v3_index
}

/// The OpenAPI 3 document for "api/v1" or "apis/<group>/<version>", if served.
pub fn v3(group_version_path: &str) -> Option<&'static Bytes> {
    DOCUMENTS.v3.get(group_version_path.trim_matches('/'))
}

struct Documents {
    v2: Bytes,
    /// By index key: `api/v1`, `apis/apps/v1`.
    v3: BTreeMap<String, Bytes>,
    v3_index: Bytes,
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(build);
static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(Definitions::load_lean);

/// The 1.37 schemas, for strategic merge patch and field validation.
pub fn definitions() -> &'static Definitions {
    &DEFINITIONS
}

fn build() -> Documents {
    // The served documents carry the descriptions the server's own copy leaves out.
    let definitions = &Definitions::load();
    let groups = operations::group_versions(definitions);
    let v2 = to_bytes(&render::swagger(&groups, definitions));
    let mut v3 = BTreeMap::new();
    let mut index = Map::new();
    for gv in &groups {
        let key = gv.key();
        let document = to_bytes(&render::openapi3(gv, definitions));
        // Clients cache a document under its URL for good, so the URL names its content.
        let url = format!("/openapi/v3/{key}?hash={}", content_hash(&document));
        index.insert(key.clone(), json!({ "serverRelativeURL": url }));
        v3.insert(key, document);
    }
    Documents {
        v2,
        v3,
        v3_index: to_bytes(&json!({ "paths": index })),
    }
}

fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a JSON value serializes"))
}

/// Upstream's: SHA-512 of the document, uppercase hex.
fn content_hash(document: &[u8]) -> String {
    Sha512::digest(document)
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect()
}

#[cfg(test)]
mod tests;
