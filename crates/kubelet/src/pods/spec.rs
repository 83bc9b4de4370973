//! A pod's spec turned into CRI requests: the sandbox config (hostname, DNS, ports, namespaces,
//! cgroup parent) and each container's config (image, command, env, mounts, resources,
//! security context, log path), as upstream's kuberuntime builds them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use kube::ResourceExt;
use r8s_api::quantity::Quantity;

use crate::cri::v1;
use crate::pods::env::{ConfigError, expand};

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";

/// Node-wide settings the specs depend on.
pub struct NodeSettings<'a> {
    pub cgroup_root: &'a str,
    pub logs_dir: &'a Path,
    pub cluster_dns: &'a [String],
    pub cluster_domain: &'a str,
    pub host_resolv_conf: &'a str,
}

/// Paths a pod's containers mount that the kubelet makes: its `/etc/hosts`, and each
/// container's termination message file.
pub fn hosts_file(pod_dir: &Path) -> PathBuf {
    pod_dir.join("etc-hosts")
}

pub fn termination_file(pod_dir: &Path, container: &str, attempt: u32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(container)
        .join(format!("termination-{attempt}"))
}

pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

pub fn pod_log_dir(settings: &NodeSettings<'_>, pod: &Pod) -> PathBuf {
    settings.logs_dir.join(format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default()
    ))
}

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME.into(), pod.name_any()),
        (POD_NAMESPACE.into(), pod.namespace().unwrap_or_default()),
        (POD_UID.into(), pod.uid().unwrap_or_default()),
    ])
}

/// The pod's hostname: `spec.hostname` or its name, cut to 63 characters as upstream does.
pub fn hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.name_any());
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// `/etc/hosts` as upstream's kubelet writes it for a pod on the pod network.
pub fn etc_hosts(pod: &Pod, pod_ips: &[String], domain: &str) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let name = hostname(pod);
    let subdomain = pod.spec.as_ref().and_then(|s| s.subdomain.clone());
    for ip in pod_ips {
        match &subdomain {
            Some(sub) if !sub.is_empty() => text.push_str(&format!(
                "{ip}\t{name}.{sub}.{}.svc.{domain}\t{name}\n",
                pod.namespace().unwrap_or_default()
            )),
            _ => text.push_str(&format!("{ip}\t{name}\n")),
        }
    }
    for alias in pod
        .spec
        .iter()
        .flat_map(|s| s.host_aliases.iter().flatten())
    {
        text.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            alias.ip,
            alias.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    text
}

fn resolv_conf(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(str::to_string)),
            Some("search") => searches = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (servers, searches, options)
}

