//! The EndpointSlice controller: every Service with a selector gets `discovery.k8s.io/v1`
//! slices listing the addresses of the pods it selects, with ready/serving/terminating
//! conditions, the node and zone of each, and the ports each pod resolves (see `slices`).
//! Slices are owned by their Service, so the garbage collector removes them with it.

pub mod slices;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::Informers;

use crate::clock::Clock;
use crate::service_endpoints::{self as endpoints, LAST_CHANGE_TRIGGER_TIME};

const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("service {key}: {action}: {source}")]
pub struct Error {
    key: String,
    action: String,
    source: kube::Error,
}

pub struct Context {
    pub client: Client,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub slices: Store<EndpointSlice>,
    pub clock: Arc<dyn Clock>,
}

/// The slices this controller manages for the service.
pub fn slices_of(service: &Service, slices: &Store<EndpointSlice>) -> Vec<Arc<EndpointSlice>> {
    let name = service.name_any();
    slices.state_filter(|s| {
        let labels = s.metadata.labels.as_ref();
        s.namespace() == service.namespace()
            && labels.and_then(|l| l.get(slices::SERVICE_NAME_LABEL)) == Some(&name)
            && labels.and_then(|l| l.get(slices::MANAGED_BY_LABEL))
                == Some(&slices::CONTROLLER_NAME.to_owned())
    })
}

async fn sync(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = service.namespace().unwrap_or_default();
    let key = format!("{namespace}/{}", service.name_any());
    let err = |action: String| {
        let key = key.clone();
        move |source| Error {
            key,
            action,
            source,
        }
    };
    if !endpoints::has_selector(&service) || service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let pods = endpoints::selected_pods(&service, &ctx.pods);
    let plan = slices::plan(
        &service,
        &pods,
        &ctx.nodes,
        slices_of(&service, &ctx.slices),
    );
    let trigger = endpoints::last_change(&service, &pods)
        .unwrap_or_else(|| ctx.clock.now())
        .to_string();
    let annotate = |slice: &mut EndpointSlice| {
        slice
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(LAST_CHANGE_TRIGGER_TIME.into(), trigger.clone());
    };
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    for slice in &plan.delete {
        let name = slice.name_any();
        api.delete(&name, &DeleteParams::default())
            .await
            .map(drop)
            .or_else(crate::ignore_not_found)
            .map_err(err(format!("delete endpoint slice {name}")))?;
    }
    for mut slice in plan.update {
        annotate(&mut slice);
        let name = slice.name_any();
        api.replace(&name, &PostParams::default(), &slice)
            .await
            .map_err(err(format!("update endpoint slice {name}")))?;
    }
    for mut slice in plan.create {
        annotate(&mut slice);
        api.create(&PostParams::default(), &slice)
            .await
            .map_err(err("create endpoint slice".into()))?;
    }
    Ok(Action::await_change())
}

fn error_policy(_service: Arc<Service>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "endpoint slice sync");
    Action::requeue(RETRY)
}

/// The services a pod event concerns: those selecting it now, and those whose slices list it
/// (it may have stopped matching).
pub fn services_of(
    pod: &Pod,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let mut refs: Vec<ObjectRef<Service>> = services
        .state_filter(|s| endpoints::selects(s, pod))
        .iter()
        .map(|s| ObjectRef::from_obj(&**s))
        .collect();
    for slice in slices.state_filter(|s| s.namespace().as_deref() == Some(namespace.as_str())) {
        if !slices::pods_listed(&slice).contains(&name) {
            continue;
        }
        let labels = slice.metadata.labels.as_ref();
        if let Some(service) = labels.and_then(|l| l.get(slices::SERVICE_NAME_LABEL)) {
            refs.push(ObjectRef::new(service).within(&namespace));
        }
    }
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs.dedup();
    refs
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (pods, pod_events) = informers.cache_and_touched::<Pod>().await;
    // Every slice, ours or not: what is ours is told by its managed-by label where it matters.
    let (slices, slice_events) = informers.cache_and_touched::<EndpointSlice>().await;
    // Nodes only feed the zone lookup; their events trigger nothing.
    let nodes = informers.store::<Node>().await;
    let controller = crate::controller_for::<Service>(&informers).await;
    let services = controller.store();
    let slices_for_pods = slices.clone();
    let controller = controller
        .owns_shared_stream(slice_events)
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
            services_of(&pod, &services, &slices_for_pods)
        });
    let ctx = Arc::new(Context {
        client,
        pods,
        nodes,
        slices,
        clock,
    });
    controller
        .run(sync, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}
