//! What one Job sync does, decided from its status and cached pods alone: which pods to
//! create (and at which completion index) or delete, which conditions to set, and when to
//! look again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::conditions::{self, FAILURE_TARGET, SUCCESS_CRITERIA_MET, SUSPENDED};
use super::tracking::FinalizerRemovals;
use super::{indexes, policy, tracking};
use crate::replicaset::pods as replica_pods;

/// Upstream's `DefaultJobPodFailureBackOff` and its cap.
pub const BACKOFF_BASE: SignedDuration = SignedDuration::from_secs(10);
pub const BACKOFF_MAX: SignedDuration = SignedDuration::from_secs(360);
/// Upstream's `MaxPodCreateDeletePerSync`.
const MAX_PER_SYNC: usize = 500;

#[derive(Debug, PartialEq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Debug, Default)]
pub struct Decision {
    pub status: JobStatus,
    /// Pods to create: `Some(index)` for an Indexed job.
    pub create: Vec<Option<i32>>,
    /// With `backoffLimitPerIndex`, the (counted, ignored) failures each created index's pod
    /// carries over from the pod it replaces.
    pub index_failures: BTreeMap<i32, (i32, i32)>,
    pub delete: Vec<Arc<Pod>>,
    pub events: Vec<Event>,
    pub requeue: Option<Duration>,
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

pub fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    terminated.or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

/// When the next replacement pod may start: 10s after the last failure, doubling with every
/// failure since the last success, capped at six minutes (upstream's pod failure back-off).
pub fn backoff_until(job: &Job, owned: &[Arc<Pod>]) -> Option<Timestamp> {
    let finished = |want: bool| {
        owned
            .iter()
            .filter(move |p| tracking::outcome(p, job) == Some(want))
            .filter_map(|p| finish_time(p))
    };
    let last_success = finished(true).max();
    let failures: Vec<Timestamp> = finished(false)
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = *failures.iter().max()?;
    let doublings = (failures.len() as u32 - 1).min(16);
    let delay = BACKOFF_BASE
        .checked_mul(1 << doublings)
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX);
    Some(last + delay)
}

fn restarts(pods: &[&Arc<Pod>]) -> i32 {
    pods.iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum()
}

/// The status to write before any finalizer comes off, so nothing a pod tells is lost with it:
/// finished pods recorded as uncounted, failed indexes, and a pod failure policy's FailJob
/// verdict (upstream records the interim FailureTarget first for the same reason).
pub fn before_release(
    job: &Job,
    owned: &[Arc<Pod>],
    removals: &FinalizerRemovals,
    now: Timestamp,
) -> JobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    let uncounted = tracking::record_finished(job, owned, removals, now);
    let recorded = Some(uncounted).filter(|u| u.succeeded.is_some() || u.failed.is_some());
    status.uncounted_terminated_pods = recorded;
    if indexes::backoff_limit_per_index(job).is_some() {
        status.failed_indexes = Some(indexes::format(&indexes::failed(job, owned)));
    }
    if conditions::target(job).is_none()
        && let Some(message) = policy::fail_job_message(job, owned)
    {
        let conds = status.conditions.get_or_insert_default();
        let reason = (conditions::POD_FAILURE_POLICY, message.as_str());
        conditions::set(conds, FAILURE_TARGET, true, reason, now);
    }
    status
}

