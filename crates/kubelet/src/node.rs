//! The Node this agent registers, its status (capacity read off the machine, runtime facts
//! from CRI), and the Lease it renews as its heartbeat.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::FIELD_MANAGER;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const KUBELET_VERSION: &str = concat!("v1.37.0+r8s-", env!("CARGO_PKG_VERSION"));
/// Upstream's kubelet: 40 s leases renewed every 10 s.
const LEASE_DURATION_SECONDS: i32 = 40;
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the status is posted even when nothing changed (upstream: 5 min); Ready's
/// heartbeat time shows the node is alive to `kubectl describe` readers.
const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// What the node is, as the agent found it at start.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub name: String,
    pub ip: IpAddr,
    pub kubelet_port: u16,
    pub labels: BTreeMap<String, String>,
    pub runtime_version: String,
    pub capacity: BTreeMap<String, String>,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// CPU, memory, pods and ephemeral storage of this machine, as upstream's cadvisor reads them.
pub fn machine_capacity(data_dir: &Path, max_pods: u32) -> BTreeMap<String, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .unwrap_or(0);
    let storage = statvfs_bytes(data_dir).unwrap_or(0);
    BTreeMap::from([
        ("cpu".into(), cpus.to_string()),
        ("ephemeral-storage".into(), format!("{}Ki", storage / 1024)),
        ("hugepages-1Gi".into(), "0".into()),
        ("hugepages-2Mi".into(), "0".into()),
        ("memory".into(), format!("{memory_kib}Ki")),
        ("pods".into(), max_pods.to_string()),
    ])
}

fn statvfs_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(path.as_ptr(), &mut stat) } == 0)
        .then(|| stat.f_blocks as u64 * stat.f_frsize as u64)
}

fn uname() -> (String, String) {
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return (String::new(), String::new());
    }
    let field = |raw: &[libc::c_char]| {
        let bytes: Vec<u8> = raw
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&name.release), field(&name.machine))
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

pub fn default_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("beta.kubernetes.io/arch".into(), go_arch().into()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), go_arch().into()),
        ("kubernetes.io/hostname".into(), name.into()),
        ("kubernetes.io/os".into(), "linux".into()),
    ])
}

fn condition(
    old: &[Value],
    now: &Time,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Value {
    let transition = old
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == status)
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(now));
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": now, "lastTransitionTime": transition,
    })
}

/// The status the kubelet posts: `old` keeps each condition's transition time while unchanged.
pub fn status(facts: &NodeFacts, images: Value, old: Option<&Node>) -> Value {
    let now = Time(Timestamp::now());
    let old_conditions: Vec<Value> = old
        .and_then(|n| n.status.as_ref())
        .and_then(|s| serde_json::to_value(&s.conditions).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let (kernel, _) = uname();
    let machine_id = read_trimmed("/etc/machine-id");
    let boot_id = read_trimmed("/proc/sys/kernel/random/boot_id");
    json!({
        "capacity": facts.capacity,
        "allocatable": facts.capacity,
        "addresses": [
            { "type": "InternalIP", "address": facts.ip.to_string() },
            { "type": "Hostname", "address": facts.name },
        ],
        "conditions": [
            condition(&old_conditions, &now, "MemoryPressure", "False",
                "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition(&old_conditions, &now, "DiskPressure", "False",
                "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition(&old_conditions, &now, "PIDPressure", "False",
                "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition(&old_conditions, &now, "Ready", "True",
                "KubeletReady", "kubelet is posting ready status"),
        ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": facts.kubelet_port } },
        "nodeInfo": {
            "architecture": go_arch(),
            "bootID": boot_id,
            "containerRuntimeVersion": facts.runtime_version,
            "kernelVersion": kernel,
            "kubeProxyVersion": "",
            "kubeletVersion": KUBELET_VERSION,
            "machineID": machine_id,
            "operatingSystem": "linux",
            "osImage": os_image(),
            "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
        },
        "images": images,
    })
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Creates the Node (or takes over an existing one of this name, as a restarted kubelet
/// does) and posts its first status. Returns the Node's uid.
pub async fn register(client: &Client, facts: &NodeFacts, images: Value) -> anyhow::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
        "true".to_string(),
    );
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": facts.name, "labels": facts.labels, "annotations": annotations },
    }))?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match nodes.create(&params, &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            nodes
                .patch(
                    &facts.name,
                    &patch_params(),
                    &Patch::Merge(json!({"metadata": {"labels": facts.labels}})),
                )
                .await
                .context("cannot update the existing Node")?;
        }
        Err(e) => return Err(e).context("cannot register the Node"),
    }
    let existing = nodes.get(&facts.name).await?;
    let status = status(facts, images, Some(&existing));
    let node = nodes
        .patch_status(
            &facts.name,
            &patch_params(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .context("cannot post the Node's status")?;
    Ok(node)
}

/// Renews the Lease every 10 s and reposts the status every minute, until dropped.
pub async fn heartbeat(
    client: Client,
    facts: NodeFacts,
    images: impl Fn() -> futures::future::BoxFuture<'static, Value>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut last_status = tokio::time::Instant::now();
    loop {
        if let Err(e) = renew_lease(&nodes, &leases, &facts.name).await {
            tracing::warn!("cannot renew the node lease: {e}");
        }
        if last_status.elapsed() >= STATUS_REPORT_INTERVAL {
            let images = images().await;
            let result = async {
                let old = nodes.get(&facts.name).await?;
                let status = status(&facts, images, Some(&old));
                nodes
                    .patch_status(
                        &facts.name,
                        &patch_params(),
                        &Patch::Merge(json!({ "status": status })),
                    )
                    .await
            }
            .await;
            match result {
                Ok(_) => last_status = tokio::time::Instant::now(),
                Err(e) => tracing::warn!("cannot post the node status: {e}"),
            }
        }
        tokio::time::sleep(LEASE_RENEW_INTERVAL).await;
    }
}

async fn renew_lease(nodes: &Api<Node>, leases: &Api<Lease>, name: &str) -> anyhow::Result<()> {
    let now = MicroTime(Timestamp::now());
    let renewal = json!({ "spec": {
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": now,
    }});
    match leases
        .patch(name, &patch_params(), &Patch::Merge(renewal.clone()))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            // The Lease is owned by the Node, so the garbage collector removes it with the Node.
            let node = nodes.get(name).await?;
            let mut lease = renewal;
            lease["metadata"] = json!({
                "name": name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Node", "name": name, "uid": node.uid(),
                }],
            });
            let lease: Lease = serde_json::from_value(lease)?;
            leases
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &lease,
                )
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits for the node IPAM controller to give the Node its pod CIDR.
pub async fn wait_for_pod_cidr(client: &Client, name: &str) -> anyhow::Result<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut warned = false;
    loop {
        if let Ok(node) = nodes.get(name).await
            && let Some(cidr) = node.spec.and_then(|s| s.pod_cidr)
        {
            return Ok(cidr);
        }
        if !warned {
            tracing::info!("waiting for node {name} to get a podCIDR");
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
