//! Jobs: the `kubectl get jobs` table (status from the conditions, completions, and how long
//! the job ran).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{default_pod_template, items_mut, object_field, set_default};
use super::printing::{self, AGE, CONTAINERS, IMAGES, NAME, column, int, items, wide};
use super::{Column, FieldError, Kind};

pub struct Jobs;

/// The job's pod selector, also printed by CronJobs for their job template.
pub const SELECTOR: Column = wide(
    "Selector",
    "string",
    "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
);

const COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "Status of the job."),
    column(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.",
    ),
    column("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

impl Kind for Jobs {
    // The fields upstream's field selectors accept for this kind.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }

    fn prepare_for_create(&self, object: &mut Value) {
        default_job(object);
        if object["spec"]["manualSelector"] != true {
            generate_selector(object);
        }
        // Upstream defaults again when it reads the stored job back, so generated template
        // labels become the job's own when it has none.
        labels_from_template(object);
        object["status"] = json!({});
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_job(new);
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        validate_spec(&object["spec"], "spec.")
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// Upstream's JobSpec rules (its declarative validation of batch/v1), with its messages.
pub fn validate_spec(spec: &Value, prefix: &str) -> Vec<FieldError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let mut invalid = |path: &str, value: &Value, message: &str| {
        errors.push((
            format!("{prefix}{path}"),
            format!("Invalid value: {value}: {message}"),
        ))
    };
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
        "ttlSecondsAfterFinished",
    ] {
        if spec[field].as_i64().is_some_and(|n| n < 0) {
            invalid(field, &spec[field], "must be greater than or equal to 0");
        }
    }
    let indexed = spec["completionMode"].as_str() == Some("Indexed");
    let has = |field: &str| !spec[field].is_null();
    if !indexed && has("backoffLimitPerIndex") {
        invalid(
            "backoffLimitPerIndex",
            &spec["backoffLimitPerIndex"],
            "requires indexed completion mode",
        );
    }
    if !indexed && has("maxFailedIndexes") {
        invalid(
            "maxFailedIndexes",
            &spec["maxFailedIndexes"],
            "requires indexed completion mode",
        );
    }
    if has("maxFailedIndexes") && !has("backoffLimitPerIndex") {
        invalid(
            "maxFailedIndexes",
            &spec["maxFailedIndexes"],
            "requires the backoffLimitPerIndex to be set",
        );
    }
    if let (Some(max), Some(completions)) = (
        spec["maxFailedIndexes"].as_i64(),
        spec["completions"].as_i64(),
    ) && max > completions
    {
        invalid(
            "maxFailedIndexes",
            &spec["maxFailedIndexes"],
            "must be less than or equal to completions",
        );
    }
    if !indexed && has("successPolicy") {
        invalid(
            "successPolicy",
            &spec["successPolicy"],
            "requires indexed completion mode",
        );
    }
    let restart = &spec["template"]["spec"]["restartPolicy"];
    match restart.as_str() {
        Some("OnFailure" | "Never") => {}
        None | Some("") => errors.push((
            format!("{prefix}template.spec.restartPolicy"),
            "Required value: valid values: \"OnFailure\", \"Never\"".into(),
        )),
        Some(other) => errors.push((
            format!("{prefix}template.spec.restartPolicy"),
            format!("Unsupported value: {other:?}: supported values: \"OnFailure\", \"Never\""),
        )),
    }
    if let Some(policy) = spec.get("podFailurePolicy").filter(|p| !p.is_null()) {
        if restart.as_str().is_some_and(|r| r != "Never") {
            errors.push((
                format!("{prefix}template.spec.restartPolicy"),
                format!("Invalid value: {restart}: only \"Never\" is supported when podFailurePolicy is specified"),
            ));
        }
        if spec["podReplacementPolicy"]
            .as_str()
            .is_some_and(|p| p != "Failed")
        {
            errors.push((
                format!("{prefix}podReplacementPolicy"),
                format!(
                    "Invalid value: {}: must be \"Failed\" when podFailurePolicy is used",
                    spec["podReplacementPolicy"]
                ),
            ));
        }
        errors.extend(validate_pod_failure_policy(policy, spec, prefix));
    }
    if let Some(policy) = spec.get("successPolicy").filter(|p| !p.is_null()) {
        errors.extend(validate_success_policy(policy, spec, prefix));
    }
    errors
}

fn validate_pod_failure_policy(policy: &Value, spec: &Value, prefix: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let rules = policy["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if rules.len() > 20 {
        errors.push((
            format!("{prefix}podFailurePolicy.rules"),
            format!("Too many: {}: must have at most 20 items", rules.len()),
        ));
    }
    let template = &spec["template"]["spec"];
    let container_names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| template[*list].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{prefix}podFailurePolicy.rules[{i}]");
        let action = rule["action"].as_str().unwrap_or_default();
        if !["FailJob", "FailIndex", "Ignore", "Count"].contains(&action) {
            errors.push((
                format!("{path}.action"),
                format!("Unsupported value: {action:?}: supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\""),
            ));
        }
        if action == "FailIndex" && spec["backoffLimitPerIndex"].is_null() {
            errors.push((
                format!("{path}.action"),
                "Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set".into(),
            ));
        }
        let exit_codes = &rule["onExitCodes"];
        let conditions = &rule["onPodConditions"];
        match (
            exit_codes.is_null(),
            conditions.as_array().is_none_or(Vec::is_empty),
        ) {
            (true, true) => errors.push((
                path.clone(),
                "Invalid value: specifying one of OnExitCodes and OnPodConditions is required"
                    .into(),
            )),
            (false, false) => errors.push((
                path.clone(),
                "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported"
                    .into(),
            )),
            _ => {}
        }
        if !exit_codes.is_null() {
            let operator = exit_codes["operator"].as_str().unwrap_or_default();
            if !["In", "NotIn"].contains(&operator) {
                errors.push((
                    format!("{path}.onExitCodes.operator"),
                    format!("Unsupported value: {operator:?}: supported values: \"In\", \"NotIn\""),
                ));
            }
            let values: Vec<i64> = exit_codes["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            let values_path = format!("{path}.onExitCodes.values");
            if values.is_empty() {
                errors.push((
                    values_path.clone(),
                    "Required value: at least one value is required".into(),
                ));
            } else if values.len() > 255 {
                errors.push((
                    values_path.clone(),
                    format!("Too many: {}: must have at most 255 items", values.len()),
                ));
            }
            for (j, pair) in values.windows(2).enumerate() {
                if pair[1] == pair[0] {
                    errors.push((
                        format!("{values_path}[{}]", j + 1),
                        format!("Duplicate value: {}", pair[1]),
                    ));
                } else if pair[1] < pair[0] {
                    errors.push((
                        format!("{values_path}[{}]", j + 1),
                        format!("Invalid value: {}: must be ordered", pair[1]),
                    ));
                }
            }
            if operator == "In" && values.contains(&0) {
                let j = values.iter().position(|v| *v == 0).unwrap_or_default();
                errors.push((
                    format!("{values_path}[{j}]"),
                    "Invalid value: 0: must not be 0 for the In operator".into(),
                ));
            }
            if let Some(name) = exit_codes["containerName"].as_str()
                && !container_names.contains(&name)
            {
                errors.push((
                    format!("{path}.onExitCodes.containerName"),
                    format!("Invalid value: {name:?}: must be one of the container or initContainer names in the pod template"),
                ));
            }
        }
        for (j, pattern) in conditions.as_array().into_iter().flatten().enumerate() {
            let status = pattern["status"].as_str().unwrap_or("True");
            if !["True", "False", "Unknown"].contains(&status) {
                errors.push((
                    format!("{path}.onPodConditions[{j}].status"),
                    format!("Unsupported value: {status:?}: supported values: \"False\", \"True\", \"Unknown\""),
                ));
            }
            if pattern["type"].as_str().is_none_or(str::is_empty) {
                errors.push((
                    format!("{path}.onPodConditions[{j}].type"),
                    "Required value".into(),
                ));
            }
        }
    }
    errors
}

fn validate_success_policy(policy: &Value, spec: &Value, prefix: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let rules = policy["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if rules.is_empty() {
        errors.push((format!("{prefix}successPolicy.rules"), "Required value: at least one rules must be specified when the successPolicy is specified".into()));
    }
    if rules.len() > 20 {
        errors.push((
            format!("{prefix}successPolicy.rules"),
            format!("Too many: {}: must have at most 20 items", rules.len()),
        ));
    }
    let completions = spec["completions"].as_i64().unwrap_or(0);
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{prefix}successPolicy.rules[{i}]");
        let indexes = rule["succeededIndexes"].as_str();
        let count = rule["succeededCount"].as_i64();
        if indexes.is_none() && count.is_none() {
            errors.push((
                path.clone(),
                "Required value: at least one of succeededCount or succeededIndexes must be specified".into(),
            ));
        }
        if let Some(count) = count {
            if count < 0 {
                errors.push((
                    format!("{path}.succeededCount"),
                    format!("Invalid value: {count}: must be greater than or equal to 0"),
                ));
            } else if count > completions {
                errors.push((
                    format!("{path}.succeededCount"),
                    format!("Invalid value: {count}: must be less than or equal to {completions} (the number of specified completions)"),
                ));
            }
        }
        if let Some(text) = indexes
            && let Err(message) = check_indexes(text, completions)
        {
            errors.push((
                format!("{path}.succeededIndexes"),
                format!("Invalid value: {text:?}: error parsing succeededIndexes: {message}"),
            ));
        }
    }
    errors
}

