//! The store conformance suite: every case runs against every backend (embedded SQLite and a
//! real etcd), so both keep exactly etcd's semantics.

mod common;

use std::sync::Arc;

use common::manual_compaction;
use r8s_store::etcd_server::EtcdServer;
use r8s_store::{EmbeddedStore, EtcdStore, Store};

/// A store under test and whatever keeps it alive (its directory, its etcd process).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _etcd: Option<EtcdServer>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), manual_compaction()).expect("open embedded");
        Self {
            store: Arc::new(store),
            _etcd: None,
            _dir: dir,
        }
    }

    pub async fn etcd() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = EtcdServer::start(dir.path()).await.expect("start etcd");
        let store = EtcdStore::connect(&[server.endpoint().to_owned()])
            .await
            .expect("connect etcd");
        Self {
            store: Arc::new(store),
            _etcd: Some(server),
            _dir: dir,
        }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = super::Fixture::embedded().await;
                    super::cases::$case(fixture.store.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = super::Fixture::etcd().await;
                    super::cases::$case(fixture.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    get_of_missing_key_is_none,
    create_returns_its_revision_and_get_sees_it,
    create_of_existing_key_is_already_exists_and_changes_nothing,
    every_write_takes_the_next_revision,
    update_with_stale_revision_conflicts_and_reports_current_value,
    update_of_missing_key_is_not_found,
    delete_returns_previous_value_and_removes_key,
    delete_with_stale_revision_conflicts_and_keeps_key,
    delete_of_missing_key_is_not_found,
    racing_updates_have_exactly_one_winner,
    racing_creates_have_exactly_one_winner,
    range_prefix_is_a_directory,
    range_pages_with_limit_and_start_at_one_revision,
    range_at_past_revision_sees_old_state,
    range_at_future_revision_is_an_error,
    watch_delivers_every_change_in_order_with_previous_values,
    watch_from_past_revision_replays_then_follows,
    watch_from_zero_starts_after_current_revision,
    watch_sees_only_its_prefix,
    watch_under_concurrent_writers_is_complete_and_ordered,
    compaction_discards_older_revisions_and_keeps_state,
    watch_from_compacted_revision_is_an_error,
    key_with_ttl_expires_with_a_delete_event,
    large_values_round_trip,
    hundred_thousand_keys_list_completely_in_pages,
    ranges_larger_than_a_grpc_message_are_complete,
    watch_progress_reaches_the_current_revision_without_events_under_its_prefix,
    watch_progress_never_passes_an_event_not_yet_queued,
);

mod cases {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use r8s_store::{Bytes, EventKind, RangeOptions, Store, StoreError};

    use super::common::next_event;

    fn val(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    pub async fn get_of_missing_key_is_none(store: Arc<dyn Store>) {
        assert_eq!(store.get("/r/none").await.unwrap(), None);
    }

    pub async fn create_returns_its_revision_and_get_sees_it(store: Arc<dyn Store>) {
        let rev = store.create("/r/a", val("one"), None).await.unwrap();
        let kv = store.get("/r/a").await.unwrap().expect("created key");
        assert_eq!(kv.value, val("one"));
        assert_eq!(kv.create_revision, rev);
        assert_eq!(kv.mod_revision, rev);
        assert_eq!(store.current_revision().await.unwrap(), rev);
    }

    pub async fn create_of_existing_key_is_already_exists_and_changes_nothing(
        store: Arc<dyn Store>,
    ) {
        let rev = store.create("/r/a", val("one"), None).await.unwrap();
        let err = store.create("/r/a", val("two"), None).await.unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { ref key } if key == "/r/a"),
            "{err}"
        );
        assert_eq!(store.get("/r/a").await.unwrap().unwrap().value, val("one"));
        assert_eq!(store.current_revision().await.unwrap(), rev);
    }

    pub async fn every_write_takes_the_next_revision(store: Arc<dyn Store>) {
        let r1 = store.create("/r/a", val("1"), None).await.unwrap();
        let r2 = store.update("/r/a", val("2"), r1, None).await.unwrap();
        let (r3, _) = store.delete("/r/a", Some(r2)).await.unwrap();
        let r4 = store.create("/r/b", val("1"), None).await.unwrap();
        assert_eq!([r2, r3, r4], [r1 + 1, r1 + 2, r1 + 3]);
        // A recreated key starts a new incarnation.
        let r5 = store.create("/r/a", val("3"), None).await.unwrap();
        let kv = store.get("/r/a").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (r5, r5));
    }

    pub async fn update_with_stale_revision_conflicts_and_reports_current_value(
        store: Arc<dyn Store>,
    ) {
        let r1 = store.create("/r/a", val("1"), None).await.unwrap();
        let r2 = store.update("/r/a", val("2"), r1, None).await.unwrap();
        let err = store.update("/r/a", val("3"), r1, None).await.unwrap_err();
        match err {
            StoreError::Conflict {
                key,
                expected,
                current,
            } => {
                assert_eq!((key.as_str(), expected), ("/r/a", r1));
                assert_eq!((current.mod_revision, current.value), (r2, val("2")));
            }
            other => panic!("expected a conflict, got {other}"),
        }
        let kv = store.get("/r/a").await.unwrap().unwrap();
        assert_eq!((kv.value, kv.create_revision), (val("2"), r1));
    }

    pub async fn update_of_missing_key_is_not_found(store: Arc<dyn Store>) {
        let err = store
            .update("/r/none", val("1"), 5, None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        assert_eq!(store.get("/r/none").await.unwrap(), None);
    }

    pub async fn delete_returns_previous_value_and_removes_key(store: Arc<dyn Store>) {
        let r1 = store.create("/r/a", val("1"), None).await.unwrap();
        let (rev, prev) = store.delete("/r/a", Some(r1)).await.unwrap();
        assert_eq!(rev, r1 + 1);
        assert_eq!(
            (prev.key.as_str(), prev.value, prev.mod_revision),
            ("/r/a", val("1"), r1)
        );
        assert_eq!(store.get("/r/a").await.unwrap(), None);
        // Unconditional delete.
        store.create("/r/b", val("1"), None).await.unwrap();
        let (_, prev) = store.delete("/r/b", None).await.unwrap();
        assert_eq!(prev.value, val("1"));
    }

    pub async fn delete_with_stale_revision_conflicts_and_keeps_key(store: Arc<dyn Store>) {
        let r1 = store.create("/r/a", val("1"), None).await.unwrap();
        store.update("/r/a", val("2"), r1, None).await.unwrap();
        let err = store.delete("/r/a", Some(r1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        assert_eq!(store.get("/r/a").await.unwrap().unwrap().value, val("2"));
    }

    pub async fn delete_of_missing_key_is_not_found(store: Arc<dyn Store>) {
        for expected in [None, Some(3)] {
            let err = store.delete("/r/none", expected).await.unwrap_err();
            assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        }
    }

    pub async fn racing_updates_have_exactly_one_winner(store: Arc<dyn Store>) {
        let r1 = store.create("/r/a", val("0"), None).await.unwrap();
        let racers: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .update("/r/a", val(&format!("racer-{i}")), r1, None)
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, racer) in racers.into_iter().enumerate() {
            match racer.await.unwrap() {
                Ok(_) => winners.push(i),
                Err(StoreError::Conflict { .. }) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let kv = store.get("/r/a").await.unwrap().unwrap();
        assert_eq!(kv.value, val(&format!("racer-{}", winners[0])));
        assert_eq!(kv.mod_revision, r1 + 1);
    }

    pub async fn racing_creates_have_exactly_one_winner(store: Arc<dyn Store>) {
        let racers: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.create("/r/a", val(&i.to_string()), None).await })
            })
            .collect();
        let mut wins = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => wins += 1,
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(wins, 1);
    }

    pub async fn range_prefix_is_a_directory(store: Arc<dyn Store>) {
        for key in ["/a/b", "/a/b/x", "/a/b/y/z", "/a/bc/x", "/a/b0", "/a/a/x"] {
            store.create(key, val(key), None).await.unwrap();
        }
        for prefix in ["/a/b", "/a/b/"] {
            let result = store.range(prefix, RangeOptions::default()).await.unwrap();
            let keys: Vec<_> = result.kvs.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(keys, ["/a/b/x", "/a/b/y/z"], "prefix {prefix}");
            assert!(!result.more);
        }
    }

    pub async fn range_pages_with_limit_and_start_at_one_revision(store: Arc<dyn Store>) {
        for i in 0..10 {
            store
                .create(&format!("/p/k{i}"), val("v"), None)
                .await
                .unwrap();
        }
        let first = store
            .range(
                "/p",
                RangeOptions {
                    limit: 4,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(first.kvs.len(), 4);
        assert!(first.more);
        // Writes between pages are not seen by a read pinned to the first page's revision.
        store.create("/p/k05", val("late"), None).await.unwrap();
        store.delete("/p/k9", None).await.unwrap();
        let mut keys: Vec<String> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
        let mut more = first.more;
        while more {
            let page = store
                .range(
                    "/p",
                    RangeOptions {
                        limit: 4,
                        start: Some(format!("{}\0", keys.last().unwrap())),
                        revision: Some(first.revision),
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.revision, first.revision);
            keys.extend(page.kvs.iter().map(|kv| kv.key.clone()));
            more = page.more;
        }
        let expected: Vec<String> = (0..10).map(|i| format!("/p/k{i}")).collect();
        assert_eq!(keys, expected);
    }

    pub async fn range_at_past_revision_sees_old_state(store: Arc<dyn Store>) {
        let r1 = store.create("/h/a", val("1"), None).await.unwrap();
        let r2 = store.create("/h/b", val("1"), None).await.unwrap();
        store.update("/h/a", val("2"), r1, None).await.unwrap();
        store.delete("/h/b", Some(r2)).await.unwrap();
        store.create("/h/c", val("1"), None).await.unwrap();

        let at = |rev| {
            let store = store.clone();
            async move {
                let result = store
                    .range(
                        "/h",
                        RangeOptions {
                            revision: Some(rev),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(result.revision, rev);
                result
                    .kvs
                    .into_iter()
                    .map(|kv| (kv.key, String::from_utf8(kv.value.to_vec()).unwrap()))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(at(r1).await, [("/h/a".into(), "1".into())]);
        assert_eq!(
            at(r2).await,
            [("/h/a".into(), "1".into()), ("/h/b".into(), "1".into())]
        );
        let now = store.range("/h", RangeOptions::default()).await.unwrap();
        let keys: Vec<_> = now.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/h/a", "/h/c"]);
        assert_eq!(now.revision, store.current_revision().await.unwrap());
    }

    pub async fn range_at_future_revision_is_an_error(store: Arc<dyn Store>) {
        let rev = store.create("/f/a", val("1"), None).await.unwrap();
        let err = store
            .range(
                "/f",
                RangeOptions {
                    revision: Some(rev + 100),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::FutureRevision { .. }), "{err}");
    }

    pub async fn watch_delivers_every_change_in_order_with_previous_values(store: Arc<dyn Store>) {
        let mut watch = store.watch("/w", 0).await.unwrap();
        let r1 = store.create("/w/a", val("1"), None).await.unwrap();
        let r2 = store.update("/w/a", val("2"), r1, None).await.unwrap();
        let (r3, _) = store.delete("/w/a", Some(r2)).await.unwrap();

        let created = next_event(&mut watch).await.unwrap();
        assert_eq!(created.kind, EventKind::Put);
        assert!(created.is_create());
        assert_eq!(
            (created.kv.value.clone(), created.revision()),
            (val("1"), r1)
        );

        let updated = next_event(&mut watch).await.unwrap();
        assert!(!updated.is_create());
        assert_eq!(
            (updated.kv.value.clone(), updated.revision()),
            (val("2"), r2)
        );
        assert_eq!(updated.kv.create_revision, r1);
        let prev = updated.prev.expect("update carries the previous value");
        assert_eq!((prev.value, prev.mod_revision), (val("1"), r1));

        let deleted = next_event(&mut watch).await.unwrap();
        assert_eq!(deleted.kind, EventKind::Delete);
        assert_eq!((deleted.kv.key.as_str(), deleted.revision()), ("/w/a", r3));
        let prev = deleted.prev.expect("delete carries the deleted value");
        assert_eq!((prev.value, prev.mod_revision), (val("2"), r2));
    }

    pub async fn watch_from_past_revision_replays_then_follows(store: Arc<dyn Store>) {
        let r1 = store.create("/w/a", val("1"), None).await.unwrap();
        let r2 = store.update("/w/a", val("2"), r1, None).await.unwrap();
        let r3 = store.create("/w/b", val("1"), None).await.unwrap();
        // Resume after r1, as a client that saw r1 would.
        let mut watch = store.watch("/w", r1 + 1).await.unwrap();
        let r4 = store.update("/w/b", val("2"), r3, None).await.unwrap();
        let revs: Vec<_> = [
            next_event(&mut watch).await.unwrap(),
            next_event(&mut watch).await.unwrap(),
            next_event(&mut watch).await.unwrap(),
        ]
        .iter()
        .map(|e| e.revision())
        .collect();
        assert_eq!(revs, [r2, r3, r4]);
    }

    pub async fn watch_from_zero_starts_after_current_revision(store: Arc<dyn Store>) {
        store.create("/w/old", val("1"), None).await.unwrap();
        let mut watch = store.watch("/w", 0).await.unwrap();
        let rev = store.create("/w/new", val("1"), None).await.unwrap();
        let event = next_event(&mut watch).await.unwrap();
        assert_eq!((event.kv.key.as_str(), event.revision()), ("/w/new", rev));
    }

    pub async fn watch_sees_only_its_prefix(store: Arc<dyn Store>) {
        let mut watch = store.watch("/w/b", 0).await.unwrap();
        store.create("/w/bc/x", val("1"), None).await.unwrap();
        store.create("/w/a", val("1"), None).await.unwrap();
        let rev = store.create("/w/b/x", val("1"), None).await.unwrap();
        let event = next_event(&mut watch).await.unwrap();
        assert_eq!((event.kv.key.as_str(), event.revision()), ("/w/b/x", rev));
    }

    pub async fn watch_under_concurrent_writers_is_complete_and_ordered(store: Arc<dyn Store>) {
        const WRITERS: usize = 8;
        const WRITES: usize = 100;
        let mut watch = store.watch("/c", 0).await.unwrap();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let key = format!("/c/{w}");
                    let mut rev = store.create(&key, val("0"), None).await.unwrap();
                    for i in 1..WRITES {
                        rev = store
                            .update(&key, val(&i.to_string()), rev, None)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let mut last = 0;
        let mut seen = Vec::new();
        for _ in 0..WRITERS * WRITES {
            let event = next_event(&mut watch).await.unwrap();
            assert!(event.revision() > last, "revisions must grow");
            last = event.revision();
            seen.push(event);
        }
        // Per key, values arrive in write order.
        for w in 0..WRITERS {
            let key = format!("/c/{w}");
            let values: Vec<String> = seen
                .iter()
                .filter(|e| e.kv.key == key)
                .map(|e| String::from_utf8(e.kv.value.to_vec()).unwrap())
                .collect();
            let expected: Vec<String> = (0..WRITES).map(|i| i.to_string()).collect();
            assert_eq!(values, expected);
        }
    }

    pub async fn compaction_discards_older_revisions_and_keeps_state(store: Arc<dyn Store>) {
        let r1 = store.create("/k/a", val("1"), None).await.unwrap();
        let r2 = store.update("/k/a", val("2"), r1, None).await.unwrap();
        let r3 = store.create("/k/b", val("1"), None).await.unwrap();
        store.delete("/k/b", Some(r3)).await.unwrap();
        let r5 = store.create("/k/c", val("1"), None).await.unwrap();
        store.compact(r3).await.unwrap();

        let err = store
            .range(
                "/k",
                RangeOptions {
                    revision: Some(r2),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Compacted { .. }), "{err}");
        // The state at the compaction revision itself stays readable.
        let at = store
            .range(
                "/k",
                RangeOptions {
                    revision: Some(r3),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let keys: Vec<_> = at
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        assert_eq!(keys, [("/k/a", val("2")), ("/k/b", val("1"))]);
        let now = store.range("/k", RangeOptions::default()).await.unwrap();
        let keys: Vec<_> = now.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/k/a", "/k/c"]);
        assert_eq!(now.kvs[1].mod_revision, r5);
        // Writes go on, and compacting backwards is refused.
        store.update("/k/a", val("3"), r2, None).await.unwrap();
        let err = store.compact(r1).await.unwrap_err();
        assert!(matches!(err, StoreError::Compacted { .. }), "{err}");
    }

    pub async fn watch_from_compacted_revision_is_an_error(store: Arc<dyn Store>) {
        let r1 = store.create("/k/a", val("1"), None).await.unwrap();
        let r2 = store.update("/k/a", val("2"), r1, None).await.unwrap();
        let r3 = store.update("/k/a", val("3"), r2, None).await.unwrap();
        store.compact(r2).await.unwrap();
        match store.watch("/k", r1).await {
            Err(StoreError::Compacted { .. }) => {}
            Err(other) => panic!("expected Compacted, got {other}"),
            Ok(_) => panic!("a watch from a compacted revision must fail"),
        }
        // Just past the compaction revision is fine.
        let mut watch = store.watch("/k", r3).await.unwrap();
        assert_eq!(next_event(&mut watch).await.unwrap().revision(), r3);
    }

    pub async fn key_with_ttl_expires_with_a_delete_event(store: Arc<dyn Store>) {
        let mut watch = store.watch("/t", 0).await.unwrap();
        let rev = store
            .create("/t/short", val("1"), Some(Duration::from_secs(1)))
            .await
            .unwrap();
        store.create("/t/forever", val("1"), None).await.unwrap();
        let mut deleted = None;
        for _ in 0..3 {
            let event = next_event(&mut watch).await.unwrap();
            if event.kind == EventKind::Delete {
                deleted = Some(event);
            }
        }
        let deleted = deleted.expect("the expired key's delete event");
        assert_eq!(deleted.kv.key, "/t/short");
        assert_eq!(deleted.prev.unwrap().mod_revision, rev);
        assert_eq!(store.get("/t/short").await.unwrap(), None);
        assert!(store.get("/t/forever").await.unwrap().is_some());
    }

    pub async fn large_values_round_trip(store: Arc<dyn Store>) {
        let big: Vec<u8> = (0..1536 * 1024).map(|i: u32| (i % 251) as u8).collect();
        let big = Bytes::from(big);
        let mut watch = store.watch("/big", 0).await.unwrap();
        let r1 = store.create("/big/a", big.clone(), None).await.unwrap();
        assert_eq!(store.get("/big/a").await.unwrap().unwrap().value, big);
        let listed = store.range("/big", RangeOptions::default()).await.unwrap();
        assert_eq!(listed.kvs[0].value, big);
        assert_eq!(next_event(&mut watch).await.unwrap().kv.value, big);
        let mut bigger = big.to_vec();
        bigger.reverse();
        store
            .update("/big/a", Bytes::from(bigger.clone()), r1, None)
            .await
            .unwrap();
        let event = next_event(&mut watch).await.unwrap();
        assert_eq!(event.kv.value, bigger);
        assert_eq!(event.prev.unwrap().value, big);
    }

    /// Waits until the watch reports progress of at least `revision`.
    async fn progress_reaches(watch: &r8s_store::Watch, revision: r8s_store::Revision) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while watch.progress() < revision {
            assert!(
                std::time::Instant::now() < deadline,
                "progress stuck at {}",
                watch.progress()
            );
            watch.request_progress();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn watch_progress_reaches_the_current_revision_without_events_under_its_prefix(
        store: Arc<dyn Store>,
    ) {
        store.create("/quiet/before", val("1"), None).await.unwrap();
        let mut watch = store.watch("/quiet", 0).await.unwrap();
        store.create("/loud/a", val("1"), None).await.unwrap();
        let rev = store.create("/loud/b", val("1"), None).await.unwrap();
        progress_reaches(&watch, rev).await;
        assert!(watch.try_next().is_none(), "nothing happened under /quiet");
    }

    pub async fn watch_progress_never_passes_an_event_not_yet_queued(store: Arc<dyn Store>) {
        let mut watch = store.watch("/p", 0).await.unwrap();
        let mut revs = Vec::new();
        for i in 0..20 {
            revs.push(
                store
                    .create(&format!("/p/{i}"), val("v"), None)
                    .await
                    .unwrap(),
            );
            store
                .create(&format!("/q/{i}"), val("v"), None)
                .await
                .unwrap();
        }
        let last = *revs.last().unwrap();
        progress_reaches(&watch, last).await;
        // Progress past them means all twenty are already queued.
        for rev in revs {
            let event = watch.try_next().expect("queued").unwrap();
            assert_eq!(event.revision(), rev);
        }
    }

    pub async fn ranges_larger_than_a_grpc_message_are_complete(store: Arc<dyn Store>) {
        // 24 values of 512 KiB: 12 MiB, three times gRPC's default message limit.
        let value = Bytes::from(vec![b'z'; 512 * 1024]);
        for i in 0..24 {
            store
                .create(&format!("/wide/{i:02}"), value.clone(), None)
                .await
                .unwrap();
        }
        let all = store.range("/wide", RangeOptions::default()).await.unwrap();
        assert_eq!(all.kvs.len(), 24);
        assert!(!all.more);
        assert!(all.kvs.iter().all(|kv| kv.value == value));
        let some = store
            .range(
                "/wide",
                RangeOptions {
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((some.kvs.len(), some.more), (10, true));
    }

    pub async fn hundred_thousand_keys_list_completely_in_pages(store: Arc<dyn Store>) {
        const KEYS: usize = 100_000;
        const WRITERS: usize = 64;
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in (w..KEYS).step_by(WRITERS) {
                        let key = format!("/many/{i:06}");
                        store.create(&key, val("v"), None).await.unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let mut keys = BTreeSet::new();
        let mut start = None;
        let mut revision = None;
        loop {
            let page = store
                .range(
                    "/many",
                    RangeOptions {
                        limit: 5000,
                        start,
                        revision,
                    },
                )
                .await
                .unwrap();
            revision = Some(page.revision);
            let last = page.kvs.last().map(|kv| kv.key.clone());
            for kv in page.kvs {
                assert!(keys.insert(kv.key), "no key twice");
            }
            if !page.more {
                break;
            }
            start = last.map(|k| format!("{k}\0"));
        }
        assert_eq!(keys.len(), KEYS);
        let all = store.range("/many", RangeOptions::default()).await.unwrap();
        assert_eq!(all.kvs.len(), KEYS);
    }
}
