//! Jobs: the `kubectl get jobs` table (status from the conditions, completions, and how long
//! the job ran).

use serde_json::Value;
use time::OffsetDateTime;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

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
