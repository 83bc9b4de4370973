//! Defaults shared by several kinds: upstream's `core/v1` defaults for a pod spec, which apply
//! wherever a pod template appears (Pods, Deployments, Jobs, …), and the status and generation
//! resets the registry strategies do on create.

use serde_json::{Value, json};

/// Sets `field` of an object to `value` when it is absent or null.
pub fn set_default(object: &mut Value, field: &str, value: Value) {
    if object.is_object() && object.get(field).is_none_or(Value::is_null) {
        object[field] = value;
    }
}

/// The object in `field`, made an empty one when absent; none when it holds something else.
pub fn object_field<'a>(parent: &'a mut Value, field: &str) -> Option<&'a mut Value> {
    set_default(parent, field, json!({}));
    parent.get_mut(field).filter(|v| v.is_object())
}

/// The object elements of an array field, for changing in place.
pub fn items_mut<'a>(object: &'a mut Value, field: &str) -> impl Iterator<Item = &'a mut Value> {
    object
        .get_mut(field)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter(|item| item.is_object())
}

/// Removes `metadata.generation`: upstream tracks it only for kinds whose strategy sets it.
pub fn drop_generation(object: &mut Value) {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("generation");
    }
}

/// The tag of an image reference as upstream's parser reads it: `latest` when it names neither
/// tag nor digest, empty when it names only a digest.
fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // A colon after the last slash starts the tag; one before it belongs to a registry port.
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if digest => "",
        None => "latest",
    }
}

/// Container defaults: pull policy from the image tag, termination message, port protocols,
/// probe timings, and the `resources` object the API always serializes.
fn default_container(container: &mut Value) {
    if !container.is_object() {
        return;
    }
    let image = container["image"].as_str().unwrap_or_default();
    let pull = if image_tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default(container, "imagePullPolicy", json!(pull));
    set_default(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    set_default(container, "terminationMessagePolicy", json!("File"));
    set_default(container, "resources", json!({}));
    for port in items_mut(container, "ports") {
        set_default(port, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = container.get_mut(probe).filter(|p| p.is_object()) {
            default_probe(probe);
        }
    }
    for handler in ["postStart", "preStop"] {
        if let Some(get) = container
            .get_mut("lifecycle")
            .and_then(|l| l.get_mut(handler))
            .and_then(|h| h.get_mut("httpGet"))
            .filter(|g| g.is_object())
        {
            default_http_get(get);
        }
    }
    for env in items_mut(container, "env") {
        if let Some(field_ref) = env
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .filter(|f| f.is_object())
        {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    }
}

fn default_http_get(get: &mut Value) {
    set_default(get, "path", json!("/"));
    set_default(get, "scheme", json!("HTTP"));
}

fn default_probe(probe: &mut Value) {
    for (field, value) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        if probe[field].as_i64().unwrap_or(0) == 0 {
            probe[field] = json!(value);
        }
    }
    if let Some(get) = probe.get_mut("httpGet").filter(|g| g.is_object()) {
        default_http_get(get);
    }
}

/// Volume defaults: an emptyDir when no source is named, file modes 0644 for projected
/// sources, an hour for service account tokens, and an unset host path type.
fn default_volume(volume: &mut Value) {
    let has_source = volume
        .as_object()
        .is_some_and(|v| v.iter().any(|(k, v)| k != "name" && !v.is_null()));
    if !has_source {
        volume["emptyDir"] = json!({});
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = volume.get_mut(source).filter(|s| s.is_object()) {
            set_default(source, "defaultMode", json!(420));
        }
    }
    if let Some(host_path) = volume.get_mut("hostPath").filter(|s| s.is_object()) {
        set_default(host_path, "type", json!(""));
    }
    if let Some(projected) = volume.get_mut("projected").filter(|s| s.is_object()) {
        for source in items_mut(projected, "sources") {
            if let Some(token) = source
                .get_mut("serviceAccountToken")
                .filter(|t| t.is_object())
            {
                set_default(token, "expirationSeconds", json!(3600));
            }
        }
    }
}

/// Upstream's `PodSpec` defaults, applied wherever a pod spec appears.
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in items_mut(spec, list) {
            default_container(container);
        }
    }
    for volume in items_mut(spec, "volumes") {
        default_volume(volume);
    }
}

/// Defaults of a pod template (`spec.template` of workloads): its pod spec's.
pub fn default_pod_template(template: &mut Value) {
    if let Some(spec) = template.get_mut("spec") {
        default_pod_spec(spec);
    }
}

/// Upstream's `PersistentVolumeClaimSpec` defaults.
pub fn default_claim_spec(spec: &mut Value) {
    set_default(spec, "volumeMode", json!("Filesystem"));
}

/// The creation time, for server-set transition times of a new object.
pub fn created_at(object: &Value) -> Value {
    object["metadata"]["creationTimestamp"].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_images_are_pulled_always() {
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("registry:5000/nginx"), "latest");
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn latest_images_are_pulled_always() {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx:latest"}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn tagged_and_digest_images_are_pulled_if_not_present() {
        for image in [
            "nginx:1.27",
            "registry:5000/nginx:1.27",
            "nginx@sha256:abc",
            "registry:5000/nginx@sha256:abc",
        ] {
            let mut spec = json!({"containers": [{"name": "c", "image": image}]});
            default_pod_spec(&mut spec);
            assert_eq!(
                spec["containers"][0]["imagePullPolicy"], "IfNotPresent",
                "{image}"
            );
        }
    }

    #[test]
    fn explicit_pull_policy_is_kept() {
        let mut spec =
            json!({"containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Never"}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
    }

    #[test]
    fn pod_specs_get_upstream_defaults() {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx:1",
            "ports": [{"containerPort": 80}]}]});
        default_pod_spec(&mut spec);
        assert_eq!(
            spec,
            json!({
                "containers": [{
                    "name": "c",
                    "image": "nginx:1",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }],
                "dnsPolicy": "ClusterFirst",
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "terminationGracePeriodSeconds": 30,
            })
        );
    }

    #[test]
    fn probes_get_timings_and_http_defaults() {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx",
            "livenessProbe": {"httpGet": {"port": 80}}}]});
        default_pod_spec(&mut spec);
        assert_eq!(
            spec["containers"][0]["livenessProbe"],
            json!({
                "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                "timeoutSeconds": 1,
                "periodSeconds": 10,
                "successThreshold": 1,
                "failureThreshold": 3,
            })
        );
    }

    #[test]
    fn volumes_without_a_source_are_empty_dirs() {
        let mut spec = json!({"containers": [], "volumes": [{"name": "v"}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["volumes"][0], json!({"name": "v", "emptyDir": {}}));
    }

    #[test]
    fn projected_volume_files_default_to_mode_0644() {
        let mut spec = json!({"containers": [], "volumes": [
            {"name": "s", "secret": {"secretName": "x"}},
            {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
        ]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["volumes"][0]["secret"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][1]["projected"]["defaultMode"], 420);
        assert_eq!(
            spec["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3600
        );
    }

    #[test]
    fn field_refs_default_to_api_version_v1() {
        let mut spec = json!({"containers": [{"name": "c", "image": "x", "env": [
            {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]});
        default_pod_spec(&mut spec);
        assert_eq!(
            spec["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
            "v1"
        );
    }
}
