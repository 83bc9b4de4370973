use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::{Change, Informer, Subscription};

fn map(name: &str, version: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

fn listed(informer: &Informer<ConfigMap>, objects: &[ConfigMap]) {
    informer.apply(Event::Init);
    for object in objects {
        informer.apply(Event::InitApply(object.clone()));
    }
    informer.apply(Event::InitDone);
}

/// The changes queued for `subscription` now, as (applied?, name, resourceVersion).
fn drain(subscription: &mut Subscription<ConfigMap>) -> Vec<(bool, String, String)> {
    let mut seen = Vec::new();
    while let Some(Some(change)) = subscription.next().now_or_never() {
        let applied = matches!(change, Change::Applied(_));
        let meta = &change.object().metadata;
        seen.push((
            applied,
            meta.name.clone().unwrap(),
            meta.resource_version.clone().unwrap(),
        ));
    }
    seen
}

fn change(applied: bool, name: &str, version: &str) -> (bool, String, String) {
    (applied, name.into(), version.into())
}

#[tokio::test]
async fn subscribers_wait_for_the_first_list_then_get_every_object() {
    let informer = Arc::new(Informer::<ConfigMap>::new());
    let waiting = tokio::spawn({
        let informer = informer.clone();
        async move { informer.subscribe().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "subscribed before the first list");
    listed(&informer, &[map("a", "1"), map("b", "2")]);
    let mut subscription = waiting.await.unwrap();
    let mut seen = drain(&mut subscription);
    seen.sort();
    assert_eq!(seen, vec![change(true, "a", "1"), change(true, "b", "2")]);
}

#[tokio::test]
async fn changes_reach_every_subscriber_as_the_cache_holds_them() {
    let informer = Informer::<ConfigMap>::new();
    listed(&informer, &[]);
    let mut first = informer.subscribe().await;
    let mut second = informer.subscribe().await;
    informer.apply(Event::Apply(map("a", "3")));
    informer.apply(Event::Delete(map("a", "4")));
    let expected = vec![change(true, "a", "3"), change(false, "a", "4")];
    assert_eq!(drain(&mut second), expected);
    assert_eq!(drain(&mut first), expected);
    // The applied object is the cache's own, not a copy.
    informer.apply(Event::Apply(map("b", "5")));
    let Some(Some(Change::Applied(object))) = first.next().now_or_never() else {
        panic!("no change for b");
    };
    let cached = informer
        .store
        .get(&ObjectRef::from_obj(&map("b", "5")))
        .unwrap();
    assert!(Arc::ptr_eq(&object, &cached));
}

#[tokio::test]
async fn a_relist_reports_what_changed_and_what_vanished_meanwhile() {
    let informer = Informer::<ConfigMap>::new();
    listed(
        &informer,
        &[map("kept", "1"), map("changed", "2"), map("gone", "3")],
    );
    let mut subscription = informer.subscribe().await;
    drain(&mut subscription);
    listed(
        &informer,
        &[map("kept", "1"), map("changed", "7"), map("new", "8")],
    );
    let mut seen = drain(&mut subscription);
    seen.sort();
    assert_eq!(
        seen,
        vec![
            change(false, "gone", "3"),
            change(true, "changed", "7"),
            change(true, "new", "8"),
        ]
    );
}

#[tokio::test]
async fn a_dropped_subscription_is_forgotten() {
    let informer = Informer::<ConfigMap>::new();
    listed(&informer, &[]);
    drop(informer.subscribe().await);
    let _kept = informer.subscribe().await;
    informer.apply(Event::Apply(map("a", "1")));
    assert_eq!(informer.inner.lock().unwrap().subscribers.len(), 1);
}

#[tokio::test]
async fn applied_skips_deletions_and_touched_keeps_them() {
    let informer = Informer::<ConfigMap>::new();
    listed(&informer, &[]);
    let applied = informer.subscribe().await.applied();
    let touched = informer.subscribe().await.touched();
    informer.apply(Event::Apply(map("a", "1")));
    informer.apply(Event::Delete(map("a", "2")));
    informer.apply(Event::Apply(map("b", "3")));
    let versions = |objects: Vec<Arc<ConfigMap>>| {
        objects
            .iter()
            .map(|o| o.metadata.resource_version.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(versions(applied.take(2).collect().await), ["1", "3"]);
    assert_eq!(versions(touched.take(3).collect().await), ["1", "2", "3"]);
}

/// A map's "team" label: the key the test index files it under.
fn team(map: &ConfigMap) -> Vec<String> {
    map.metadata
        .labels
        .iter()
        .flatten()
        .filter(|(key, _)| *key == "team")
        .map(|(_, value)| value.clone())
        .collect()
}

fn map_of(name: &str, version: &str, team: &str) -> ConfigMap {
    let mut map = map(name, version);
    map.metadata.labels = Some([("team".to_owned(), team.to_owned())].into());
    map
}

fn names_under(index: &super::Index<ConfigMap>, key: &str) -> Vec<String> {
    let mut names: Vec<String> = index
        .get(key)
        .iter()
        .map(|m| m.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_index_is_filled_from_the_cache_and_follows_every_change() {
    let informer = Informer::<ConfigMap>::new();
    listed(
        &informer,
        &[
            map_of("a", "1", "red"),
            map_of("b", "2", "red"),
            map("c", "3"),
        ],
    );
    let index = informer.index("team", team).await;
    assert_eq!(names_under(&index, "red"), ["a", "b"]);
    // Asking again gives the same index, not a second one to keep up to date.
    assert!(Arc::ptr_eq(&index, &informer.index("team", team).await));

    informer.apply(Event::Apply(map_of("b", "4", "blue")));
    informer.apply(Event::Apply(map_of("c", "5", "blue")));
    informer.apply(Event::Delete(map_of("a", "6", "red")));
    assert_eq!(names_under(&index, "red"), Vec::<String>::new());
    assert_eq!(names_under(&index, "blue"), ["b", "c"]);
    // The object under a key is the cache's latest.
    let b = index
        .get("blue")
        .into_iter()
        .find(|m| m.metadata.name.as_deref() == Some("b"))
        .unwrap();
    assert_eq!(b.metadata.resource_version.as_deref(), Some("4"));

    // A re-list replaces the index with what the new list holds.
    listed(
        &informer,
        &[map_of("c", "7", "red"), map_of("d", "8", "blue")],
    );
    assert_eq!(names_under(&index, "red"), ["c"]);
    assert_eq!(names_under(&index, "blue"), ["d"]);
}
