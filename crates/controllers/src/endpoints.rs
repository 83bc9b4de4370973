//! The Endpoints controller: the legacy core/v1 Endpoints object of every Service with a
//! selector, as upstream's endpoint controller still writes it. Addresses of ready pods go in
//! `addresses`, others in `notReadyAddresses`, grouped in subsets by the ports each pod
//! resolves; at most 1000 addresses, ready ones first. Endpoints are not owned by their
//! Service, so a second loop deletes those whose Service is gone, as upstream does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::Informers;

use crate::clock::Clock;
use crate::service_endpoints::{self as endpoints, LAST_CHANGE_TRIGGER_TIME, ResolvedPort};

pub const MAX_ADDRESSES: usize = 1000;
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Endpoints used as leader-election locks by old components carry this; never delete them.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("endpoints {key}: {action}: {source}")]
pub struct Error {
    key: String,
    action: &'static str,
    source: kube::Error,
}

pub struct Context {
    pub client: Client,
    pub pods: Store<Pod>,
    pub endpoints: Store<Endpoints>,
    pub services: Store<Service>,
    pub clock: Arc<dyn Clock>,
}

fn address(service: &Service, pod: &Pod, ip: String) -> EndpointAddress {
    EndpointAddress {
        ip,
        hostname: endpoints::hostname(service, pod),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.namespace(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    }
}

/// The subsets the service's pods add up to (upstream's addEndpointSubset + RepackSubsets),
/// and whether addresses beyond the capacity were dropped.
pub fn subsets(service: &Service, pods: &[Arc<Pod>]) -> (Vec<EndpointSubset>, bool) {
    let publish = endpoints::publishes_not_ready(service);
    type Addresses = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<ResolvedPort>, Addresses> = BTreeMap::new();
    for pod in pods {
        if !endpoints::should_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(ip) = endpoints::ipv4_address(pod) else {
            continue;
        };
        let ports = endpoints::resolve_ports(service, pod);
        let has_ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
        if ports.is_empty() && has_ports.is_some_and(|p| !p.is_empty()) {
            // Every port failed to resolve for this pod: upstream lists it nowhere.
            continue;
        }
        let (ready, not_ready) = groups.entry(ports).or_default();
        if endpoints::serving(service, pod) {
            ready.push(address(service, pod, ip));
        } else {
            not_ready.push(address(service, pod, ip));
        }
    }
    let total: usize = groups.values().map(|(r, n)| r.len() + n.len()).sum();
    let mut budget = MAX_ADDRESSES;
    for (ready, _) in groups.values_mut() {
        ready.truncate(budget);
        budget -= ready.len();
    }
    for (_, not_ready) in groups.values_mut() {
        not_ready.truncate(budget);
        budget -= not_ready.len();
    }
    let subsets = groups
        .into_iter()
        .filter(|(_, (r, n))| !(r.is_empty() && n.is_empty()))
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|p| EndpointPort {
                            name: p.name,
                            port: p.port,
                            protocol: Some(p.protocol),
                            app_protocol: p.app_protocol,
                        })
                        .collect()
                }),
            }
        })
        .collect();
    (subsets, total > MAX_ADDRESSES)
}

fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The Endpoints object to write, or None when the current one already says it all.
pub fn desired(
    service: &Service,
    pods: &[Arc<Pod>],
    current: Option<&Endpoints>,
    trigger: String,
) -> Option<Endpoints> {
    let (subsets, truncated) = subsets(service, pods);
    let labels = labels(service);
    let current_subsets = current.and_then(|e| e.subsets.clone()).unwrap_or_default();
    let current_labels = current.and_then(|e| e.metadata.labels.clone());
    let current_truncated = current.is_some_and(|e| e.annotations().get(OVER_CAPACITY).is_some());
    if current.is_some()
        && current_subsets == subsets
        && current_labels.unwrap_or_default() == labels
        && current_truncated == truncated
    {
        return None;
    }
    let mut metadata = current.map(|e| e.metadata.clone()).unwrap_or(ObjectMeta {
        name: service.metadata.name.clone(),
        namespace: service.namespace(),
        ..Default::default()
    });
    metadata.labels = Some(labels);
    let annotations = metadata.annotations.get_or_insert_default();
    annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), trigger);
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    Some(Endpoints {
        metadata,
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

async fn sync(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let err = |action| {
        let key = format!("{namespace}/{name}");
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
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&namespace));
    let trigger = endpoints::last_change(&service, &pods).unwrap_or_else(|| ctx.clock.now());
    let Some(wanted) = desired(
        &service,
        &pods,
        current.as_deref(),
        endpoints::format_time(trigger),
    ) else {
        return Ok(Action::await_change());
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    if current.is_some() {
        api.replace(&name, &PostParams::default(), &wanted)
            .await
            .map_err(err("update"))?;
    } else {
        api.create(&PostParams::default(), &wanted)
            .await
            .map_err(err("create"))?;
    }
    Ok(Action::await_change())
}

/// Deletes an Endpoints object whose Service no longer exists.
async fn remove_leftover(object: Arc<Endpoints>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let service = ctx.services.get(&ObjectRef::new(&name).within(&namespace));
    if service.is_some() || object.annotations().contains_key(LEADER_ANNOTATION) {
        return Ok(Action::await_change());
    }
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    api.delete(&name, &DeleteParams::default())
        .await
        .map(drop)
        .or_else(crate::ignore_not_found)
        .map_err(|source| Error {
            key: format!("{namespace}/{name}"),
            action: "delete leftover",
            source,
        })?;
    Ok(Action::await_change())
}

fn error_policy<K>(_object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "endpoints sync");
    Action::requeue(RETRY)
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (pods, pod_events) = informers.cache_and_touched::<Pod>().await;
    let services_controller = crate::controller_for::<Service>(&informers).await;
    let services = services_controller.store();
    let endpoints_controller = crate::controller_for::<Endpoints>(&informers).await;
    let endpoints_cache = endpoints_controller.store();
    let ctx = Arc::new(Context {
        client,
        pods,
        endpoints: endpoints_cache.clone(),
        services: services.clone(),
        clock,
    });
    let services_for_pods = services.clone();
    let keep = services_controller
        // A pod that stopped matching is still listed by name in the service's Endpoints.
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
            let listed = endpoints_cache.state_filter(|e| {
                e.namespace() == pod.namespace()
                    && e.subsets.iter().flatten().any(|s| {
                        let all = s.addresses.iter().chain(s.not_ready_addresses.iter());
                        all.flatten().any(|a| {
                            a.target_ref.as_ref().and_then(|r| r.name.as_ref())
                                == pod.metadata.name.as_ref()
                        })
                    })
            });
            let selecting = services_for_pods.state_filter(|s| endpoints::selects(s, &pod));
            let mut refs: Vec<ObjectRef<Service>> = selecting
                .iter()
                .map(|s| ObjectRef::from_obj(&**s))
                .chain(listed.iter().map(|e| {
                    ObjectRef::new(&e.name_any()).within(&e.namespace().unwrap_or_default())
                }))
                .collect();
            refs.sort_by(|a, b| a.name.cmp(&b.name));
            refs.dedup();
            refs
        })
        .run(sync, error_policy, ctx.clone())
        .for_each(|_| async {});
    let services_ready = services.clone();
    let leftovers = async move {
        // Only judge leftovers once the services cache has been listed.
        if services_ready.wait_until_ready().await.is_err() {
            return;
        }
        endpoints_controller
            .run(remove_leftover, error_policy, ctx)
            .for_each(|_| async {})
            .await
    };
    tokio::join!(keep, leftovers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::endpointslice::tests::{pod, service};

    fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
        pods.into_iter().map(Arc::new).collect()
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        addresses.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn endpoints_list_ready_and_not_ready_addresses_apart() {
        let svc = service(IntOrString::String("web".into()));
        let pods = arcs(vec![
            pod("a", "10.0.0.1", true),
            pod("b", "10.0.0.2", false),
        ]);
        let (subsets, truncated) = subsets(&svc, &pods);
        assert!(!truncated);
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.1"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.2"]);
        let port = &subsets[0].ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    }

    #[test]
    fn endpoints_leave_out_terminating_pods() {
        let svc = service(IntOrString::Int(8080));
        let mut leaving = pod("a", "10.0.0.1", true);
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let (subsets, _) = subsets(&svc, &arcs(vec![leaving]));
        assert!(subsets.is_empty());
    }

    #[test]
    fn endpoints_hold_at_most_a_thousand_addresses_ready_first() {
        let svc = service(IntOrString::Int(8080));
        let pods: Vec<Pod> = (0..1100)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    i >= 200,
                )
            })
            .collect();
        let (subsets, truncated) = subsets(&svc, &arcs(pods));
        assert!(truncated);
        assert_eq!(ips(&subsets[0].addresses).len(), 900);
        assert_eq!(ips(&subsets[0].not_ready_addresses).len(), 100);
    }

    #[test]
    fn unchanged_endpoints_are_not_rewritten() {
        let svc = service(IntOrString::Int(8080));
        let pods = arcs(vec![pod("a", "10.0.0.1", true)]);
        let first = desired(&svc, &pods, None, "t1".into()).expect("created");
        assert_eq!(first.metadata.name.as_deref(), Some("web"));
        assert_eq!(first.annotations()[LAST_CHANGE_TRIGGER_TIME], "t1");
        assert!(desired(&svc, &pods, Some(&first), "t2".into()).is_none());
        let scaled = desired(&svc, &[], Some(&first), "t3".into()).expect("updated");
        assert!(scaled.subsets.is_none());
    }
}
