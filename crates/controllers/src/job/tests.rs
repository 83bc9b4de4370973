use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus,
    PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::plan::{backoff_until, decide};
use super::tracking::{self, FinalizerRemovals};
use super::*;
use crate::ownership::controller_reference;

pub(super) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

pub(super) fn job(completions: Option<i32>, parallelism: i32) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            uid: Some("job-uid".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(2),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: Some(JobStatus {
            start_time: Some(Time(at(0))),
            ..Default::default()
        }),
    }
}

/// A pod of the job in `phase`, finished at `finished` if terminal, with the finalizer.
pub(super) fn pod(name: &str, phase: &str, finished: i64) -> Arc<Pod> {
    let terminated = matches!(phase, "Succeeded" | "Failed").then(|| ContainerState {
        terminated: Some(ContainerStateTerminated {
            finished_at: Some(Time(at(finished))),
            exit_code: i32::from(phase == "Failed"),
            ..Default::default()
        }),
        ..Default::default()
    });
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            finalizers: Some(vec![tracking::FINALIZER.into()]),
            owner_references: Some(vec![controller_reference(
                "batch/v1", "Job", "pi", "job-uid",
            )]),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: terminated.map(|state| {
                vec![ContainerStatus {
                    state: Some(state),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    })
}

pub(super) fn without_finalizer(pod: Arc<Pod>) -> Arc<Pod> {
    let mut pod = (*pod).clone();
    pod.metadata.finalizers = None;
    Arc::new(pod)
}

pub(super) fn with_status(mut job: Job, status: JobStatus) -> Job {
    let start = job.status.take().and_then(|s| s.start_time);
    job.status = Some(JobStatus {
        start_time: start,
        ..status
    });
    job
}

pub(super) fn condition_types(status: &JobStatus) -> Vec<(String, String)> {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn job_runs_parallelism_pods_but_no_more_than_the_completions_left() {
    let d = decide(&job(Some(5), 2), JobStatus::default(), &[], true, at(1));
    assert_eq!(d.create, vec![None, None]);
    let status = JobStatus {
        succeeded: Some(4),
        ..Default::default()
    };
    let d = decide(&job(Some(5), 2), status, &[], true, at(1));
    assert_eq!(d.create.len(), 1);
    assert_eq!(d.status.active, Some(1));
}

#[test]
fn job_pods_carry_the_tracking_finalizer_and_a_controller_reference() {
    let pod = pod_from_template(&job(Some(1), 1), None, None);
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
    assert!(tracking::has_finalizer(&pod));
    assert_eq!(
        ownership::controller_of(&pod.metadata).unwrap().uid,
        "job-uid"
    );
}

#[test]
fn job_counts_a_finished_pod_once_through_the_tracking_finalizer() {
    let job = job(Some(2), 1);
    let removals = FinalizerRemovals::default();
    let done = pod("pi-a", "Succeeded", 5);
    let uncounted = tracking::record_finished(&job, std::slice::from_ref(&done), &removals, at(6));
    assert_eq!(uncounted.succeeded, Some(vec!["pi-a-uid".to_string()]));

    let job = with_status(
        job,
        JobStatus {
            uncounted_terminated_pods: Some(uncounted),
            ..Default::default()
        },
    );
    let remove = tracking::finalizers_to_remove(&job, std::slice::from_ref(&done));
    assert_eq!(remove.len(), 1);
    removals.requested("pi-a-uid", at(6));
    // The cache still shows the finalizer: the pod is neither recorded again nor flushed.
    let again = tracking::record_finished(&job, std::slice::from_ref(&done), &removals, at(7));
    assert_eq!(again.succeeded, Some(vec!["pi-a-uid".to_string()]));
    let mut status = job.status.clone().unwrap();
    tracking::flush(&mut status, |_| false);
    assert_eq!(status.succeeded, Some(1));
    assert_eq!(status.uncounted_terminated_pods, None);

    // Once flushed, the pod without its finalizer is never counted again.
    let job = with_status(job, status);
    let gone = without_finalizer(done);
    let uncounted = tracking::record_finished(&job, &[gone], &removals, at(8));
    assert_eq!(uncounted.succeeded, None);
}

#[test]
fn job_retries_failed_pods_until_the_backoff_limit() {
    let template = job(Some(1), 1);
    // One failure at t=10: the replacement waits 10s.
    let failed = vec![without_finalizer(pod("pi-a", "Failed", 10))];
    let status = JobStatus {
        failed: Some(1),
        ..Default::default()
    };
    let early = decide(&template, status.clone(), &failed, true, at(15));
    assert!(early.create.is_empty());
    assert_eq!(early.requeue, Some(std::time::Duration::from_millis(5100)));
    let later = decide(&template, status, &failed, true, at(20));
    assert_eq!(later.create, vec![None]);

    // Two failures back off 20s: 10s doubling per failure since the last success.
    let two = vec![
        failed[0].clone(),
        without_finalizer(pod("pi-b", "Failed", 30)),
    ];
    assert_eq!(backoff_until(&template, &two), Some(at(50)));

    // A third failure passes backoffLimit 2: FailureTarget, then Failed once nothing runs.
    let status = JobStatus {
        failed: Some(3),
        ..Default::default()
    };
    let d = decide(&template, status, &two, true, at(60));
    assert!(d.create.is_empty());
    assert_eq!(
        condition_types(&d.status),
        vec![
            ("FailureTarget".into(), "BackoffLimitExceeded".into()),
            ("Failed".into(), "BackoffLimitExceeded".into())
        ]
    );
    assert!(
        d.events
            .iter()
            .any(|e| e.warning && e.reason == "BackoffLimitExceeded")
    );
}

#[test]
fn job_completes_only_after_its_remaining_pods_terminate() {
    let template = job(Some(2), 2);
    let status = JobStatus {
        succeeded: Some(2),
        ..Default::default()
    };
    let straggler = pod("pi-c", "Running", 0);
    let d = decide(
        &template,
        status.clone(),
        std::slice::from_ref(&straggler),
        true,
        at(9),
    );
    assert_eq!(names(&d.delete), vec!["pi-c"]);
    assert_eq!(
        condition_types(&d.status),
        vec![("SuccessCriteriaMet".into(), "CompletionsReached".into())]
    );

    let decided = with_status(template, d.status);
    let d = decide(&decided, decided.status.clone().unwrap(), &[], true, at(10));
    assert!(condition_types(&d.status).contains(&("Complete".into(), "CompletionsReached".into())));
    assert_eq!(d.status.completion_time, Some(Time(at(10))));
}

#[test]
fn job_fails_when_active_longer_than_its_deadline() {
    let mut template = job(Some(1), 1);
    template.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    let running = vec![pod("pi-a", "Running", 0)];
    let before = decide(
        &template,
        template.status.clone().unwrap(),
        &running,
        true,
        at(20),
    );
    assert!(before.delete.is_empty());
    assert_eq!(
        before.requeue,
        Some(std::time::Duration::from_millis(10100))
    );
    let after = decide(
        &template,
        template.status.clone().unwrap(),
        &running,
        true,
        at(30),
    );
    assert_eq!(names(&after.delete), vec!["pi-a"]);
    assert_eq!(
        condition_types(&after.status),
        vec![("FailureTarget".into(), "DeadlineExceeded".into())]
    );
}

#[test]
fn job_indexed_runs_one_pod_per_pending_index() {
    let mut template = job(Some(4), 2);
    template.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
    let mut done = (*pod("pi-0-x", "Succeeded", 3)).clone();
    done.metadata.annotations = Some([(indexes::INDEX_KEY.to_string(), "0".to_string())].into());
    let mut running = (*pod("pi-1-y", "Running", 0)).clone();
    running.metadata.annotations = Some([(indexes::INDEX_KEY.to_string(), "1".to_string())].into());
    let owned = vec![Arc::new(done), Arc::new(running)];
    let d = decide(&template, JobStatus::default(), &owned, true, at(5));
    assert_eq!(d.create, vec![Some(2)]);
    assert_eq!(d.status.completed_indexes.as_deref(), Some("0"));
    let pod = pod_from_template(&template, Some(2), None);
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
    assert_eq!(pod.metadata.labels.unwrap()[indexes::INDEX_KEY], "2");
}

#[test]
fn job_suspended_deletes_its_active_pods_and_resuming_restarts_the_clock() {
    let mut template = job(Some(1), 1);
    template.spec.as_mut().unwrap().suspend = Some(true);
    let running = vec![pod("pi-a", "Running", 0)];
    let d = decide(
        &template,
        template.status.clone().unwrap(),
        &running,
        true,
        at(5),
    );
    assert_eq!(names(&d.delete), vec!["pi-a"]);
    assert_eq!(
        condition_types(&d.status),
        vec![("Suspended".into(), "JobSuspended".into())]
    );

    let mut resumed = with_status(template, d.status);
    resumed.spec.as_mut().unwrap().suspend = Some(false);
    let d = decide(&resumed, resumed.status.clone().unwrap(), &[], true, at(50));
    assert_eq!(d.status.start_time, Some(Time(at(50))));
    assert_eq!(d.create, vec![None]);
    assert!(d.events.iter().any(|e| e.reason == "Resumed"));
}

pub(super) fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}
