//! Owner references: who controls an object, and the patches that adopt or release it.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use r8s_informers::{Index, Informers, Watchable};
use serde_json::{Value, json};

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The name of the index of objects by controller (upstream's `controllerUIDIndex`).
pub const CONTROLLER_INDEX: &str = "controller";

/// `K`'s objects by controller (see [`controller_keys`]), the index made on first ask.
pub async fn by_controller<K: Watchable>(informers: &Informers) -> Arc<Index<K>> {
    informers
        .index(CONTROLLER_INDEX, controller_keys::<K>)
        .await
}

/// Where [`CONTROLLER_INDEX`] files an object: under its controller's UID, or, for an orphan,
/// under its namespace (which every controller there may adopt from).
fn controller_keys<K: Watchable>(object: &K) -> Vec<String> {
    let meta = object.meta();
    vec![match controller_of(meta) {
        Some(owner) => owner.uid.clone(),
        None => orphans_key(meta.namespace.as_deref().unwrap_or_default()),
    }]
}

fn orphans_key(namespace: &str) -> String {
    // A UID holds no '/', so this never names a controller.
    format!("orphans/{namespace}")
}

/// The objects the owner described by `owner` controls (finished ones included).
pub fn controlled<K: Watchable>(index: &Index<K>, owner: &ObjectMeta) -> Vec<Arc<K>> {
    let mut found = index.get(owner.uid.as_deref().unwrap_or_default());
    found.retain(|o| o.meta().namespace == owner.namespace);
    found
}

/// What a controller may claim: the objects it controls and the orphans of its namespace.
pub fn controlled_or_orphans<K: Watchable>(
    index: &Index<K>,
    namespace: &str,
    uid: &str,
) -> Vec<Arc<K>> {
    let mut found = index.get(uid);
    found.extend(index.get(&orphans_key(namespace)));
    found
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::watcher::Event;
    use r8s_informers::Informer;

    fn pod(namespace: &str, name: &str, controller: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                owner_references: controller
                    .map(|uid| vec![controller_reference("apps/v1", "ReplicaSet", "rs", uid)]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_controller_may_claim_its_own_and_its_namespaces_orphans_only() {
        let informer = Informer::<Pod>::new();
        informer.apply(Event::Init);
        for pod in [
            pod("web", "mine", Some("uid-a")),
            pod("web", "theirs", Some("uid-b")),
            pod("web", "orphan", None),
            pod("other", "far-orphan", None),
        ] {
            informer.apply(Event::InitApply(pod));
        }
        informer.apply(Event::InitDone);
        let index = informer
            .index(CONTROLLER_INDEX, controller_keys::<Pod>)
            .await;
        let claimable = || {
            let mut names: Vec<String> = controlled_or_orphans(&index, "web", "uid-a")
                .iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(claimable(), ["mine", "orphan"]);
        // Adopted, the orphan is no longer another controller's to claim.
        informer.apply(Event::Apply(pod("web", "orphan", Some("uid-b"))));
        let names = claimable();
        assert_eq!(names, ["mine"]);
    }
}
