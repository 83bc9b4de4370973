//! Binding a Pod to a Node (`pods/binding`, and the older `bindings` collection): what the
//! scheduler writes. The Pod gets `spec.nodeName` and a true PodScheduled condition; a Pod
//! already bound elsewhere, or being deleted, conflicts.

use http::StatusCode;
use serde_json::{Value, json};

use crate::objects::{self, Query};
use crate::registry::{Registry, Tracking};
use crate::router::ResourcePath;
use crate::status::{ApiError, Subject};

/// Binds pod `name` in `path`'s namespace to the node `binding.target.name`.
pub async fn bind(
    registry: &Registry,
    pods: &ResourcePath,
    name: &str,
    binding: &Value,
    query: &Query,
) -> Result<Value, ApiError> {
    let node = binding["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            name,
            vec![("target.name".into(), "Required value".into())],
        ));
    }
    let subject = |name| Subject {
        group: "",
        plural: "pods",
        name,
    };
    // The change is written as computed here, spec and status together.
    registry
        .modify_tracked(pods, name, query, None, Tracking::Untracked, |current| {
            if !current["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::conflict(
                    subject(name),
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            if let Some(bound) = current["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    subject(name),
                    &format!("pod {name} is already assigned to node {bound:?}"),
                ));
            }
            let mut pod = current.clone();
            pod["spec"]["nodeName"] = json!(node);
            let condition = json!({
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": null,
                "lastTransitionTime": objects::now_rfc3339(),
            });
            let conditions = pod["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conditions: Vec<Value> = conditions
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conditions.push(condition);
            pod["status"]["conditions"] = json!(conditions);
            Ok(pod)
        })
        .await?;
    Ok(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": StatusCode::CREATED.as_u16(),
    }))
}
