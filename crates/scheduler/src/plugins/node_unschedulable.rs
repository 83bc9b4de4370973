//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods, unless the pod
//! tolerates the `node.kubernetes.io/unschedulable` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, Plugin, Rejection};
use crate::plugins::taint_toleration::tolerated;

pub struct NodeUnschedulable;

const NAME: &str = "NodeUnschedulable";

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn has_filter(&self) -> bool {
        true
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Rejection> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if tolerated(
            pod.spec().tolerations.as_deref().unwrap_or_default(),
            &taint,
        ) {
            return Ok(());
        }
        Err(Rejection::new(
            NAME,
            Code::UnschedulableAndUnresolvable,
            "node(s) were unschedulable",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, pod};
    use k8s_openapi::api::core::v1::Toleration;

    #[test]
    fn cordoned_nodes_reject_pods_that_do_not_tolerate_it() {
        let mut cordoned = node("n1", "1", "1Gi", "10");
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let cordoned = NodeInfo::new(cordoned);
        let state = CycleState::default();
        let plain = PodInfo::new(pod("web", "", ""));
        assert_eq!(
            NodeUnschedulable
                .filter(&plain, &cordoned, &state)
                .unwrap_err()
                .reasons,
            vec!["node(s) were unschedulable"]
        );
        let mut tolerant = pod("ds", "", "");
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("node.kubernetes.io/unschedulable".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }]);
        assert!(
            NodeUnschedulable
                .filter(&PodInfo::new(tolerant), &cordoned, &state)
                .is_ok()
        );
    }
}
