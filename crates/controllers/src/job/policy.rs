//! A job's `podFailurePolicy` (how a failed pod's exit codes or conditions decide its fate)
//! and `successPolicy` (which succeeded indexes are enough), matched as upstream does.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::{indexes, tracking};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    FailJob,
    FailIndex,
    Ignore,
    Count,
}

impl Action {
    fn parse(text: &str) -> Option<Action> {
        match text {
            "FailJob" => Some(Action::FailJob),
            "FailIndex" => Some(Action::FailIndex),
            "Ignore" => Some(Action::Ignore),
            "Count" => Some(Action::Count),
            _ => None,
        }
    }
}

/// The first rule a failed pod matches: its action, and for FailJob the message the job's
/// failure carries. `None` when no rule matches (the failure counts as usual).
pub fn matching_rule(job: &Job, pod: &Pod) -> Option<(Action, String)> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    let status = pod.status.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        // A rule with an action this controller does not know never matches, as upstream
        // falls through its switch to the next rule.
        let Some(action) = Action::parse(&rule.action) else {
            continue;
        };
        let message = if let Some(requirement) = &rule.on_exit_codes {
            let containers = status.container_statuses.iter().flatten();
            let init = status.init_container_statuses.iter().flatten();
            let Some((container, code)) = containers
                .chain(init)
                .find_map(|c| exit_code_matching(c, requirement))
            else {
                continue;
            };
            format!(
                "Container {container} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let matched = status.conditions.iter().flatten().find(|c| {
                patterns.iter().any(|p| {
                    p.type_ == c.type_ && p.status.as_deref().unwrap_or("True") == c.status
                })
            });
            let Some(condition) = matched else {
                continue;
            };
            format!(
                "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                condition.type_, rule.action
            )
        } else {
            continue;
        };
        return Some((action, message));
    }
    None
}

/// A terminated container's name and non-zero exit code, if the requirement selects it.
fn exit_code_matching(
    container: &ContainerStatus,
    requirement: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    let code = container.state.as_ref()?.terminated.as_ref()?.exit_code;
    let named = requirement
        .container_name
        .as_ref()
        .is_none_or(|n| *n == container.name);
    // Exit code 0 never matches: a container that succeeded did not cause the failure.
    let listed = requirement.values.contains(&code);
    let matches = match requirement.operator.as_str() {
        "In" => listed,
        "NotIn" => !listed,
        _ => false,
    };
    (named && code != 0 && matches).then(|| (container.name.clone(), code))
}

/// Whether a failed pod counts toward `backoffLimit` (and `backoffLimitPerIndex`): all but
/// those an Ignore rule matches.
pub fn counts(job: &Job, pod: &Pod) -> bool {
    !matches!(matching_rule(job, pod), Some((Action::Ignore, _)))
}

/// The message of the first failed pod a FailJob rule matches, which fails the whole job.
pub fn fail_job_message(job: &Job, owned: &[Arc<Pod>]) -> Option<String> {
    owned
        .iter()
        .filter(|p| tracking::outcome(p, job) == Some(false))
        .find_map(|p| match matching_rule(job, p) {
            Some((Action::FailJob, message)) => Some(message),
            _ => None,
        })
}

/// The message of the first `successPolicy` rule the succeeded indexes satisfy.
pub fn success_met(job: &Job, completions: i32, succeeded: &BTreeSet<i32>) -> Option<String> {
    let policy = job.spec.as_ref()?.success_policy.as_ref()?;
    if succeeded.is_empty() {
        return None;
    }
    let met = |rule: &k8s_openapi::api::batch::v1::SuccessPolicyRule| match &rule.succeeded_indexes
    {
        Some(text) => {
            let required = indexes::parse(text, completions);
            // An unparsable rule selects nothing and so never matches.
            let done = required.intersection(succeeded).count();
            !required.is_empty()
                && (done == required.len()
                    || rule
                        .succeeded_count
                        .is_some_and(|c| done >= c.max(0) as usize))
        }
        None => rule
            .succeeded_count
            .is_some_and(|c| succeeded.len() >= c.max(0) as usize),
    };
    let index = policy.rules.iter().position(met)?;
    Some(format!("Matched rules at index {index}"))
}
