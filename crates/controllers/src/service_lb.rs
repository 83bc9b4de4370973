//! The built-in service load balancer (k3s's ServiceLB role): a `LoadBalancer` Service without
//! a `loadBalancerClass` gets the InternalIPs of the Ready nodes as its
//! `status.loadBalancer.ingress`, and every node's service proxy serves the Service's ports on
//! those addresses. A Service that stops being a LoadBalancer loses the addresses.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::clock::Clock;

/// Changes arriving together are handled once.
const SETTLE: Duration = Duration::from_millis(100);

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

/// The ingress a Service should have, or `None` when this controller leaves it alone.
pub fn wanted_ingress(service: &Service, addresses: &[String]) -> Option<Value> {
    let spec = service.spec.as_ref()?;
    if spec.load_balancer_class.is_some() {
        return None;
    }
    if spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress: Vec<Value> = addresses
            .iter()
            .map(|ip| json!({ "ip": ip, "ipMode": "VIP" }))
            .collect();
        return Some(json!(ingress));
    }
    Some(json!([]))
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

pub async fn run(client: Client, _clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let (services, services_writer) = reflector::store::<Service>();
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let service_events = reflector(
        services_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .map(|e| e.map(|_| ()));
    let node_events = reflector(
        nodes_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .map(|e| e.map(|_| ()));
    let mut events = futures::stream::select(service_events, node_events).boxed();
    while let Some(event) = events.next().await {
        event?;
        tokio::time::sleep(SETTLE).await;
        while let Some(Some(_)) = events.next().now_or_never() {}
        // The stores fill only while the streams are polled: never wait on them here.
        if services.wait_until_ready().now_or_never().is_none()
            || nodes.wait_until_ready().now_or_never().is_none()
        {
            continue;
        }
        let addresses = node_addresses(&nodes.state());
        for service in services.state() {
            let Some(wanted) = wanted_ingress(&service, &addresses) else {
                continue;
            };
            if current_ingress(&service) == wanted {
                continue;
            }
            let namespace = service.namespace().unwrap_or_default();
            let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
            let patch = json!({ "status": { "loadBalancer": { "ingress": wanted } } });
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
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, is_ready: bool) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name },
                "status": {
                    "addresses": [{ "type": "InternalIP", "address": ip }],
                    "conditions": [{ "type": "Ready", "status": if is_ready { "True" } else { "False" } }],
                },
            }))
            .unwrap(),
        )
    }

    fn service(type_: &str, class: Option<&str>) -> Service {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "type": type_, "loadBalancerClass": class, "ports": [{ "port": 80 }] },
        }))
        .unwrap()
    }

    #[test]
    fn load_balancers_get_the_ready_nodes_addresses() {
        let nodes = [
            node("b", "10.0.0.2", true),
            node("a", "10.0.0.1", true),
            node("c", "10.0.0.3", false),
        ];
        let addresses = node_addresses(&nodes);
        assert_eq!(addresses, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            wanted_ingress(&service("LoadBalancer", None), &addresses).unwrap(),
            json!([{ "ip": "10.0.0.1", "ipMode": "VIP" }, { "ip": "10.0.0.2", "ipMode": "VIP" }])
        );
    }

    #[test]
    fn other_classes_are_left_alone_and_other_types_cleared() {
        let addresses = ["10.0.0.1".to_owned()];
        assert!(
            wanted_ingress(&service("LoadBalancer", Some("example.com/lb")), &addresses).is_none()
        );
        assert_eq!(
            wanted_ingress(&service("ClusterIP", None), &addresses).unwrap(),
            json!([])
        );
    }
}
