//! The resourcequota controller: each ResourceQuota's `status.hard` is its `spec.hard`, and
//! `status.used` is recounted from the objects in its namespace, as upstream's
//! `ResourceQuotaController` does. The API server's ResourceQuota admission charges `used` as
//! objects are created; this recount is the truth it converges to (deletions give back).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use r8s_api::quota::{self, ResourceList};
use r8s_informers::Informers;
use serde_json::Value;

/// Objects of kinds no informer here watches (`count/<resource>.<group>`) are recounted this
/// often; upstream's full resync is its equivalent.
const RESYNC: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("resourcequota {namespace}/{name}: {action}: {source}")]
pub struct Error {
    namespace: String,
    name: String,
    action: String,
    source: kube::Error,
}

struct Context {
    client: Client,
}

/// The resources whose objects a quota with these `hard` names counts.
pub fn counted_resources(hard: &ResourceList) -> Vec<&'static r8s_api::Resource> {
    let mut seen = std::collections::HashSet::new();
    r8s_api::catalogue()
        .iter()
        .filter(|r| r.namespaced && r.verbs.contains(&"list"))
        .filter(|r| {
            hard.keys()
                .any(|name| quota::covers(r.group, r.plural, name))
        })
        .filter(|r| seen.insert(r.storage_prefix()))
        .collect()
}

/// `used` for every name in `hard`: the sum over the objects (of `group`/`plural`) it matches.
pub fn recount<'a>(
    spec: &Value,
    hard: &ResourceList,
    objects: impl IntoIterator<Item = (&'a str, &'a str, &'a Value)>,
) -> ResourceList {
    let mut used: ResourceList = hard
        .keys()
        .map(|k| (k.clone(), Default::default()))
        .collect();
    for (group, plural, object) in objects {
        if !quota::matches(spec, group, plural, object) {
            continue;
        }
        for (name, q) in quota::usage(group, plural, object) {
            if let Some(total) = used.get_mut(&name) {
                *total = *total + q;
            }
        }
    }
    used
}

fn api_resource(r: &r8s_api::Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_owned(),
        version: r.version.to_owned(),
        api_version: r.api_version(),
        kind: r.kind.to_owned(),
        plural: r.plural.to_owned(),
    }
}

async fn reconcile(resource_quota: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = resource_quota.namespace().unwrap_or_default();
    let name = resource_quota.name_any();
    let err = |action: String| {
        let (namespace, name) = (namespace.clone(), name.clone());
        move |source| Error {
            namespace,
            name,
            action,
            source,
        }
    };
    let value = serde_json::to_value(resource_quota.as_ref()).unwrap_or_default();
    let hard = quota::resource_list(&value["spec"]["hard"]);
    let mut listed: Vec<(&'static r8s_api::Resource, Vec<Value>)> = Vec::new();
    for resource in counted_resources(&hard) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &api_resource(resource));
        let objects = api
            .list(&ListParams::default())
            .await
            .map_err(err(format!("list {}", resource.plural)))?;
        let values = objects
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        listed.push((resource, values));
    }
    let objects = listed
        .iter()
        .flat_map(|(r, values)| values.iter().map(move |v| (r.group, r.plural, v)));
    let used = recount(&value["spec"], &hard, objects);
    let status_hard = quota::resource_list(&value["status"]["hard"]);
    let status_used = quota::resource_list(&value["status"]["used"]);
    if status_hard != hard || status_used != used {
        let mut updated = value.clone();
        updated["status"] = serde_json::json!({
            "hard": quota::to_json(&hard),
            "used": quota::to_json(&used),
        });
        let updated: ResourceQuota =
            serde_json::from_value(updated).expect("a quota stays a quota");
        let written = Api::<ResourceQuota>::namespaced(ctx.client.clone(), &namespace)
            .replace_status(&name, &PostParams::default(), &updated)
            .await;
        match written {
            Ok(_) => {}
            // Charged or changed meanwhile: the change brings it back here.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(err("update status".into())(e)),
        }
    }
    Ok(Action::requeue(RESYNC))
}

fn error_policy(_quota: Arc<ResourceQuota>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "resourcequota controller");
    Action::requeue(RETRY)
}

/// Every quota in the object's namespace, which a change of the object may concern.
fn quotas_of<K: Resource>(
    quotas: &Store<ResourceQuota>,
    object: &K,
) -> Vec<ObjectRef<ResourceQuota>> {
    let namespace = object.meta().namespace.clone();
    quotas
        .state()
        .iter()
        .filter(|q| q.metadata.namespace == namespace)
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

pub async fn run(informers: Arc<Informers>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let controller = crate::controller_for::<ResourceQuota>(&informers).await;
    let quotas = controller.store();
    let pod_events = informers.subscribe::<Pod>().await.touched();
    let service_events = informers.subscribe::<Service>().await.touched();
    let claim_events = informers
        .subscribe::<PersistentVolumeClaim>()
        .await
        .touched();
    let config = watcher::Config::default;
    let (q1, q2, q3, q4, q5) = (
        quotas.clone(),
        quotas.clone(),
        quotas.clone(),
        quotas.clone(),
        quotas,
    );
    // ConfigMaps and Secrets are watched without a cache: nothing else here keeps them, and
    // a cache of every one would cost more than the quota's recount does.
    controller
        .watches_shared_stream(pod_events, move |o| quotas_of(&q1, &*o))
        .watches_shared_stream(service_events, move |o| quotas_of(&q2, &*o))
        .watches_shared_stream(claim_events, move |o| quotas_of(&q5, &*o))
        .watches(Api::<ConfigMap>::all(client.clone()), config(), move |o| {
            quotas_of(&q3, &o)
        })
        .watches(Api::<Secret>::all(client.clone()), config(), move |o| {
            quotas_of(&q4, &o)
        })
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use r8s_api::quantity::Quantity;
    use serde_json::json;

    fn hard(names: &[&str]) -> ResourceList {
        names
            .iter()
            .map(|n| (n.to_string(), Quantity::from_units(10)))
            .collect()
    }

    #[test]
    fn a_quota_counts_running_pods_and_their_requests_but_not_finished_ones() {
        let spec = json!({ "hard": { "pods": "10", "requests.cpu": "10" } });
        let running = json!({ "spec": { "containers": [{ "name": "c", "resources": { "requests": { "cpu": "500m" } } }] } });
        let done = json!({ "spec": { "containers": [] }, "status": { "phase": "Failed" } });
        let used = recount(
            &spec,
            &hard(&["pods", "requests.cpu"]),
            [
                ("", "pods", &running),
                ("", "pods", &running),
                ("", "pods", &done),
            ],
        );
        assert_eq!(
            quota::to_json(&used),
            json!({ "pods": "2", "requests.cpu": "1" })
        );
    }

    #[test]
    fn every_hard_name_gets_a_used_value_even_when_nothing_is_counted() {
        let spec = json!({ "hard": { "configmaps": "10" } });
        let used = recount(&spec, &hard(&["configmaps"]), []);
        assert_eq!(quota::to_json(&used), json!({ "configmaps": "0" }));
    }

    #[test]
    fn only_the_resources_a_quota_names_are_listed() {
        let plurals: Vec<&str> = counted_resources(&hard(&["pods", "count/deployments.apps"]))
            .iter()
            .map(|r| r.plural)
            .collect();
        assert_eq!(plurals, vec!["pods", "deployments"]);
    }
}
