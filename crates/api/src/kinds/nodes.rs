//! Nodes: the `kubectl get nodes` table (readiness, roles from labels, kubelet version and,
//! wide, addresses and system info).

use serde_json::Value;
use time::OffsetDateTime;

use super::defaulting::drop_generation;
use super::printing::{self, AGE, NAME, column, items, text, wide};
use super::{Column, Kind};

pub struct Nodes;

const ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";

const COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "The status of the node"),
    column("Roles", "string", "The roles of the node"),
    AGE,
    column("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", ADDRESSES),
    wide("External-IP", "string", ADDRESSES),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

impl Kind for Nodes {
    // The fields upstream's field selectors accept for this kind.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// `Ready`, `NotReady` or `Unknown`, then `SchedulingDisabled` for a cordoned node.
fn status(node: &Value) -> String {
    // The last Ready condition wins, as upstream indexes conditions by type.
    let ready = items(&node["status"]["conditions"])
        .iter()
        .rfind(|c| c["type"] == "Ready");
    let mut status = vec![match ready {
        Some(c) if c["status"] == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node["spec"]["unschedulable"] == true {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label.
fn roles(node: &Value) -> String {
    let mut roles: Vec<&str> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(
            |(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                Some(role) if !role.is_empty() => Some(role),
                Some(_) => None,
                None if key == "kubernetes.io/role" => Some(text(value)).filter(|r| !r.is_empty()),
                None => None,
            },
        )
        .collect();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

/// The node's first address of this type, or `<none>`.
fn address<'a>(node: &'a Value, kind: &str) -> &'a str {
    items(&node["status"]["addresses"])
        .iter()
        .find(|a| a["type"] == kind)
        .map_or("<none>", |a| text(&a["address"]))
}

fn or_unknown(value: &Value) -> Value {
    match text(value) {
        "" => "<unknown>".into(),
        v => v.into(),
    }
}

fn row(node: &Value, now: OffsetDateTime) -> Vec<Value> {
    let info = &node["status"]["nodeInfo"];
    vec![
        printing::name(node),
        status(node).into(),
        roles(node).into(),
        printing::age(node, now),
        text(&info["kubeletVersion"]).into(),
        address(node, "InternalIP").into(),
        address(node, "ExternalIP").into(),
        or_unknown(&info["osImage"]),
        or_unknown(&info["kernelVersion"]),
        or_unknown(&info["containerRuntimeVersion"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn nodes_have_no_generation() {
        let mut object = json!({"metadata": {"name": "x", "generation": 1}});
        Nodes.prepare_for_create(&mut object);
        assert!(object["metadata"].get("generation").is_none());
    }

    #[test]
    fn a_ready_control_plane_node_shows_its_roles_and_system_info() {
        let node = json!({
            "metadata": {
                "name": "server-1",
                "creationTimestamp": "2026-02-24T12:00:00Z",
                "labels": {
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/etcd": "true",
                    "kubernetes.io/hostname": "server-1",
                },
            },
            "status": {
                "conditions": [
                    { "type": "MemoryPressure", "status": "False" },
                    { "type": "Ready", "status": "True" },
                ],
                "addresses": [
                    { "type": "Hostname", "address": "server-1" },
                    { "type": "InternalIP", "address": "192.168.1.10" },
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.37.0-r8s",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-18-amd64",
                    "containerRuntimeVersion": "containerd://1.6.20",
                },
            },
        });
        assert_eq!(
            json!(row(&node, at("2026-03-01T12:00:00Z"))),
            json!([
                "server-1",
                "Ready",
                "control-plane,etcd",
                "5d",
                "v1.37.0-r8s",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "containerd://1.6.20"
            ])
        );
    }

    #[test]
    fn a_cordoned_node_that_stopped_reporting_is_not_ready_and_unschedulable() {
        let node = json!({
            "metadata": { "labels": { "kubernetes.io/role": "worker" } },
            "spec": { "unschedulable": true },
            "status": { "conditions": [{ "type": "Ready", "status": "Unknown" }] },
        });
        let cells = row(&node, at("2026-03-01T12:00:00Z"));
        assert_eq!(cells[1], "NotReady,SchedulingDisabled");
        assert_eq!(cells[2], "worker");
        assert_eq!(cells[7], "<unknown>");
    }

    #[test]
    fn a_node_without_a_ready_condition_is_unknown() {
        assert_eq!(status(&json!({})), "Unknown");
        assert_eq!(roles(&json!({})), "<none>");
    }
}
