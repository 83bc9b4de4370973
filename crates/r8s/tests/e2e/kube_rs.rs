//! `r8s server` driven by kube-rs, the Rust client, as controllers and operators drive it.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};

async fn client(server: &TestServer) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn config_map(name: &str, labels: &[(&str, &str)], data: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), data.to_owned())])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_creates_gets_lists_and_deletes() {
    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let created = api
        .create(
            &PostParams::default(),
            &config_map("a", &[("app", "x")], "1"),
        )
        .await
        .unwrap();
    assert!(created.metadata.resource_version.is_some());
    api.create(
        &PostParams::default(),
        &config_map("b", &[("app", "y")], "2"),
    )
    .await
    .unwrap();
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "1");
    let listed = api
        .list(&ListParams::default().labels("app=x"))
        .await
        .unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, ["a"]);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    match api.get("a").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_replace_with_a_stale_version_conflicts() {
    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let first = api
        .create(&PostParams::default(), &config_map("c", &[], "1"))
        .await
        .unwrap();
    let mut newer = first.clone();
    newer.data = Some(BTreeMap::from([("k".to_owned(), "2".to_owned())]));
    api.replace("c", &PostParams::default(), &newer)
        .await
        .unwrap();
    let mut stale = first;
    stale.data = Some(BTreeMap::from([("k".to_owned(), "3".to_owned())]));
    match api.replace("c", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"))
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_watcher_sees_objects_appear() {
    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    api.create(&PostParams::default(), &config_map("watched", &[], "1"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(cm) = stream.try_next().await.unwrap() {
            if cm.metadata.name.as_deref() == Some("watched") {
                return cm;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the watcher saw the new ConfigMap");
    assert_eq!(seen.data.unwrap()["k"], "1");
}

/// As upstream answers it: a watch from a revision the watch cache no longer holds is
/// accepted, and its one event is an ERROR carrying a 410 Expired Status. kube-rs's watcher
/// re-lists on that; a refused request instead has it retry the same watch for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_revision_the_cache_no_longer_holds_is_an_expired_error_event() {
    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    // Makes sure the cache of configmaps exists: it holds the history from here on.
    let _current = api.watch(&WatchParams::default(), "0").await.unwrap();
    api.create(&PostParams::default(), &config_map("a", &[], "1"))
        .await
        .unwrap();
    let events: Vec<WatchEvent<ConfigMap>> = tokio::time::timeout(
        Duration::from_secs(20),
        api.watch(&WatchParams::default().timeout(10), "1")
            .await
            .expect("the watch was refused rather than answered with an ERROR event")
            .try_collect(),
    )
    .await
    .expect("the watch did not end after its ERROR event")
    .unwrap();
    match events.as_slice() {
        [WatchEvent::Error(status)] => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(status.message.contains("too old resource version"));
        }
        other => panic!("expected one ERROR event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_right_after_a_write_includes_it() {
    // Unpaged lists are served from the watch cache once it has caught up with the store:
    // a client always reads its own writes.
    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    for i in 0..30 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("rw-{i}"), &[("set", "rw")], "v"),
        )
        .await
        .unwrap();
        let listed = api
            .list(&ListParams::default().labels("set=rw"))
            .await
            .unwrap();
        assert_eq!(listed.items.len(), i + 1, "after {} creates", i + 1);
        api.delete(&format!("rw-{i}"), &DeleteParams::default())
            .await
            .unwrap();
        let listed = api
            .list(&ListParams::default().labels("set=rw"))
            .await
            .unwrap();
        assert_eq!(listed.items.len(), i, "after deleting rw-{i}");
        api.create(
            &PostParams::default(),
            &config_map(&format!("rw-{i}"), &[("set", "rw")], "v"),
        )
        .await
        .unwrap();
    }
}

/// Metadata informers (the garbage collector's, client-go's) get, list and watch
/// PartialObjectMetadata: the metadata alone, never the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_gets_lists_and_watches_carry_no_data() {
    use kube::core::PartialObjectMeta;
    let server = TestServer::start();
    let client = client(&server).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secret = "s3cr3t-data";
    maps.create(
        &PostParams::default(),
        &config_map("meta", &[("app", "m")], secret),
    )
    .await
    .unwrap();
    let metadata: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "default");
    let got = metadata.get("meta").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["app"], "m");
    let listed = metadata
        .list(&ListParams::default().labels("app=m"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.items[0].metadata.uid.is_some());
    // On the wire: no data, upstream's kinds and content types.
    for (query, accept, kind) in [
        (
            "/meta",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            "PartialObjectMetadata",
        ),
        (
            "?labelSelector=app%3Dm",
            "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            "PartialObjectMetadataList",
        ),
    ] {
        let request = http::Request::get(format!("/api/v1/namespaces/default/configmaps{query}"))
            .header("Accept", accept)
            .body(Vec::new())
            .unwrap();
        let text = client.request_text(request).await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["kind"], kind, "{text}");
        assert_eq!(body["apiVersion"], "meta.k8s.io/v1", "{text}");
        assert!(
            !text.contains(secret),
            "metadata-only answer carries data: {text}"
        );
    }
    let events = watcher(metadata.clone(), watcher::Config::default().labels("app=m"))
        .applied_objects()
        .boxed();
    let mut events = events;
    let first = tokio::time::timeout(Duration::from_secs(20), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("meta"));
    let request = http::Request::get(
        "/api/v1/namespaces/default/configmaps?watch=true&labelSelector=app%3Dm&timeoutSeconds=1",
    )
    .header(
        "Accept",
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    )
    .body(Vec::new())
    .unwrap();
    let text = client.request_text(request).await.unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["type"], "ADDED");
    assert_eq!(line["object"]["kind"], "PartialObjectMetadata");
    assert!(
        !text.contains(secret),
        "metadata-only watch carries data: {text}"
    );
}
