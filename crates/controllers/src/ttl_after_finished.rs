//! The TTL-after-finished controller: a Job with `ttlSecondsAfterFinished` is deleted (with
//! background propagation, so the garbage collector removes its pods) that long after its
//! Complete or Failed condition became True.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use r8s_informers::Informers;

use crate::clock::Clock;

const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("job {key}: delete after its TTL: {source}")]
pub struct Error {
    key: String,
    source: kube::Error,
}

pub struct Context {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
}

/// When the job finished: the transition of its Complete or Failed condition to True.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

/// When the job is due for deletion, if it has a TTL, has finished and is not being deleted.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    Some(finished_at(job)? + SignedDuration::from_secs(ttl.max(0).into()))
}

async fn sync(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(expires) = expires_at(&job) else {
        return Ok(Action::await_change());
    };
    let now = ctx.clock.now();
    if expires > now {
        let wait = expires.duration_since(now).unsigned_abs();
        return Ok(Action::requeue(wait + Duration::from_millis(100)));
    }
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    // The UID precondition keeps a job recreated under the same name from being deleted.
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let deleted = api.delete(&job.name_any(), &params).await;
    match deleted {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(Action::await_change())
        }
        Err(source) => Err(Error {
            key: format!("{namespace}/{}", job.name_any()),
            source,
        }),
    }
}

fn error_policy(_job: Arc<Job>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "ttl after finished");
    Action::requeue(RETRY)
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let ctx = Arc::new(Context {
        client: informers.client().clone(),
        clock,
    });
    crate::controller_for::<Job>(&informers)
        .await
        .run(sync, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn job(ttl: Option<i32>, condition: Option<(&str, &str)>) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..Default::default()
            }),
            status: Some(JobStatus {
                conditions: condition.map(|(type_, status)| {
                    vec![JobCondition {
                        type_: type_.into(),
                        status: status.into(),
                        last_transition_time: Some(Time(at(100))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_finished_job_expires_its_ttl_after_the_condition() {
        assert_eq!(
            expires_at(&job(Some(30), Some(("Complete", "True")))),
            Some(at(130))
        );
        assert_eq!(
            expires_at(&job(Some(0), Some(("Failed", "True")))),
            Some(at(100))
        );
    }

    #[test]
    fn running_jobs_and_jobs_without_ttl_never_expire() {
        assert_eq!(expires_at(&job(Some(30), None)), None);
        assert_eq!(
            expires_at(&job(Some(30), Some(("Complete", "False")))),
            None
        );
        assert_eq!(expires_at(&job(None, Some(("Complete", "True")))), None);
    }
}
