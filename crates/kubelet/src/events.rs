//! Events about pods, as upstream's kubelet records them: core `v1` Events with source
//! `kubelet` and the node's name, which `kubectl describe pod` lists.

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    node: String,
}

impl Recorder {
    pub fn new(client: Client, node: &str) -> Self {
        Self {
            client,
            node: node.to_string(),
        }
    }

    /// Records an event about the pod (and one of its containers, by `field_path`), in the
    /// background: a lost event must not hold up the pod.
    pub fn pod(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let namespace = pod.namespace().unwrap_or_default();
        let now = Timestamp::now();
        let event = serde_json::json!({
            "metadata": {
                "name": format!("{}.{:x}", pod.name_any(), now.as_nanosecond()),
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": "v1", "kind": "Pod", "namespace": namespace,
                "name": pod.name_any(), "uid": pod.uid(), "fieldPath": field_path,
                "resourceVersion": pod.resource_version(),
            },
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": { "component": "kubelet", "host": self.node },
            "firstTimestamp": Time(now),
            "lastTimestamp": Time(now),
            "eventTime": Option::<MicroTime>::None,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        });
        let client = self.client.clone();
        tokio::spawn(async move {
            let Ok(event) = serde_json::from_value::<Event>(event) else {
                return;
            };
            let api: Api<Event> = Api::namespaced(client, &namespace);
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!("cannot record an event: {e}");
            }
        });
    }
}

/// The `fieldPath` naming a container, as upstream writes it.
pub fn container_path(init: bool, name: &str) -> Option<String> {
    Some(if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    })
}
