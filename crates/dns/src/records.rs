//! The cluster's DNS data: one immutable snapshot of Services and EndpointSlices, indexed the way
//! queries look them up (namespace → service → endpoints, and IP → PTR names). Built anew on every
//! change and swapped in whole, so a query never sees half an update.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// CoreDNS's kubernetes plugin answers with a 5 s TTL unless told otherwise.
pub const DEFAULT_TTL: u32 = 5;
/// CoreDNS caps the `ttl` option at one hour.
const MAX_TTL: u32 = 3600;
/// The label an EndpointSlice names its Service by.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The zone the server is authoritative for (`cluster.local.`) and the TTL of its records.
#[derive(Clone, Debug)]
pub struct ClusterZone {
    pub(crate) origin: Name,
    pub(crate) ttl: u32,
}

impl ClusterZone {
    /// `domain` is the cluster domain with or without the trailing dot; `ttl` is capped at an
    /// hour as CoreDNS does.
    pub fn new(domain: &str, ttl: u32) -> anyhow::Result<Self> {
        let trimmed = domain.trim_end_matches('.');
        anyhow::ensure!(!trimmed.is_empty(), "the cluster domain is empty");
        let mut origin = Name::from_ascii(trimmed)
            .with_context(|| format!("cluster domain {domain:?} is not a domain name"))?
            .to_lowercase();
        origin.set_fqdn(true);
        Ok(Self {
            origin,
            ttl: ttl.min(MAX_TTL),
        })
    }

    /// `<label>.<label>…<zone>.`, or `None` when a label is not a valid DNS label (too long).
    pub(crate) fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut name = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
        name.set_fqdn(false);
        name.append_domain(&self.origin).ok()
    }

    /// `<service>.<namespace>.svc.<zone>.`
    pub(crate) fn service_name(&self, service: &str, namespace: &str) -> Option<Name> {
        self.name(&[service, namespace, "svc"])
    }
}

/// What a Service name resolves to, by Service type.
#[derive(Debug)]
pub(crate) enum ServiceKind {
    /// ClusterIP, NodePort and LoadBalancer: the (one or two, dual-stack) cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the ready endpoints' addresses.
    Headless,
    /// A CNAME to `spec.externalName`, or an address when that is an IP literal.
    ExternalName(ExternalTarget),
}

#[derive(Clone, Debug)]
pub(crate) enum ExternalTarget {
    Name(Name),
    Address(IpAddr),
}

/// A port as SRV queries match it: `_<name>._<protocol>`, lowercased.
#[derive(Debug)]
pub(crate) struct PortRecord {
    pub name: String,
    pub protocol: String,
    /// `None` stands for a Service or EndpointSlice without ports: its addresses still resolve,
    /// but it has no SRV records (CoreDNS's port -1).
    pub port: Option<u16>,
}

#[derive(Debug)]
pub(crate) struct EndpointRecord {
    pub ip: IpAddr,
    /// The endpoint's `hostname`, or its dashed IP (`10-1-2-3`) when it has none.
    pub hostname: String,
    /// The ports of the EndpointSlice the endpoint came from.
    pub ports: Arc<[PortRecord]>,
}

#[derive(Debug)]
pub(crate) struct ServiceRecord {
    pub kind: ServiceKind,
    pub ports: Vec<PortRecord>,
    pub endpoints: Vec<EndpointRecord>,
}

/// An immutable snapshot of the cluster's DNS records; [`Records::answer`] answers queries from it.
#[derive(Debug)]
pub struct Records {
    pub(crate) zone: ClusterZone,
    /// The SOA serial: CoreDNS uses the Unix time of the last change.
    pub(crate) serial: u32,
    /// False until the first full list of Services and EndpointSlices: cluster names then answer
    /// SERVFAIL rather than a false NXDOMAIN.
    pub(crate) synced: bool,
    /// namespace → service name → record. A namespace is known when it holds a Service or an
    /// EndpointSlice; the server watches no Namespaces.
    pub(crate) namespaces: HashMap<String, HashMap<String, ServiceRecord>>,
    /// ClusterIP → its Service's name; checked before `endpoint_ptr`, as CoreDNS does.
    pub(crate) service_ptr: HashMap<IpAddr, Name>,
    /// Endpoint IP → `<hostname>.<service>.<ns>.svc.<zone>.` of each Service it backs.
    pub(crate) endpoint_ptr: HashMap<IpAddr, Vec<Name>>,
    /// Addresses for `ns.dns.<zone>` (the NS of the zone): the `kube-system/kube-dns` Service's.
    pub(crate) nameservers: Vec<IpAddr>,
}

impl Records {
    /// Records for a server that has not yet listed the cluster: every cluster name is SERVFAIL.
    pub fn unsynced(zone: ClusterZone) -> Self {
        Self {
            zone,
            serial: 0,
            synced: false,
            namespaces: HashMap::new(),
            service_ptr: HashMap::new(),
            endpoint_ptr: HashMap::new(),
            nameservers: Vec::new(),
        }
    }

