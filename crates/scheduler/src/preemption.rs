//! DefaultPreemption: when a pod fits nowhere, find the node where evicting the fewest and
//! least important lower-priority pods makes it fit, as upstream's PostFilter does. The victims
//! are deleted gracefully and the pod is nominated to that node.

use std::sync::Arc;

use crate::cache::{Cache, PodInfo};
use crate::framework::{Code, CycleState, FitError, Framework, Rejection, reason_histogram};

const NAME: &str = "DefaultPreemption";

#[derive(Debug)]
pub struct Preemption {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Either a node to nominate with its victims, or upstream's `preemption: …` message.
pub fn preempt(
    framework: &Framework,
    pod: &PodInfo,
    cluster: &Cache,
    fit: &FitError,
    state: &CycleState,
) -> Result<Preemption, String> {
    if pod.spec().preemption_policy.as_deref() == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".to_owned());
    }
    let active = state.read::<Vec<usize>>(crate::framework::ACTIVE_FILTERS);
    let mut statuses: Vec<Rejection> = Vec::new();
    let mut best: Option<((i32, i64, usize), Preemption)> = None;
    for node in cluster.nodes() {
        let status = fit.statuses.get(&node.name).or(fit.pre_filter.as_ref());
        let (Some(active), Some(status)) = (active, status) else {
            statuses.push(not_helpful());
            continue;
        };
        if status.code == Code::UnschedulableAndUnresolvable {
            statuses.push(not_helpful());
            continue;
        }
        let mut lower: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        if lower.is_empty() {
            statuses.push(Rejection::new(
                NAME,
                Code::UnschedulableAndUnresolvable,
                "No preemption victims found for incoming pod",
            ));
            continue;
        }
        let mut trial = node.clone();
        for victim in &lower {
            trial.remove_pod(&victim.uid);
        }
        if let Err(rejection) = framework.filter(active, pod, &trial, state) {
            statuses.push(rejection);
            continue;
        }
        // Give back as many victims as still let the pod fit, most important first.
        lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
        let mut victims = Vec::new();
        for candidate in lower {
            trial.add_pod(candidate.clone());
            if framework.filter(active, pod, &trial, state).is_err() {
                trial.remove_pod(&candidate.uid);
                victims.push(candidate);
            }
        }
        if victims.is_empty() {
            continue;
        }
        let rank = (
            victims.iter().map(|v| v.priority).max().unwrap_or(0),
            victims.iter().map(|v| i64::from(v.priority)).sum::<i64>(),
            victims.len(),
        );
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((
                rank,
                Preemption {
                    node: node.name.clone(),
                    victims,
                },
            ));
        }
    }
    if let Some((_, preemption)) = best {
        return Ok(preemption);
    }
    let mut message = format!(
        "preemption: 0/{} nodes are available:",
        cluster.nodes().len()
    );
    let histogram = reason_histogram(statuses.iter());
    if !histogram.is_empty() {
        message.push(' ');
        message.push_str(&histogram.join(", "));
        message.push('.');
    }
    Err(message)
}

fn not_helpful() -> Rejection {
    Rejection::new(
        NAME,
        Code::UnschedulableAndUnresolvable,
        "Preemption is not helpful for scheduling",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, pod};
    use crate::framework::{Rng, ScheduleError};
    use crate::plugins::default_plugins;

    fn prioritized(name: &str, cpu: &str, priority: i32) -> Arc<PodInfo> {
        let mut p = pod(name, cpu, "");
        p.spec.as_mut().unwrap().priority = Some(priority);
        Arc::new(PodInfo::new(p))
    }

    fn attempt(cache: &mut Cache, incoming: &PodInfo) -> Result<Preemption, String> {
        let framework = Framework::new(default_plugins(Default::default()));
        match framework.schedule(incoming, cache, &mut Rng::new(1)) {
            Err(ScheduleError::Fit(failure)) => {
                preempt(&framework, incoming, cache, &failure.0, &failure.1)
            }
            _ => panic!("the pod should not fit"),
        }
    }

    #[test]
    fn a_higher_priority_pod_evicts_only_what_it_needs() {
        let mut cache = Cache::default();
        cache.upsert_node(node("n1", "2", "4Gi", "110"));
        cache.add_bound_pod(prioritized("low-1", "1", 0), "n1");
        cache.add_bound_pod(prioritized("low-2", "1", 10), "n1");
        let preemption = attempt(&mut cache, &prioritized("high", "1", 1000)).unwrap();
        assert_eq!(preemption.node, "n1");
        let victims: Vec<&str> = preemption.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(victims, vec!["low-1"]);
    }

    #[test]
    fn equal_priority_pods_are_never_victims() {
        let mut cache = Cache::default();
        cache.upsert_node(node("n1", "1", "4Gi", "110"));
        cache.add_bound_pod(prioritized("peer", "1", 5), "n1");
        let message = attempt(&mut cache, &prioritized("new", "1", 5)).unwrap_err();
        assert_eq!(
            message,
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn preemption_policy_never_is_respected() {
        let mut cache = Cache::default();
        cache.upsert_node(node("n1", "1", "4Gi", "110"));
        cache.add_bound_pod(prioritized("low", "1", 0), "n1");
        let mut p = pod("polite", "1", "");
        p.spec.as_mut().unwrap().priority = Some(100);
        p.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        let message = attempt(&mut cache, &PodInfo::new(p)).unwrap_err();
        assert_eq!(
            message,
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
