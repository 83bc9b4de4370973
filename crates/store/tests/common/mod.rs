//! Fixtures shared by the store's integration tests.

use std::sync::Arc;
use std::time::Duration;

use r8s_store::etcd_server::EtcdServer;
use r8s_store::{
    CompactionPolicy, EmbeddedOptions, EmbeddedStore, EtcdStore, Store, StoreError, Watch,
    WatchEvent,
};

/// A store under test and whatever keeps it alive (its directory, its etcd process).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _etcd: Option<EtcdServer>,
    _dir: tempfile::TempDir,
}

/// Options for tests that drive compaction themselves.
pub fn manual_compaction() -> EmbeddedOptions {
    EmbeddedOptions {
        compaction: CompactionPolicy {
            automatic: false,
            ..CompactionPolicy::default()
        },
        ..EmbeddedOptions::default()
    }
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

/// The next event, failing the test if none comes within 10 s.
pub async fn next_event(watch: &mut Watch) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no watch event within 10s")
        .expect("watch ended")
}
