//! A deployment's status and its Available and Progressing conditions, with upstream's
//! reasons and messages (what `kubectl rollout status` reads).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::rollout::{desired, fenceposts};

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status.as_ref().map_or((0, 0, 0), |s| {
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    })
}

/// What happened to the new replica set in this sync, for the Progressing condition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NewReplicaSet {
    Created,
    Found,
}

/// Upstream's `DeploymentComplete`.
pub fn complete(deployment: &Deployment, status: &DeploymentStatus) -> bool {
    let wanted = desired(deployment);
    status.updated_replicas.unwrap_or(0) == wanted
        && status.replicas.unwrap_or(0) == wanted
        && status.available_replicas.unwrap_or(0) == wanted
        && status.observed_generation >= deployment.metadata.generation
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Replaces a condition, keeping its transition time when its status did not change.
fn set(conditions: &mut Vec<DeploymentCondition>, mut new: DeploymentCondition) {
    if let Some(old) = conditions.iter().find(|c| c.type_ == new.type_) {
        if old.status == new.status && old.reason == new.reason && old.message == new.message {
            return;
        }
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

/// The status the replica sets add up to, with conditions. Returns it and, while a rollout
/// is under way with a deadline, when the deadline passes.
pub fn compute(
    deployment: &Deployment,
    new: Option<&Arc<ReplicaSet>>,
    all: &[Arc<ReplicaSet>],
    new_event: Option<NewReplicaSet>,
    now: Timestamp,
) -> (DeploymentStatus, Option<std::time::Duration>) {
    let mut wake = None;
    let previous = deployment.status.clone().unwrap_or_default();
    let sum = |f: fn((i32, i32, i32)) -> i32| all.iter().map(|rs| f(status_of(rs))).sum::<i32>();
    let available = sum(|s| s.2);
    let wanted = desired(deployment);
    let mut status = DeploymentStatus {
        replicas: Some(sum(|s| s.0)),
        updated_replicas: Some(new.map_or(0, |rs| status_of(rs).0)),
        ready_replicas: Some(sum(|s| s.1)),
        available_replicas: Some(available),
        unavailable_replicas: Some((wanted - available).max(0)),
        observed_generation: deployment.metadata.generation,
        collision_count: previous.collision_count,
        conditions: previous.conditions.clone(),
        terminating_replicas: previous.terminating_replicas,
    };
    let mut conditions = status.conditions.take().unwrap_or_default();
    let (_, max_unavailable) = fenceposts(deployment);
    if available >= wanted - max_unavailable {
        let message = "Deployment has minimum availability.".to_owned();
        set(
            &mut conditions,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                message,
                now,
            ),
        );
    } else {
        let message = "Deployment does not have minimum availability.".to_owned();
        set(
            &mut conditions,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                message,
                now,
            ),
        );
    }

    let spec = &deployment.spec;
    let paused = spec.paused.unwrap_or(false);
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let progressing = conditions
        .iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .cloned();
    let reason_of = |c: &Option<DeploymentCondition>| c.as_ref().and_then(|c| c.reason.clone());
    let name = new
        .and_then(|rs| rs.metadata.name.clone())
        .unwrap_or_default();
    if paused {
        if reason_of(&progressing).as_deref() != Some("DeploymentPaused") {
            let c = condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                now,
            );
            set(&mut conditions, c);
        }
    } else if reason_of(&progressing).as_deref() == Some("DeploymentPaused") {
        let c = condition(
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
            now,
        );
        set(&mut conditions, c);
    } else if complete(deployment, &status) {
        let message = format!("ReplicaSet \"{name}\" has successfully progressed.");
        set(
            &mut conditions,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                message,
                now,
            ),
        );
    } else if let Some(event) =
        new_event.filter(|e| *e == NewReplicaSet::Created || progressing.is_none())
    {
        let (reason, message) = match event {
            NewReplicaSet::Created => (
                "NewReplicaSetCreated",
                format!("Created new replica set \"{name}\""),
            ),
            NewReplicaSet::Found => (
                "FoundNewReplicaSet",
                format!("Found new replica set \"{name}\""),
            ),
        };
        set(
            &mut conditions,
            condition("Progressing", "True", reason, message, now),
        );
    } else if made_progress(&previous, &status) {
        let message = format!("ReplicaSet \"{name}\" is progressing.");
        let mut c = condition("Progressing", "True", "ReplicaSetUpdated", message, now);
        if let Some(old) = progressing
            .as_ref()
            .filter(|c| c.status.as_deref() == Some("True"))
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
        conditions.retain(|c| c.type_.as_deref() != Some("Progressing"));
        conditions.push(c);
    } else if let Some(since) = progressing
        .as_ref()
        .filter(|c| c.status.as_deref() == Some("True"))
        .and_then(|c| c.last_update_time.as_ref())
    {
        let at = since.0 + SignedDuration::from_secs(deadline.into());
        if at <= now {
            let message = format!("ReplicaSet \"{name}\" has timed out progressing.");
            set(
                &mut conditions,
                condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    message,
                    now,
                ),
            );
        }
    }
    let running = conditions
        .iter()
        .find(|c| c.type_.as_deref() == Some("Progressing") && c.status.as_deref() == Some("True"))
        .filter(|c| c.reason.as_deref() != Some("NewReplicaSetAvailable"));
    if let Some(since) = running.and_then(|c| c.last_update_time.as_ref()) {
        let at = since.0 + SignedDuration::from_secs(deadline.into());
        wake = Some(now.duration_until(at).unsigned_abs());
    }
    status.conditions = Some(conditions);
    (status, wake)
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available pods, or fewer old ones.
fn made_progress(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_pods = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_pods = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas > old.updated_replicas
        || new_pods < old_pods
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}
