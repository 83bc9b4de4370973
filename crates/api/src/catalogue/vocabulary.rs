//! The words the catalogue is written in: verb sets, categories, group/versions, and the
//! const builders that turn one line of data into a [`Resource`] or [`Subresource`].

use crate::resource::{Resource, StoredAs, Subresource};

pub(super) const NAMESPACED: bool = true;
pub(super) const CLUSTER: bool = false;

/// What an ordinary stored resource serves.
pub(super) const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces are deleted one at a time, through finalization: no `deletecollection`.
pub(super) const CRUD_NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
pub(super) const CREATE: &[&str] = &["create"];
pub(super) const GET_LIST: &[&str] = &["get", "list"];
pub(super) const GET: &[&str] = &["get"];
pub(super) const UPDATE: &[&str] = &["update"];
pub(super) const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
/// attach, exec and portforward: a GET or POST upgraded to a stream.
pub(super) const CONNECT: &[&str] = &["create", "get"];
/// proxy passes every HTTP method through.
pub(super) const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

pub(super) const ALL: &[&str] = &["all"];
pub(super) const API_EXTENSIONS: &[&str] = &["api-extensions"];

/// A group and version, to write each catalogue entry without repeating them.
#[derive(Clone, Copy)]
pub(super) struct GroupVersion {
    group: &'static str,
    version: &'static str,
}

pub(super) const CORE_V1: GroupVersion = GroupVersion::new("", "v1");
pub(super) const APIREGISTRATION_V1: GroupVersion =
    GroupVersion::new("apiregistration.k8s.io", "v1");
pub(super) const APPS_V1: GroupVersion = GroupVersion::new("apps", "v1");
pub(super) const EVENTS_V1: GroupVersion = GroupVersion::new("events.k8s.io", "v1");
pub(super) const AUTHENTICATION_V1: GroupVersion = GroupVersion::new("authentication.k8s.io", "v1");
pub(super) const AUTHORIZATION_V1: GroupVersion = GroupVersion::new("authorization.k8s.io", "v1");
pub(super) const AUTOSCALING_V2: GroupVersion = GroupVersion::new("autoscaling", "v2");
pub(super) const AUTOSCALING_V1: GroupVersion = GroupVersion::new("autoscaling", "v1");
pub(super) const BATCH_V1: GroupVersion = GroupVersion::new("batch", "v1");
pub(super) const CERTIFICATES_V1: GroupVersion = GroupVersion::new("certificates.k8s.io", "v1");
pub(super) const NETWORKING_V1: GroupVersion = GroupVersion::new("networking.k8s.io", "v1");
pub(super) const POLICY_V1: GroupVersion = GroupVersion::new("policy", "v1");
pub(super) const RBAC_V1: GroupVersion = GroupVersion::new("rbac.authorization.k8s.io", "v1");
pub(super) const STORAGE_V1: GroupVersion = GroupVersion::new("storage.k8s.io", "v1");
pub(super) const ADMISSIONREGISTRATION_V1: GroupVersion =
    GroupVersion::new("admissionregistration.k8s.io", "v1");
pub(super) const APIEXTENSIONS_V1: GroupVersion = GroupVersion::new("apiextensions.k8s.io", "v1");
pub(super) const SCHEDULING_V1: GroupVersion = GroupVersion::new("scheduling.k8s.io", "v1");
pub(super) const COORDINATION_V1: GroupVersion = GroupVersion::new("coordination.k8s.io", "v1");
pub(super) const NODE_V1: GroupVersion = GroupVersion::new("node.k8s.io", "v1");
pub(super) const DISCOVERY_V1: GroupVersion = GroupVersion::new("discovery.k8s.io", "v1");
pub(super) const FLOWCONTROL_V1: GroupVersion =
    GroupVersion::new("flowcontrol.apiserver.k8s.io", "v1");
pub(super) const METRICS_V1BETA1: GroupVersion = GroupVersion::new("metrics.k8s.io", "v1beta1");
pub(super) const RESOURCE_V1: GroupVersion = GroupVersion::new("resource.k8s.io", "v1");
pub(super) const STORAGEMIGRATION_V1: GroupVersion =
    GroupVersion::new("storagemigration.k8s.io", "v1");

/// Deployments, replica sets, stateful sets and replication controllers scale through one kind.
pub(super) const SCALE: Subresource = AUTOSCALING_V1.sub("scale", "Scale", GET_PATCH_UPDATE);

impl GroupVersion {
    pub(super) const fn new(group: &'static str, version: &'static str) -> Self {
        Self { group, version }
    }

    /// A stored resource with the full CRUD verbs and nothing else; `with_*` adds the rest.
    pub(super) const fn resource(
        self,
        kind: &'static str,
        plural: &'static str,
        singular: &'static str,
        namespaced: bool,
    ) -> Resource {
        Resource {
            group: self.group,
            version: self.version,
            kind,
            plural,
            singular,
            namespaced,
            verbs: CRUD,
            short_names: &[],
            categories: &[],
            subresources: &[],
            stored_as: None,
        }
    }

    /// A subresource whose object is of this group/version's `kind`.
    pub(super) const fn sub(
        self,
        name: &'static str,
        kind: &'static str,
        verbs: &'static [&'static str],
    ) -> Subresource {
        Subresource {
            name,
            group: self.group,
            version: self.version,
            kind,
            verbs,
        }
    }

    /// The `status` subresource, which reads and writes the parent's own kind.
    pub(super) const fn status(self, kind: &'static str) -> Subresource {
        self.sub("status", kind, GET_PATCH_UPDATE)
    }
}

impl Resource {
    pub(super) const fn with_verbs(mut self, verbs: &'static [&'static str]) -> Self {
        self.verbs = verbs;
        self
    }

    pub(super) const fn with_short_names(mut self, short_names: &'static [&'static str]) -> Self {
        self.short_names = short_names;
        self
    }

    pub(super) const fn with_categories(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories;
        self
    }

    pub(super) const fn with_subresources(mut self, subresources: &'static [Subresource]) -> Self {
        self.subresources = subresources;
        self
    }

    /// Objects kept as `plural` of `at` serves them, converted to and from this version.
    pub(super) const fn stored_as(mut self, at: GroupVersion, plural: &'static str) -> Self {
        self.stored_as = Some(StoredAs {
            group: at.group,
            version: at.version,
            plural,
        });
        self
    }
}
