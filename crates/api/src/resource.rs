//! The shape of one catalogue entry: a resource as discovery describes it.

/// One built-in resource in one group/version, as `/api/v1` or `/apis/<group>/<version>` lists it.
///
/// A resource served in several versions (autoscaling v2 and v1) has one entry per version; all
/// but one of them name the entry whose form and storage they share in `stored_as`.
#[derive(Debug)]
pub struct Resource {
    /// The API group; `""` for the core group.
    pub group: &'static str,
    /// The version within the group, e.g. `"v1"`.
    pub version: &'static str,
    /// The object kind, e.g. `"Deployment"`.
    pub kind: &'static str,
    /// The resource name in URLs, e.g. `"deployments"`.
    pub plural: &'static str,
    /// The singular name kubectl accepts, e.g. `"deployment"`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// The verbs discovery lists, sorted as upstream sorts them.
    pub verbs: &'static [&'static str],
    /// Short names kubectl accepts, e.g. `["deploy"]`.
    pub short_names: &'static [&'static str],
    /// Categories kubectl can ask for, e.g. `["all"]`.
    pub categories: &'static [&'static str],
    /// Subresources, sorted by name as discovery lists them.
    pub subresources: &'static [Subresource],
    /// The served resource whose objects these are, kept in its form under its storage prefix
    /// and converted on the way in and out (events.k8s.io events are core events); `None`:
    /// the objects are kept as this resource serves them.
    pub stored_as: Option<StoredAs>,
}

/// The catalogue entry a resource's objects are stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAs {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Debug)]
pub struct Subresource {
    /// The part after the slash, e.g. `"status"`.
    pub name: &'static str,
    /// The group of the object the subresource takes and returns (`""` for core).
    pub group: &'static str,
    /// The version of that object.
    pub version: &'static str,
    /// Its kind: the parent's kind for `status`, `autoscaling/v1` `Scale` for `scale`, an
    /// options kind such as `PodExecOptions` for connect subresources.
    pub kind: &'static str,
    /// The verbs discovery lists for the subresource.
    pub verbs: &'static [&'static str],
}

impl Resource {
    /// The `apiVersion` objects of this resource carry: `"v1"` or `"apps/v1"`.
    pub fn api_version(&self) -> String {
        if self.is_core() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether the resource is in the core (legacy, `/api`) group.
    pub fn is_core(&self) -> bool {
        self.group.is_empty()
    }

    /// The subresource with this name, if the resource has it.
    pub fn has_subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|sub| sub.name == name)
    }

    /// The resource whose form objects are stored in: this one, or the one it is stored as.
    pub fn storage(&'static self) -> &'static Resource {
        match self.stored_as {
            None => self,
            Some(at) => crate::find(at.group, at.version, at.plural)
                .expect("a resource is stored as another catalogue entry"),
        }
    }

    /// Storage key prefix of the stored resource: `/registry/<plural>` for the core group,
    /// `/registry/<group>/<plural>` otherwise. Objects live below it at
    /// `<prefix>/<namespace>/<name>` or `<prefix>/<name>`.
    pub fn storage_prefix(&self) -> String {
        let (group, plural) = match self.stored_as {
            Some(at) => (at.group, at.plural),
            None => (self.group, self.plural),
        };
        if group.is_empty() {
            format!("/registry/{plural}")
        } else {
            format!("/registry/{group}/{plural}")
        }
    }
}
