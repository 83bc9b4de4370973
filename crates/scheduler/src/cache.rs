//! The scheduler's view of the cluster: one `NodeInfo` per node with the pods bound (or assumed)
//! to it and their summed requests, kept up to date incrementally from informer events so a
//! scheduling cycle never recomputes it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint};

use crate::labels::{self, Labels, Operator, Requirement, Selector};
use crate::resources::{PodRequests, Resources};

/// A host port a container asks for: (host IP, protocol, port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports collide when protocol and port match and either listens on every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod affinity term compiled against the pod that declares it.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub selector: Selector,
    pub namespaces: Vec<String>,
    pub namespace_selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn compile(term: &PodAffinityTerm, owner_namespace: &str, owner_labels: &Labels) -> Self {
        let mut selector = Selector::from_label_selector(term.label_selector.as_ref());
        // matchLabelKeys/mismatchLabelKeys pin the selector to the declaring pod's own values.
        for key in term.match_label_keys.iter().flatten() {
            if let Some(value) = owner_labels.get(key) {
                selector.require(Requirement {
                    key: key.clone(),
                    operator: Operator::In,
                    values: vec![value.clone()],
                });
            }
        }
        for key in term.mismatch_label_keys.iter().flatten() {
            if let Some(value) = owner_labels.get(key) {
                selector.require(Requirement {
                    key: key.clone(),
                    operator: Operator::NotIn,
                    values: vec![value.clone()],
                });
            }
        }
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(owner_namespace.to_owned());
        }
        AffinityTerm {
            selector,
            namespaces,
            namespace_selector: Selector::from_label_selector(term.namespace_selector.as_ref()),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo, namespaces: &HashMap<String, Labels>) -> bool {
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.is_empty()
            || (!self.namespace_selector.nothing
                && namespaces
                    .get(&pod.namespace)
                    .is_some_and(|labels| self.namespace_selector.matches(labels)));
        in_namespace && self.selector.matches_with(&pod.labels, &pod.label_hashes)
    }
}

/// What the scheduler needs of a pod, computed once per pod version.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// The labels' [`labels::pair_hashes`], for quick selector tests.
    pub label_hashes: Vec<u64>,
    pub priority: i32,
    pub requests: PodRequests,
    pub host_ports: Vec<HostPort>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
}

impl PodInfo {
    /// From the pod as the shared informer holds it (no copy is made).
    pub fn new(pod: impl Into<Arc<Pod>>) -> Self {
        let pod: Arc<Pod> = pod.into();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let default_spec = k8s_openapi::api::core::v1::PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        let requests = PodRequests::of(spec);
        let mut host_ports = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for container in spec.containers.iter().chain(sidecars) {
            for port in container.ports.iter().flatten() {
                if let Some(host_port) = port.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        ip: port
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".to_owned()),
                        protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                        port: host_port,
                    });
                }
            }
        }
        let affinity = spec.affinity.as_ref();
        let compile = |t: &PodAffinityTerm| AffinityTerm::compile(t, &namespace, &labels);
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required_affinity = pod_affinity
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| terms.iter().map(compile).collect())
            .unwrap_or_default();
        let required_anti_affinity = pod_anti
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| terms.iter().map(compile).collect())
            .unwrap_or_default();
        let preferred_affinity = pod_affinity
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| {
                terms
                    .iter()
                    .map(|w| (i64::from(w.weight), compile(&w.pod_affinity_term)))
                    .collect()
            })
            .unwrap_or_default();
        let preferred_anti_affinity = pod_anti
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| {
                terms
                    .iter()
                    .map(|w| (i64::from(w.weight), compile(&w.pod_affinity_term)))
                    .collect()
            })
            .unwrap_or_default();
        let priority = spec.priority.unwrap_or(0);
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            priority,
            namespace,
            label_hashes: labels::pair_hashes(&labels),
            labels,
            requests,
            host_ports,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            pod,
        }
    }

    pub fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> =
            std::sync::OnceLock::new();
        self.pod
            .spec
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One node and everything placed on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Pods here with any (anti-)affinity term, so affinity checks skip nodes without them.
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
    /// Image name (normalized) → size in bytes, from `status.images`.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: impl Into<Arc<Node>>) -> Self {
        let node: Arc<Node> = node.into();
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let allocatable = status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .cloned()
            .unwrap_or_default();
        let allowed_pods = allocatable
            .get("pods")
            .map(crate::resources::value)
            .unwrap_or(0);
        let mut images = HashMap::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                images.insert(
                    normalized_image_name(name).into_owned(),
                    image.size_bytes.unwrap_or(0),
                );
            }
        }
        let spec = node.spec.as_ref();
        NodeInfo {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: Resources::from_list(&allocatable),
            allowed_pods,
            images,
            name,
            node,
            requested: Resources::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            used_ports: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
        }
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let index = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(index);
        self.requested.sub(&pod.requests.requests);
        self.non_zero_milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pod)
    }
}

