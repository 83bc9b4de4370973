//! The resource metrics API, `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics), built in
//! rather than aggregated from a metrics-server: each request lists the Nodes or Pods it names
//! (with the request's selectors) and asks the kubelets concerned for `/stats/summary`, whose
//! CPU rates the kubelet computed over its last sampling window. What `kubectl top` reads.

use std::collections::HashMap;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::kubelet_client::{KubeletClient, KubeletLocation};
use crate::objects::Query;
use crate::registry::Registry;
use crate::router::ResourcePath;
use crate::status::{ApiError, Subject};

pub const GROUP: &str = "metrics.k8s.io";
/// How long one kubelet may take to answer before its node is left out.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(10);
/// A summary larger than this is refused rather than buffered.
const SUMMARY_LIMIT: usize = 16 << 20;

/// CPU as metrics-server prints it: nanocores, shortened when exact.
fn cpu_quantity(nano_cores: u64) -> String {
    if nano_cores.is_multiple_of(1_000_000) {
        r8s_api::quantity::Quantity {
            millis: i128::from(nano_cores / 1_000_000),
            binary: false,
        }
        .to_string()
    } else {
        format!("{nano_cores}n")
    }
}

/// Bytes with binary suffixes where exact (`Ki`, `Mi`, …), as metrics-server prints memory.
fn memory_quantity(bytes: u64) -> String {
    r8s_api::quantity::Quantity {
        millis: i128::from(bytes) * 1000,
        binary: true,
    }
    .to_string()
}

/// The usage of one summary entry (node, pod's container), if it has a CPU rate yet.
fn usage(entry: &Value) -> Option<Value> {
    let nano_cores = entry["cpu"]["usageNanoCores"].as_u64()?;
    let working_set = entry["memory"]["workingSetBytes"].as_u64()?;
    Some(json!({ "cpu": cpu_quantity(nano_cores), "memory": memory_quantity(working_set) }))
}

/// metav1.Duration of the sampling window, as Go prints a `time.Duration` ("10s", "10.5s").
fn window(seconds: f64) -> String {
    let rounded = (seconds * 1000.0).round() / 1000.0;
    format!("{rounded}s")
}

fn metadata_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut out = json!({ "name": meta["name"], "creationTimestamp": meta["creationTimestamp"] });
    if meta.get("namespace").is_some() {
        out["namespace"] = meta["namespace"].clone();
    }
    if let Some(labels) = meta.get("labels") {
        out["labels"] = labels.clone();
    }
    out
}

/// Fetches each node's summary at once; nodes that cannot be reached are left out, as
/// metrics-server leaves out nodes it could not scrape.
async fn summaries(
    registry: &Registry,
    kubelets: &KubeletClient,
    node_names: impl IntoIterator<Item = String>,
) -> HashMap<String, Value> {
    let fetches = node_names.into_iter().map(|name| async move {
        let location = KubeletLocation::find(registry, &name).await.ok()?;
        let fetch = async {
            let response = kubelets
                .get(&location, "/stats/summary")
                .await
                .map_err(|e| tracing::debug!(node = %name, "cannot reach the kubelet: {e}"))
                .ok()?;
            if response.status() != StatusCode::OK {
                tracing::debug!(node = %name, status = %response.status(), "no summary");
                return None;
            }
            let body = http_body_util::Limited::new(response.into_body(), SUMMARY_LIMIT)
                .collect()
                .await
                .ok()?
                .to_bytes();
            serde_json::from_slice::<Value>(&body).ok()
        };
        let summary = tokio::time::timeout(KUBELET_TIMEOUT, fetch).await.ok()??;
        Some((name, summary))
    });
    futures::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn summary_time(entry: &Value) -> Value {
    entry["cpu"]["time"].clone()
}

fn list_of(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": format!("{GROUP}/v1beta1"),
        "metadata": {},
        "items": items,
    })
}

/// The window a kubelet's rates cover: its sampling interval.
const WINDOW_SECONDS: f64 = 10.0;

