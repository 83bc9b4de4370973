//! CustomResourceDefinitions, as upstream's apiextensions-apiserver: established CRDs add
//! resources to the catalogue the router, discovery, OpenAPI and RBAC see; custom resources go
//! through the generic registry, pruned, defaulted and validated against their CRD's schema;
//! their tables print the CRD's `additionalPrinterColumns`, and their `scale` subresource
//! follows the CRD's replica paths. The CRD object itself is a kind in `r8s_api`.
//!
//! The rest of the server calls only the functions here; none of them costs a built-in
//! resource more than a lookup in the (small) dynamic table.

pub mod catalogue;
pub mod columns;
pub mod openapi;
pub mod scale;
pub mod status;
pub mod structural;

use r8s_api::{GroupVersions, Resource};
use serde_json::Value;

use crate::status::ApiError;
use crate::table::Include;

/// The resource an established CRD serves at `/apis/<group>/<version>/<plural>`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    catalogue::find(group, version, plural).map(|s| s.resource)
}

/// Whether an established CRD serves this group version.
pub fn serves(group: &str, version: &str) -> bool {
    catalogue::table()
        .served
        .iter()
        .any(|s| s.resource.group == group && s.resource.version == version)
}

/// The built-in groups, then the CRDs' groups, as `/apis` lists them.
pub fn groups() -> Vec<GroupVersions> {
    let mut groups = r8s_api::groups();
    for (group, versions) in &catalogue::table().groups {
        if let Some(existing) = groups.iter_mut().find(|g| g.group == *group) {
            for version in versions {
                if !existing.versions.contains(version) {
                    existing.versions.push(version);
                }
            }
            continue;
        }
        groups.push(GroupVersions {
            group,
            versions: versions.clone(),
            preferred: versions[0],
        });
    }
    groups
}

/// The CRD-served resources of a group version.
pub fn resources_of(group: &str, version: &str) -> Vec<&'static Resource> {
    catalogue::table()
        .served
        .iter()
        .map(|s| s.resource)
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

/// Prunes a custom resource's unknown fields against its schema and answers their paths;
/// `None` for built-in resources.
pub fn prune_unknown(resource: &Resource, object: &mut Value) -> Option<Vec<String>> {
    let served = catalogue::of(resource)?;
    let schema = served.schema?;
    Some(structural::prune(schema, object))
}

/// Warnings a write of this object earns: CEL rules r8s does not evaluate.
pub fn warnings(resource: &Resource, object: &Value) -> Vec<String> {
    const CEL: &str = "x-kubernetes-validations";
    let skipped = match catalogue::of(resource) {
        Some(served) => served.has_cel_rules,
        None => {
            resource.group == "apiextensions.k8s.io"
                && resource.plural == "customresourcedefinitions"
                && object["spec"].to_string().contains(CEL)
        }
    };
    match skipped {
        true => vec![format!(
            "{CEL} (CEL) rules are not evaluated by r8s yet; only the rest of the schema is enforced"
        )],
        false => Vec::new(),
    }
}

/// Defaults and validates a custom resource against its schema before it is stored; a create
/// for a terminating CRD is refused, as upstream.
pub fn admit(resource: &Resource, object: &mut Value, creating: bool) -> Result<(), ApiError> {
    let Some(served) = catalogue::of(resource) else {
        return Ok(());
    };
    if creating && served.terminating {
        return Err(ApiError::method_not_allowed(format!(
            "create not allowed while custom resource definition is terminating: {}",
            served.crd
        )));
    }
    let Some(schema) = served.schema else {
        return Ok(());
    };
    structural::default(schema, object);
    let problems = structural::validate(schema, object);
    if problems.is_empty() {
        return Ok(());
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    Err(ApiError::invalid(
        resource.kind,
        resource.group,
        name,
        problems,
    ))
}

/// The Table of custom resources, with their CRD's printer columns; `None` for built-ins.
pub fn table(resource: &Resource, value: &Value, include: Include) -> Option<Value> {
    let served = catalogue::of(resource)?;
    Some(columns::render(value, include, &served.columns))
}

/// The structural schema of a custom resource kind, for server-side apply.
pub fn schema_of_kind(group: &str, version: &str, kind: &str) -> Option<&'static Value> {
    catalogue::table()
        .served
        .iter()
        .find(|s| {
            let r = s.resource;
            r.group == group && r.version == version && r.kind == kind
        })
        .and_then(|s| s.schema)
}
