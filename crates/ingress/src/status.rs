//! `status.loadBalancer.ingress` of the served Ingresses. Every node runs a controller and each
//! adds its own addresses when they are missing, so the list becomes the union of the nodes
//! serving. The write is a merge patch of the `status` subresource carrying the
//! `resourceVersion` read, so two nodes adding at once cannot drop each other's addresses: the
//! loser gets a conflict and tries again on its next round.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The address list `ingress` should have: its current one plus whichever of `addresses` are
/// missing (an IP as `ip`, anything else as `hostname`). `None` when nothing is missing.
pub fn with_addresses(
    ingress: &Ingress,
    addresses: &[String],
) -> Option<Vec<IngressLoadBalancerIngress>> {
    let mut list: Vec<IngressLoadBalancerIngress> = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let before = list.len();
    for address in addresses {
        let present = list.iter().any(|entry| {
            entry.ip.as_deref() == Some(address) || entry.hostname.as_deref() == Some(address)
        });
        if present {
            continue;
        }
        let entry = if address.parse::<IpAddr>().is_ok() {
            IngressLoadBalancerIngress {
                ip: Some(address.clone()),
                ..Default::default()
            }
        } else {
            IngressLoadBalancerIngress {
                hostname: Some(address.clone()),
                ..Default::default()
            }
        };
        list.push(entry);
    }
    (list.len() != before).then_some(list)
}

/// Adds `addresses` to each of `ingresses` that lacks one. Failures are logged; the next round
/// retries them, as it sees the Ingress still lacking.
pub async fn publish(client: &kube::Client, ingresses: &[&Ingress], addresses: &[String]) {
    for ingress in ingresses {
        let Some(list) = with_addresses(ingress, addresses) else {
            continue;
        };
        let meta = &ingress.metadata;
        let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref())
        else {
            continue;
        };
        let patch = json!({
            "metadata": {"resourceVersion": meta.resource_version},
            "status": {"loadBalancer": {"ingress": list}},
        });
        let api = Api::<Ingress>::namespaced(client.clone(), namespace);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::debug!("Ingress {namespace}/{name}: published {addresses:?}"),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!("Ingress {namespace}/{name} changed meanwhile; retrying later")
            }
            Err(e) => tracing::warn!("cannot set the status of Ingress {namespace}/{name}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(status: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "status": status,
        }))
        .unwrap()
    }

    fn addresses(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn missing_addresses_are_added_after_other_nodes_ones() {
        let web = ingress(json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}));
        let list = with_addresses(&web, &addresses(&["10.0.0.2", "node-b.example"])).unwrap();
        let shown: Vec<_> = list
            .iter()
            .map(|e| (e.ip.as_deref(), e.hostname.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                (Some("10.0.0.1"), None),
                (Some("10.0.0.2"), None),
                (None, Some("node-b.example"))
            ]
        );
    }

    #[test]
    fn nothing_is_written_when_every_address_is_there() {
        let web = ingress(json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}));
        assert!(with_addresses(&web, &addresses(&["10.0.0.1"])).is_none());
        assert!(with_addresses(&ingress(json!({})), &[]).is_none());
    }
}