/// Upstream's image name normalization: a name without tag or digest means `:latest`.
pub fn normalized_image_name(name: &str) -> Cow<'_, str> {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last.contains(':') {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{name}:latest"))
    }
}

struct PlacedPod {
    node: String,
    assumed: bool,
}

/// Every node and every placed pod.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    placed: HashMap<String, PlacedPod>,
    /// Pods bound to a node the node informer has not shown yet.
    waiting_for_node: HashMap<String, Vec<Arc<PodInfo>>>,
    /// Image → how many nodes have it, for ImageLocality's spread scaling.
    pub image_nodes: HashMap<String, usize>,
    /// Namespace labels, for affinity terms with a namespaceSelector.
    pub namespaces: HashMap<String, Labels>,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
    /// Where the next cycle starts looking, so nodes share the load of being checked first.
    pub next_start_node: usize,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn pods_with_affinity(&self) -> usize {
        self.pods_with_affinity
    }

    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.pods_with_required_anti_affinity
    }

    /// Adds or updates a node; answers whether anything scheduling reads has changed (so pods
    /// that failed may now fit).
    pub fn upsert_node(&mut self, node: impl Into<Arc<Node>>) -> bool {
        let mut info = NodeInfo::new(node);
        let name = info.name.clone();
        match self.index.get(&name) {
            Some(&i) => {
                let old = &mut self.nodes[i];
                let changed = old.labels != info.labels
                    || old.taints != info.taints
                    || old.unschedulable != info.unschedulable
                    || old.allocatable != info.allocatable
                    || old.allowed_pods != info.allowed_pods;
                let images_changed = old.images.len() != info.images.len()
                    || info.images.keys().any(|k| !old.images.contains_key(k));
                if changed || images_changed {
                    self.count_images(i, -1);
                    let old = &mut self.nodes[i];
                    info.pods = std::mem::take(&mut old.pods);
                    info.requested = old.requested.clone();
                    info.non_zero_milli_cpu = old.non_zero_milli_cpu;
                    info.non_zero_memory = old.non_zero_memory;
                    info.used_ports = std::mem::take(&mut old.used_ports);
                    info.pods_with_affinity = old.pods_with_affinity;
                    info.pods_with_required_anti_affinity = old.pods_with_required_anti_affinity;
                    self.nodes[i] = info;
                    self.count_images(i, 1);
                } else {
                    old.node = info.node;
                }
                changed
            }
            None => {
                for pod in self.waiting_for_node.remove(&name).unwrap_or_default() {
                    info.add_pod(pod);
                }
                self.index.insert(name, self.nodes.len());
                self.nodes.push(info);
                self.count_images(self.nodes.len() - 1, 1);
                true
            }
        }
    }

    fn count_images(&mut self, node: usize, delta: isize) {
        for image in self.nodes[node].images.keys() {
            let count = self.image_nodes.entry(image.clone()).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                self.image_nodes.remove(image);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.count_images(i, -1);
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        // Its pods stay placed until they are deleted, as upstream's cache keeps them.
        if !info.pods.is_empty() {
            self.waiting_for_node.insert(info.name, info.pods);
        }
    }

    /// Records a pod the informer shows bound to `node`; confirms it if it was assumed.
    pub fn add_bound_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        if let Some(placed) = self.placed.get(&pod.uid)
            && placed.node == node
            && placed.assumed
        {
            // Keep the assumed copy's accounting, take the newer object.
            let uid = pod.uid.clone();
            self.remove_pod(&uid);
        } else if self.placed.contains_key(&pod.uid) {
            let uid = pod.uid.clone();
            self.remove_pod(&uid);
        }
        self.place(pod, node, false);
    }

    /// Counts a pod on `node` before its binding is written, so the next decision sees it.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        debug_assert!(!self.placed.contains_key(&pod.uid), "a pod is assumed once");
        self.place(pod, node, true);
    }

    /// Undoes `assume` after a failed binding (unless the informer has confirmed the pod).
    pub fn forget(&mut self, uid: &str) {
        if self.placed.get(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
        }
    }

    pub fn is_placed(&self, uid: &str) -> bool {
        self.placed.contains_key(uid)
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.placed.insert(
            pod.uid.clone(),
            PlacedPod {
                node: node.to_owned(),
                assumed,
            },
        );
        match self.index.get(node) {
            Some(&i) => self.nodes[i].add_pod(pod),
            None => self
                .waiting_for_node
                .entry(node.to_owned())
                .or_default()
                .push(pod),
        }
    }

    /// Removes a placed pod (deleted, finished, or a failed assumption); returns it.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let placed = self.placed.remove(uid)?;
        let pod = match self.index.get(&placed.node) {
            Some(&i) => self.nodes[i].remove_pod(uid),
            None => {
                let waiting = self.waiting_for_node.get_mut(&placed.node)?;
                let i = waiting.iter().position(|p| p.uid == uid)?;
                let pod = waiting.swap_remove(i);
                if waiting.is_empty() {
                    self.waiting_for_node.remove(&placed.node);
                }
                Some(pod)
            }
        }?;
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pod)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for plugin tests: nodes and pods as values, no server.

    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        Container, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Node {
        let list = BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(memory.into())),
            ("pods".to_owned(), Quantity(pods.into())),
        ]);
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/hostname".to_owned(),
                    name.to_owned(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(list.clone()),
                capacity: Some(list),
                ..Default::default()
            }),
        }
    }

    pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_owned(), Quantity(cpu.into()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_owned(), Quantity(memory.into()));
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("nginx".into()),
                    resources: Some(ResourceRequirements {
                        requests: Some(requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn labelled(mut pod: Pod, pairs: &[(&str, &str)]) -> Pod {
        pod.metadata.labels = Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        pod
    }

    pub fn node_labelled(mut node: Node, pairs: &[(&str, &str)]) -> Node {
        let labels = node.metadata.labels.get_or_insert_default();
        for (k, v) in pairs {
            labels.insert(k.to_string(), v.to_string());
        }
        node
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn requests_follow_pods_in_and_out_and_assumptions_are_confirmed_once() {
        let mut cache = Cache::default();
        cache.upsert_node(node("n1", "2", "4Gi", "110"));
        let web = Arc::new(PodInfo::new(pod("web", "500m", "1Gi")));
        cache.assume(web.clone(), "n1");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 500);
        cache.add_bound_pod(web, "n1");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 500);
        assert_eq!(cache.node("n1").unwrap().pods.len(), 1);
        cache.remove_pod("uid-web");
        assert_eq!(cache.node("n1").unwrap().requested, Resources::default());
    }

    #[test]
    fn pods_bound_before_their_node_appears_count_once_it_does() {
        let mut cache = Cache::default();
        cache.add_bound_pod(Arc::new(PodInfo::new(pod("web", "1", ""))), "late");
        cache.upsert_node(node("late", "2", "4Gi", "110"));
        assert_eq!(cache.node("late").unwrap().requested.milli_cpu, 1000);
    }

    #[test]
    fn node_status_heartbeats_are_not_changes() {
        let mut cache = Cache::default();
        assert!(cache.upsert_node(node("n1", "2", "4Gi", "110")));
        assert!(!cache.upsert_node(node("n1", "2", "4Gi", "110")));
        assert!(cache.upsert_node(node("n1", "4", "4Gi", "110")));
    }

    #[test]
    fn untagged_images_mean_latest() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(
            normalized_image_name("registry:5000/nginx"),
            "registry:5000/nginx:latest"
        );
        assert_eq!(normalized_image_name("nginx:1.27"), "nginx:1.27");
    }
}
