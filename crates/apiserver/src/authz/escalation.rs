//! RBAC privilege-escalation prevention, as upstream's policy-based RBAC storage does it: a
//! Role or ClusterRole may only hold rules its writer already holds (unless they may `escalate`
//! roles), a binding may only grant a role whose rules its writer holds (unless they may `bind`
//! that role), and only a holder of everything may set a ClusterRole's aggregationRule.
//! `system:masters` and the server's own writes are exempt. Runs on the object about to be
//! stored; the decision reads the RBAC index as the watch caches hold it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::rbac::{self, Policy, RoleKind, RoleRefError};
use super::{PRIVILEGED_GROUP, PolicyRule, User};
use crate::admission::{Attributes, Operation};
use crate::registry::Registry;
use crate::status::{ApiError, Subject};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Refuses a write of a Role, ClusterRole, RoleBinding or ClusterRoleBinding that would grant
/// rights its requester does not hold.
pub async fn validate(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &Value,
) -> Result<(), ApiError> {
    let resource = attributes.resource;
    let Some(user) = attributes.user else {
        return Ok(());
    };
    if resource.group != GROUP || attributes.subresource.is_some() {
        return Ok(());
    }
    let write = Write {
        plural: resource.plural,
        namespace: attributes.namespace.unwrap_or_default(),
        // Upstream asks about `escalate` with the request's name: none when creating.
        name: match attributes.operation {
            Operation::Create => "",
            Operation::Update => attributes.name,
        },
        object,
        old: attributes.old,
    };
    if !matches!(
        write.plural,
        "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings"
    ) || user.groups.iter().any(|g| g == PRIVILEGED_GROUP)
        || only_garbage_collector_fields_change(write.old, object)
    {
        return Ok(());
    }
    let policy = super::current_policy(&registry.cache).await?;
    decide(&policy, user, &write).map_err(|refusal| match refusal {
        Refusal::Forbidden(why) => attributes.forbidden(why),
        Refusal::Error(e) => e,
    })
}

/// The write being decided.
struct Write<'a> {
    plural: &'a str,
    /// "" for the cluster-scoped kinds.
    namespace: &'a str,
    /// The name the request addressed ("" on create).
    name: &'a str,
    object: &'a Value,
    old: Option<&'a Value>,
}

#[derive(Debug)]
enum Refusal {
    /// Upstream's 403 text after `<resource> "<name>" is forbidden: `.
    Forbidden(String),
    /// The binding's role cannot be read.
    Error(ApiError),
}

fn decide(policy: &Policy, user: &User, write: &Write) -> Result<(), Refusal> {
    match write.plural {
        "roles" | "clusterroles" => decide_role(policy, user, write),
        _ => decide_binding(policy, user, write),
    }
}

