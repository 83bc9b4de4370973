//! The slices a Service should have, decided from the caches alone: endpoints grouped by their
//! resolved port set, at most 100 per slice, kept in the slice that already holds them so a
//! scale-up or a readiness flip rewrites one slice, not all of them (as upstream's reconciler).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::ownership;
use crate::service_endpoints::{self as endpoints, ResolvedPort};

pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const IPV4: &str = "IPv4";

/// The writes that bring a service's slices to the desired state.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<Arc<EndpointSlice>>,
}

/// The endpoint a pod contributes: ready only while serving and not terminating (unless the
/// service publishes not-ready addresses), as upstream's `podToEndpoint`.
pub fn endpoint(service: &Service, pod: &Pod, nodes: &Store<Node>) -> Option<Endpoint> {
    let address = endpoints::ipv4_address(pod)?;
    let serving = endpoints::serving(service, pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = endpoints::publishes_not_ready(service) || (serving && !terminating);
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let zone = node_name.as_ref().and_then(|name| {
        let node = nodes.get(&ObjectRef::new(name))?;
        node.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned()
    });
    Some(Endpoint {
        addresses: vec![address],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: endpoints::hostname(service, pod),
        node_name,
        zone,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.namespace(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The service's endpoints grouped by the port set each pod resolves to.
pub fn desired(
    service: &Service,
    pods: &[Arc<Pod>],
    nodes: &Store<Node>,
) -> BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> {
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        if !endpoints::should_be_in_endpoints(pod, true) {
            continue;
        }
        if let Some(endpoint) = endpoint(service, pod, nodes) {
            let ports = endpoints::resolve_ports(service, pod);
            groups.entry(ports).or_default().push(endpoint);
        }
    }
    groups
}

fn ports_of(slice: &EndpointSlice) -> Vec<ResolvedPort> {
    let mut ports: Vec<ResolvedPort> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| ResolvedPort {
            name: p.name.clone().filter(|n| !n.is_empty()),
            port: p.port.unwrap_or_default(),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    ports.sort();
    ports
}

fn endpoint_ports(ports: &[ResolvedPort]) -> Option<Vec<EndpointPort>> {
    (!ports.is_empty()).then(|| {
        ports
            .iter()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone()),
                app_protocol: p.app_protocol.clone(),
            })
            .collect()
    })
}

/// The labels every slice of the service carries: the service's own plus ours.
pub fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    labels.insert(SERVICE_NAME_LABEL.into(), service.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    let cluster_ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    if cluster_ip == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn new_slice(service: &Service, ports: &[ResolvedPort], endpoints: Vec<Endpoint>) -> EndpointSlice {
    let name = service.name_any();
    // Leave room for the five random characters the server appends.
    let prefix: String = name.chars().take(57).collect();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: service.namespace(),
            labels: Some(labels(service)),
            owner_references: Some(vec![ownership::controller_reference(
                "v1",
                "Service",
                &name,
                service.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        address_type: IPV4.into(),
        endpoints: Some(endpoints),
        ports: endpoint_ports(ports),
    }
}

fn address_of(endpoint: &Endpoint) -> Option<&String> {
    endpoint.addresses.first()
}

/// Decides the writes for one service given its current slices (those it owns).
pub fn plan(
    service: &Service,
    pods: &[Arc<Pod>],
    nodes: &Store<Node>,
    existing: Vec<Arc<EndpointSlice>>,
) -> Plan {
    let mut groups = desired(service, pods, nodes);
    if groups.is_empty() {
        // Upstream keeps one empty placeholder slice so readers see the service has none.
        groups.insert(Vec::new(), Vec::new());
    }
    let wanted_labels = labels(service);
    let mut plan = Plan::default();
    let mut existing = existing;
    existing.sort_by_key(|s| s.name_any());
    for (ports, group) in groups {
        let mut wanted: BTreeMap<String, Endpoint> = group
            .into_iter()
            .filter_map(|e| Some((address_of(&e)?.clone(), e)))
            .collect();
        let mut order: Vec<String> = wanted.keys().cloned().collect();
        let (mine, others): (Vec<_>, Vec<_>) = existing
            .into_iter()
            .partition(|s| s.address_type == IPV4 && ports_of(s) == ports);
        existing = others;
        let mut kept: Vec<(Arc<EndpointSlice>, Vec<Endpoint>)> = Vec::new();
        for slice in mine {
            let held: Vec<Endpoint> = slice
                .endpoints
                .iter()
                .flatten()
                .filter_map(|e| wanted.remove(address_of(e)?))
                .collect();
            let placeholder = ports.is_empty() && order.is_empty() && kept.is_empty();
            if held.is_empty() && !placeholder {
                plan.delete.push(slice);
            } else {
                kept.push((slice, held));
            }
        }
        order.retain(|a| wanted.contains_key(a));
        let mut fresh = order.into_iter().filter_map(|a| wanted.remove(&a));
        for (slice, held) in &mut kept {
            let room = MAX_ENDPOINTS_PER_SLICE.saturating_sub(held.len());
            held.extend(fresh.by_ref().take(room));
            let same_endpoints = slice.endpoints.as_deref().unwrap_or_default() == held.as_slice();
            let same_labels = slice.metadata.labels.as_ref() == Some(&wanted_labels);
            if !(same_endpoints && same_labels) {
                let mut updated = (**slice).clone();
                updated.endpoints = Some(std::mem::take(held));
                updated.metadata.labels = Some(wanted_labels.clone());
                plan.update.push(updated);
            }
        }
        let rest: Vec<Endpoint> = fresh.collect();
        for chunk in rest.chunks(MAX_ENDPOINTS_PER_SLICE) {
            plan.create.push(new_slice(service, &ports, chunk.to_vec()));
        }
        if kept.is_empty() && rest.is_empty() {
            plan.create.push(new_slice(service, &ports, Vec::new()));
        }
    }
    plan.delete.extend(existing);
    plan
}

/// The pods (by name) a set of slices points at, so a pod that stops matching the selector
/// still re-syncs the services that list it.
pub fn pods_listed(slice: &EndpointSlice) -> BTreeSet<String> {
    slice
        .endpoints
        .iter()
        .flatten()
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect()
}
