//! PodSecurity: the Pod Security Standards, applied per namespace through its
//! `pod-security.kubernetes.io/{enforce,audit,warn}[-version]` labels, as upstream's validating
//! plugin (`k8s.io/pod-security-admission/admission`). Pods that violate the enforce level are
//! refused; pods and pod templates (workload controllers) that violate the warn level get a
//! `Warning`. Namespaces must carry valid labels, and tightening the enforce level warns about
//! existing pods that would not be admitted.
//!
//! As r8s ships no AdmissionConfiguration (as kubeadm), the defaults are `privileged:latest` for
//! every mode and no exemptions. Not done as upstream: every valid policy version is evaluated as
//! `latest` (1.37's checks), and the audit mode is parsed but not acted on: r8s has no audit log
//! to annotate.

mod checks;

use serde_json::Value;

use super::{Attributes, cached, webhook};
use crate::registry::Registry;
use crate::status::ApiError;
use checks::{Level, Pod};

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
const VALID_LEVELS: &str = "must be one of privileged, baseline, restricted";
const VALID_VERSION: &str = "must be \"latest\" or \"v1.x\"";
/// Upstream's default bound on the pods checked when a namespace's enforce level tightens.
const MAX_PODS_TO_CHECK: usize = 3000;

/// Subresources of pods that cannot change what the policy looks at.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// A level at a policy version; the version is kept only to name it (`restricted:v1.30`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LevelVersion {
    level: Level,
    version: String,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    enforce: LevelVersion,
    warn: LevelVersion,
}

/// A label that does not parse: (field, message) as upstream's `field.Invalid`.
type LabelError = (String, String);

/// Upstream's `PolicyToEvaluate`: the namespace's policy, defaults for what is unlabelled. An
/// invalid enforce level enforces `restricted` (fail closed), an invalid warn level warns
/// nothing (fail open), an invalid version is `latest`; each invalid label is also reported.
fn policy_of(labels: &Value) -> (Policy, Vec<LabelError>) {
    let mut errors = Vec::new();
    let mut label = |mode: &str, suffix: &str| -> Option<(String, bool)> {
        let key = format!("{LABEL_PREFIX}{mode}{suffix}");
        let value = labels[&key].as_str()?;
        let valid = if suffix.is_empty() {
            Level::parse(value).is_some()
        } else {
            value == "latest" || valid_version(value)
        };
        if !valid {
            let why = if suffix.is_empty() {
                VALID_LEVELS
            } else {
                VALID_VERSION
            };
            errors.push((
                format!("metadata.labels[{key}]"),
                format!("Invalid value: {value:?}: {why}"),
            ));
        }
        Some((value.to_owned(), valid))
    };
    let mut mode = |which: &str, invalid_level: Level| {
        let level = match label(which, "") {
            None => Level::Privileged,
            Some((value, true)) => Level::parse(&value).expect("validated"),
            Some((_, false)) => invalid_level,
        };
        let version = match label(which, "-version") {
            Some((value, true)) => value,
            _ => "latest".to_owned(),
        };
        LevelVersion { level, version }
    };
    let enforce = mode("enforce", Level::Restricted);
    // Audit is validated as upstream, though r8s has no audit log to act on it.
    mode("audit", Level::Privileged);
    let mut warn = mode("warn", Level::Privileged);
    // As upstream: a valid enforce level stricter than an unlabelled warn level also warns, so
    // workload templates (which enforce never sees) get a warning.
    let label = |key: &str| labels[format!("{LABEL_PREFIX}{key}")].as_str();
    let enforce_set = label("enforce").and_then(Level::parse).is_some();
    if enforce_set && label("warn").is_none() && enforce.level > warn.level {
        warn.level = enforce.level;
        if label("warn-version").is_none() {
            warn.version = enforce.version.clone();
        }
    }
    (Policy { enforce, warn }, errors)
}

/// `v1.<minor>`, the minor without leading zeros.
fn valid_version(version: &str) -> bool {
    version.strip_prefix("v1.").is_some_and(|minor| {
        !minor.is_empty()
            && minor.bytes().all(|b| b.is_ascii_digit())
            && (minor == "0" || !minor.starts_with('0'))
    })
}

/// The pod template of a workload controller's object: (metadata, spec), if it has one.
fn pod_template<'a>(plural: &str, object: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let template = match plural {
        "podtemplates" => &object["template"],
        "cronjobs" => &object["spec"]["jobTemplate"]["spec"]["template"],
        "deployments"
        | "replicasets"
        | "statefulsets"
        | "daemonsets"
        | "jobs"
        | "replicationcontrollers" => &object["spec"]["template"],
        _ => return None,
    };
    (!template.is_null()).then(|| (&template["metadata"], &template["spec"]))
}