/// Upstream's `RoleEscalationAuthorized`, then `ConfirmNoEscalation` of the role's rules, then
/// full authority to set, change or drop an aggregationRule (it can gather any rules, and
/// changing it could keep a role from being tightened).
fn decide_role(policy: &Policy, user: &User, write: &Write) -> Result<(), Refusal> {
    let escalate = super::Attributes {
        verb: "escalate".into(),
        resource_request: true,
        api_group: GROUP.into(),
        api_version: "*".into(),
        resource: write.plural.into(),
        namespace: write.namespace.into(),
        name: write.name.into(),
        ..super::Attributes::default()
    };
    // Only RBAC can grant `escalate` on roles: the Node authorizer never does.
    if policy.visit(user, &escalate).allowed_by.is_some() {
        return Ok(());
    }
    confirm_no_escalation(policy, user, write.namespace, &rbac::rules_of(write.object))
        .map_err(Refusal::Forbidden)?;
    let aggregates = |role: &Value| {
        role["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .is_some_and(|selectors| !selectors.is_empty())
    };
    if write.plural == "clusterroles"
        && (aggregates(write.object) || write.old.is_some_and(aggregates))
        && confirm_no_escalation(policy, user, "", &full_authority()).is_err()
    {
        return Err(Refusal::Forbidden(
            "must have cluster-admin privileges to use the aggregationRule".into(),
        ));
    }
    Ok(())
}

/// Upstream's `BindingAuthorized` (the `bind` verb on the referenced role, by name, in the
/// binding's namespace), then `ConfirmNoEscalation` of the role's rules.
fn decide_binding(policy: &Policy, user: &User, write: &Write) -> Result<(), Refusal> {
    let role_ref = &write.object["roleRef"];
    let text = |field: &str| role_ref[field].as_str().unwrap_or_default();
    let (kind, name) = (text("kind"), text("name"));
    let plural = match kind {
        "ClusterRole" => Some("clusterroles"),
        "Role" => Some("roles"),
        _ => None,
    };
    if let Some(plural) = plural {
        let bind = super::Attributes {
            verb: "bind".into(),
            resource_request: true,
            api_group: text("apiGroup").into(),
            api_version: "*".into(),
            resource: plural.into(),
            namespace: write.namespace.into(),
            name: name.into(),
            ..super::Attributes::default()
        };
        if policy.visit(user, &bind).allowed_by.is_some() {
            return Ok(());
        }
    }
    let namespace = (!write.namespace.is_empty()).then_some(write.namespace);
    let rules = policy
        .role_ref_rules(kind, name, namespace)
        .map_err(|e| Refusal::Error(registry_error(&e)))?;
    confirm_no_escalation(policy, user, write.namespace, rules).map_err(Refusal::Forbidden)
}

/// A role that cannot be read, as upstream's storage-side rule resolver reports it: a missing
/// one as the registry does (`clusterroles.rbac… "x" not found`), anything else as a 500.
fn registry_error(error: &RoleRefError) -> ApiError {
    match error {
        RoleRefError::NotFound { kind, name } => ApiError::not_found(Subject {
            group: GROUP,
            plural: match kind {
                RoleKind::Role => "roles",
                RoleKind::ClusterRole => "clusterroles",
            },
            name,
        }),
        RoleRefError::UnsupportedKind(_) => {
            ApiError::internal(format!("Internal error occurred: {error}"))
        }
    }
}

/// `registry_error`'s text as an entry of the resolution errors, which are not API errors.
fn resolution_error(error: &RoleRefError) -> String {
    match error {
        RoleRefError::NotFound { .. } => registry_error(error).message,
        RoleRefError::UnsupportedKind(_) => error.to_string(),
    }
}

/// Everything: what setting an aggregationRule requires.
fn full_authority() -> Vec<PolicyRule> {
    let all = vec!["*".to_owned()];
    vec![
        PolicyRule {
            verbs: all.clone(),
            api_groups: all.clone(),
            resources: all.clone(),
            ..PolicyRule::default()
        },
        PolicyRule {
            verbs: all.clone(),
            non_resource_urls: all,
            ..PolicyRule::default()
        },
    ]
}

/// Upstream's `ConfirmNoEscalation`: `user`'s rules in `namespace` cover `rules`, or the
/// refusal lists what they miss, compacted and sorted, and the roles that could not be read.
fn confirm_no_escalation(
    policy: &Policy,
    user: &User,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (owned, errors) = policy.resolve_rules(user, namespace);
    let missing = uncovered(&owned, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let described: BTreeSet<String> = compact(missing).iter().map(compact_string).collect();
    let mut message = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        quoted_list(&user.groups),
        described.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !errors.is_empty() {
        // Go's `%v` of a one-element slice holding an error aggregate.
        let mut seen = BTreeSet::new();
        let unique: Vec<String> = errors
            .iter()
            .map(resolution_error)
            .filter(|m| seen.insert(m.clone()))
            .collect();
        let aggregate = match unique.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        message.push_str(&format!("; resolution errors: [{aggregate}]"));
    }
    Err(message)
}

/// Upstream's `Covers`: the broken-down pieces of `servant` that no rule of `owner` covers.
fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|piece| !owner.iter().any(|rule| covers(rule, piece)))
        .collect()
}

