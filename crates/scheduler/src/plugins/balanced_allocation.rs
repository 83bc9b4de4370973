//! NodeResourcesBalancedAllocation: prefers nodes whose CPU and memory would be used in equal
//! shares after placing the pod.

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin};

pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn score_weight(&self) -> i64 {
        1
    }

    /// Best-effort pods change no balance, so upstream skips them.
    fn pre_score(&self, pod: &PodInfo, _: &[&NodeInfo], _: &Cache, _: &mut CycleState) -> bool {
        let r = &pod.requests.requests;
        r.milli_cpu != 0 || r.memory != 0
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        let fraction = |requested: i64, allocatable: i64| {
            if allocatable == 0 {
                0.0
            } else {
                (requested as f64 / allocatable as f64).min(1.0)
            }
        };
        let r = &pod.requests.requests;
        let cpu = fraction(
            node.requested.milli_cpu + r.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = fraction(node.requested.memory + r.memory, node.allocatable.memory);
        let deviation = ((cpu - memory) / 2.0).abs();
        ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, pod};

    #[test]
    fn equal_shares_score_highest() {
        let n = NodeInfo::new(node("a", "4", "4Gi", "110"));
        let state = CycleState::default();
        let balanced = PodInfo::new(pod("b", "2", "2Gi"));
        let lopsided = PodInfo::new(pod("l", "4", ""));
        assert_eq!(BalancedAllocation.score(&balanced, &n, &state), 100);
        assert_eq!(BalancedAllocation.score(&lopsided, &n, &state), 50);
    }
}
