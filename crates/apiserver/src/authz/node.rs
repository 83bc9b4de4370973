//! The Node authorizer (upstream's `--authorization-mode=Node`). A node (`system:node:<name>`
//! in `system:nodes`) may read a Secret, ConfigMap, PersistentVolumeClaim, PersistentVolume or
//! ResourceClaim, get a ServiceAccount or create its token, only when a pod bound to it uses
//! that object: directly, a PV through the claim it is bound to, a Secret through such a PV.
//! Secrets and ConfigMaps may also be listed and watched one at a time (`metadata.name=<name>`).
//! Everything else a node asks is left to the node rules.
//!
//! The relationships are indexed by object, then node. They follow the pods' and persistent
//! volumes' watch caches: a request that finds a cache moved applies the events since (or
//! re-reads the cache when its history no longer reaches back), so a decision never touches
//! the store, and a busy cluster costs work per change, not per pod per request.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use r8s_store::{EventKind, Revision};
use serde_json::Value;

use super::{Attributes, User};
use crate::cache::{CachedObject, ResourceCache, Start, WatchCache};
use crate::status::ApiError;

const NODE_USER_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The node a user is, as upstream's node identifier reads it: `system:node:<name>` in
/// `system:nodes`. The name may be empty, which no node is.
pub fn node_of(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

/// The Node authorizer's answer about a node's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// No opinion, for this reason; later authorizers (RBAC) may still allow.
    NoOpinion(String),
    /// Not a resource the graph guards: the node rules decide.
    NodeRules,
}

/// What a pod can use, as the graph's vertices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
    ResourceClaim,
}

/// A guarded request's object: one a pod uses, or a PersistentVolume (used through its claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Used(Kind),
    PersistentVolume,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Object {
    kind: Kind,
    namespace: String,
    name: String,
}

