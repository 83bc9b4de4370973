//! Layer-2 announcement of load-balancer addresses that no interface has (those of
//! `r8s server --lb-pool`), as MetalLB's L2 mode: for each Service one node, chosen alike by
//! every agent with no coordination (rendezvous hashing of the Service over the Ready nodes),
//! holds the Service's address, so the kernel answers ARP for it on the node's network; it
//! sends a gratuitous ARP when it takes an address over, so neighbours forget the previous
//! holder. Every node's service rules serve the address: this only draws the traffic to one.
//!
//! The address goes, as a /32, on the interface that has the node's address: there the kernel
//! answers ARP for it whether `arp_ignore` is 0 or 1 (1 answers only for addresses of the
//! interface the request came in on), and the traffic it draws comes in where replies leave,
//! so `rp_filter` passes it. It is labelled `<interface>:lb`, which is how an agent finds the
//! addresses it holds after a restart. An interface name too long for that label (over 12
//! characters) makes it fall back to `lo`, which the kernel answers ARP for only while
//! `arp_ignore` is 0. Held addresses have a lease the agent renews, so those of an agent that
//! died go away by themselves; a stopping agent removes them at once.
//!
//! Addresses that are a node's own (the default, node-address load balancers) are left alone:
//! their nodes already answer for them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use sha2::{Digest, Sha256};

use crate::routes::ip;

/// What marks an address as held by the announcer: its label is the device's name and this.
pub const LABEL_SUFFIX: &str = ":lb";
/// Longest label the kernel keeps (IFNAMSIZ less its NUL).
const LABEL_MAX: usize = 15;
/// Nodes with this label never announce (upstream's label for load-balancer backends).
const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Changes arriving together are applied once.
const SETTLE: Duration = Duration::from_millis(50);
/// How often the held addresses are checked and their leases renewed without changes.
const RESYNC: Duration = Duration::from_secs(20);
/// How long a held address lives unless renewed: a few resyncs.
const LEASE_SECONDS: u64 = 60;

/// The node among `candidates` that announces the Service `key` (`namespace/name`): the one
/// with the highest hash of (node, service), so a node joining or leaving moves only the
/// Services it wins or held.
pub fn announcer<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|node| {
            let mut hash = Sha256::new();
            hash.update(node.as_bytes());
            hash.update([0]);
            hash.update(key.as_bytes());
            (hash.finalize(), *node)
        })
        .max()
        .map(|(_, node)| node)
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Nodes whose agent serves endpoints of `namespace/name` that are ready.
fn nodes_with_endpoints<'a>(
    slices: &'a [EndpointSlice],
    namespace: &str,
    name: &str,
) -> BTreeSet<&'a str> {
    slices
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
        })
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.as_deref())
        .collect()
}

/// The nodes' own addresses.
pub fn node_addresses(nodes: &[Node]) -> BTreeSet<String> {
    nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flatten()
        .map(|a| a.address.clone())
        .collect()
}

/// The load-balancer addresses node `own` announces. `not_ours` are addresses nodes have (or
/// had: a deleted node's address stays in the default load balancers' status for a moment, and
/// holding it would take it from that machine).
pub fn desired(
    own: &str,
    services: &[Service],
    nodes: &[Node],
    slices: &[EndpointSlice],
    not_ours: &BTreeSet<String>,
) -> BTreeSet<Ipv4Addr> {
    let mut ready: Vec<&str> = nodes
        .iter()
        .filter(|n| node_ready(n))
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
        })
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    ready.sort_unstable();
    let mut wanted = BTreeSet::new();
    for service in services {
        let (Some(spec), Some(namespace), Some(name)) = (
            service.spec.as_ref(),
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            continue;
        };
        if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
            continue;
        }
        let addresses: Vec<Ipv4Addr> = crate::load_balancer_ips(service)
            .filter(|ip| !not_ours.contains(*ip))
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if addresses.is_empty() {
            continue;
        }
        // With a Local policy the other nodes drop external traffic: only a node with an
        // endpoint may draw it, as MetalLB does.
        let candidates: Vec<&str> = if spec.external_traffic_policy.as_deref() == Some("Local") {
            let serving = nodes_with_endpoints(slices, namespace, name);
            ready
                .iter()
                .copied()
                .filter(|n| serving.contains(n))
                .collect()
        } else {
            ready.clone()
        };
        if announcer(&format!("{namespace}/{name}"), &candidates) == Some(own) {
            wanted.extend(addresses);
        }
    }
    wanted
}