/// The pod's resolv.conf by its `dnsPolicy` and `dnsConfig`, as upstream's kubelet builds it.
pub fn dns_config(pod: &Pod, settings: &NodeSettings<'_>) -> v1::DnsConfig {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.clone())
        .unwrap_or_else(|| "ClusterFirst".into());
    let host_net = host_network(pod);
    let (host_servers, host_searches, host_options) = resolv_conf(settings.host_resolv_conf);
    let cluster = !settings.cluster_dns.is_empty()
        && (policy == "ClusterFirstWithHostNet" || (policy == "ClusterFirst" && !host_net));
    let mut config = if policy == "None" {
        v1::DnsConfig::default()
    } else if cluster {
        let ns = pod.namespace().unwrap_or_default();
        let domain = settings.cluster_domain;
        let mut searches = vec![
            format!("{ns}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.to_string(),
        ];
        searches.extend(host_searches);
        v1::DnsConfig {
            servers: settings.cluster_dns.to_vec(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        v1::DnsConfig {
            servers: host_servers,
            searches: host_searches,
            options: host_options,
        }
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        config
            .servers
            .extend(extra.nameservers.iter().flatten().cloned());
        config
            .searches
            .extend(extra.searches.iter().flatten().cloned());
        for option in extra.options.iter().flatten() {
            let Some(name) = &option.name else { continue };
            config
                .options
                .retain(|o| o.split(':').next() != Some(name.as_str()));
            config.options.push(match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.clone(),
            });
        }
    }
    config.searches.dedup();
    config
}

fn namespace_options(pod: &Pod) -> v1::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let mode = |on: bool, otherwise: v1::NamespaceMode| {
        i32::from(if on {
            v1::NamespaceMode::Node
        } else {
            otherwise
        })
    };
    v1::NamespaceOption {
        network: mode(flag(|s| s.host_network), v1::NamespaceMode::Pod),
        pid: mode(
            flag(|s| s.host_pid),
            if flag(|s| s.share_process_namespace) {
                v1::NamespaceMode::Pod
            } else {
                v1::NamespaceMode::Container
            },
        ),
        ipc: mode(flag(|s| s.host_ipc), v1::NamespaceMode::Pod),
        ..Default::default()
    }
}

pub fn cgroup_parent(settings: &NodeSettings<'_>, pod: &Pod) -> String {
    format!(
        "{}/pod{}",
        settings.cgroup_root.trim_end_matches('/'),
        pod.uid().unwrap_or_default()
    )
}

pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    settings: &NodeSettings<'_>,
) -> v1::PodSandboxConfig {
    let spec = pod.spec.as_ref();
    let pod_sc = spec.and_then(|s| s.security_context.as_ref());
    let mut labels = pod.labels().clone().into_iter().collect::<HashMap<_, _>>();
    labels.extend(pod_labels(pod));
    let port_mappings = spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| v1::PortMapping {
            protocol: i32::from(match p.protocol.as_deref() {
                Some("UDP") => v1::Protocol::Udp,
                Some("SCTP") => v1::Protocol::Sctp,
                _ => v1::Protocol::Tcp,
            }),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or_default(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let sysctls = pod_sc
        .and_then(|sc| sc.sysctls.as_ref())
        .map(|list| {
            list.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            namespace: pod.namespace().unwrap_or_default(),
            attempt,
        }),
        hostname: if host_network(pod) {
            String::new()
        } else {
            hostname(pod)
        },
        log_directory: pod_log_dir(settings, pod).display().to_string(),
        dns_config: Some(dns_config(pod, settings)),
        port_mappings,
        labels,
        annotations: pod.annotations().clone().into_iter().collect(),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(settings, pod),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: pod_sc
                    .and_then(|sc| sc.run_as_user)
                    .map(|value| v1::Int64Value { value }),
                run_as_group: pod_sc
                    .and_then(|sc| sc.run_as_group)
                    .map(|value| v1::Int64Value { value }),
                supplemental_groups: pod_sc
                    .and_then(|sc| sc.supplemental_groups.clone())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The hash of a container's spec: a change (a new image, say) restarts the container.
pub fn container_hash(container: &Container) -> String {
    let text = serde_json::to_string(container).unwrap_or_default();
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:x}")
}

fn quantity(container: &Container, kind: &str, name: &str) -> Option<Quantity> {
    let resources = container.resources.as_ref()?;
    let map = match kind {
        "limits" => resources.limits.as_ref()?,
        _ => resources.requests.as_ref()?,
    };
    Quantity::parse(&map.get(name)?.0)
}

/// Upstream's QoS class: Guaranteed, Burstable or BestEffort.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers: Vec<&Container> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for name in ["cpu", "memory"] {
            let limit = quantity(c, "limits", name);
            let request = quantity(c, "requests", name).or(limit);
            any |= limit.is_some() || request.is_some();
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn resources(
    pod: &Pod,
    container: &Container,
    memory_capacity: i128,
) -> v1::LinuxContainerResources {
    const PERIOD: i64 = 100_000;
    let cpu_request =
        quantity(container, "requests", "cpu").or(quantity(container, "limits", "cpu"));
    let cpu_limit = quantity(container, "limits", "cpu");
    let memory_limit = quantity(container, "limits", "memory");
    let memory_request = quantity(container, "requests", "memory").or(memory_limit);
    let oom_score_adj = match qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            // Burstable: 1000 − 1000 × request / capacity, kept within [3, 999] (upstream).
            let request = memory_request.map_or(0, |q| q.value());
            let adj = if memory_capacity > 0 {
                1000 - (1000 * request / memory_capacity)
            } else {
                999
            };
            adj.clamp(3, 999) as i64
        }
    };
    v1::LinuxContainerResources {
        cpu_period: if cpu_limit.is_some() { PERIOD } else { 0 },
        cpu_quota: cpu_limit.map_or(0, |q| {
            (q.millis * i128::from(PERIOD) / 1000).max(1000) as i64
        }),
        // 1024 shares per CPU; at least 2, as the kernel wants.
        cpu_shares: cpu_request.map_or(2, |q| (q.millis * 1024 / 1000).max(2) as i64),
        memory_limit_in_bytes: memory_limit.map_or(0, |q| q.value() as i64),
        oom_score_adj,
        ..Default::default()
    }
}

