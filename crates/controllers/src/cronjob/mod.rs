//! The CronJob controller: creates a Job (`<cronjob>-<scheduled minute in unix time>`) at each
//! scheduled time of `spec.schedule` in `spec.timeZone`, honouring startingDeadlineSeconds,
//! concurrencyPolicy (Allow, Forbid, Replace) and suspend, and keeps the configured history
//! of finished jobs.

pub mod schedule;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::Informers;

use crate::clock::Clock;
use crate::events::{self, EventRecorder};
use crate::job::conditions;
use crate::ownership;
use schedule::Schedule;

const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream warns past this many missed start times, and still starts the latest.
const TOO_MANY_MISSED: usize = 100;

#[derive(Debug, thiserror::Error)]
#[error("cronjob {key}: {action}: {source}")]
pub struct Error {
    key: String,
    action: String,
    source: kube::Error,
}

pub struct Context {
    pub client: Client,
    pub jobs: Store<Job>,
    pub clock: Arc<dyn Clock>,
    pub events: EventRecorder,
}

#[derive(Debug, PartialEq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// What one sync does, decided from the cronjob and its cached jobs.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Option<Job>,
    /// Jobs to delete: replaced active ones and finished ones beyond the history limits.
    pub delete: Vec<Arc<Job>>,
    pub status: CronJobStatus,
    pub events: Vec<Event>,
    pub requeue: Option<Duration>,
}

fn warning(reason: &'static str, note: String) -> Event {
    Event {
        warning: true,
        reason,
        note,
    }
}

fn normal(reason: &'static str, note: String) -> Event {
    Event {
        warning: false,
        reason,
        note,
    }
}

pub fn owned_jobs(cron_job: &CronJob, jobs: &Store<Job>) -> Vec<Arc<Job>> {
    let namespace = cron_job.namespace().unwrap_or_default();
    let uid = cron_job.metadata.uid.as_deref().unwrap_or_default();
    jobs.state_filter(|j| {
        j.metadata.namespace.as_deref() == Some(namespace.as_str())
            && ownership::controller_of(&j.metadata).is_some_and(|o| o.uid == uid)
    })
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        resource_version: None,
        ..events::reference("batch/v1", "Job", &job.metadata)
    }
}

