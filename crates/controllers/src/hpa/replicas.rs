//! The replica count an autoscaler recommends, as upstream's replica calculator works it out:
//! usage over requests against the target, a 10% tolerance, pods without metrics or not yet
//! ready counted so as to damp the change, then behaviour policies and stabilization.

use std::collections::BTreeMap;

/// Upstream's `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;

/// One pod as the calculator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub name: String,
    /// The pod's request for the resource (sum over its containers), in milli-units.
    pub request: Option<i64>,
    /// Its usage from the metrics API, if reported.
    pub usage: Option<i64>,
    /// Ready, and (for CPU) past its initial readiness period: its usage counts as is.
    pub ready: bool,
}

/// What the resource metric gives: the recommended count, and the current utilization (%)
/// and average value (milli-units) for the status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    pub replicas: i32,
    pub utilization: Option<i32>,
    pub average_milli: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Percent of request.
    Utilization(i32),
    /// Milli-units per pod.
    AverageValue(i64),
}

/// Upstream's `GetResourceReplicas` / `GetRawResourceReplicas` over the samples.
pub fn resource_replicas(
    current: i32,
    samples: &[PodSample],
    target: &Target,
) -> Result<Recommendation, String> {
    if samples.is_empty() {
        return Err("no pods match the target's selector".into());
    }
    let with_metrics: Vec<&PodSample> = samples.iter().filter(|p| p.usage.is_some()).collect();
    if with_metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    if let Target::Utilization(_) = target
        && let Some(p) = samples.iter().find(|p| p.request.is_none())
    {
        return Err(format!(
            "missing request for the resource in pod {}",
            p.name
        ));
    }
    let ready: Vec<&PodSample> = with_metrics.iter().copied().filter(|p| p.ready).collect();
    let unready_count = with_metrics.len() - ready.len();
    let missing: Vec<&PodSample> = samples.iter().filter(|p| p.usage.is_none()).collect();
    let ratio_of = |pods: &[&PodSample], extra: &[(i64, i64)]| -> (f64, i64, i64) {
        let usage: i64 = pods.iter().map(|p| p.usage.unwrap_or(0)).sum::<i64>()
            + extra.iter().map(|e| e.0).sum::<i64>();
        let requests: i64 = pods.iter().map(|p| p.request.unwrap_or(0)).sum::<i64>()
            + extra.iter().map(|e| e.1).sum::<i64>();
        let count = (pods.len() + extra.len()) as i64;
        let ratio = match target {
            Target::Utilization(percent) => {
                if requests == 0 {
                    0.0
                } else {
                    (usage as f64 / requests as f64) / (f64::from(*percent) / 100.0)
                }
            }
            Target::AverageValue(value) => {
                (usage as f64 / count.max(1) as f64) / (*value as f64).max(1.0)
            }
        };
        (ratio, usage, requests)
    };
    let (ratio, usage, requests) = ratio_of(&ready, &[]);
    let utilization = match target {
        Target::Utilization(_) if requests > 0 => Some(((usage * 100) / requests) as i32),
        _ => None,
    };
    let average_milli = usage / ready.len().max(1) as i64;
    let recommendation = |replicas| Recommendation {
        replicas,
        utilization,
        average_milli,
    };
    if ready.is_empty() {
        // Only unready pods have metrics: nothing trustworthy to act on.
        return Ok(recommendation(current));
    }
    if missing.is_empty() && unready_count == 0 {
        if (ratio - 1.0).abs() <= TOLERANCE {
            return Ok(recommendation(current));
        }
        return Ok(recommendation((ratio * ready.len() as f64).ceil() as i32));
    }
    // Damp the change: missing pods count as using their whole request when scaling down and
    // nothing when scaling up; unready pods count as using nothing when scaling up.
    let mut extra: Vec<(i64, i64)> = Vec::new();
    let scale_up = ratio > 1.0;
    for p in &missing {
        let request = p.request.unwrap_or(0);
        let assumed = match (target, scale_up) {
            (_, true) => 0,
            (Target::Utilization(_), false) => request,
            (Target::AverageValue(v), false) => *v,
        };
        extra.push((assumed, request));
    }
    if scale_up {
        for p in with_metrics.iter().filter(|p| !p.ready) {
            extra.push((0, p.request.unwrap_or(0)));
        }
    }
    let (new_ratio, _, _) = ratio_of(&ready, &extra);
    if (new_ratio - 1.0).abs() <= TOLERANCE || (ratio > 1.0) != (new_ratio > 1.0) {
        return Ok(recommendation(current));
    }
    let count = ready.len() + extra.len();
    let proposed = (new_ratio * count as f64).ceil() as i32;
    // A change against the direction of the raw ratio would be a wrong turn: keep the count.
    if (new_ratio > 1.0 && proposed < current) || (new_ratio < 1.0 && proposed > current) {
        return Ok(recommendation(current));
    }
    Ok(recommendation(proposed))
}

