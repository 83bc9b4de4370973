//! NodeRestriction: what a node (`system:node:<name>` in `system:nodes`) may write is limited
//! to itself — its own Node and its status, its own Lease, mirror pods bound to it, the status
//! of pods bound to it — as upstream's plugin limits it, so one node's credentials cannot touch
//! another node or its pods.

use serde_json::Value;

use super::{Attributes, Operation};
use crate::status::ApiError;

const NODE_PREFIX: &str = "system:node:";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The node a user acts as, if it is one.
fn node_of(attributes: &Attributes<'_>) -> Option<String> {
    let user = attributes.user?;
    let name = user.name.strip_prefix(NODE_PREFIX)?;
    user.groups
        .iter()
        .any(|g| g == "system:nodes")
        .then(|| name.to_owned())
}

pub fn admit(attributes: &Attributes<'_>, object: &Value) -> Result<(), ApiError> {
    let Some(node) = node_of(attributes) else {
        return Ok(());
    };
    let resource = attributes.resource;
    match (resource.group, resource.plural) {
        ("", "nodes") if attributes.name != node => {
            return Err(attributes.forbidden(format!(
                "node {node:?} is not allowed to modify node {:?}",
                attributes.name
            )));
        }
        ("", "pods") => {
            let bound = |pod: &Value| pod["spec"]["nodeName"].as_str() == Some(node.as_str());
            match (attributes.subresource, attributes.operation) {
                (None, Operation::Create) => {
                    if object["metadata"]["annotations"][MIRROR_ANNOTATION].is_null() {
                        return Err(attributes.forbidden(format!(
                            "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} \
                             can only create mirror pods"
                        )));
                    }
                    if !bound(object) {
                        return Err(attributes.forbidden(format!(
                            "node {node:?} can only create pods with spec.nodeName set to itself"
                        )));
                    }
                }
                (Some("status"), _) if !attributes.old.is_some_and(bound) => {
                    return Err(attributes.forbidden(format!(
                        "node {node:?} can only update pod status for pods with its spec.nodeName"
                    )));
                }
                (None, Operation::Update) => {
                    return Err(
                        attributes.forbidden(format!("node {node:?} can only update pod status"))
                    );
                }
                _ => {}
            }
        }
        ("coordination.k8s.io", "leases")
            if attributes.namespace != Some("kube-node-lease") || attributes.name != node =>
        {
            return Err(attributes.forbidden(format!(
                "can only access node lease with the same name as the requesting node {node:?}"
            )));
        }
        _ => {}
    }
    Ok(())
}