    /// Indexes Services and EndpointSlices (discovery.k8s.io/v1). `serial` becomes the SOA serial.
    pub fn new(
        zone: ClusterZone,
        services: impl IntoIterator<Item = impl Borrow<Service>>,
        slices: impl IntoIterator<Item = impl Borrow<EndpointSlice>>,
        serial: u32,
    ) -> Self {
        let mut records = Self::unsynced(zone);
        records.serial = serial;
        records.synced = true;

        // Sorted, so that when two Services claim one ClusterIP the PTR is stable.
        let mut services: Vec<_> = services.into_iter().collect();
        services.sort_by_key(|s| {
            let meta = &s.borrow().metadata;
            (meta.namespace.clone(), meta.name.clone())
        });
        for service in &services {
            records.add_service(service.borrow());
        }
        for slice in slices {
            records.add_slice(slice.borrow());
        }
        records
    }

    fn add_service(&mut self, service: &Service) {
        let (Some(name), Some(namespace)) = (&service.metadata.name, &service.metadata.namespace)
        else {
            return;
        };
        let (name, namespace) = (name.to_ascii_lowercase(), namespace.to_ascii_lowercase());
        let Some(spec) = &service.spec else { return };
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            let Some(target) = spec.external_name.as_deref().and_then(external_target) else {
                return;
            };
            ServiceKind::ExternalName(target)
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            let ips = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|ip| ip.parse::<IpAddr>().ok())
                .fold(Vec::new(), |mut ips, ip| {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                    ips
                });
            ServiceKind::ClusterIp(ips)
        };
        if let (ServiceKind::ClusterIp(ips), Some(fqdn)) =
            (&kind, self.zone.service_name(&name, &namespace))
        {
            for ip in ips {
                self.service_ptr.entry(*ip).or_insert_with(|| fqdn.clone());
            }
            if (namespace.as_str(), name.as_str()) == ("kube-system", "kube-dns") {
                self.nameservers = ips.clone();
            }
        }
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| PortRecord {
                name: p.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                port: u16::try_from(p.port).ok(),
            })
            .collect();
        self.namespaces.entry(namespace).or_default().insert(
            name,
            ServiceRecord {
                kind,
                ports,
                endpoints: Vec::new(),
            },
        );
    }

    fn add_slice(&mut self, slice: &EndpointSlice) {
        let Some(namespace) = &slice.metadata.namespace else {
            return;
        };
        let namespace = namespace.to_ascii_lowercase();
        let services = self.namespaces.entry(namespace.clone()).or_default();
        let Some(service_name) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(|s| s.to_ascii_lowercase())
        else {
            return;
        };
        let Some(service) = services.get_mut(&service_name) else {
            return;
        };
        if matches!(service.kind, ServiceKind::ExternalName(_)) {
            return;
        }
        let ports: Arc<[PortRecord]> = match slice.ports.as_deref() {
            None | Some([]) => Arc::new([PortRecord {
                name: String::new(),
                protocol: String::new(),
                port: None,
            }]),
            Some(ports) => ports
                .iter()
                .map(|p| PortRecord {
                    name: p.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
                    protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                    port: p.port.and_then(|p| u16::try_from(p).ok()),
                })
                .collect(),
        };
        for endpoint in slice.endpoints.iter().flatten() {
            // Not ready only when it says so: a missing condition means ready, and the
            // EndpointSlice controller already reports publishNotReadyAddresses endpoints ready.
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready);
            if ready == Some(false) {
                continue;
            }
            // FQDN-typed slices carry names, not addresses: nothing to answer with.
            for ip in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
                let hostname = match endpoint.hostname.as_deref() {
                    Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                    _ => dashed_ip(ip),
                };
                if let Some(fqdn) = self
                    .zone
                    .name(&[&hostname, &service_name, &namespace, "svc"])
                {
                    let names = self.endpoint_ptr.entry(ip).or_default();
                    if !names.contains(&fqdn) {
                        names.push(fqdn);
                    }
                }
                service.endpoints.push(EndpointRecord {
                    ip,
                    hostname,
                    ports: ports.clone(),
                });
            }
        }
    }
}

/// `spec.externalName` as a CNAME target (always absolute) or an IP literal.
fn external_target(external_name: &str) -> Option<ExternalTarget> {
    if let Ok(ip) = external_name.parse::<IpAddr>() {
        return Some(ExternalTarget::Address(ip));
    }
    let trimmed = external_name.trim_end_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    let mut name = Name::from_ascii(trimmed).ok()?;
    name.set_fqdn(true);
    Some(ExternalTarget::Name(name))
}

/// The endpoint name CoreDNS gives an endpoint without a hostname: `10-1-2-3`, or for IPv6 the
/// colons dashed (`fd00--1`) with a trailing `0` when the address ends in `::`.
pub(crate) fn dashed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string().replace('.', "-"),
        IpAddr::V6(ip) => {
            let dashed = ip.to_string().replace(':', "-");
            if dashed.ends_with('-') {
                dashed + "0"
            } else {
                dashed
            }
        }
    }
}

/// The IP a pod name such as `10-1-2-3` or `fd00--1` stands for, as CoreDNS reads it: three
/// dashes and no `--` is IPv4, anything else is IPv6 with dashes for colons.
pub(crate) fn pod_ip(label: &str) -> Option<IpAddr> {
    let text = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".")
    } else {
        label.replace('-', ":")
    };
    text.parse().ok()
}
