//! Jobs: the `kubectl get jobs` table (status from the conditions, completions, and how long
//! the job ran).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{default_pod_template, items_mut, object_field, set_default};
use super::printing::{self, AGE, CONTAINERS, IMAGES, NAME, column, int, items, wide};
use super::{Column, Kind};

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

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
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
}
