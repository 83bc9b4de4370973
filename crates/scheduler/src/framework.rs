//! The scheduling framework: plugins implement the extension points they need (PreFilter,
//! Filter, PreScore, Score, NormalizeScore) and `Framework::schedule` runs one scheduling cycle
//! over the cache, as upstream's `schedulePod` does.

use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::cache::{Cache, NodeInfo, PodInfo};

pub const MAX_NODE_SCORE: i64 = 100;
/// Below this many nodes every node is checked; above, upstream's adaptive percentage applies.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// Where `schedule` leaves the filters that apply to the pod, for preemption to rerun them.
pub const ACTIVE_FILTERS: &str = "framework/active-filters";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Preemption might help.
    Unschedulable,
    /// Nothing about other pods would make this node fit.
    UnschedulableAndUnresolvable,
}

/// Why a plugin rejects a node (or, from PreFilter, every node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: &'static str,
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
}

impl Rejection {
    pub fn new(plugin: &'static str, code: Code, reason: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            plugin,
            code,
            reasons: vec![reason.into()],
        }
    }
}

/// Per-cycle data plugins compute in PreFilter/PreScore and read per node.
#[derive(Default)]
pub struct CycleState {
    slots: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.slots.insert(key, Box::new(value));
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.slots.get(key).and_then(|v| v.downcast_ref())
    }
}

/// What PreFilter decides for this pod.
pub enum PreFilter {
    /// Run Filter on each node.
    Run,
    /// This plugin has nothing to check for this pod.
    Skip,
}

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    fn has_filter(&self) -> bool {
        false
    }

    fn pre_filter(
        &self,
        _pod: &PodInfo,
        _cluster: &Cache,
        _state: &mut CycleState,
    ) -> Result<PreFilter, Rejection> {
        Ok(PreFilter::Run)
    }

    fn filter(
        &self,
        _pod: &PodInfo,
        _node: &NodeInfo,
        _state: &CycleState,
    ) -> Result<(), Rejection> {
        Ok(())
    }

    /// The weight of this plugin's score; 0 means it does not score.
    fn score_weight(&self) -> i64 {
        0
    }

    /// Prepares scoring of `nodes` (the feasible ones); `false` skips scoring for this pod.
    fn pre_score(
        &self,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _cluster: &Cache,
        _state: &mut CycleState,
    ) -> bool {
        true
    }

    fn score(&self, _pod: &PodInfo, _node: &NodeInfo, _state: &CycleState) -> i64 {
        0
    }

    fn normalize(&self, _scores: &mut [i64], _state: &CycleState) {}
}

/// Upstream's `DefaultNormalizeScore`: scale to 0..=MAX_NODE_SCORE by the highest score,
/// optionally reversed (fewer is better).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.fill(MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores {
        *score = MAX_NODE_SCORE * *score / max;
        if reverse {
            *score = MAX_NODE_SCORE - *score;
        }
    }
}

/// Why no node fits, per node, as upstream's `FitError`.
pub struct FitError {
    pub num_nodes: usize,
    /// A PreFilter rejection applies to every node.
    pub pre_filter: Option<Rejection>,
    pub statuses: HashMap<String, Rejection>,
}

impl FitError {
    /// Upstream's message: `0/3 nodes are available: 1 node(s) had untolerated taint {…}, 2
    /// Insufficient cpu.` (reasons counted over nodes and sorted).
    pub fn message(&self) -> String {
        let mut message = format!("0/{} nodes are available:", self.num_nodes);
        if let Some(rejection) = &self.pre_filter {
            message.push(' ');
            message.push_str(&rejection.reasons.join(", "));
            message.push('.');
            return message;
        }
        let histogram = reason_histogram(self.statuses.values());
        if !histogram.is_empty() {
            message.push(' ');
            message.push_str(&histogram.join(", "));
            message.push('.');
        }
        message
    }

    /// The plugins that rejected some node, so cluster events can wake only pods they concern.
    pub fn plugins(&self) -> Vec<&'static str> {
        let mut plugins: Vec<_> = self
            .pre_filter
            .iter()
            .chain(self.statuses.values())
            .map(|r| r.plugin)
            .collect();
        plugins.sort_unstable();
        plugins.dedup();
        plugins
    }
}

/// `N reason` per distinct reason, sorted as strings, as upstream's `sortReasonsHistogram`.
pub fn reason_histogram<'a>(statuses: impl Iterator<Item = &'a Rejection>) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for status in statuses {
        for reason in &status.reasons {
            *counts.entry(reason).or_default() += 1;
        }
    }
    let mut lines: Vec<String> = counts
        .into_iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    lines.sort();
    lines
}

pub enum ScheduleError {
    NoNodes,
    Fit(Box<(FitError, CycleState)>),
}

pub struct Decision {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// A small xorshift generator: ties between equally good nodes are broken at random, seeded by
/// the caller so tests are deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

pub struct Framework {
    plugins: Vec<Arc<dyn Plugin>>,
}

impl Framework {
    pub fn new(plugins: Vec<Arc<dyn Plugin>>) -> Self {
        Framework { plugins }
    }

