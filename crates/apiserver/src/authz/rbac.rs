//! RBAC as upstream's `RBACAuthorizer` and `DefaultRuleResolver` evaluate it: the bindings that
//! name a user (directly, through a group, or as a ServiceAccount) bring in their role's rules,
//! and a request is allowed when one rule matches it. Nothing here denies: a request no rule
//! allows gets no opinion, which the server answers 403.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::User;
use super::request_info::Attributes;

/// One `rules[]` entry of a Role or ClusterRole.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

fn any_is(values: &[String], wanted: &str) -> bool {
    values.iter().any(|v| v == "*" || v == wanted)
}

impl PolicyRule {
    /// Upstream's `RuleAllows`: verb, group, `resource[/subresource]` (or `*/subresource`) and
    /// name for resource requests; verb and URL (a trailing `*` is a prefix) otherwise.
    pub fn allows(&self, request: &Attributes) -> bool {
        if !any_is(&self.verbs, &request.verb) {
            return false;
        }
        if !request.resource_request {
            return self.non_resource_urls.iter().any(|url| {
                url == "*"
                    || *url == request.path
                    || url
                        .strip_suffix('*')
                        .is_some_and(|prefix| request.path.starts_with(prefix))
            });
        }
        let combined = match request.subresource.as_str() {
            "" => request.resource.clone(),
            sub => format!("{}/{sub}", request.resource),
        };
        let resource_matches = self.resources.iter().any(|rule| {
            rule == "*"
                || *rule == combined
                || (!request.subresource.is_empty()
                    && rule.strip_prefix("*/") == Some(request.subresource.as_str()))
        });
        any_is(&self.api_groups, &request.api_group)
            && resource_matches
            && (self.resource_names.is_empty() || self.resource_names.contains(&request.name))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

/// A RoleBinding (with its namespace) or ClusterRoleBinding.
#[derive(Debug, Clone)]
struct Binding {
    name: String,
    namespace: Option<String>,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_object(object: &Value) -> Option<Self> {
        let meta = &object["metadata"];
        Some(Self {
            name: meta["name"].as_str()?.to_owned(),
            namespace: meta["namespace"].as_str().map(str::to_owned),
            role_ref: serde_json::from_value(object["roleRef"].clone()).ok()?,
            subjects: serde_json::from_value(object["subjects"].clone()).unwrap_or_default(),
        })
    }

    /// The username a ServiceAccount subject stands for; a RoleBinding's subject without a
    /// namespace means one in the binding's namespace, as upstream defaults it.
    fn service_account_user(&self, subject: &Subject) -> Option<String> {
        let namespace = match (subject.namespace.as_str(), &self.namespace) {
            ("", Some(ns)) => ns.as_str(),
            ("", None) => return None,
            (ns, _) => ns,
        };
        Some(format!(
            "system:serviceaccount:{namespace}:{}",
            subject.name
        ))
    }

    /// The first subject naming `user`, as upstream's `appliesTo` finds it.
    fn subject_for(&self, user: &User) -> Option<&Subject> {
        self.subjects.iter().find(|s| match s.kind.as_str() {
            "User" => s.name == user.name,
            "Group" => user.groups.contains(&s.name),
            "ServiceAccount" => self.service_account_user(s).as_deref() == Some(&user.name),
            _ => false,
        })
    }

    /// Upstream's binding describers, quoted in the reason of an allowed request.
    fn describe(&self, subject: &Subject) -> String {
        let who = match (subject.kind.as_str(), subject.namespace.as_str()) {
            ("ServiceAccount", "") => format!(
                "{} {:?}",
                subject.kind,
                format!(
                    "{}/{}",
                    subject.name,
                    self.namespace.as_deref().unwrap_or_default()
                )
            ),
            ("ServiceAccount", ns) => {
                format!("{} {:?}", subject.kind, format!("{}/{ns}", subject.name))
            }
            _ => format!("{} {:?}", subject.kind, subject.name),
        };
        match &self.namespace {
            Some(ns) => format!(
                "RoleBinding {:?} of {} {:?} to {who}",
                format!("{}/{ns}", self.name),
                self.role_ref.kind,
                self.role_ref.name
            ),
            None => format!(
                "ClusterRoleBinding {:?} of {} {:?} to {who}",
                self.name, self.role_ref.kind, self.role_ref.name
            ),
        }
    }
}

/// The two kinds a `roleRef` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Role,
    ClusterRole,
}

/// Why a binding's role has no rules to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRefError {
    NotFound { kind: RoleKind, name: String },
    UnsupportedKind(String),
}

/// Worded as the authorizer's listers word it (`clusterrole.rbac… "x" not found`).
impl std::fmt::Display for RoleRefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound { kind, name } => {
                let resource = match kind {
                    RoleKind::Role => "role",
                    RoleKind::ClusterRole => "clusterrole",
                };
                write!(f, "{resource}.rbac.authorization.k8s.io {name:?} not found")
            }
            Self::UnsupportedKind(kind) => write!(f, "unsupported role reference kind: {kind:?}"),
        }
    }
}

/// Who a binding is indexed under: the usernames and groups its subjects name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubjectKey {
    User(String),
    Group(String),
}

/// Bindings indexed by subject, and roles by name: what one authorization decision reads.
#[derive(Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    /// ClusterRoleBindings first, then RoleBindings, each in key order.
    bindings: Vec<Binding>,
    cluster_bindings: HashMap<SubjectKey, Vec<usize>>,
    namespace_bindings: HashMap<String, HashMap<SubjectKey, Vec<usize>>>,
}

pub(super) fn rules_of(object: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(object["rules"].clone()).unwrap_or_default()
}

