//! Authorization as kube-apiserver does it with `--authorization-mode=Node,RBAC`:
//! `system:masters` may do anything (upstream's privileged group), nodes what the Node
//! authorizer allows (module `node`), everyone what their RBAC bindings allow. The RBAC objects
//! are read from the watch cache and indexed by subject, rebuilt only when one of them changes,
//! so a decision never touches the store. A denied request gets upstream's 403.

pub mod aggregation;
pub mod escalation;
pub mod impersonation;
mod node;
mod rbac;
pub mod request_info;
pub mod reviews;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use r8s_store::Revision;
use serde_json::{Value, json};

use crate::cache::{ResourceCache, WatchCache};
use crate::status::ApiError;
use crate::tls::Identity;
use rbac::Policy;
pub use rbac::PolicyRule;
pub use request_info::Attributes;

/// The group whose members are allowed everything without looking at RBAC.
const PRIVILEGED_GROUP: &str = "system:masters";

/// Who a request acts as: the authenticated identity, or the one it impersonates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&Identity> for User {
    fn from(identity: &Identity) -> Self {
        Self {
            name: identity.user.clone(),
            groups: identity.groups.clone(),
            ..Self::default()
        }
    }
}

/// An authorizer's answer, with upstream's reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why it was allowed (`RBAC: allowed by …`), or what went wrong evaluating a denial.
    pub reason: String,
}

/// The four RBAC resources' caches, in [`Policy::build`]'s order.
struct Sources {
    cluster_roles: Arc<ResourceCache>,
    roles: Arc<ResourceCache>,
    cluster_role_bindings: Arc<ResourceCache>,
    role_bindings: Arc<ResourceCache>,
}

impl Sources {
    async fn new(cache: &WatchCache) -> Result<Self, ApiError> {
        let source = |plural| cache.resource(rbac_resource(plural));
        Ok(Self {
            cluster_roles: source("clusterroles").await?,
            roles: source("roles").await?,
            cluster_role_bindings: source("clusterrolebindings").await?,
            role_bindings: source("rolebindings").await?,
        })
    }

    /// The index of the objects the caches hold now.
    fn policy(&self) -> Policy {
        Policy::build(
            &objects(&self.cluster_roles, rbac_resource("clusterroles")),
            &objects(&self.roles, rbac_resource("roles")),
            &objects(
                &self.cluster_role_bindings,
                rbac_resource("clusterrolebindings"),
            ),
            &objects(&self.role_bindings, rbac_resource("rolebindings")),
        )
    }

    fn revisions(&self) -> [Revision; 4] {
        [
            self.cluster_roles.last_change(),
            self.roles.last_change(),
            self.cluster_role_bindings.last_change(),
            self.role_bindings.last_change(),
        ]
    }
}

pub struct Authorizer {
    sources: Sources,
    nodes: node::NodeAuthorizer,
    /// The index and the cache revisions it was built at.
    policy: RwLock<(Arc<Policy>, Option<[Revision; 4]>)>,
    /// Held while rebuilding, so a burst of requests after a change rebuilds once.
    rebuilding: Mutex<()>,
}

fn objects(cache: &ResourceCache, resource: &r8s_api::Resource) -> Vec<Value> {
    let prefix = format!("{}/", resource.storage_prefix());
    let (objects, _) = cache.snapshot(&prefix);
    objects.iter().map(|o| o.value()).collect()
}

fn rbac_resource(plural: &str) -> &'static r8s_api::Resource {
    r8s_api::find("rbac.authorization.k8s.io", "v1", plural).expect("the catalogue has RBAC")
}

impl Authorizer {
    pub async fn new(cache: &WatchCache) -> Result<Self, ApiError> {
        let authorizer = Self {
            policy: RwLock::new((Arc::new(Policy::default()), None)),
            sources: Sources::new(cache).await?,
            nodes: node::NodeAuthorizer::new(cache).await?,
            rebuilding: Mutex::new(()),
        };
        authorizer.rebuild();
        Ok(authorizer)
    }

    fn rebuild(&self) -> Arc<Policy> {
        let _one_at_a_time = self.rebuilding.lock().expect("authorizer lock poisoned");
        let revisions = self.sources.revisions();
        {
            let current = self.policy.read().expect("authorizer lock poisoned");
            if current.1 == Some(revisions) {
                return current.0.clone();
            }
        }
        let policy = Arc::new(self.sources.policy());
        *self.policy.write().expect("authorizer lock poisoned") = (policy.clone(), Some(revisions));
        policy
    }

    /// The index as of the caches' current state.
    fn policy(&self) -> Arc<Policy> {
        let revisions = self.sources.revisions();
        {
            let current = self.policy.read().expect("authorizer lock poisoned");
            if current.1 == Some(revisions) {
                return current.0.clone();
            }
        }
        self.rebuild()
    }

