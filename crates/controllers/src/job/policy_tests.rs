//! podFailurePolicy, backoffLimitPerIndex / maxFailedIndexes and successPolicy.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule, SuccessPolicy, SuccessPolicyRule,
};
use k8s_openapi::api::core::v1::{Pod, PodCondition};

use super::plan::{before_release, decide};
use super::tests::{at, condition_types, job, names, pod, with_status, without_finalizer};
use super::tracking::{self, FinalizerRemovals};
use super::{indexes, pod_from_template};

fn on_exit_codes(action: &str, operator: &str, values: &[i32]) -> PodFailurePolicyRule {
    PodFailurePolicyRule {
        action: action.into(),
        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
            container_name: None,
            operator: operator.into(),
            values: values.to_vec(),
        }),
        on_pod_conditions: None,
    }
}

fn with_policy(mut job: Job, rules: Vec<PodFailurePolicyRule>) -> Job {
    let spec = job.spec.as_mut().unwrap();
    spec.pod_failure_policy = Some(PodFailurePolicy { rules });
    spec.pod_replacement_policy = Some("Failed".into());
    job
}

fn indexed(completions: i32, parallelism: i32, per_index: Option<i32>) -> Job {
    let mut job = job(Some(completions), parallelism);
    let spec = job.spec.as_mut().unwrap();
    spec.completion_mode = Some("Indexed".into());
    spec.backoff_limit_per_index = per_index;
    if per_index.is_some() {
        spec.backoff_limit = Some(i32::MAX);
    }
    job
}

/// A failed pod whose only container exited with `code` at `finished`.
fn exited(name: &str, code: i32, finished: i64) -> Arc<Pod> {
    let mut pod = (*pod(name, "Failed", finished)).clone();
    let status = pod.status.as_mut().unwrap();
    let container = &mut status.container_statuses.as_mut().unwrap()[0];
    container.name = "main".into();
    let terminated = container
        .state
        .as_mut()
        .unwrap()
        .terminated
        .as_mut()
        .unwrap();
    terminated.exit_code = code;
    Arc::new(pod)
}

/// The pod running `index`, carrying the index's failure count so far.
fn at_index(pod: Arc<Pod>, index: i32, failures: i32) -> Arc<Pod> {
    let mut pod = (*pod).clone();
    pod.metadata.annotations = Some(
        [
            (indexes::INDEX_KEY.to_string(), index.to_string()),
            (indexes::FAILURE_COUNT_KEY.to_string(), failures.to_string()),
        ]
        .into(),
    );
    Arc::new(pod)
}

/// The status the controller writes before finalizers come off, applied to the job.
fn released(job: &Job, owned: &[Arc<Pod>], now: i64) -> Job {
    let status = before_release(job, owned, &FinalizerRemovals::default(), at(now));
    let mut job = job.clone();
    job.status = Some(status);
    job
}

#[test]
fn pod_failure_policy_fail_job_on_exit_code_fails_the_job_at_once() {
    let template = with_policy(job(Some(4), 2), vec![on_exit_codes("FailJob", "In", &[42])]);
    let owned = vec![exited("pi-a", 42, 10), pod("pi-b", "Running", 0)];
    // The verdict is recorded before the failed pod's finalizer comes off.
    let job = released(&template, &owned, 11);
    let message = "Container main for pod default/pi-a failed with exit code 42 matching FailJob rule at index 0";
    let target = &job.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
    assert_eq!(
        (target.type_.as_str(), target.reason.as_deref()),
        ("FailureTarget", Some("PodFailurePolicy"))
    );
    assert_eq!(target.message.as_deref(), Some(message));

    // Far below backoffLimit, the job stops: the running pod goes, nothing replaces them.
    let d = decide(&job, job.status.clone().unwrap(), &owned, true, at(11));
    assert_eq!(names(&d.delete), vec!["pi-b"]);
    assert!(d.create.is_empty());
    assert_eq!(
        condition_types(&d.status),
        vec![("FailureTarget".into(), "PodFailurePolicy".into())]
    );

    // Failed once no pod runs or holds the finalizer, with the rule's message.
    let job = with_status(job, d.status);
    let mut status = job.status.clone().unwrap();
    status.uncounted_terminated_pods = None;
    status.failed = Some(2);
    let gone = vec![without_finalizer(owned[0].clone())];
    let d = decide(&job, status, &gone, true, at(12));
    let failed = d
        .status
        .conditions
        .as_ref()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (failed.type_.as_str(), failed.reason.as_deref()),
        ("Failed", Some("PodFailurePolicy"))
    );
    assert_eq!(failed.message.as_deref(), Some(message));
    assert!(
        d.events
            .iter()
            .any(|e| e.warning && e.reason == "PodFailurePolicy")
    );
}

