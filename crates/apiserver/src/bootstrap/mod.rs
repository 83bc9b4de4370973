//! The objects every cluster starts with: the four initial namespaces, the
//! `default/kubernetes` Service and the default RBAC policy, ensured on every start.

mod rbac;
mod rbac_policy;

use http::StatusCode;
use serde_json::json;

use crate::objects::Query;
use crate::registry::{Body, Registry};
use crate::router::ResourcePath;
use crate::{Config, first_service_ip};

pub const INITIAL_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

pub async fn ensure(registry: &Registry, config: &Config) -> anyhow::Result<()> {
    let namespaces = ResourcePath {
        resource: r8s_api::find("", "v1", "namespaces").expect("catalogue has namespaces"),
        namespace: None,
        name: None,
        subresource: None,
    };
    for name in INITIAL_NAMESPACES {
        let namespace = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { "kubernetes.io/metadata.name": name } },
            "spec": {},
            "status": { "phase": "Active" },
        });
        create_if_missing(registry, &namespaces, namespace).await?;
    }
    let services = ResourcePath {
        resource: r8s_api::find("", "v1", "services").expect("catalogue has services"),
        namespace: Some("default".into()),
        name: None,
        subresource: None,
    };
    let ip = first_service_ip(config.service_cidr).to_string();
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": { "component": "apiserver", "provider": "kubernetes" },
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "ports": [{
                "name": "https",
                "port": 443,
                "protocol": "TCP",
                "targetPort": config.advertise_port,
            }],
        },
        "status": { "loadBalancer": {} },
    });
    create_if_missing(registry, &services, service).await?;
    rbac::ensure(registry).await
}

/// The start-up writes' field manager, as upstream's API server names itself.
pub(crate) fn writer() -> Query {
    Query {
        field_manager: Some("kube-apiserver".into()),
        ..Query::default()
    }
}

async fn create_if_missing(
    registry: &Registry,
    path: &ResourcePath,
    object: serde_json::Value,
) -> anyhow::Result<()> {
    match registry.create(path, Body { object }, &writer()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == StatusCode::CONFLICT => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}
