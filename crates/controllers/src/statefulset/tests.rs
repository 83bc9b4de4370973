use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetOrdinals,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetStatus,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use super::plan::{Plan, Revision, Step, complete_rolling_update, plan};
use super::retention::{self, PodRef};
use super::*;
use crate::ownership::controller_reference;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn labels() -> BTreeMap<String, String> {
    [("app".to_string(), "web".to_string())].into()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn claim_template() -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn stateful_set(replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("set-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels()),
                match_expressions: None,
            },
            service_name: Some("web".into()),
            template: template("v1"),
            volume_claim_templates: Some(vec![claim_template()]),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    max_unavailable: None,
                }),
            }),
            ..Default::default()
        },
        status: None,
    }
}

fn parallel(mut set: StatefulSet) -> StatefulSet {
    set.spec.pod_management_policy = Some("Parallel".into());
    set
}

fn revision(name: &str, image: &str) -> Revision {
    Revision {
        name: name.into(),
        template: template(image),
    }
}

/// A pod of the set at `ordinal`, at revision `rev`, Running and Ready since `ready_since`
/// (or Pending when `None`).
fn pod(set: &StatefulSet, ordinal: i32, rev: &str, ready_since: Option<i64>) -> Arc<Pod> {
    let mut pod = identity::new_pod(set, &template("v1"), ordinal, rev);
    pod.metadata.uid = Some(format!("pod-{ordinal}-uid"));
    pod.metadata.creation_timestamp = Some(Time(at(1)));
    pod.status = Some(match ready_since {
        Some(since) => PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(since))),
                ..Default::default()
            }]),
            ..Default::default()
        },
        None => PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        },
    });
    Arc::new(pod)
}

fn ready(set: &StatefulSet, ordinals: std::ops::Range<i32>, rev: &str) -> Vec<Arc<Pod>> {
    ordinals.map(|o| pod(set, o, rev, Some(1))).collect()
}

fn claims_of(list: Vec<PersistentVolumeClaim>) -> HashMap<String, Arc<PersistentVolumeClaim>> {
    list.into_iter()
        .map(|c| (c.name_any(), Arc::new(c)))
        .collect()
}

/// Every claim of the set's pods at `ordinals`, as created.
fn existing_claims(
    set: &StatefulSet,
    ordinals: std::ops::Range<i32>,
) -> HashMap<String, Arc<PersistentVolumeClaim>> {
    claims_of(
        ordinals
            .flat_map(|o| identity::claims(set, o))
            .map(|(_, claim)| claim)
            .collect(),
    )
}

fn sync(set: &StatefulSet, pods: &[Arc<Pod>], now: i64) -> Plan {
    let claims = existing_claims(set, 0..10);
    plan(
        set,
        pods,
        &claims,
        &revision("web-1", "v1"),
        &revision("web-1", "v1"),
        0,
        at(now),
    )
}

fn rolling(set: &StatefulSet, pods: &[Arc<Pod>]) -> Plan {
    let claims = existing_claims(set, 0..10);
    plan(
        set,
        pods,
        &claims,
        &revision("web-1", "v1"),
        &revision("web-2", "v2"),
        0,
        at(100),
    )
}

/// The steps as short words: `claim:data-web-0`, `create:web-0`, `delete:web-2`, …
fn steps(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|step| match step {
            Step::CreateClaim { claim, .. } => format!("claim:{}", claim.name_any()),
            Step::CreatePod(pod) => format!("create:{}", pod.name_any()),
            Step::DeletePod(pod) => format!("delete:{}", pod.name_any()),
            Step::RelabelPod(pod) => format!("relabel:{}", pod.name_any()),
            Step::SetClaimOwners { claim, .. } => format!("owners:{}", claim.name_any()),
        })
        .collect()
}

#[test]
fn statefulset_pods_are_named_by_ordinal_with_stable_network_identity_and_claims() {
    let set = stateful_set(3);
    let pod = identity::new_pod(&set, &template("v1"), 2, "web-abc");
    assert_eq!(pod.name_any(), "web-2");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let labels = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-2");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "2");
    assert_eq!(labels["controller-revision-hash"], "web-abc");
    let volume = &spec.volumes.as_ref().unwrap()[0];
    assert_eq!(volume.name, "data");
    assert_eq!(
        volume.persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-web-2"
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("StatefulSet", Some(true))
    );
    assert!(identity::identity_matches(&set, &pod));
    assert!(identity::storage_matches(&set, &pod));
}

#[test]
fn statefulset_claims_carry_the_selector_labels() {
    let (volume, claim) = identity::claims(&stateful_set(1), 0).remove(0);
    assert_eq!(volume, "data");
    assert_eq!(claim.name_any(), "data-web-0");
    assert_eq!(claim.metadata.labels, Some(labels()));
}

