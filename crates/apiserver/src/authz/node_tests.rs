use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::authz::request_info::attributes;
use crate::authz::{Authorizer, Decision};
use crate::router::route;

fn graph(pods: &[Value], volumes: &[Value]) -> Graph {
    let mut graph = Graph::default();
    for pod in pods {
        graph.pods.add(pod);
    }
    for volume in volumes {
        graph.volumes.add(volume);
    }
    graph
}

/// What the Node authorizer says to `node` about `request`, given the graph.
fn decide_for(graph: &Graph, node: &str, request: &Attributes) -> Verdict {
    let user = format!("system:node:{node}");
    decide(node, &user, request, |target, namespace, name| {
        graph.related(node, target, namespace, name)
    })
}

fn request(verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    let (group, resource) = match resource.split_once('.') {
        Some((resource, group)) => (group, resource),
        None => ("", resource),
    };
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Attributes::default()
    }
}

fn get(resource: &str, name: &str) -> Attributes {
    let namespace = if resource == "persistentvolumes" {
        ""
    } else {
        "default"
    };
    request("get", resource, namespace, name)
}

/// A pod in `default` bound to `node` with `spec` merged over a plain container.
fn pod(name: &str, node: &str, spec: Value) -> Value {
    let mut pod = json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "nodeName": node, "containers": [{ "name": "app", "image": "busybox" }] },
    });
    for (key, value) in spec.as_object().unwrap() {
        pod["spec"][key] = value.clone();
    }
    pod
}

/// The graph of one pod `web` bound to `n1` with `spec`.
fn web_on_n1(spec: Value) -> Graph {
    graph(&[pod("web", "n1", spec)], &[])
}

/// A pod spec with one volume.
fn volume(volume: Value) -> Value {
    json!({ "volumes": [volume] })
}

fn secret_volume(secret: &str) -> Value {
    volume(json!({ "name": "v", "secret": { "secretName": secret } }))
}

fn claim_volume(claim: &str) -> Value {
    volume(json!({ "name": "d", "persistentVolumeClaim": { "claimName": claim } }))
}

fn no_relationship(node: &str) -> Verdict {
    Verdict::NoOpinion(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

#[test]
fn a_secret_volume_of_a_pod_on_the_node_is_readable() {
    let g = web_on_n1(secret_volume("tls"));
    assert_eq!(decide_for(&g, "n1", &get("secrets", "tls")), Verdict::Allow);
}

#[test]
fn a_secret_in_a_containers_env_is_readable() {
    let container = json!({ "name": "app", "env": [
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db", "key": "pw" } } },
        { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "m" } } },
    ]});
    let g = web_on_n1(json!({ "initContainers": [container] }));
    assert_eq!(decide_for(&g, "n1", &get("secrets", "db")), Verdict::Allow);
    assert_eq!(
        decide_for(&g, "n1", &get("configmaps", "settings")),
        Verdict::Allow
    );
}

#[test]
fn secrets_and_configmaps_in_env_from_are_readable() {
    let container = json!({ "name": "app", "envFrom": [
        { "secretRef": { "name": "creds" } },
        { "configMapRef": { "name": "env" } },
    ]});
    let g = web_on_n1(json!({ "containers": [container] }));
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "creds")),
        Verdict::Allow
    );
    assert_eq!(
        decide_for(&g, "n1", &get("configmaps", "env")),
        Verdict::Allow
    );
}

#[test]
fn image_pull_secrets_are_readable() {
    let g = web_on_n1(json!({ "imagePullSecrets": [{ "name": "registry" }] }));
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "registry")),
        Verdict::Allow
    );
}

#[test]
fn projected_secrets_and_configmaps_are_readable() {
    let g = web_on_n1(
        json!({ "volumes": [{ "name": "all", "projected": { "sources": [
            { "secret": { "name": "s" } },
            { "configMap": { "name": "kube-root-ca.crt" } },
            { "serviceAccountToken": { "path": "token" } },
        ]}}]}),
    );
    assert_eq!(decide_for(&g, "n1", &get("secrets", "s")), Verdict::Allow);
    assert_eq!(
        decide_for(&g, "n1", &get("configmaps", "kube-root-ca.crt")),
        Verdict::Allow
    );
}

#[test]
fn another_nodes_pods_secret_is_refused_with_upstreams_reason() {
    let g = graph(
        &[
            pod("web", "n1", secret_volume("mine")),
            pod("db", "n2", secret_volume("theirs")),
        ],
        &[],
    );
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "theirs")),
        no_relationship("n1")
    );
    // Same name in another namespace is another secret.
    assert_eq!(
        decide_for(&g, "n1", &request("get", "secrets", "other", "mine")),
        no_relationship("n1")
    );
}

#[test]
fn an_unbound_pod_grants_nothing() {
    let g = graph(&[pod("web", "", secret_volume("s"))], &[]);
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "s")),
        no_relationship("n1")
    );
}

