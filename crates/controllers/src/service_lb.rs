//! The built-in service load balancer. Every `LoadBalancer` Service without a
//! `loadBalancerClass` (another implementation owns those) gets `status.loadBalancer.ingress`:
//!
//! - by default the InternalIPs of the Ready nodes (k3s's ServiceLB role), which every node's
//!   service proxy serves;
//! - with `r8s server --lb-pool`, one address of the pool (MetalLB's controller role, see
//!   [`pool`]): the lowest free, or `spec.loadBalancerIP` when it is in the pool and free. Every
//!   node's service proxy serves it too, and one node, chosen alike by every agent, holds it so
//!   the network's ARP finds it (`r8s_network::announce`).
//!
//! A Service that stops being such a LoadBalancer, or goes away, loses its addresses.

mod pool;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use r8s_informers::Informers;
use serde_json::{Value, json};

pub use pool::{AddressRange, Allocator, Failure, Holder, Pool, RangeError};

use crate::clock::Clock;
use crate::events::{EventRecorder, reference};

/// Changes arriving together are handled once.
const SETTLE: Duration = Duration::from_millis(100);
/// How often every Service is checked even without changes (a status write may have failed).
const RESYNC: Duration = Duration::from_secs(30);
/// MetalLB's event reasons.
const IP_ALLOCATED: &str = "IPAllocated";
const ALLOCATION_FAILED: &str = "AllocationFailed";

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
        && !node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
}

