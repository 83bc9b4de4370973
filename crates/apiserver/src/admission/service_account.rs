//! The ServiceAccount plugin: a new pod runs as a ServiceAccount that exists (`default` unless
//! it names one), and unless the pod or its ServiceAccount opts out, every container mounts a
//! projected volume with a bound token, the cluster CA and the namespace.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Attributes, Operation};
use crate::objects;
use crate::registry::Registry;
use crate::status::ApiError;

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`: an hour and seven seconds, so the kubelet
/// can tell these tokens from ones a user asked for.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The `default` ServiceAccount is made by a controller just after its namespace; a pod created
/// right after the namespace waits for it a little, as upstream's plugin retries.
const DEFAULT_LOOKUP_ATTEMPTS: usize = 20;
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub async fn admit(
    registry: &Registry,
    attributes: &Attributes<'_>,
    pod: &mut Value,
) -> Result<(), ApiError> {
    if !attributes.is("", "pods") || attributes.operation != Operation::Create {
        return Ok(());
    }
    if pod["metadata"]["annotations"][MIRROR_POD_ANNOTATION].is_string() {
        return check_mirror_pod(attributes, pod);
    }
    let namespace = attributes.namespace.unwrap_or_default();
    if pod["spec"]["serviceAccountName"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        pod["spec"]["serviceAccountName"] = json!(DEFAULT_SERVICE_ACCOUNT);
    }
    let name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let account = lookup(registry, namespace, &name).await?.ok_or_else(|| {
        attributes.forbidden(format!(
            "error looking up service account {namespace}/{name}: serviceaccount {name:?} not found"
        ))
    })?;
    if should_automount(&account, pod) {
        let volume = format!("{VOLUME_PREFIX}{}", objects::generated_suffix());
        mount_token(pod, &volume);
    }
    let pull_secrets = &account["imagePullSecrets"];
    if pod["spec"]["imagePullSecrets"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && pull_secrets.as_array().is_some_and(|s| !s.is_empty())
    {
        let names: Vec<Value> = pull_secrets
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| json!({ "name": s["name"] }))
            .collect();
        pod["spec"]["imagePullSecrets"] = Value::Array(names);
    }
    Ok(())
}

/// The kubelet's static pods must not borrow an identity or secrets from the API.
fn check_mirror_pod(attributes: &Attributes<'_>, pod: &Value) -> Result<(), ApiError> {
    if pod["spec"]["serviceAccountName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
    {
        return Err(attributes.forbidden("a mirror pod may not reference service accounts"));
    }
    let volumes = pod["spec"]["volumes"].as_array().into_iter().flatten();
    for volume in volumes {
        if volume["secret"].is_object() {
            return Err(attributes.forbidden("a mirror pod may not reference secrets"));
        }
        let sources = volume["projected"]["sources"].as_array().into_iter();
        if sources
            .flatten()
            .any(|s| s["serviceAccountToken"].is_object())
        {
            return Err(attributes
                .forbidden("a mirror pod may not use ServiceAccountToken volume projections"));
        }
    }
    Ok(())
}

/// The ServiceAccount from the watch cache, as upstream's admission reads its informer; one
/// the cache has not seen yet (just created) from the store, retried for `default`.
async fn lookup(
    registry: &Registry,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let accounts =
        r8s_api::find("", "v1", "serviceaccounts").expect("catalogue has serviceaccounts");
    let key = objects::key(accounts, Some(namespace), name);
    if let Some(cached) = registry.cache.object(accounts, &key) {
        return Ok(Some(cached.value()));
    }
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_LOOKUP_ATTEMPTS
    } else {
        1
    };
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 + attempt as u64 * 10)).await;
        }
        let found = registry
            .store
            .get(&key)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(kv) = found {
            return objects::decode(&kv.value, kv.mod_revision).map(Some);
        }
    }
    Ok(None)
}

/// The pod's choice wins, then the ServiceAccount's; mounting is the default.
fn should_automount(account: &Value, pod: &Value) -> bool {
    pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or(account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// Mounts the token volume in every init container and container that has nothing at the
/// token path yet, adding the volume if one of them needed it. An existing `kube-api-access-`
/// volume is reused.
pub fn mount_token(pod: &mut Value, generated_name: &str) {
    let spec = &mut pod["spec"];
    let existing = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_owned);
    let volume = existing
        .clone()
        .unwrap_or_else(|| generated_name.to_owned());
    let mount = json!({ "name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH });
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec[list].as_array_mut() else {
            continue;
        };
        for container in containers {
            let mounted = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == TOKEN_MOUNT_PATH);
            if mounted {
                continue;
            }
            if !container["volumeMounts"].is_array() {
                container["volumeMounts"] = json!([]);
            }
            if let Some(mounts) = container["volumeMounts"].as_array_mut() {
                mounts.push(mount.clone());
            }
            needed = true;
        }
    }
    if existing.is_none() && needed {
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        if let Some(volumes) = spec["volumes"].as_array_mut() {
            volumes.push(json!({ "name": volume, "projected": token_volume_source() }));
        }
    }
}

/// Upstream's `TokenVolumeSource`.
fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            { "serviceAccountToken": { "path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS } },
            { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
            { "downwardAPI": { "items": [{
                "path": "namespace",
                "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" },
            }] } },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({ "metadata": { "name": "p" }, "spec": spec })
    }

    #[test]
    fn every_container_and_init_container_mounts_the_token_read_only() {
        let mut p = pod(json!({
            "initContainers": [{ "name": "i" }],
            "containers": [{ "name": "a" }, { "name": "b", "volumeMounts": [{ "name": "x", "mountPath": "/x" }] }],
        }));
        mount_token(&mut p, "kube-api-access-abcde");
        for container in [&p["spec"]["initContainers"][0], &p["spec"]["containers"][0]] {
            assert_eq!(
                container["volumeMounts"],
                json!([{ "name": "kube-api-access-abcde", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH }])
            );
        }
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"][1]["mountPath"],
            TOKEN_MOUNT_PATH
        );
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0]["name"], "kube-api-access-abcde");
        let sources = &volumes[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }

    #[test]
    fn a_container_with_its_own_mount_at_the_token_path_keeps_it() {
        let own = json!([{ "name": "mine", "mountPath": TOKEN_MOUNT_PATH }]);
        let mut p = pod(json!({ "containers": [{ "name": "a", "volumeMounts": own.clone() }] }));
        mount_token(&mut p, "kube-api-access-abcde");
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], own);
        assert!(
            p["spec"]["volumes"].is_null(),
            "no container needed the volume"
        );
    }

    #[test]
    fn an_existing_token_volume_is_reused() {
        let mut p = pod(json!({
            "containers": [{ "name": "a" }],
            "volumes": [{ "name": "kube-api-access-zzzzz", "projected": token_volume_source() }],
        }));
        mount_token(&mut p, "kube-api-access-abcde");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-zzzzz"
        );
    }

    #[test]
    fn the_pod_opting_out_wins_over_the_service_account() {
        let opted_in = json!({ "automountServiceAccountToken": true });
        let opted_out = json!({ "automountServiceAccountToken": false });
        assert!(!should_automount(&opted_in, &pod(opted_out.clone())));
        assert!(should_automount(&opted_out, &pod(opted_in.clone())));
        assert!(!should_automount(&opted_out, &pod(json!({}))));
        assert!(should_automount(&json!({}), &pod(json!({}))));
    }
}
