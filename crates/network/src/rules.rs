//! Services and EndpointSlices → one nftables table, as kube-proxy's nftables mode lays it out:
//! the `services` chain looks each packet up in two verdict maps (ClusterIPs, external IPs and
//! load-balancer addresses by address, protocol and port; NodePorts by protocol and port) and
//! goes to the service's chain, which picks an endpoint at random (or the one a client stuck
//! to, for `sessionAffinity: ClientIP`) and DNATs to it. The table is kept as named pieces
//! ([`Ruleset`]) so that a change is applied as a transaction of only what differs: with
//! thousands of services, rewriting the whole table would take longer than the change. Packets that need it are
//! marked for masquerade: hairpin (a pod reaching itself through its service), traffic from
//! outside the pod network to a ClusterIP, and external traffic with
//! `externalTrafficPolicy: Cluster`. A service without endpoints has no rule: its address falls
//! to the node's unreachable route, so clients are refused at once.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

/// The table r8s owns.
pub const TABLE: &str = "r8s-proxy";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinity: ClientIP` without a timeout: upstream's default, 3 hours.
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

/// What the rules are made from.
pub struct Input<'a> {
    pub node_name: &'a str,
    /// The pod network: traffic to a ClusterIP from outside it is masqueraded.
    pub cluster_cidr: &'a str,
    pub services: &'a [Arc<Service>],
    pub slices: &'a [Arc<EndpointSlice>],
}

/// The table as named pieces. Two of them compare equal when the table would be the same.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Client-IP affinity sets: name → declaration.
    sets: BTreeMap<String, String>,
    /// Service and endpoint chains: name → rules.
    chains: BTreeMap<String, Vec<String>>,
    /// `address . protocol . port` → verdict: ClusterIPs, external and load-balancer IPs.
    service_ips: BTreeMap<String, String>,
    /// `protocol . port` → verdict: NodePorts, on the node's own addresses.
    node_ports: BTreeMap<String, String>,
}

/// EndpointSlices by the namespace and name of their service.
type SliceIndex<'a> = HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>;

fn index_slices<'a>(slices: &'a [Arc<EndpointSlice>]) -> SliceIndex<'a> {
    let mut index: SliceIndex<'a> = HashMap::new();
    for slice in slices {
        let meta = &slice.metadata;
        let service = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        if let (Some(namespace), Some(service)) = (meta.namespace.as_deref(), service) {
            index
                .entry((namespace, service.as_str()))
                .or_default()
                .push(slice);
        }
    }
    index
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    ip: String,
    port: i32,
    local: bool,
}

/// A short, stable chain name for `key`.
fn chain(prefix: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// The endpoints of one service port: ready ones, else (as upstream falls back) the serving
/// ones that are terminating.
fn endpoints(
    node_name: &str,
    slices: &SliceIndex<'_>,
    namespace: &str,
    service: &str,
    port_name: &str,
) -> Vec<Endpoint> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices.get(&(namespace, service)).into_iter().flatten() {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let Some(ip) = endpoint.addresses.first() else {
                continue;
            };
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            let is_ready = conditions.ready != Some(false);
            let serving = conditions.serving.unwrap_or(is_ready);
            let is_terminating = conditions.terminating.unwrap_or(false);
            let found = Endpoint {
                ip: ip.clone(),
                port,
                local: endpoint.node_name.as_deref() == Some(node_name),
            };
            if is_ready && !is_terminating {
                ready.push(found);
            } else if serving && is_terminating {
                terminating.push(found);
            }
        }
    }
    let mut chosen = if ready.is_empty() { terminating } else { ready };
    chosen.sort_by(|a, b| (&a.ip, a.port).cmp(&(&b.ip, b.port)));
    chosen.dedup();
    chosen
}

/// The table for these services and endpoints.
pub fn render(input: &Input<'_>) -> Ruleset {
    let slices = index_slices(input.slices);
    let mut ruleset = Ruleset::default();
    for service in input.services {
        render_service(input, &slices, service, &mut ruleset);
    }
    ruleset
}

/// The chains every table has, whatever the services.
const BASE_CHAINS: &str = "  chain nat-prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump services
  }
  chain nat-output {
    type nat hook output priority -100; policy accept;
    jump services
  }
  chain nat-postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    meta mark & 0x4000 == 0x4000 masquerade fully-random
  }
  chain mark-for-masquerade {
    meta mark set meta mark | 0x4000
  }
  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips
    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
  }
";

const SERVICE_IPS: &str = "service-ips";
const NODE_PORTS: &str = "service-nodeports";

fn elements(map: &BTreeMap<String, String>) -> String {
    let all: Vec<String> = map.iter().map(|(k, v)| format!("{k} : {v}")).collect();
    all.join(", ")
}

impl Ruleset {
    /// The whole table: `add`, then `delete` and define it, so `nft -f` replaces it in one
    /// transaction whether or not it existed.
    pub fn full(&self) -> String {
        let mut out =
            format!("add table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
        for (name, declaration) in &self.sets {
            let _ = writeln!(out, "  set {name} {{ {declaration} }}");
        }
        out.push_str(BASE_CHAINS);
        for (name, rules) in &self.chains {
            let _ = writeln!(out, "  chain {name} {{");
            for rule in rules {
                let _ = writeln!(out, "    {rule}");
            }
            out.push_str("  }\n");
        }
        for (name, kind, map) in [
            (
                SERVICE_IPS,
                "ipv4_addr . inet_proto . inet_service",
                &self.service_ips,
            ),
            (NODE_PORTS, "inet_proto . inet_service", &self.node_ports),
        ] {
            let _ = write!(out, "  map {name} {{\n    type {kind} : verdict;\n");
            if !map.is_empty() {
                let _ = writeln!(out, "    elements = {{ {} }}", elements(map));
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }

    /// One transaction that turns the table `old` describes into this one (empty when they
    /// are the same): new pieces first, then the maps, then what nothing points to anymore.
    pub fn changes_from(&self, old: &Ruleset) -> String {
        let mut out = String::new();
        for (name, declaration) in &self.sets {
            if !old.sets.contains_key(name) {
                let _ = writeln!(out, "add set ip {TABLE} {name} {{ {declaration} }}");
            }
        }
        // Every new chain exists before any rule jumps to it.
        for name in self.chains.keys() {
            if !old.chains.contains_key(name) {
                let _ = writeln!(out, "add chain ip {TABLE} {name}");
            }
        }
        for (name, rules) in &self.chains {
            match old.chains.get(name) {
                Some(before) if before == rules => continue,
                Some(_) => {
                    let _ = writeln!(out, "flush chain ip {TABLE} {name}");
                }
                None => {}
            }
            for rule in rules {
                let _ = writeln!(out, "add rule ip {TABLE} {name} {rule}");
            }
        }
        for (map, new, old) in [
            (SERVICE_IPS, &self.service_ips, &old.service_ips),
            (NODE_PORTS, &self.node_ports, &old.node_ports),
        ] {
            let gone: Vec<&str> = old
                .iter()
                .filter(|(key, verdict)| new.get(*key) != Some(verdict))
                .map(|(key, _)| key.as_str())
                .collect();
            if !gone.is_empty() {
                let _ = writeln!(
                    out,
                    "delete element ip {TABLE} {map} {{ {} }}",
                    gone.join(", ")
                );
            }
            let added: BTreeMap<String, String> = new
                .iter()
                .filter(|(key, verdict)| old.get(*key) != Some(verdict))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !added.is_empty() {
                let _ = writeln!(
                    out,
                    "add element ip {TABLE} {map} {{ {} }}",
                    elements(&added)
                );
            }
        }
        // Removed chains may jump to each other: all are emptied before any is deleted.
        let removed: Vec<&String> = old
            .chains
            .keys()
            .filter(|name| !self.chains.contains_key(*name))
            .collect();
        for name in &removed {
            let _ = writeln!(out, "flush chain ip {TABLE} {name}");
        }
        for name in &removed {
            let _ = writeln!(out, "delete chain ip {TABLE} {name}");
        }
        for name in old.sets.keys() {
            if !self.sets.contains_key(name) {
                let _ = writeln!(out, "delete set ip {TABLE} {name}");
            }
        }
        out
    }
}

fn render_service(
    input: &Input<'_>,
    slices: &SliceIndex<'_>,
    service: &Service,
    ruleset: &mut Ruleset,
) {
    let (Some(spec), Some(namespace), Some(name)) = (
        service.spec.as_ref(),
        service.metadata.namespace.as_deref(),
        service.metadata.name.as_deref(),
    ) else {
        return;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return;
    }
    let cluster_ips: Vec<&str> = spec
        .cluster_ips
        .iter()
        .flatten()
        .map(String::as_str)
        .chain(spec.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None" && !ip.contains(':'))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let external_ips: Vec<String> = spec
        .external_ips
        .iter()
        .flatten()
        .cloned()
        .chain(crate::load_balancer_ips(service).map(str::to_owned))
        .filter(|ip| !ip.contains(':'))
        .collect();
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    for port in spec.ports.iter().flatten() {
        let port_name = port.name.as_deref().unwrap_or("");
        let proto = port.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        let key = format!("{namespace}/{name}:{port_name}/{proto}/{}", port.port);
        let all = endpoints(input.node_name, slices, namespace, name, port_name);
        if all.is_empty() {
            continue;
        }
        let local: Vec<Endpoint> = all.iter().filter(|e| e.local).cloned().collect();
        let comment = format!("comment \"{namespace}/{name}:{}\"", port.port);
        let mut dispatch = |prefix: &str, endpoints: &[Endpoint], masquerade: Option<String>| {
            let chain_name = chain(prefix, &key);
            let mut body: Vec<String> = masquerade.into_iter().collect();
            let mut targets = Vec::new();
            for endpoint in endpoints {
                let target = format!("{key}@{}:{}", endpoint.ip, endpoint.port);
                let sep = chain("sep", &target);
                // The timeout is part of the set's name: a new timeout is a new set.
                let set = affinity.map(|seconds| {
                    let set = chain("aff", &format!("{target}/{seconds}"));
                    ruleset.sets.insert(
                        set.clone(),
                        format!("type ipv4_addr; flags dynamic,timeout; timeout {seconds}s;"),
                    );
                    body.push(format!("ip saddr @{set} goto {sep}"));
                    set
                });
                ruleset.chains.entry(sep.clone()).or_insert_with(|| {
                    let mut rules =
                        vec![format!("ip saddr {} jump mark-for-masquerade", endpoint.ip)];
                    if let Some(set) = &set {
                        rules.push(format!("update @{set} {{ ip saddr }}"));
                    }
                    rules.push(format!(
                        "meta l4proto {proto} dnat to {}:{}",
                        endpoint.ip, endpoint.port
                    ));
                    rules
                });
                targets.push(sep);
            }
            match targets.as_slice() {
                // Upstream drops external traffic for a Local policy without local endpoints.
                [] => body.push("drop".into()),
                [one] => body.push(format!("goto {one}")),
                many => {
                    let arms: Vec<String> = many
                        .iter()
                        .enumerate()
                        .map(|(i, sep)| format!("{i} : goto {sep}"))
                        .collect();
                    body.push(format!(
                        "numgen random mod {} vmap {{ {} }} {comment}",
                        many.len(),
                        arms.join(", ")
                    ));
                }
            }
            ruleset.chains.insert(chain_name.clone(), body);
            format!("goto {chain_name}")
        };
        let internal = if internal_local { &local } else { &all };
        if !cluster_ips.is_empty() && !internal.is_empty() {
            let masquerade = format!(
                "ip saddr != {} jump mark-for-masquerade",
                input.cluster_cidr
            );
            let svc = dispatch("svc", internal, Some(masquerade));
            for ip in &cluster_ips {
                ruleset
                    .service_ips
                    .entry(format!("{ip} . {proto} . {}", port.port))
                    .or_insert_with(|| svc.clone());
            }
        }
        let external_wanted = !external_ips.is_empty() || port.node_port.is_some();
        if external_wanted {
            let (endpoints, masquerade) = if external_local {
                (&local, None)
            } else {
                (&all, Some("jump mark-for-masquerade".to_owned()))
            };
            let ext = dispatch("ext", endpoints, masquerade);
            for ip in &external_ips {
                ruleset
                    .service_ips
                    .entry(format!("{ip} . {proto} . {}", port.port))
                    .or_insert_with(|| ext.clone());
            }
            if let Some(node_port) = port.node_port {
                ruleset
                    .node_ports
                    .entry(format!("{proto} . {node_port}"))
                    .or_insert(ext);
            }
        }
    }
}

#[cfg(test)]
mod tests;
