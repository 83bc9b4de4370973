//! TaintToleration: NoSchedule and NoExecute taints keep pods that don't tolerate them off a
//! node; untolerated PreferNoSchedule taints lower the node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, Plugin, Rejection, default_normalize};

pub struct TaintToleration;

const NAME: &str = "TaintToleration";

/// Upstream's `ToleratesTaint`: effect and key must match when given; `Exists` ignores the value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref() {
        Some("Exists") => true,
        None | Some("") | Some("Equal") => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn has_filter(&self) -> bool {
        true
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Rejection> {
        let tolerations = pod.spec().tolerations.as_deref().unwrap_or_default();
        let untolerated = node.taints.iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !tolerated(tolerations, taint)
        });
        match untolerated {
            None => Ok(()),
            Some(taint) => Err(Rejection::new(
                NAME,
                Code::UnschedulableAndUnresolvable,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or_default()
                ),
            )),
        }
    }

    fn score_weight(&self) -> i64 {
        3
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        // Only tolerations that could tolerate PreferNoSchedule count here.
        let tolerations = pod.spec().tolerations.as_deref().unwrap_or_default();
        node.taints
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule")
            .filter(|taint| {
                !tolerations.iter().any(|t| {
                    matches!(
                        t.effect.as_deref(),
                        None | Some("") | Some("PreferNoSchedule")
                    ) && tolerates(t, taint)
                })
            })
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64], _: &CycleState) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, pod};

    fn tainted(effect: &str) -> NodeInfo {
        let mut n = node("n1", "1", "1Gi", "10");
        n.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: effect.into(),
            ..Default::default()
        }]);
        NodeInfo::new(n)
    }

    fn tolerating(operator: &str, value: Option<&str>) -> PodInfo {
        let mut p = pod("web", "", "");
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some(operator.into()),
            value: value.map(str::to_owned),
            ..Default::default()
        }]);
        PodInfo::new(p)
    }

    #[test]
    fn untolerated_no_schedule_taint_rejects_with_upstreams_reason() {
        let error = TaintToleration
            .filter(
                &PodInfo::new(pod("web", "", "")),
                &tainted("NoSchedule"),
                &CycleState::default(),
            )
            .unwrap_err();
        assert_eq!(
            error.reasons,
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
    }

    #[test]
    fn equal_and_exists_tolerations_let_the_pod_in() {
        let state = CycleState::default();
        assert!(
            TaintToleration
                .filter(
                    &tolerating("Equal", Some("gpu")),
                    &tainted("NoExecute"),
                    &state
                )
                .is_ok()
        );
        assert!(
            TaintToleration
                .filter(&tolerating("Exists", None), &tainted("NoSchedule"), &state)
                .is_ok()
        );
        assert!(
            TaintToleration
                .filter(
                    &tolerating("Equal", Some("cpu")),
                    &tainted("NoSchedule"),
                    &state
                )
                .is_err()
        );
    }

    #[test]
    fn prefer_no_schedule_only_lowers_the_score() {
        let state = CycleState::default();
        let web = PodInfo::new(pod("web", "", ""));
        let node = tainted("PreferNoSchedule");
        assert!(TaintToleration.filter(&web, &node, &state).is_ok());
        let mut scores = vec![TaintToleration.score(&web, &node, &state), 0];
        TaintToleration.normalize(&mut scores, &state);
        assert_eq!(scores, vec![0, 100]);
    }
}