/// Scale-down stabilization (upstream's default window, 300 s): the highest recommendation
/// within the window wins, so a brief dip does not shed pods. `history` maps seconds since
/// some epoch to recommendations; old entries are dropped.
pub fn stabilize(
    history: &mut BTreeMap<i64, i32>,
    now: i64,
    recommended: i32,
    current: i32,
    down_window: i64,
    up_window: i64,
) -> i32 {
    history.insert(now, recommended);
    let keep_from = now - down_window.max(up_window);
    history.retain(|t, _| *t >= keep_from);
    let max_down = history
        .range(now - down_window..)
        .map(|(_, r)| *r)
        .max()
        .unwrap_or(recommended);
    let min_up = history
        .range(now - up_window..)
        .map(|(_, r)| *r)
        .min()
        .unwrap_or(recommended);
    if recommended < current {
        max_down.min(current)
    } else if recommended > current {
        min_up.max(current)
    } else {
        current
    }
}

/// Upstream's default scaling rate: up by at most max(4 pods, 100%) and down by at most 100%
/// per 15 s period.
pub fn rate_limit(current: i32, desired: i32) -> i32 {
    if desired > current {
        desired.min((current * 2).max(current + 4))
    } else {
        desired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, request: i64, usage: Option<i64>, ready: bool) -> PodSample {
        PodSample {
            name: name.into(),
            request: Some(request),
            usage,
            ready,
        }
    }

    #[test]
    fn utilization_over_target_scales_up_by_the_ratio() {
        let samples = [
            pod("a", 100, Some(100), true),
            pod("b", 100, Some(100), true),
        ];
        let r = resource_replicas(2, &samples, &Target::Utilization(50)).unwrap();
        assert_eq!(r.replicas, 4);
        assert_eq!(r.utilization, Some(100));
        assert_eq!(r.average_milli, 100);
    }

    #[test]
    fn within_tolerance_nothing_changes() {
        let samples = [pod("a", 100, Some(52), true), pod("b", 100, Some(53), true)];
        let r = resource_replicas(2, &samples, &Target::Utilization(50)).unwrap();
        assert_eq!(r.replicas, 2);
    }

    #[test]
    fn missing_metrics_damp_a_scale_down() {
        // Two pods idle, one without metrics: counted at its full request, the ratio is 0.8
        // over three pods, so the set stays at 3 rather than shrinking to 1.
        let samples = [
            pod("a", 100, Some(10), true),
            pod("b", 100, Some(10), true),
            pod("c", 100, None, true),
        ];
        let r = resource_replicas(3, &samples, &Target::Utilization(50)).unwrap();
        assert_eq!(r.replicas, 3);
    }

    #[test]
    fn unready_pods_count_as_idle_when_scaling_up() {
        let samples = [
            pod("a", 100, Some(200), true),
            pod("b", 100, Some(500), false),
        ];
        let r = resource_replicas(2, &samples, &Target::Utilization(50)).unwrap();
        // Ready usage 200/100 = 4× target; with b counted idle: 200/200 / 0.5 = 2× → 4 pods.
        assert_eq!(r.replicas, 4);
    }

    #[test]
    fn average_value_targets_divide_by_pods() {
        let samples = [pod("a", 0, Some(300), true), pod("b", 0, Some(300), true)];
        let r = resource_replicas(2, &samples, &Target::AverageValue(200)).unwrap();
        assert_eq!(r.replicas, 3);
        assert_eq!(r.utilization, None);
    }

    #[test]
    fn missing_requests_are_an_error_for_utilization() {
        let samples = [PodSample {
            name: "a".into(),
            request: None,
            usage: Some(1),
            ready: true,
        }];
        assert!(resource_replicas(1, &samples, &Target::Utilization(50)).is_err());
    }

    #[test]
    fn scale_down_waits_out_the_stabilization_window() {
        let mut history = BTreeMap::new();
        assert_eq!(stabilize(&mut history, 0, 5, 5, 300, 0), 5);
        assert_eq!(stabilize(&mut history, 100, 2, 5, 300, 0), 5);
        assert_eq!(stabilize(&mut history, 301, 2, 5, 300, 0), 2);
        assert_eq!(stabilize(&mut history, 302, 8, 2, 300, 0), 8);
    }

    #[test]
    fn scale_up_is_rate_limited() {
        assert_eq!(rate_limit(1, 20), 5);
        assert_eq!(rate_limit(10, 50), 20);
        assert_eq!(rate_limit(10, 3), 3);
    }
}
