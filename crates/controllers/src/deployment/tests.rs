use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use super::rollout::{self, REVISION};
use super::status::{self, NewReplicaSet};
use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
    let int_or_percent = |v: &str| match v.parse() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(v.into()),
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                match_expressions: None,
            },
            template: template("nginx:2"),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(int_or_percent(surge)),
                    max_unavailable: Some(int_or_percent(unavailable)),
                }),
            }),
            ..Default::default()
        },
        status: None,
    }
}

/// A replica set of the deployment running `image`, with `size` pods of which `available`
/// are available.
fn replica_set(
    d: &Deployment,
    image: &str,
    size: i32,
    available: i32,
    revision: i64,
) -> Arc<ReplicaSet> {
    let mut owner = d.clone();
    owner.spec.template = template(image);
    let mut rs = new_replica_set(&owner, size, revision);
    rs.metadata.creation_timestamp = Some(Time(at(revision)));
    rs.status = Some(ReplicaSetStatus {
        replicas: size,
        ready_replicas: Some(available),
        available_replicas: Some(available),
        ..Default::default()
    });
    Arc::new(rs)
}

fn cache(sets: &[Arc<ReplicaSet>]) -> Store<ReplicaSet> {
    let mut writer = Writer::default();
    for rs in sets {
        writer.apply_watcher_event(&watcher::Event::Apply((**rs).clone()));
    }
    writer.as_reader()
}

#[test]
fn replica_sets_are_named_after_the_template_hash() {
    let d = deployment(3, "25%", "25%");
    let rs = new_replica_set(&d, 3, 1);
    let hash = rollout::template_hash(&d.spec.template, None);
    assert_eq!(rs.metadata.name, Some(format!("web-{hash}")));
    assert!(
        hash.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
    );
    assert_eq!(
        rs.spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"],
        hash
    );
    assert_eq!(rs.metadata.annotations.as_ref().unwrap()[REVISION], "1");
    assert_ne!(hash, rollout::template_hash(&template("nginx:3"), None));
    assert_ne!(hash, rollout::template_hash(&d.spec.template, Some(1)));
}

#[test]
fn percentages_round_surge_up_and_unavailability_down() {
    assert_eq!(rollout::fenceposts(&deployment(10, "25%", "25%")), (3, 2));
    assert_eq!(rollout::fenceposts(&deployment(3, "0", "0")), (0, 1));
    assert_eq!(rollout::fenceposts(&deployment(1, "25%", "25%")), (1, 0));
}

#[test]
fn the_new_replica_set_is_the_one_running_the_template() {
    let d = deployment(3, "1", "0");
    let old = replica_set(&d, "nginx:1", 3, 3, 1);
    let new = replica_set(&d, "nginx:2", 0, 0, 2);
    let (found, olds) = rollout::split(&d, vec![new.clone(), old.clone()]);
    assert_eq!(found.unwrap().metadata.name, new.metadata.name);
    assert_eq!(olds.len(), 1);
}

#[test]
fn rolling_update_never_exceeds_max_surge() {
    let d = deployment(10, "2", "0");
    let old = replica_set(&d, "nginx:1", 10, 10, 1);
    let new = replica_set(&d, "nginx:2", 0, 0, 2);
    assert_eq!(rollout::new_replica_set_size(&d, &[&old, &new], 0), 2);
    let grown = replica_set(&d, "nginx:2", 2, 0, 2);
    assert_eq!(rollout::new_replica_set_size(&d, &[&old, &grown], 2), 2);
}

#[test]
fn rolling_update_never_drops_below_max_unavailable() {
    let d = deployment(10, "0", "2");
    let old = replica_set(&d, "nginx:1", 10, 10, 1);
    let new = replica_set(&d, "nginx:2", 0, 0, 2);
    // With nothing new available, only two old pods may go.
    assert_eq!(
        sizes(rollout::scale_down_old(
            &d,
            Some(&new),
            std::slice::from_ref(&old)
        )),
        [8]
    );
    // Two new pods not yet available count as unavailable: nothing more may go.
    let starting = replica_set(&d, "nginx:2", 2, 0, 2);
    let shrunk = replica_set(&d, "nginx:1", 8, 8, 1);
    assert!(rollout::scale_down_old(&d, Some(&starting), std::slice::from_ref(&shrunk)).is_empty());
    // Once they are available, two more old pods may go.
    let ready = replica_set(&d, "nginx:2", 2, 2, 2);
    assert_eq!(
        sizes(rollout::scale_down_old(&d, Some(&ready), &[shrunk])),
        [6]
    );
}