#[test]
fn ordered_ready_creates_the_lowest_missing_pod_after_its_claims() {
    let set = stateful_set(3);
    let plan = plan(
        &set,
        &[],
        &HashMap::new(),
        &revision("web-1", "v1"),
        &revision("web-1", "v1"),
        0,
        at(5),
    );
    assert_eq!(steps(&plan), vec!["claim:data-web-0", "create:web-0"]);
}

#[test]
fn ordered_ready_waits_for_the_previous_pod_to_be_running_and_ready() {
    let set = stateful_set(3);
    let pending = vec![pod(&set, 0, "web-1", None)];
    assert!(steps(&sync(&set, &pending, 5)).is_empty());
    let running = vec![pod(&set, 0, "web-1", Some(4))];
    assert_eq!(steps(&sync(&set, &running, 5)), vec!["create:web-1"]);
}

#[test]
fn ordered_ready_waits_for_min_ready_seconds() {
    let mut set = stateful_set(2);
    set.spec.min_ready_seconds = Some(10);
    let pods = vec![pod(&set, 0, "web-1", Some(100))];
    assert!(steps(&sync(&set, &pods, 105)).is_empty());
    assert_eq!(steps(&sync(&set, &pods, 110)), vec!["create:web-1"]);
}

#[test]
fn parallel_creates_every_missing_pod_at_once() {
    let set = parallel(stateful_set(3));
    let pods = vec![pod(&set, 1, "web-1", None)];
    assert_eq!(
        steps(&sync(&set, &pods, 5)),
        vec!["create:web-0", "create:web-2"]
    );
}

#[test]
fn ordinals_start_where_the_spec_says() {
    let mut set = stateful_set(2);
    set.spec.ordinals = Some(StatefulSetOrdinals { start: Some(5) });
    let pods = vec![
        pod(&set, 5, "web-1", Some(1)),
        pod(&set, 0, "web-1", Some(1)),
    ];
    // web-0 is outside 5..7: created pods come first, then the stray one goes.
    assert_eq!(steps(&sync(&set, &pods, 5)), vec!["create:web-6"]);
    let pods = vec![
        pod(&set, 5, "web-1", Some(1)),
        pod(&set, 6, "web-1", Some(1)),
        pod(&set, 0, "web-1", Some(1)),
    ];
    assert_eq!(steps(&sync(&set, &pods, 5)), vec!["delete:web-0"]);
}

#[test]
fn scale_down_deletes_the_highest_ordinal_first_one_at_a_time() {
    let set = stateful_set(1);
    let pods = ready(&set, 0..3, "web-1");
    assert_eq!(steps(&sync(&set, &pods, 5)), vec!["delete:web-2"]);
}

#[test]
fn scale_down_waits_for_the_terminating_pod_and_for_unhealthy_pods() {
    let set = stateful_set(1);
    let mut pods = ready(&set, 0..2, "web-1");
    let mut going = (*pod(&set, 2, "web-1", Some(1))).clone();
    going.metadata.deletion_timestamp = Some(Time(at(4)));
    pods.push(Arc::new(going));
    assert!(steps(&sync(&set, &pods, 5)).is_empty());

    // A pod in range that is not ready holds back every deletion.
    let pods = vec![pod(&set, 0, "web-1", None), pod(&set, 1, "web-1", Some(1))];
    assert!(steps(&sync(&set, &pods, 5)).is_empty());
    // The lowest unhealthy pod itself may go.
    let pods = vec![pod(&set, 0, "web-1", Some(1)), pod(&set, 1, "web-1", None)];
    assert_eq!(steps(&sync(&set, &pods, 5)), vec!["delete:web-1"]);
}

#[test]
fn parallel_scale_down_deletes_every_condemned_pod() {
    let set = parallel(stateful_set(1));
    let pods = ready(&set, 0..3, "web-1");
    assert_eq!(
        steps(&sync(&set, &pods, 5)),
        vec!["delete:web-2", "delete:web-1"]
    );
}

#[test]
fn failed_pods_are_deleted_to_come_back_under_the_same_name() {
    let set = stateful_set(2);
    let mut failed = (*pod(&set, 0, "web-1", None)).clone();
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let pods = vec![Arc::new(failed), pod(&set, 1, "web-1", Some(1))];
    assert_eq!(steps(&sync(&set, &pods, 5)), vec!["delete:web-0"]);
    // Once gone, it is created again, named web-0.
    assert_eq!(steps(&sync(&set, &pods[1..], 5)), vec!["create:web-0"]);
}

