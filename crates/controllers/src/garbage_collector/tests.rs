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
    let plurals: Vec<&str> = super::resources::static_resources()
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

mod custom_resources {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::Client;
    use kube::client::APIGroupDiscoveryList;
    use serde_json::{Value, json};

    use super::super::graph::{Graph, Node, OwnerState};
    use super::super::resources::{Resources, discovered};
    use super::super::{Collector, Monitors};

    fn resource(plural: &str, kind: &str, version: &str, verbs: &[&str]) -> Value {
        json!({
            "resource": plural,
            "responseKind": { "group": "example.com", "version": version, "kind": kind },
            "scope": "Namespaced",
            "verbs": verbs,
        })
    }

    const ALL: &[&str] = &["create", "delete", "get", "list", "patch", "watch"];

    /// `/apis` as aggregated discovery: `example.com` serves widgets at v2 (preferred) and v1,
    /// gadgets at v1 only, and read-only readings; `apps` is built in.
    fn apis() -> Value {
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": [
                { "metadata": { "name": "apps" }, "versions": [{ "version": "v1", "resources": [{
                    "resource": "deployments",
                    "responseKind": { "group": "apps", "version": "v1", "kind": "Deployment" },
                    "scope": "Namespaced",
                    "verbs": ALL,
                }]}]},
                { "metadata": { "name": "example.com" }, "versions": [
                    { "version": "v2", "resources": [resource("widgets", "Widget", "v2", ALL)] },
                    { "version": "v1", "resources": [
                        resource("widgets", "Widget", "v1", ALL),
                        resource("gadgets", "Gadget", "v1", ALL),
                        resource("readings", "Reading", "v1", &["get", "list", "watch"]),
                    ]},
                ]},
            ],
        })
    }

    fn parse(value: Value) -> APIGroupDiscoveryList {
        serde_json::from_value(value).unwrap()
    }

    /// `apis()` after the widgets CRD is deleted.
    fn gadgets_only() -> APIGroupDiscoveryList {
        let mut list = apis();
        list["items"][1]["versions"] = json!([
            { "version": "v1", "resources": [resource("gadgets", "Gadget", "v1", ALL)] },
        ]);
        parse(list)
    }

    #[test]
    fn discovery_finds_each_custom_resource_once_at_its_preferred_version() {
        let found: Vec<(String, String, String)> = discovered(&parse(apis()))
            .into_iter()
            .map(|w| (w.api.plural, w.api.api_version, w.api.kind))
            .collect();
        assert_eq!(
            found,
            vec![
                ("widgets".into(), "example.com/v2".into(), "Widget".into()),
                ("gadgets".into(), "example.com/v1".into(), "Gadget".into()),
            ]
        );
    }

    #[test]
    fn a_custom_resource_keeps_its_index_when_its_crd_goes_and_comes_back() {
        let mut resources = Resources::default();
        resources.update(discovered(&parse(apis())));
        let widgets = resources.index_of("example.com", "widgets").unwrap();
        let gadgets = resources.index_of("example.com", "gadgets").unwrap();
        assert!(resources.get(widgets).served);

        resources.update(discovered(&gadgets_only()));
        assert!(!resources.get(widgets).served);
        assert_eq!(resources.index_of("example.com", "gadgets"), Some(gadgets));
        assert!(
            resources
                .owner_resource("example.com", "v2", "Widget")
                .is_none()
        );

        resources.update(discovered(&parse(apis())));
        assert_eq!(resources.index_of("example.com", "widgets"), Some(widgets));
        assert!(resources.get(widgets).served);
        let owner = resources
            .owner_resource("example.com", "v1", "Widget")
            .unwrap();
        assert_eq!(owner.api.version, "v2");
    }

    /// A client whose requests `answer` serves by path, and the paths it was asked for.
    fn fake_api_server(
        answer: impl Fn(&str) -> (u16, Value) + Send + 'static,
    ) -> (Client, Arc<Mutex<Vec<String>>>) {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let path = request.uri().path().to_owned();
            seen.lock().unwrap().push(path.clone());
            let (status, body) = answer(&path);
            async move {
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body.to_string().into_bytes()))
                        .unwrap(),
                )
            }
        });
        (Client::new(service, "default"), requests)
    }

    fn not_found() -> (u16, Value) {
        (
            404,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found" }),
        )
    }

    fn collector(client: Client) -> Collector {
        Collector {
            client,
            resources: Resources::default(),
            graph: Graph::default(),
        }
    }

    fn owned_by(api_version: &str, kind: &str) -> (Node, OwnerReference) {
        let reference = OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "owner".into(),
            uid: "owner-uid".into(),
            ..Default::default()
        };
        let mut node = super::node("cm", vec![reference.clone()]);
        node.namespace = Some("default".into());
        (node, reference)
    }

    fn discoveries(requests: &Mutex<Vec<String>>) -> usize {
        requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == "/apis")
            .count()
    }

    #[tokio::test]
    async fn an_owner_of_a_kind_served_since_the_last_discovery_is_found_alive() {
        let (client, requests) = fake_api_server(|path| match path {
            "/apis" => (200, apis()),
            "/apis/example.com/v2/namespaces/default/widgets/owner" => (
                200,
                json!({ "apiVersion": "example.com/v2", "kind": "Widget",
                        "metadata": { "name": "owner", "namespace": "default", "uid": "owner-uid" } }),
            ),
            _ => not_found(),
        });
        let mut collector = collector(client);
        let (node, reference) = owned_by("example.com/v1", "Widget");
        assert_eq!(
            collector.resolve(&node, &reference).await,
            OwnerState::Solid
        );
        assert_eq!(discoveries(&requests), 1);
    }

    #[tokio::test]
    async fn an_owner_of_a_kind_the_server_does_not_serve_is_dangling_after_one_rediscovery() {
        let (client, requests) = fake_api_server(|path| match path {
            "/apis" => (200, apis()),
            _ => not_found(),
        });
        let mut collector = collector(client);
        let (node, reference) = owned_by("example.com/v1", "Sprocket");
        assert_eq!(
            collector.resolve(&node, &reference).await,
            OwnerState::Dangling
        );
        assert_eq!(discoveries(&requests), 1);
    }

    #[tokio::test]
    async fn a_failed_discovery_keeps_the_dependent_of_an_unknown_kind() {
        let (client, _) = fake_api_server(|path| match path {
            "/apis" => (
                500,
                json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "InternalError", "code": 500, "message": "etcd is down" }),
            ),
            _ => not_found(),
        });
        let mut collector = collector(client);
        let (node, reference) = owned_by("example.com/v1", "Widget");
        assert_eq!(
            collector.resolve(&node, &reference).await,
            OwnerState::Solid
        );
    }

    #[tokio::test]
    async fn a_resource_no_longer_served_is_unwatched_and_its_objects_forgotten() {
        let (client, _) = fake_api_server(|_| not_found());
        let mut collector = collector(client.clone());
        let mut monitors = Monitors::default();
        collector.resources.update(discovered(&parse(apis())));
        monitors.sync(&client, &collector.resources, &mut collector.graph);
        let widgets = collector
            .resources
            .index_of("example.com", "widgets")
            .unwrap();
        assert!(monitors.running.contains_key(&widgets));

        let mut widget = super::node("widget", vec![]);
        widget.resource = widgets;
        collector.graph.upsert(widget);
        collector
            .graph
            .upsert(super::node("cm", vec![super::reference("widget", false)]));
        monitors.queue.clear();
        monitors.queued.clear();

        collector.resources.update(discovered(&gadgets_only()));
        monitors.sync(&client, &collector.resources, &mut collector.graph);
        assert!(!monitors.running.contains_key(&widgets));
        assert!(!monitors.unsynced.contains(&widgets));
        assert!(collector.graph.get("widget").is_none());
        assert_eq!(Vec::from(monitors.queue.clone()), vec!["cm".to_string()]);
        let gadgets = collector.resources.index_of("example.com", "gadgets");
        assert!(monitors.running.contains_key(&gadgets.unwrap()));
    }
}

/// A dependent kept for an owner no informer has shown yet is looked at again, less and less
/// often: soon at first (the owner may go before its informer lists it), never in a hot loop.
#[test]
fn looks_again_at_a_dependent_of_an_unobserved_owner_back_off_to_a_ceiling() {
    use super::{RECHECK_MAX, RETRY, recheck_delay};
    assert_eq!(recheck_delay(1), RETRY);
    assert_eq!(recheck_delay(2), RETRY * 2);
    assert_eq!(recheck_delay(3), RETRY * 4);
    let delays: Vec<_> = (1..40).map(recheck_delay).collect();
    assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*delays.last().unwrap(), RECHECK_MAX);
}
