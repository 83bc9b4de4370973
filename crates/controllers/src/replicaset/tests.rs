use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, ReplicationController,
    ReplicationControllerSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use super::*;
use crate::ownership::controller_reference;

fn labels(app: &str) -> Option<BTreeMap<String, String>> {
    Some([("app".to_string(), app.to_string())].into())
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn replica_set(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("rs-uid".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: labels("web"),
                match_expressions: None,
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels("web"),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
            min_ready_seconds: None,
        },
        status: None,
    }
}

fn pod(name: &str, app: &str, owned: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            labels: labels(app),
            owner_references: owned.then(|| {
                vec![controller_reference(
                    "apps/v1",
                    "ReplicaSet",
                    "web",
                    "rs-uid",
                )]
            }),
            creation_timestamp: Some(Time(at(100))),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

fn ready(mut pod: Pod, node: &str, since: i64) -> Pod {
    pod.spec.as_mut().unwrap().node_name = Some(node.into());
    let status = pod.status.as_mut().unwrap();
    status.phase = Some("Running".into());
    status.conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(Time(at(since))),
        ..Default::default()
    }]);
    pod
}

fn cache(pods: Vec<Pod>) -> Store<Pod> {
    let mut writer = Writer::default();
    for pod in pods {
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    writer.as_reader()
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

#[test]
fn replicaset_creates_the_missing_pods() {
    let plan = plan(
        &replica_set(3),
        cache(vec![pod("web-a", "web", true)]).state(),
        true,
    );
    assert_eq!(plan.create, 2);
    assert!(plan.delete.is_empty());
}

#[tokio::test]
async fn replicaset_creates_missing_pods_in_slow_start_batches() {
    assert_eq!(pods::slow_start_batches(10), vec![1, 2, 4, 3]);
    let calls = std::sync::atomic::AtomicUsize::new(0);
    // The third create fails: the batch of two finishes, and no batch of four starts.
    let (done, error) = slow_start(10, || {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { if n == 2 { Err("quota") } else { Ok(()) } }
    })
    .await;
    assert_eq!((done, error), (2, Some("quota")));
    assert_eq!(calls.into_inner(), 3);
}

#[test]
fn replicaset_never_over_creates_while_its_informer_lags() {
    let expectations = Expectations::default();
    let empty = cache(vec![]);
    expectations.created("default/web", "web-a".into(), at(0));
    assert!(!expectations.satisfied("default/web", "default", &empty, at(10)));
    assert_eq!(plan(&replica_set(1), empty.state(), false).create, 0);

    let seen = cache(vec![pod("web-a", "web", true)]);
    assert!(expectations.satisfied("default/web", "default", &seen, at(11)));
    assert_eq!(plan(&replica_set(1), seen.state(), true).create, 0);
}

#[test]
fn replicaset_expectations_expire_when_a_write_is_never_seen() {
    let expectations = Expectations::default();
    expectations.created("default/web", "web-lost".into(), at(0));
    let empty = cache(vec![]);
    assert!(!expectations.satisfied("default/web", "default", &empty, at(299)));
    assert!(expectations.satisfied("default/web", "default", &empty, at(300)));
}

#[test]
fn replicaset_adopts_matching_orphans_and_releases_pods_that_stopped_matching() {
    let pods = cache(vec![
        pod("orphan", "web", false),
        pod("stray", "db", true),
        pod("other", "db", false),
    ]);
    let plan = plan(&replica_set(1), pods.state(), true);
    assert_eq!(names(&plan.adopt), ["orphan"]);
    assert_eq!(names(&plan.release), ["stray"]);
    assert_eq!(names(&plan.owned), ["orphan"]);
    assert_eq!(plan.create, 0);
}

#[test]
fn replicaset_being_deleted_neither_adopts_nor_creates() {
    let mut rs = replica_set(3);
    rs.metadata.deletion_timestamp = Some(Time(at(5)));
    let plan = plan(&rs, cache(vec![pod("orphan", "web", false)]).state(), true);
    assert!(plan.adopt.is_empty());
    assert_eq!(plan.create, 0);
}

#[test]
fn replicaset_deletes_unscheduled_then_not_ready_then_newest_ready_pods_first() {
    let pods = cache(vec![
        ready(pod("old-ready", "web", true), "n1", 10),
        ready(pod("new-ready", "web", true), "n2", 50),
        pod("pending", "web", true),
        {
            let mut p = pod("scheduled-not-ready", "web", true);
            p.spec.as_mut().unwrap().node_name = Some("n3".into());
            p
        },
    ]);
    let plan = plan(&replica_set(1), pods.state(), true);
    assert_eq!(
        names(&plan.delete),
        ["pending", "scheduled-not-ready", "new-ready"]
    );
}

#[test]
fn replicaset_ignores_finished_and_terminating_pods() {
    let mut done = pod("done", "web", true);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut going = pod("going", "web", true);
    going.metadata.deletion_timestamp = Some(Time(at(1)));
    let plan = plan(&replica_set(2), cache(vec![done, going]).state(), true);
    assert_eq!(plan.create, 2);
}

#[test]
fn status_counts_available_pods_only_after_min_ready_seconds() {
    let mut rs = replica_set(3);
    rs.spec.min_ready_seconds = Some(30);
    let owned: Vec<Arc<Pod>> = vec![
        Arc::new(ready(pod("a", "web", true), "n1", 0)),
        Arc::new(ready(pod("b", "web", true), "n1", 90)),
        Arc::new(pod("c", "web", true)),
    ];
    let status = pods::status(&rs, &owned, None, at(100));
    assert_eq!(status.replicas, 3);
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.available_replicas, Some(1));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(
        pods::until_available(&owned[1], 30, at(100)),
        Some(std::time::Duration::from_secs(20))
    );
}

#[test]
fn status_reports_a_failed_create_as_replica_failure_until_it_succeeds() {
    let rs = replica_set(1);
    let failed = pods::status(&rs, &[], Some(("FailedCreate", "quota".into())), at(1));
    let condition = &failed.conditions.clone().unwrap()[0];
    assert_eq!(condition.type_.as_deref(), Some("ReplicaFailure"));
    assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
    let mut later = rs.clone();
    later.status = Some(failed);
    assert_eq!(pods::status(&later, &[], None, at(2)).conditions, None);
}

#[test]
fn created_pods_come_from_the_template_with_a_controller_reference() {
    let pod = pod_from_template(&replica_set(1), &REPLICA_SET);
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(pod.metadata.labels, labels("web"));
    let owner = &pod.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("ReplicaSet", "rs-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
}

#[test]
fn replication_controller_selects_by_its_template_labels_when_it_has_no_selector() {
    let rc = ReplicationController {
        metadata: ObjectMeta::default(),
        spec: Some(ReplicationControllerSpec {
            replicas: Some(2),
            template: replica_set(2).spec.template,
            ..Default::default()
        }),
        status: None,
    };
    let rs = replica_set_of(&rc);
    assert_eq!(rs.spec.selector.match_labels, labels("web"));
}