#[test]
fn rolling_update_replaces_the_highest_ordinal_first_one_at_a_time() {
    let set = stateful_set(3);
    let pods = ready(&set, 0..3, "web-1");
    let plan = rolling(&set, &pods);
    assert_eq!(steps(&plan), vec!["delete:web-2"]);
    assert_eq!(plan.status.current_replicas, Some(2));

    // web-2 came back at the update revision but is not ready yet: wait.
    let mut pods = ready(&set, 0..2, "web-1");
    pods.push(pod(&set, 2, "web-2", None));
    assert!(steps(&rolling(&set, &pods)).is_empty());

    pods[2] = pod(&set, 2, "web-2", Some(50));
    assert_eq!(steps(&rolling(&set, &pods)), vec!["delete:web-1"]);
}

#[test]
fn rolling_update_stops_at_the_partition() {
    let mut set = stateful_set(3);
    set.spec
        .update_strategy
        .as_mut()
        .unwrap()
        .rolling_update
        .as_mut()
        .unwrap()
        .partition = Some(2);
    let mut pods = ready(&set, 0..2, "web-1");
    pods.push(pod(&set, 2, "web-2", Some(1)));
    assert!(steps(&rolling(&set, &pods)).is_empty());
    // A pod below the partition that is created again keeps the current revision.
    let plan = rolling(&set, &[pods[1].clone(), pods[2].clone()]);
    let Step::CreatePod(created) = &plan.steps[0] else {
        panic!("expected a create, got {:?}", steps(&plan));
    };
    assert_eq!(identity::revision(created), "web-1");
}

#[test]
fn rolling_update_with_max_unavailable_replaces_that_many_at_once() {
    let mut set = stateful_set(4);
    let strategy = set.spec.update_strategy.as_mut().unwrap();
    strategy.rolling_update.as_mut().unwrap().max_unavailable = Some(IntOrString::Int(2));
    let pods = ready(&set, 0..4, "web-1");
    assert_eq!(
        steps(&rolling(&set, &pods)),
        vec!["delete:web-3", "delete:web-2"]
    );
}

#[test]
fn parallel_rolling_update_replaces_an_old_pod_that_never_became_available() {
    let set = parallel(stateful_set(1));
    let pods = vec![pod(&set, 0, "web-1", None)];
    assert_eq!(steps(&rolling(&set, &pods)), vec!["delete:web-0"]);
}

#[test]
fn on_delete_leaves_old_pods_until_someone_deletes_them() {
    let mut set = stateful_set(2);
    set.spec.update_strategy = Some(StatefulSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    let pods = ready(&set, 0..2, "web-1");
    assert!(steps(&rolling(&set, &pods)).is_empty());
    let plan = rolling(&set, &pods[..1]);
    let Step::CreatePod(created) = &plan.steps[0] else {
        panic!("expected a create, got {:?}", steps(&plan));
    };
    assert_eq!(identity::revision(created), "web-2");
}

#[test]
fn status_counts_pods_and_completes_the_rollout_once_all_are_updated_and_ready() {
    let set = stateful_set(2);
    let pods = vec![pod(&set, 0, "web-2", Some(1)), pod(&set, 1, "web-2", None)];
    let mut plan = rolling(&set, &pods);
    complete_rolling_update(&set, &mut plan.status);
    let status = &plan.status;
    assert_eq!(status.replicas, 2);
    assert_eq!(status.ready_replicas, Some(1));
    assert_eq!(status.available_replicas, Some(1));
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(status.current_replicas, Some(0));
    assert_eq!(status.current_revision.as_deref(), Some("web-1"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.collision_count, Some(0));

    let pods = ready(&set, 0..2, "web-2");
    let mut plan = rolling(&set, &pods);
    complete_rolling_update(&set, &mut plan.status);
    assert_eq!(plan.status.current_revision.as_deref(), Some("web-2"));
    assert_eq!(plan.status.current_replicas, Some(2));
}

fn retain_policy(when_deleted: &str, when_scaled: &str) -> StatefulSet {
    let mut set = stateful_set(1);
    set.spec.persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some(when_deleted.into()),
            when_scaled: Some(when_scaled.into()),
        });
    set
}

#[test]
fn when_deleted_delete_makes_the_set_own_new_claims() {
    let set = retain_policy("Delete", "Retain");
    let plan = plan(
        &set,
        &[],
        &HashMap::new(),
        &revision("web-1", "v1"),
        &revision("web-1", "v1"),
        0,
        at(5),
    );
    let Step::CreateClaim { claim, .. } = &plan.steps[0] else {
        panic!("expected a claim, got {:?}", steps(&plan));
    };
    let owners = claim.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].uid.as_str()),
        ("StatefulSet", "set-uid")
    );

    let retained = plan_for_new(&stateful_set(1));
    let Step::CreateClaim { claim, .. } = &retained.steps[0] else {
        panic!("expected a claim");
    };
    assert_eq!(claim.metadata.owner_references, None);
}