    /// How many feasible nodes to look for before scoring (upstream's adaptive
    /// percentageOfNodesToScore: 50% less 1% per 125 nodes, at least 5% and 100 nodes).
    pub fn feasible_nodes_to_find(all_nodes: usize) -> usize {
        if all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
            return all_nodes;
        }
        let percentage = 50usize
            .saturating_sub(all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
        (all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Runs every PreFilter; returns which filter plugins apply to this pod.
    pub fn pre_filter(
        &self,
        pod: &PodInfo,
        cluster: &Cache,
        state: &mut CycleState,
    ) -> Result<Vec<usize>, Rejection> {
        let mut active = Vec::with_capacity(self.plugins.len());
        for (i, plugin) in self.plugins.iter().enumerate() {
            if !plugin.has_filter() {
                continue;
            }
            if let PreFilter::Run = plugin.pre_filter(pod, cluster, state)? {
                active.push(i);
            }
        }
        Ok(active)
    }

    /// Runs the active filters on one node, stopping at the first rejection.
    pub fn filter(
        &self,
        active: &[usize],
        pod: &PodInfo,
        node: &NodeInfo,
        state: &CycleState,
    ) -> Result<(), Rejection> {
        for &i in active {
            self.plugins[i].filter(pod, node, state)?;
        }
        Ok(())
    }

    /// One scheduling cycle: filter nodes (stopping once enough fit), score them, pick the best.
    pub fn schedule(
        &self,
        pod: &PodInfo,
        cluster: &mut Cache,
        rng: &mut Rng,
    ) -> Result<Decision, ScheduleError> {
        let all = cluster.nodes().len();
        if all == 0 {
            return Err(ScheduleError::NoNodes);
        }
        let mut state = CycleState::default();
        let active = match self.pre_filter(pod, cluster, &mut state) {
            Ok(active) => active,
            Err(rejection) => {
                return Err(ScheduleError::Fit(Box::new((
                    FitError {
                        num_nodes: all,
                        pre_filter: Some(rejection),
                        statuses: HashMap::new(),
                    },
                    state,
                ))));
            }
        };

        state.write(ACTIVE_FILTERS, active.clone());
        let want = Self::feasible_nodes_to_find(all);
        let start = cluster.next_start_node % all;
        let nodes = cluster.nodes();
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(all));
        let mut statuses = HashMap::new();
        // A pod nominated by preemption tries its node first, as upstream does.
        let nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .and_then(|n| cluster.node(n));
        if let Some(node) = nominated
            && self.filter(&active, pod, node, &state).is_ok()
        {
            feasible.push(node);
        }
        let mut evaluated = 0;
        if feasible.is_empty() {
            for offset in 0..all {
                let node = &nodes[(start + offset) % all];
                evaluated += 1;
                match self.filter(&active, pod, node, &state) {
                    Ok(()) => {
                        feasible.push(node);
                        if feasible.len() >= want {
                            break;
                        }
                    }
                    Err(rejection) => {
                        statuses.insert(node.name.clone(), rejection);
                    }
                }
            }
        }
        let next_start = (start + evaluated) % all;
        if feasible.is_empty() {
            cluster.next_start_node = next_start;
            return Err(ScheduleError::Fit(Box::new((
                FitError {
                    num_nodes: all,
                    pre_filter: None,
                    statuses,
                },
                state,
            ))));
        }
        let node = if feasible.len() == 1 {
            feasible[0].name.clone()
        } else {
            let scores = self.score(pod, &feasible, cluster, &mut state);
            select_host(&feasible, &scores, rng)
        };
        let feasible_nodes = feasible.len();
        cluster.next_start_node = next_start;
        Ok(Decision {
            node,
            evaluated_nodes: evaluated.max(1),
            feasible_nodes,
        })
    }

    /// Weighted sum of every score plugin's normalized score, per node.
    pub fn score(
        &self,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        cluster: &Cache,
        state: &mut CycleState,
    ) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for plugin in &self.plugins {
            let weight = plugin.score_weight();
            if weight == 0 || !plugin.pre_score(pod, nodes, cluster, state) {
                continue;
            }
            for (score, node) in scores.iter_mut().zip(nodes) {
                *score = plugin.score(pod, node, state);
            }
            plugin.normalize(&mut scores, state);
            for (t, s) in total.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        total
    }
}

/// The highest score wins; ties are broken uniformly at random (reservoir sampling).
fn select_host(nodes: &[&NodeInfo], scores: &[i64], rng: &mut Rng) -> String {
    let mut best = 0;
    let mut ties = 1;
    for i in 1..nodes.len() {
        if scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            if rng.below(ties) == 0 {
                best = i;
            }
        }
    }
    nodes[best].name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_nodes_follow_upstreams_adaptive_percentage() {
        assert_eq!(Framework::feasible_nodes_to_find(50), 50);
        assert_eq!(Framework::feasible_nodes_to_find(150), 100);
        assert_eq!(Framework::feasible_nodes_to_find(1000), 420);
        assert_eq!(Framework::feasible_nodes_to_find(5000), 500);
        assert_eq!(Framework::feasible_nodes_to_find(50_000), 2500);
    }

    #[test]
    fn fit_error_counts_and_sorts_reasons() {
        let taint = Rejection::new(
            "TaintToleration",
            Code::UnschedulableAndUnresolvable,
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
        );
        let cpu = Rejection::new("NodeResourcesFit", Code::Unschedulable, "Insufficient cpu");
        let error = FitError {
            num_nodes: 3,
            pre_filter: None,
            statuses: HashMap::from([
                ("a".to_owned(), taint),
                ("b".to_owned(), cpu.clone()),
                ("c".to_owned(), cpu),
            ]),
        };
        assert_eq!(
            error.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
        );
    }

    #[test]
    fn normalization_scales_to_the_best_and_reverses() {
        let mut scores = vec![0, 5, 10];
        default_normalize(&mut scores, false);
        assert_eq!(scores, vec![0, 50, 100]);
        let mut scores = vec![0, 5, 10];
        default_normalize(&mut scores, true);
        assert_eq!(scores, vec![100, 50, 0]);
    }
}
