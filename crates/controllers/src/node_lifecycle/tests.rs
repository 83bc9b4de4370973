use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::health::{NO_EXECUTE, NO_SCHEDULE, NOT_READY, UNREACHABLE, UNSCHEDULABLE};
use super::*;
use crate::clock::{Clock, FixedClock};
use crate::endpointslice::tests::cache;

const GRACE: SignedDuration = SignedDuration::from_secs(40);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn node(ready: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("node-a".into()),
            creation_timestamp: Some(Time(at(0))),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                last_heartbeat_time: Some(Time(at(1))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn lease_renewed(seconds: i64) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("node-a".into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            renew_time: Some(MicroTime(at(seconds))),
            ..Default::default()
        }),
    }
}

fn ready_pod_on_node() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-a".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn keys(taints: &[Taint]) -> Vec<(String, String)> {
    let mut keys: Vec<_> = taints
        .iter()
        .map(|t| (t.key.clone(), t.effect.clone()))
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_node_renewing_its_lease_is_left_alone_and_rechecked_at_the_grace_deadline() {
    let clock = FixedClock::at(100);
    let plan = plan(
        &node("True"),
        Some(&lease_renewed(90)),
        &cache(vec![ready_pod_on_node()]),
        GRACE,
        clock.now(),
    );
    assert_eq!(plan.conditions, None);
    assert_eq!(plan.taints, None);
    assert!(plan.pods_not_ready.is_empty());
    assert_eq!(plan.recheck_at, Some(at(130)));
}

#[test]
fn a_node_without_lease_renewal_for_the_grace_period_becomes_unknown_and_tainted() {
    let clock = FixedClock::at(89);
    let lease = lease_renewed(50);
    let quiet = plan(
        &node("True"),
        Some(&lease),
        &cache(Vec::new()),
        GRACE,
        clock.now(),
    );
    assert_eq!(quiet.conditions, None, "silent for 39 s only");
    *clock.0.lock().unwrap() = at(91);
    let plan = plan(
        &node("True"),
        Some(&lease),
        &cache(vec![ready_pod_on_node()]),
        GRACE,
        clock.now(),
    );
    let conditions = plan.conditions.expect("conditions change");
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    assert_eq!(ready.last_transition_time, Some(Time(at(91))));
    let taints = plan.taints.expect("taints change");
    assert_eq!(
        keys(&taints),
        vec![
            (UNREACHABLE.to_string(), NO_EXECUTE.to_string()),
            (UNREACHABLE.to_string(), NO_SCHEDULE.to_string())
        ]
    );
    let no_execute = taints.iter().find(|t| t.effect == NO_EXECUTE).unwrap();
    assert_eq!(no_execute.time_added, Some(Time(at(91))));
    assert_eq!(plan.pods_not_ready, vec!["default/web".to_string()]);
}

#[test]
fn a_not_ready_node_gets_the_not_ready_taints() {
    let plan = plan(
        &node("False"),
        Some(&lease_renewed(95)),
        &cache(Vec::new()),
        GRACE,
        at(100),
    );
    assert_eq!(plan.conditions, None);
    assert_eq!(
        keys(&plan.taints.unwrap()),
        vec![
            (NOT_READY.to_string(), NO_EXECUTE.to_string()),
            (NOT_READY.to_string(), NO_SCHEDULE.to_string())
        ]
    );
}

#[test]
fn taints_are_removed_when_the_node_recovers_and_others_kept() {
    let mut recovered = node("True");
    let foreign = Taint {
        key: "dedicated".into(),
        effect: NO_SCHEDULE.into(),
        ..Default::default()
    };
    let unreachable = Taint {
        key: UNREACHABLE.into(),
        effect: NO_EXECUTE.into(),
        time_added: Some(Time(at(10))),
        value: None,
    };
    recovered.spec.as_mut().unwrap().taints = Some(vec![foreign.clone(), unreachable]);
    let plan = plan(
        &recovered,
        Some(&lease_renewed(95)),
        &cache(Vec::new()),
        GRACE,
        at(100),
    );
    assert_eq!(plan.taints, Some(vec![foreign]));
}

#[test]
fn a_cordoned_node_gets_the_unschedulable_taint_once() {
    let mut cordoned = node("True");
    cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
    let lease = lease_renewed(95);
    let first = plan(&cordoned, Some(&lease), &cache(Vec::new()), GRACE, at(100));
    let taints = first.taints.expect("tainted");
    assert_eq!(
        keys(&taints),
        vec![(UNSCHEDULABLE.to_string(), NO_SCHEDULE.to_string())]
    );
    cordoned.spec.as_mut().unwrap().taints = Some(taints);
    let again = plan(&cordoned, Some(&lease), &cache(Vec::new()), GRACE, at(101));
    assert_eq!(again.taints, None);
}

#[test]
fn an_unknown_node_keeps_its_eviction_clock() {
    let mut silent = node("Unknown");
    let taints = vec![
        Taint {
            key: UNREACHABLE.into(),
            effect: NO_EXECUTE.into(),
            time_added: Some(Time(at(50))),
            value: None,
        },
        Taint {
            key: UNREACHABLE.into(),
            effect: NO_SCHEDULE.into(),
            ..Default::default()
        },
    ];
    silent.spec.as_mut().unwrap().taints = Some(taints);
    let plan = plan(&silent, None, &cache(Vec::new()), GRACE, at(500));
    assert_eq!(plan.taints, None);
    assert_eq!(plan.recheck_at, None);
}
