//! Owner references: who controls an object, and the patches that adopt or release it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The reference a controller puts on what it creates or adopts.
pub fn controller_reference(
    api_version: &str,
    kind: &str,
    name: &str,
    uid: &str,
) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A merge patch that sets an object's owner references, guarded by its resourceVersion so a
/// concurrent writer's change is never overwritten (the write fails with 409 and is retried).
pub fn owner_references_patch(meta: &ObjectMeta, references: Vec<OwnerReference>) -> Value {
    json!({
        "metadata": {
            "ownerReferences": references,
            "resourceVersion": meta.resource_version,
            "uid": meta.uid,
        }
    })
}

/// The patch adopting an orphan: its references plus ours.
pub fn adopt_patch(meta: &ObjectMeta, owner: OwnerReference) -> Value {
    let mut references = meta.owner_references.clone().unwrap_or_default();
    references.push(owner);
    owner_references_patch(meta, references)
}

/// The patch releasing an object from the owner with `uid`.
pub fn release_patch(meta: &ObjectMeta, uid: &str) -> Value {
    let references = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect();
    owner_references_patch(meta, references)
}
