//! The checks of the Pod Security Standards, as upstream's `k8s.io/pod-security-admission/policy`
//! registers them at policy version 1.37 (`latest`): each a pure function of a pod's metadata and
//! spec (JSON), worded as upstream so clients see the same reasons and details.
//!
//! Restricted runs every Baseline check that no Restricted check overrides, then the Restricted
//! checks; within a level the checks run in the order of their upstream IDs, which is the order
//! their violations are reported in.

use std::collections::BTreeSet;

use serde_json::Value;

/// A Pod Security Standards level, from least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(level: &str) -> Option<Self> {
        match level {
            "privileged" => Some(Self::Privileged),
            "baseline" => Some(Self::Baseline),
            "restricted" => Some(Self::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

/// Why a check refused a pod: a short reason, and what exactly (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

/// The pod (or pod template) being checked.
pub struct Pod<'a> {
    pub metadata: &'a Value,
    pub spec: &'a Value,
}

struct Check {
    id: &'static str,
    level: Level,
    /// Baseline checks this Restricted check replaces.
    overrides: &'static [&'static str],
    run: fn(&Pod) -> Option<Violation>,
}

const fn baseline(id: &'static str, run: fn(&Pod) -> Option<Violation>) -> Check {
    Check {
        id,
        level: Level::Baseline,
        overrides: &[],
        run,
    }
}

const fn restricted(
    id: &'static str,
    overrides: &'static [&'static str],
    run: fn(&Pod) -> Option<Violation>,
) -> Check {
    Check {
        id,
        level: Level::Restricted,
        overrides,
        run,
    }
}

/// Baseline checks, then Restricted ones, each sorted by ID as upstream's registry sorts them.
const CHECKS: &[Check] = &[
    baseline("appArmorProfile", app_armor_profile),
    baseline("capabilities_baseline", capabilities_baseline),
    baseline("hostNamespaces", host_namespaces),
    baseline("hostPathVolumes", host_path_volumes),
    baseline("hostPorts", host_ports),
    baseline("hostProbesAndHostLifecycle", host_probes_and_lifecycle),
    baseline("privileged", privileged),
    baseline("procMount", proc_mount_baseline),
    baseline("seLinuxOptions", se_linux_options),
    baseline("seccompProfile_baseline", seccomp_profile_baseline),
    baseline("sysctls", sysctls),
    baseline("windowsHostProcess", windows_host_process),
    restricted("allowPrivilegeEscalation", &[], allow_privilege_escalation),
    restricted(
        "capabilities_restricted",
        &["capabilities_baseline"],
        capabilities_restricted,
    ),
    restricted("procMount_restricted", &["procMount"], proc_mount),
    restricted(
        "restrictedVolumes",
        &["hostPathVolumes"],
        restricted_volumes,
    ),
    restricted("runAsNonRoot", &[], run_as_non_root),
    restricted("runAsUser", &[], run_as_user),
    restricted(
        "seccompProfile_restricted",
        &["seccompProfile_baseline"],
        seccomp_profile_restricted,
    ),
];

/// Every violation of `level` by `pod`, in upstream's order; empty if the pod is allowed.
pub fn evaluate(level: Level, pod: &Pod) -> Vec<Violation> {
    let overridden: Vec<&str> = match level {
        Level::Restricted => CHECKS.iter().flat_map(|c| c.overrides).copied().collect(),
        _ => Vec::new(),
    };
    CHECKS
        .iter()
        .filter(|c| c.level <= level && level != Level::Privileged)
        .filter(|c| !overridden.contains(&c.id))
        .filter_map(|c| (c.run)(pod))
        .collect()
}

/// Upstream's `ForbiddenDetail`: `reason (detail), reason, …`.
pub fn details(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upstream's `ForbiddenReason`: the reasons alone.
pub fn reasons(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// Init containers, containers, then ephemeral containers, as upstream visits them.
fn containers<'a>(pod: &'a Pod) -> impl Iterator<Item = &'a Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|list| pod.spec[list].as_array().into_iter().flatten())
}

fn name(container: &Value) -> String {
    container["name"].as_str().unwrap_or_default().to_owned()
}

/// The names of the containers (init, regular, ephemeral) for which `bad` holds.
fn names_where(pod: &Pod, bad: impl Fn(&Value) -> bool) -> Vec<String> {
    containers(pod).filter(|c| bad(c)).map(name).collect()
}

