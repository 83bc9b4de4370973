//! PodTopologySpread: `DoNotSchedule` constraints reject nodes whose domain would exceed
//! `maxSkew`; `ScheduleAnyway` constraints (or upstream's system defaults, for pods owned by a
//! Service, ReplicaSet, ReplicationController or StatefulSet) score domains with fewer matching
//! pods higher.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, PreFilter, Rejection};
use crate::labels::{Operator, Requirement, Selector};
use crate::plugins::node_affinity::RequiredNodeAffinity;
use crate::plugins::taint_toleration::tolerated;

const NAME: &str = "PodTopologySpread";
const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// Selectors of the objects that own or front pods (Services, ReplicaSets, ReplicationControllers,
/// StatefulSets), by namespace and `kind/name`, fed by informers: upstream's `DefaultSelector`.
#[derive(Default)]
pub struct DefaultSelectors {
    by_namespace: RwLock<HashMap<String, HashMap<String, Selector>>>,
}

impl DefaultSelectors {
    pub fn set(&self, namespace: &str, key: String, selector: Option<Selector>) {
        let mut all = self.by_namespace.write().unwrap();
        let namespace_selectors = all.entry(namespace.to_owned()).or_default();
        match selector {
            Some(selector) => {
                namespace_selectors.insert(key, selector);
            }
            None => {
                namespace_selectors.remove(&key);
            }
        }
    }

    /// Every requirement of every selector that matches the pod, ANDed; `None` when none does.
    fn selector_for(&self, pod: &PodInfo) -> Option<Selector> {
        let all = self.by_namespace.read().unwrap();
        let mut merged = Vec::new();
        for selector in all.get(&pod.namespace)?.values() {
            if selector.matches_with(&pod.labels, &pod.label_hashes) {
                merged.extend(selector.requirements.iter().cloned());
            }
        }
        (!merged.is_empty()).then(|| Selector::all_of(merged))
    }
}

#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Selector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    fn compile(c: &TopologySpreadConstraint, pod: &PodInfo) -> Self {
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
        for key in c.match_label_keys.iter().flatten() {
            if let Some(value) = pod.labels.get(key) {
                selector.require(Requirement {
                    key: key.clone(),
                    operator: Operator::In,
                    values: vec![value.clone()],
                });
            }
        }
        Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Pods on `node` this constraint counts: same namespace, selected, not terminating.
    fn count(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        node.pods
            .iter()
            .filter(|p| {
                p.namespace == pod.namespace
                    && p.pod.metadata.deletion_timestamp.is_none()
                    && self.selector.matches_with(&p.labels, &p.label_hashes)
            })
            .count() as i64
    }
}

/// Whether a node counts towards the spread at all (node affinity and taints per policy).
fn eligible(
    constraint: &Constraint,
    pod: &PodInfo,
    required: &RequiredNodeAffinity,
    node: &NodeInfo,
) -> bool {
    if constraint.honor_node_affinity && !required.matches(node) {
        return false;
    }
    if constraint.honor_node_taints {
        let tolerations = pod.spec().tolerations.as_deref().unwrap_or_default();
        let blocked = node.taints.iter().any(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tolerations, t)
        });
        if blocked {
            return false;
        }
    }
    true
}

pub struct PodTopologySpread {
    defaults: Arc<DefaultSelectors>,
}

impl PodTopologySpread {
    pub fn new(defaults: Arc<DefaultSelectors>) -> Self {
        PodTopologySpread { defaults }
    }

    fn explicit(pod: &PodInfo, when: &str) -> Vec<Constraint> {
        pod.spec()
            .topology_spread_constraints
            .iter()
            .flatten()
            .filter(|c| c.when_unsatisfiable == when)
            .map(|c| Constraint::compile(c, pod))
            .collect()
    }
}

struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value → matching pods.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the smallest count over its domains (0 when below minDomains).
    min: Vec<i64>,
}

struct ScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
    ignored: Vec<bool>,
}