/// What visiting a user's rules found: the rule that allowed (described), and the errors of
/// bindings whose role is missing.
pub struct Visit {
    pub allowed_by: Option<String>,
    pub errors: Vec<String>,
}

impl Policy {
    /// Builds the index from the objects of the four RBAC resources.
    pub fn build(
        cluster_roles: &[Value],
        roles: &[Value],
        cluster_role_bindings: &[Value],
        role_bindings: &[Value],
    ) -> Self {
        let mut policy = Self::default();
        for role in cluster_roles {
            if let Some(name) = role["metadata"]["name"].as_str() {
                policy.cluster_roles.insert(name.to_owned(), rules_of(role));
            }
        }
        for role in roles {
            let meta = &role["metadata"];
            if let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) {
                policy
                    .roles
                    .insert((ns.to_owned(), name.to_owned()), rules_of(role));
            }
        }
        let bindings = cluster_role_bindings
            .iter()
            .chain(role_bindings)
            .filter_map(Binding::from_object);
        for (index, binding) in bindings.enumerate() {
            let mut keys: Vec<SubjectKey> = binding
                .subjects
                .iter()
                .filter_map(|s| match s.kind.as_str() {
                    "User" => Some(SubjectKey::User(s.name.clone())),
                    "Group" => Some(SubjectKey::Group(s.name.clone())),
                    "ServiceAccount" => binding.service_account_user(s).map(SubjectKey::User),
                    _ => None,
                })
                .collect();
            keys.dedup();
            let map = match &binding.namespace {
                None => &mut policy.cluster_bindings,
                Some(ns) => policy.namespace_bindings.entry(ns.clone()).or_default(),
            };
            for key in keys {
                map.entry(key).or_default().push(index);
            }
            policy.bindings.push(binding);
        }
        policy
    }

    /// The bindings that name `user`, cluster-wide ones first, each once, in upstream's order.
    fn bindings_for(&self, user: &User, namespace: &str) -> Vec<usize> {
        let keys: Vec<SubjectKey> = std::iter::once(SubjectKey::User(user.name.clone()))
            .chain(user.groups.iter().cloned().map(SubjectKey::Group))
            .collect();
        let mut found: Vec<usize> = keys
            .iter()
            .filter_map(|key| self.cluster_bindings.get(key))
            .flatten()
            .copied()
            .collect();
        if let Some(map) = self.namespace_bindings.get(namespace) {
            found.extend(keys.iter().filter_map(|key| map.get(key)).flatten());
        }
        // ClusterRoleBindings were numbered before RoleBindings, so this keeps them first.
        found.sort_unstable();
        found.dedup();
        found
    }

    fn role_rules(&self, binding: &Binding) -> Result<&[PolicyRule], RoleRefError> {
        let role_ref = &binding.role_ref;
        self.role_ref_rules(&role_ref.kind, &role_ref.name, binding.namespace.as_deref())
    }

    /// The rules of the role a binding in `namespace` (`None`: cluster-wide) refers to, as
    /// upstream's `GetRoleReferenceRules` resolves a `roleRef`.
    pub fn role_ref_rules(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<&[PolicyRule], RoleRefError> {
        let missing = |kind| RoleRefError::NotFound {
            kind,
            name: name.to_owned(),
        };
        let found = match (kind, namespace) {
            ("ClusterRole", _) => self
                .cluster_roles
                .get(name)
                .ok_or_else(|| missing(RoleKind::ClusterRole)),
            ("Role", Some(ns)) => self
                .roles
                .get(&(ns.to_owned(), name.to_owned()))
                .ok_or_else(|| missing(RoleKind::Role)),
            (kind, _) => Err(RoleRefError::UnsupportedKind(kind.to_owned())),
        };
        found.map(Vec::as_slice)
    }

    /// Walks `user`'s rules in `namespace` ("" for cluster-wide only) until one allows.
    pub fn visit(&self, user: &User, request: &Attributes) -> Visit {
        let mut visit = Visit {
            allowed_by: None,
            errors: Vec::new(),
        };
        for index in self.bindings_for(user, &request.namespace) {
            let binding = &self.bindings[index];
            let Some(subject) = binding.subject_for(user) else {
                continue;
            };
            match self.role_rules(binding) {
                Ok(rules) if rules.iter().any(|r| r.allows(request)) => {
                    visit.allowed_by = Some(binding.describe(subject));
                    return visit;
                }
                Ok(_) => {}
                Err(e) => visit.errors.push(e.to_string()),
            }
        }
        visit
    }

    /// Every rule `user` holds in `namespace`, and the errors met (upstream's `RulesFor`).
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let (rules, errors) = self.resolve_rules(user, namespace);
        (rules, errors.iter().map(RoleRefError::to_string).collect())
    }

    /// `rules_for` with the errors unformatted, for callers that word them differently.
    pub fn resolve_rules(
        &self,
        user: &User,
        namespace: &str,
    ) -> (Vec<PolicyRule>, Vec<RoleRefError>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for index in self.bindings_for(user, namespace) {
            let binding = &self.bindings[index];
            if binding.subject_for(user).is_none() {
                continue;
            }
            match self.role_rules(binding) {
                Ok(found) => rules.extend_from_slice(found),
                Err(e) => errors.push(e),
            }
        }
        (rules, errors)
    }
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;

impl Policy {
    /// Whether the ClusterRole `name` (as the caches hold it now) allows `request`.
    pub fn cluster_role_allows(&self, name: &str, request: &Attributes) -> bool {
        self.cluster_roles
            .get(name)
            .is_some_and(|rules| rules.iter().any(|rule| rule.allows(request)))
    }
}