#[test]
fn pod_failure_policy_exit_codes_match_not_in_and_the_named_container_only() {
    let mut rule = on_exit_codes("FailJob", "NotIn", &[1, 2]);
    rule.on_exit_codes.as_mut().unwrap().container_name = Some("other".into());
    let template = with_policy(job(Some(1), 1), vec![rule]);
    let owned = vec![exited("pi-a", 42, 10)];
    assert!(super::policy::fail_job_message(&template, &owned).is_none());
    let template = with_policy(
        job(Some(1), 1),
        vec![on_exit_codes("FailJob", "NotIn", &[1, 2])],
    );
    assert!(super::policy::fail_job_message(&template, &owned).is_some());
    // A container that exited 0 never matches, even NotIn.
    let ok = vec![exited("pi-b", 0, 10)];
    assert!(super::policy::fail_job_message(&template, &ok).is_none());
}

#[test]
fn pod_failure_policy_ignore_on_disruption_target_does_not_count_toward_backoff_limit() {
    let mut template = with_policy(
        job(Some(1), 1),
        vec![PodFailurePolicyRule {
            action: "Ignore".into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".into(),
                status: Some("True".into()),
            }]),
        }],
    );
    template.spec.as_mut().unwrap().backoff_limit = Some(0);
    let mut evicted = (*exited("pi-a", 137, 10)).clone();
    evicted.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("PreemptionByScheduler".into()),
        ..Default::default()
    }]);
    let owned = vec![Arc::new(evicted)];

    // Never recorded as failed, yet its finalizer comes off.
    let job = released(&template, &owned, 11);
    let status = job.status.clone().unwrap();
    assert_eq!(status.uncounted_terminated_pods, None);
    assert_eq!(
        names(&tracking::finalizers_to_remove(&job, &owned)),
        vec!["pi-a"]
    );

    // backoffLimit 0 is not exceeded: a replacement starts after the usual back-off.
    let d = decide(&job, status, &owned, true, at(20));
    assert!(condition_types(&d.status).is_empty());
    assert_eq!(d.create, vec![None]);
}

#[test]
fn pod_failure_policy_count_rule_counts_like_the_default_and_first_match_wins() {
    let mut template = with_policy(
        job(Some(1), 1),
        vec![
            on_exit_codes("Count", "In", &[42]),
            on_exit_codes("FailJob", "In", &[42]),
        ],
    );
    template.spec.as_mut().unwrap().backoff_limit = Some(0);
    let owned = vec![exited("pi-a", 42, 10)];
    let job = released(&template, &owned, 11);
    let status = job.status.clone().unwrap();
    let uncounted = status.uncounted_terminated_pods.clone().unwrap();
    assert_eq!(uncounted.failed, Some(vec!["pi-a-uid".to_string()]));
    let d = decide(&job, status, &owned, true, at(11));
    assert_eq!(
        condition_types(&d.status),
        vec![("FailureTarget".into(), "BackoffLimitExceeded".into())]
    );
}

#[test]
fn pod_failure_policy_fail_index_marks_the_index_failed() {
    let template = with_policy(
        indexed(3, 3, Some(2)),
        vec![on_exit_codes("FailIndex", "In", &[42])],
    );
    let owned = vec![at_index(exited("pi-1-a", 42, 10), 1, 0)];
    let job = released(&template, &owned, 11);
    assert_eq!(
        job.status.as_ref().unwrap().failed_indexes.as_deref(),
        Some("1")
    );
    // The failed index is never retried though backoffLimitPerIndex allows two more.
    let d = decide(&job, job.status.clone().unwrap(), &owned, true, at(60));
    assert_eq!(d.create, vec![Some(0), Some(2)]);
    assert_eq!(d.status.failed_indexes.as_deref(), Some("1"));
    assert!(condition_types(&d.status).is_empty());
}

