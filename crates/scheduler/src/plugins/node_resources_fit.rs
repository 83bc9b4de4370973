//! NodeResourcesFit: a pod fits where allocatable minus what placed pods request covers its
//! requests (and the pod count); its score is upstream's default LeastAllocated strategy.

use std::borrow::Cow;

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, Rejection};

pub struct NodeResourcesFit;

const NAME: &str = "NodeResourcesFit";

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn has_filter(&self) -> bool {
        true
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Rejection> {
        let mut reasons: Vec<Cow<'static, str>> = Vec::new();
        // Preemption can only help if the node could hold the pod at all.
        let mut unresolvable = false;
        if node.pods.len() as i64 + 1 > node.allowed_pods {
            reasons.push("Too many pods".into());
        }
        let want = &pod.requests.requests;
        let have = &node.allocatable;
        let used = &node.requested;
        let mut check = |name: Cow<'static, str>, want: i64, have: i64, used: i64| {
            if want > 0 && want > have - used {
                unresolvable |= want > have;
                reasons.push(match name {
                    Cow::Borrowed(n) => Cow::Borrowed(n),
                    Cow::Owned(n) => Cow::Owned(format!("Insufficient {n}")),
                });
            }
        };
        check(
            "Insufficient cpu".into(),
            want.milli_cpu,
            have.milli_cpu,
            used.milli_cpu,
        );
        check(
            "Insufficient memory".into(),
            want.memory,
            have.memory,
            used.memory,
        );
        check(
            "Insufficient ephemeral-storage".into(),
            want.ephemeral_storage,
            have.ephemeral_storage,
            used.ephemeral_storage,
        );
        for (name, amount) in &want.scalar {
            check(
                Cow::Owned(name.clone()),
                *amount,
                have.scalar.get(name).copied().unwrap_or(0),
                used.scalar.get(name).copied().unwrap_or(0),
            );
        }
        if reasons.is_empty() {
            return Ok(());
        }
        Err(Rejection {
            plugin: NAME,
            code: if unresolvable {
                Code::UnschedulableAndUnresolvable
            } else {
                Code::Unschedulable
            },
            reasons,
        })
    }

    fn score_weight(&self) -> i64 {
        1
    }

    /// LeastAllocated over CPU and memory (weight 1 each), with upstream's non-zero requests.
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        let least = |requested: i64, allocatable: i64| {
            if allocatable == 0 || requested > allocatable {
                0
            } else {
                (allocatable - requested) * MAX_NODE_SCORE / allocatable
            }
        };
        let cpu = least(
            node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = least(
            node.non_zero_memory + pod.requests.non_zero_memory,
            node.allocatable.memory,
        );
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, pod};
    use std::sync::Arc;

    #[test]
    fn insufficient_cpu_and_memory_are_both_reported() {
        let mut n = NodeInfo::new(node("n1", "1", "1Gi", "110"));
        n.add_pod(Arc::new(PodInfo::new(pod("a", "600m", "800Mi"))));
        let error = NodeResourcesFit
            .filter(
                &PodInfo::new(pod("b", "500m", "300Mi")),
                &n,
                &CycleState::default(),
            )
            .unwrap_err();
        assert_eq!(
            error.reasons,
            vec!["Insufficient cpu", "Insufficient memory"]
        );
        assert_eq!(error.code, Code::Unschedulable);
    }

    #[test]
    fn a_request_larger_than_the_node_is_unresolvable() {
        let n = NodeInfo::new(node("n1", "1", "1Gi", "110"));
        let error = NodeResourcesFit
            .filter(
                &PodInfo::new(pod("big", "2", "")),
                &n,
                &CycleState::default(),
            )
            .unwrap_err();
        assert_eq!(error.code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn the_pod_count_is_a_resource_too() {
        let mut n = NodeInfo::new(node("n1", "1", "1Gi", "1"));
        n.add_pod(Arc::new(PodInfo::new(pod("a", "", ""))));
        let error = NodeResourcesFit
            .filter(&PodInfo::new(pod("b", "", "")), &n, &CycleState::default())
            .unwrap_err();
        assert_eq!(error.reasons, vec!["Too many pods"]);
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let empty = NodeInfo::new(node("a", "4", "8Gi", "110"));
        let mut busy = NodeInfo::new(node("b", "4", "8Gi", "110"));
        busy.add_pod(Arc::new(PodInfo::new(pod("x", "2", "4Gi"))));
        let p = PodInfo::new(pod("p", "1", "2Gi"));
        let state = CycleState::default();
        assert_eq!(NodeResourcesFit.score(&p, &empty, &state), 75);
        assert_eq!(NodeResourcesFit.score(&p, &busy, &state), 25);
    }
}
