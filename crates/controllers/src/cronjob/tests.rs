use std::sync::Arc;

use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, CronJobStatus, Job, JobCondition, JobStatus, JobTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::*;
use crate::clock::{Clock, FixedClock};
use crate::ownership::controller_reference;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

/// A cronjob every 5 minutes in UTC, created at t=0, last run at `last`.
fn cron_job(policy: &str, last: Option<i64>) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("tick".into()),
            namespace: Some("default".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(at(0))),
            ..Default::default()
        },
        spec: CronJobSpec {
            schedule: "*/5 * * * *".into(),
            time_zone: Some("UTC".into()),
            concurrency_policy: Some(policy.into()),
            job_template: JobTemplateSpec::default(),
            ..Default::default()
        },
        status: Some(CronJobStatus {
            last_schedule_time: last.map(|s| Time(at(s))),
            ..Default::default()
        }),
    }
}

/// A job of the cronjob started at `start`, finished with `condition` if given.
fn job(name: &str, start: i64, condition: Option<&str>) -> Arc<Job> {
    Arc::new(Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            owner_references: Some(vec![controller_reference(
                "batch/v1", "CronJob", "tick", "cj-uid",
            )]),
            ..Default::default()
        },
        spec: None,
        status: Some(JobStatus {
            start_time: Some(Time(at(start))),
            completion_time: condition.map(|_| Time(at(start + 10))),
            conditions: condition.map(|c| {
                vec![JobCondition {
                    type_: c.into(),
                    status: "True".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    })
}

#[test]
fn cronjob_creates_a_job_named_after_the_scheduled_minute() {
    let clock = FixedClock::at(610);
    let plan = plan(&cron_job("Allow", Some(300)), &[], clock.now());
    let job = plan.create.expect("a job for 600");
    assert_eq!(job.name_any(), "tick-10");
    assert_eq!(
        job.annotations()[SCHEDULED_TIMESTAMP],
        "1970-01-01T00:10:00+00:00"
    );
    assert_eq!(plan.status.last_schedule_time, Some(Time(at(600))));
    assert_eq!(
        plan.status.active.unwrap()[0].name.as_deref(),
        Some("tick-10")
    );
    // Next run at 900: look again then.
    assert_eq!(
        plan.requeue,
        Some(std::time::Duration::from_millis(290_100))
    );
}

#[test]
fn cronjob_waits_for_its_next_scheduled_time() {
    let plan = plan(&cron_job("Allow", Some(600)), &[], at(700));
    assert!(plan.create.is_none());
    assert_eq!(
        plan.requeue,
        Some(std::time::Duration::from_millis(200_100))
    );
}

#[test]
fn cronjob_forbid_skips_a_run_while_one_is_active() {
    let running = job("tick-5", 300, None);
    let plan = plan(&cron_job("Forbid", Some(300)), &[running], at(610));
    assert!(plan.create.is_none());
    assert!(plan.events.iter().any(|e| e.reason == "JobAlreadyActive"));
    // The skipped time stays unscheduled, so it runs once the active job finishes.
    assert_eq!(plan.status.last_schedule_time, Some(Time(at(300))));
}

#[test]
fn cronjob_replace_deletes_the_active_job_before_starting_the_next() {
    let running = job("tick-5", 300, None);
    let plan = plan(&cron_job("Replace", Some(300)), &[running], at(610));
    assert_eq!(
        plan.delete.iter().map(|j| j.name_any()).collect::<Vec<_>>(),
        vec!["tick-5"]
    );
    let active = plan.status.active.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].name.as_deref(), Some("tick-10"));
}

#[test]
fn cronjob_allow_runs_alongside_an_active_job() {
    let running = job("tick-5", 300, None);
    let plan = plan(&cron_job("Allow", Some(300)), &[running], at(610));
    assert!(plan.create.is_some());
    assert_eq!(plan.status.active.unwrap().len(), 2);
}

#[test]
fn cronjob_skips_a_run_missed_by_more_than_its_starting_deadline() {
    let mut cj = cron_job("Allow", Some(300));
    cj.spec.starting_deadline_seconds = Some(60);
    assert!(plan(&cj, &[], at(690)).create.is_none());
    assert!(plan(&cj, &[], at(650)).create.is_some());
}

#[test]
fn cronjob_suspended_starts_nothing() {
    let mut cj = cron_job("Allow", Some(300));
    cj.spec.suspend = Some(true);
    assert!(plan(&cj, &[], at(610)).create.is_none());
}

#[test]
fn cronjob_keeps_only_its_history_limits_of_finished_jobs() {
    let jobs = vec![
        job("tick-1", 60, Some("Complete")),
        job("tick-2", 120, Some("Complete")),
        job("tick-3", 180, Some("Failed")),
        job("tick-4", 240, Some("Failed")),
    ];
    let mut cj = cron_job("Allow", Some(240));
    cj.spec.successful_jobs_history_limit = Some(1);
    let plan = plan(&cj, &jobs, at(250));
    let deleted: Vec<String> = plan.delete.iter().map(|j| j.name_any()).collect();
    assert_eq!(deleted, vec!["tick-1", "tick-3"]);
    assert_eq!(plan.status.last_successful_time, Some(Time(at(130))));
}