#[test]
fn rolling_update_removes_unavailable_old_pods_first() {
    let d = deployment(4, "0", "1");
    let broken = replica_set(&d, "nginx:0", 2, 0, 1);
    let healthy = replica_set(&d, "nginx:1", 2, 2, 2);
    let new = replica_set(&d, "nginx:2", 0, 0, 3);
    // One pod may go (4 pods, 3 must stay available): the broken set loses it.
    let plan = rollout::scale_down_old(&d, Some(&new), &[broken.clone(), healthy]);
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].0.metadata.name, broken.metadata.name);
    assert_eq!(plan[0].1, 1);
}

fn sizes(plan: Vec<(Arc<ReplicaSet>, i32)>) -> Vec<i32> {
    plan.into_iter().map(|(_, size)| size).collect()
}

#[test]
fn scaling_a_paused_rollout_shares_the_change_in_proportion() {
    let d = deployment(20, "0", "1");
    let old = replica_set(&d, "nginx:1", 5, 5, 1);
    let new = replica_set(&d, "nginx:2", 5, 5, 2);
    let plan = proportional_sizes(&d, Some(&new), &[old]);
    assert_eq!(plan.iter().map(|(_, s)| s).sum::<i32>(), 20);
}

#[test]
fn history_keeps_revision_history_limit_empty_old_replica_sets() {
    let mut d = deployment(1, "1", "0");
    d.spec.revision_history_limit = Some(1);
    let old: Vec<_> = (1..=3)
        .map(|r| replica_set(&d, &format!("nginx:{r}"), 0, 0, r))
        .collect();
    let gone = rollout::beyond_history(&d, &old);
    assert_eq!(
        gone.iter()
            .map(|rs| rollout::revision(rs))
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn rolling_back_bumps_the_old_replica_set_to_the_newest_revision() {
    let d = deployment(1, "1", "0");
    let annotations = rollout::replica_set_annotations(
        &d,
        Some(&[(REVISION.to_string(), "1".to_string())].into()),
        3,
    );
    assert_eq!(annotations[REVISION], "3");
    assert_eq!(annotations[rollout::REVISION_HISTORY], "1");
}

#[test]
fn deployment_adopts_orphan_replica_sets_matching_its_selector() {
    let d = deployment(1, "1", "0");
    let mut orphan = (*replica_set(&d, "nginx:1", 1, 1, 1)).clone();
    orphan.metadata.owner_references = None;
    let claim = claim(&d, cache(&[Arc::new(orphan)]).state());
    assert_eq!(
        (claim.owned.len(), claim.adopt.len(), claim.release.len()),
        (1, 1, 0)
    );
}

#[test]
fn status_reports_a_complete_rollout_as_new_replica_set_available() {
    let d = deployment(3, "1", "0");
    let new = replica_set(&d, "nginx:2", 3, 3, 1);
    let (status, wake) = status::compute(
        &d,
        Some(&new),
        std::slice::from_ref(&new),
        Some(NewReplicaSet::Found),
        at(10),
    );
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3))
    );
    assert_eq!(status.unavailable_replicas, Some(0));
    let reasons: Vec<_> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_.unwrap(), c.reason.unwrap()))
        .collect();
    assert!(reasons.contains(&("Available".into(), "MinimumReplicasAvailable".into())));
    assert!(reasons.contains(&("Progressing".into(), "NewReplicaSetAvailable".into())));
    assert_eq!(wake, None);
}

#[test]
fn a_rollout_without_progress_past_its_deadline_is_progress_deadline_exceeded() {
    let mut d = deployment(3, "1", "0");
    d.spec.progress_deadline_seconds = Some(60);
    let new = replica_set(&d, "nginx:2", 3, 0, 1);
    let (first, wake) = status::compute(
        &d,
        Some(&new),
        std::slice::from_ref(&new),
        Some(NewReplicaSet::Created),
        at(0),
    );
    assert_eq!(wake, Some(std::time::Duration::from_secs(60)));
    d.status = Some(first);
    let (stuck, _) = status::compute(
        &d,
        Some(&new),
        std::slice::from_ref(&new),
        Some(NewReplicaSet::Found),
        at(61),
    );
    let progressing = stuck
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .unwrap();
    assert_eq!(
        (
            progressing.status.as_deref().unwrap(),
            progressing.reason.as_deref()
        ),
        ("False", Some("ProgressDeadlineExceeded"))
    );
}

#[test]
fn a_paused_deployment_reports_deployment_paused() {
    let mut d = deployment(3, "1", "0");
    d.spec.paused = Some(true);
    let (status, _) = status::compute(&d, None, &[], None, at(0));
    let progressing = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));
}
