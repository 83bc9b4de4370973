//! Job conditions with upstream's types, reasons and messages.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUSPENDED: &str = "Suspended";

pub const COMPLETIONS_REACHED: (&str, &str) = (
    "CompletionsReached",
    "Reached expected number of succeeded pods",
);
pub const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = (
    "BackoffLimitExceeded",
    "Job has reached the specified backoff limit",
);
pub const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Job was active longer than specified deadline",
);

pub const MAX_FAILED_INDEXES_EXCEEDED: (&str, &str) = (
    "MaxFailedIndexesExceeded",
    "Job has exceeded the specified maximal number of failed indexes",
);
pub const FAILED_INDEXES: (&str, &str) = ("FailedIndexes", "Job has failed indexes");
/// Reasons whose messages come from the matched rule.
pub const POD_FAILURE_POLICY: &str = "PodFailurePolicy";
pub const SUCCESS_POLICY: &str = "SuccessPolicy";

/// The `'static` reason for the event announcing a failure with this condition reason.
pub fn event_reason(reason: &str) -> &'static str {
    [
        DEADLINE_EXCEEDED.0,
        MAX_FAILED_INDEXES_EXCEEDED.0,
        FAILED_INDEXES.0,
        POD_FAILURE_POLICY,
    ]
    .into_iter()
    .find(|r| *r == reason)
    .unwrap_or(BACKOFF_LIMIT_EXCEEDED.0)
}

fn true_condition<'a>(job: &'a Job, types: &[&str]) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| types.contains(&c.type_.as_str()) && c.status == "True")
}

/// The terminal condition (Complete or Failed), if the job has finished.
pub fn finished(job: &Job) -> Option<&JobCondition> {
    true_condition(job, &[COMPLETE, FAILED])
}

/// The interim condition (SuccessCriteriaMet or FailureTarget) a decided job carries while
/// its remaining pods terminate.
pub fn target(job: &Job) -> Option<&JobCondition> {
    true_condition(job, &[SUCCESS_CRITERIA_MET, FAILURE_TARGET])
}

pub fn is_true(conditions: &[JobCondition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition; returns whether anything changed. Like upstream, the transition time
/// moves only when the status does.
pub fn set(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: bool,
    (reason, message): (&str, &str),
    now: Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" };
    let new = JobCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(old) if old.status == status => false,
        Some(old) => {
            *old = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}
