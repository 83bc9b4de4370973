//! Answering one query from a [`Records`] snapshot, without a network: the shape of names and
//! answers follows CoreDNS's kubernetes plugin (`parse.go`, `kubernetes.go`, `backend_lookup.go`)
//! with `pods insecure`, and reverse zones falling through when no Service or endpoint owns the IP.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::records::{ExternalTarget, Records, ServiceKind, pod_ip};

/// The schema version CoreDNS reports at `dns-version.<zone>` (the specification's TXT record).
const SCHEMA_VERSION: &str = "1.1.0";
/// CoreDNS gives the schema-version record its own, long TTL.
const SCHEMA_VERSION_TTL: u32 = 28800;
/// CoreDNS caps the SOA's own TTL at five minutes.
const MAX_SOA_TTL: u32 = 300;
/// How many CNAMEs inside the zone are followed before giving up (CoreDNS: 10).
const MAX_CNAME_CHAIN: usize = 10;

/// The name does not exist (NXDOMAIN), as opposed to existing with no data of the asked type.
struct NxDomain;

/// What a name in the zone stands for, before it is shaped into records of the asked type.
enum Item {
    /// An address, with the port (for SRV) and the name SRV records point at for it.
    Address {
        ip: IpAddr,
        port: Option<u16>,
        target: Name,
    },
    /// An ExternalName Service: a CNAME to this name.
    Alias(Name),
}

/// The port and protocol labels of an SRV-style name (`_http._tcp`), or the endpoint label.
#[derive(Default)]
struct Selector<'a> {
    endpoint: Option<&'a str>,
    port: Option<&'a str>,
    protocol: Option<&'a str>,
}