fn plan_for_new(set: &StatefulSet) -> Plan {
    plan(
        set,
        &[],
        &HashMap::new(),
        &revision("web-1", "v1"),
        &revision("web-1", "v1"),
        0,
        at(5),
    )
}

#[test]
fn when_scaled_delete_hands_a_condemned_pods_claim_to_the_pod_before_deleting_it() {
    let set = retain_policy("Retain", "Delete");
    let pods = ready(&set, 0..2, "web-1");
    let plan = sync(&set, &pods, 5);
    assert_eq!(steps(&plan), vec!["owners:data-web-1", "delete:web-1"]);
    let Step::SetClaimOwners { owners, .. } = &plan.steps[0] else {
        unreachable!()
    };
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].uid.as_str()),
        ("Pod", "pod-1-uid")
    );
}

#[test]
fn a_claim_still_owned_by_a_deleted_pod_holds_back_its_successor() {
    let set = retain_policy("Retain", "Delete");
    let mut claims = existing_claims(&set, 0..1);
    let mut stale = (*claims["data-web-0"]).clone();
    stale.metadata.owner_references =
        Some(vec![controller_reference("v1", "Pod", "web-0", "old-uid")]);
    assert!(retention::is_stale(
        &stale,
        &set,
        PodRef {
            name: "web-0",
            uid: ""
        }
    ));
    claims.insert("data-web-0".into(), Arc::new(stale));
    let plan = plan(
        &set,
        &[],
        &claims,
        &revision("web-1", "v1"),
        &revision("web-1", "v1"),
        0,
        at(5),
    );
    assert!(plan.steps.is_empty());
}

#[test]
fn a_claim_being_deleted_blocks_its_pod() {
    let set = stateful_set(1);
    let mut claims = existing_claims(&set, 0..1);
    let mut going = (*claims["data-web-0"]).clone();
    going.metadata.deletion_timestamp = Some(Time(at(1)));
    claims.insert("data-web-0".into(), Arc::new(going));
    let plan = plan(
        &set,
        &[],
        &claims,
        &revision("web-1", "v1"),
        &revision("web-1", "v1"),
        0,
        at(5),
    );
    assert!(plan.steps.is_empty());
    assert!(plan.blocked.is_some());
}

#[test]
fn a_pod_missing_its_identity_labels_gets_them_back() {
    let set = stateful_set(1);
    let mut unlabelled = (*pod(&set, 0, "web-1", Some(1))).clone();
    unlabelled.labels_mut().remove(identity::POD_NAME_LABEL);
    assert_eq!(
        steps(&sync(&set, &[Arc::new(unlabelled)], 5)),
        vec!["relabel:web-0"]
    );
}

fn cache(pods: Vec<Pod>) -> Store<Pod> {
    let mut writer = Writer::default();
    for pod in pods {
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    writer.as_reader()
}

#[test]
fn statefulset_adopts_orphans_named_and_labelled_as_its_pods_only() {
    let set = stateful_set(2);
    let orphan = |name: &str| {
        let mut pod = (*pod(&set, 0, "web-1", Some(1))).clone();
        pod.metadata.name = Some(name.into());
        pod.metadata.owner_references = None;
        pod
    };
    let mut unlabelled = (*pod(&set, 1, "web-1", Some(1))).clone();
    unlabelled.metadata.labels = Some(BTreeMap::new());
    let claim = claim_pods(
        &set,
        cache(vec![
            orphan("web-0"),
            orphan("other-0"),
            orphan("web-x"),
            unlabelled,
        ])
        .state(),
    );
    let names = |pods: &[Arc<Pod>]| pods.iter().map(|p| p.name_any()).collect::<Vec<_>>();
    assert_eq!(names(&claim.adopt), vec!["web-0"]);
    assert_eq!(names(&claim.owned), vec!["web-0"]);
    assert_eq!(names(&claim.release), vec!["web-1"]);
}

#[test]
fn a_deleting_statefulset_only_reports_status() {
    let mut set = stateful_set(3);
    set.metadata.deletion_timestamp = Some(Time(at(1)));
    set.status = Some(StatefulSetStatus::default());
    let plan = sync(&set, &ready(&set, 0..1, "web-1"), 5);
    assert!(plan.steps.is_empty());
    assert_eq!(plan.status.replicas, 1);
}
