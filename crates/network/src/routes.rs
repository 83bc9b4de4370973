//! The pod network across nodes, host-gateway style: every other node's `podCIDR` is routed via
//! that node's InternalIP, kept in step with the Node objects, so pods reach each other by pod
//! IP with no NAT and no overlay. Beneath them the cluster CIDR is unreachable, so a pod address
//! no node claims is refused here (ICMP) rather than sent out by the default route; and the
//! service CIDR is local, so the node's own connections to a ClusterIP pass the service rules
//! (which rewrite them to an endpoint) instead of failing at the route lookup, and a service
//! address with no rule is answered by this node (refused) and never leaves it. Routes are marked with their own protocol number, so stale ones are found
//! and removed without touching anyone else's.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;

/// The `proto` of the routes r8s owns (unassigned in iproute2's rt_protos).
pub const PROTO: &str = "201";
/// How often routes are re-checked even without Node changes (someone may delete one).
const RESYNC: Duration = Duration::from_secs(30);

/// The routes this node should have: other nodes' pod CIDRs by their InternalIP.
pub fn desired(nodes: &[Node], own_name: &str) -> BTreeMap<String, String> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(own_name))
        .filter_map(|node| {
            let cidr = node.spec.as_ref()?.pod_cidr.clone()?;
            let via = node
                .status
                .as_ref()?
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .clone();
            Some((cidr, via))
        })
        .collect()
}

/// Runs `ip` with `args`: its output, or what it said when it failed.
pub(crate) fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Our routes as they are now: destination → (type, gateway), "" where there is none.
fn current() -> Result<BTreeMap<String, (String, String)>, String> {
    let text = ip(&["-j", "route", "show", "table", "all", "proto", PROTO])?;
    let routes: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(routes
        .iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?.to_owned();
            let kind = r["type"].as_str().unwrap_or("unicast").to_owned();
            Some((dst, (kind, r["gateway"].as_str().unwrap_or("").to_owned())))
        })
        .collect())
}

/// The ranges beneath the pod routes.
#[derive(Debug, Clone, Default)]
pub struct Ranges {
    /// Unreachable: the cluster CIDR.
    pub unreachable: Vec<String>,
    /// Local: the service CIDR.
    pub local: Vec<String>,
}

/// Makes this node's routes `wanted` plus `ranges`, removing our stale ones.
pub fn apply(wanted: &BTreeMap<String, String>, ranges: &Ranges) -> Result<(), String> {
    let have = current()?;
    let is = |cidr: &str, kind: &str| have.get(cidr).is_some_and(|(k, _)| k == kind);
    for cidr in &ranges.unreachable {
        if !is(cidr, "unreachable") {
            ip(&["route", "replace", "unreachable", cidr, "proto", PROTO])?;
        }
    }
    for cidr in &ranges.local {
        if !is(cidr, "local") {
            ip(&[
                "route", "replace", "local", cidr, "dev", "lo", "proto", PROTO,
            ])?;
        }
    }
    for (cidr, via) in wanted {
        if have.get(cidr).is_none_or(|(_, gw)| gw != via) {
            ip(&["route", "replace", cidr, "via", via, "proto", PROTO])?;
        }
    }
    for (dst, (kind, _)) in &have {
        let ours = wanted.contains_key(dst)
            || ranges.unreachable.contains(dst)
            || ranges.local.contains(dst);
        if !ours {
            let table = if kind == "local" { "local" } else { "main" };
            ip(&["route", "del", dst, "table", table, "proto", PROTO])?;
        }
    }
    Ok(())
}

/// Keeps the routes in step with the Nodes until the task is aborted.
pub async fn run(client: Client, own_name: String, ranges: Ranges) {
    let nodes: Api<Node> = Api::all(client);
    let (store, writer) = kube::runtime::reflector::store();
    let mut events =
        kube::runtime::reflector(writer, watcher(nodes, watcher::Config::default())).boxed();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!("node watch for routes failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => {}
        }
        // The store fills only while the stream is polled: never wait on it here.
        if futures::FutureExt::now_or_never(store.wait_until_ready()).is_none() {
            continue;
        }
        let nodes: Vec<Node> = store.state().iter().map(|n| (**n).clone()).collect();
        let wanted = desired(&nodes, &own_name);
        if let Err(e) = apply(&wanted, &ranges) {
            tracing::warn!("cannot program the pod routes: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "podCIDR": cidr },
            "status": { "addresses": [
                { "type": "Hostname", "address": name },
                { "type": "InternalIP", "address": ip },
            ]},
        }))
        .unwrap()
    }

    #[test]
    fn other_nodes_pod_cidrs_go_via_their_internal_ip() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), "10.0.0.1"),
            node("b", Some("10.244.1.0/24"), "10.0.0.2"),
            node("c", None, "10.0.0.3"),
        ];
        let wanted = desired(&nodes, "a");
        assert_eq!(
            wanted,
            BTreeMap::from([("10.244.1.0/24".to_owned(), "10.0.0.2".to_owned())])
        );
    }
}
