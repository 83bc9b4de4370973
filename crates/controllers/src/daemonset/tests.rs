use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeSpec, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn daemon_set() -> DaemonSet {
    let labels = Some([("app".to_string(), "agent".to_string())].into());
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("default".into()),
            uid: Some("ds-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: labels.clone(),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            },
            ..Default::default()
        },
        status: None,
    }
}

fn node(name: &str, taints: Vec<Taint>) -> Arc<Node> {
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(taints),
            ..Default::default()
        }),
        status: None,
    })
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

/// A ready daemon pod on `node` at revision `hash`.
fn pod(name: &str, node: &str, hash: &str) -> Arc<Pod> {
    let mut pod = pod_for(&daemon_set(), node, hash);
    pod.metadata.name = Some(name.into());
    pod.metadata.creation_timestamp = Some(Time(at(1)));
    pod.spec.as_mut().unwrap().node_name = Some(node.into());
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(at(1))),
            ..Default::default()
        }]),
        ..Default::default()
    });
    Arc::new(pod)
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

#[test]
fn daemonset_creates_one_pod_per_node_pinned_by_affinity() {
    let nodes = vec![node("a", vec![]), node("b", vec![])];
    let plan = plan(
        &daemon_set(),
        &nodes,
        &[pod("agent-a", "a", "h1")],
        "h1",
        at(5),
    );
    assert_eq!(plan.create, vec!["b"]);
    assert_eq!(plan.status.desired_number_scheduled, 2);
    assert_eq!(plan.status.current_number_scheduled, 1);
    let pinned = pod_for(&daemon_set(), "b", "h1");
    assert_eq!(
        eligibility::node_of(pinned.spec.as_ref().unwrap()).as_deref(),
        Some("b")
    );
    assert_eq!(pinned.spec.as_ref().unwrap().node_name, None);
}

#[test]
fn daemonset_skips_nodes_with_untolerated_taints() {
    let nodes = vec![
        node("a", vec![]),
        node("tainted", vec![taint("dedicated", "NoSchedule")]),
        // Daemon pods tolerate node conditions and cordoning on their own.
        node(
            "cordoned",
            vec![taint("node.kubernetes.io/unschedulable", "NoSchedule")],
        ),
    ];
    let plan = plan(&daemon_set(), &nodes, &[], "h1", at(5));
    assert_eq!(plan.create, vec!["a", "cordoned"]);

    let mut tolerant = daemon_set();
    let spec = tolerant.spec.template.spec.as_mut().unwrap();
    spec.tolerations = Some(vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }]);
    assert_eq!(
        plan_for(&tolerant, &nodes).create,
        vec!["a", "tainted", "cordoned"]
    );
}

fn plan_for(ds: &DaemonSet, nodes: &[Arc<Node>]) -> Plan {
    plan(ds, nodes, &[], "h1", at(5))
}

#[test]
fn daemonset_removes_pods_from_nodes_with_untolerated_no_execute_taints() {
    let nodes = vec![node("a", vec![taint("evict", "NoExecute")])];
    let plan = plan(
        &daemon_set(),
        &nodes,
        &[pod("agent-a", "a", "h1")],
        "h1",
        at(5),
    );
    assert_eq!(names(&plan.delete), vec!["agent-a"]);
    assert_eq!(plan.status.number_misscheduled, 1);
}

#[test]
fn daemonset_honours_its_node_selector() {
    let mut ds = daemon_set();
    let spec = ds.spec.template.spec.as_mut().unwrap();
    spec.node_selector = Some([("kubernetes.io/hostname".to_string(), "b".to_string())].into());
    let nodes = vec![node("a", vec![]), node("b", vec![])];
    assert_eq!(plan_for(&ds, &nodes).create, vec!["b"]);
}

#[test]
fn daemonset_rolling_update_replaces_at_most_max_unavailable_pods() {
    let nodes = vec![node("a", vec![]), node("b", vec![]), node("c", vec![])];
    let old = vec![
        pod("agent-a", "a", "h1"),
        pod("agent-b", "b", "h1"),
        pod("agent-c", "c", "h1"),
    ];
    let plan = plan(&daemon_set(), &nodes, &old, "h2", at(5));
    assert_eq!(names(&plan.delete), vec!["agent-a"]);
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.updated_number_scheduled, None);
}

#[test]
fn daemonset_on_delete_leaves_old_pods_running() {
    let mut ds = daemon_set();
    ds.spec.update_strategy = Some(k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    let nodes = vec![node("a", vec![])];
    let plan = plan(&ds, &nodes, &[pod("agent-a", "a", "h1")], "h2", at(5));
    assert!(plan.delete.is_empty() && plan.create.is_empty());
}
