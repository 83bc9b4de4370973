//! A container's environment as upstream's kubelet builds it: Service links, `envFrom`, then
//! `env` in order (values may refer to earlier ones as `$(NAME)`), with `fieldRef`,
//! `resourceFieldRef`, `configMapKeyRef` and `secretKeyRef` resolved through the API.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use r8s_api::quantity::Quantity;

/// Why a container cannot be created yet (upstream's `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Expands `$(NAME)` from `vars`; `$$` is a literal `$`; unknown names stay as written.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A pod field by its `fieldRef.fieldPath`.
pub fn pod_field(pod: &Pod, path: &str, host_ip: &str, pod_ip: &str) -> Option<String> {
    let spec = pod.spec.as_ref();
    let by_key = |map: Option<&BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        map.and_then(|m| m.get(key).cloned())
            .or(Some(String::new()))
    };
    Some(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        _ => {
            if let Some(rest) = path.strip_prefix("metadata.labels") {
                return by_key(pod.metadata.labels.as_ref(), rest);
            }
            if let Some(rest) = path.strip_prefix("metadata.annotations") {
                return by_key(pod.metadata.annotations.as_ref(), rest);
            }
            return None;
        }
    })
}

/// `resourceFieldRef`: a request or limit in the divisor's unit, rounded up as upstream does;
/// an unset limit is the node's allocatable.
pub fn resource_field(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node_allocatable: &BTreeMap<String, String>,
) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let resources = container.resources.as_ref();
    let value = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()?.get(name)),
        "requests" => resources.and_then(|r| r.requests.as_ref()?.get(name)),
        _ => return None,
    }
    .map(|q| q.0.clone())
    .or_else(|| match kind {
        "limits" => node_allocatable.get(name).cloned(),
        _ => Some("0".into()),
    })?;
    let value = Quantity::parse(&value)?;
    let divisor = Quantity::parse(divisor.unwrap_or("1"))?;
    let (v, d) = (value.millis, divisor.millis);
    if d <= 0 {
        return None;
    }
    Some(((v + d - 1) / d).to_string())
}

/// `FOO_SERVICE_HOST`, `FOO_SERVICE_PORT` and the Docker-link variables for each Service, as
/// upstream adds them when `enableServiceLinks` is on (the default).
pub fn service_links(services: &[Service]) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref() else {
            continue;
        };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let prefix = service.name_any().to_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        vars.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
        vars.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for port in ports {
            if let Some(name) = &port.name {
                vars.insert(
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        name.to_uppercase().replace('-', "_")
                    ),
                    port.port.to_string(),
                );
            }
        }
        let protocol = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        vars.insert(
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", protocol(first).to_lowercase(), first.port),
        );
        for port in ports {
            let proto = protocol(port);
            let base = format!("{prefix}_PORT_{}_{}", port.port, proto.to_uppercase());
            vars.insert(
                base.clone(),
                format!("{}://{ip}:{}", proto.to_lowercase(), port.port),
            );
            vars.insert(format!("{base}_PROTO"), proto.to_lowercase());
            vars.insert(format!("{base}_PORT"), port.port.to_string());
            vars.insert(format!("{base}_ADDR"), ip.to_string());
        }
    }
    vars
}

/// Where a container's referenced ConfigMaps and Secrets come from, fetched once per sync.
pub struct Sources {
    client: Client,
    namespace: String,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl Sources {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    pub async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = api
                .get_opt(name)
                .await
                .map_err(|e| ConfigError(format!("cannot read configmap {name:?}: {e}")))?;
            self.config_maps.insert(name.to_string(), found);
        }
        Ok(self.config_maps[name].as_ref())
    }

    pub async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = api
                .get_opt(name)
                .await
                .map_err(|e| ConfigError(format!("cannot read secret {name:?}: {e}")))?;
            self.secrets.insert(name.to_string(), found);
        }
        Ok(self.secrets[name].as_ref())
    }

    /// A ConfigMap's keys as text (binaryData decoded lossily, as env values are text).
    pub async fn config_map_data(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        Ok(self.config_map(name).await?.map(|cm| {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.iter().flatten() {
                data.insert(k.clone(), v.0.clone());
            }
            data
        }))
    }

    pub async fn secret_data(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        Ok(self.secret(name).await?.map(|s| {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            for (k, v) in s.string_data.iter().flatten() {
                data.insert(k.clone(), v.clone().into_bytes());
            }
            data
        }))
    }

    /// Services whose variables the pod's containers get: its namespace's, plus the master
    /// Services of `default` (upstream's rule), unless `enableServiceLinks` is off.
    pub async fn service_links(&self, pod: &Pod) -> BTreeMap<String, String> {
        let enabled = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut services = Vec::new();
        if enabled {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
            if let Ok(list) = api.list(&ListParams::default()).await {
                services.extend(list.items);
            }
        }
        if self.namespace != "default" || !enabled {
            let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
            if let Ok(Some(kubernetes)) = api.get_opt("kubernetes").await {
                services.retain(|s| s.name_any() != "kubernetes");
                services.push(kubernetes);
            }
        }
        service_links(&services)
    }
}

