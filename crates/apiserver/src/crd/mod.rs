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
pub mod conversion;
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

/// Defaults and validates a custom resource against its schema and its CEL rules before it
/// is stored (`old`: the object an update replaces); a create for a terminating CRD is
/// refused, as upstream. A CRD's own rules must compile and fit the cost budget.
pub fn admit(resource: &Resource, object: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(served) = catalogue::of(resource) else {
        if resource.group == "apiextensions.k8s.io"
            && resource.plural == "customresourcedefinitions"
        {
            return check_rules(object, old);
        }
        return Ok(());
    };
    if old.is_none() && served.terminating {
        return Err(ApiError::method_not_allowed(format!(
            "create not allowed while custom resource definition is terminating: {}",
            served.crd
        )));
    }
    let Some(schema) = served.schema else {
        return Ok(());
    };
    structural::default(schema, object);
    let mut problems = structural::validate(schema, object);
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match served.rules.as_deref() {
        None => {}
        Some(Err(why)) => problems.push((
            "<nil>".to_owned(),
            format!("Invalid value: rule compile error: {why}"),
        )),
        // Rules run on a value the schema accepts, as upstream runs them after it.
        Some(Ok(_)) if !problems.is_empty() => {}
        Some(Ok(rules)) => {
            let outcome = rules.validate(object, old);
            problems.extend(outcome.errors);
            crate::admission::warn(outcome.warnings);
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        resource.kind,
        resource.group,
        name,
        problems,
    ))
}

/// Refuses a CRD whose `x-kubernetes-validations` rules do not compile (or reference fields
/// the schema lacks, or cost too much), checking only versions whose schema changed.
fn check_rules(crd: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for (i, version) in crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let schema = &version["schema"]["openAPIV3Schema"];
        if !schema.is_object() {
            continue;
        }
        let unchanged = old
            .and_then(|o| o["spec"]["versions"].as_array())
            .is_some_and(|versions| {
                versions.iter().any(|v| {
                    v["name"] == version["name"] && v["schema"]["openAPIV3Schema"] == *schema
                })
            });
        if unchanged {
            continue;
        }
        let at = format!("spec.versions[{i}].schema.openAPIV3Schema");
        if let Err(errors) = r8s_cel::rules::Compiled::new(schema, &at) {
            problems.extend(errors);
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        "CustomResourceDefinition",
        "apiextensions.k8s.io",
        crd["metadata"]["name"].as_str().unwrap_or_default(),
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