/// Upstream's `BreakdownRule`: one rule per group, resource, verb and name, and one per URL
/// and verb, so one owner rule either covers a piece or does not.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| vec![s.clone()];
    let mut pieces = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let piece = PolicyRule {
                    verbs: one(verb),
                    api_groups: one(group),
                    resources: one(resource),
                    ..PolicyRule::default()
                };
                if rule.resource_names.is_empty() {
                    pieces.push(piece);
                    continue;
                }
                for name in &rule.resource_names {
                    pieces.push(PolicyRule {
                        resource_names: one(name),
                        ..piece.clone()
                    });
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            pieces.push(PolicyRule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..PolicyRule::default()
            });
        }
    }
    pieces
}

fn has(set: &[String], wanted: &str) -> bool {
    set.iter().any(|s| s == wanted)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

/// Upstream's `ruleCovers`: whether `owner` covers every verb, group, resource (`*` covers
/// all, `*/sub` any resource's `sub`), name and URL (a trailing `*` is a prefix) of `piece`.
fn covers(owner: &PolicyRule, piece: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &piece.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &piece.api_groups);
    let resources = has(&owner.resources, "*")
        || piece.resources.iter().all(|resource| {
            has(&owner.resources, resource)
                || resource
                    .split_once('/')
                    .is_some_and(|(_, sub)| has(&owner.resources, &format!("*/{sub}")))
        });
    let urls = piece.non_resource_urls.iter().all(|path| {
        owner.non_resource_urls.iter().any(|url| {
            url == path || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*')))
        })
    });
    let names = owner.resource_names.is_empty()
        || (!piece.resource_names.is_empty()
            && has_all(&owner.resource_names, &piece.resource_names));
    verbs && groups && resources && urls && names
}

/// Upstream's `CompactRules`: pieces of one group, one resource and at most one name are
/// merged into one rule listing all their verbs; anything else stays as it is.
fn compact(pieces: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut simple: BTreeMap<(String, String, Option<String>), PolicyRule> = BTreeMap::new();
    let mut compacted = Vec::new();
    for piece in pieces {
        let is_simple = piece.resource_names.len() <= 1
            && piece.non_resource_urls.is_empty()
            && piece.api_groups.len() == 1
            && piece.resources.len() == 1;
        if !is_simple {
            compacted.push(piece);
            continue;
        }
        let key = (
            piece.api_groups[0].clone(),
            piece.resources[0].clone(),
            piece.resource_names.first().cloned(),
        );
        match simple.get_mut(&key) {
            Some(merged) => merged.verbs.extend(piece.verbs),
            None => {
                simple.insert(key, piece);
            }
        }
    }
    compacted.extend(simple.into_values());
    compacted
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Upstream's `CompactString`: only the fields a rule sets, in a fixed order.
fn compact_string(rule: &PolicyRule) -> String {
    let fields = [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("NonResourceURLs", &rule.non_resource_urls),
        ("ResourceNames", &rule.resource_names),
        ("Verbs", &rule.verbs),
    ];
    let parts: Vec<String> = fields
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(name, values)| format!("{name}:{}", quoted_list(values)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Upstream's `IsOnlyMutatingGCFields`: an update that changes only owner references and
/// finalizers (here also the managedFields entry recording it) grants nothing.
fn only_garbage_collector_fields_change(old: Option<&Value>, new: &Value) -> bool {
    let Some(old) = old else {
        return false;
    };
    let mut copied = new.clone();
    for field in ["ownerReferences", "finalizers", "selfLink", "managedFields"] {
        match old["metadata"].get(field) {
            Some(value) => copied["metadata"][field] = value.clone(),
            None => {
                if let Some(meta) = copied["metadata"].as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
    copied == *old
}

#[cfg(test)]
#[path = "escalation_tests.rs"]
mod tests;