/// The container's final environment, in upstream's order and precedence.
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &mut Sources,
    links: &BTreeMap<String, String>,
    host_ip: &str,
    pod_ip: &str,
    node_allocatable: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars: BTreeMap<String, String> = links.clone();
    let mut order: Vec<String> = links.keys().cloned().collect();
    let mut set = |vars: &mut BTreeMap<String, String>, name: String, value: String| {
        if vars.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &from.config_map_ref {
            let data = sources.config_map_data(&cm.name).await?;
            match data {
                Some(data) => data,
                None if cm.optional == Some(true) => continue,
                None => return Err(ConfigError(format!("configmap \"{}\" not found", cm.name))),
            }
        } else if let Some(secret) = &from.secret_ref {
            match sources.secret_data(&secret.name).await? {
                Some(data) => data,
                None if secret.optional == Some(true) => continue,
                None => return Err(ConfigError(format!("secret \"{}\" not found", secret.name))),
            }
        } else {
            continue;
        };
        for (key, value) in data {
            set(
                &mut vars,
                format!("{prefix}{key}"),
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
    }
    for env in container.env.iter().flatten() {
        let value = if let Some(from) = &env.value_from {
            if let Some(field) = &from.field_ref {
                pod_field(pod, &field.field_path, host_ip, pod_ip).ok_or_else(|| {
                    ConfigError(format!("unsupported fieldPath {:?}", field.field_path))
                })?
            } else if let Some(resource) = &from.resource_field_ref {
                let target = match resource.container_name.as_deref() {
                    Some(name) if !name.is_empty() => pod
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter())
                        .find(|c| c.name == name)
                        .unwrap_or(container),
                    _ => container,
                };
                resource_field(
                    target,
                    &resource.resource,
                    resource.divisor.as_ref().map(|d| d.0.as_str()),
                    node_allocatable,
                )
                .ok_or_else(|| {
                    ConfigError(format!("unsupported resource {:?}", resource.resource))
                })?
            } else if let Some(key) = &from.config_map_key_ref {
                match sources.config_map_data(&key.name).await? {
                    Some(data) => match data.get(&key.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                key.key,
                                pod.namespace().unwrap_or_default(),
                                key.name
                            )));
                        }
                    },
                    None if key.optional == Some(true) => continue,
                    None => {
                        return Err(ConfigError(format!("configmap \"{}\" not found", key.name)));
                    }
                }
            } else if let Some(key) = &from.secret_key_ref {
                match sources.secret_data(&key.name).await? {
                    Some(data) => match data.get(&key.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {}/{}",
                                key.key,
                                pod.namespace().unwrap_or_default(),
                                key.name
                            )));
                        }
                    },
                    None if key.optional == Some(true) => continue,
                    None => {
                        return Err(ConfigError(format!("secret \"{}\" not found", key.name)));
                    }
                }
            } else {
                String::new()
            }
        } else {
            expand(env.value.as_deref().unwrap_or_default(), &vars)
        };
        set(&mut vars, env.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|name| {
            let value = vars[&name].clone();
            (name, value)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_upstream() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)", &vars), "x-$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5 $(A", &vars), "cost $5 $(A");
        assert_eq!(expand("", &vars), "");
    }

    #[test]
    fn service_links_name_every_port() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-svc"},
            "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap();
        let vars = service_links(&[service]);
        assert_eq!(vars["MY_SVC_SERVICE_HOST"], "10.96.0.5");
        assert_eq!(vars["MY_SVC_SERVICE_PORT"], "80");
        assert_eq!(vars["MY_SVC_SERVICE_PORT_HTTP"], "80");
        assert_eq!(vars["MY_SVC_PORT"], "tcp://10.96.0.5:80");
        assert_eq!(vars["MY_SVC_PORT_80_TCP_ADDR"], "10.96.0.5");
    }

    #[test]
    fn resource_fields_round_up_in_the_divisor() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}
        }))
        .unwrap();
        let node = BTreeMap::from([("cpu".to_string(), "2".to_string())]);
        assert_eq!(
            resource_field(&container, "limits.cpu", None, &node).unwrap(),
            "1"
        );
        assert_eq!(
            resource_field(&container, "limits.cpu", Some("1m"), &node).unwrap(),
            "250"
        );
        assert_eq!(
            resource_field(&container, "limits.memory", Some("1Mi"), &node).unwrap(),
            "64"
        );
        assert_eq!(
            resource_field(&container, "requests.cpu", Some("1m"), &node).unwrap(),
            "100"
        );
        let bare: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        assert_eq!(
            resource_field(&bare, "limits.cpu", None, &node).unwrap(),
            "2"
        );
    }
}
