//! The Job controller (batch/v1): runs pods to `completions` with `parallelism` at a time
//! (NonIndexed, or Indexed with one pod per completion index), replaces failed pods with
//! exponential back-off up to `backoffLimit` (or `backoffLimitPerIndex`), applies
//! `podFailurePolicy` and `successPolicy`, enforces `activeDeadlineSeconds` and `suspend`,
//! and counts finished pods exactly once through the job-tracking finalizer.

pub mod conditions;
pub mod indexes;
pub mod plan;
pub mod policy;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;
pub mod tracking;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::{Index, Informers};
use serde_json::json;

use crate::clock::Clock;
use crate::events::{self, EventRecorder};
use crate::ownership;
use crate::replicaset::{Expectations, slow_start};
use tracking::FinalizerRemovals;

const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("job {key}: {action}: {source}")]
pub struct Error {
    key: String,
    action: String,
    source: kube::Error,
}

pub struct Context {
    pub client: Client,
    pub pods: Store<Pod>,
    /// Pods by controller, orphans by namespace.
    pub pods_by_controller: Arc<Index<Pod>>,
    pub clock: Arc<dyn Clock>,
    pub expectations: Expectations,
    pub removals: FinalizerRemovals,
    pub events: EventRecorder,
}

pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// The pod a job creates from its template, for a completion index in Indexed mode; with
/// `backoffLimitPerIndex`, `failures` are the index's (counted, ignored) failures so far.
pub fn pod_from_template(job: &Job, index: Option<i32>, failures: Option<(i32, i32)>) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let template = spec.template;
    let meta = template.metadata.unwrap_or_default();
    let name = job.name_any();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut pod_spec = template.spec.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(tracking::FINALIZER.to_owned());
    let generate_name = match index {
        Some(i) => {
            labels.insert(indexes::INDEX_KEY.into(), i.to_string());
            annotations.insert(indexes::INDEX_KEY.into(), i.to_string());
            if let Some((counted, ignored)) = failures {
                annotations.insert(indexes::FAILURE_COUNT_KEY.into(), counted.to_string());
                if ignored > 0 {
                    let key = indexes::IGNORED_FAILURE_COUNT_KEY;
                    annotations.insert(key.into(), ignored.to_string());
                }
            }
            // Indexed pods get a stable hostname and their index in the environment.
            pod_spec.hostname = Some(format!("{name}-{i}"));
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{}']", indexes::INDEX_KEY),
                        api_version: None,
                    }),
                    ..Default::default()
                }),
                value: None,
            };
            for container in pod_spec
                .containers
                .iter_mut()
                .chain(pod_spec.init_containers.iter_mut().flatten())
            {
                container.env.get_or_insert_default().push(env.clone());
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![ownership::controller_reference(
                "batch/v1",
                "Job",
                &name,
                job.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

fn remove_finalizer_patch(pod: &Pod) -> serde_json::Value {
    let kept: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != tracking::FINALIZER)
        .collect();
    json!({ "metadata": { "finalizers": kept, "resourceVersion": pod.metadata.resource_version } })
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let key = format!("{namespace}/{name}");
    let err = |action: &str| {
        let (key, action) = (key.clone(), action.to_owned());
        move |source| Error {
            key,
            action,
            source,
        }
    };
    let now = ctx.clock.now();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned = ownership::controlled(&ctx.pods_by_controller, &job.metadata);
    let mut job = (*job).clone();
    let finished = conditions::finished(&job).is_some();

    // Record finished pods before their finalizers come off, so none is lost or counted twice.
    if !finished && job.metadata.deletion_timestamp.is_none() {
        let status = plan::before_release(&job, &owned, &ctx.removals, now);
        if job.status.as_ref() != Some(&status) {
            job.status = Some(status);
            job = jobs
                .replace_status(&name, &PostParams::default(), &job)
                .await
                .map_err(err("record finished pods"))?;
        }
    }
    let mut released = Vec::new();
    for pod in tracking::finalizers_to_remove(&job, &owned) {
        let patch = remove_finalizer_patch(&pod);
        let result = pods_api
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        result
            .map(drop)
            .or_else(crate::ignore_not_found)
            .map_err(err("remove job-tracking finalizer"))?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        ctx.removals.requested(&uid, now);
        released.push(uid);
    }
    if finished || job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }

    let mut status = job.status.clone().unwrap_or_default();
    tracking::flush(&mut status, |uid| {
        !released.iter().any(|u| u == uid)
            && owned
                .iter()
                .any(|p| p.metadata.uid.as_deref() == Some(uid) && tracking::has_finalizer(p))
    });
    let satisfied = ctx.expectations.satisfied(&key, &namespace, &ctx.pods, now);
    let decision = plan::decide(&job, status, &owned, satisfied, now);

    let regarding = events::reference("batch/v1", "Job", &job.metadata);
    for pod in &decision.delete {
        let pod_name = pod.name_any();
        let deleted = pods_api
            .delete(&pod_name, &DeleteParams::background())
            .await;
        deleted
            .map(drop)
            .or_else(crate::ignore_not_found)
            .map_err(err("delete pod"))?;
        ctx.expectations.deleted(&key, pod_name.clone(), now);
        let note = format!("Deleted pod: {pod_name}");
        ctx.events
            .normal(&regarding, "SuccessfulDelete", "Delete", note)
            .await;
    }
    let mut failure = None;
    let indexes = std::sync::Mutex::new(decision.create.clone().into_iter());
    let (created, error) = slow_start(decision.create.len(), || {
        let index = indexes.lock().unwrap().next().flatten();
        let failures = index.and_then(|i| decision.index_failures.get(&i).copied());
        let (pods_api, ctx, key, regarding, job) = (&pods_api, &ctx, &key, &regarding, &job);
        async move {
            let pod = pods_api
                .create(
                    &PostParams::default(),
                    &pod_from_template(job, index, failures),
                )
                .await?;
            ctx.expectations.created(key, pod.name_any(), now);
            let note = format!("Created pod: {}", pod.name_any());
            ctx.events
                .normal(regarding, "SuccessfulCreate", "Create", note)
                .await;
            Ok::<(), kube::Error>(())
        }
    })
    .await;
    let mut new_status = decision.status;
    if let Some(error) = error {
        let note = format!("Error creating: {error}");
        ctx.events
            .warning(&regarding, "FailedCreate", "Create", note)
            .await;
        let missing = (decision.create.len() - created) as i32;
        new_status.active = new_status.active.map(|a| a - missing);
        failure = Some(error);
    }
    for event in &decision.events {
        let note = event.note.clone();
        if event.warning {
            ctx.events
                .warning(&regarding, event.reason, "Sync", note)
                .await;
        } else {
            ctx.events
                .normal(&regarding, event.reason, "Sync", note)
                .await;
        }
    }
    if job.status.as_ref() != Some(&new_status) {
        job.status = Some(new_status);
        jobs.replace_status(&name, &PostParams::default(), &job)
            .await
            .map_err(err("update status"))?;
    }
    if let Some(error) = failure {
        return Err(Error {
            key,
            action: "create pods".into(),
            source: error,
        });
    }
    Ok(match decision.requeue {
        Some(after) => Action::requeue(after),
        None if !satisfied => Action::requeue(Duration::from_secs(300)),
        None => Action::await_change(),
    })
}

fn error_policy(_job: Arc<Job>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "job sync");
    Action::requeue(RETRY)
}