/// The addresses load balancers get: the Ready nodes' InternalIPs, sorted.
pub fn node_addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut addresses: Vec<String> = nodes
        .iter()
        .filter(|n| ready(n))
        .filter_map(|n| {
            n.status
                .as_ref()?
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// What this controller does with a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A LoadBalancer of another class, or no spec: left alone.
    Foreign,
    /// Not a LoadBalancer: it has no load-balancer addresses.
    Cleared,
    /// A class-less LoadBalancer: it gets addresses.
    Balanced,
}

fn role(service: &Service) -> Role {
    let Some(spec) = service.spec.as_ref() else {
        return Role::Foreign;
    };
    if spec.load_balancer_class.is_some() {
        Role::Foreign
    } else if spec.type_.as_deref() == Some("LoadBalancer") {
        Role::Balanced
    } else {
        Role::Cleared
    }
}

fn ingress<S: AsRef<str>>(ips: &[S]) -> Value {
    let ingress: Vec<Value> = ips
        .iter()
        .map(|ip| json!({ "ip": ip.as_ref(), "ipMode": "VIP" }))
        .collect();
    json!(ingress)
}

/// The ingress a Service should have without a pool, or `None` when this controller leaves it
/// alone.
pub fn wanted_ingress(service: &Service, addresses: &[String]) -> Option<Value> {
    match role(service) {
        Role::Foreign => None,
        Role::Cleared => Some(json!([])),
        Role::Balanced => Some(ingress(addresses)),
    }
}

fn current_ingress(service: &Service) -> Value {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    serde_json::to_value(ingress).unwrap_or_else(|_| json!([]))
}

/// An event a pass asks for, about the Service it decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What one pass decides for one Service.
#[derive(Debug)]
pub struct Decision {
    pub service: Arc<Service>,
    pub ingress: Value,
    pub note: Option<Note>,
}

/// The pool mode: the allocator, and the last failure told of each Service, so a Service
/// left pending gets one event per reason rather than one per pass.
#[derive(Debug)]
pub struct PoolAddresses {
    allocator: Allocator,
    reported: HashMap<String, String>,
}

fn holder(service: &Service) -> Option<Holder> {
    Some(Holder {
        uid: service.metadata.uid.clone()?,
        key: format!(
            "{}/{}",
            service.metadata.namespace.as_deref().unwrap_or_default(),
            service.metadata.name.as_deref()?
        ),
    })
}

/// `spec.loadBalancerIP` (deprecated upstream, still how a Service asks for an address).
fn requested(service: &Service) -> Option<&str> {
    service
        .spec
        .as_ref()?
        .load_balancer_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
}

fn status_ips(service: &Service) -> Vec<Ipv4Addr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

impl PoolAddresses {
    pub fn new(pool: Pool) -> Self {
        Self {
            allocator: Allocator::new(pool),
            reported: HashMap::new(),
        }
    }

    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// One pass over every Service (the whole cache: the allocator's view of who exists).
    pub fn reconcile(&mut self, services: &[Arc<Service>]) -> Vec<Decision> {
        let mut balanced: Vec<(&Arc<Service>, Holder)> = services
            .iter()
            .filter(|s| role(s) == Role::Balanced)
            .filter_map(|s| Some((s, holder(s)?)))
            .collect();
        // Oldest first: on a restart, a Service made earlier keeps a disputed address.
        balanced.sort_by(|(a, ha), (b, hb)| {
            let age = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (age(a), &ha.key).cmp(&(age(b), &hb.key))
        });
        let wanted: std::collections::HashSet<&str> =
            balanced.iter().map(|(_, h)| h.uid.as_str()).collect();
        let gone: Vec<String> = self
            .allocator
            .holders()
            .filter(|uid| !wanted.contains(uid))
            .map(str::to_owned)
            .collect();
        for uid in gone {
            self.allocator.release(&uid);
        }
        self.reported.retain(|uid, _| wanted.contains(uid.as_str()));
        // A changed spec.loadBalancerIP: the address held gives way to the one asked for.
        for (service, holder) in &balanced {
            if let (Some(asked), Some(held)) =
                (requested(service), self.allocator.held_by(&holder.uid))
                && asked.parse::<Ipv4Addr>().ok() != Some(held)
            {
                self.allocator.release(&holder.uid);
            }
        }
        // Every Service takes back what its status shows before any address is handed out,
        // so none goes to a newcomer while its holder's status has it.
        for (service, holder) in &balanced {
            let mut shown = status_ips(service);
            if let Some(asked) = requested(service) {
                shown.retain(|ip| asked.parse::<Ipv4Addr>().ok() == Some(*ip));
            }
            self.allocator.recover(holder, &shown);
        }
        let mut decisions = Vec::new();
        for (service, holder) in balanced {
            let before = self.allocator.held_by(&holder.uid);
            let (ips, note) = match self.allocator.assign(&holder, requested(service)) {
                Ok(ip) => {
                    self.reported.remove(&holder.uid);
                    let note = before.is_none().then(|| Note {
                        warning: false,
                        reason: IP_ALLOCATED,
                        message: format!("Assigned IP [\"{ip}\"]"),
                    });
                    (vec![ip.to_string()], note)
                }
                Err(failure) => {
                    let message = format!("Failed to allocate IP for {:?}: {failure}", holder.key);
                    let told = self.reported.get(&holder.uid) == Some(&message);
                    self.reported.insert(holder.uid.clone(), message.clone());
                    let note = (!told).then_some(Note {
                        warning: true,
                        reason: ALLOCATION_FAILED,
                        message,
                    });
                    (Vec::new(), note)
                }
            };
            decisions.push(Decision {
                service: service.clone(),
                ingress: ingress(&ips),
                note,
            });
        }
        decisions.extend(
            services
                .iter()
                .filter(|s| role(s) == Role::Cleared)
                .map(|s| Decision {
                    service: s.clone(),
                    ingress: json!([]),
                    note: None,
                }),
        );
        decisions
    }
}

/// Where load balancers' addresses come from.
#[derive(Debug)]
pub enum Addresses {
    /// The Ready nodes' InternalIPs.
    Nodes,
    /// `--lb-pool`.
    Pool(PoolAddresses),
}

impl Addresses {
    pub fn new(pool: Option<Pool>) -> Self {
        match pool {
            Some(pool) => Self::Pool(PoolAddresses::new(pool)),
            None => Self::Nodes,
        }
    }

    /// One pass: what each Service this controller handles should have.
    pub fn reconcile(&mut self, services: &[Arc<Service>], nodes: &[Arc<Node>]) -> Vec<Decision> {
        match self {
            Self::Pool(pool) => pool.reconcile(services),
            Self::Nodes => {
                // Every node change wakes this pass; most clusters have no LoadBalancer to
                // give addresses to, and walking thousands of nodes for none is waste.
                let addresses = if services.iter().any(|s| role(s) == Role::Balanced) {
                    node_addresses(nodes)
                } else {
                    Vec::new()
                };
                services
                    .iter()
                    .filter_map(|s| {
                        Some(Decision {
                            service: s.clone(),
                            ingress: wanted_ingress(s, &addresses)?,
                            note: None,
                        })
                    })
                    .collect()
            }
        }
    }
}

pub async fn run(
    informers: Arc<Informers>,
    _clock: Arc<dyn Clock>,
    pool: Option<Pool>,
) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let recorder = EventRecorder::new(client.clone(), "service-lb-controller");
    let mut addresses = Addresses::new(pool);
    let services = informers.store::<Service>().await;
    let nodes = informers.store::<Node>().await;
    let service_events = informers.subscribe::<Service>().await.map(drop);
    let node_events = informers.subscribe::<Node>().await.map(drop);
    let mut events = futures::stream::select(service_events, node_events);
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(()) => {
                    tokio::time::sleep(SETTLE).await;
                    while let Some(Some(_)) = events.next().now_or_never() {}
                }
                None => return Ok(()),
            },
            _ = resync.tick() => {}
        }
        for decision in addresses.reconcile(&services.state(), &nodes.state()) {
            let service = &decision.service;
            if current_ingress(service) != decision.ingress {
                let namespace = service.namespace().unwrap_or_default();
                let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
                let patch =
                    json!({ "status": { "loadBalancer": { "ingress": decision.ingress } } });
                if let Err(e) = api
                    .patch_status(
                        &service.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await
                {
                    tracing::warn!(
                        "service {namespace}/{}: cannot set its load balancer addresses: {e}",
                        service.name_any()
                    );
                }
            }
            if let Some(note) = decision.note {
                let regarding = reference("v1", "Service", &service.metadata);
                if note.warning {
                    recorder
                        .warning(&regarding, note.reason, "AllocateIP", note.message)
                        .await;
                } else {
                    recorder
                        .normal(&regarding, note.reason, "AllocateIP", note.message)
                        .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