/// A completion-index list ("1,3-5"): increasing, within `[0, completions)`.
fn check_indexes(text: &str, completions: i64) -> Result<(), String> {
    let mut last: Option<i64> = None;
    for part in text.split(',') {
        let (first, end) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| format!("cannot convert string to integer for index: {s:?}"))
        };
        let (first, end) = (parse(first)?, parse(end)?);
        if first > end {
            return Err(format!(
                "non-increasing order, previous: {first}, current: {end}"
            ));
        }
        if last.is_some_and(|l| first <= l) {
            return Err(format!(
                "overlapping or non-increasing order, previous: {}, current: {first}",
                last.unwrap_or_default()
            ));
        }
        if end >= completions {
            return Err(format!("too large index: {end}"));
        }
        last = Some(end);
    }
    Ok(())
}

/// Whether the job's first condition of this type is True.
fn has_condition(job: &Value, kind: &str) -> bool {
    items(&job["status"]["conditions"])
        .iter()
        .find(|c| c["type"] == kind)
        .is_some_and(|c| c["status"] == "True")
}

fn status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if !job["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn completions(job: &Value) -> String {
    let succeeded = int(&job["status"]["succeeded"]);
    let spec = &job["spec"];
    if let Some(completions) = spec["completions"].as_i64() {
        return format!("{succeeded}/{completions}");
    }
    match int(&spec["parallelism"]) {
        parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        _ => format!("{succeeded}/1"),
    }
}

