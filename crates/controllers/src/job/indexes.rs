//! Completion indexes of an Indexed Job: their compressed form in `status.completedIndexes` and
//! `status.failedIndexes` (`"1,3-5,7"`, as upstream writes it), and `backoffLimitPerIndex`, which
//! counts each index's failures in annotations handed from a failed pod to its replacement.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::policy::{self, Action};
use super::{conditions, plan, tracking};

pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
pub const FAILURE_COUNT_KEY: &str = "batch.kubernetes.io/job-index-failure-count";
pub const IGNORED_FAILURE_COUNT_KEY: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

/// The completion index a pod runs, from its annotation (or label), if valid.
pub fn of(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    let text = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_KEY))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(INDEX_KEY)))?;
    text.parse().ok().filter(|i: &i32| *i >= 0)
}

/// Parses `"1,3-5"`; entries that are not numbers or ranges below `limit` are ignored, as
/// upstream ignores indexes beyond `completions` after a scale down.
pub fn parse(text: &str, limit: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse(), part.parse()),
        };
        if let (Ok(first), Ok(last)) = (first, last) {
            set.extend((first.max(0)..=last.min(limit - 1)).filter(|i| *i < limit));
        }
    }
    set
}

/// Formats indexes as upstream does: ascending, consecutive runs as `a-b`.
pub fn format(set: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &i in set {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else if a + 1 == b {
                format!("{a},{b}")
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The pod's index if it is one the job runs (below `completions`).
pub fn valid(job: &Job, pod: &Pod) -> Option<i32> {
    let completions = job.spec.as_ref()?.completions?;
    of(pod).filter(|i| *i < completions)
}

/// `backoffLimitPerIndex`, for an Indexed job with completions.
pub fn backoff_limit_per_index(job: &Job) -> Option<i32> {
    let spec = job.spec.as_ref()?;
    spec.completions?;
    plan::is_indexed(job).then_some(spec.backoff_limit_per_index?)
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    let value = pod.metadata.annotations.as_ref().and_then(|a| a.get(key));
    // A missing, garbled or negative count is 0, as upstream reads it.
    value
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// The failures of the pod's index before this pod: (counted, ignored by the policy).
pub fn failure_counts(pod: &Pod) -> (i32, i32) {
    (
        annotation_count(pod, FAILURE_COUNT_KEY),
        annotation_count(pod, IGNORED_FAILURE_COUNT_KEY),
    )
}

/// The counts a replacement for `replaced` (the index's last failed pod) starts with.
pub fn replacement_failure_counts(job: &Job, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(pod) = replaced else {
        return (0, 0);
    };
    let (counted, ignored) = failure_counts(pod);
    if policy::counts(job, pod) {
        (counted.saturating_add(1), ignored)
    } else {
        (counted, ignored.saturating_add(1))
    }
}

/// Whether this pod's failure fails its index: a FailIndex rule matched it, or it was a counted
/// failure with the index's failures already at `backoffLimitPerIndex`.
fn fails_index(job: &Job, pod: &Pod, limit: i32) -> bool {
    if tracking::outcome(pod, job) != Some(false) {
        return false;
    }
    match policy::matching_rule(job, pod) {
        Some((Action::FailIndex, _)) => true,
        Some((Action::Ignore, _)) => false,
        _ => failure_counts(pod).0 >= limit,
    }
}

/// Succeeded indexes: those recorded in the status and those of succeeded pods.
pub fn succeeded(job: &Job, owned: &[Arc<Pod>]) -> BTreeSet<i32> {
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let status = job.status.as_ref();
    let recorded = status.and_then(|s| s.completed_indexes.as_deref());
    let mut set = parse(recorded.unwrap_or(""), completions);
    set.extend(
        owned
            .iter()
            .filter(|p| tracking::outcome(p, job) == Some(true))
            .filter_map(|p| valid(job, p)),
    );
    set
}

/// Failed indexes: those recorded in the status and those of failed pods not yet counted (still
/// holding the finalizer) that fail their index. Empty without `backoffLimitPerIndex`.
pub fn failed(job: &Job, owned: &[Arc<Pod>]) -> BTreeSet<i32> {
    let Some(limit) = backoff_limit_per_index(job) else {
        return BTreeSet::new();
    };
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let recorded = job
        .status
        .as_ref()
        .and_then(|s| s.failed_indexes.as_deref());
    let mut set = parse(recorded.unwrap_or(""), completions);
    set.extend(
        owned
            .iter()
            .filter(|p| tracking::has_finalizer(p) && fails_index(job, p, limit))
            .filter_map(|p| valid(job, p)),
    );
    set
}

/// Per pending index, the last failed pod whose finalizer stays on until its replacement
/// exists, so the replacement can take over the index's failure counts (upstream's pods with
/// delayed deletion). Empty once the job is decided or being deleted.
pub fn awaiting_replacement(job: &Job, owned: &[Arc<Pod>]) -> BTreeMap<i32, Arc<Pod>> {
    let mut awaiting: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    if backoff_limit_per_index(job).is_none()
        || conditions::target(job).is_some()
        || job.metadata.deletion_timestamp.is_some()
    {
        return awaiting;
    }
    let (done, failed) = (succeeded(job, owned), failed(job, owned));
    let active: BTreeSet<i32> = owned
        .iter()
        .filter(|p| !tracking::is_finished(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| of(p))
        .collect();
    let total = |p: &Pod| {
        let (counted, ignored) = failure_counts(p);
        counted.saturating_add(ignored)
    };
    for pod in owned {
        if !tracking::has_finalizer(pod) || tracking::outcome(pod, job) != Some(false) {
            continue;
        }
        let Some(index) = valid(job, pod) else {
            continue;
        };
        if done.contains(&index) || failed.contains(&index) || active.contains(&index) {
            continue;
        }
        let later = awaiting.get(&index).is_none_or(|last| {
            total(last) <= total(pod) && plan::finish_time(pod) >= plan::finish_time(last)
        });
        if later {
            awaiting.insert(index, pod.clone());
        }
    }
    awaiting
}

/// When an index whose last failed pod is `last` may run again: 10s after that failure,
/// doubling with each earlier failure of the index, capped at six minutes.
pub fn backoff_until(last: &Pod) -> Option<Timestamp> {
    let (counted, ignored) = failure_counts(last);
    let doublings = counted.saturating_add(ignored).clamp(0, 16) as u32;
    let delay = plan::BACKOFF_BASE
        .checked_mul(1 << doublings)
        .unwrap_or(plan::BACKOFF_MAX)
        .min(plan::BACKOFF_MAX);
    Some(plan::finish_time(last)? + delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip_in_upstreams_compressed_form() {
        let set = parse("0,2-4,7", 10);
        assert_eq!(set, BTreeSet::from([0, 2, 3, 4, 7]));
        assert_eq!(format(&set), "0,2-4,7");
        assert_eq!(parse("0,2-4,7", 3), BTreeSet::from([0, 2]));
        assert_eq!(format(&BTreeSet::new()), "");
        // Upstream writes a run of two as two numbers.
        assert_eq!(format(&BTreeSet::from([1, 2, 5])), "1,2,5");
    }
}
