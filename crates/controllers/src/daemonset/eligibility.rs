//! Which nodes a daemon pod belongs on (upstream's `NodeShouldRunDaemonPod`): the template's
//! nodeSelector and required node affinity must match, and its taints must be tolerated,
//! counting the tolerations every daemon pod gets.

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Toleration,
};
use r8s_scheduler::plugins::node_affinity::RequiredNodeAffinity;
use r8s_scheduler::plugins::taint_toleration::tolerated;

/// The tolerations upstream adds to every daemon pod, so node conditions never evict or
/// block it.
pub fn default_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let tolerate = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut list = vec![
        tolerate("node.kubernetes.io/not-ready", "NoExecute"),
        tolerate("node.kubernetes.io/unreachable", "NoExecute"),
        tolerate("node.kubernetes.io/disk-pressure", "NoSchedule"),
        tolerate("node.kubernetes.io/memory-pressure", "NoSchedule"),
        tolerate("node.kubernetes.io/pid-pressure", "NoSchedule"),
        tolerate("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        list.push(tolerate(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    list
}

/// Adds the default tolerations the spec does not already have.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let defaults = default_tolerations(spec);
    let list = spec.tolerations.get_or_insert_default();
    for toleration in defaults {
        if !list.contains(&toleration) {
            list.push(toleration);
        }
    }
}

/// Whether the template's nodeSelector and required node affinity admit the node, judged by
/// the scheduler's own NodeAffinity matching (upstream's controller uses the scheduler's too).
fn selects(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref().unwrap_or_default();
    RequiredNodeAffinity::of_spec(spec).matches_node(&labels, name)
}

/// `(should_run, should_continue_running)` for a daemon pod with `spec` on `node`: a new pod
/// needs every NoSchedule and NoExecute taint tolerated; a running one only NoExecute.
pub fn verdict(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if !selects(spec, node) {
        return (false, false);
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(default_tolerations(spec));
    let untolerated = |effect: &str| {
        node.spec
            .iter()
            .flat_map(|s| s.taints.iter().flatten())
            .filter(|t| t.effect == effect)
            .any(|t| !tolerated(&tolerations, t))
    };
    let evicting = untolerated("NoExecute");
    (!evicting && !untolerated("NoSchedule"), !evicting)
}

/// Required node affinity pinning a pod to one node by name, replacing other required terms
/// (the controller already checked them), as upstream does so the scheduler binds it.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_owned()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_default();
    let node_affinity = affinity.node_affinity.get_or_insert_default();
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(k8s_openapi::api::core::v1::NodeSelector {
            node_selector_terms: vec![term],
        });
}

/// The node a daemon pod is for: where it is bound, or where its affinity pins it.
pub fn node_of(spec: &PodSpec) -> Option<String> {
    if let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}
