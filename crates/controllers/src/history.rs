//! ControllerRevisions, as upstream's `pkg/controller/history`: DaemonSets and StatefulSets
//! keep each pod template they ran as a revision named `<owner>-<hash>`, labelled with
//! `controller-revision-hash`, so `kubectl rollout history|undo` can list and restore them.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::{Value, json};

use crate::deployment::rollout::template_hash;
use crate::ownership;

pub const HASH_LABEL: &str = "controller-revision-hash";

/// The owner of revisions: what the controller knows about the DaemonSet or StatefulSet.
pub struct Owner<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub meta: &'a ObjectMeta,
    pub template: &'a PodTemplateSpec,
    pub collision_count: Option<i32>,
}

/// What a revision stores: the patch that restores its template (upstream's `getPatch`).
pub fn data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).expect("templates serialize");
    template["$patch"] = json!("replace");
    json!({ "spec": { "template": template } })
}

/// The template a revision restores.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.0.get("spec")?.get("template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

pub fn hash_of(revision: &ControllerRevision) -> Option<&str> {
    revision
        .metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// The owner's revisions, oldest first.
pub fn owned(store: &Store<ControllerRevision>, meta: &ObjectMeta) -> Vec<Arc<ControllerRevision>> {
    let uid = meta.uid.as_deref().unwrap_or_default();
    let mut revisions = store.state_filter(|r| {
        r.metadata.namespace == meta.namespace
            && ownership::controller_of(&r.metadata).is_some_and(|o| o.uid == uid)
    });
    revisions.sort_by_key(|r| r.revision.unwrap_or(0));
    revisions
}

/// The revision the owner's current template would be (not yet stored). It carries the
/// owner's annotations, as upstream's revisions do, so `kubernetes.io/change-cause` shows in
/// `kubectl rollout history`.
pub fn candidate(owner: &Owner, number: i64) -> ControllerRevision {
    let hash = template_hash(owner.template, owner.collision_count);
    let name = owner.meta.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = owner
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: owner.meta.namespace.clone(),
            labels: Some(labels),
            annotations: owner.meta.annotations.clone(),
            owner_references: Some(vec![ownership::controller_reference(
                owner.api_version,
                owner.kind,
                &name,
                owner.meta.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        data: RawExtension(data(owner.template)),
        revision: Some(number),
    }
}

/// The stored revision holding `template`, if any.
pub fn matching<'a>(
    revisions: &'a [Arc<ControllerRevision>],
    template: &PodTemplateSpec,
) -> Option<&'a Arc<ControllerRevision>> {
    let want = data(template);
    revisions.iter().rev().find(|r| r.data.0 == want)
}

/// Makes sure the owner's current template is stored as its newest revision: reuses a
/// matching one (renumbering it last, as a rollback does upstream) or creates it.
/// `Err(Collision)` means a revision of that name holds another template: bump the owner's
/// collisionCount and try again.
pub async fn ensure(
    client: &kube::Client,
    owner: &Owner<'_>,
    revisions: &[Arc<ControllerRevision>],
) -> Result<ControllerRevision, EnsureError> {
    let namespace = owner.meta.namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let newest = revisions
        .iter()
        .filter_map(|r| r.revision)
        .max()
        .unwrap_or(0);
    if let Some(found) = matching(revisions, owner.template) {
        if found.revision == Some(newest) {
            return Ok((**found).clone());
        }
        let patch = json!({ "revision": newest + 1 });
        let name = found.metadata.name.clone().unwrap_or_default();
        return Ok(api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?);
    }
    let candidate = candidate(owner, newest + 1);
    match api.create(&PostParams::default(), &candidate).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let name = candidate.metadata.name.clone().unwrap_or_default();
            let existing = api.get(&name).await?;
            if existing.data == candidate.data {
                Ok(existing)
            } else {
                Err(EnsureError::Collision)
            }
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    #[error("a controller revision of that name holds another template")]
    Collision,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Deletes the oldest revisions beyond `limit` that no live pod runs.
pub async fn trim(
    client: &kube::Client,
    revisions: &[Arc<ControllerRevision>],
    live_hashes: &[&str],
    keep: &[&str],
    limit: i32,
) -> Result<(), kube::Error> {
    let unused: Vec<_> = revisions
        .iter()
        .filter(|r| {
            let hash = hash_of(r).unwrap_or_default();
            !live_hashes.contains(&hash) && !keep.contains(&hash)
        })
        .collect();
    let excess = unused.len().saturating_sub(limit.max(0) as usize);
    for revision in unused.into_iter().take(excess) {
        let namespace = revision.metadata.namespace.clone().unwrap_or_default();
        let name = revision.metadata.name.clone().unwrap_or_default();
        Api::<ControllerRevision>::namespaced(client.clone(), &namespace)
            .delete(&name, &DeleteParams::default())
            .await
            .map(drop)
            .or_else(crate::ignore_not_found)?;
    }
    Ok(())
}