/// How long the job ran, or has been running; empty before it starts.
fn duration(job: &Value, now: OffsetDateTime) -> String {
    let status = &job["status"];
    match printing::timestamp(&status["startTime"]) {
        None => String::new(),
        Some(start) => {
            let end = printing::timestamp(&status["completionTime"]).unwrap_or(now);
            printing::human_duration(end - start)
        }
    }
}

fn row(job: &Value, now: OffsetDateTime) -> Vec<Value> {
    let spec = &job["spec"];
    let [containers, images] = printing::container_cells(&spec["template"]["spec"]);
    vec![
        printing::name(job),
        status(job).into(),
        completions(job).into(),
        duration(job, now).into(),
        printing::age(job, now),
        containers,
        images,
        printing::format_label_selector(&spec["selector"]).into(),
    ]
}

/// The labels that tie a job's pods to it: the job's uid, and its name for people.
const CONTROLLER_UID: [&str; 2] = ["batch.kubernetes.io/controller-uid", "controller-uid"];
const JOB_NAME: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];

/// Upstream's batch/v1 Job defaults.
fn default_job(job: &mut Value) {
    let Some(spec) = job.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if spec["backoffLimitPerIndex"].is_null() {
        6
    } else {
        i64::from(i32::MAX)
    };
    set_default(spec, "backoffLimit", json!(backoff));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "manualSelector", json!(false));
    let replacement = if spec["podFailurePolicy"].is_null() {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    if let Some(policy) = spec.get_mut("podFailurePolicy") {
        for rule in items_mut(policy, "rules") {
            for condition in items_mut(rule, "onPodConditions") {
                set_default(condition, "status", json!("True"));
            }
        }
    }
    if let Some(template) = spec.get_mut("template") {
        default_pod_template(template);
    }
    labels_from_template(job);
}