/// Takes the job-tracking finalizer off pods whose job is gone (deleted without waiting
/// for them), which upstream does from its pod event handler; otherwise they would never go.
async fn release_orphans(
    client: Client,
    jobs: Store<Job>,
    mut orphans: tokio::sync::mpsc::UnboundedReceiver<Arc<Pod>>,
) {
    if jobs.wait_until_ready().await.is_err() {
        return;
    }
    while let Some(pod) = orphans.recv().await {
        let Some(owner) = ownership::controller_of(&pod.metadata) else {
            continue;
        };
        let namespace = pod.namespace().unwrap_or_default();
        let job = Api::<Job>::namespaced(client.clone(), &namespace)
            .get_opt(&owner.name)
            .await;
        let gone = matches!(&job, Ok(None))
            || matches!(&job, Ok(Some(j)) if j.metadata.uid.as_deref() != Some(&owner.uid));
        if !gone {
            continue;
        }
        let patch = remove_finalizer_patch(&pod);
        let result = Api::<Pod>::namespaced(client.clone(), &namespace)
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        if let Err(error) = result.map(drop).or_else(crate::ignore_not_found) {
            tracing::warn!(%error, pod = pod.name_any(), "cannot release orphaned job pod");
        }
    }
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (pods, pod_events) = informers.cache_and_touched::<Pod>().await;
    let pods_by_controller = ownership::by_controller::<Pod>(&informers).await;
    let controller = crate::controller_for::<Job>(&informers).await;
    let jobs = controller.store();
    let (orphans_tx, orphans) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(release_orphans(client.clone(), jobs.clone(), orphans));
    let controller = controller.watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
        let owner = ownership::controller_of(&pod.metadata).filter(|o| o.kind == "Job")?;
        let namespace = pod.namespace().unwrap_or_default();
        let job = ObjectRef::new(&owner.name).within(&namespace);
        let known = jobs
            .get(&job)
            .is_some_and(|j| j.metadata.uid.as_deref() == Some(&owner.uid));
        if !known && tracking::has_finalizer(&pod) {
            let _ = orphans_tx.send(pod);
        }
        Some(job)
    });
    let ctx = Arc::new(Context {
        events: EventRecorder::new(client.clone(), "job-controller"),
        client,
        pods,
        pods_by_controller,
        clock,
        expectations: Expectations::default(),
        removals: FinalizerRemovals::default(),
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}
