//! The r8s API catalogue: every built-in resource a default Kubernetes 1.37 API server serves.
//!
//! What lives here: the resource catalogue as static data (group, version, kind, plural,
//! singular, scope, verbs, short names, categories, subresources) with lookups by resource and
//! by kind and the list of API groups in discovery order; later, per-kind behaviour (defaulting,
//! validation, table columns, field selectors, status/spec split) in `src/kinds/<resource>.rs`,
//! so the generic server never grows `if kind == "Pod"`.
//!
//! What must not: HTTP, storage, or any other r8s crate. Everything above this crate may depend
//! on it; it depends on nothing of ours.

mod catalogue;
pub mod kinds;
pub mod protobuf;
pub mod quantity;
pub mod quota;
mod resource;

pub use resource::{Resource, StoredAs, Subresource};

/// Every built-in resource: core first, then each group in [`groups`] order, each group/version's
/// resources sorted by plural as discovery lists them.
pub fn catalogue() -> &'static [Resource] {
    catalogue::CATALOGUE
}

/// The resource served at `/apis/<group>/<version>/<plural>` (or `/api/v1/<plural>` for the core
/// group `""`).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    catalogue()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose objects have this group, version and kind.
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static Resource> {
    catalogue()
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// One API group as `/apis` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVersions {
    /// The group name, e.g. `"apps"`.
    pub group: &'static str,
    /// Served versions, the preferred one first.
    pub versions: Vec<&'static str>,
    /// The version clients should use, e.g. `"v2"` for autoscaling.
    pub preferred: &'static str,
}

/// Every API group (excluding core `""`) in upstream's discovery order, versions newest-preferred
/// first.
pub fn groups() -> Vec<GroupVersions> {
    catalogue::GROUPS
        .iter()
        .map(|&(group, versions)| GroupVersions {
            group,
            versions: versions.to_vec(),
            preferred: versions[0],
        })
        .collect()
}

#[cfg(test)]
mod tests;
