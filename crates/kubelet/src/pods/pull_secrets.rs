//! Registry credentials for a pull from the pod's `imagePullSecrets`
//! (`kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg` Secrets).

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::cri::v1;

/// The registry host of an image reference (`docker.io` when it names none).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".into(),
    }
}

fn matches(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    host == registry
        || (registry == "docker.io"
            && (host == "index.docker.io" || host == "registry-1.docker.io"))
}

/// Credentials from a docker config's `auths` (or a bare dockercfg map) for `registry`.
pub fn credentials(config: &Value, registry: &str) -> Option<v1::AuthConfig> {
    let auths = config.get("auths").unwrap_or(config).as_object()?;
    let (_, entry) = auths.iter().find(|(key, _)| matches(key, registry))?;
    let text = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(v1::AuthConfig {
        username: text("username"),
        password: text("password"),
        auth: text("auth"),
        server_address: registry.to_string(),
        identity_token: text("identitytoken"),
        registry_token: text("registrytoken"),
    })
}

/// The first of the pod's pull secrets with credentials for the image's registry.
pub async fn auth_for(client: &Client, pod: &Pod, image: &str) -> Option<v1::AuthConfig> {
    let registry = registry_of(image);
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    for reference in pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
    {
        let Ok(Some(secret)) = secrets.get_opt(&reference.name).await else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let Some(raw) = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))
        else {
            continue;
        };
        let Ok(config) = serde_json::from_slice::<Value>(&raw.0) else {
            continue;
        };
        if let Some(auth) = credentials(&config, &registry) {
            return Some(auth);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_found_in_references() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/busybox"), "127.0.0.1:5000");
        assert_eq!(registry_of("quay.io/a/b"), "quay.io");
    }

    #[test]
    fn credentials_match_the_registry() {
        let config = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "127.0.0.1:5000": {"username": "u", "password": "p"}
        }});
        assert_eq!(credentials(&config, "docker.io").unwrap().auth, "dTpw");
        assert_eq!(
            credentials(&config, "127.0.0.1:5000").unwrap().username,
            "u"
        );
        assert!(credentials(&config, "quay.io").is_none());
    }
}