/// The node's IPv4 addresses and Ethernet devices as `ip -j addr show` lists them (through
/// netlink: `/sys/class/net` may be another network namespace's).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// Address → (device, label, seconds left; `None`: forever).
    by_address: BTreeMap<Ipv4Addr, (String, String, Option<u64>)>,
    /// Ethernet device → (index, MAC address).
    ethernet: BTreeMap<String, (i32, [u8; 6])>,
}

impl Addresses {
    /// Reads `ip -j addr show`.
    pub fn parse(json: &str) -> Result<Self, String> {
        let links: Vec<serde_json::Value> =
            serde_json::from_str(json).map_err(|e| format!("cannot read ip's addresses: {e}"))?;
        let mut out = Self::default();
        for link in &links {
            let Some(device) = link["ifname"].as_str() else {
                continue;
            };
            if link["link_type"] == "ether"
                && let (Some(index), Some(mac)) = (
                    link["ifindex"].as_i64().and_then(|i| i32::try_from(i).ok()),
                    link["address"].as_str().and_then(parse_mac),
                )
            {
                out.ethernet.insert(device.to_owned(), (index, mac));
            }
            for info in link["addr_info"].as_array().into_iter().flatten() {
                if info["family"] != "inet" {
                    continue;
                }
                let Some(local) = info["local"].as_str().and_then(|a| a.parse().ok()) else {
                    continue;
                };
                let label = info["label"].as_str().unwrap_or(device).to_owned();
                // ip prints an infinite lifetime as 4294967295 seconds.
                let left = info["valid_life_time"]
                    .as_u64()
                    .filter(|&s| s != u64::from(u32::MAX));
                out.by_address
                    .insert(local, (device.to_owned(), label, left));
            }
        }
        Ok(out)
    }

    fn read() -> Result<Self, String> {
        Self::parse(&ip(&["-j", "addr", "show"])?)
    }

    /// The device that has `address`.
    pub fn device_of(&self, address: Ipv4Addr) -> Option<&str> {
        self.by_address.get(&address).map(|(d, _, _)| d.as_str())
    }

    /// The addresses the announcer holds: device and seconds left, by address.
    pub fn held(&self) -> BTreeMap<Ipv4Addr, (&str, Option<u64>)> {
        self.by_address
            .iter()
            .filter(|(_, (device, label, _))| *label == format!("{device}{LABEL_SUFFIX}"))
            .map(|(ip, (device, _, left))| (*ip, (device.as_str(), *left)))
            .collect()
    }
}

/// The device that holds announced addresses, given the device that has the node's address.
pub fn holding_device(node_device: &str) -> &str {
    if node_device.len() + LABEL_SUFFIX.len() <= LABEL_MAX {
        node_device
    } else {
        "lo"
    }
}

/// What to change so the node holds exactly `wanted`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Addresses to add, or whose lease to renew, on the holding device: (address, new).
    pub hold: Vec<(Ipv4Addr, bool)>,
    /// Held addresses to drop: (address, device).
    pub drop: Vec<(Ipv4Addr, String)>,
}

/// Compares what the node holds with what it should. An address the node has for another
/// reason (not labelled as held) is neither added nor removed.
pub fn changes(have: &Addresses, wanted: &BTreeSet<Ipv4Addr>, device: &str) -> Changes {
    let held = have.held();
    let mut out = Changes::default();
    for (ip, (on, _)) in &held {
        if !wanted.contains(ip) || *on != device {
            out.drop.push((*ip, (*on).to_owned()));
        }
    }
    for ip in wanted {
        match held.get(ip) {
            Some((on, left)) if *on == device => {
                if left.is_some_and(|s| s < LEASE_SECONDS / 2) {
                    out.hold.push((*ip, false));
                }
            }
            Some(_) => out.hold.push((*ip, true)),
            None if have.by_address.contains_key(ip) => {}
            None => out.hold.push((*ip, true)),
        }
    }
    out
}

