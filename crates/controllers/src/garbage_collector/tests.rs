use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::graph::*;

fn reference(uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: uid.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}

fn node(uid: &str, owners: Vec<OwnerReference>) -> Node {
    Node {
        resource: 0,
        namespace: Some("default".into()),
        name: uid.into(),
        uid: uid.into(),
        resource_version: Some("1".into()),
        owners,
        finalizers: Vec::new(),
        deleting: false,
    }
}

fn deleting(mut node: Node, finalizer: &str) -> Node {
    node.deleting = true;
    node.finalizers = vec![finalizer.into()];
    node
}

/// Each owner's state as the collector resolves it from the graph (unknown = gone).
fn states(graph: &Graph, node: &Node) -> Vec<(OwnerReference, OwnerState)> {
    node.owners
        .iter()
        .map(|r| match owner_state(graph, r) {
            OwnerState::Unknown => (r.clone(), OwnerState::Dangling),
            s => (r.clone(), s),
        })
        .collect()
}

fn step(graph: &Graph, uid: &str) -> Step {
    let node = graph.get(uid).unwrap().clone();
    decide(graph, &node, &states(graph, &node))
}

#[test]
fn background_deletion_deletes_dependents_whose_owners_are_gone() {
    let mut graph = Graph::default();
    graph.upsert(node("pod", vec![reference("rs", true)]));
    assert_eq!(step(&graph, "pod"), Step::Delete { foreground: false });
    graph.upsert(node("rs", vec![]));
    assert_eq!(step(&graph, "pod"), Step::Nothing);
}

#[test]
fn a_dependent_with_one_living_owner_only_drops_the_dangling_reference() {
    let mut graph = Graph::default();
    graph.upsert(node("alive", vec![]));
    graph.upsert(node(
        "pod",
        vec![reference("alive", false), reference("gone", false)],
    ));
    assert_eq!(
        step(&graph, "pod"),
        Step::RemoveReferences {
            owners: vec!["gone".into()]
        }
    );
}

#[test]
fn foreground_deletion_removes_blocking_dependents_first() {
    let mut graph = Graph::default();
    graph.upsert(deleting(node("deploy", vec![]), FOREGROUND));
    graph.upsert(node("rs", vec![reference("deploy", true)]));
    graph.upsert(node("pod", vec![reference("rs", true)]));
    // The owner waits; its dependent, which has dependents of its own, goes in the foreground.
    assert_eq!(step(&graph, "deploy"), Step::Nothing);
    assert_eq!(step(&graph, "rs"), Step::Delete { foreground: true });
    // Once the blocking dependent is gone, the owner's finalizer goes.
    graph.remove("rs");
    assert_eq!(step(&graph, "deploy"), Step::FinishForeground);
}

#[test]
fn foreground_deletion_does_not_wait_for_non_blocking_dependents() {
    let mut graph = Graph::default();
    graph.upsert(deleting(node("deploy", vec![]), FOREGROUND));
    graph.upsert(node("cm", vec![reference("deploy", false)]));
    assert_eq!(step(&graph, "deploy"), Step::FinishForeground);
    assert_eq!(step(&graph, "cm"), Step::Delete { foreground: false });
}

#[test]
fn orphan_deletion_frees_dependents_then_the_owner() {
    let mut graph = Graph::default();
    graph.upsert(deleting(node("deploy", vec![]), ORPHAN));
    graph.upsert(node("rs", vec![reference("deploy", true)]));
    assert_eq!(
        step(&graph, "deploy"),
        Step::Orphan {
            dependents: vec!["rs".into()]
        }
    );
}

#[test]
fn the_graph_reports_who_to_look_at_again_when_an_owner_goes() {
    let mut graph = Graph::default();
    graph.upsert(node("rs", vec![]));
    graph.upsert(node("pod", vec![reference("rs", true)]));
    assert_eq!(graph.remove("rs"), vec!["pod".to_string()]);
    assert_eq!(graph.dependents("rs").count(), 1);
}

#[test]
fn every_resource_with_objects_is_watched_once() {
    let plurals: Vec<&str> = super::watched_resources()
        .iter()
        .map(|r| r.plural)
        .collect();
    for expected in [
        "pods",
        "replicasets",
        "deployments",
        "configmaps",
        "namespaces",
    ] {
        assert!(plurals.contains(&expected), "{expected} missing");
    }
    assert_eq!(
        plurals
            .iter()
            .filter(|p| **p == "horizontalpodautoscalers")
            .count(),
        1
    );
}