/// The paths a non-privileged container cannot see or write, as upstream's defaults.
const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn security_context(
    pod: &Pod,
    pod_sc: Option<&PodSecurityContext>,
    sc: Option<&SecurityContext>,
) -> v1::LinuxContainerSecurityContext {
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let capabilities = sc
        .and_then(|s| s.capabilities.as_ref())
        .map(|c| v1::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        });
    v1::LinuxContainerSecurityContext {
        capabilities,
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or(pod_sc.and_then(|s| s.run_as_user))
            .map(|value| v1::Int64Value { value }),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or(pod_sc.and_then(|s| s.run_as_group))
            .map(|value| v1::Int64Value { value }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: pod_sc
            .and_then(|s| s.supplemental_groups.clone())
            .unwrap_or_default(),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        masked_paths: if privileged {
            Vec::new()
        } else {
            MASKED_PATHS.iter().map(|p| p.to_string()).collect()
        },
        readonly_paths: if privileged {
            Vec::new()
        } else {
            READONLY_PATHS.iter().map(|p| p.to_string()).collect()
        },
        ..Default::default()
    }
}

/// Everything a container config is made from besides the pod and container themselves.
pub struct ContainerInputs<'a> {
    pub image_ref: String,
    pub attempt: u32,
    pub env: Vec<(String, String)>,
    pub volumes: &'a BTreeMap<String, PathBuf>,
    pub pod_dir: &'a Path,
    pub memory_capacity: i128,
}