impl Records {
    /// The answer to `query`, or `None` when the name is not this server's to answer (outside the
    /// cluster domain, or a reverse name no Service or endpoint owns) and should be forwarded.
    /// Malformed queries (not one question, not a standard query) get an error answer.
    pub fn answer(&self, query: &Message) -> Option<Message> {
        let mut response = Message::response(query.id, query.op_code);
        response.metadata.recursion_desired = query.recursion_desired;
        response.metadata.checking_disabled = query.checking_disabled;
        if query.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return Some(response);
        }
        let [question] = query.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return Some(response);
        };
        response.add_query(question.clone());
        let lower = question.name().to_lowercase();
        let Some(relative) = self.relative(&lower) else {
            return self.reverse(question, &lower, response);
        };
        if question.query_class() != DNSClass::IN {
            response.metadata.response_code = ResponseCode::Refused;
            return Some(response);
        }
        response.metadata.authoritative = true;
        if !self.synced {
            response.metadata.response_code = ResponseCode::ServFail;
            return Some(response);
        }
        let labels: Vec<&str> = relative.iter().map(String::as_str).collect();
        match self.records(question, &labels, &mut response) {
            Err(NxDomain) => {
                response.metadata.response_code = ResponseCode::NXDomain;
                response.add_authority(self.soa());
            }
            Ok(())
                if response.answers.is_empty()
                    && response.response_code == ResponseCode::NoError =>
            {
                response.add_authority(self.soa());
            }
            Ok(()) => {}
        }
        Some(response)
    }

    /// The CNAME target an answer ends on when it leaves the cluster domain (an ExternalName
    /// Service): the server resolves it upstream and appends the result, as CoreDNS does.
    pub(crate) fn external_alias(&self, response: &Message) -> Option<Name> {
        let query_type = response.queries.first()?.query_type();
        if response.response_code != ResponseCode::NoError
            || !matches!(
                query_type,
                RecordType::A | RecordType::AAAA | RecordType::TXT
            )
        {
            return None;
        }
        let RData::CNAME(CNAME(target)) = &response.answers.last()?.data else {
            return None;
        };
        (!self.zone.origin.zone_of(&target.to_lowercase())).then(|| target.clone())
    }

    /// The labels of `lower` left of the cluster domain, or `None` when it is outside it.
    fn relative(&self, lower: &Name) -> Option<Vec<String>> {
        if !self.zone.origin.zone_of(lower) {
            return None;
        }
        let count = lower.iter().count() - self.zone.origin.iter().count();
        Some(
            lower
                .iter()
                .take(count)
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect(),
        )
    }

    /// Fills the answer (and additional) section for a name inside the zone.
    fn records(
        &self,
        question: &Query,
        labels: &[&str],
        response: &mut Message,
    ) -> Result<(), NxDomain> {
        let owner = question.name();
        let ttl = self.zone.ttl;
        match question.query_type() {
            RecordType::A | RecordType::AAAA => {
                let items = self.lookup(labels)?;
                self.follow(
                    owner,
                    items,
                    question.query_type(),
                    0,
                    &mut response.answers,
                );
            }
            RecordType::TXT if labels == ["dns-version"] => {
                let txt = TXT::new(vec![SCHEMA_VERSION.to_owned()]);
                response.add_answer(Record::from_rdata(
                    owner.clone(),
                    SCHEMA_VERSION_TTL,
                    RData::TXT(txt),
                ));
            }
            RecordType::TXT => {
                let items = self.lookup(labels)?;
                self.follow(owner, items, RecordType::TXT, 0, &mut response.answers);
            }
            RecordType::CNAME => {
                let items = self.lookup(labels)?;
                if let Some(Item::Alias(target)) = items.first() {
                    let cname = RData::CNAME(CNAME(target.clone()));
                    response.add_answer(Record::from_rdata(owner.clone(), ttl, cname));
                }
            }
            RecordType::SRV => {
                let items = self.lookup(labels)?;
                self.srv(owner, &items, response);
            }
            RecordType::SOA if labels.is_empty() => {
                let mut soa = self.soa();
                soa.name = owner.clone();
                response.add_answer(soa);
            }
            RecordType::NS if labels.is_empty() => {
                let ns = self.nameserver_name();
                response.add_answer(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::NS(NS(ns.clone())),
                ));
                for ip in &self.nameservers {
                    response.add_additional(address(ns.clone(), *ip, ttl));
                }
            }
            RecordType::AXFR | RecordType::IXFR => {
                response.metadata.response_code = ResponseCode::Refused;
            }
            // Any other type: NODATA when the name exists, else NXDOMAIN.
            _ => {
                self.lookup(labels)?;
            }
        }
        Ok(())
    }

    /// A, AAAA or TXT records for `owner`: its addresses of the asked family, and for an
    /// ExternalName the CNAME, followed while the target stays inside the zone.
    fn follow(
        &self,
        owner: &Name,
        items: Vec<Item>,
        query_type: RecordType,
        depth: usize,
        answers: &mut Vec<Record>,
    ) {
        let mut seen = HashSet::new();
        for item in items {
            match item {
                Item::Address { ip, .. } => {
                    let wanted = match ip {
                        IpAddr::V4(_) => query_type == RecordType::A,
                        IpAddr::V6(_) => query_type == RecordType::AAAA,
                    };
                    if wanted && seen.insert(ip) {
                        answers.push(address(owner.clone(), ip, self.zone.ttl));
                    }
                }
                Item::Alias(target) => {
                    // `x CNAME x` is a loop; CoreDNS drops it the same way.
                    if target.eq_ignore_root(owner) || depth >= MAX_CNAME_CHAIN {
                        continue;
                    }
                    let cname = RData::CNAME(CNAME(target.clone()));
                    answers.push(Record::from_rdata(owner.clone(), self.zone.ttl, cname));
                    let next = self.relative(&target.to_lowercase()).and_then(|labels| {
                        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                        self.lookup(&labels).ok()
                    });
                    if let Some(next) = next {
                        self.follow(&target, next, query_type, depth + 1, answers);
                    }
                }
            }
        }
    }

    /// SRV records with the targets' addresses as additional records. Weights split 100 evenly
    /// across the candidates, at least 1, as CoreDNS computes them.
    fn srv(&self, owner: &Name, items: &[Item], response: &mut Message) {
        let candidates = items
            .iter()
            .filter(|i| matches!(i, Item::Address { .. }))
            .count();
        let weight = u16::try_from(100 / candidates.max(1)).unwrap_or(1).max(1);
        let mut records = HashSet::new();
        let mut addresses = HashSet::new();
        for item in items {
            let Item::Address {
                ip,
                port: Some(port),
                target,
            } = item
            else {
                continue;
            };
            if records.insert((target.clone(), *port)) {
                let srv = SRV::new(0, weight, *port, target.clone());
                response.add_answer(Record::from_rdata(
                    owner.clone(),
                    self.zone.ttl,
                    RData::SRV(srv),
                ));
            }
            if addresses.insert((target.clone(), *ip)) {
                response.add_additional(address(target.clone(), *ip, self.zone.ttl));
            }
        }
    }

    /// What a name inside the zone stands for, by its labels left of the zone (lowercase).
    fn lookup(&self, labels: &[&str]) -> Result<Vec<Item>, NxDomain> {
        match labels {
            [] | ["dns-version"] | ["svc"] | ["pod"] => Ok(Vec::new()),
            ["ns", "dns"] => {
                let target = self.nameserver_name();
                Ok(self
                    .nameservers
                    .iter()
                    .map(|ip| Item::Address {
                        ip: *ip,
                        port: None,
                        target: target.clone(),
                    })
                    .collect())
            }
            [namespace, "svc" | "pod"] => self
                .namespaces
                .contains_key(*namespace)
                .then(Vec::new)
                .ok_or(NxDomain),
            [pod, namespace, "pod"] => {
                let ip = pod_ip(pod).ok_or(NxDomain)?;
                let target = self.zone.name(&[pod, namespace, "pod"]).ok_or(NxDomain)?;
                Ok(vec![Item::Address {
                    ip,
                    port: None,
                    target,
                }])
            }
            [service, namespace, "svc"] => self.service(namespace, service, &Selector::default()),
            [endpoint, service, namespace, "svc"] => {
                let selector = Selector {
                    endpoint: Some(endpoint),
                    ..Selector::default()
                };
                self.service(namespace, service, &selector)
            }
            [port, protocol, service, namespace, "svc"] => {
                let selector = Selector {
                    port: strip_underscore(port),
                    protocol: strip_underscore(protocol),
                    ..Selector::default()
                };
                self.service(namespace, service, &selector)
            }
            _ => Err(NxDomain),
        }
    }

    /// A Service's items: its ClusterIPs, its ready endpoints (headless, or when an endpoint is
    /// named), or its ExternalName. No matching port or endpoint is NXDOMAIN.
    fn service(
        &self,
        namespace: &str,
        name: &str,
        selector: &Selector<'_>,
    ) -> Result<Vec<Item>, NxDomain> {
        let service = self
            .namespaces
            .get(namespace)
            .and_then(|services| services.get(name))
            .ok_or(NxDomain)?;
        let service_name = self.zone.service_name(name, namespace).ok_or(NxDomain)?;
        let port_matches = |port_name: &str, protocol: &str| {
            selector.port.is_none_or(|p| p == port_name)
                && selector.protocol.is_none_or(|p| p == protocol)
        };
        match &service.kind {
            ServiceKind::ExternalName(target) => {
                if selector.endpoint.is_some()
                    || selector.port.is_some()
                    || selector.protocol.is_some()
                {
                    return Err(NxDomain);
                }
                Ok(vec![match target {
                    ExternalTarget::Name(name) => Item::Alias(name.clone()),
                    ExternalTarget::Address(ip) => Item::Address {
                        ip: *ip,
                        port: None,
                        target: service_name,
                    },
                }])
            }
            ServiceKind::ClusterIp(ips) if selector.endpoint.is_none() => {
                let ports: Vec<_> = service
                    .ports
                    .iter()
                    .filter(|p| port_matches(&p.name, &p.protocol))
                    .collect();
                if ports.is_empty() {
                    return Err(NxDomain);
                }
                Ok(ports
                    .iter()
                    .flat_map(|port| {
                        ips.iter().map(|ip| Item::Address {
                            ip: *ip,
                            port: port.port,
                            target: service_name.clone(),
                        })
                    })
                    .collect())
            }
            // Headless, or an endpoint named under any Service (CoreDNS answers both alike).
            _ => {
                let mut items = Vec::new();
                for endpoint in &service.endpoints {
                    if selector.endpoint.is_some_and(|e| e != endpoint.hostname) {
                        continue;
                    }
                    let labels = [endpoint.hostname.as_str(), name, namespace, "svc"];
                    let Some(target) = self.zone.name(&labels) else {
                        continue;
                    };
                    for port in endpoint.ports.iter() {
                        if port_matches(&port.name, &port.protocol) {
                            items.push(Item::Address {
                                ip: endpoint.ip,
                                port: port.port,
                                target: target.clone(),
                            });
                        }
                    }
                }
                if items.is_empty() {
                    return Err(NxDomain);
                }
                Ok(items)
            }
        }
    }

    /// The PTR answer for a Service's ClusterIP or an endpoint's IP; `None` (forward) otherwise.
    fn reverse(&self, question: &Query, lower: &Name, mut response: Message) -> Option<Message> {
        if question.query_type() != RecordType::PTR || question.query_class() != DNSClass::IN {
            return None;
        }
        let net = lower.parse_arpa_name().ok()?;
        if net.prefix_len() != net.max_prefix_len() {
            return None;
        }
        let ip = net.addr();
        let names = match self.service_ptr.get(&ip) {
            Some(name) => std::slice::from_ref(name),
            None => self.endpoint_ptr.get(&ip)?.as_slice(),
        };
        response.metadata.authoritative = true;
        for name in names {
            response.add_answer(Record::from_rdata(
                question.name().clone(),
                self.zone.ttl,
                RData::PTR(PTR(name.clone())),
            ));
        }
        Some(response)
    }

    /// The zone's SOA, as CoreDNS shapes it (`ns.dns.<zone>`, `hostmaster.<zone>`).
    fn soa(&self) -> Record {
        let origin = &self.zone.origin;
        let hostmaster = self
            .zone
            .name(&["hostmaster"])
            .unwrap_or_else(|| origin.clone());
        let soa = SOA::new(
            self.nameserver_name(),
            hostmaster,
            self.serial,
            7200,
            1800,
            86400,
            self.zone.ttl,
        );
        Record::from_rdata(
            origin.clone(),
            self.zone.ttl.min(MAX_SOA_TTL),
            RData::SOA(soa),
        )
    }

    fn nameserver_name(&self) -> Name {
        self.zone
            .name(&["ns", "dns"])
            .unwrap_or_else(|| self.zone.origin.clone())
    }
}

/// An A or AAAA record for `ip`.
fn address(name: Name, ip: IpAddr, ttl: u32) -> Record {
    let data = match ip {
        IpAddr::V4(ip) => RData::A(ip.into()),
        IpAddr::V6(ip) => RData::AAAA(ip.into()),
    };
    Record::from_rdata(name, ttl, data)
}

/// `_http` → `http`; a bare `_` (or empty label) matches any port or protocol, as in CoreDNS.
fn strip_underscore(label: &str) -> Option<&str> {
    let stripped = label.strip_prefix('_').unwrap_or(label);
    (!stripped.is_empty()).then_some(stripped)
}

#[cfg(test)]
mod tests;
