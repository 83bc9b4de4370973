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
use super::{indexes, tracking};
use crate::replicaset::pods as replica_pods;

/// Upstream's `DefaultJobPodFailureBackOff` and its cap.
const BACKOFF_BASE: SignedDuration = SignedDuration::from_secs(10);
const BACKOFF_MAX: SignedDuration = SignedDuration::from_secs(360);
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
    pub delete: Vec<Arc<Pod>>,
    pub events: Vec<Event>,
    pub requeue: Option<Duration>,
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn finish_time(pod: &Pod) -> Option<Timestamp> {
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
        let limit = completions.unwrap_or(0);
        completed = indexes::parse(status.completed_indexes.as_deref().unwrap_or(""), limit);
        completed.extend(
            owned
                .iter()
                .filter(|p| tracking::outcome(p, job) == Some(true))
                .filter_map(|p| indexes::of(p))
                .filter(|i| *i < limit),
        );
        status.completed_indexes = Some(indexes::format(&completed));
    }

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
        let failures = failed + if on_failure { restarts(&active) } else { 0 };
        let deadline = spec
            .active_deadline_seconds
            .map(|s| start.0 + SignedDuration::from_secs(s));
        let success = match completions {
            _ if indexed => completed.len() as i32 >= completions.unwrap_or(0),
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        if success {
            conditions::set(
                &mut conds,
                SUCCESS_CRITERIA_MET,
                true,
                conditions::COMPLETIONS_REACHED,
                now,
            );
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
        } else {
            manage(
                job,
                &mut decision,
                &active,
                owned,
                succeeded,
                &completed,
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
            let reason = if reason == conditions::DEADLINE_EXCEEDED.0 {
                conditions::DEADLINE_EXCEEDED.0
            } else {
                conditions::BACKOFF_LIMIT_EXCEEDED.0
            };
            decision.events.push(Event {
                warning: true,
                reason,
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

/// Creates or deletes pods so the job runs as many as it should now.
#[allow(clippy::too_many_arguments)]
fn manage(
    job: &Job,
    decision: &mut Decision,
    active: &[&Arc<Pod>],
    owned: &[Arc<Pod>],
    succeeded: i32,
    completed: &BTreeSet<i32>,
    satisfied: bool,
    now: Timestamp,
) {
    if !satisfied {
        return;
    }
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    let backoff = backoff_until(job, owned).filter(|t| *t > now);
    if is_indexed(job) && spec.completions.is_some() {
        let completions = spec.completions.unwrap_or(0);
        // One active pod per pending index: pods of completed or duplicate indexes go.
        let mut by_index: BTreeMap<i32, Vec<&Arc<Pod>>> = BTreeMap::new();
        for pod in active {
            match indexes::of(pod).filter(|i| *i < completions && !completed.contains(i)) {
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
        if running < parallelism && backoff.is_none() {
            let missing = (0..completions)
                .filter(|i| !completed.contains(i) && !by_index.contains_key(i))
                .take((parallelism - running).min(MAX_PER_SYNC));
            decision.create.extend(missing.map(Some));
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
        } else if active.len() < want && backoff.is_none() {
            decision.create = vec![None; (want - active.len()).min(MAX_PER_SYNC)];
        }
    }
    if let Some(at) = backoff {
        decision.requeue = Some(now.duration_until(at).unsigned_abs());
    }
}
