//! The `scale` subresource of custom resources: the Scale view reads and writes the paths the
//! CRD names (`specReplicasPath`, `statusReplicasPath`, `labelSelectorPath`).

use r8s_api::Resource;
use serde_json::{Value, json};

use super::catalogue::{self, ScalePaths};
use super::columns::{Step, lookup};

fn paths(resource: &Resource) -> Option<ScalePaths> {
    catalogue::of(resource)?.scale.clone()
}

/// The Scale of a custom resource; `None` for built-ins.
pub fn view(resource: &Resource, object: &Value) -> Option<Value> {
    let paths = paths(resource)?;
    let meta = &object["metadata"];
    let replicas = |path: &[Step]| lookup(object, path).and_then(Value::as_i64).unwrap_or(0);
    let mut status = json!({ "replicas": replicas(&paths.status_replicas) });
    if let Some(selector) = paths
        .label_selector
        .as_deref()
        .and_then(|p| lookup(object, p))
        .and_then(Value::as_str)
    {
        status["selector"] = json!(selector);
    }
    Some(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": replicas(&paths.spec_replicas) },
        "status": status,
    }))
}

/// Writes the desired replicas where the CRD says; false for built-ins.
pub fn set_replicas(resource: &Resource, object: &mut Value, replicas: i64) -> bool {
    let Some(paths) = paths(resource) else {
        return false;
    };
    let mut node = object;
    for step in &paths.spec_replicas {
        node = match step {
            Step::Field(name) => {
                if !node.is_object() {
                    *node = json!({});
                }
                &mut node[name.as_str()]
            }
            Step::Index(i) => &mut node[*i],
        };
    }
    *node = json!(replicas);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_paths_are_followed_both_ways() {
        let crd = json!({
            "metadata": { "name": "scalers.example.com" },
            "spec": { "group": "example.com", "names": { "plural": "scalers", "kind": "Scaler" },
                "versions": [{ "name": "v1", "served": true, "storage": true, "subresources": { "scale": {
                    "specReplicasPath": ".spec.size", "statusReplicasPath": ".status.ready", "labelSelectorPath": ".status.selector",
                } } }] },
            "status": { "conditions": [{ "type": "Established", "status": "True" }] },
        });
        catalogue::install(&[crd]);
        let resource = crate::crd::find("example.com", "v1", "scalers").unwrap();
        let mut object = json!({ "metadata": { "name": "s" }, "spec": { "size": 2 }, "status": { "ready": 1, "selector": "app=s" } });
        let scale = view(resource, &object).unwrap();
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(
            scale["status"],
            json!({ "replicas": 1, "selector": "app=s" })
        );
        assert!(set_replicas(resource, &mut object, 5));
        assert_eq!(object["spec"]["size"], 5);
    }
}