/// What the namespace's policy says of a pod: Err to refuse it when `enforce` applies, else the
/// warning (if any) for the client.
fn evaluate(policy: &Policy, pod: &Pod, enforce: bool) -> Result<Option<String>, String> {
    if enforce {
        let found = checks::evaluate(policy.enforce.level, pod);
        if !found.is_empty() {
            return Err(format!(
                "violates PodSecurity \"{}\": {}",
                policy.enforce,
                checks::details(&found)
            ));
        }
    }
    let found = checks::evaluate(policy.warn.level, pod);
    Ok((!found.is_empty()).then(|| {
        format!(
            "would violate PodSecurity \"{}\": {}",
            policy.warn,
            checks::details(&found)
        )
    }))
}

/// Upstream's `isSignificantPodUpdate`: whether an update changes anything the policy reads
/// that a pod update may change (images, seccomp annotations, ephemeral containers).
fn is_significant_pod_update(new: &Value, old: &Value) -> bool {
    const SECCOMP_POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const SECCOMP_CONTAINER: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let (annotations, old_annotations) = (
        &new["metadata"]["annotations"],
        &old["metadata"]["annotations"],
    );
    let significant = |c: &Value, old_c: &Value| {
        let key = format!(
            "{SECCOMP_CONTAINER}{}",
            c["name"].as_str().unwrap_or_default()
        );
        c["image"] != old_c["image"] || annotations[&key] != old_annotations[&key]
    };
    let list =
        |pod: &Value, field: &str| pod["spec"][field].as_array().cloned().unwrap_or_default();
    if annotations[SECCOMP_POD] != old_annotations[SECCOMP_POD] {
        return true;
    }
    for field in ["containers", "initContainers"] {
        let (new_list, old_list) = (list(new, field), list(old, field));
        if new_list.len() != old_list.len()
            || new_list
                .iter()
                .zip(&old_list)
                .any(|(c, o)| significant(c, o))
        {
            return true;
        }
    }
    let old_ephemeral = list(old, "ephemeralContainers");
    list(new, "ephemeralContainers").iter().any(|c| {
        match old_ephemeral.iter().find(|o| o["name"] == c["name"]) {
            None => true,
            Some(o) => significant(c, o),
        }
    })
}

/// PodSecurity's validation of a write to a namespace, a pod, or a workload controller.
pub(super) async fn validate(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &Value,
) -> Result<(), ApiError> {
    let resource = attributes.resource;
    if resource.group.is_empty() && resource.plural == "namespaces" {
        return validate_namespace(registry, attributes, object).await;
    }
    let is_pod = resource.group.is_empty() && resource.plural == "pods";
    let template = if is_pod {
        if attributes
            .subresource
            .is_some_and(|s| IGNORED_POD_SUBRESOURCES.contains(&s))
        {
            return Ok(());
        }
        if let Some(old) = attributes.old
            && !is_significant_pod_update(object, old)
        {
            return Ok(());
        }
        (&object["metadata"], &object["spec"])
    } else {
        if attributes.subresource.is_some() {
            return Ok(());
        }
        match pod_template(resource.plural, object) {
            Some(template) if matches!(resource.group, "" | "apps" | "batch") => template,
            _ => return Ok(()),
        }
    };
    let Some(namespace_name) = attributes.namespace else {
        return Ok(());
    };
    let namespace = webhook::namespace(registry, namespace_name).await?;
    let (policy, _) = policy_of(&namespace["metadata"]["labels"]);
    let pod = Pod {
        metadata: template.0,
        spec: template.1,
    };
    match evaluate(&policy, &pod, is_pod) {
        Err(why) => Err(attributes.forbidden(why)),
        Ok(warning) => {
            webhook::add_warnings(warning.into_iter().collect());
            Ok(())
        }
    }
}

/// Upstream's `ValidateNamespace`: labels must be valid (on update, unless they were already
/// invalid the same way), and a tightened enforce level warns about the pods it would refuse.
async fn validate_namespace(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &Value,
) -> Result<(), ApiError> {
    if attributes.subresource.is_some() {
        return Ok(());
    }
    let (policy, errors) = policy_of(&object["metadata"]["labels"]);
    let invalid = || ApiError::invalid("Namespace", "", attributes.name, errors.clone());
    let Some(old) = attributes.old else {
        return if errors.is_empty() {
            Ok(())
        } else {
            Err(invalid())
        };
    };
    let (old_policy, old_errors) = policy_of(&old["metadata"]["labels"]);
    if !errors.is_empty() && errors != old_errors {
        return Err(invalid());
    }
    let (new, old) = (&policy.enforce, &old_policy.enforce);
    let relaxed = new.version == old.version && new.level <= old.level;
    if new == old || new.level == Level::Privileged || relaxed {
        return Ok(());
    }
    let pods = cached(registry, "", "pods", Some(attributes.name)).await?;
    webhook::add_warnings(existing_pod_warnings(attributes.name, new, pods));
    Ok(())
}

