//! NodeAffinity: `nodeSelector` and required node affinity filter nodes; preferred node
//! affinity scores them by the summed weights of the terms they match.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, Plugin, PreFilter, Rejection, default_normalize};
use crate::labels::{Labels, Requirement};

pub struct NodeAffinity;

const NAME: &str = "NodeAffinity";

/// A node selector term: label expressions and `metadata.name` field expressions, all ANDed.
#[derive(Clone, Debug)]
struct Term {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Term {
    fn compile(term: &NodeSelectorTerm) -> Self {
        let compile = |r: &NodeSelectorRequirement| {
            Requirement::new(&r.key, &r.operator, r.values.as_deref().unwrap_or_default())
        };
        Term {
            labels: term
                .match_expressions
                .iter()
                .flatten()
                .map(compile)
                .collect(),
            fields: term.match_fields.iter().flatten().map(compile).collect(),
        }
    }

    fn matches(&self, labels: &Labels, name: &str) -> bool {
        // An empty term selects nothing, as upstream.
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| {
                r.key == "metadata.name"
                    && r.matches(&Labels::from([(r.key.clone(), name.to_owned())]))
            })
    }
}

/// What a pod requires of its node: `nodeSelector` and the required node affinity terms (ORed).
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Labels,
    terms: Option<Vec<Term>>,
}

impl RequiredNodeAffinity {
    pub fn of(pod: &PodInfo) -> Self {
        Self::of_spec(pod.spec())
    }

    /// From a pod spec (a template's too: the DaemonSet controller asks the same question).
    pub fn of_spec(spec: &PodSpec) -> Self {
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.iter().map(Term::compile).collect());
        RequiredNodeAffinity {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            terms,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        self.matches_node(&node.labels, &node.name)
    }

    /// Whether a node with these labels and this name satisfies it.
    pub fn matches_node(&self, labels: &Labels, name: &str) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(labels, name)))
    }
}

struct Preferred(Vec<(i64, Term)>);

impl Plugin for NodeAffinity {
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
        state: &mut CycleState,
    ) -> Result<PreFilter, Rejection> {
        let required = RequiredNodeAffinity::of(pod);
        if required.is_empty() {
            return Ok(PreFilter::Skip);
        }
        state.write(NAME, required);
        Ok(PreFilter::Run)
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Rejection> {
        let matches = match state.read::<RequiredNodeAffinity>(NAME) {
            Some(required) => required.matches(node),
            None => RequiredNodeAffinity::of(pod).matches(node),
        };
        if matches {
            Ok(())
        } else {
            Err(Rejection::new(
                NAME,
                Code::UnschedulableAndUnresolvable,
                "node(s) didn't match Pod's node affinity/selector",
            ))
        }
    }

    fn score_weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, pod: &PodInfo, _: &[&NodeInfo], _: &Cache, state: &mut CycleState) -> bool {
        let preferred: Vec<(i64, Term)> = pod
            .spec()
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| {
                terms
                    .iter()
                    .filter(|t| t.weight != 0)
                    .map(|t| (i64::from(t.weight), Term::compile(&t.preference)))
                    .collect()
            })
            .unwrap_or_default();
        if preferred.is_empty() {
            return false;
        }
        state.write("NodeAffinity/preferred", Preferred(preferred));
        true
    }

    fn score(&self, _: &PodInfo, node: &NodeInfo, state: &CycleState) -> i64 {
        state
            .read::<Preferred>("NodeAffinity/preferred")
            .map(|p| {
                p.0.iter()
                    .filter(|(_, t)| t.matches(&node.labels, &node.name))
                    .map(|(w, _)| w)
                    .sum()
            })
            .unwrap_or(0)
    }

    fn normalize(&self, scores: &mut [i64], _: &CycleState) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, node_labelled, pod};
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity as Spec, NodeSelector, PreferredSchedulingTerm,
    };

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn with_affinity(spec: Spec) -> PodInfo {
        let mut p = pod("web", "", "");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(spec),
            ..Default::default()
        });
        PodInfo::new(p)
    }

    fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
        let mut state = CycleState::default();
        NodeAffinity
            .pre_filter(pod, &Cache::default(), &mut state)
            .unwrap();
        NodeAffinity.filter(pod, node, &state).is_ok()
    }

    #[test]
    fn node_selector_needs_every_label() {
        let mut p = pod("web", "", "");
        p.spec.as_mut().unwrap().node_selector =
            Some(Labels::from([("disk".into(), "ssd".into())]));
        let p = PodInfo::new(p);
        assert!(fits(
            &p,
            &NodeInfo::new(node_labelled(
                node("a", "1", "1Gi", "9"),
                &[("disk", "ssd")]
            ))
        ));
        let miss = NodeAffinity
            .filter(
                &p,
                &NodeInfo::new(node("b", "1", "1Gi", "9")),
                &CycleState::default(),
            )
            .unwrap_err();
        assert_eq!(
            miss.reasons,
            vec!["node(s) didn't match Pod's node affinity/selector"]
        );
    }

    #[test]
    fn required_terms_are_ored_and_expressions_anded() {
        let p = with_affinity(Spec {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![
                    NodeSelectorTerm {
                        match_expressions: Some(vec![
                            requirement("zone", "In", &["a", "b"]),
                            requirement("cores", "Gt", &["4"]),
                        ]),
                        ..Default::default()
                    },
                    NodeSelectorTerm {
                        match_fields: Some(vec![requirement("metadata.name", "In", &["special"])]),
                        ..Default::default()
                    },
                ],
            }),
            ..Default::default()
        });
        let labelled = |name, pairs: &[(&str, &str)]| {
            NodeInfo::new(node_labelled(node(name, "1", "1Gi", "9"), pairs))
        };
        assert!(fits(&p, &labelled("x", &[("zone", "a"), ("cores", "8")])));
        assert!(!fits(&p, &labelled("y", &[("zone", "a"), ("cores", "2")])));
        assert!(!fits(&p, &labelled("z", &[("zone", "c"), ("cores", "8")])));
        assert!(fits(&p, &labelled("special", &[])));
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let p = with_affinity(Spec {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 10,
                    preference: NodeSelectorTerm {
                        match_expressions: Some(vec![requirement("disk", "Exists", &[])]),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        });
        let ssd = NodeInfo::new(node_labelled(
            node("a", "1", "1Gi", "9"),
            &[("disk", "ssd")],
        ));
        let plain = NodeInfo::new(node("b", "1", "1Gi", "9"));
        let mut state = CycleState::default();
        assert!(NodeAffinity.pre_score(&p, &[&ssd, &plain], &Cache::default(), &mut state));
        let mut scores = vec![
            NodeAffinity.score(&p, &ssd, &state),
            NodeAffinity.score(&p, &plain, &state),
        ];
        NodeAffinity.normalize(&mut scores, &state);
        assert_eq!(scores, vec![100, 0]);
    }
}
