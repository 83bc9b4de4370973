//! Ingress backends → what the proxy dials: a Service port resolved to the ready endpoints of
//! its EndpointSlices, at their target ports, or the reason it cannot be (for the 503).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{IngressBackend, ServiceBackendPort};

use crate::routes::Decision;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service port's ready endpoints, with a round-robin cursor.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/name:port`, for logs and messages.
    service: String,
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Backend {
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Sorted, never empty.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The next endpoint, round-robin.
    pub fn pick(&self) -> SocketAddr {
        debug_assert!(!self.endpoints.is_empty(), "a backend has endpoints");
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        self.endpoints[turn % self.endpoints.len()]
    }
}

#[derive(Debug)]
pub(crate) enum Target {
    Ready(Backend),
    Unavailable(String),
}

impl Target {
    pub(crate) fn decision(&self) -> Decision<'_> {
        match self {
            Target::Ready(backend) => Decision::Proxy(backend),
            Target::Unavailable(why) => Decision::Unavailable(why),
        }
    }
}

/// Backends resolved once per build, shared by every route naming the same Service port.
pub(crate) struct Targets<'a> {
    services: &'a [Service],
    slices: &'a [EndpointSlice],
    resolved: HashMap<String, Arc<Target>>,
}

impl<'a> Targets<'a> {
    pub(crate) fn new(services: &'a [Service], slices: &'a [EndpointSlice]) -> Targets<'a> {
        Targets {
            services,
            slices,
            resolved: HashMap::new(),
        }
    }

    pub(crate) fn resolve(&mut self, namespace: &str, backend: &IngressBackend) -> Arc<Target> {
        let Some(service) = &backend.service else {
            return Arc::new(Target::Unavailable(
                "the backend is a resource, which the r8s ingress controller does not serve".into(),
            ));
        };
        let key = format!("{namespace}/{}:{}", service.name, port_text(&service.port));
        if let Some(target) = self.resolved.get(&key) {
            return target.clone();
        }
        let target = Arc::new(self.target(namespace, &service.name, &service.port, &key));
        self.resolved.insert(key, target.clone());
        target
    }

    fn target(
        &self,
        namespace: &str,
        name: &str,
        port: &Option<ServiceBackendPort>,
        key: &str,
    ) -> Target {
        let Some(service) = self.services.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        }) else {
            return Target::Unavailable(format!("service {namespace}/{name} not found"));
        };
        let spec = service.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            return Target::Unavailable(format!(
                "service {namespace}/{name} is of type ExternalName, which the r8s ingress controller does not proxy to"
            ));
        }
        let Some(service_port) = spec.ports.iter().flatten().find(|p| names_port(port, p)) else {
            return Target::Unavailable(format!(
                "service {namespace}/{name} has no port {}",
                port_text(port)
            ));
        };
        let endpoints = ready_endpoints(self.slices, namespace, name, service_port);
        if endpoints.is_empty() {
            return Target::Unavailable(format!("service {key} has no ready endpoints"));
        }
        Target::Ready(Backend {
            service: key.to_owned(),
            endpoints,
            next: AtomicUsize::new(0),
        })
    }
}

fn names_port(port: &Option<ServiceBackendPort>, candidate: &ServicePort) -> bool {
    match port {
        Some(ServiceBackendPort {
            number: Some(number),
            ..
        }) => candidate.port == *number,
        Some(ServiceBackendPort {
            name: Some(name), ..
        }) => candidate.name.as_deref() == Some(name),
        // Validation requires one of the two; were neither set, the first port is the guess.
        _ => true,
    }
}

fn port_text(port: &Option<ServiceBackendPort>) -> String {
    match port {
        Some(ServiceBackendPort {
            number: Some(number),
            ..
        }) => number.to_string(),
        Some(ServiceBackendPort {
            name: Some(name), ..
        }) => name.clone(),
        _ => String::new(),
    }
}

/// The ready endpoints of one Service port, at their target ports: `ready` unset counts as
/// ready, as the EndpointSlice API says; only an endpoint's first address is used, as upstream
/// consumers do.
fn ready_endpoints(
    slices: &[EndpointSlice],
    namespace: &str,
    service: &str,
    port: &ServicePort,
) -> Vec<SocketAddr> {
    let port_name = port.name.as_deref().unwrap_or("");
    let mut endpoints = Vec::new();
    for slice in slices {
        let meta = &slice.metadata;
        let owned = meta.namespace.as_deref() == Some(namespace)
            && meta
                .labels
                .as_ref()
                .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                == Some(service);
        if !owned || !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(target_port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            if conditions.ready == Some(false) {
                continue;
            }
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            endpoints.push(SocketAddr::new(ip, target_port));
        }
    }
    endpoints.sort();
    endpoints.dedup();
    endpoints
}