/// Answers a GET (get or list) on `nodes` or `pods` of `metrics.k8s.io`.
pub async fn serve(
    registry: &Registry,
    kubelets: &KubeletClient,
    path: &ResourcePath,
    query: &Query,
    watch: bool,
) -> Result<Value, ApiError> {
    if watch {
        return Err(ApiError::method_not_allowed(format!(
            "watch is not supported on {}.{GROUP}",
            path.resource.plural
        )));
    }
    let objects_path = ResourcePath {
        resource: r8s_api::find("", "v1", path.resource.plural)
            .expect("catalogue has nodes and pods"),
        namespace: path.namespace.clone(),
        name: None,
        subresource: None,
    };
    let objects: Vec<Value> = match &path.name {
        Some(name) => vec![registry.get(&objects_path, name).await.map_err(|e| {
            if e.code == StatusCode::NOT_FOUND {
                not_found(path, name)
            } else {
                e
            }
        })?],
        None => registry.list(&objects_path, query).await?.into_value()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    };
    let items = if path.resource.plural == "nodes" {
        node_metrics(registry, kubelets, &objects).await
    } else {
        pod_metrics(registry, kubelets, &objects).await
    };
    match &path.name {
        Some(name) => items
            .into_iter()
            .next()
            .ok_or_else(|| not_found(path, name)),
        None => Ok(list_of(path.resource.kind, items)),
    }
}

fn not_found(path: &ResourcePath, name: &str) -> ApiError {
    ApiError::not_found(Subject {
        group: GROUP,
        plural: path.resource.plural,
        name,
    })
}

async fn node_metrics(
    registry: &Registry,
    kubelets: &KubeletClient,
    nodes: &[Value],
) -> Vec<Value> {
    let names = nodes
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned));
    let summaries = summaries(registry, kubelets, names).await;
    nodes
        .iter()
        .filter_map(|node| {
            let summary = summaries.get(node["metadata"]["name"].as_str()?)?;
            let usage = usage(&summary["node"])?;
            Some(json!({
                "kind": "NodeMetrics",
                "apiVersion": format!("{GROUP}/v1beta1"),
                "metadata": metadata_of(node),
                "timestamp": summary_time(&summary["node"]),
                "window": window(WINDOW_SECONDS),
                "usage": usage,
            }))
        })
        .collect()
}

async fn pod_metrics(registry: &Registry, kubelets: &KubeletClient, pods: &[Value]) -> Vec<Value> {
    let nodes: std::collections::BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let summaries = summaries(registry, kubelets, nodes).await;
    // Each summary's pods, by UID (a pod recreated under the same name is another pod).
    let by_uid: HashMap<&str, &Value> = summaries
        .values()
        .flat_map(|s| s["pods"].as_array().into_iter().flatten())
        .filter_map(|p| Some((p["podRef"]["uid"].as_str()?, p)))
        .collect();
    pods.iter()
        .filter_map(|pod| {
            let stats = by_uid.get(pod["metadata"]["uid"].as_str()?)?;
            // A pod is reported only once every running container has a rate, as
            // metrics-server does; a pod with none running has no metrics.
            let containers: Option<Vec<Value>> = stats["containers"]
                .as_array()?
                .iter()
                .map(|c| Some(json!({ "name": c["name"], "usage": usage(c)? })))
                .collect();
            let mut containers = containers.filter(|c| !c.is_empty())?;
            // In the pod's own order, not the runtime's listing order.
            let order: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            containers.sort_by_key(|c| {
                order
                    .iter()
                    .position(|name| c["name"] == *name)
                    .unwrap_or(usize::MAX)
            });
            Some(json!({
                "kind": "PodMetrics",
                "apiVersion": format!("{GROUP}/v1beta1"),
                "metadata": metadata_of(pod),
                "timestamp": summary_time(stats),
                "window": window(WINDOW_SECONDS),
                "containers": containers,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_printed_as_metrics_server_prints_them() {
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(memory_quantity(3 << 20), "3Mi");
        assert_eq!(memory_quantity(1536), "1536");
        assert_eq!(memory_quantity(4096 * 3), "12Ki");
    }

    #[test]
    fn usage_needs_a_cpu_rate() {
        let entry = json!({
            "cpu": { "time": "2026-01-01T00:00:00Z", "usageNanoCores": 5_000_000, "usageCoreNanoSeconds": 9 },
            "memory": { "workingSetBytes": 1_048_576 },
        });
        assert_eq!(
            usage(&entry).unwrap(),
            json!({ "cpu": "5m", "memory": "1Mi" })
        );
        let first_sample =
            json!({ "cpu": { "usageCoreNanoSeconds": 9 }, "memory": { "workingSetBytes": 1 } });
        assert!(usage(&first_sample).is_none());
        assert_eq!(window(10.0), "10s");
        assert_eq!(window(10.5), "10.5s");
    }
}
