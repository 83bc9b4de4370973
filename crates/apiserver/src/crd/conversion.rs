//! Custom resources of CRDs with several versions, as apiextensions-apiserver converts them:
//! objects are stored in the CRD's storage version and served in the version asked for. With
//! `conversion.strategy: None` (the default) converting is rewriting `apiVersion`; objects
//! stored before the storage version changed are converted on read too.
//!
//! `strategy: Webhook` is not built yet: a CRD asking for it is refused when written.

use std::sync::atomic::{AtomicBool, Ordering};

use r8s_api::Resource;
use serde_json::{Value, json};

use super::catalogue;

/// Whether any served CRD has more than one version: built-in resources and single-version
/// CRDs then skip every lookup here.
static ANY: AtomicBool = AtomicBool::new(false);

/// Called when the catalogue is rebuilt.
pub(super) fn set_any(any: bool) {
    ANY.store(any, Ordering::Relaxed);
}

/// How a CRD converts between its versions.
#[derive(Debug, Clone, PartialEq)]
pub struct Versions {
    /// `group/version` of the storage version.
    pub storage: String,
}

/// The conversion of the CRD `resource` is a version of, if it has several versions.
pub fn of(resource: &Resource) -> Option<Versions> {
    if !ANY.load(Ordering::Relaxed) || resource.stored_as.is_some() {
        return None;
    }
    catalogue::of(resource)?.versions.clone()
}

/// `object` as `api_version`: the None strategy's conversion.
fn to(mut object: Value, api_version: &str) -> Value {
    if object["apiVersion"] != api_version {
        object["apiVersion"] = json!(api_version);
    }
    object
}

/// A stored object as `resource` serves it.
pub fn served(resource: &Resource, stored: Value) -> Value {
    match of(resource) {
        Some(_) => to(stored, &resource.api_version()),
        None => stored,
    }
}

/// An object written through `resource`, as it is stored.
pub fn stored(resource: &Resource, object: Value) -> Value {
    match of(resource) {
        Some(versions) => to(object, &versions.storage),
        None => object,
    }
}

/// The JSON of a cached object as `resource` serves it, when that differs from the stored
/// JSON.
pub fn served_json(resource: &Resource, stored: &str) -> Option<String> {
    of(resource)?;
    let wanted = resource.api_version();
    let object: Value = serde_json::from_str(stored).ok()?;
    (object["apiVersion"] != wanted.as_str()).then(|| to(object, &wanted).to_string())
}

/// The conversion settings of a CRD with several versions.
pub(super) fn versions_of(crd: &Value) -> Option<Versions> {
    let spec = &crd["spec"];
    let versions = spec["versions"].as_array()?;
    if versions.len() < 2 {
        return None;
    }
    let group = spec["group"].as_str()?;
    let storage = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())?;
    Some(Versions {
        storage: format!("{group}/{storage}"),
    })
}
