//! NodeName: a pod that names its node fits only there.

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, Plugin, PreFilter, Rejection};

pub struct NodeName;

const NAME: &str = "NodeName";

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn has_filter(&self) -> bool {
        true
    }

    fn pre_filter(
        &self,
        pod: &PodInfo,
        _: &crate::cache::Cache,
        _: &mut CycleState,
    ) -> Result<PreFilter, Rejection> {
        Ok(match pod.spec().node_name.as_deref() {
            Some(name) if !name.is_empty() => PreFilter::Run,
            _ => PreFilter::Skip,
        })
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Rejection> {
        match pod.spec().node_name.as_deref() {
            Some(name) if !name.is_empty() && name != node.name => Err(Rejection::new(
                NAME,
                Code::UnschedulableAndUnresolvable,
                "node(s) didn't match the requested node name",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, pod};

    #[test]
    fn a_pod_naming_a_node_fits_only_there() {
        let mut named = pod("web", "", "");
        named.spec.as_mut().unwrap().node_name = Some("n2".into());
        let named = PodInfo::new(named);
        let state = CycleState::default();
        assert!(
            NodeName
                .filter(&named, &NodeInfo::new(node("n2", "1", "1Gi", "10")), &state)
                .is_ok()
        );
        assert!(
            NodeName
                .filter(&named, &NodeInfo::new(node("n1", "1", "1Gi", "10")), &state)
                .is_err()
        );
    }
}
