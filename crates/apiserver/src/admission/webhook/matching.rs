//! Which webhooks a request is sent to, as upstream's predicates decide: `rules` (operations,
//! groups, versions, resources with subresources, scope), `matchPolicy: Equivalent` (the same
//! resource served in another version), `namespaceSelector` and `objectSelector`.

use r8s_api::Resource;
use serde_json::Value;

use super::{Hook, Request};
use crate::selectors::LabelSelector;
use crate::status::ApiError;

/// The version of the resource a webhook is called with, and the kind it is sent.
#[derive(Debug, Clone, Copy)]
pub struct Invocation {
    pub resource: &'static Resource,
    pub kind: Gvk,
}

/// A group, version and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gvk {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

/// The kind a request on `resource` (or its subresource) carries: the parent's for `status`,
/// `Scale` for `scale`, as discovery names it.
pub fn kind_of(resource: &'static Resource, subresource: Option<&str>) -> Gvk {
    match subresource.and_then(|s| resource.has_subresource(s)) {
        Some(sub) => Gvk {
            group: sub.group,
            version: sub.version,
            kind: sub.kind,
        },
        None => Gvk {
            group: resource.group,
            version: resource.version,
            kind: resource.kind,
        },
    }
}

/// Upstream never sends the admission configuration objects themselves to webhooks, so a
/// broken webhook can always be removed.
pub fn is_exempt(resource: &Resource) -> bool {
    resource.group == "admissionregistration.k8s.io"
        && matches!(
            resource.plural,
            "validatingwebhookconfigurations"
                | "mutatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

fn strings(list: &Value) -> impl Iterator<Item = &str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn exact_or_wildcard(list: &Value, requested: &str) -> bool {
    strings(list).any(|item| item == "*" || item == requested)
}

/// Whether one `RuleWithOperations` matches a request on `resource` (the request's, or an
/// equivalent one).
pub fn rule_matches(rule: &Value, request: &Request<'_>, resource: &Resource) -> bool {
    let is_namespace = resource.group.is_empty() && resource.plural == "namespaces";
    let scope = match rule["scope"].as_str().unwrap_or("*") {
        "*" => true,
        "Namespaced" => !is_namespace && request.namespace.is_some_and(|n| !n.is_empty()),
        "Cluster" => is_namespace || request.namespace.is_none_or(str::is_empty),
        _ => false,
    };
    let subresource = request.subresource.unwrap_or("");
    scope
        && exact_or_wildcard(&rule["operations"], request.operation)
        && exact_or_wildcard(&rule["apiGroups"], resource.group)
        && exact_or_wildcard(&rule["apiVersions"], resource.version)
        && strings(&rule["resources"]).any(|entry| {
            let (plural, sub) = entry.split_once('/').unwrap_or((entry, ""));
            (plural == "*" || plural == resource.plural) && (sub == "*" || sub == subresource)
        })
}

/// The same resource served in other versions, sharing its storage (autoscaling/v1 and v2
/// HorizontalPodAutoscalers).
fn equivalents(resource: &'static Resource) -> impl Iterator<Item = &'static Resource> {
    let prefix = resource.storage_prefix();
    r8s_api::catalogue().iter().filter(move |r| {
        r.group == resource.group
            && r.plural == resource.plural
            && !std::ptr::eq(*r, resource)
            && r.storage_prefix() == prefix
    })
}

/// How the webhook is to be called by its rules and `matchPolicy`, or `None` if no rule matches.
pub fn invocation(hook: &Hook, request: &Request<'_>) -> Option<Invocation> {
    let requested = request.resource;
    let rules = hook.rules.as_array().map(Vec::as_slice).unwrap_or_default();
    if rules
        .iter()
        .any(|rule| rule_matches(rule, request, requested))
    {
        return Some(Invocation {
            resource: requested,
            kind: kind_of(requested, request.subresource),
        });
    }
    if hook.exact_match {
        return None;
    }
    // Earlier rules first, as upstream honours them.
    rules.iter().find_map(|rule| {
        equivalents(requested)
            .find(|equivalent| rule_matches(rule, request, equivalent))
            .map(|equivalent| Invocation {
                resource: equivalent,
                kind: kind_of(equivalent, request.subresource),
            })
    })
}

/// `objectSelector`: the new or the old object carries matching labels.
pub fn object_selected(
    hook: &Hook,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, ApiError> {
    let selector = parse(&hook.object_selector, &hook.name)?;
    if selector == LabelSelector::default() {
        return Ok(true);
    }
    let labelled = |o: Option<&Value>| o.is_some_and(|o| o.is_object() && selector.matches(o));
    Ok(labelled(object) || labelled(old))
}

/// The labels `namespaceSelector` is matched against: the namespace object itself when a
/// namespace is written (the store does not have the new labels yet), else the request's
/// namespace. `None`: a cluster-scoped object, which every namespaceSelector matches.
pub enum NamespaceLabels<'a> {
    ClusterScoped,
    Of(&'a Value),
    Lookup(&'a str),
}

pub fn namespace_labels_source<'a>(
    request: &'a Request<'a>,
    object: Option<&'a Value>,
) -> NamespaceLabels<'a> {
    let resource = request.resource;
    if resource.group.is_empty() && resource.plural == "namespaces" {
        return match (object, request.subresource, request.operation) {
            (Some(object), None, "CREATE" | "UPDATE") => NamespaceLabels::Of(object),
            _ => NamespaceLabels::Lookup(request.name),
        };
    }
    match request.namespace {
        Some(namespace) if !namespace.is_empty() => NamespaceLabels::Lookup(namespace),
        _ => NamespaceLabels::ClusterScoped,
    }
}

/// The parsed `namespaceSelector`, or `None` when it selects everything (no lookup needed).
pub fn namespace_selector(hook: &Hook) -> Result<Option<LabelSelector>, ApiError> {
    let selector = parse(&hook.namespace_selector, &hook.name)?;
    Ok((selector != LabelSelector::default()).then_some(selector))
}

fn parse(selector: &Value, hook: &str) -> Result<LabelSelector, ApiError> {
    if selector.is_null() {
        return Ok(LabelSelector::default());
    }
    LabelSelector::from_object(selector).map_err(|e| {
        super::internal_error(format!(
            "webhook {hook:?} has an invalid label selector: {}",
            e.message
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hook(spec: Value) -> Hook {
        Hook::parse("config", &spec)
    }

    fn request_on<'a>(
        resource: &'static Resource,
        subresource: Option<&'a str>,
        operation: &'static str,
        namespace: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            resource,
            subresource,
            operation,
            namespace,
            name: "x",
            old: None,
            user: None,
            dry_run: false,
        }
    }

    fn configmaps() -> &'static Resource {
        r8s_api::find("", "v1", "configmaps").expect("configmaps")
    }

    fn pods() -> &'static Resource {
        r8s_api::find("", "v1", "pods").expect("pods")
    }

    fn rule(operations: &[&str], groups: &[&str], versions: &[&str], resources: &[&str]) -> Value {
        json!({
            "operations": operations, "apiGroups": groups,
            "apiVersions": versions, "resources": resources,
        })
    }

    #[test]
    fn webhook_rule_matches_operation_group_version_and_resource() {
        let create = request_on(configmaps(), None, "CREATE", Some("default"));
        let cm = rule(&["CREATE"], &[""], &["v1"], &["configmaps"]);
        assert!(rule_matches(&cm, &create, configmaps()));
        let update = request_on(configmaps(), None, "UPDATE", Some("default"));
        assert!(!rule_matches(&cm, &update, configmaps()));
        let apps = rule(&["*"], &["apps"], &["*"], &["*"]);
        assert!(!rule_matches(&apps, &create, configmaps()));
        let v2 = rule(&["*"], &[""], &["v2"], &["configmaps"]);
        assert!(!rule_matches(&v2, &create, configmaps()));
        let secrets = rule(&["*"], &["*"], &["*"], &["secrets"]);
        assert!(!rule_matches(&secrets, &create, configmaps()));
    }

    #[test]
    fn webhook_rule_resources_name_subresources() {
        let status = request_on(pods(), Some("status"), "UPDATE", Some("default"));
        let main = request_on(pods(), None, "UPDATE", Some("default"));
        let any = |resources: &[&str]| rule(&["UPDATE"], &[""], &["v1"], resources);
        assert!(!rule_matches(&any(&["pods"]), &status, pods()));
        assert!(rule_matches(&any(&["pods/status"]), &status, pods()));
        assert!(!rule_matches(&any(&["pods/status"]), &main, pods()));
        assert!(rule_matches(&any(&["pods/*"]), &status, pods()));
        assert!(!rule_matches(&any(&["*"]), &status, pods()));
        assert!(rule_matches(&any(&["*"]), &main, pods()));
        assert!(rule_matches(&any(&["*/*"]), &status, pods()));
        assert!(rule_matches(&any(&["*/status"]), &status, pods()));
    }

    #[test]
    fn webhook_rule_scope_separates_namespaced_and_cluster_objects() {
        let namespaces = r8s_api::find("", "v1", "namespaces").expect("namespaces");
        let nodes = r8s_api::find("", "v1", "nodes").expect("nodes");
        let scoped = |scope: &str| {
            let mut r = rule(&["*"], &["*"], &["*"], &["*"]);
            r["scope"] = json!(scope);
            r
        };
        let cm = request_on(configmaps(), None, "CREATE", Some("default"));
        let node = request_on(nodes, None, "CREATE", None);
        let ns = request_on(namespaces, None, "CREATE", None);
        assert!(rule_matches(&scoped("Namespaced"), &cm, configmaps()));
        assert!(!rule_matches(&scoped("Namespaced"), &node, nodes));
        assert!(!rule_matches(&scoped("Namespaced"), &ns, namespaces));
        assert!(rule_matches(&scoped("Cluster"), &node, nodes));
        assert!(rule_matches(&scoped("Cluster"), &ns, namespaces));
        assert!(!rule_matches(&scoped("Cluster"), &cm, configmaps()));
        assert!(rule_matches(&scoped("*"), &cm, configmaps()));
    }

    #[test]
    fn webhook_equivalent_match_policy_calls_with_the_matching_version() {
        let v1 = r8s_api::find("autoscaling", "v1", "horizontalpodautoscalers").expect("v1");
        let v2 = r8s_api::find("autoscaling", "v2", "horizontalpodautoscalers").expect("v2");
        let request = request_on(v1, None, "CREATE", Some("default"));
        let spec = |policy: &str| {
            json!({
                "name": "hpa.example.com", "matchPolicy": policy,
                "rules": [rule(&["CREATE"], &["autoscaling"], &["v2"], &["horizontalpodautoscalers"])],
                "clientConfig": { "url": "https://127.0.0.1/" },
                "sideEffects": "None", "admissionReviewVersions": ["v1"],
            })
        };
        let invoked = invocation(&hook(spec("Equivalent")), &request).expect("equivalent match");
        assert!(std::ptr::eq(invoked.resource, v2));
        assert_eq!(invoked.kind.version, "v2");
        assert!(invocation(&hook(spec("Exact")), &request).is_none());
        // matchPolicy defaults to Equivalent.
        let mut unset = spec("Equivalent");
        unset.as_object_mut().expect("object").remove("matchPolicy");
        assert!(invocation(&hook(unset), &request).is_some());
    }

    #[test]
    fn webhook_object_selector_matches_new_or_old_labels() {
        let selecting = hook(json!({
            "name": "h", "objectSelector": { "matchLabels": { "team": "a" } },
            "clientConfig": { "url": "https://127.0.0.1/" },
        }));
        let a = json!({ "metadata": { "labels": { "team": "a" } } });
        let b = json!({ "metadata": { "labels": { "team": "b" } } });
        assert!(object_selected(&selecting, Some(&a), None).expect("selector"));
        assert!(object_selected(&selecting, Some(&b), Some(&a)).expect("selector"));
        assert!(!object_selected(&selecting, Some(&b), None).expect("selector"));
        assert!(!object_selected(&selecting, None, None).expect("selector"));
        let everything = hook(json!({ "name": "h", "clientConfig": { "url": "https://h/" } }));
        assert!(object_selected(&everything, None, None).expect("selector"));
    }

    #[test]
    fn webhook_namespace_selector_reads_the_right_labels() {
        let namespaces = r8s_api::find("", "v1", "namespaces").expect("namespaces");
        let nodes = r8s_api::find("", "v1", "nodes").expect("nodes");
        let object = json!({ "metadata": { "name": "team-a" } });
        let cm = request_on(configmaps(), None, "CREATE", Some("team-a"));
        assert!(matches!(
            namespace_labels_source(&cm, Some(&object)),
            NamespaceLabels::Lookup("team-a")
        ));
        let node = request_on(nodes, None, "CREATE", None);
        assert!(matches!(
            namespace_labels_source(&node, Some(&object)),
            NamespaceLabels::ClusterScoped
        ));
        let ns = request_on(namespaces, None, "CREATE", None);
        assert!(matches!(
            namespace_labels_source(&ns, Some(&object)),
            NamespaceLabels::Of(_)
        ));
        let status = Request {
            name: "team-a",
            ..request_on(namespaces, Some("status"), "UPDATE", None)
        };
        assert!(matches!(
            namespace_labels_source(&status, Some(&object)),
            NamespaceLabels::Lookup("team-a")
        ));
        let deleting = Request {
            name: "team-a",
            ..request_on(namespaces, None, "DELETE", None)
        };
        assert!(matches!(
            namespace_labels_source(&deleting, None),
            NamespaceLabels::Lookup("team-a")
        ));
        let selecting = hook(json!({
            "name": "h", "namespaceSelector": { "matchExpressions": [
                { "key": "skip", "operator": "DoesNotExist" } ] },
            "clientConfig": { "url": "https://h/" },
        }));
        let selector = namespace_selector(&selecting)
            .expect("valid")
            .expect("not empty");
        assert!(selector.matches(&json!({ "metadata": { "labels": { "a": "b" } } })));
        assert!(!selector.matches(&json!({ "metadata": { "labels": { "skip": "" } } })));
    }

    #[test]
    fn webhook_configuration_objects_are_exempt() {
        let validating = r8s_api::find(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
        )
        .expect("validatingwebhookconfigurations");
        assert!(is_exempt(validating));
        assert!(!is_exempt(configmaps()));
    }
}
