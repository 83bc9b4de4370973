//! What a hollow kubelet writes about its node: the Node it registers (labels, capacity,
//! addresses, nodeInfo, conditions) and its Lease in `kube-node-lease`, built as upstream's
//! kubelet builds them. Pure: the caller passes the time.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use crate::pod_ips::Cidr;

/// The namespace upstream's kubelets keep their leases in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const KUBELET_VERSION: &str = "v1.37.0";
const KUBELET_PORT: i32 = 10250;
/// Hollow nodes' own addresses come from this range, one per node index.
const NODE_IP_BASE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 0);
const NODE_IP_COUNT: u32 = 1 << 20;

/// What each hollow node reports as its capacity (and allocatable: nothing is reserved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub ephemeral_storage: String,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            ephemeral_storage: "100Gi".into(),
        }
    }
}

/// One hollow node: who it is and what it hands out.
#[derive(Debug, Clone)]
pub struct HollowNode {
    pub name: String,
    pub internal_ip: Ipv4Addr,
    pub pod_cidr: Cidr,
}

pub fn node_name(prefix: &str, index: u32) -> String {
    format!("{prefix}{index}")
}

/// The node's fake InternalIP: 172.16.0.1 for node 0, then consecutive.
pub fn internal_ip(index: u32) -> Ipv4Addr {
    assert!(
        index < NODE_IP_COUNT - 2,
        "node index {index} has no address"
    );
    Ipv4Addr::from(u32::from(NODE_IP_BASE) + index + 1)
}

/// The labels upstream's kubelet sets on its Node, plus `type=hollow` (as kubemark's).
pub fn labels(name: &str) -> BTreeMap<String, String> {
    [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("type", "hollow"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The Node a hollow kubelet registers.
pub fn registration(node: &HollowNode, capacity: &Capacity, now: Timestamp) -> Node {
    let cidr = node.pod_cidr.to_string();
    Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(labels(&node.name)),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            ..Default::default()
        }),
        status: Some(status(node, capacity, None, now)),
    }
}

fn resources(capacity: &Capacity) -> BTreeMap<String, Quantity> {
    [
        ("cpu", capacity.cpu.as_str()),
        ("ephemeral-storage", &capacity.ephemeral_storage),
        ("hugepages-1Gi", "0"),
        ("hugepages-2Mi", "0"),
        ("memory", &capacity.memory),
        ("pods", &capacity.pods),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
    .collect()
}

/// A stable fake id derived from the node's name (machine-id and system UUID).
fn machine_id(name: &str) -> String {
    // FNV-1a, twice with different seeds, gives the 128 bits a machine-id has.
    let fnv = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    )
}

/// The node's status now: `existing` keeps the conditions' transition times when nothing
/// changed, as the kubelet's status loop does.
pub fn status(
    node: &HollowNode,
    capacity: &Capacity,
    existing: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let now = Time(now);
    let old = existing
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        let last_transition_time = match old.iter().find(|c| c.type_ == type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        NodeCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time,
        }
    };
    let id = machine_id(&node.name);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    );
    NodeStatus {
        capacity: Some(resources(capacity)),
        allocatable: Some(resources(capacity)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: node.internal_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: node.name.clone(),
            },
        ]),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: KUBELET_PORT }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: id.clone(),
            container_runtime_version: concat!("hollow://", env!("CARGO_PKG_VERSION")).into(),
            kernel_version: "hollow".into(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: id,
            operating_system: "linux".into(),
            os_image: "r8s hollow node".into(),
            system_uuid: uuid,
            ..Default::default()
        }),
        ..existing.cloned().unwrap_or_default()
    }
}

/// The node's Lease, owned by its Node so the garbage collector removes it with the Node.
pub fn lease(name: &str, node_uid: &str, duration_seconds: i32, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.to_owned(),
                uid: node_uid.to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_owned()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// The merge patch that renews a node's lease.
pub fn lease_renewal(name: &str, duration_seconds: i32, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": MicroTime(now),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hollow(index: u32) -> HollowNode {
        HollowNode {
            name: node_name("hollow-", index),
            internal_ip: internal_ip(index),
            pod_cidr: "10.244.0.0/16"
                .parse::<Cidr>()
                .unwrap()
                .node_cidr(u64::from(index))
                .unwrap(),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn ready(status: &NodeStatus) -> &NodeCondition {
        let conditions = status.conditions.as_ref().unwrap();
        conditions.iter().find(|c| c.type_ == "Ready").unwrap()
    }

    #[test]
    fn a_registered_node_is_ready_with_its_capacity_labels_and_pod_cidr() {
        let node = registration(&hollow(1), &Capacity::default(), at(0));
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "hollow-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["type"], "hollow");
        let spec = node.spec.unwrap();
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.1.0/24"));
        let status = node.status.unwrap();
        assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "4");
        assert_eq!(status.allocatable.as_ref().unwrap()["pods"].0, "110");
        assert_eq!(ready(&status).status, "True");
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "172.16.0.2");
        assert_eq!(addresses[1].address, "hollow-1");
        assert_eq!(status.node_info.unwrap().kubelet_version, "v1.37.0");
    }

    #[test]
    fn a_heartbeat_moves_the_heartbeat_time_but_keeps_the_transition_time() {
        let node = hollow(0);
        let first = status(&node, &Capacity::default(), None, at(0));
        let second = status(&node, &Capacity::default(), Some(&first), at(300));
        assert_eq!(ready(&second).last_heartbeat_time, Some(Time(at(300))));
        assert_eq!(ready(&second).last_transition_time, Some(Time(at(0))));
    }

    #[test]
    fn a_node_that_was_not_ready_transitions_when_it_reports_again() {
        let node = hollow(0);
        let mut stale = status(&node, &Capacity::default(), None, at(0));
        for c in stale.conditions.as_mut().unwrap() {
            c.status = "Unknown".into();
        }
        let back = status(&node, &Capacity::default(), Some(&stale), at(60));
        assert_eq!(ready(&back).status, "True");
        assert_eq!(ready(&back).last_transition_time, Some(Time(at(60))));
    }

    #[test]
    fn node_addresses_and_ids_differ_per_node() {
        assert_ne!(internal_ip(0), internal_ip(1));
        assert_ne!(machine_id("hollow-0"), machine_id("hollow-1"));
        assert_eq!(machine_id("hollow-0").len(), 32);
    }

    #[test]
    fn a_lease_belongs_to_its_node() {
        let lease = lease("hollow-0", "uid-1", 40, at(0));
        assert_eq!(lease.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        let owner = &lease.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "uid-1"));
        assert_eq!(lease.spec.unwrap().lease_duration_seconds, Some(40));
    }
}
