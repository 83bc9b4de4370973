//! Services and EndpointSlices → the text of one nftables table, as kube-proxy's nftables mode
//! lays it out: a `services` chain matches each ClusterIP, external IP, load-balancer address
//! and NodePort and goes to the service's chain, which picks an endpoint at random (or the one
//! a client stuck to, for `sessionAffinity: ClientIP`) and DNATs to it. Packets that need it are
//! marked for masquerade: hairpin (a pod reaching itself through its service), traffic from
//! outside the pod network to a ClusterIP, and external traffic with
//! `externalTrafficPolicy: Cluster`. A service without endpoints has no rule: its address falls
//! to the node's unreachable route, so clients are refused at once.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

/// The table r8s owns; replaced whole on each change.
pub const TABLE: &str = "r8s-proxy";
const MASQ_MARK: &str = "0x4000";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinity: ClientIP` without a timeout: upstream's default, 3 hours.
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

/// What the rules are made from.
pub struct Input<'a> {
    pub node_name: &'a str,
    /// The pod network: traffic to a ClusterIP from outside it is masqueraded.
    pub cluster_cidr: &'a str,
    pub services: &'a [Service],
    pub slices: &'a [EndpointSlice],
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
fn endpoints(input: &Input<'_>, namespace: &str, service: &str, port_name: &str) -> Vec<Endpoint> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in input.slices {
        let meta = &slice.metadata;
        let owned = meta.namespace.as_deref() == Some(namespace)
            && meta
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                == Some(service);
        if !owned || slice.address_type != "IPv4" {
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
                local: endpoint.node_name.as_deref() == Some(input.node_name),
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

/// The table's text: `add`, then `delete` and define it, so `nft -f` replaces it in one
/// transaction whether or not it existed.
pub fn render(input: &Input<'_>) -> String {
    let mut services = String::new();
    let mut chains = String::new();
    let mut sets = String::new();
    let mut endpoint_chains: BTreeMap<String, String> = BTreeMap::new();
    for service in input.services {
        render_service(
            input,
            service,
            &mut services,
            &mut chains,
            &mut sets,
            &mut endpoint_chains,
        );
    }
    let mut out = String::new();
    let _ = writeln!(out, "add table ip {TABLE}");
    let _ = writeln!(out, "delete table ip {TABLE}");
    let _ = writeln!(out, "table ip {TABLE} {{");
    out.push_str(&sets);
    let _ = writeln!(
        out,
        "  chain nat-prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }}"
    );
    let _ = writeln!(
        out,
        "  chain nat-output {{\n    type nat hook output priority -100; policy accept;\n    jump services\n  }}"
    );
    let _ = writeln!(
        out,
        "  chain nat-postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade fully-random\n  }}"
    );
    let _ = writeln!(
        out,
        "  chain mark-for-masquerade {{\n    meta mark set meta mark | {MASQ_MARK}\n  }}"
    );
    let _ = writeln!(out, "  chain services {{\n{services}  }}");
    out.push_str(&chains);
    for text in endpoint_chains.values() {
        out.push_str(text);
    }
    out.push_str("}\n");
    out
}

fn render_service(
    input: &Input<'_>,
    service: &Service,
    services: &mut String,
    chains: &mut String,
    sets: &mut String,
    endpoint_chains: &mut BTreeMap<String, String>,
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
        .chain(
            service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.clone()),
        )
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
        let all = endpoints(input, namespace, name, port_name);
        if all.is_empty() {
            continue;
        }
        let local: Vec<Endpoint> = all.iter().filter(|e| e.local).cloned().collect();
        let comment = format!("comment \"{namespace}/{name}:{}\"", port.port);
        let mut dispatch = |prefix: &str, endpoints: &[Endpoint], masquerade: &str| -> String {
            let chain_name = chain(prefix, &key);
            let mut body = String::from(masquerade);
            let mut targets = Vec::new();
            for endpoint in endpoints {
                let sep = chain("sep", &format!("{key}@{}:{}", endpoint.ip, endpoint.port));
                let set = chain("aff", &format!("{key}@{}:{}", endpoint.ip, endpoint.port));
                if let Some(seconds) = affinity
                    && !endpoint_chains.contains_key(&sep)
                {
                    let _ = writeln!(
                        sets,
                        "  set {set} {{\n    type ipv4_addr; flags dynamic,timeout; timeout {seconds}s;\n  }}"
                    );
                }
                if affinity.is_some() {
                    let _ = writeln!(body, "    ip saddr @{set} goto {sep}");
                }
                endpoint_chains.entry(sep.clone()).or_insert_with(|| {
                    let mut text = format!("  chain {sep} {{\n");
                    let _ = writeln!(
                        text,
                        "    ip saddr {} jump mark-for-masquerade",
                        endpoint.ip
                    );
                    if affinity.is_some() {
                        let _ = writeln!(text, "    update @{set} {{ ip saddr }}");
                    }
                    let _ = writeln!(
                        text,
                        "    meta l4proto {proto} dnat to {}:{}\n  }}",
                        endpoint.ip, endpoint.port
                    );
                    text
                });
                targets.push(sep);
            }
            match targets.as_slice() {
                [] => {
                    // Upstream drops external traffic for a Local policy without local endpoints.
                    let _ = writeln!(body, "    drop");
                }
                [one] => {
                    let _ = writeln!(body, "    goto {one}");
                }
                many => {
                    let arms: Vec<String> = many
                        .iter()
                        .enumerate()
                        .map(|(i, sep)| format!("{i} : goto {sep}"))
                        .collect();
                    let _ = writeln!(
                        body,
                        "    numgen random mod {} vmap {{ {} }}",
                        many.len(),
                        arms.join(", ")
                    );
                }
            }
            let _ = writeln!(chains, "  chain {chain_name} {{\n{body}  }}");
            chain_name
        };
        let internal = if internal_local { &local } else { &all };
        if !cluster_ips.is_empty() && !internal.is_empty() {
            let masquerade = format!(
                "    ip saddr != {} jump mark-for-masquerade\n",
                input.cluster_cidr
            );
            let svc = dispatch("svc", internal, &masquerade);
            for ip in &cluster_ips {
                let _ = writeln!(
                    services,
                    "    ip daddr {ip} {proto} dport {} goto {svc} {comment}",
                    port.port
                );
            }
        }
        let external_wanted = !external_ips.is_empty() || port.node_port.is_some();
        if external_wanted {
            let (endpoints, masquerade) = if external_local {
                (&local, String::new())
            } else {
                (&all, "    jump mark-for-masquerade\n".to_owned())
            };
            let ext = dispatch("ext", endpoints, &masquerade);
            for ip in &external_ips {
                let _ = writeln!(
                    services,
                    "    ip daddr {ip} {proto} dport {} goto {ext} {comment}",
                    port.port
                );
            }
            if let Some(node_port) = port.node_port {
                let _ = writeln!(
                    services,
                    "    fib daddr type local ip daddr != 127.0.0.0/8 {proto} dport {node_port} goto {ext} {comment}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
