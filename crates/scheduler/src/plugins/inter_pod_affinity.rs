//! InterPodAffinity: required pod affinity and anti-affinity (the incoming pod's and placed
//! pods' anti-affinity towards it) filter nodes by topology domain; preferred terms score them.

use std::collections::HashMap;

use crate::cache::{AffinityTerm, Cache, NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, PreFilter, Rejection};

pub struct InterPodAffinity;

const NAME: &str = "InterPodAffinity";
/// Upstream's `hardPodAffinityWeight`: placed pods' required affinity counts when scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Topology key → value → count (or score).
#[derive(Default)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn add(&mut self, key: &str, node: &NodeInfo, delta: i64) {
        if let Some(value) = node.labels.get(key) {
            *self
                .0
                .entry(key.to_owned())
                .or_default()
                .entry(value.clone())
                .or_default() += delta;
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    /// The sum over every (key, value) label of the node.
    fn for_node(&self, node: &NodeInfo) -> i64 {
        if self.0.is_empty() {
            return 0;
        }
        node.labels.iter().map(|(k, v)| self.get(k, v)).sum()
    }
}

struct FilterState {
    existing_anti: TopologyCounts,
    affinity: TopologyCounts,
    anti: TopologyCounts,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, cluster: &Cache) -> bool {
    terms.iter().all(|t| t.matches(pod, &cluster.namespaces))
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn has_filter(&self) -> bool {
        true
    }

    fn pre_filter(
        &self,
        pod: &PodInfo,
        cluster: &Cache,
        state: &mut CycleState,
    ) -> Result<PreFilter, Rejection> {
        let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !own_terms && cluster.pods_with_required_anti_affinity() == 0 {
            return Ok(PreFilter::Skip);
        }
        let mut filter = FilterState {
            existing_anti: TopologyCounts::default(),
            affinity: TopologyCounts::default(),
            anti: TopologyCounts::default(),
        };
        for node in cluster.nodes() {
            if node.pods_with_required_anti_affinity > 0 {
                for existing in node
                    .pods
                    .iter()
                    .filter(|p| !p.required_anti_affinity.is_empty())
                {
                    for term in &existing.required_anti_affinity {
                        if term.matches(pod, &cluster.namespaces) {
                            filter.existing_anti.add(&term.topology_key, node, 1);
                        }
                    }
                }
            }
            if own_terms {
                for existing in &node.pods {
                    for term in &pod.required_affinity {
                        if term.matches(existing, &cluster.namespaces) {
                            filter.affinity.add(&term.topology_key, node, 1);
                        }
                    }
                    for term in &pod.required_anti_affinity {
                        if term.matches(existing, &cluster.namespaces) {
                            filter.anti.add(&term.topology_key, node, 1);
                        }
                    }
                }
            }
        }
        // The first pod of a group that selects itself may go anywhere its topology exists.
        let self_match =
            filter.affinity.0.is_empty() && matches_all(&pod.required_affinity, pod, cluster);
        state.write(NAME, (filter, self_match));
        Ok(PreFilter::Run)
    }

    /// Upstream's order: the pod's affinity, its anti-affinity, then placed pods' anti-affinity.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Rejection> {
        let Some((filter, self_match)) = state.read::<(FilterState, bool)>(NAME) else {
            return Ok(());
        };
        let affinity_met = pod.required_affinity.iter().all(|term| {
            node.labels
                .get(&term.topology_key)
                .is_some_and(|v| *self_match || filter.affinity.get(&term.topology_key, v) > 0)
        });
        if !affinity_met {
            return Err(Rejection::new(
                NAME,
                Code::UnschedulableAndUnresolvable,
                "node(s) didn't match pod affinity rules",
            ));
        }
        let anti_violated = pod.required_anti_affinity.iter().any(|term| {
            node.labels
                .get(&term.topology_key)
                .is_some_and(|v| filter.anti.get(&term.topology_key, v) > 0)
        });
        if anti_violated {
            return Err(Rejection::new(
                NAME,
                Code::Unschedulable,
                "node(s) didn't match pod anti-affinity rules",
            ));
        }
        if node
            .labels
            .iter()
            .any(|(k, v)| filter.existing_anti.get(k, v) > 0)
        {
            return Err(Rejection::new(
                NAME,
                Code::Unschedulable,
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ));
        }
        Ok(())
    }

    fn score_weight(&self) -> i64 {
        2
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        _: &[&NodeInfo],
        cluster: &Cache,
        state: &mut CycleState,
    ) -> bool {
        let own_preferences =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !own_preferences && cluster.pods_with_affinity() == 0 {
            return false;
        }
        let ns = &cluster.namespaces;
        let mut scores = TopologyCounts::default();
        for node in cluster.nodes() {
            if !own_preferences && node.pods_with_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                for (weight, term) in &pod.preferred_affinity {
                    if term.matches(existing, ns) {
                        scores.add(&term.topology_key, node, *weight);
                    }
                }
                for (weight, term) in &pod.preferred_anti_affinity {
                    if term.matches(existing, ns) {
                        scores.add(&term.topology_key, node, -weight);
                    }
                }
                if !existing.has_affinity() {
                    continue;
                }
                for (weight, term) in &existing.preferred_affinity {
                    if term.matches(pod, ns) {
                        scores.add(&term.topology_key, node, *weight);
                    }
                }
                for (weight, term) in &existing.preferred_anti_affinity {
                    if term.matches(pod, ns) {
                        scores.add(&term.topology_key, node, -weight);
                    }
                }
                for term in &existing.required_affinity {
                    if term.matches(pod, ns) {
                        scores.add(&term.topology_key, node, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
            }
        }
        if scores.0.values().flat_map(|m| m.values()).all(|c| *c == 0) {
            return false;
        }
        state.write("InterPodAffinity/score", scores);
        true
    }

    fn score(&self, _: &PodInfo, node: &NodeInfo, state: &CycleState) -> i64 {
        state
            .read::<TopologyCounts>("InterPodAffinity/score")
            .map_or(0, |s| s.for_node(node))
    }

    /// Min-max scaling, as upstream (scores may be negative).
    fn normalize(&self, scores: &mut [i64], _: &CycleState) {
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        for score in scores {
            *score = if max > min {
                MAX_NODE_SCORE * (*score - min) / (max - min)
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{labelled, node, node_labelled, pod};
    use k8s_openapi::api::core::v1::{Affinity, PodAffinity, PodAffinityTerm, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_owned(), app.to_owned())].into()),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn anti(name: &str, app: &str) -> PodInfo {
        let mut p = labelled(pod(name, "", ""), &[("app", app)]);
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(
                    app,
                    "kubernetes.io/hostname",
                )]),
                ..Default::default()
            }),
            ..Default::default()
        });
        PodInfo::new(p)
    }

    fn with_affinity(name: &str, app: &str, key: &str) -> PodInfo {
        let mut p = labelled(pod(name, "", ""), &[("app", app)]);
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(app, key)]),
                ..Default::default()
            }),
            ..Default::default()
        });
        PodInfo::new(p)
    }

    fn feasible(pod: &PodInfo, cache: &Cache) -> Vec<String> {
        let mut state = CycleState::default();
        if let PreFilter::Skip = InterPodAffinity.pre_filter(pod, cache, &mut state).unwrap() {
            return cache.nodes().iter().map(|n| n.name.clone()).collect();
        }
        let mut names: Vec<String> = cache
            .nodes()
            .iter()
            .filter(|n| InterPodAffinity.filter(pod, n, &state).is_ok())
            .map(|n| n.name.clone())
            .collect();
        names.sort();
        names
    }

    fn two_nodes() -> Cache {
        let mut cache = Cache::default();
        cache.upsert_node(node_labelled(node("a", "1", "1Gi", "9"), &[("zone", "z1")]));
        cache.upsert_node(node_labelled(node("b", "1", "1Gi", "9"), &[("zone", "z2")]));
        cache
    }

    #[test]
    fn required_anti_affinity_keeps_replicas_on_different_hosts() {
        let mut cache = two_nodes();
        cache.add_bound_pod(Arc::new(anti("web-1", "web")), "a");
        assert_eq!(feasible(&anti("web-2", "web"), &cache), vec!["b"]);
    }

    #[test]
    fn placed_pods_anti_affinity_repels_matching_newcomers() {
        let mut cache = two_nodes();
        cache.add_bound_pod(Arc::new(anti("web-1", "web")), "a");
        let plain = PodInfo::new(labelled(pod("web-2", "", ""), &[("app", "web")]));
        assert_eq!(feasible(&plain, &cache), vec!["b"]);
    }

    #[test]
    fn required_affinity_follows_the_selected_pods_zone_and_the_first_may_go_anywhere() {
        let mut cache = two_nodes();
        let first = with_affinity("cache-1", "cache", "zone");
        assert_eq!(feasible(&first, &cache), vec!["a", "b"]);
        cache.add_bound_pod(Arc::new(first), "b");
        assert_eq!(
            feasible(&with_affinity("cache-2", "cache", "zone"), &cache),
            vec!["b"]
        );
    }
}
