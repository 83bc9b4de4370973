//! NodePorts: a pod asking for a host port fits only where no placed pod holds it.

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, Plugin, PreFilter, Rejection};

pub struct NodePorts;

const NAME: &str = "NodePorts";

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn has_filter(&self) -> bool {
        true
    }

    fn pre_filter(
        &self,
        pod: &PodInfo,
        _: &Cache,
        _: &mut CycleState,
    ) -> Result<PreFilter, Rejection> {
        Ok(if pod.host_ports.is_empty() {
            PreFilter::Skip
        } else {
            PreFilter::Run
        })
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Rejection> {
        let conflict = pod
            .host_ports
            .iter()
            .any(|wanted| node.used_ports.iter().any(|used| used.conflicts(wanted)));
        if conflict {
            Err(Rejection::new(
                NAME,
                Code::Unschedulable,
                "node(s) didn't have free ports for the requested pod ports",
            ))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, pod};
    use k8s_openapi::api::core::v1::ContainerPort;
    use std::sync::Arc;

    fn with_port(name: &str, ip: Option<&str>, port: i32) -> PodInfo {
        let mut p = pod(name, "", "");
        p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
            container_port: 80,
            host_port: Some(port),
            host_ip: ip.map(str::to_owned),
            ..Default::default()
        }]);
        PodInfo::new(p)
    }

    #[test]
    fn a_taken_host_port_rejects_the_node_on_any_address() {
        let mut n = NodeInfo::new(node("n1", "1", "1Gi", "10"));
        n.add_pod(Arc::new(with_port("a", Some("10.0.0.1"), 8080)));
        let state = CycleState::default();
        assert!(
            NodePorts
                .filter(&with_port("b", None, 8080), &n, &state)
                .is_err()
        );
        assert!(
            NodePorts
                .filter(&with_port("c", Some("10.0.0.2"), 8080), &n, &state)
                .is_ok()
        );
        assert!(
            NodePorts
                .filter(&with_port("d", None, 9090), &n, &state)
                .is_ok()
        );
    }
}
