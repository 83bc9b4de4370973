//! The namespace controller: a namespace being deleted is emptied (every namespaced resource
//! in it deleted, built-in and custom), then its `kubernetes` finalizer is removed through the `finalize`
//! subresource, and the API server lets it go.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use r8s_api::Resource;
use r8s_informers::Informers;

/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";
/// How soon a namespace whose contents are still going is looked at again.
const RECHECK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("namespace {namespace}: {action}: {source}")]
    Api {
        namespace: String,
        action: String,
        source: kube::Error,
    },
}

pub struct Context {
    client: Client,
}

/// What a namespace needs from this controller.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not being deleted, or not ours to finalize.
    Nothing,
    /// Being deleted: empty it, then remove the finalizer.
    Finalize,
}

pub fn step(namespace: &Namespace) -> Step {
    let deleting = namespace.metadata.deletion_timestamp.is_some();
    let ours = namespace
        .spec
        .as_ref()
        .and_then(|spec| spec.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if deleting && ours {
        Step::Finalize
    } else {
        Step::Nothing
    }
}

/// Every namespaced resource that holds objects, once per storage location (a resource served
/// in two versions is one set of objects).
pub fn namespaced_resources() -> Vec<&'static Resource> {
    let mut seen = std::collections::HashSet::new();
    r8s_api::catalogue()
        .iter()
        .filter(|r| {
            r.namespaced && r.verbs.contains(&"deletecollection") && r.verbs.contains(&"list")
        })
        .filter(|r| seen.insert(r.storage_prefix()))
        .collect()
}

/// The namespaced custom resources the API serves: one version of each CRD (the storage
/// version when it is served), as upstream's namespace controller finds them by discovery.
async fn custom_resources(client: &Client) -> kube::Result<Vec<ApiResource>> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(crds
        .items
        .iter()
        .filter(|crd| crd.spec.scope == "Namespaced")
        .filter_map(|crd| {
            let served: Vec<_> = crd.spec.versions.iter().filter(|v| v.served).collect();
            let version = served
                .iter()
                .find(|v| v.storage)
                .or_else(|| served.first())?;
            Some(ApiResource {
                group: crd.spec.group.clone(),
                version: version.name.clone(),
                api_version: format!("{}/{}", crd.spec.group, version.name),
                kind: crd.spec.names.kind.clone(),
                plural: crd.spec.names.plural.clone(),
            })
        })
        .collect())
}

fn api_resource(r: &Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_owned(),
        version: r.version.to_owned(),
        api_version: r.api_version(),
        kind: r.kind.to_owned(),
        plural: r.plural.to_owned(),
    }
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if step(&namespace) == Step::Nothing {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let err = |action: String| {
        let namespace = name.clone();
        move |source| Error::Api {
            namespace,
            action,
            source,
        }
    };
    let mut remaining = 0;
    let mut resources: Vec<ApiResource> = namespaced_resources()
        .into_iter()
        .map(api_resource)
        .collect();
    resources.extend(
        custom_resources(&ctx.client)
            .await
            .map_err(err("list customresourcedefinitions".into()))?,
    );
    for resource in &resources {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, resource);
        api.delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
            .map_err(err(format!("delete {}", resource.plural)))?;
        remaining += api
            .list(&ListParams::default())
            .await
            .map_err(err(format!("list {}", resource.plural)))?
            .items
            .len();
    }
    if remaining > 0 {
        // Objects with finalizers of their own are still going.
        return Ok(Action::requeue(RECHECK));
    }
    let mut finalized = (*namespace).clone();
    if let Some(finalizers) = finalized.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        finalizers.retain(|f| f != FINALIZER);
    }
    Api::<Namespace>::all(ctx.client.clone())
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
        .map_err(err("finalize".into()))?;
    Ok(Action::await_change())
}

fn error_policy(_namespace: Arc<Namespace>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "namespace controller");
    Action::requeue(RECHECK)
}

pub async fn run(informers: Arc<Informers>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    crate::controller_for::<Namespace>(&informers)
        .await
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn namespace(deleting: bool, finalizers: &[&str]) -> Namespace {
        let mut ns = Namespace::default();
        if deleting {
            ns.metadata.deletion_timestamp = Some(Time(Default::default()));
        }
        ns.spec = Some(NamespaceSpec {
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
        });
        ns
    }

    #[test]
    fn only_deleted_namespaces_with_our_finalizer_are_finalized() {
        assert_eq!(step(&namespace(false, &[FINALIZER])), Step::Nothing);
        assert_eq!(step(&namespace(true, &[])), Step::Nothing);
        assert_eq!(step(&namespace(true, &["other"])), Step::Nothing);
        assert_eq!(step(&namespace(true, &[FINALIZER])), Step::Finalize);
    }

    #[test]
    fn each_namespaced_collection_is_cleaned_once() {
        let resources = namespaced_resources();
        let plurals: Vec<&str> = resources.iter().map(|r| r.plural).collect();
        for expected in ["configmaps", "pods", "deployments", "secrets", "services"] {
            assert!(plurals.contains(&expected), "{expected} missing");
        }
        assert_eq!(
            plurals
                .iter()
                .filter(|p| **p == "horizontalpodautoscalers")
                .count(),
            1
        );
        assert!(resources.iter().all(|r| r.namespaced));
    }
}
