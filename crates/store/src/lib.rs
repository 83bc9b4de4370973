//! The r8s store: a key-value [`Store`] with etcd's semantics, and its backends.
//!
//! Everything the API server persists goes through this trait: revisions from one global
//! counter, compare-and-swap on a key's mod revision, ranges over a key prefix (paged, and at a
//! past revision), watches from a revision, compaction and keys with a time to live. Two
//! backends implement it: [`embedded`] (SQLite in one file, the default) and [`etcd`] (a real
//! etcd v3 cluster). Both pass the same conformance suite (`tests/conformance.rs`).
//!
//! This crate knows nothing of Kubernetes objects: keys are strings, values are bytes. It must
//! not depend on any other r8s crate.

pub mod embedded;
mod error;
pub mod etcd;
pub mod etcd_server;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use bytes::Bytes;
use tokio::sync::{mpsc, watch};

pub use embedded::{CompactionPolicy, EmbeddedOptions, EmbeddedStore};
pub use error::StoreError;
pub use etcd::EtcdStore;

/// A store revision. Every successful write takes the next one; they only grow.
pub type Revision = i64;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One key's value as of some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision at which this incarnation of the key was created.
    pub create_revision: Revision,
    /// The revision of the key's last write (for a delete event: of the delete).
    pub mod_revision: Revision,
}

/// Options of [`Store::range`].
#[derive(Clone, Debug, Default)]
pub struct RangeOptions {
    /// At most this many keys (0: no limit).
    pub limit: usize,
    /// Start at this key (inclusive) instead of the beginning of the prefix; to continue after
    /// the last key of a page, pass that key with a `\0` appended.
    pub start: Option<String>,
    /// Read the state as of this revision instead of the newest one.
    pub revision: Option<Revision>,
}

/// The answer of [`Store::range`].
#[derive(Clone, Debug)]
pub struct RangeResult {
    /// Keys in ascending order.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys follow the last one returned.
    pub more: bool,
    /// The revision the range was read at.
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For a put, the new value; for a delete, the key with an empty value, `mod_revision` the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The value before this change (always present for deletes and for updates of a key).
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    /// A put that created the key (rather than updating it).
    pub fn is_create(&self) -> bool {
        self.kind == EventKind::Put && self.kv.create_revision == self.kv.mod_revision
    }
}

/// A stream of events under a prefix, in revision order. Dropping it cancels the watch.
///
/// Besides events a watch reports progress: a revision such that every event of this watch
/// up to it has already been queued. A reader that drains the queue after seeing progress
/// `P` has seen everything under its prefix up to `P`, even when nothing there changed.
pub struct Watch {
    rx: mpsc::Receiver<Result<WatchEvent>>,
    progress: watch::Receiver<Revision>,
    progress_requests: Option<mpsc::UnboundedSender<()>>,
}

impl Watch {
    fn new(
        rx: mpsc::Receiver<Result<WatchEvent>>,
        progress: watch::Receiver<Revision>,
        progress_requests: Option<mpsc::UnboundedSender<()>>,
    ) -> Self {
        Self {
            rx,
            progress,
            progress_requests,
        }
    }

    /// The next event; `None` when the watch has ended. After an error (such as
    /// [`StoreError::Compacted`]) the watch ends.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_next(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.try_recv().ok()
    }

    /// The progress reported so far.
    pub fn progress(&self) -> Revision {
        *self.progress.borrow()
    }

    /// A handle that is notified when progress moves.
    pub fn progress_receiver(&self) -> watch::Receiver<Revision> {
        self.progress.clone()
    }

    /// Asks for a progress report soon. The embedded store reports continuously; etcd reports
    /// when asked.
    pub fn request_progress(&self) {
        if let Some(requests) = &self.progress_requests {
            let _ = requests.send(());
        }
    }
}

/// How many events a watch buffers for a slow reader before the producer waits.
const WATCH_BUFFER: usize = 1024;

/// A key-value store with etcd's semantics.
///
/// Prefixes name directories: `range("/a/b")` and `range("/a/b/")` both cover the keys under
/// `/a/b/` and never `/a/bc`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The newest value of `key`, if it exists.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// The keys under `prefix`, in ascending order, paged and possibly at a past revision.
    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult>;

    /// Creates `key` if it does not exist ([`StoreError::AlreadyExists`] otherwise). A `ttl`
    /// makes the key expire (be deleted, with a delete event) after that time.
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<Revision>;

    /// Replaces `key`'s value if its mod revision is still `expected`
    /// ([`StoreError::Conflict`] with the current value otherwise, [`StoreError::NotFound`]
    /// if it is gone).
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<Revision>;

    /// Deletes `key`, if its mod revision is still `expected` when one is given. Returns the
    /// revision of the delete and the value deleted.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Every change under `prefix` with a revision of at least `from` (0: from now on), in
    /// revision order. [`StoreError::Compacted`] when `from` is at or below the compacted
    /// revision.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch>;

    /// The newest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Discards the history before `revision`: the state at `revision` stays readable, older
    /// ones answer [`StoreError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// Opens the store a server is configured with: `endpoint` is `None` for the embedded store
/// under `data_dir`, or `etcd://HOST:PORT[,HOST:PORT…]` for an etcd cluster.
pub async fn open(endpoint: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Store>> {
    match endpoint {
        None => Ok(Arc::new(EmbeddedStore::open(
            data_dir,
            EmbeddedOptions::default(),
        )?)),
        Some(endpoint) => {
            let hosts = endpoint.strip_prefix("etcd://").ok_or_else(|| {
                StoreError::InvalidArgument(format!(
                    "datastore endpoint {endpoint:?}: expected etcd://HOST:PORT[,HOST:PORT…]"
                ))
            })?;
            let urls: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("http://{h}"))
                .collect();
            if urls.is_empty() {
                return Err(StoreError::InvalidArgument(format!(
                    "datastore endpoint {endpoint:?} names no etcd host"
                )));
            }
            Ok(Arc::new(EtcdStore::connect(&urls).await?))
        }
    }
}

/// The key range `[start, end)` covering the directory `prefix`.
pub(crate) fn prefix_range(prefix: &str) -> (String, String) {
    let mut start = prefix.to_owned();
    if !start.ends_with('/') {
        start.push('/');
    }
    // '/' + 1 == '0': the first key past every key under the directory.
    let mut end = start.clone();
    end.pop();
    end.push('0');
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_treats_prefix_as_directory() {
        assert_eq!(prefix_range("/a/b"), ("/a/b/".into(), "/a/b0".into()));
        assert_eq!(prefix_range("/a/b/"), ("/a/b/".into(), "/a/b0".into()));
        let (start, end) = prefix_range("/a/b");
        assert!("/a/bc/x" < start.as_str() || "/a/bc/x" >= end.as_str());
    }
}