impl Plugin for PodTopologySpread {
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
        let constraints = Self::explicit(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return Ok(PreFilter::Skip);
        }
        let required = RequiredNodeAffinity::of(pod);
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        for node in cluster.nodes() {
            if !constraints
                .iter()
                .all(|c| node.labels.contains_key(&c.topology_key))
            {
                continue;
            }
            for (i, constraint) in constraints.iter().enumerate() {
                if !eligible(constraint, pod, &required, node) {
                    continue;
                }
                let value = node.labels[&constraint.topology_key].clone();
                *counts[i].entry(value).or_default() += constraint.count(pod, node);
            }
        }
        let min = constraints
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                if (domains.len() as i64) < c.min_domains {
                    0
                } else {
                    domains.values().copied().min().unwrap_or(0)
                }
            })
            .collect();
        state.write(
            NAME,
            FilterState {
                constraints,
                counts,
                min,
            },
        );
        Ok(PreFilter::Run)
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Rejection> {
        let Some(filter) = state.read::<FilterState>(NAME) else {
            return Ok(());
        };
        for (i, constraint) in filter.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&constraint.topology_key) else {
                return Err(Rejection::new(
                    NAME,
                    Code::UnschedulableAndUnresolvable,
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            };
            let self_match = i64::from(constraint.selector.matches(&pod.labels));
            let matching = filter.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - filter.min[i] > constraint.max_skew {
                return Err(Rejection::new(
                    NAME,
                    Code::Unschedulable,
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        Ok(())
    }

    fn score_weight(&self) -> i64 {
        2
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        cluster: &Cache,
        state: &mut CycleState,
    ) -> bool {
        let has_explicit = pod
            .spec()
            .topology_spread_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty());
        let constraints = if has_explicit {
            Self::explicit(pod, "ScheduleAnyway")
        } else {
            // Upstream's system defaults, for pods something selects.
            let Some(selector) = self.defaults.selector_for(pod) else {
                return false;
            };
            [(HOSTNAME, 3), (ZONE, 5)]
                .into_iter()
                .map(|(key, max_skew)| Constraint {
                    max_skew,
                    topology_key: key.to_owned(),
                    selector: selector.clone(),
                    min_domains: 1,
                    honor_node_affinity: true,
                    honor_node_taints: false,
                })
                .collect()
        };
        if constraints.is_empty() {
            return false;
        }
        // Explicit constraints need every topology key on a node; system defaults don't.
        let require_all = has_explicit;
        let required = RequiredNodeAffinity::of(pod);
        let ignored: Vec<bool> = nodes
            .iter()
            .map(|n| {
                require_all
                    && !constraints
                        .iter()
                        .all(|c| n.labels.contains_key(&c.topology_key))
            })
            .collect();
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        let mut weights = Vec::with_capacity(constraints.len());
        for (i, constraint) in constraints.iter().enumerate() {
            // Domains are those of the nodes being scored.
            let hostname = constraint.topology_key == HOSTNAME;
            for (node, ignored) in nodes.iter().zip(&ignored) {
                if let Some(value) = node
                    .labels
                    .get(&constraint.topology_key)
                    .filter(|_| !ignored)
                {
                    let count = counts[i].entry(value.clone()).or_insert(0);
                    // Each node is its own domain: count only the scored ones, in this pass.
                    if hostname && eligible(constraint, pod, &required, node) {
                        *count += constraint.count(pod, node);
                    }
                }
            }
            weights.push(((counts[i].len() + 2) as f64).ln());
            if !hostname && !counts[i].is_empty() {
                for node in cluster.nodes() {
                    if let Some(count) = node
                        .labels
                        .get(&constraint.topology_key)
                        .and_then(|v| counts[i].get_mut(v))
                        && eligible(constraint, pod, &required, node)
                    {
                        *count += constraint.count(pod, node);
                    }
                }
            }
        }
        state.write(
            "PodTopologySpread/score",
            ScoreState {
                constraints,
                counts,
                weights,
                ignored,
            },
        );
        true
    }

    fn score(&self, _: &PodInfo, node: &NodeInfo, state: &CycleState) -> i64 {
        let Some(s) = state.read::<ScoreState>("PodTopologySpread/score") else {
            return 0;
        };
        let mut score = 0.0;
        for (i, constraint) in s.constraints.iter().enumerate() {
            if let Some(count) = node
                .labels
                .get(&constraint.topology_key)
                .and_then(|v| s.counts[i].get(v))
            {
                score += *count as f64 * s.weights[i] + (constraint.max_skew - 1) as f64;
            }
        }
        score.round() as i64
    }

    /// Fewer matching pods is better; ignored nodes score 0.
    fn normalize(&self, scores: &mut [i64], state: &CycleState) {
        let Some(s) = state.read::<ScoreState>("PodTopologySpread/score") else {
            return;
        };
        let considered = || {
            scores
                .iter()
                .zip(&s.ignored)
                .filter(|(_, i)| !**i)
                .map(|(s, _)| *s)
        };
        let (Some(min), Some(max)) = (considered().min(), considered().max()) else {
            scores.fill(0);
            return;
        };
        for (score, ignored) in scores.iter_mut().zip(&s.ignored) {
            *score = if *ignored {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{labelled, node, node_labelled, pod};
    use crate::labels::Labels;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn spread(name: &str, when: &str) -> PodInfo {
        let mut p = labelled(pod(name, "", ""), &[("app", "web")]);
        p.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "zone".into(),
                when_unsatisfiable: when.into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        PodInfo::new(p)
    }

    fn zones() -> Cache {
        let mut cache = Cache::default();
        cache.upsert_node(node_labelled(node("a", "1", "1Gi", "9"), &[("zone", "z1")]));
        cache.upsert_node(node_labelled(node("b", "1", "1Gi", "9"), &[("zone", "z2")]));
        cache.upsert_node(node("unlabelled", "1", "1Gi", "9"));
        cache
    }

    #[test]
    fn do_not_schedule_rejects_the_domain_that_would_exceed_max_skew() {
        let mut cache = zones();
        cache.add_bound_pod(Arc::new(spread("web-1", "DoNotSchedule")), "a");
        let incoming = spread("web-2", "DoNotSchedule");
        let plugin = PodTopologySpread::new(Default::default());
        let mut state = CycleState::default();
        plugin.pre_filter(&incoming, &cache, &mut state).unwrap();
        let verdict = |name: &str| plugin.filter(&incoming, cache.node(name).unwrap(), &state);
        assert_eq!(verdict("a").unwrap_err().code, Code::Unschedulable);
        assert!(verdict("b").is_ok());
        assert_eq!(
            verdict("unlabelled").unwrap_err().code,
            Code::UnschedulableAndUnresolvable
        );
    }

    #[test]
    fn system_defaults_spread_replicas_of_a_replicaset_over_hosts() {
        let defaults = Arc::new(DefaultSelectors::default());
        defaults.set(
            "default",
            "ReplicaSet/web".into(),
            Some(Selector::from_map(&Labels::from([(
                "app".into(),
                "web".into(),
            )]))),
        );
        let plugin = PodTopologySpread::new(defaults);
        let mut cache = Cache::default();
        cache.upsert_node(node("a", "1", "1Gi", "9"));
        cache.upsert_node(node("b", "1", "1Gi", "9"));
        cache.add_bound_pod(
            Arc::new(PodInfo::new(labelled(
                pod("web-1", "", ""),
                &[("app", "web")],
            ))),
            "a",
        );
        let incoming = PodInfo::new(labelled(pod("web-2", "", ""), &[("app", "web")]));
        let nodes: Vec<&NodeInfo> = cache.nodes().iter().collect();
        let mut state = CycleState::default();
        assert!(plugin.pre_score(&incoming, &nodes, &cache, &mut state));
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| plugin.score(&incoming, n, &state))
            .collect();
        plugin.normalize(&mut scores, &state);
        assert!(scores[1] > scores[0], "{scores:?}");
    }
}