/// Decides one sync. `status` is the job's status with finished pods already recorded;
/// `owned` are the pods the job controls; `satisfied` says the cache shows this controller's
/// last creates and deletes.
pub fn decide(
    job: &Job,
    mut status: JobStatus,
    owned: &[Arc<Pod>],
    satisfied: bool,
    now: Timestamp,
) -> Decision {
    let spec = job.spec.clone().unwrap_or_default();
    let mut decision = Decision::default();
    let mut conds = status.conditions.take().unwrap_or_default();
    let active: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| !tracking::is_finished(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let terminating = owned.iter().filter(|p| tracking::is_terminating(p)).count() as i32;
    status.ready = Some(active.iter().filter(|p| replica_pods::is_ready(p)).count() as i32);
    status.terminating = Some(terminating);
    let (succeeded, failed) = tracking::totals(&status);

    let completions = spec.completions;
    let indexed = is_indexed(job) && completions.is_some();
    let mut completed = BTreeSet::new();
    if indexed {
        completed = indexes::succeeded(job, owned);
        status.completed_indexes = Some(indexes::format(&completed));
    }
    let per_index = indexes::backoff_limit_per_index(job).is_some();
    let failed_indexes = indexes::failed(job, owned);
    if per_index {
        status.failed_indexes = Some(indexes::format(&failed_indexes));
    }
    let awaiting = indexes::awaiting_replacement(job, owned);

    let suspended = super::is_suspended(job);
    let deciding = conditions::target(job).is_some();
    if suspended && !deciding {
        if conditions::set(
            &mut conds,
            SUSPENDED,
            true,
            ("JobSuspended", "Job suspended"),
            now,
        ) {
            decision.events.push(normal("Suspended", "Job suspended"));
        }
        decision.delete = active.iter().map(|p| (*p).clone()).collect();
        status.active = Some(0);
        status.conditions = Some(conds);
        decision.status = status;
        return decision;
    }
    if conditions::is_true(&conds, SUSPENDED) {
        conditions::set(
            &mut conds,
            SUSPENDED,
            false,
            ("JobResumed", "Job resumed"),
            now,
        );
        // Resuming restarts the activeDeadlineSeconds clock, as upstream does.
        status.start_time = Some(Time(now));
        decision.events.push(normal("Resumed", "Job resumed"));
    }
    let start = status.start_time.get_or_insert(Time(now)).clone();

    if !deciding {
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let on_failure = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        // Failed pods awaiting their replacement are not recorded yet but count all the same.
        let unrecorded = awaiting.values().filter(|p| policy::counts(job, p)).count() as i32;
        let failures = failed + unrecorded + if on_failure { restarts(&active) } else { 0 };
        let deadline = spec
            .active_deadline_seconds
            .map(|s| start.0 + SignedDuration::from_secs(s));
        let success = match completions {
            _ if indexed => completed.len() as i32 >= completions.unwrap_or(0),
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        let max_failed = spec.max_failed_indexes;
        let policy_success = indexed
            .then(|| policy::success_met(job, completions.unwrap_or(0), &completed))
            .flatten();
        // Upstream's order: the pod failure policy, the backoff limit, the deadline, failed
        // indexes, then success.
        if let Some(message) = policy::fail_job_message(job, owned) {
            let reason = (conditions::POD_FAILURE_POLICY, message.as_str());
            conditions::set(&mut conds, FAILURE_TARGET, true, reason, now);
        } else if failures > backoff_limit {
            conditions::set(
                &mut conds,
                FAILURE_TARGET,
                true,
                conditions::BACKOFF_LIMIT_EXCEEDED,
                now,
            );
        } else if deadline.is_some_and(|d| d <= now) {
            conditions::set(
                &mut conds,
                FAILURE_TARGET,
                true,
                conditions::DEADLINE_EXCEEDED,
                now,
            );
        } else if per_index && max_failed.is_some_and(|m| failed_indexes.len() as i32 > m) {
            conditions::set(
                &mut conds,
                FAILURE_TARGET,
                true,
                conditions::MAX_FAILED_INDEXES_EXCEEDED,
                now,
            );
        } else if per_index
            && !failed_indexes.is_empty()
            && (failed_indexes.len() + completed.len()) as i32 >= completions.unwrap_or(0)
        {
            conditions::set(
                &mut conds,
                FAILURE_TARGET,
                true,
                conditions::FAILED_INDEXES,
                now,
            );
        } else if let Some(message) = policy_success {
            let reason = (conditions::SUCCESS_POLICY, message.as_str());
            conditions::set(&mut conds, SUCCESS_CRITERIA_MET, true, reason, now);
        } else if success {
            conditions::set(
                &mut conds,
                SUCCESS_CRITERIA_MET,
                true,
                conditions::COMPLETIONS_REACHED,
                now,
            );
        } else {
            let done = Indexes {
                completed: &completed,
                failed: &failed_indexes,
                awaiting: &awaiting,
            };
            manage(
                job,
                &mut decision,
                &active,
                owned,
                succeeded,
                done,
                satisfied,
                now,
            );
            let waits = [decision.requeue.map(|d| now + d), deadline];
            decision.requeue = waits
                .into_iter()
                .flatten()
                .min()
                .map(|at| now.duration_until(at).unsigned_abs() + Duration::from_millis(100));
        }
    }

    let decided = conds
        .iter()
        .find(|c| {
            (c.type_ == SUCCESS_CRITERIA_MET || c.type_ == FAILURE_TARGET) && c.status == "True"
        })
        .cloned();
    if let Some(target) = decided {
        decision.delete = active.iter().map(|p| (*p).clone()).collect();
        decision.create.clear();
        // The terminal condition waits until no pod of the job can still run or be counted.
        let settled = active.is_empty()
            && terminating == 0
            && status.uncounted_terminated_pods.is_none()
            && owned.iter().all(|p| !tracking::has_finalizer(p));
        let reason = target.reason.clone().unwrap_or_default();
        let message = target.message.clone().unwrap_or_default();
        if settled && target.type_ == SUCCESS_CRITERIA_MET {
            if conditions::set(
                &mut conds,
                conditions::COMPLETE,
                true,
                (&reason, &message),
                now,
            ) {
                status.completion_time = Some(Time(now));
                decision.events.push(normal("Completed", "Job completed"));
            }
        } else if settled
            && conditions::set(
                &mut conds,
                conditions::FAILED,
                true,
                (&reason, &message),
                now,
            )
        {
            // The warning carries the failure's reason, as upstream's does.
            decision.events.push(Event {
                warning: true,
                reason: conditions::event_reason(&reason),
                note: message,
            });
        }
        decision.requeue = None;
    }
    let deleting = decision.delete.len() as i32;
    status.active = Some(active.len() as i32 - deleting + decision.create.len() as i32);
    status.conditions = (!conds.is_empty()).then_some(conds);
    decision.status = status;
    decision
}

fn normal(reason: &'static str, note: &str) -> Event {
    Event {
        warning: false,
        reason,
        note: note.to_owned(),
    }
}

/// An Indexed job's finished indexes, and the failed pods awaiting replacement per index.
#[derive(Clone, Copy)]
struct Indexes<'a> {
    completed: &'a BTreeSet<i32>,
    failed: &'a BTreeSet<i32>,
    awaiting: &'a BTreeMap<i32, Arc<Pod>>,
}

/// Creates or deletes pods so the job runs as many as it should now.
#[allow(clippy::too_many_arguments)]
fn manage(
    job: &Job,
    decision: &mut Decision,
    active: &[&Arc<Pod>],
    owned: &[Arc<Pod>],
    succeeded: i32,
    done: Indexes,
    satisfied: bool,
    now: Timestamp,
) {
    if !satisfied {
        return;
    }
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    let per_index = indexes::backoff_limit_per_index(job).is_some();
    // With backoffLimitPerIndex each index backs off on its own instead.
    let backoff = backoff_until(job, owned)
        .filter(|t| *t > now)
        .filter(|_| !per_index);
    // Pods still terminating hold their place when only failed pods are replaced.
    let terminating: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| tracking::only_replace_failed(job) && tracking::is_terminating(p))
        .collect();
    if is_indexed(job) && spec.completions.is_some() {
        let completions = spec.completions.unwrap_or(0);
        let pending = |i: &i32| !done.completed.contains(i) && !done.failed.contains(i);
        // One active pod per pending index: pods of finished or duplicate indexes go.
        let mut by_index: BTreeMap<i32, Vec<&Arc<Pod>>> = BTreeMap::new();
        for pod in active {
            match indexes::of(pod).filter(|i| *i < completions && pending(i)) {
                Some(i) => by_index.entry(i).or_default().push(pod),
                None => decision.delete.push((*pod).clone()),
            }
        }
        for pods in by_index.values() {
            decision
                .delete
                .extend(pods.iter().skip(1).map(|p| (*p).clone()));
        }
        let running = by_index.len();
        let held: BTreeSet<i32> = terminating.iter().filter_map(|p| indexes::of(p)).collect();
        let room = parallelism.saturating_sub(running + held.len());
        if room > 0 && backoff.is_none() {
            let missing: Vec<i32> = (0..completions)
                .filter(|i| pending(i) && !by_index.contains_key(i) && !held.contains(i))
                .take(room.min(MAX_PER_SYNC))
                .collect();
            let ready_at = |i: &i32| {
                done.awaiting
                    .get(i)
                    .and_then(|p| indexes::backoff_until(p))
                    .filter(|t| *t > now)
            };
            let ready: Vec<i32> = missing
                .iter()
                .copied()
                .filter(|i| ready_at(i).is_none())
                .collect();
            // Like upstream, wait for the soonest index only when none can start now.
            if ready.is_empty()
                && let Some(at) = missing.iter().filter_map(ready_at).min()
            {
                decision.requeue = Some(now.duration_until(at).unsigned_abs());
            }
            if per_index {
                for i in &ready {
                    let replaced = done.awaiting.get(i).map(|p| p.as_ref());
                    let counts = indexes::replacement_failure_counts(job, replaced);
                    decision.index_failures.insert(*i, counts);
                }
            }
            decision.create.extend(ready.into_iter().map(Some));
        } else if running > parallelism {
            let extra: Vec<_> = by_index
                .values()
                .rev()
                .take(running - parallelism)
                .collect();
            decision
                .delete
                .extend(extra.into_iter().map(|p| p[0].clone()));
        }
    } else {
        let want = match spec.completions {
            None if succeeded > 0 => active.len(),
            None => parallelism,
            Some(c) => ((c - succeeded).max(0) as usize).min(parallelism),
        };
        if active.len() > want {
            let mut ranked: Vec<Arc<Pod>> = active.iter().map(|p| (*p).clone()).collect();
            replica_pods::deletion_order(&mut ranked);
            ranked.truncate((active.len() - want).min(MAX_PER_SYNC));
            decision.delete = ranked;
        } else if active.len() + terminating.len() < want && backoff.is_none() {
            let missing = want - active.len() - terminating.len();
            decision.create = vec![None; missing.min(MAX_PER_SYNC)];
        }
    }
    if let Some(at) = backoff {
        decision.requeue = Some(now.duration_until(at).unsigned_abs());
    }
}
