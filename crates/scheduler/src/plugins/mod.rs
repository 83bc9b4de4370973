//! The default plugins, one module each, in upstream's order and with its default score weights.

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::sync::Arc;

use crate::framework::Plugin;

/// The default profile (`default-scheduler`).
pub fn default_plugins(
    spreading: Arc<pod_topology_spread::DefaultSelectors>,
) -> Vec<Arc<dyn Plugin>> {
    vec![
        Arc::new(node_unschedulable::NodeUnschedulable),
        Arc::new(node_name::NodeName),
        Arc::new(taint_toleration::TaintToleration),
        Arc::new(node_affinity::NodeAffinity),
        Arc::new(node_ports::NodePorts),
        Arc::new(node_resources_fit::NodeResourcesFit),
        Arc::new(pod_topology_spread::PodTopologySpread::new(spreading)),
        Arc::new(inter_pod_affinity::InterPodAffinity),
        Arc::new(balanced_allocation::BalancedAllocation),
        Arc::new(image_locality::ImageLocality),
    ]
}