/// A job without labels of its own takes its pod template's.
fn labels_from_template(job: &mut Value) {
    let template_labels = &job["spec"]["template"]["metadata"]["labels"];
    if !template_labels.is_object() {
        return;
    }
    let own = job["metadata"]["labels"].as_object().map_or(0, |l| l.len());
    if own == 0 {
        let labels = template_labels.clone();
        if let Some(metadata) = object_field(job, "metadata") {
            metadata["labels"] = labels;
        }
    }
}

/// Labels the pod template with the job's uid and name and selects the uid, as upstream does
/// for jobs that do not choose their own selector.
fn generate_selector(job: &mut Value) {
    let uid = job["metadata"]["uid"].clone();
    let name = job["metadata"]["name"].clone();
    let Some(template) = job["spec"].get_mut("template").filter(|t| t.is_object()) else {
        return;
    };
    let Some(labels) = object_field(template, "metadata").and_then(|m| object_field(m, "labels"))
    else {
        return;
    };
    for (keys, value) in [(JOB_NAME, &name), (CONTROLLER_UID, &uid)] {
        for key in keys {
            set_default(labels, key, value.clone());
        }
    }
    let Some(selector) = object_field(&mut job["spec"], "selector") else {
        return;
    };
    if let Some(match_labels) = object_field(selector, "matchLabels") {
        set_default(match_labels, CONTROLLER_UID[0], uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    fn new_job(template_labels: Option<Value>) -> Value {
        let mut template = json!({"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(labels) = template_labels {
            template["metadata"] = json!({"labels": labels});
        }
        let mut job =
            json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": template}});
        Jobs.prepare_for_create(&mut job);
        job
    }

    #[test]
    fn jobs_run_one_pod_once_with_six_retries() {
        let spec = new_job(None)["spec"].clone();
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn parallel_jobs_keep_completions_unset() {
        let mut job = json!({"spec": {"parallelism": 3, "template": {}}});
        Jobs.prepare_for_update(&mut job, &Value::Null);
        assert!(job["spec"]["completions"].is_null());
    }

    #[test]
    fn job_selectors_are_generated_from_the_uid() {
        let job = new_job(None);
        let labels = json!({
            "batch.kubernetes.io/controller-uid": "u-1",
            "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u-1",
            "job-name": "pi",
        });
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(job["metadata"]["labels"], labels);
        assert_eq!(job["status"], json!({}));
    }

    #[test]
    fn jobs_take_their_templates_labels_as_written() {
        let job = new_job(Some(json!({"app": "pi"})));
        assert_eq!(job["metadata"]["labels"], json!({"app": "pi"}));
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
    }

    #[test]
    fn manual_selectors_are_left_alone() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {
            "manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}}}});
        Jobs.prepare_for_create(&mut job);
        assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"a": "b"}}));
    }

    #[test]
    fn failure_policies_replace_only_failed_pods() {
        let mut job = json!({"spec": {"template": {}, "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}});
        Jobs.prepare_for_update(&mut job, &Value::Null);
        assert_eq!(job["spec"]["podReplacementPolicy"], "Failed");
        assert_eq!(
            job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
    }

    const NOW: &str = "2026-03-01T12:00:00Z";

    #[test]
    fn a_completed_job_shows_its_completions_and_run_time() {
        let job = json!({
            "metadata": { "name": "pi", "creationTimestamp": "2026-03-01T11:00:00Z" },
            "spec": {
                "completions": 3,
                "selector": { "matchLabels": { "batch.kubernetes.io/controller-uid": "u1" } },
                "template": { "spec": { "containers": [{ "name": "pi", "image": "perl" }] } },
            },
            "status": {
                "succeeded": 3,
                "startTime": "2026-03-01T11:00:05Z",
                "completionTime": "2026-03-01T11:01:45Z",
                "conditions": [{ "type": "Complete", "status": "True" }],
            },
        });
        assert_eq!(
            json!(row(&job, at(NOW))),
            json!([
                "pi",
                "Complete",
                "3/3",
                "100s",
                "60m",
                "pi",
                "perl",
                "batch.kubernetes.io/controller-uid=u1"
            ])
        );
    }

    #[test]
    fn a_running_job_counts_its_duration_until_now() {
        let job = json!({
            "spec": { "parallelism": 1 },
            "status": { "startTime": "2026-03-01T11:55:00Z", "active": 1 },
        });
        let cells = row(&job, at(NOW));
        assert_eq!(json!(cells[1..4]), json!(["Running", "0/1", "5m"]));
    }

    #[test]
    fn a_job_without_completions_shows_its_parallelism() {
        let job = json!({ "spec": { "parallelism": 4 }, "status": { "succeeded": 1 } });
        assert_eq!(row(&job, at(NOW))[2], "1/1 of 4");
    }

    #[test]
    fn a_job_that_has_not_started_has_no_duration() {
        let job = json!({ "spec": { "completions": 1 } });
        assert_eq!(row(&job, at(NOW))[3], "");
    }

    #[test]
    fn job_status_prefers_final_conditions_over_deletion() {
        let failed = json!({
            "metadata": { "deletionTimestamp": NOW },
            "status": { "conditions": [{ "type": "Failed", "status": "True" }] },
        });
        assert_eq!(status(&failed), "Failed");
        let deleting = json!({
            "metadata": { "deletionTimestamp": NOW },
            "status": { "conditions": [{ "type": "Suspended", "status": "True" }] },
        });
        assert_eq!(status(&deleting), "Terminating");
        let suspended =
            json!({ "status": { "conditions": [{ "type": "Suspended", "status": "True" }] } });
        assert_eq!(status(&suspended), "Suspended");
        let failing =
            json!({ "status": { "conditions": [{ "type": "FailureTarget", "status": "True" }] } });
        assert_eq!(status(&failing), "FailureTarget");
    }

    fn errors_of(spec: Value) -> Vec<String> {
        validate_spec(&spec, "spec.")
            .into_iter()
            .map(|(path, message)| format!("{path}: {message}"))
            .collect()
    }

    fn never() -> Value {
        json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "main"}]}})
    }

    #[test]
    fn a_job_template_must_not_restart_always() {
        let errors = errors_of(json!({"template": {"spec": {"restartPolicy": "Always"}}}));
        assert_eq!(
            errors,
            [
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
            ]
        );
        assert!(errors_of(json!({"template": never()})).is_empty());
    }

    #[test]
    fn a_pod_failure_policy_needs_never_and_failindex_needs_a_per_index_limit() {
        let policy = json!({"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1, 2]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "other", "operator": "In", "values": [0]}},
        ]});
        let mut template = never();
        template["spec"]["restartPolicy"] = json!("OnFailure");
        let errors = errors_of(json!({"template": template, "podFailurePolicy": policy}));
        assert_eq!(
            errors,
            [
                "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified",
                "spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
                "spec.podFailurePolicy.rules[1].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
                "spec.podFailurePolicy.rules[1].onExitCodes.containerName: Invalid value: \"other\": must be one of the container or initContainer names in the pod template",
            ]
        );
    }

    #[test]
    fn per_index_limits_and_success_policies_need_indexed_jobs() {
        let errors = errors_of(json!({
            "template": never(), "completions": 3, "backoffLimitPerIndex": 1,
            "successPolicy": {"rules": [{"succeededCount": 2}]},
        }));
        assert_eq!(
            errors,
            [
                "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode",
                "spec.successPolicy: Invalid value: {\"rules\":[{\"succeededCount\":2}]}: requires indexed completion mode",
            ]
        );
        let errors = errors_of(json!({
            "template": never(), "completions": 3, "completionMode": "Indexed",
            "backoffLimitPerIndex": 1, "maxFailedIndexes": 1,
            "successPolicy": {"rules": [{"succeededIndexes": "0,2", "succeededCount": 4}]},
        }));
        assert_eq!(
            errors,
            [
                "spec.successPolicy.rules[0].succeededCount: Invalid value: 4: must be less than or equal to 3 (the number of specified completions)"
            ]
        );
        let errors = errors_of(json!({
            "template": never(), "completions": 3, "completionMode": "Indexed",
            "successPolicy": {"rules": [{"succeededIndexes": "2,1"}]},
        }));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("non-increasing order"), "{errors:?}");
    }
}