/// The job for the run scheduled at `at` (upstream's `getJobFromTemplate2`).
pub fn job_for(cron_job: &CronJob, at: Timestamp, tz: &jiff::tz::TimeZone) -> Job {
    let spec = cron_job.spec.clone();
    let template = spec.job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        at.to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    );
    let name = cron_job.name_any();
    Job {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", at.as_second() / 60)),
            namespace: cron_job.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![ownership::controller_reference(
                "batch/v1",
                "CronJob",
                &name,
                cron_job.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn started(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref();
    status
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// Finished jobs beyond a history limit, oldest first.
fn beyond_limit(finished: &[&Arc<Job>], limit: Option<i32>) -> Vec<Arc<Job>> {
    let mut sorted: Vec<&Arc<Job>> = finished.to_vec();
    sorted.sort_by_key(|j| started(j));
    let keep = limit.unwrap_or(0).max(0) as usize;
    let excess = sorted.len().saturating_sub(keep);
    sorted.into_iter().take(excess).cloned().collect()
}

/// Decides one sync at `now`.
pub fn plan(cron_job: &CronJob, jobs: &[Arc<Job>], now: Timestamp) -> Plan {
    let spec = cron_job.spec.clone();
    let mut plan = Plan {
        status: cron_job.status.clone().unwrap_or_default(),
        ..Default::default()
    };
    let was_active = plan.status.active.clone().unwrap_or_default();
    let (finished, active): (Vec<&Arc<Job>>, Vec<&Arc<Job>>) =
        jobs.iter().partition(|j| conditions::finished(j).is_some());
    for job in &finished {
        let condition = conditions::finished(job)
            .map(|c| c.type_.clone())
            .unwrap_or_default();
        if was_active.iter().any(|r| r.uid == job.metadata.uid) {
            let note = format!(
                "Saw completed job: {}, condition: {condition}",
                job.name_any()
            );
            plan.events.push(normal("SawCompletedJob", note));
        }
        if condition == conditions::COMPLETE {
            let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
            if done.as_ref().map(|t| t.0) > plan.status.last_successful_time.as_ref().map(|t| t.0) {
                plan.status.last_successful_time = done;
            }
        }
    }
    let succeeded: Vec<_> = finished
        .iter()
        .copied()
        .filter(|j| conditions::finished(j).is_some_and(|c| c.type_ == conditions::COMPLETE))
        .collect();
    let failed: Vec<_> = finished
        .iter()
        .copied()
        .filter(|j| conditions::finished(j).is_some_and(|c| c.type_ == conditions::FAILED))
        .collect();
    plan.delete.extend(beyond_limit(
        &succeeded,
        spec.successful_jobs_history_limit.or(Some(3)),
    ));
    plan.delete.extend(beyond_limit(
        &failed,
        spec.failed_jobs_history_limit.or(Some(1)),
    ));
    let mut active_refs: Vec<ObjectReference> = active.iter().map(|j| reference(j)).collect();
    active_refs.sort_by(|a, b| a.name.cmp(&b.name));
    plan.status.active = (!active_refs.is_empty()).then_some(active_refs);

    if spec.suspend == Some(true) || cron_job.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let tz = match schedule::time_zone(spec.time_zone.as_deref()) {
        Ok(tz) => tz,
        Err(note) => {
            plan.events.push(warning("UnknownTimeZone", note));
            return plan;
        }
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(error) => {
            plan.events
                .push(warning("InvalidSchedule", error.to_string()));
            return plan;
        }
    };
    let created = cron_job.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let last = plan
        .status
        .last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .or(created);
    let mut earliest = last.unwrap_or(now);
    if let Some(deadline) = spec.starting_deadline_seconds {
        earliest = earliest.max(now - SignedDuration::from_secs(deadline));
    }
    // The most recent missed time in (earliest, now], and how many were missed.
    let (mut latest, mut missed) = (None, 0);
    let mut cursor = earliest;
    while let Some(at) = schedule.next_after(cursor, &tz).filter(|t| *t <= now) {
        latest = Some(at);
        missed += 1;
        cursor = at;
        if missed > TOO_MANY_MISSED {
            // Skip ahead: only the latest time matters from here on.
            cursor = cursor.max(now - SignedDuration::from_secs(3600));
        }
    }
    let next = schedule.next_after(now, &tz);
    plan.requeue =
        next.map(|at| now.duration_until(at).unsigned_abs() + Duration::from_millis(100));
    let Some(scheduled) = latest else {
        return plan;
    };
    if missed > TOO_MANY_MISSED {
        let note = "too many missed start times; check clock skew or set startingDeadlineSeconds"
            .to_owned();
        plan.events.push(warning("TooManyMissedTimes", note));
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        let note =
            "Not starting job because prior execution is running and concurrency policy is Forbid";
        plan.events.push(normal("JobAlreadyActive", note.into()));
        return plan;
    }
    if policy == "Replace" {
        plan.delete.extend(active.iter().map(|j| (*j).clone()));
        plan.status.active = None;
    }
    let job = job_for(cron_job, scheduled, &tz);
    let mut refs = plan.status.active.take().unwrap_or_default();
    refs.push(ObjectReference {
        uid: None,
        ..reference(&job)
    });
    plan.status.active = Some(refs);
    plan.status.last_schedule_time = Some(Time(scheduled));
    plan.create = Some(job);
    plan
}

async fn reconcile(cron_job: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cron_job.namespace().unwrap_or_default();
    let name = cron_job.name_any();
    let key = format!("{namespace}/{name}");
    let err = |action: &str| {
        let (key, action) = (key.clone(), action.to_owned());
        move |source| Error {
            key,
            action,
            source,
        }
    };
    let now = ctx.clock.now();
    let jobs = owned_jobs(&cron_job, &ctx.jobs);
    let mut plan = plan(&cron_job, &jobs, now);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let regarding = events::reference("batch/v1", "CronJob", &cron_job.metadata);
    for job in &plan.delete {
        let deleted = jobs_api
            .delete(&job.name_any(), &DeleteParams::background())
            .await;
        deleted
            .map(drop)
            .or_else(crate::ignore_not_found)
            .map_err(err("delete job"))?;
        let note = format!("Deleted job {}", job.name_any());
        ctx.events
            .normal(&regarding, "SuccessfulDelete", "Delete", note)
            .await;
    }
    if let Some(job) = &plan.create {
        let job_name = job.name_any();
        match jobs_api.create(&PostParams::default(), job).await {
            Ok(created) => {
                let note = format!("Created job {job_name}");
                ctx.events
                    .normal(&regarding, "SuccessfulCreate", "Create", note)
                    .await;
                if let Some(r) = plan
                    .status
                    .active
                    .iter_mut()
                    .flatten()
                    .find(|r| r.name.as_deref() == Some(&job_name))
                {
                    r.uid = created.metadata.uid;
                }
            }
            // Already made by an earlier sync whose status write was lost.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(error) => {
                let note = format!("Error creating job: {error}");
                ctx.events
                    .warning(&regarding, "FailedCreate", "Create", note)
                    .await;
                return Err(err("create job")(error));
            }
        }
    }
    for event in &plan.events {
        let note = event.note.clone();
        if event.warning {
            ctx.events
                .warning(&regarding, event.reason, "Sync", note)
                .await;
        } else {
            ctx.events
                .normal(&regarding, event.reason, "Sync", note)
                .await;
        }
    }
    if cron_job.status.as_ref() != Some(&plan.status) {
        let mut updated = (*cron_job).clone();
        updated.status = Some(plan.status);
        Api::<CronJob>::namespaced(ctx.client.clone(), &namespace)
            .replace_status(&name, &PostParams::default(), &updated)
            .await
            .map_err(err("update status"))?;
    }
    Ok(match plan.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

fn error_policy(_cron_job: Arc<CronJob>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "cronjob sync");
    Action::requeue(Duration::from_secs(5))
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (jobs, job_events) = informers.cache_and_touched::<Job>().await;
    let controller = crate::controller_for::<CronJob>(&informers)
        .await
        .watches_shared_stream(job_events, |job: Arc<Job>| {
            let owner = ownership::controller_of(&job.metadata).filter(|o| o.kind == "CronJob")?;
            Some(ObjectRef::new(&owner.name).within(&job.namespace().unwrap_or_default()))
        });
    let ctx = Arc::new(Context {
        events: EventRecorder::new(client.clone(), "cronjob-controller"),
        client,
        jobs,
        clock,
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}
