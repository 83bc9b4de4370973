//! The resources the garbage collector watches (upstream's `GetDeletableResources`): every
//! resource of the static catalogue, plus those the API server serves from CRDs, found with
//! aggregated discovery. Each keeps its index for the collector's lifetime, so graph nodes
//! name their resource by index; a resource no longer served keeps its slot, unwatched, and
//! takes it back if it is served again.

use kube::client::APIGroupDiscoveryList;
use kube::discovery::ApiResource;

/// The verbs the collector needs of a discovered resource, as upstream requires them.
const NEEDED_VERBS: [&str; 3] = ["list", "watch", "delete"];

/// One resource the collector can watch, read and delete.
#[derive(Clone, Debug, PartialEq)]
pub struct Watched {
    pub api: ApiResource,
    pub namespaced: bool,
    /// Served now; `false` for a discovered resource whose CRD is gone.
    pub served: bool,
}

impl Watched {
    fn of(r: &r8s_api::Resource) -> Self {
        Self {
            api: ApiResource {
                group: r.group.to_owned(),
                version: r.version.to_owned(),
                api_version: r.api_version(),
                kind: r.kind.to_owned(),
                plural: r.plural.to_owned(),
            },
            namespaced: r.namespaced,
            served: true,
        }
    }
}

/// Every resource of the catalogue that holds objects, once per storage location.
pub fn static_resources() -> Vec<&'static r8s_api::Resource> {
    let mut seen = std::collections::HashSet::new();
    r8s_api::catalogue()
        .iter()
        .filter(|r| {
            ["list", "watch", "delete", "patch"]
                .iter()
                .all(|v| r.verbs.contains(v))
        })
        .filter(|r| seen.insert(r.storage_prefix()))
        .collect()
}

/// The resources `/apis` serves beyond the static catalogue that the collector can watch and
/// delete, each once, at its group's preferred version (the first one listed) when it is
/// served there, as upstream's `ServerPreferredResources`.
pub fn discovered(list: &APIGroupDiscoveryList) -> Vec<Watched> {
    let mut found: Vec<Watched> = Vec::new();
    for group in &list.items {
        let name = group
            .metadata
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .unwrap_or_default();
        for version in &group.versions {
            let Some(version_name) = version.version.as_deref() else {
                continue;
            };
            for resource in &version.resources {
                let Some(plural) = resource.resource.as_deref() else {
                    continue;
                };
                let Some(kind) = resource.response_kind.as_ref().and_then(|k| k.kind.clone())
                else {
                    continue;
                };
                let builtin = r8s_api::catalogue()
                    .iter()
                    .any(|r| r.group == name && r.plural == plural);
                let capable = NEEDED_VERBS
                    .iter()
                    .all(|v| resource.verbs.iter().any(|have| have == v));
                let seen = found
                    .iter()
                    .any(|w| w.api.group == name && w.api.plural == plural);
                if builtin || !capable || seen {
                    continue;
                }
                found.push(Watched {
                    api: ApiResource {
                        group: name.to_owned(),
                        version: version_name.to_owned(),
                        api_version: format!("{name}/{version_name}"),
                        kind,
                        plural: plural.to_owned(),
                    },
                    namespaced: resource.scope.as_deref() == Some("Namespaced"),
                    served: true,
                });
            }
        }
    }
    found
}

/// The watched resources by index: the static ones first, then the discovered ones in the
/// order they were first seen.
pub struct Resources {
    list: Vec<Watched>,
    builtin: usize,
    /// Bumped by every update, so the informers are matched to the list only when it changed.
    generation: u64,
}

impl Default for Resources {
    fn default() -> Self {
        let list: Vec<Watched> = static_resources().into_iter().map(Watched::of).collect();
        Self {
            builtin: list.len(),
            list,
            generation: 0,
        }
    }
}

impl Resources {
    pub fn get(&self, index: usize) -> &Watched {
        &self.list[index]
    }

    pub fn served(&self) -> impl Iterator<Item = (usize, &Watched)> {
        self.list.iter().enumerate().filter(|(_, w)| w.served)
    }

    pub fn index_of(&self, group: &str, plural: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|w| w.api.group == group && w.api.plural == plural)
    }

    /// How many times the list was updated.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes the latest discovered set: new resources get new indices, known ones keep theirs
    /// (at the newly preferred version), and those no longer served are marked so.
    pub fn update(&mut self, discovered: Vec<Watched>) {
        self.generation += 1;
        for w in &mut self.list[self.builtin..] {
            w.served = false;
        }
        for found in discovered {
            match self.index_of(&found.api.group, &found.api.plural) {
                Some(i) if i < self.builtin => {}
                Some(i) => self.list[i] = found,
                None => self.list.push(found),
            }
        }
    }

    /// Where an owner reference's kind is read from: the catalogue's resource of that group and
    /// kind (at the reference's version when served there), else a served discovered one.
    pub fn owner_resource(&self, group: &str, version: &str, kind: &str) -> Option<Watched> {
        let candidates: Vec<&r8s_api::Resource> = r8s_api::catalogue()
            .iter()
            .filter(|r| r.group == group && r.kind == kind)
            .collect();
        if let Some(r) = candidates
            .iter()
            .find(|r| r.version == version)
            .or(candidates.first())
        {
            return Some(Watched::of(r));
        }
        self.list[self.builtin..]
            .iter()
            .find(|w| w.served && w.api.group == group && w.api.kind == kind)
            .cloned()
    }
}