#[test]
fn a_mirror_pod_grants_its_node_nothing() {
    let mut mirror = pod("static-web", "n1", secret_volume("s"));
    mirror["metadata"]["annotations"] = json!({ "kubernetes.io/config.mirror": "abc" });
    let g = graph(&[mirror], &[]);
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "s")),
        no_relationship("n1")
    );
}

#[test]
fn a_claim_its_bound_volume_and_the_volumes_secret_are_readable() {
    let g = graph(
        &[pod("web", "n1", claim_volume("data"))],
        &[
            json!({
                "metadata": { "name": "pv-data" },
                "spec": {
                    "claimRef": { "namespace": "default", "name": "data" },
                    "csi": {
                        "driver": "d", "volumeHandle": "h",
                        "nodePublishSecretRef": { "namespace": "default", "name": "mount-creds" },
                        "controllerPublishSecretRef": { "namespace": "default", "name": "ctl" },
                    },
                },
            }),
            json!({
                "metadata": { "name": "pv-other" },
                "spec": { "claimRef": { "namespace": "default", "name": "other" } },
            }),
        ],
    );
    assert_eq!(
        decide_for(&g, "n1", &get("persistentvolumeclaims", "data")),
        Verdict::Allow
    );
    assert_eq!(
        decide_for(&g, "n1", &get("persistentvolumes", "pv-data")),
        Verdict::Allow
    );
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "mount-creds")),
        Verdict::Allow
    );
    // The CSI controller's secret is not the node's to read.
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "ctl")),
        no_relationship("n1")
    );
    assert_eq!(
        decide_for(&g, "n1", &get("persistentvolumes", "pv-other")),
        no_relationship("n1")
    );
    assert_eq!(
        decide_for(&g, "n2", &get("persistentvolumes", "pv-data")),
        no_relationship("n2")
    );
}

#[test]
fn a_volume_secret_without_a_namespace_is_the_claims_namespaces() {
    let g = graph(
        &[pod("web", "n1", claim_volume("c"))],
        &[json!({
            "metadata": { "name": "pv" },
            "spec": {
                "claimRef": { "namespace": "default", "name": "c" },
                "rbd": { "monitors": ["m"], "image": "i", "secretRef": { "name": "ceph" } },
            },
        })],
    );
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "ceph")),
        Verdict::Allow
    );
}

#[test]
fn a_generic_ephemeral_volumes_claim_is_named_after_pod_and_volume() {
    let scratch = json!({ "name": "scratch", "ephemeral": { "volumeClaimTemplate": {} } });
    let g = web_on_n1(volume(scratch));
    assert_eq!(
        decide_for(&g, "n1", &get("persistentvolumeclaims", "web-scratch")),
        Verdict::Allow
    );
}

#[test]
fn a_node_updates_only_its_claims_status() {
    let g = web_on_n1(claim_volume("data"));
    let status =
        |verb: &str, name: &str| request(verb, "persistentvolumeclaims/status", "default", name);
    assert_eq!(
        decide_for(&g, "n1", &status("patch", "data")),
        Verdict::Allow
    );
    assert_eq!(
        decide_for(&g, "n1", &status("patch", "else")),
        no_relationship("n1")
    );
    assert_eq!(
        decide_for(&g, "n1", &status("get", "data")),
        Verdict::NoOpinion("can only get/update/patch this type".into())
    );
}

#[test]
fn resource_claims_by_name_and_from_templates_are_readable() {
    let mut p = pod(
        "web",
        "n1",
        json!({ "resourceClaims": [
            { "name": "gpu", "resourceClaimName": "shared-gpu" },
            { "name": "fpga", "resourceClaimTemplateName": "fpga-template" },
        ]}),
    );
    p["status"] = json!({ "resourceClaimStatuses": [
        { "name": "fpga", "resourceClaimName": "web-fpga-x7k2" },
    ]});
    let g = graph(&[p], &[]);
    let claim = |name: &str| get("resourceclaims.resource.k8s.io", name);
    assert_eq!(decide_for(&g, "n1", &claim("shared-gpu")), Verdict::Allow);
    assert_eq!(
        decide_for(&g, "n1", &claim("web-fpga-x7k2")),
        Verdict::Allow
    );
    assert_eq!(
        decide_for(&g, "n1", &claim("fpga-template")),
        no_relationship("n1")
    );
}

#[test]
fn a_node_creates_tokens_only_for_its_pods_service_accounts() {
    let g = web_on_n1(json!({ "serviceAccountName": "web-sa" }));
    let token = |name: &str| request("create", "serviceaccounts/token", "default", name);
    assert_eq!(decide_for(&g, "n1", &token("web-sa")), Verdict::Allow);
    assert_eq!(decide_for(&g, "n1", &token("admin")), no_relationship("n1"));
    assert_eq!(
        decide_for(&g, "n2", &token("web-sa")),
        no_relationship("n2")
    );
    assert_eq!(
        decide_for(&g, "n1", &get("serviceaccounts", "web-sa")),
        Verdict::Allow
    );
    assert_eq!(
        decide_for(
            &g,
            "n1",
            &request("delete", "serviceaccounts", "default", "web-sa")
        ),
        Verdict::NoOpinion("can only create tokens for individual service accounts".into())
    );
}