    /// Upstream's union of the privileged-group, Node and RBAC authorizers.
    pub fn authorize(&self, user: &User, request: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let allowed = Decision {
            allowed: true,
            reason: String::new(),
        };
        let policy = self.policy();
        // Each authorizer without an opinion may say why; a denial gives every reason.
        let mut reasons = Vec::new();
        match self.nodes.authorize(user, request) {
            Some(node::Verdict::Allow) => return allowed,
            Some(node::Verdict::NoOpinion(reason)) => reasons.push(reason),
            // The node rules are the `system:node` role's (no binding grants it upstream).
            Some(node::Verdict::NodeRules)
                if policy.cluster_role_allows("system:node", request) =>
            {
                return allowed;
            }
            Some(node::Verdict::NodeRules) | None => {}
        }
        let mut visit = policy.visit(user, request);
        // Upstream's error aggregate says each message once.
        let mut seen = std::collections::HashSet::new();
        visit.errors.retain(|e| seen.insert(e.clone()));
        if let Some(by) = visit.allowed_by {
            return Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {by}"),
            };
        }
        match visit.errors.as_slice() {
            [] => {}
            [one] => reasons.push(format!("RBAC: {one}")),
            many => reasons.push(format!("RBAC: [{}]", many.join(", "))),
        }
        reasons.retain(|r| !r.is_empty());
        Decision {
            allowed: false,
            reason: reasons.join("\n"),
        }
    }

    /// Allows the request or answers upstream's 403.
    pub fn check(&self, user: &User, request: &Attributes) -> Result<(), ApiError> {
        let decision = self.authorize(user, request);
        if decision.allowed {
            return Ok(());
        }
        Err(forbidden(user, request, &decision.reason))
    }

    /// The rules `user` holds in `namespace`, and the errors met collecting them.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        self.policy().rules_for(user, namespace)
    }
}

/// The RBAC index as the watch caches hold it now, built afresh: for the registry's writes,
/// which have the caches but not the request path's `Authorizer`.
pub(crate) async fn current_policy(cache: &WatchCache) -> Result<Policy, ApiError> {
    Ok(Sources::new(cache).await?.policy())
}

/// Upstream's `responsewriters.Forbidden`: its `forbiddenMessage` (plus the authorizer's
/// reason) inside `errors.NewForbidden` for the requested resource.
pub fn forbidden(user: &User, request: &Attributes, reason: &str) -> ApiError {
    let mut message = if !request.resource_request {
        format!(
            "User {:?} cannot {} path {:?}",
            user.name, request.verb, request.path
        )
    } else {
        let resource = match request.subresource.as_str() {
            "" => request.resource.clone(),
            sub => format!("{}/{sub}", request.resource),
        };
        let scope = match request.namespace.as_str() {
            "" => "at the cluster scope".to_owned(),
            ns => format!("in the namespace {ns:?}"),
        };
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            user.name, request.verb, request.api_group
        )
    };
    // Upstream keeps error text from looking like HTML.
    message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    let qualified = match request.api_group.as_str() {
        "" => request.resource.clone(),
        group => format!("{}.{group}", request.resource),
    };
    let mut details = json!({});
    for (key, value) in [
        ("name", &request.name),
        ("group", &request.api_group),
        ("kind", &request.resource),
    ] {
        if !value.is_empty() {
            details[key] = json!(value);
        }
    }
    let message = match (qualified.as_str(), request.name.as_str()) {
        ("", _) => format!("forbidden: {message}"),
        (qualified, "") => format!("{qualified} is forbidden: {message}"),
        (qualified, name) => format!("{qualified} {name:?} is forbidden: {message}"),
    };
    ApiError {
        details: Some(details),
        ..ApiError::forbidden(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> User {
        User {
            name: "jane".into(),
            groups: vec!["system:authenticated".into()],
            ..User::default()
        }
    }

    fn list_configmaps(namespace: &str) -> Attributes {
        Attributes {
            verb: "list".into(),
            resource_request: true,
            api_version: "v1".into(),
            resource: "configmaps".into(),
            namespace: namespace.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn forbidden_names_user_verb_resource_group_and_namespace() {
        let e = forbidden(&jane(), &list_configmaps("default"), "");
        assert_eq!(e.code.as_u16(), 403);
        assert_eq!(
            e.message,
            r#"configmaps is forbidden: User "jane" cannot list resource "configmaps" in API group "" in the namespace "default""#
        );
        assert_eq!(e.details, Some(json!({ "kind": "configmaps" })));
    }

    #[test]
    fn forbidden_at_cluster_scope_names_the_object_and_group() {
        let request = Attributes {
            verb: "get".into(),
            resource_request: true,
            api_group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            name: "web".into(),
            ..Attributes::default()
        };
        let e = forbidden(&jane(), &request, "");
        assert_eq!(
            e.message,
            r#"deployments.apps "web" is forbidden: User "jane" cannot get resource "deployments/scale" in API group "apps" at the cluster scope"#
        );
        assert_eq!(
            e.details,
            Some(json!({ "name": "web", "group": "apps", "kind": "deployments" }))
        );
    }

    #[test]
    fn forbidden_non_resource_path_has_empty_details() {
        let request = Attributes {
            verb: "get".into(),
            path: "/metrics".into(),
            ..Attributes::default()
        };
        let e = forbidden(&jane(), &request, "");
        assert_eq!(
            e.message,
            r#"forbidden: User "jane" cannot get path "/metrics""#
        );
        assert_eq!(e.details, Some(json!({})));
    }

    #[test]
    fn forbidden_appends_the_authorizers_reason() {
        let e = forbidden(
            &jane(),
            &list_configmaps(""),
            r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#,
        );
        assert!(
            e.message.ends_with(
                r#"at the cluster scope: RBAC: role.rbac.authorization.k8s.io "gone" not found"#
            ),
            "{}",
            e.message
        );
    }
}