/// Makes the node hold exactly `wanted`; `node_ip` finds the node's interface. A change that
/// fails is logged and the others still made; the next pass tries it again.
fn apply(wanted: &BTreeSet<Ipv4Addr>, node_ip: Ipv4Addr) -> Result<(), String> {
    let have = Addresses::read()?;
    let node_device = have.device_of(node_ip).unwrap_or("lo").to_owned();
    let device = holding_device(&node_device);
    let plan = changes(&have, wanted, device);
    for (address, device) in &plan.drop {
        if let Err(e) = ip(&["addr", "del", &format!("{address}/32"), "dev", device]) {
            tracing::warn!("cannot stop holding {address}: {e}");
        }
    }
    let lease = LEASE_SECONDS.to_string();
    let label = format!("{device}{LABEL_SUFFIX}");
    for (address, new) in &plan.hold {
        let held = ip(&[
            "addr",
            "replace",
            &format!("{address}/32"),
            "dev",
            device,
            "label",
            &label,
            "valid_lft",
            &lease,
            "preferred_lft",
            &lease,
        ]);
        if let Err(e) = held {
            tracing::warn!("cannot hold {address}: {e}");
            continue;
        }
        if *new {
            if device == "lo" && arp_ignore(&node_device) > 0 {
                tracing::warn!(
                    "load-balancer address {address} is on lo (the name {node_device} is too long \
                     for a label) and arp_ignore is set on {node_device}: the kernel will not \
                     answer ARP for it"
                );
            }
            // Loopback and the like have no ARP to tell.
            if let Some(&(index, mac)) = have.ethernet.get(&node_device)
                && let Err(e) = gratuitous_arp(index, mac, *address)
            {
                tracing::warn!("cannot announce {address} on {node_device}: {e}");
            }
        }
    }
    Ok(())
}

/// The `arp_ignore` in force on `device` (the higher of `all` and the device's own).
fn arp_ignore(device: &str) -> u32 {
    ["all", device]
        .iter()
        .filter_map(|d| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{d}/arp_ignore")).ok()
        })
        .filter_map(|v| v.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// Removes every address the announcer holds (the agent is stopping).
pub fn withdraw() {
    let held: Vec<(Ipv4Addr, String)> = match Addresses::read() {
        Ok(have) => have
            .held()
            .into_iter()
            .map(|(ip, (device, _))| (ip, device.to_owned()))
            .collect(),
        Err(e) => {
            tracing::warn!("cannot withdraw the load-balancer addresses: {e}");
            return;
        }
    };
    for (address, device) in held {
        if let Err(e) = ip(&["addr", "del", &format!("{address}/32"), "dev", &device]) {
            tracing::warn!("cannot withdraw {address}: {e}");
        }
    }
}

/// A gratuitous ARP (an ARP announcement, RFC 5227): "`ip` is at `mac`", broadcast.
pub fn announcement_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    frame[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    frame[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    frame[18] = 6;
    frame[19] = 4;
    frame[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    // Target hardware address stays zero; target protocol address is the address itself.
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// Sends the announcement of `ip` at `mac` out of the device with index `index`.
fn gratuitous_arp(index: i32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    let frame = announcement_frame(mac, ip);
    let protocol = 0x0806u16.to_be();
    // SAFETY: a plain socket call; the descriptor is owned (and closed) right after.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor no one else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid value for every field.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = protocol;
    to.sll_ifindex = index;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::from_ref(&to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Removes the held addresses when the announcer stops (its task is aborted or the runtime
/// shuts down), after any change in progress.
struct Withdraw;

impl Drop for Withdraw {
    fn drop(&mut self) {
        withdraw();
    }
}

/// Keeps this node's announced addresses in step with the cluster until the task is aborted.
pub async fn run(client: Client, node_name: String, node_ip: IpAddr) {
    let IpAddr::V4(node_ip) = node_ip else {
        tracing::info!("load-balancer addresses are announced by ARP: not on an IPv6 node");
        return;
    };
    let _withdraw = Withdraw;
    let (services, service_events) = crate::watch_all::<Service>(&client);
    let (nodes, node_events) = crate::watch_all::<Node>(&client);
    let (slices, slice_events) = crate::watch_all::<EndpointSlice>(&client);
    let mut events = futures::stream::select_all([service_events, node_events, slice_events]);
    let mut resync = tokio::time::interval(RESYNC);
    let mut node_addresses_seen = BTreeSet::new();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(())) => {
                    tokio::time::sleep(SETTLE).await;
                    while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
                }
                Some(Err(e)) => {
                    tracing::debug!("load-balancer announcer watch failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => {}
        }
        // The stores fill only while the streams are polled: never wait on them here.
        if !crate::ready(&services) || !crate::ready(&nodes) || !crate::ready(&slices) {
            continue;
        }
        let all_services: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let all_nodes: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        let all_slices: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        node_addresses_seen.extend(node_addresses(&all_nodes));
        let wanted = desired(
            &node_name,
            &all_services,
            &all_nodes,
            &all_slices,
            &node_addresses_seen,
        );
        if let Err(e) = apply(&wanted, node_ip) {
            tracing::warn!("cannot hold the load-balancer addresses: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