#[test]
fn a_deleted_pod_no_longer_relates_its_objects() {
    let volumes = secret_volume("s");
    let mut g = graph(
        &[
            pod("web-1", "n1", volumes.clone()),
            pod("web-2", "n1", volumes),
        ],
        &[],
    );
    g.pods.forget(&("default".into(), "web-1".into()));
    // Another pod of the node still uses it.
    assert_eq!(decide_for(&g, "n1", &get("secrets", "s")), Verdict::Allow);
    g.pods.forget(&("default".into(), "web-2".into()));
    assert_eq!(
        decide_for(&g, "n1", &get("secrets", "s")),
        no_relationship("n1")
    );
    assert!(g.pods.used.is_empty(), "nothing left indexed");
}

#[test]
fn a_list_of_every_secret_is_refused() {
    let g = web_on_n1(secret_volume("s"));
    for verb in ["list", "watch"] {
        assert_eq!(
            decide_for(&g, "n1", &request(verb, "secrets", "default", "")),
            Verdict::NoOpinion("No Object name found".into())
        );
    }
    assert_eq!(
        decide_for(&g, "n1", &request("list", "secrets", "", "s")),
        Verdict::NoOpinion("can only read namespaced object of this type".into())
    );
}

#[test]
fn a_watch_of_one_related_secret_by_field_selector_is_allowed() {
    let g = web_on_n1(secret_volume("s"));
    let watch = |name: &str| {
        let path = "/api/v1/namespaces/default/secrets";
        let query = format!("fieldSelector=metadata.name%3D{name}&watch=true");
        attributes(&Method::GET, path, Some(&query), &route(path))
    };
    assert_eq!(decide_for(&g, "n1", &watch("s")), Verdict::Allow);
    assert_eq!(decide_for(&g, "n1", &watch("other")), no_relationship("n1"));
}

#[test]
fn writes_to_guarded_objects_are_refused() {
    let g = web_on_n1(secret_volume("s"));
    assert_eq!(
        decide_for(&g, "n1", &request("update", "secrets", "default", "s")),
        Verdict::NoOpinion("can only read resources of this type".into())
    );
    assert_eq!(
        decide_for(&g, "n1", &request("list", "persistentvolumes", "", "")),
        Verdict::NoOpinion("can only get individual resources of this type".into())
    );
}

#[test]
fn other_resources_are_left_to_the_node_rules() {
    let g = graph(&[], &[]);
    assert_eq!(
        decide_for(&g, "n1", &request("list", "services", "", "")),
        Verdict::NodeRules
    );
    let unknown = decide("", "system:node:", &get("secrets", "s"), |_, _, _| true);
    assert_eq!(
        unknown,
        Verdict::NoOpinion(r#"unknown node for user "system:node:""#.into())
    );
}

#[test]
fn only_a_node_user_in_the_nodes_group_is_a_node() {
    let user = |name: &str, group: &str| User {
        name: name.into(),
        groups: vec![group.into()],
        ..User::default()
    };
    assert_eq!(node_of(&user("system:node:n1", "system:nodes")), Some("n1"));
    assert_eq!(node_of(&user("system:node:n1", "developers")), None);
    assert_eq!(node_of(&user("n1", "system:nodes")), None);
}

/// An authorizer over a watch cache of a fresh embedded store, and the store.
async fn authorizer_on_store(dir: &std::path::Path) -> (Authorizer, Arc<dyn r8s_store::Store>) {
    let store: Arc<dyn r8s_store::Store> = Arc::new(
        r8s_store::EmbeddedStore::open(dir, r8s_store::EmbeddedOptions::default()).unwrap(),
    );
    let cache = WatchCache::new(store.clone());
    (Authorizer::new(&cache).await.unwrap(), store)
}

/// Polls the authorizer until `want` holds: the watch cache applies writes shortly after.
async fn until(authorizer: &Authorizer, user: &User, request: &Attributes, want: bool) -> Decision {
    for _ in 0..100 {
        let decision = authorizer.authorize(user, request);
        if decision.allowed == want {
            return decision;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    authorizer.authorize(user, request)
}

#[tokio::test]
async fn the_graph_follows_pods_created_and_deleted_through_the_watch_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (authorizer, store) = authorizer_on_store(dir.path()).await;
    let node = User {
        name: "system:node:n1".into(),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
        ..User::default()
    };
    let read = get("secrets", "s");
    let refused = authorizer.authorize(&node, &read);
    assert!(!refused.allowed);
    assert_eq!(
        refused.reason,
        "no relationship found between node 'n1' and this object"
    );
    let key = "/registry/pods/default/web";
    let web = pod("web", "n1", secret_volume("s"));
    store
        .create(key, web.to_string().into(), None)
        .await
        .unwrap();
    assert!(until(&authorizer, &node, &read, true).await.allowed);
    store.delete(key, None).await.unwrap();
    let decision = until(&authorizer, &node, &read, false).await;
    assert!(!decision.allowed);
    assert_eq!(
        decision.reason,
        "no relationship found between node 'n1' and this object"
    );
}