/// Upstream's `EvaluatePodsInNamespace`: one warning per distinct set of violations, naming the
/// first pod (by name) with it and how many others share it. One pod per controller is checked
/// before the rest, as its siblings almost always share its template.
fn existing_pod_warnings(namespace: &str, enforce: &LevelVersion, pods: Vec<Value>) -> Vec<String> {
    let controller = |pod: &Value| {
        pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true)
            .and_then(|o| o["uid"].as_str())
            .map(str::to_owned)
    };
    let (mut first, mut siblings) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for pod in pods {
        let sibling = controller(&pod).is_some_and(|uid| !seen.insert(uid));
        if sibling {
            siblings.push(pod);
        } else {
            first.push(pod);
        }
    }
    first.extend(siblings);
    let total = first.len();
    first.truncate(MAX_PODS_TO_CHECK);

    // reasons -> (first pod name, count), in the order first found.
    let mut found: Vec<(String, String, usize)> = Vec::new();
    for pod in &first {
        let violations = checks::evaluate(
            enforce.level,
            &Pod {
                metadata: &pod["metadata"],
                spec: &pod["spec"],
            },
        );
        if violations.is_empty() {
            continue;
        }
        let reasons = checks::reasons(&violations);
        let name = crate::objects::name_of(pod).to_owned();
        match found.iter_mut().find(|(r, _, _)| *r == reasons) {
            Some((_, first_name, count)) => {
                *count += 1;
                if name < *first_name {
                    *first_name = name;
                }
            }
            None => found.push((reasons, name, 1)),
        }
    }
    let mut warnings = Vec::new();
    if first.len() < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {} of {total} existing pods",
            first.len()
        ));
    }
    if !found.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {namespace:?} violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut per_pod: Vec<String> = found
        .into_iter()
        .map(|(reasons, name, count)| match count {
            1 => format!("{name}: {reasons}"),
            2 => format!("{name} (and 1 other pod): {reasons}"),
            n => format!("{name} (and {} other pods): {reasons}", n - 1),
        })
        .collect();
    per_pod.sort();
    warnings.extend(per_pod);
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    impl LevelVersion {
        fn latest(level: Level) -> Self {
            Self {
                level,
                version: "latest".into(),
            }
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Value {
        let mut labels = json!({});
        for (k, v) in pairs {
            labels[format!("{LABEL_PREFIX}{k}")] = json!(v);
        }
        labels
    }

    #[test]
    fn unlabelled_namespaces_are_privileged_latest() {
        let (policy, errors) = policy_of(&Value::Null);
        assert!(errors.is_empty());
        assert_eq!(policy.enforce, LevelVersion::latest(Level::Privileged));
        assert_eq!(policy.warn.to_string(), "privileged:latest");
    }

    #[test]
    fn labels_set_level_and_version_per_mode() {
        let (policy, errors) = policy_of(&labels(&[
            ("enforce", "baseline"),
            ("enforce-version", "v1.30"),
            ("warn", "restricted"),
        ]));
        assert!(errors.is_empty());
        assert_eq!(policy.enforce.to_string(), "baseline:v1.30");
        assert_eq!(policy.warn.to_string(), "restricted:latest");
    }

    #[test]
    fn warn_follows_a_stricter_enforce_level_unless_labelled() {
        let (policy, _) = policy_of(&labels(&[
            ("enforce", "baseline"),
            ("enforce-version", "v1.30"),
        ]));
        assert_eq!(policy.warn.to_string(), "baseline:v1.30");
        let (policy, _) = policy_of(&labels(&[
            ("enforce", "restricted"),
            ("warn", "privileged"),
        ]));
        assert_eq!(policy.warn.level, Level::Privileged);
        let (policy, _) = policy_of(&labels(&[("enforce", "strict")]));
        assert_eq!(policy.warn.level, Level::Privileged);
    }

    #[test]
    fn an_invalid_enforce_level_fails_closed_and_warn_fails_open() {
        let (policy, errors) = policy_of(&labels(&[
            ("enforce", "strict"),
            ("warn", "loud"),
            ("audit-version", "1.30"),
        ]));
        assert_eq!(policy.enforce.level, Level::Restricted);
        assert_eq!(policy.warn.level, Level::Privileged);
        assert_eq!(
            errors,
            vec![
                (
                    "metadata.labels[pod-security.kubernetes.io/enforce]".to_owned(),
                    "Invalid value: \"strict\": must be one of privileged, baseline, restricted"
                        .to_owned()
                ),
                (
                    "metadata.labels[pod-security.kubernetes.io/audit-version]".to_owned(),
                    "Invalid value: \"1.30\": must be \"latest\" or \"v1.x\"".to_owned()
                ),
                (
                    "metadata.labels[pod-security.kubernetes.io/warn]".to_owned(),
                    "Invalid value: \"loud\": must be one of privileged, baseline, restricted"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn versions_are_latest_or_v1_minor() {
        for ok in ["v1.0", "v1.9", "v1.37", "v1.100"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["v1.", "v1.01", "v2.1", "1.30", "v1.3a", "latest "] {
            assert!(!valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn enforce_refuses_and_warn_warns() {
        let policy = Policy {
            enforce: LevelVersion::latest(Level::Baseline),
            warn: LevelVersion::latest(Level::Restricted),
        };
        let spec =
            json!({ "containers": [{ "name": "app", "securityContext": { "privileged": true } }] });
        let pod = Pod {
            metadata: &json!({}),
            spec: &spec,
        };
        assert_eq!(
            evaluate(&policy, &pod, true),
            Err("violates PodSecurity \"baseline:latest\": privileged (container \"app\" must not set securityContext.privileged=true)".into())
        );
        let warning = evaluate(&policy, &pod, false).unwrap().unwrap();
        assert!(
            warning.starts_with(
                "would violate PodSecurity \"restricted:latest\": privileged (container \"app\""
            ),
            "{warning}"
        );
    }

    #[test]
    fn templates_are_found_where_each_controller_keeps_them() {
        let spec = json!({ "containers": [] });
        let template = json!({ "metadata": {}, "spec": spec });
        let deployment = json!({ "spec": { "template": template } });
        let cronjob = json!({ "spec": { "jobTemplate": { "spec": { "template": template } } } });
        let podtemplate = json!({ "template": template });
        for (plural, object) in [
            ("deployments", &deployment),
            ("cronjobs", &cronjob),
            ("podtemplates", &podtemplate),
        ] {
            assert_eq!(pod_template(plural, object).unwrap().1, &spec, "{plural}");
        }
        assert!(pod_template("replicationcontrollers", &json!({ "spec": {} })).is_none());
        assert!(pod_template("configmaps", &deployment).is_none());
    }

    #[test]
    fn only_image_seccomp_and_ephemeral_changes_are_significant_pod_updates() {
        let old = json!({
            "metadata": { "labels": { "a": "1" } },
            "spec": { "containers": [{ "name": "app", "image": "nginx:1" }] },
        });
        let mut relabelled = old.clone();
        relabelled["metadata"]["labels"]["a"] = json!("2");
        relabelled["spec"]["activeDeadlineSeconds"] = json!(5);
        assert!(!is_significant_pod_update(&relabelled, &old));
        let mut new_image = old.clone();
        new_image["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(is_significant_pod_update(&new_image, &old));
        let mut debugged = old.clone();
        debugged["spec"]["ephemeralContainers"] = json!([{ "name": "debug", "image": "busybox" }]);
        assert!(is_significant_pod_update(&debugged, &old));
    }

    #[test]
    fn existing_pods_are_summarised_per_distinct_violation() {
        let privileged =
            json!({ "containers": [{ "name": "app", "securityContext": { "privileged": true } }] });
        let plain = json!({ "containers": [{ "name": "app" }] });
        let pod = |name: &str, spec: &Value| json!({ "metadata": { "name": name }, "spec": spec });
        let pods = vec![
            pod("web-b", &privileged),
            pod("web-a", &privileged),
            pod("web-c", &privileged),
            pod("calm", &plain),
            pod(
                "root",
                &json!({ "hostPID": true, "containers": [{ "name": "app" }] }),
            ),
        ];
        let warnings = existing_pod_warnings("team", &LevelVersion::latest(Level::Baseline), pods);
        assert_eq!(
            warnings,
            vec![
                "existing pods in namespace \"team\" violate the new PodSecurity enforce level \"baseline:latest\"",
                "root: host namespaces",
                "web-a (and 2 other pods): privileged",
            ]
        );
    }
}
