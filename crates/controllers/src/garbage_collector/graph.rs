//! The ownership graph the garbage collector keeps (upstream's `GraphBuilder`): every object's
//! owner references, indexed both ways, and what should happen to an object given its owners.
//! Pure data and decisions; the collector's loop feeds it from informers and acts on it.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// What the graph knows of one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index of its resource in the collector's `Resources`, stable while the collector runs.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Node {
    pub fn from_meta(resource: usize, meta: &ObjectMeta) -> Option<Self> {
        Some(Self {
            resource,
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            resource_version: meta.resource_version.clone(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        })
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: waiting for its blocking dependents to go.
    pub fn waiting_for_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn dependents(&self, uid: &str) -> impl Iterator<Item = &Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
    }

    /// Records an object; returns the uids whose decision may have changed.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let mut touched = self.remove(&node.uid);
        for owner in &node.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(node.uid.clone());
            touched.push(owner.uid.clone());
        }
        touched.push(node.uid.clone());
        touched.extend(self.dependents(&node.uid).map(|d| d.uid.clone()));
        self.nodes.insert(node.uid.clone(), node);
        touched.sort();
        touched.dedup();
        touched
    }

    /// Forgets an object; returns the uids whose decision may have changed (its owners, which
    /// may have been waiting for it, and its dependents, which may now be orphans).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut touched: Vec<String> = self.dependents(uid).map(|d| d.uid.clone()).collect();
        for owner in &node.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
            touched.push(owner.uid.clone());
        }
        touched
    }

    /// Uids of one resource's objects, for forgetting those a relist no longer shows.
    pub fn uids_of(&self, resource: usize) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.resource == resource)
            .map(|n| n.uid.clone())
            .collect()
    }
}

/// What an owner reference points at, as far as the collector can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// It exists and is not waiting for its dependents.
    Solid,
    /// It is gone, or a different object now has its name.
    Dangling,
    /// It is being deleted in the foreground.
    Waiting,
    /// The graph has no object with that uid: ask the API server before believing it gone.
    Unknown,
}

pub fn owner_state(graph: &Graph, reference: &OwnerReference) -> OwnerState {
    match graph.get(&reference.uid) {
        Some(owner) if owner.waiting_for_dependents() => OwnerState::Waiting,
        Some(_) => OwnerState::Solid,
        None => OwnerState::Unknown,
    }
}

/// What the collector does with one object.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// An orphaning owner: drop its reference from these dependents, then its finalizer.
    Orphan {
        dependents: Vec<String>,
    },
    /// A foreground owner whose blocking dependents are all gone: remove its finalizer.
    FinishForeground,
    /// Drop these owner references (owners gone or going) and keep the object.
    RemoveReferences {
        owners: Vec<String>,
    },
    /// Delete the object: all its owners are gone or going.
    Delete {
        foreground: bool,
    },
}

/// Upstream's `attemptToDeleteItem`/`orphanDependents`, given each owner's resolved state
/// (no `Unknown` left: the caller asks the API server for those).
pub fn decide(graph: &Graph, node: &Node, owners: &[(OwnerReference, OwnerState)]) -> Step {
    if node.deleting {
        if node.has_finalizer(ORPHAN) {
            return Step::Orphan {
                dependents: graph.dependents(&node.uid).map(|d| d.uid.clone()).collect(),
            };
        }
        if node.has_finalizer(FOREGROUND) {
            let blocked = graph.dependents(&node.uid).any(|d| {
                d.owners
                    .iter()
                    .any(|r| r.uid == node.uid && r.block_owner_deletion == Some(true))
            });
            return if blocked {
                Step::Nothing
            } else {
                Step::FinishForeground
            };
        }
        return Step::Nothing;
    }
    if owners.is_empty() {
        return Step::Nothing;
    }
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    let gone: Vec<String> = owners
        .iter()
        .filter(|(_, s)| matches!(s, OwnerState::Dangling | OwnerState::Waiting))
        .map(|(r, _)| r.uid.clone())
        .collect();
    if solid {
        return if gone.is_empty() {
            Step::Nothing
        } else {
            Step::RemoveReferences { owners: gone }
        };
    }
    let waiting = owners.iter().any(|(_, s)| *s == OwnerState::Waiting);
    let has_dependents = graph.dependents(&node.uid).next().is_some();
    Step::Delete {
        foreground: (waiting && has_dependents) || node.has_finalizer(FOREGROUND),
    }
}
