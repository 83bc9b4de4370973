//! Counting finished pods exactly once, as upstream's job-tracking finalizer does: a finished
//! pod keeps `batch.kubernetes.io/job-tracking` until its uid is recorded in
//! `status.uncountedTerminatedPods`; then the finalizer comes off, and only then is the uid
//! moved into `succeeded`/`failed`. Any step may be interrupted and redone without counting
//! a pod twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{conditions, indexes, plan, policy};

pub const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// After this long an unseen finalizer removal is assumed lost (upstream's expectations
/// timeout).
const REMOVAL_TIMEOUT: SignedDuration = SignedDuration::from_secs(300);

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// Being deleted before it finished.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !is_finished(pod)
}

/// How a pod ended, if it did: `Some(true)` succeeded, `Some(false)` failed. A pod deleted
/// before finishing counts as failed (upstream's `isPodFailed` with the default
/// TerminatingOrFailed replacement), unless this controller deleted it because the job is
/// suspended or already decided.
pub fn outcome(pod: &Pod, job: &Job) -> Option<bool> {
    match phase(pod) {
        Some("Succeeded") => Some(true),
        Some("Failed") => Some(false),
        _ if pod.metadata.deletion_timestamp.is_some() => {
            let deliberate = super::is_suspended(job) || conditions::target(job).is_some();
            (!deliberate && !only_replace_failed(job)).then_some(false)
        }
        _ => None,
    }
}

/// Whether a pod being deleted is replaced only once it has failed; always so with a pod
/// failure policy, which needs the pod's final status to match against.
pub fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// A failed pod that never enters the counters: an Ignore rule matched it, or it ran an index
/// outside the job's completions.
fn uncountable(job: &Job, pod: &Pod) -> bool {
    let out_of_range = plan::is_indexed(job) && indexes::valid(job, pod).is_none();
    outcome(pod, job) == Some(false) && (out_of_range || !policy::counts(job, pod))
}

fn awaits_replacement(awaiting: &[Arc<Pod>], pod: &Pod) -> bool {
    awaiting.iter().any(|p| p.metadata.uid == pod.metadata.uid)
}

/// Pods whose finalizer removal this controller has asked for and its cache has not shown
/// yet, by uid. Until then their pod still looks uncounted, and must not be recorded again.
#[derive(Default)]
pub struct FinalizerRemovals {
    pending: Mutex<HashMap<String, Timestamp>>,
}

impl FinalizerRemovals {
    pub fn requested(&self, uid: &str, now: Timestamp) {
        self.pending.lock().unwrap().insert(uid.to_owned(), now);
    }

    /// Whether a removal for this pod is still in flight; forgets ones the cache has caught up
    /// with or that are too old to wait for.
    pub fn in_flight(&self, pod: &Pod, now: Timestamp) -> bool {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let mut pending = self.pending.lock().unwrap();
        let Some(since) = pending.get(uid) else {
            return false;
        };
        let expired = *since + REMOVAL_TIMEOUT <= now;
        if !has_finalizer(pod) || expired {
            pending.remove(uid);
            return false;
        }
        true
    }
}

/// The uncounted pods after recording every finished pod that still has the finalizer.
pub fn record_finished(
    job: &Job,
    owned: &[Arc<Pod>],
    removals: &FinalizerRemovals,
    now: Timestamp,
) -> UncountedTerminatedPods {
    let status = job.status.clone().unwrap_or_default();
    let mut uncounted = status.uncounted_terminated_pods.unwrap_or_default();
    let awaiting: Vec<Arc<Pod>> = indexes::awaiting_replacement(job, owned)
        .into_values()
        .collect();
    for pod in owned {
        let Some(succeeded) = outcome(pod, job) else {
            continue;
        };
        if !has_finalizer(pod) || removals.in_flight(pod, now) {
            continue;
        }
        if uncountable(job, pod) || awaits_replacement(&awaiting, pod) {
            continue;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let list = if succeeded {
            uncounted.succeeded.get_or_insert_default()
        } else {
            uncounted.failed.get_or_insert_default()
        };
        if !list.contains(&uid) {
            list.push(uid);
        }
    }
    uncounted
}

fn is_uncounted(uncounted: &UncountedTerminatedPods, uid: &str) -> bool {
    [&uncounted.succeeded, &uncounted.failed]
        .into_iter()
        .flatten()
        .any(|list| list.iter().any(|u| u == uid))
}

/// Pods whose finalizer may come off: recorded as uncounted, failed but never counted (unless
/// awaiting their replacement), or any pod once the job is finished or being deleted (nothing
/// more will be counted).
pub fn finalizers_to_remove(job: &Job, owned: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let status = job.status.clone().unwrap_or_default();
    let uncounted = status.uncounted_terminated_pods.unwrap_or_default();
    let done = conditions::finished(job).is_some() || job.metadata.deletion_timestamp.is_some();
    let awaiting: Vec<Arc<Pod>> = indexes::awaiting_replacement(job, owned)
        .into_values()
        .collect();
    owned
        .iter()
        .filter(|p| has_finalizer(p))
        .filter(|p| {
            done || is_uncounted(&uncounted, p.metadata.uid.as_deref().unwrap_or(""))
                || (uncountable(job, p) && !awaits_replacement(&awaiting, p))
        })
        .cloned()
        .collect()
}

/// Moves uncounted uids whose pod no longer holds the finalizer into the counters.
/// `still_held(uid)` says whether a pod with that uid still carries it.
pub fn flush(status: &mut JobStatus, still_held: impl Fn(&str) -> bool) {
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let move_out = |list: &mut Option<Vec<String>>, counter: &mut Option<i32>| {
        let uids = list.take().unwrap_or_default();
        let (held, released): (Vec<_>, Vec<_>) = uids.into_iter().partition(|u| still_held(u));
        if !released.is_empty() {
            *counter = Some(counter.unwrap_or(0) + released.len() as i32);
        }
        *list = (!held.is_empty()).then_some(held);
    };
    move_out(&mut uncounted.succeeded, &mut status.succeeded);
    move_out(&mut uncounted.failed, &mut status.failed);
    let empty = uncounted.succeeded.is_none() && uncounted.failed.is_none();
    status.uncounted_terminated_pods = (!empty).then_some(uncounted);
}

/// Counts including pods recorded but not yet flushed: (succeeded, failed).
pub fn totals(status: &JobStatus) -> (i32, i32) {
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let len = |l: &Option<Vec<String>>| l.as_ref().map_or(0, Vec::len) as i32;
    (
        status.succeeded.unwrap_or(0) + len(&uncounted.succeeded),
        status.failed.unwrap_or(0) + len(&uncounted.failed),
    )
}