/// One violation naming every container for which `bad` holds: `<containers> <must>`.
fn containers_violating(
    pod: &Pod,
    bad: impl Fn(&Value) -> bool,
    reason: &str,
    must: &str,
) -> Option<Violation> {
    let bad = names_where(pod, bad);
    if bad.is_empty() {
        return None;
    }
    violation(reason, format!("{} {must}", containers_named(&bad)))
}

fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|i| format!("\"{}\"", i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 { singular } else { plural }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_named(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn is_windows(pod: &Pod) -> bool {
    pod.spec["os"]["name"] == "windows"
}

/// A pod in its own user namespace (`hostUsers: false`), for which upstream relaxes some checks
/// from policy version 1.35.
fn in_user_namespace(pod: &Pod) -> bool {
    pod.spec["hostUsers"] == false
}

fn is_true(value: &Value) -> bool {
    value.as_bool() == Some(true)
}

fn is_set(value: &Value) -> bool {
    !value.is_null()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn app_armor_profile(pod: &Pod) -> Option<Violation> {
    let allowed = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let profile = &pod.spec["securityContext"]["appArmorProfile"];
    if is_set(profile) && !allowed(text(&profile["type"])) {
        setters.push("pod".to_owned());
        bad_values.insert(text(&profile["type"]).to_owned());
    }
    let mut bad_containers = Vec::new();
    for c in containers(pod) {
        let profile = &c["securityContext"]["appArmorProfile"];
        if is_set(profile) && !allowed(text(&profile["type"])) {
            bad_containers.push(name(c));
            bad_values.insert(text(&profile["type"]).to_owned());
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_named(&bad_containers));
    }
    const PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let mut annotations: Vec<String> = pod.metadata["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k, text(v)))
        .filter(|(_, v)| !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/")))
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    annotations.sort();
    let mut bad_list: Vec<String> = bad_values.into_iter().collect();
    if !annotations.is_empty() {
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_owned());
        bad_list.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad_list.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&bad_list)
        ),
    )
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(pod: &Pod) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers(pod) {
        let added = c["securityContext"]["capabilities"]["add"].as_array();
        let mut valid = true;
        for cap in added.into_iter().flatten().map(text) {
            if !BASELINE_CAPABILITIES.contains(&cap) {
                valid = false;
                forbidden.insert(cap.to_owned());
            }
        }
        if !valid {
            bad_containers.push(name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&bad_containers),
            join_quote(&forbidden)
        ),
    )
}

fn host_namespaces(pod: &Pod) -> Option<Violation> {
    let shared: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|field| is_true(&pod.spec[*field]))
        .map(|field| format!("{field}=true"))
        .collect();
    if shared.is_empty() {
        return None;
    }
    violation("host namespaces", shared.join(", "))
}

fn volumes<'a>(pod: &'a Pod) -> impl Iterator<Item = &'a Value> {
    pod.spec["volumes"].as_array().into_iter().flatten()
}

fn host_path_volumes(pod: &Pod) -> Option<Violation> {
    let host: Vec<String> = volumes(pod)
        .filter(|v| is_set(&v["hostPath"]))
        .map(name)
        .collect();
    if host.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", host.len()),
            join_quote(&host)
        ),
    )
}

