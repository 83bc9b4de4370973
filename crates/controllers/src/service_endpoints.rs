//! What the EndpointSlice and Endpoints controllers both see in a Service's pods: which pods
//! back it, their ports (named target ports resolved per pod), hostnames, and the trigger time.
//! Pure functions over cached objects, as upstream's `endpointutil`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::replicaset::pods::is_ready;

/// The annotation upstream writes with the time of the last pod or service change the
/// endpoints reflect (used for the network-programming latency metric).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// A service port resolved against one pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResolvedPort {
    pub name: Option<String>,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// The services whose endpoints this controller keeps: those with a non-empty selector that
/// are not ExternalName.
pub fn has_selector(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() != Some("ExternalName")
        && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// Whether the service's selector selects the pod (a map selector: every pair must match).
pub fn selects(service: &Service, pod: &Pod) -> bool {
    if !has_selector(service) || service.namespace() != pod.namespace() {
        return false;
    }
    let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
    let labels = pod.metadata.labels.as_ref();
    selector
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pods the service selects, in name order so results are stable.
pub fn selected_pods(service: &Service, pods: &Store<Pod>) -> Vec<Arc<Pod>> {
    let mut selected = pods.state_filter(|p| selects(service, p));
    selected.sort_by_key(|p| p.name_any());
    selected
}

/// Upstream's `ShouldPodBeInEndpoints`: not finished, has an address, and (unless
/// `include_terminating`) not being deleted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if ipv4_address(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IPv4 address (r8s serves single-stack IPv4 services).
pub fn ipv4_address(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let primary = status.pod_ip.iter();
    let all = status.pod_ips.iter().flatten().map(|ip| &ip.ip);
    primary
        .chain(all)
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .cloned()
}

/// Whether the pod counts as ready for the service (publishNotReadyAddresses counts every pod).
pub fn serving(service: &Service, pod: &Pod) -> bool {
    publishes_not_ready(service) || is_ready(pod)
}

pub fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The service's ports as this pod serves them. A named target port the pod does not declare
/// drops that port for this pod, as upstream's `podutil.FindPort` failing does.
pub fn resolve_ports(service: &Service, pod: &Pod) -> Vec<ResolvedPort> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
    let mut resolved: Vec<ResolvedPort> = ports
        .into_iter()
        .flatten()
        .filter_map(|port| {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            let number = match &port.target_port {
                None => port.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => match name.parse::<i32>() {
                    Ok(n) => n,
                    Err(_) => container_port(pod, name, &protocol)?,
                },
            };
            Some(ResolvedPort {
                name: port.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol,
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect();
    resolved.sort();
    resolved
}

fn container_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}

/// The pod's DNS hostname within the service, when its subdomain names the service.
pub fn hostname(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()).then(|| hostname.clone())
}

/// The newest change among the service and the pods it selects: their creation and their
/// conditions' transitions. Derived from the objects so repeated syncs agree.
pub fn last_change(service: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
    let created = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.creation_timestamp.as_ref().map(|t| t.0)
    };
    let pod_times = pods.iter().flat_map(|p| {
        let transitions = p
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0));
        let deleted = p.metadata.deletion_timestamp.as_ref().map(|t| t.0);
        created(&p.metadata)
            .into_iter()
            .chain(transitions)
            .chain(deleted)
    });
    created(&service.metadata)
        .into_iter()
        .chain(pod_times)
        .max()
}

/// RFC 3339 in UTC, as upstream formats the trigger time.
pub fn format_time(time: Timestamp) -> String {
    time.to_string()
}
