//! Admission as kube-apiserver runs it after authorization: mutating plugins change an object
//! before it is defaulted and validated, validating plugins may refuse it just before it is
//! stored. One file per plugin, each named and behaving as its upstream namesake. Plugins read
//! other objects from the watch cache (or the store, when they must see the latest write), never
//! from memory of earlier requests.

mod default_storage_class;
mod limit_ranger;
mod node_restriction;
mod pod_security;
mod resource_quota;
mod service_account;
mod webhook;

use r8s_api::Resource;
use serde_json::{Value, json};

use crate::authz::User;
use crate::objects;
use crate::registry::Registry;
use crate::status::ApiError;
pub use webhook::collect_warnings;
pub(crate) use webhook::convert_review;

/// What the server itself does to a ValidatingAdmissionPolicy being written: its expressions
/// must compile, and its status records their type checking.
pub(crate) fn prepare_policy(
    resource: &Resource,
    subresource: Option<&str>,
    object: &mut Value,
) -> Result<(), ApiError> {
    let is_policy = resource.group == "admissionregistration.k8s.io"
        && resource.plural == "validatingadmissionpolicies"
        && subresource.is_none();
    match is_policy {
        true => webhook::policy::prepare(object),
        false => Ok(()),
    }
}

/// Adds `Warning` headers to the answer of the write being served (none for the server's own
/// writes).
pub(crate) fn warn(warnings: Vec<String>) {
    if !warnings.is_empty() {
        webhook::add_warnings(warnings);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// What a plugin is told about a write, as upstream's `admission.Attributes`.
pub struct Attributes<'a> {
    pub resource: &'static Resource,
    pub subresource: Option<&'a str>,
    pub operation: Operation,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// The stored object an update replaces.
    pub old: Option<&'a Value>,
    /// Who asked; `None` for writes the server makes itself.
    pub user: Option<&'a User>,
    pub dry_run: bool,
}

impl Attributes<'_> {
    /// Whether this write is to the main resource `group`/`plural` (not a subresource).
    fn is(&self, group: &str, plural: &str) -> bool {
        self.resource.group == group && self.resource.plural == plural && self.subresource.is_none()
    }

    /// Who was refused what, for the operator reading the server's log.
    fn log_denial(&self, error: &ApiError) {
        tracing::debug!(
            user = self.user.map(|u| u.name.as_str()),
            resource = self.resource.plural,
            namespace = self.namespace,
            name = self.name,
            reason = error.message,
            "admission denied"
        );
    }

    /// Upstream's `admission.NewForbidden`: `pods "x" is forbidden: <why>`.
    pub(crate) fn forbidden(&self, why: impl std::fmt::Display) -> ApiError {
        let qualified = if self.resource.group.is_empty() {
            self.resource.plural.to_owned()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        };
        let message = if self.name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} {:?} is forbidden: {why}", self.name)
        };
        let mut details = json!({ "name": self.name, "kind": self.resource.plural });
        if !self.resource.group.is_empty() {
            details["group"] = json!(self.resource.group);
        }
        ApiError {
            details: Some(details),
            ..ApiError::forbidden(message)
        }
    }
}

/// The mutating plugins, in upstream's order; run before per-kind defaulting and validation.
pub async fn admit(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &mut Value,
) -> Result<(), ApiError> {
    let admitted = async {
        node_restriction::admit(attributes, object)?;
        service_account::admit(registry, attributes, object).await?;
        limit_ranger::admit(registry, attributes, object).await?;
        default_storage_class::admit(registry, attributes, object).await?;
        webhook::admit(registry, attributes, object).await
    };
    admitted.await.inspect_err(|e| attributes.log_denial(e))
}

/// The validating plugins, in upstream's order; run on the object about to be stored.
/// ResourceQuota charges the quota here, unless the request is a dry run.
pub async fn validate(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &Value,
) -> Result<(), ApiError> {
    let validated = async {
        // Upstream's RBAC storage refuses privilege escalation before validating admission.
        crate::authz::escalation::validate(registry, attributes, object).await?;
        pod_security::validate(registry, attributes, object).await?;
        limit_ranger::validate(registry, attributes, object).await?;
        webhook::validate(registry, attributes, object).await?;
        resource_quota::validate(registry, attributes, object).await
    };
    validated.await.inspect_err(|e| attributes.log_denial(e))
}

/// A DELETE through the admission plugins that look at deletes (of r8s's, only the webhooks);
/// `old` is the object about to be deleted.
pub async fn admit_delete(
    registry: &Registry,
    path: &crate::router::ResourcePath,
    name: &str,
    old: &Value,
    user: Option<&User>,
    dry_run: bool,
) -> Result<(), ApiError> {
    let request = webhook::Request {
        resource: path.resource,
        subresource: path.subresource.as_deref(),
        operation: webhook::DELETE,
        namespace: path.namespace.as_deref(),
        name,
        old: Some(old),
        user,
        dry_run,
    };
    webhook::admit_delete(registry, &request)
        .await
        .inspect_err(|e| {
            tracing::debug!(
                user = user.map(|u| u.name.as_str()),
                resource = path.resource.plural,
                name,
                reason = e.message,
                "admission denied a delete"
            )
        })
}

/// The objects of a core or named resource in one namespace (or all), from the watch cache.
async fn cached(
    registry: &Registry,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let resource = r8s_api::catalogue()
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .ok_or_else(|| ApiError::internal(format!("the catalogue has no {plural}")))?;
    let cache = registry.cache.resource(resource).await?;
    let mut prefix = objects::collection(resource, namespace);
    prefix.push('/');
    let (found, _) = cache.snapshot(&prefix);
    Ok(found.iter().map(|o| o.value()).collect())
}