fn host_ports(pod: &Pod) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(pod) {
        let mut valid = true;
        for port in c["ports"].as_array().into_iter().flatten() {
            let host = port["hostPort"].as_i64().unwrap_or(0);
            if host != 0 {
                valid = false;
                ports.insert(host.to_string());
            }
        }
        if !valid {
            bad_containers.push(name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_named(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn host_probes_and_lifecycle(pod: &Pod) -> Option<Violation> {
    let mut bad_containers = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in containers(pod) {
        let handlers = [
            &c["livenessProbe"],
            &c["readinessProbe"],
            &c["startupProbe"],
            &c["lifecycle"]["postStart"],
            &c["lifecycle"]["preStop"],
        ];
        for handler in handlers {
            for action in ["httpGet", "tcpSocket"] {
                let host = text(&handler[action]["host"]);
                if !host.is_empty() {
                    bad_containers.insert(name(c));
                    hosts.insert(host.to_owned());
                }
            }
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "probe or lifecycle host",
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad_containers.len()),
            join_quote(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
    )
}

fn privileged(pod: &Pod) -> Option<Violation> {
    containers_violating(
        pod,
        |c| is_true(&c["securityContext"]["privileged"]),
        "privileged",
        "must not set securityContext.privileged=true",
    )
}

/// Baseline's procMount: relaxed for pods in a user namespace.
fn proc_mount_baseline(pod: &Pod) -> Option<Violation> {
    if in_user_namespace(pod) {
        return None;
    }
    proc_mount(pod)
}

fn proc_mount(pod: &Pod) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(pod) {
        let mount = &c["securityContext"]["procMount"];
        if is_set(mount) && text(mount) != "Default" {
            bad.push(name(c));
            types.insert(text(mount).to_owned());
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_named(&bad),
            join_quote(&types)
        ),
    )
}

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_options(pod: &Pod) -> Option<Violation> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |options: &Value| {
        let mut ok = true;
        let kind = text(&options["type"]);
        if !SELINUX_TYPES.contains(&kind) {
            ok = false;
            bad_types.insert(kind.to_owned());
        }
        if !text(&options["user"]).is_empty() {
            ok = false;
            set_user = true;
        }
        if !text(&options["role"]).is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    let options = &pod.spec["securityContext"]["seLinuxOptions"];
    if is_set(options) && !valid(options) {
        setters.push("pod".to_owned());
    }
    let mut bad_containers = Vec::new();
    for c in containers(pod) {
        let options = &c["securityContext"]["seLinuxOptions"];
        if is_set(options) && !valid(options) {
            bad_containers.push(name(c));
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_named(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    // As upstream: user and role are only mentioned alongside a bad type.
    let mut bad_data = Vec::new();
    if !bad_types.is_empty() {
        bad_data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
        if set_user {
            bad_data.push("user may not be set".to_owned());
        }
        if set_role {
            bad_data.push("role may not be set".to_owned());
        }
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            bad_data.join("; ")
        ),
    )
}

fn valid_seccomp(kind: &str) -> bool {
    kind == "RuntimeDefault" || kind == "Localhost"
}

/// Whether the pod and its containers set a seccomp profile: (setters of a bad type, bad types,
/// containers that set none, whether the pod set a good one).
fn seccomp_profiles(pod: &Pod) -> (Vec<String>, BTreeSet<String>, Vec<String>, bool) {
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_set = false;
    let profile = &pod.spec["securityContext"]["seccompProfile"];
    if is_set(profile) {
        if valid_seccomp(text(&profile["type"])) {
            pod_set = true;
        } else {
            setters.push("pod".to_owned());
            bad_values.insert(text(&profile["type"]).to_owned());
        }
    }
    let mut explicitly_bad = Vec::new();
    let mut unset = Vec::new();
    for c in containers(pod) {
        let profile = &c["securityContext"]["seccompProfile"];
        if !is_set(profile) {
            unset.push(name(c));
        } else if !valid_seccomp(text(&profile["type"])) {
            explicitly_bad.push(name(c));
            bad_values.insert(text(&profile["type"]).to_owned());
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_named(&explicitly_bad));
    }
    (setters, bad_values, unset, pod_set)
}

fn bad_seccomp(setters: &[String], bad_values: &BTreeSet<String>) -> Option<Violation> {
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(bad_values)
        ),
    )
}

fn seccomp_profile_baseline(pod: &Pod) -> Option<Violation> {
    let (setters, bad_values, _, _) = seccomp_profiles(pod);
    if setters.is_empty() {
        return None;
    }
    bad_seccomp(&setters, &bad_values)
}

fn seccomp_profile_restricted(pod: &Pod) -> Option<Violation> {
    if is_windows(pod) {
        return None;
    }
    let (setters, bad_values, unset, pod_set) = seccomp_profiles(pod);
    if !setters.is_empty() {
        return bad_seccomp(&setters, &bad_values);
    }
    if pod_set || unset.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_named(&unset)
        ),
    )
}

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

fn sysctls(pod: &Pod) -> Option<Violation> {
    let forbidden: Vec<&str> = pod.spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| text(&s["name"]))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(pod: &Pod) -> Option<Violation> {
    let mut setters = Vec::new();
    if is_true(&pod.spec["securityContext"]["windowsOptions"]["hostProcess"]) {
        setters.push("pod".to_owned());
    }
    let bad = names_where(pod, |c| {
        is_true(&c["securityContext"]["windowsOptions"]["hostProcess"])
    });
    if !bad.is_empty() {
        setters.push(containers_named(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn allow_privilege_escalation(pod: &Pod) -> Option<Violation> {
    if is_windows(pod) {
        return None;
    }
    containers_violating(
        pod,
        |c| c["securityContext"]["allowPrivilegeEscalation"] != false,
        "allowPrivilegeEscalation != false",
        "must set securityContext.allowPrivilegeEscalation=false",
    )
}

fn capabilities_restricted(pod: &Pod) -> Option<Violation> {
    if is_windows(pod) {
        return None;
    }
    let mut missing_drop_all = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers(pod) {
        let capabilities = &c["securityContext"]["capabilities"];
        if !is_set(capabilities) {
            missing_drop_all.push(name(c));
            continue;
        }
        let dropped = capabilities["drop"].as_array();
        if !dropped.into_iter().flatten().any(|d| d == "ALL") {
            missing_drop_all.push(name(c));
        }
        let mut added_forbidden = false;
        for cap in capabilities["add"].as_array().into_iter().flatten() {
            if cap != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden.insert(text(cap).to_owned());
            }
        }
        if added_forbidden {
            adding.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_named(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&adding),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

/// The inline volume sources Restricted allows.
const RESTRICTED_ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The volume sources Restricted refuses, in the order upstream names the first one found.
const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(pod: &Pod) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for volume in volumes(pod) {
        if RESTRICTED_ALLOWED_VOLUMES
            .iter()
            .any(|t| is_set(&volume[*t]))
        {
            continue;
        }
        bad.push(name(volume));
        let kind = RESTRICTED_VOLUME_TYPES
            .iter()
            .find(|t| is_set(&volume[**t]))
            .copied()
            .unwrap_or("unknown");
        types.insert(kind);
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

fn run_as_non_root(pod: &Pod) -> Option<Violation> {
    if in_user_namespace(pod) {
        return None;
    }
    let mut setters = Vec::new();
    let pod_level = &pod.spec["securityContext"]["runAsNonRoot"];
    let pod_non_root = is_true(pod_level);
    if pod_level == false {
        setters.push("pod".to_owned());
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in containers(pod) {
        let container_level = &c["securityContext"]["runAsNonRoot"];
        if container_level.is_boolean() {
            if container_level == false {
                explicitly_bad.push(name(c));
            }
        } else if !pod_non_root {
            implicitly_bad.push(name(c));
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_named(&explicitly_bad));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if implicitly_bad.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_named(&implicitly_bad)
        ),
    )
}

fn run_as_user(pod: &Pod) -> Option<Violation> {
    if in_user_namespace(pod) {
        return None;
    }
    let root = |v: &Value| v.as_i64() == Some(0);
    let mut setters = Vec::new();
    if root(&pod.spec["securityContext"]["runAsUser"]) {
        setters.push("pod".to_owned());
    }
    let bad = names_where(pod, |c| root(&c["securityContext"]["runAsUser"]));
    if !bad.is_empty() {
        setters.push(containers_named(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(level: Level, spec: Value) -> String {
        check_with(level, json!({}), spec)
    }

    fn check_with(level: Level, metadata: Value, spec: Value) -> String {
        details(&evaluate(
            level,
            &Pod {
                metadata: &metadata,
                spec: &spec,
            },
        ))
    }

    fn app(security_context: Value) -> Value {
        json!({ "containers": [{ "name": "app", "image": "nginx", "securityContext": security_context }] })
    }

    /// A container that passes every Restricted check.
    fn hardened() -> Value {
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "runAsNonRoot": true,
            "seccompProfile": { "type": "RuntimeDefault" },
        })
    }

    /// A hardened pod with `patch` merged into its spec.
    fn restricted_with(patch: Value) -> String {
        let mut spec = app(hardened());
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        check(Level::Restricted, spec)
    }

    #[test]
    fn levels_parse_only_their_three_names() {
        assert_eq!(Level::parse("privileged"), Some(Level::Privileged));
        assert_eq!(Level::parse("baseline"), Some(Level::Baseline));
        assert_eq!(Level::parse("restricted"), Some(Level::Restricted));
        assert_eq!(Level::parse("Restricted"), None);
        assert_eq!(Level::parse(""), None);
        assert!(Level::Privileged < Level::Baseline && Level::Baseline < Level::Restricted);
    }

    #[test]
    fn privileged_level_allows_anything() {
        let spec = json!({ "hostNetwork": true, "containers": [{ "name": "app", "securityContext": { "privileged": true } }] });
        assert_eq!(check(Level::Privileged, spec), "");
    }

    #[test]
    fn a_plain_pod_passes_baseline() {
        assert_eq!(
            check(
                Level::Baseline,
                json!({ "containers": [{ "name": "app", "image": "nginx" }] })
            ),
            ""
        );
    }

    #[test]
    fn a_plain_pod_violates_restricted_in_upstream_order_and_words() {
        let spec = json!({ "containers": [{ "name": "app", "image": "nginx" }] });
        assert_eq!(
            check(Level::Restricted, spec),
            "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        assert_eq!(check(Level::Restricted, app(hardened())), "");
    }

    #[test]
    fn baseline_violations_come_first_then_restricted_ones() {
        let spec = json!({
            "hostPID": true,
            "hostNetwork": true,
            "containers": [{ "name": "app", "securityContext": { "privileged": true } }],
        });
        let found = evaluate(
            Level::Restricted,
            &Pod {
                metadata: &json!({}),
                spec: &spec,
            },
        );
        assert_eq!(
            reasons(&found),
            "host namespaces, privileged, allowPrivilegeEscalation != false, \
             unrestricted capabilities, runAsNonRoot != true, seccompProfile"
        );
        assert_eq!(found[0].detail, "hostNetwork=true, hostPID=true");
    }

    #[test]
    fn privileged_containers_are_refused_by_baseline() {
        let spec = json!({
            "initContainers": [{ "name": "init", "securityContext": { "privileged": true } }],
            "containers": [{ "name": "app", "securityContext": { "privileged": true } }, { "name": "ok", "securityContext": { "privileged": false } }],
        });
        assert_eq!(
            check(Level::Baseline, spec),
            "privileged (containers \"init\", \"app\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn ephemeral_containers_are_checked() {
        let spec = json!({
            "containers": [{ "name": "app" }],
            "ephemeralContainers": [{ "name": "debug", "securityContext": { "privileged": true } }],
        });
        assert_eq!(
            check(Level::Baseline, spec),
            "privileged (container \"debug\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn baseline_capabilities_allow_only_the_default_set() {
        let ok = app(json!({ "capabilities": { "add": ["CHOWN", "NET_BIND_SERVICE"] } }));
        assert_eq!(check(Level::Baseline, ok), "");
        let bad = app(json!({ "capabilities": { "add": ["SYS_ADMIN", "NET_RAW", "CHOWN"] } }));
        assert_eq!(
            check(Level::Baseline, bad),
            "non-default capabilities (container \"app\" must not include \"NET_RAW\", \"SYS_ADMIN\" in securityContext.capabilities.add)"
        );
    }

    #[test]
    fn host_path_volumes_are_refused_by_baseline() {
        let spec = json!({ "containers": [{ "name": "app" }], "volumes": [{ "name": "root", "hostPath": { "path": "/" } }, { "name": "tmp", "emptyDir": {} }] });
        assert_eq!(
            check(Level::Baseline, spec),
            "hostPath volumes (volume \"root\")"
        );
    }

    #[test]
    fn host_ports_are_refused_by_baseline() {
        let spec = json!({ "containers": [
            { "name": "a", "ports": [{ "containerPort": 80, "hostPort": 8080 }, { "containerPort": 81, "hostPort": 80 }] },
            { "name": "b", "ports": [{ "containerPort": 80 }, { "containerPort": 82, "hostPort": 0 }] },
        ] });
        assert_eq!(
            check(Level::Baseline, spec),
            "hostPort (container \"a\" uses hostPorts 80, 8080)"
        );
    }

    #[test]
    fn probe_and_lifecycle_hosts_are_refused_by_baseline() {
        let spec = json!({ "containers": [{
            "name": "app",
            "livenessProbe": { "httpGet": { "host": "10.0.0.1", "port": 80 } },
            "lifecycle": { "preStop": { "tcpSocket": { "host": "metadata", "port": 80 } } },
            "readinessProbe": { "httpGet": { "port": 80 } },
        }] });
        assert_eq!(
            check(Level::Baseline, spec),
            "probe or lifecycle host (container \"app\" uses probe or lifecycle hosts \"10.0.0.1\", \"metadata\")"
        );
    }

    #[test]
    fn app_armor_allows_runtime_default_and_localhost_only() {
        let ok = json!({ "securityContext": { "appArmorProfile": { "type": "RuntimeDefault" } }, "containers": [{ "name": "app", "securityContext": { "appArmorProfile": { "type": "Localhost", "localhostProfile": "p" } } }] });
        assert_eq!(check(Level::Baseline, ok), "");
        let bad = json!({ "securityContext": { "appArmorProfile": { "type": "Unconfined" } }, "containers": [{ "name": "app" }] });
        assert_eq!(
            check(Level::Baseline, bad),
            "forbidden AppArmor profile (pod must not set AppArmor profile type to \"Unconfined\")"
        );
        let annotated = json!({ "annotations": { "container.apparmor.security.beta.kubernetes.io/app": "unconfined" } });
        assert_eq!(
            check_with(
                Level::Baseline,
                annotated,
                json!({ "containers": [{ "name": "app" }] })
            ),
            "forbidden AppArmor profile (annotation must not set AppArmor profile type to \"container.apparmor.security.beta.kubernetes.io/app=\"unconfined\"\")"
        );
    }

    #[test]
    fn se_linux_types_are_limited_and_user_and_role_forbidden() {
        let ok =
            app(json!({ "seLinuxOptions": { "type": "container_engine_t", "level": "s0:c1" } }));
        assert_eq!(check(Level::Baseline, ok), "");
        let bad = json!({
            "securityContext": { "seLinuxOptions": { "type": "spc_t", "user": "root" } },
            "containers": [{ "name": "app", "securityContext": { "seLinuxOptions": { "role": "sysadm_r" } } }],
        });
        assert_eq!(
            check(Level::Baseline, bad),
            "seLinuxOptions (pod and container \"app\" set forbidden securityContext.seLinuxOptions: type \"spc_t\"; user may not be set; role may not be set)"
        );
    }

    #[test]
    fn proc_mount_must_be_default_unless_in_a_user_namespace_under_baseline() {
        let unmasked = json!({ "containers": [{ "name": "app", "securityContext": { "procMount": "Unmasked" } }] });
        assert_eq!(
            check(Level::Baseline, unmasked.clone()),
            "procMount (container \"app\" must not set securityContext.procMount to \"Unmasked\")"
        );
        let mut own_users = unmasked;
        own_users["hostUsers"] = json!(false);
        assert_eq!(check(Level::Baseline, own_users), "");
        let restricted = restricted_with(json!({ "hostUsers": false, "containers": [{
            "name": "app",
            "securityContext": { "procMount": "Unmasked", "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] }, "seccompProfile": { "type": "RuntimeDefault" } },
        }] }));
        assert_eq!(
            restricted,
            "procMount (container \"app\" must not set securityContext.procMount to \"Unmasked\")"
        );
    }

    #[test]
    fn baseline_seccomp_refuses_unconfined_only() {
        assert_eq!(
            check(
                Level::Baseline,
                app(json!({ "seccompProfile": { "type": "Localhost" } }))
            ),
            ""
        );
        let bad = json!({ "securityContext": { "seccompProfile": { "type": "Unconfined" } }, "containers": [{ "name": "app" }] });
        assert_eq!(
            check(Level::Baseline, bad),
            "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"
        );
    }

    #[test]
    fn only_safe_sysctls_pass_baseline() {
        let ok = json!({ "securityContext": { "sysctls": [{ "name": "net.ipv4.tcp_rmem", "value": "1" }, { "name": "net.ipv4.tcp_notsent_lowat", "value": "1" }] }, "containers": [{ "name": "app" }] });
        assert_eq!(check(Level::Baseline, ok), "");
        let bad = json!({ "securityContext": { "sysctls": [{ "name": "kernel.msgmax", "value": "1" }, { "name": "net.core.somaxconn", "value": "1" }] }, "containers": [{ "name": "app" }] });
        assert_eq!(
            check(Level::Baseline, bad),
            "forbidden sysctls (kernel.msgmax, net.core.somaxconn)"
        );
    }

    #[test]
    fn windows_host_process_is_refused_by_baseline() {
        let spec = json!({ "securityContext": { "windowsOptions": { "hostProcess": true } }, "containers": [{ "name": "app", "securityContext": { "windowsOptions": { "hostProcess": true } } }] });
        assert_eq!(
            check(Level::Baseline, spec),
            "hostProcess (pod and container \"app\" must not set securityContext.windowsOptions.hostProcess=true)"
        );
    }

    #[test]
    fn restricted_volumes_allow_only_the_safe_sources() {
        let ok = restricted_with(json!({ "volumes": [
            { "name": "a", "configMap": { "name": "c" } }, { "name": "b", "projected": { "sources": [] } },
            { "name": "c", "image": { "reference": "x" } }, { "name": "d", "persistentVolumeClaim": { "claimName": "p" } },
        ] }));
        assert_eq!(ok, "");
        let bad = restricted_with(json!({ "volumes": [
            { "name": "host", "hostPath": { "path": "/" } }, { "name": "share", "nfs": { "server": "s", "path": "/" } },
            { "name": "odd", "somethingNew": {} },
        ] }));
        assert_eq!(
            bad,
            "restricted volume types (volumes \"host\", \"share\", \"odd\" use restricted volume types \"hostPath\", \"nfs\", \"unknown\")"
        );
    }

    #[test]
    fn restricted_privilege_escalation_must_be_explicitly_false() {
        let mut sc = hardened();
        sc["allowPrivilegeEscalation"] = json!(true);
        assert_eq!(
            check(Level::Restricted, app(sc)),
            "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false)"
        );
    }

    #[test]
    fn restricted_capabilities_drop_all_and_add_only_net_bind_service() {
        let mut sc = hardened();
        sc["capabilities"] = json!({ "drop": ["ALL"], "add": ["NET_BIND_SERVICE"] });
        assert_eq!(check(Level::Restricted, app(sc.clone())), "");
        sc["capabilities"] = json!({ "drop": ["NET_RAW"], "add": ["CHOWN", "NET_BIND_SERVICE"] });
        assert_eq!(
            check(Level::Restricted, app(sc)),
            "unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]; \
             container \"app\" must not include \"CHOWN\" in securityContext.capabilities.add)"
        );
    }

    #[test]
    fn restricted_run_as_non_root_may_be_set_on_the_pod_and_not_unset_by_a_container() {
        let mut sc = hardened();
        sc.as_object_mut().unwrap().remove("runAsNonRoot");
        let mut spec = app(sc);
        spec["securityContext"] = json!({ "runAsNonRoot": true });
        assert_eq!(check(Level::Restricted, spec.clone()), "");
        spec["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
        assert_eq!(
            check(Level::Restricted, spec),
            "runAsNonRoot != true (container \"app\" must not set securityContext.runAsNonRoot=false)"
        );
    }

    #[test]
    fn restricted_run_as_user_must_not_be_root() {
        let mut sc = hardened();
        sc["runAsUser"] = json!(0);
        let mut spec = app(sc);
        spec["securityContext"] = json!({ "runAsUser": 0 });
        assert_eq!(
            check(Level::Restricted, spec.clone()),
            "runAsUser=0 (pod and container \"app\" must not set runAsUser=0)"
        );
        spec["hostUsers"] = json!(false);
        assert_eq!(check(Level::Restricted, spec), "");
    }

    #[test]
    fn restricted_seccomp_may_come_from_the_pod() {
        let mut sc = hardened();
        sc.as_object_mut().unwrap().remove("seccompProfile");
        let mut spec = app(sc);
        spec["securityContext"] =
            json!({ "seccompProfile": { "type": "Localhost", "localhostProfile": "p.json" } });
        assert_eq!(check(Level::Restricted, spec.clone()), "");
        spec["securityContext"] = json!({});
        assert_eq!(
            check(Level::Restricted, spec),
            "seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn windows_pods_are_exempt_from_linux_only_restricted_checks() {
        let spec = json!({ "os": { "name": "windows" }, "securityContext": { "runAsNonRoot": true }, "containers": [{ "name": "app" }] });
        assert_eq!(check(Level::Restricted, spec), "");
    }
}
