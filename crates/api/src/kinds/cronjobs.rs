//! CronJobs: the `kubectl get cronjobs` table (schedule, time zone, suspension, active jobs
//! and when the last one was scheduled).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{default_pod_template, set_default};
use super::printing::{self, AGE, CONTAINERS, IMAGES, NAME, column, items, text};
use super::{Column, FieldError, Kind, jobs};

pub struct CronJobs;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    column(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones",
    ),
    column(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.",
    ),
    column(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
    ),
    column(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    jobs::SELECTOR,
];

impl Kind for CronJobs {
    fn prepare_for_create(&self, object: &mut Value) {
        default_cron_job(object);
        object["status"] = json!({});
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_cron_job(new);
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        jobs::validate_spec(
            &object["spec"]["jobTemplate"]["spec"],
            "spec.jobTemplate.spec.",
        )
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

fn row(cron_job: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (spec, status) = (&cron_job["spec"], &cron_job["status"]);
    let last_schedule = match status["lastScheduleTime"] {
        Value::Null => "<none>".into(),
        ref time => printing::since(time, now),
    };
    let time_zone = spec["timeZone"].as_str().unwrap_or("<none>");
    // Upstream prints this boolean column as text.
    let suspend = match spec["suspend"].as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let [containers, images] = printing::container_cells(&job_spec["template"]["spec"]);
    vec![
        printing::name(cron_job),
        text(&spec["schedule"]).into(),
        time_zone.into(),
        suspend.into(),
        (items(&status["active"]).len() as i64).into(),
        last_schedule.into(),
        printing::age(cron_job, now),
        containers,
        images,
        printing::format_label_selector(&job_spec["selector"]).into(),
    ]
}

/// Upstream's batch/v1 CronJob defaults; the job template's pod template gets the pod spec
/// defaults, but not a Job's own.
fn default_cron_job(cron_job: &mut Value) {
    let Some(spec) = cron_job.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(template) = spec
        .get_mut("jobTemplate")
        .and_then(|t| t.get_mut("spec"))
        .and_then(|s| s.get_mut("template"))
    {
        default_pod_template(template);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn cron_jobs_allow_concurrency_and_keep_three_successes_and_one_failure() {
        let mut cron_job = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {
            "template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        CronJobs.prepare_for_create(&mut cron_job);
        let spec = &cron_job["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        let job_spec = &spec["jobTemplate"]["spec"];
        assert!(job_spec.get("backoffLimit").is_none());
        assert_eq!(
            job_spec["template"]["spec"]["schedulerName"],
            "default-scheduler"
        );
        assert_eq!(cron_job["status"], json!({}));
    }

    #[test]
    fn a_cron_job_shows_its_schedule_and_last_run() {
        let cron_job = json!({
            "metadata": { "name": "nightly", "creationTimestamp": "2026-02-20T12:00:00Z" },
            "spec": {
                "schedule": "0 3 * * *",
                "timeZone": "Europe/Paris",
                "suspend": false,
                "jobTemplate": { "spec": { "template": { "spec": {
                    "containers": [{ "name": "backup", "image": "restic" }],
                } } } },
            },
            "status": {
                "active": [{ "name": "nightly-1" }],
                "lastScheduleTime": "2026-03-01T03:00:00Z",
            },
        });
        assert_eq!(
            json!(row(&cron_job, at("2026-03-01T12:00:00Z"))),
            json!([
                "nightly",
                "0 3 * * *",
                "Europe/Paris",
                "False",
                1,
                "9h",
                "9d",
                "backup",
                "restic",
                "<none>"
            ])
        );
    }

    #[test]
    fn a_cron_job_never_scheduled_shows_none_and_an_unset_suspend() {
        let cron_job = json!({ "spec": { "schedule": "@hourly" } });
        let cells = row(&cron_job, at("2026-03-01T12:00:00Z"));
        assert_eq!(
            json!(cells[2..6]),
            json!(["<none>", "<unset>", 0, "<none>"])
        );
    }
}