#[test]
fn backoff_limit_per_index_retries_an_index_then_fails_the_job_with_failed_indexes() {
    let template = indexed(2, 2, Some(1));
    let first = at_index(exited("pi-0-a", 1, 10), 0, 0);
    let running = at_index(pod("pi-1-a", "Running", 0), 1, 0);
    let owned = vec![first.clone(), running.clone()];

    // The failed pod keeps its finalizer until its replacement exists, uncounted meanwhile.
    let job = released(&template, &owned, 11);
    let status = job.status.clone().unwrap();
    assert_eq!(status.uncounted_terminated_pods, None);
    assert_eq!(status.failed_indexes.as_deref(), Some(""));
    assert!(tracking::finalizers_to_remove(&job, &owned).is_empty());
    let early = decide(&job, status.clone(), &owned, true, at(15));
    assert!(early.create.is_empty());
    assert_eq!(early.requeue, Some(Duration::from_millis(5100)));

    // After the index's back-off the replacement carries the index's failure count.
    let retry = decide(&job, status, &owned, true, at(20));
    assert_eq!(retry.create, vec![Some(0)]);
    assert_eq!(retry.index_failures.get(&0), Some(&(1, 0)));
    let replacement = pod_from_template(&job, Some(0), Some((1, 0)));
    let annotations = replacement.metadata.annotations.unwrap();
    assert_eq!(annotations[indexes::FAILURE_COUNT_KEY], "1");

    // The replacement failing too exhausts the index: it is recorded, not retried.
    let second = at_index(exited("pi-0-b", 1, 40), 0, 1);
    let owned = vec![first, second, running];
    let job = released(&job, &owned, 41);
    let status = job.status.clone().unwrap();
    assert_eq!(status.failed_indexes.as_deref(), Some("0"));
    let d = decide(&job, status, &owned, true, at(100));
    assert!(d.create.is_empty());
    assert!(condition_types(&d.status).is_empty());

    // Once every index is done, the job fails with FailedIndexes.
    let mut done = (*owned[2]).clone();
    done.status = pod("x", "Succeeded", 50).status.clone();
    let owned = vec![owned[0].clone(), owned[1].clone(), Arc::new(done)];
    let job = released(&job, &owned, 51);
    let d = decide(&job, job.status.clone().unwrap(), &owned, true, at(51));
    assert_eq!(
        condition_types(&d.status),
        vec![("FailureTarget".into(), "FailedIndexes".into())]
    );
    // Failed once the recorded pods are flushed and no pod holds the finalizer.
    let mut status = d.status;
    status.uncounted_terminated_pods = None;
    let settled = with_status(job, status);
    let d = decide(&settled, settled.status.clone().unwrap(), &[], true, at(52));
    assert!(condition_types(&d.status).contains(&("Failed".into(), "FailedIndexes".into())));
}

#[test]
fn max_failed_indexes_exceeded_fails_the_job_at_once() {
    let mut template = indexed(4, 4, Some(0));
    template.spec.as_mut().unwrap().max_failed_indexes = Some(0);
    let owned = vec![
        at_index(exited("pi-0-a", 1, 10), 0, 0),
        at_index(pod("pi-1-a", "Running", 0), 1, 0),
    ];
    let job = released(&template, &owned, 11);
    let d = decide(&job, job.status.clone().unwrap(), &owned, true, at(11));
    assert_eq!(
        condition_types(&d.status),
        vec![("FailureTarget".into(), "MaxFailedIndexesExceeded".into())]
    );
    assert_eq!(names(&d.delete), vec!["pi-1-a"]);
    assert!(d.create.is_empty());
}

fn with_success_policy(mut job: Job, indexes: Option<&str>, count: Option<i32>) -> Job {
    job.spec.as_mut().unwrap().success_policy = Some(SuccessPolicy {
        rules: vec![SuccessPolicyRule {
            succeeded_indexes: indexes.map(str::to_owned),
            succeeded_count: count,
        }],
    });
    job
}

#[test]
fn success_policy_succeeded_indexes_completes_the_job_and_terminates_the_rest() {
    let template = with_success_policy(indexed(3, 3, None), Some("0"), None);
    let owned = vec![
        at_index(pod("pi-0-a", "Succeeded", 10), 0, 0),
        at_index(pod("pi-1-a", "Running", 0), 1, 0),
        at_index(pod("pi-2-a", "Running", 0), 2, 0),
    ];
    let d = decide(&template, JobStatus::default(), &owned, true, at(11));
    let met = &d.status.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (met.type_.as_str(), met.reason.as_deref()),
        ("SuccessCriteriaMet", Some("SuccessPolicy"))
    );
    assert_eq!(met.message.as_deref(), Some("Matched rules at index 0"));
    assert_eq!(names(&d.delete), vec!["pi-1-a", "pi-2-a"]);

    let decided = with_status(template, d.status);
    let d = decide(&decided, decided.status.clone().unwrap(), &[], true, at(12));
    assert!(condition_types(&d.status).contains(&("Complete".into(), "SuccessPolicy".into())));
}

#[test]
fn success_policy_succeeded_count_needs_that_many_of_the_listed_indexes() {
    let template = with_success_policy(indexed(5, 5, None), Some("0-2"), Some(2));
    let succeeded = |i: i32| at_index(pod(&format!("pi-{i}"), "Succeeded", 10), i, 0);
    let one = vec![succeeded(0), succeeded(4)];
    let d = decide(&template, JobStatus::default(), &one, true, at(11));
    assert!(condition_types(&d.status).is_empty());
    let two = vec![succeeded(0), succeeded(2)];
    let d = decide(&template, JobStatus::default(), &two, true, at(11));
    assert_eq!(
        condition_types(&d.status),
        vec![("SuccessCriteriaMet".into(), "SuccessPolicy".into())]
    );
}