/// Upstream's Node authorizer decision for `node`'s `request`; `related` answers whether a
/// pod bound to the node uses an object (`target` in a namespace, by name).
fn decide(
    node: &str,
    user: &str,
    request: &Attributes,
    related: impl FnOnce(Target, &str, &str) -> bool,
) -> Verdict {
    let no = |reason: &str| Verdict::NoOpinion(reason.to_owned());
    if node.is_empty() {
        return Verdict::NoOpinion(format!("unknown node for user {user:?}"));
    }
    if !request.resource_request {
        return Verdict::NodeRules;
    }
    let target = match (request.api_group.as_str(), request.resource.as_str()) {
        ("", "secrets") => Target::Used(Kind::Secret),
        ("", "configmaps") => Target::Used(Kind::ConfigMap),
        ("", "persistentvolumeclaims") => Target::Used(Kind::PersistentVolumeClaim),
        ("", "serviceaccounts") => Target::Used(Kind::ServiceAccount),
        ("resource.k8s.io", "resourceclaims") => Target::Used(Kind::ResourceClaim),
        ("", "persistentvolumes") => Target::PersistentVolume,
        _ => return Verdict::NodeRules,
    };
    let verb = request.verb.as_str();
    let subresource = request.subresource.as_str();
    // Every branch that passes its verb checks ends in the graph.
    let check = move || {
        if request.name.is_empty() {
            return no("No Object name found");
        }
        if related(target, &request.namespace, &request.name) {
            Verdict::Allow
        } else {
            Verdict::NoOpinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    };
    match target {
        Target::Used(Kind::Secret | Kind::ConfigMap) => {
            if !matches!(verb, "get" | "list" | "watch") {
                return no("can only read resources of this type");
            }
            if !subresource.is_empty() {
                return no("cannot read subresource");
            }
            if request.namespace.is_empty() {
                return no("can only read namespaced object of this type");
            }
            check()
        }
        Target::Used(Kind::PersistentVolumeClaim) if subresource == "status" => {
            // A node expanding a volume's filesystem reports it in its claim's status.
            if !matches!(verb, "update" | "patch") {
                return no("can only get/update/patch this type");
            }
            check()
        }
        Target::Used(Kind::ServiceAccount) => {
            // The kubelet gets its pods' accounts for image credential providers.
            if verb == "get" && subresource.is_empty() {
                if request.namespace.is_empty() {
                    return no("can only read namespaced object of this type");
                }
                return check();
            }
            if verb != "create" || request.name.is_empty() {
                return no("can only create tokens for individual service accounts");
            }
            if subresource != "token" {
                return no("can only create token subresource of serviceaccount");
            }
            check()
        }
        _ => {
            if verb != "get" {
                return no("can only get individual resources of this type");
            }
            if !subresource.is_empty() {
                return no("cannot get subresource");
            }
            check()
        }
    }
}

/// The relationships, and the cache revisions they reflect.
#[derive(Default)]
struct Graph {
    pods: PodIndex,
    volumes: VolumeIndex,
}

impl Graph {
    fn related(&self, node: &str, target: Target, namespace: &str, name: &str) -> bool {
        match target {
            Target::PersistentVolume => self.volume_related(node, name),
            Target::Used(Kind::Secret) => {
                self.pods.uses(node, Kind::Secret, namespace, name)
                    || self.volume_secret_related(node, namespace, name)
            }
            Target::Used(kind) => self.pods.uses(node, kind, namespace, name),
        }
    }

    /// Whether a volume bound to a claim a pod on the node uses names the secret.
    fn volume_secret_related(&self, node: &str, namespace: &str, name: &str) -> bool {
        let secret = (namespace.to_owned(), name.to_owned());
        let volumes = self.volumes.by_secret.get(&secret);
        volumes.is_some_and(|v| v.iter().any(|pv| self.volume_related(node, pv)))
    }

    fn volume_related(&self, node: &str, volume: &str) -> bool {
        self.volumes.bound.get(volume).is_some_and(|v| {
            let (namespace, name) = &v.claim;
            self.pods
                .uses(node, Kind::PersistentVolumeClaim, namespace, name)
        })
    }
}

/// A part of the graph fed by one watch cache.
trait Source: Default {
    fn at(&mut self) -> &mut Option<Revision>;
    fn put(&mut self, object: &CachedObject);
    fn delete(&mut self, object: &CachedObject);
}

/// Brings `part` up to `cache`: the events after its revision while the cache's history still
/// holds them, else everything again from the cache's objects.
fn catch_up<S: Source>(part: &mut S, source: &Followed) {
    let (cache, prefix) = (&source.cache, source.prefix.as_str());
    if *part.at() == Some(cache.last_change()) {
        return;
    }
    let resumed = part
        .at()
        .and_then(|at| cache.subscribe(Start::After(at), prefix).ok());
    let revision = match resumed {
        Some(since) => {
            for event in &since.replay {
                match event.kind {
                    EventKind::Put => part.put(&event.object),
                    EventKind::Delete => part.delete(&event.object),
                }
            }
            since.revision
        }
        None => {
            let Ok(all) = cache.subscribe(Start::Snapshot, prefix) else {
                return;
            };
            *part = S::default();
            for object in &all.initial {
                part.put(object);
            }
            all.revision
        }
    };
    *part.at() = Some(revision);
}

fn name_of(object: &CachedObject) -> (String, String) {
    let meta = &object.selectable["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&meta["namespace"]), text(&meta["name"]))
}

/// Bound pods and what they let their nodes use.
#[derive(Default)]
struct PodIndex {
    at: Option<Revision>,
    /// By namespace and name: the pod's node and the objects it uses.
    bound: HashMap<(String, String), (String, Vec<Object>)>,
    /// Object → node → how many of the node's pods use it.
    used: HashMap<Object, HashMap<String, u32>>,
}

impl PodIndex {
    fn uses(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        let object = Object {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.used
            .get(&object)
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    fn forget(&mut self, pod: &(String, String)) {
        let Some((node, objects)) = self.bound.remove(pod) else {
            return;
        };
        for object in objects {
            let Some(nodes) = self.used.get_mut(&object) else {
                continue;
            };
            if let Some(count) = nodes.get_mut(&node) {
                *count -= 1;
                if *count == 0 {
                    nodes.remove(&node);
                }
            }
            if nodes.is_empty() {
                self.used.remove(&object);
            }
        }
    }

    fn add(&mut self, pod: &Value) {
        let meta = &pod["metadata"];
        let key = (
            meta["namespace"].as_str().unwrap_or_default().to_owned(),
            meta["name"].as_str().unwrap_or_default().to_owned(),
        );
        self.forget(&key);
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        // A node makes its mirror pods itself: they must not grant it anything.
        if node.is_empty() || !meta["annotations"][MIRROR_ANNOTATION].is_null() {
            return;
        }
        let objects: Vec<Object> = pod_uses(pod).into_iter().collect();
        for object in &objects {
            *self
                .used
                .entry(object.clone())
                .or_default()
                .entry(node.to_owned())
                .or_default() += 1;
        }
        self.bound.insert(key, (node.to_owned(), objects));
    }
}

impl Source for PodIndex {
    fn at(&mut self) -> &mut Option<Revision> {
        &mut self.at
    }

    fn put(&mut self, object: &CachedObject) {
        // Unbound pods grant nothing: only bound ones are parsed.
        let bound = object.selectable["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        if bound {
            self.add(&object.value());
        } else {
            self.forget(&name_of(object));
        }
    }

    fn delete(&mut self, object: &CachedObject) {
        self.forget(&name_of(object));
    }
}

/// Every object a pod uses (upstream's pod secret, configmap, claim and account visitors).
fn pod_uses(pod: &Value) -> BTreeSet<Object> {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let spec = &pod["spec"];
    let mut uses = BTreeSet::new();
    let mut add = |kind: Kind, name: Option<&str>| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            uses.insert(Object {
                kind,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
    };
    use Kind::*;
    add(ServiceAccount, spec["serviceAccountName"].as_str());
    for reference in items(&spec["imagePullSecrets"]) {
        add(Secret, reference["name"].as_str());
    }
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|list| items(&spec[list]));
    for container in containers {
        for from in items(&container["envFrom"]) {
            add(Secret, from["secretRef"]["name"].as_str());
            add(ConfigMap, from["configMapRef"]["name"].as_str());
        }
        for env in items(&container["env"]) {
            let from = &env["valueFrom"];
            add(Secret, from["secretKeyRef"]["name"].as_str());
            add(ConfigMap, from["configMapKeyRef"]["name"].as_str());
        }
    }
    for volume in items(&spec["volumes"]) {
        add(Secret, volume["secret"]["secretName"].as_str());
        add(ConfigMap, volume["configMap"]["name"].as_str());
        for source in items(&volume["projected"]["sources"]) {
            add(Secret, source["secret"]["name"].as_str());
            add(ConfigMap, source["configMap"]["name"].as_str());
        }
        add(Secret, volume["azureFile"]["secretName"].as_str());
        for plugin in [
            "cephfs",
            "cinder",
            "flexVolume",
            "rbd",
            "scaleIO",
            "iscsi",
            "storageos",
        ] {
            add(Secret, volume[plugin]["secretRef"]["name"].as_str());
        }
        add(
            Secret,
            volume["csi"]["nodePublishSecretRef"]["name"].as_str(),
        );
        add(
            PersistentVolumeClaim,
            volume["persistentVolumeClaim"]["claimName"].as_str(),
        );
        // A generic ephemeral volume's claim is named after the pod and the volume.
        if volume["ephemeral"].is_object() {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let volume_name = volume["name"].as_str().unwrap_or_default();
            add(
                PersistentVolumeClaim,
                Some(&format!("{pod_name}-{volume_name}")),
            );
        }
    }
    let status = &pod["status"];
    for claim in items(&spec["resourceClaims"]) {
        // A claim made from a template is named in the pod's status once it exists.
        let name = claim["resourceClaimName"].as_str().or_else(|| {
            items(&status["resourceClaimStatuses"])
                .find(|s| s["name"] == claim["name"])
                .and_then(|s| s["resourceClaimName"].as_str())
        });
        add(ResourceClaim, name);
    }
    add(
        ResourceClaim,
        status["extendedResourceClaimStatus"]["resourceClaimName"].as_str(),
    );
    uses
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list.as_array().into_iter().flatten()
}

/// PersistentVolumes bound to a claim, and the Secrets a node needs to mount them.
#[derive(Default)]
struct VolumeIndex {
    at: Option<Revision>,
    /// By name: the claim's namespace and name, and the secrets it names for nodes.
    bound: HashMap<String, BoundVolume>,
    /// Secret (namespace, name) → the bound volumes naming it.
    by_secret: HashMap<(String, String), BTreeSet<String>>,
}

struct BoundVolume {
    claim: (String, String),
    secrets: Vec<(String, String)>,
}

impl VolumeIndex {
    fn forget(&mut self, name: &str) {
        let Some(volume) = self.bound.remove(name) else {
            return;
        };
        for secret in volume.secrets {
            if let Some(volumes) = self.by_secret.get_mut(&secret) {
                volumes.remove(name);
                if volumes.is_empty() {
                    self.by_secret.remove(&secret);
                }
            }
        }
    }

    fn add(&mut self, pv: &Value) {
        let name = pv["metadata"]["name"].as_str().unwrap_or_default();
        self.forget(name);
        let claim = &pv["spec"]["claimRef"];
        let (Some(namespace), Some(claim_name)) =
            (claim["namespace"].as_str(), claim["name"].as_str())
        else {
            return;
        };
        let secrets = volume_secrets(&pv["spec"], namespace);
        for secret in &secrets {
            self.by_secret
                .entry(secret.clone())
                .or_default()
                .insert(name.to_owned());
        }
        self.bound.insert(
            name.to_owned(),
            BoundVolume {
                claim: (namespace.to_owned(), claim_name.to_owned()),
                secrets,
            },
        );
    }
}

impl Source for VolumeIndex {
    fn at(&mut self) -> &mut Option<Revision> {
        &mut self.at
    }

    fn put(&mut self, object: &CachedObject) {
        self.add(&object.value());
    }

    fn delete(&mut self, object: &CachedObject) {
        self.forget(&name_of(object).1);
    }
}

/// The secrets a PV's spec names that a node reads to mount it (upstream's kubelet-visible
/// ones: not the CSI controller's). Plugins that predate secret namespaces mean the claim's.
fn volume_secrets(spec: &Value, claim_namespace: &str) -> Vec<(String, String)> {
    let mut secrets = Vec::new();
    let mut add = |namespace: &str, name: Option<&str>| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            secrets.push((namespace.to_owned(), name.to_owned()));
        }
    };
    let or_claims = |namespace: &Value| {
        namespace
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(claim_namespace)
            .to_owned()
    };
    let azure = &spec["azureFile"];
    add(
        &or_claims(&azure["secretNamespace"]),
        azure["secretName"].as_str(),
    );
    for plugin in ["cephfs", "flexVolume", "rbd", "scaleIO", "iscsi"] {
        let secret = &spec[plugin]["secretRef"];
        add(&or_claims(&secret["namespace"]), secret["name"].as_str());
    }
    let csi = &spec["csi"];
    let named = [
        &spec["cinder"]["secretRef"],
        &spec["storageos"]["secretRef"],
        &csi["nodePublishSecretRef"],
        &csi["nodeStageSecretRef"],
        &csi["nodeExpandSecretRef"],
    ];
    for secret in named {
        add(
            secret["namespace"].as_str().unwrap_or_default(),
            secret["name"].as_str(),
        );
    }
    secrets
}

/// A watch cache the graph follows, and the storage prefix of its objects.
struct Followed {
    cache: Arc<ResourceCache>,
    prefix: String,
}

impl Followed {
    async fn core(cache: &WatchCache, plural: &str) -> Result<Self, ApiError> {
        let resource = r8s_api::find("", "v1", plural).expect("the catalogue has core resources");
        Ok(Self {
            cache: cache.resource(resource).await?,
            prefix: format!("{}/", resource.storage_prefix()),
        })
    }

    fn moved_from(&self, at: Option<Revision>) -> bool {
        at != Some(self.cache.last_change())
    }
}

/// The Node authorizer over the API server's watch caches.
pub struct NodeAuthorizer {
    pods: Followed,
    volumes: Followed,
    graph: RwLock<Graph>,
}

impl NodeAuthorizer {
    pub async fn new(cache: &WatchCache) -> Result<Self, ApiError> {
        Ok(Self {
            pods: Followed::core(cache, "pods").await?,
            volumes: Followed::core(cache, "persistentvolumes").await?,
            graph: RwLock::new(Graph::default()),
        })
    }

    /// The decision for a node's request; None when the user is not a node.
    pub fn authorize(&self, user: &User, request: &Attributes) -> Option<Verdict> {
        let node = node_of(user)?;
        Some(decide(
            node,
            &user.name,
            request,
            |target, namespace, name| {
                self.graph_now(|graph| graph.related(node, target, namespace, name))
            },
        ))
    }

    /// Runs `read` over the graph as of the caches' current state.
    fn graph_now<T>(&self, read: impl FnOnce(&Graph) -> T) -> T {
        {
            let graph = self.graph.read().expect("node graph lock poisoned");
            if !self.pods.moved_from(graph.pods.at) && !self.volumes.moved_from(graph.volumes.at) {
                return read(&graph);
            }
        }
        let mut graph = self.graph.write().expect("node graph lock poisoned");
        catch_up(&mut graph.pods, &self.pods);
        catch_up(&mut graph.volumes, &self.volumes);
        read(&graph)
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
