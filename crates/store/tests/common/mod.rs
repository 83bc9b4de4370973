//! Fixtures shared by the store's integration tests.

use std::time::Duration;

use r8s_store::{CompactionPolicy, EmbeddedOptions, StoreError, Watch, WatchEvent};

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

/// The next event, failing the test if none comes within 10 s.
pub async fn next_event(watch: &mut Watch) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no watch event within 10s")
        .expect("watch ended")
}