pub fn container_config(
    pod: &Pod,
    container: &Container,
    inputs: &ContainerInputs<'_>,
) -> Result<v1::ContainerConfig, ConfigError> {
    let vars: BTreeMap<String, String> = inputs.env.iter().cloned().collect();
    let expand_all = |list: &Option<Vec<String>>| {
        list.iter()
            .flatten()
            .map(|s| expand(s, &vars))
            .collect::<Vec<_>>()
    };
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let base = inputs.volumes.get(&mount.name).ok_or_else(|| {
            ConfigError(format!(
                "volume mount {:?} names no volume of the pod",
                mount.name
            ))
        })?;
        let sub_path = match (&mount.sub_path, &mount.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => Some(p.clone()),
            (_, Some(e)) if !e.is_empty() => Some(expand(e, &vars)),
            _ => None,
        };
        let host_path = match sub_path {
            Some(sub) => {
                if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                    return Err(ConfigError(format!(
                        "subPath {sub:?} must be a relative path inside the volume"
                    )));
                }
                let path = base.join(&sub);
                if std::fs::symlink_metadata(&path).is_err() {
                    std::fs::create_dir_all(&path).map_err(|e| {
                        ConfigError(format!("cannot create subPath {}: {e}", path.display()))
                    })?;
                }
                path
            }
            None => base.clone(),
        };
        mounts.push(v1::Mount {
            container_path: mount.mount_path.clone(),
            host_path: host_path.display().to_string(),
            readonly: mount.read_only.unwrap_or(false),
            propagation: i32::from(match mount.mount_propagation.as_deref() {
                Some("HostToContainer") => v1::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => v1::MountPropagation::PropagationBidirectional,
                _ => v1::MountPropagation::PropagationPrivate,
            }),
            ..Default::default()
        });
    }
    let has_mount =
        |mounts: &[v1::Mount], path: &str| mounts.iter().any(|m| m.container_path == path);
    if !host_network(pod) && !has_mount(&mounts, "/etc/hosts") {
        mounts.push(v1::Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts_file(inputs.pod_dir).display().to_string(),
            ..Default::default()
        });
    }
    let termination_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let termination_file = termination_file(inputs.pod_dir, &container.name, inputs.attempt);
    if let Some(dir) = termination_file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(&termination_file, b"")
        .map_err(|e| ConfigError(format!("cannot create {}: {e}", termination_file.display())))?;
    // Writable by any user the container runs as, as upstream makes it.
    let _ = std::fs::set_permissions(
        &termination_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    );
    if !has_mount(&mounts, &termination_path) {
        mounts.push(v1::Mount {
            container_path: termination_path.clone(),
            host_path: termination_file.display().to_string(),
            ..Default::default()
        });
    }
    let mut labels = pod_labels(pod);
    labels.insert(CONTAINER_NAME.into(), container.name.clone());
    let annotations = HashMap::from([
        (CONTAINER_HASH.into(), container_hash(container)),
        (RESTART_COUNT.into(), inputs.attempt.to_string()),
        (TERMINATION_MESSAGE_PATH.into(), termination_path),
    ]);
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    Ok(v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: container.name.clone(),
            attempt: inputs.attempt,
        }),
        image: Some(v1::ImageSpec {
            image: inputs.image_ref.clone(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: inputs
            .env
            .iter()
            .map(|(key, value)| v1::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", container.name, inputs.attempt),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(resources(pod, container, inputs.memory_capacity)),
            security_context: Some(security_context(
                pod,
                pod_sc,
                container.security_context.as_ref(),
            )),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn settings<'a>(dns: &'a [String]) -> NodeSettings<'a> {
        NodeSettings {
            cgroup_root: "/r8s/node-a",
            logs_dir: Path::new("/data/logs"),
            cluster_dns: dns,
            cluster_domain: "cluster.local",
            host_resolv_conf: "nameserver 192.0.2.53\nsearch example.test\n",
        }
    }

    #[test]
    fn cluster_first_dns_searches_the_namespace_first() {
        let dns = vec!["10.96.0.10".to_string()];
        let p = pod(
            serde_json::json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"containers": []}}),
        );
        let config = dns_config(&p, &settings(&dns));
        assert_eq!(config.servers, ["10.96.0.10"]);
        assert_eq!(
            config.searches[..3],
            ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        );
        assert_eq!(config.options, ["ndots:5"]);
        let host = pod(
            serde_json::json!({"metadata": {"name": "a", "namespace": "ns"},
            "spec": {"containers": [], "dnsPolicy": "Default"}}),
        );
        assert_eq!(dns_config(&host, &settings(&dns)).servers, ["192.0.2.53"]);
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let with = |resources: serde_json::Value| {
            pod(serde_json::json!({"metadata": {"name": "a"},
                "spec": {"containers": [{"name": "c", "resources": resources}]}}))
        };
        assert_eq!(qos_class(&with(serde_json::json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&with(
                serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&with(serde_json::json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = resources(&p, c, 1 << 30);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.cpu_shares, 512);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.oom_score_adj, -997);
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"containers": [], "hostname": "h", "subdomain": "s"}}),
        );
        let text = etc_hosts(&p, &["10.244.0.5".into()], "cluster.local");
        assert!(
            text.contains("10.244.0.5\th.s.ns.svc.cluster.local\th\n"),
            "{text}"
        );
    }
}
