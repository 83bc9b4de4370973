//! The watch cache: one store watch per storage prefix feeds an in-memory copy of its objects
//! and a window of recent events. Watches are served from it, so a thousand watchers cost one
//! store watch, and each event is decoded and serialized once however many watchers receive it;
//! lists that accept any recent state (`resourceVersion=0`) are served from it too. Resources
//! stored as another (events.k8s.io events are core events) share its cache; their readers get
//! each object converted, once per object.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use r8s_api::Resource;
use r8s_api::kinds::{self, Kind};
use r8s_store::{EventKind, RangeOptions, Revision, Store};
use serde_json::Value;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Mutex, oneshot};

use crate::objects;
use crate::selectors;
use crate::status::ApiError;

/// Events kept for watchers resuming from a past resourceVersion, and for live watchers,
/// which read them from here: one that falls further behind is cut off (it then re-watches).
const HISTORY: usize = 10_000;
/// Events a live watcher takes from the history at once.
const BATCH: usize = 64;

/// One object as the cache keeps it: its JSON in the stored form, serialized once, and the few
/// fields selectors read. Keeping text rather than a parsed tree halves the memory and lets
/// lists be written without serializing again.
pub struct CachedObject {
    pub json: Arc<str>,
    /// `metadata.name`, `metadata.namespace`, `metadata.labels` and the stored kind's
    /// selectable fields, at their usual paths.
    pub selectable: Value,
    /// The object as another resource serves it (events.k8s.io for a core event), converted
    /// and serialized once for every reader of that resource.
    served: OnceLock<(&'static Resource, Arc<str>)>,
}

impl CachedObject {
    fn new(object: &Value, kind: &dyn Kind) -> Self {
        Self {
            json: serde_json::to_string(object).unwrap_or_default().into(),
            selectable: selectors::selectable(object, kind),
            served: OnceLock::new(),
        }
    }

    /// The full object, parsed again (for tables and for clients that need the tree).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    /// The object's JSON as `resource` serves it.
    pub fn json_as(&self, resource: &'static Resource) -> Arc<str> {
        if resource.stored_as.is_none() {
            return match crate::crd::conversion::served_json(resource, &self.json) {
                Some(converted) => converted.into(),
                None => self.json.clone(),
            };
        }
        let convert = || -> Arc<str> {
            kinds::behaviour(resource)
                .to_served(self.value())
                .to_string()
                .into()
        };
        let (first, json) = self.served.get_or_init(|| (resource, convert()));
        // The resources a stored one is served as besides itself are one, so far.
        if std::ptr::eq(*first, resource) {
            json.clone()
        } else {
            convert()
        }
    }

    /// The object's metadata as a serialized PartialObjectMetadata of `meta.k8s.io/<version>`.
    /// Made for each watcher rather than kept: metadata watchers are few (the garbage
    /// collector), and keeping it would cost memory for every cached object.
    pub fn partial_json(&self, version: &str) -> Arc<str> {
        crate::partial::of_json(&self.json, version).into()
    }

    /// The full object as `resource` serves it.
    pub fn value_as(&self, resource: &'static Resource) -> Value {
        if resource.stored_as.is_none() {
            return crate::crd::conversion::served(resource, self.value());
        }
        serde_json::from_str(&self.json_as(resource)).unwrap_or(Value::Null)
    }
}

/// One change, serialized once for every watcher.
pub struct CachedEvent {
    pub revision: Revision,
    pub key: String,
    pub kind: EventKind,
    /// The object after the change; for a delete, the last state stamped with the delete's
    /// revision, as upstream sends it.
    pub object: Arc<CachedObject>,
    /// The object before the change.
    pub previous: Option<Arc<CachedObject>>,
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    revision: Revision,
    /// Every event after `floor` is in `history`.
    floor: Revision,
    history: VecDeque<Arc<CachedEvent>>,
    /// Bumped when the cache re-lists: live watchers may have missed events and are cut off.
    epoch: u64,
}

pub struct ResourceCache {
    state: RwLock<State>,
    /// The stored kind, whose selectable fields are kept with each object.
    kind: &'static dyn Kind,
    /// The store revision the state is complete through: every change under the prefix up
    /// to it has been applied (from events, or from the store watch's progress reports).
    fresh: tokio::sync::watch::Sender<Revision>,
    /// Set by a reader that needs the cache to catch up; the feeder asks the store for progress.
    progress_wanted: tokio::sync::Notify,
    /// Bumped by every event applied and every re-list, to wake live watchers. Not `fresh`:
    /// progress can move that past an event not yet applied, which would then wake no one.
    applied: tokio::sync::watch::Sender<Revision>,
    hints: std::sync::Mutex<Hints>,
}

/// Objects this process is writing, promised before each write so that its store event,
/// however early it arrives, waits for the object in the cache's form instead of decoding the
/// stored bytes and serializing them again. A promise is known by the key and the exact bytes
/// written; it is dropped by a write that fails, and pruned if its event never comes (the
/// cache re-listed meanwhile).
#[derive(Default)]
struct Hints {
    next_id: u64,
    pending: HashMap<String, Vec<Pending>>,
    count: usize,
}

impl Hints {
    /// Takes out the first promise for `key` that `pick` accepts.
    fn take(&mut self, key: &str, pick: impl Fn(&Pending) -> bool) -> Option<Pending> {
        let promises = self.pending.get_mut(key)?;
        let pending = promises.remove(promises.iter().position(pick)?);
        if promises.is_empty() {
            self.pending.remove(key);
        }
        self.count -= 1;
        Some(pending)
    }
}

struct Pending {
    id: u64,
    bytes: Bytes,
    since: Instant,
    object: oneshot::Receiver<(Revision, Arc<CachedObject>)>,
}

/// Promises kept before old ones are pruned.
const MAX_HINTS: usize = 4096;
/// How old a promise is before it may be pruned: a write takes far less.
const HINT_MAX_AGE: Duration = Duration::from_secs(10);
/// How long an event waits for its writer to hand over the object: the writer does so right
/// after its write returns, so only a starved machine waits long, and then decoding is fine.
const HINT_WAIT: Duration = Duration::from_secs(1);

/// A writer's side of a promised object (see [`ResourceCache::promise`]).
pub struct Hint {
    cache: Arc<ResourceCache>,
    key: String,
    id: u64,
    sender: Option<oneshot::Sender<(Revision, Arc<CachedObject>)>>,
}

impl Hint {
    /// Hands over the object as stored at `revision`, with that resourceVersion.
    pub fn send(mut self, revision: Revision, object: &Value) {
        if let Some(sender) = self.sender.take() {
            let cached = Arc::new(CachedObject::new(object, self.cache.kind));
            let _ = sender.send((revision, cached));
        }
    }
}

impl Drop for Hint {
    fn drop(&mut self) {
        // Unsent: the write failed or was abandoned, and its promise is void.
        if self.sender.is_some() {
            self.cache.forget(&self.key, self.id);
        }
    }
}

/// Where a new watch starts.
pub enum Start {
    /// The current objects (as ADDED events), then changes.
    Snapshot,
    /// Changes after this revision.
    After(Revision),
}

/// A registered watcher's beginning: what to send first, then the live events.
pub struct Subscription {
    pub initial: Vec<Arc<CachedObject>>,
    pub replay: Vec<Arc<CachedEvent>>,
    pub revision: Revision,
    pub live: Live,
}

/// A watcher's place in its cache's history, from which it reads the events after it: a
/// thousand watchers share one copy of each event and need no buffer of their own. Errors are
/// a broadcast receiver's: `Lagged` when the history has moved past it (it then continues from
/// the present), `Closed` when the cache re-listed.
pub struct Live {
    cache: Arc<ResourceCache>,
    epoch: u64,
    /// The revision of the last event taken.
    last: Revision,
    pending: VecDeque<Arc<CachedEvent>>,
    changed: tokio::sync::watch::Receiver<Revision>,
}

impl Live {
    /// The next event, waiting for one.
    pub async fn recv(&mut self) -> Result<Arc<CachedEvent>, RecvError> {
        loop {
            match self.try_recv() {
                Ok(event) => return Ok(event),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Lagged(n)) => return Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
            }
            if self.changed.changed().await.is_err() {
                return Err(RecvError::Closed);
            }
        }
    }

    /// The next event if there is one.
    pub fn try_recv(&mut self) -> Result<Arc<CachedEvent>, TryRecvError> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(event);
        }
        // Seen before the history is read, so an event applied after it wakes `recv`.
        self.changed.borrow_and_update();
        let state = self.cache.state.read().expect("cache lock poisoned");
        if state.epoch != self.epoch {
            return Err(TryRecvError::Closed);
        }
        if state.revision <= self.last {
            return Err(TryRecvError::Empty);
        }
        if self.last < state.floor {
            let missed = u64::try_from(state.revision - self.last).unwrap_or(0);
            self.last = state.revision;
            return Err(TryRecvError::Lagged(missed));
        }
        let start = state.history.partition_point(|e| e.revision <= self.last);
        self.pending
            .extend(state.history.range(start..).take(BATCH).cloned());
        drop(state);
        match self.pending.pop_front() {
            Some(event) => {
                self.last = self.pending.back().unwrap_or(&event).revision;
                Ok(event)
            }
            None => Err(TryRecvError::Empty),
        }
    }
}

impl ResourceCache {
    /// Registers a watcher atomically with respect to the feeder: nothing is missed or repeated
    /// between the snapshot (or replay) and the live events.
    pub fn subscribe(
        self: &Arc<Self>,
        start: Start,
        key_prefix: &str,
    ) -> Result<Subscription, ApiError> {
        let state = self.state.read().expect("cache lock poisoned");
        let (initial, replay) = match start {
            Start::Snapshot => (
                state
                    .objects
                    .range(key_prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(key_prefix))
                    .map(|(_, v)| v.clone())
                    .collect(),
                Vec::new(),
            ),
            Start::After(revision) => {
                if revision < state.floor {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {revision} ({})",
                        state.floor
                    )));
                }
                let replay = state
                    .history
                    .iter()
                    .filter(|e| e.revision > revision && e.key.starts_with(key_prefix))
                    .cloned()
                    .collect();
                (Vec::new(), replay)
            }
        };
        Ok(Subscription {
            initial,
            replay,
            revision: state.revision,
            live: Live {
                cache: self.clone(),
                epoch: state.epoch,
                last: state.revision,
                pending: VecDeque::new(),
                changed: self.applied.subscribe(),
            },
        })
    }

    fn mark_fresh(&self, revision: Revision) {
        self.fresh.send_if_modified(|fresh| {
            let moved = *fresh < revision;
            *fresh = (*fresh).max(revision);
            moved
        });
    }

    /// The current objects under `key_prefix` once the cache has caught up with the store's
    /// revision `current` (a consistent read); `None` if it does not within a second.
    pub async fn consistent_snapshot(
        &self,
        current: Revision,
        key_prefix: &str,
    ) -> Option<(Vec<Arc<CachedObject>>, Revision)> {
        let mut fresh = self.fresh.subscribe();
        if *fresh.borrow() < current {
            self.progress_wanted.notify_one();
            let caught_up = fresh.wait_for(|f| *f >= current);
            tokio::time::timeout(Duration::from_secs(1), caught_up)
                .await
                .ok()?
                .ok()?;
        }
        Some(self.snapshot(key_prefix))
    }

    /// The revision of the last change applied (an event or a re-list); unlike the freshness
    /// revision, it does not move while nothing changes.
    pub fn last_change(&self) -> Revision {
        self.state.read().expect("cache lock poisoned").revision
    }

    /// The current object at `key`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.state.read().expect("cache lock poisoned");
        state.objects.get(key).cloned()
    }

    /// The current objects under `key_prefix` and the revision they are at.
    pub fn snapshot(&self, key_prefix: &str) -> (Vec<Arc<CachedObject>>, Revision) {
        let state = self.state.read().expect("cache lock poisoned");
        let revision = state.revision.max(*self.fresh.borrow());
        let objects = state
            .objects
            .range(key_prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(key_prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (objects, revision)
    }

    /// Promises the object a writer in this process is about to store at `key` as `bytes`;
    /// the writer sends it once stored (see [`Hint::send`]).
    pub fn promise(self: &Arc<Self>, key: &str, bytes: &Bytes) -> Hint {
        let (sender, object) = oneshot::channel();
        let mut hints = self.hints.lock().expect("hints lock poisoned");
        let id = hints.next_id;
        hints.next_id += 1;
        if hints.count >= MAX_HINTS {
            let now = Instant::now();
            hints.pending.retain(|_, promises| {
                promises.retain(|p| now.duration_since(p.since) < HINT_MAX_AGE);
                !promises.is_empty()
            });
            hints.count = hints.pending.values().map(Vec::len).sum();
        }
        hints
            .pending
            .entry(key.to_owned())
            .or_default()
            .push(Pending {
                id,
                bytes: bytes.clone(),
                since: Instant::now(),
                object,
            });
        hints.count += 1;
        Hint {
            cache: self.clone(),
            key: key.to_owned(),
            id,
            sender: Some(sender),
        }
    }

    fn forget(&self, key: &str, id: u64) {
        let mut hints = self.hints.lock().expect("hints lock poisoned");
        hints.take(key, |p| p.id == id);
    }

    /// The promise a put event fulfils: the first for its key with its exact bytes.
    fn promised(&self, event: &r8s_store::WatchEvent) -> Option<Pending> {
        if event.kind != EventKind::Put {
            return None;
        }
        let mut hints = self.hints.lock().expect("hints lock poisoned");
        hints.take(&event.kv.key, |p| p.bytes == event.kv.value)
    }

    /// Applies a store event, with the object its writer promised if there is one.
    async fn apply_promised(&self, event: r8s_store::WatchEvent) {
        let hinted = match self.promised(&event) {
            Some(pending) => match tokio::time::timeout(HINT_WAIT, pending.object).await {
                // Equal bytes written twice: the revision tells whose write this was.
                Ok(Ok((revision, object))) if revision == event.revision() => Some(object),
                _ => None,
            },
            None => None,
        };
        self.apply_hinted(event, hinted);
    }

    #[cfg(test)]
    fn apply(&self, event: r8s_store::WatchEvent) {
        self.apply_hinted(event, None);
    }

    fn apply_hinted(&self, event: r8s_store::WatchEvent, hinted: Option<Arc<CachedObject>>) {
        let revision = event.revision();
        let mut state = self.state.write().expect("cache lock poisoned");
        let previous = state.objects.get(&event.kv.key).cloned();
        let object = match (event.kind, hinted) {
            (EventKind::Put, Some(hinted)) => hinted,
            (EventKind::Put, None) => match objects::decode(&event.kv.value, revision) {
                Ok(object) => Arc::new(CachedObject::new(&object, self.kind)),
                Err(e) => {
                    tracing::warn!(key = %event.kv.key, error = %e, "undecodable object skipped");
                    return;
                }
            },
            (EventKind::Delete, _) => {
                let Some(last) = &previous else { return };
                let mut last = last.value();
                objects::set_resource_version(&mut last, revision);
                Arc::new(CachedObject::new(&last, self.kind))
            }
        };
        match event.kind {
            EventKind::Put => state.objects.insert(event.kv.key.clone(), object.clone()),
            EventKind::Delete => state.objects.remove(&event.kv.key),
        };
        let cached = Arc::new(CachedEvent {
            revision,
            key: event.kv.key,
            kind: event.kind,
            object,
            previous,
        });
        state.revision = revision;
        state.history.push_back(cached);
        if state.history.len() > HISTORY
            && let Some(dropped) = state.history.pop_front()
        {
            state.floor = dropped.revision;
        }
        drop(state);
        self.applied.send_replace(revision);
        self.mark_fresh(revision);
    }
}

/// The caches of every resource that has been watched, created on first use.
pub struct WatchCache {
    store: Arc<dyn Store>,
    resources: Mutex<HashMap<String, Arc<ResourceCache>>>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            resources: Mutex::new(HashMap::new()),
        }
    }

    /// The cache of a resource's stored objects, shared by every resource stored alike,
    /// filled before it is returned.
    pub async fn resource(
        &self,
        resource: &'static Resource,
    ) -> Result<Arc<ResourceCache>, ApiError> {
        self.resource_since(resource, None).await
    }

    /// The cache of `resource`'s stored objects if one is running; never starts one, and
    /// answers none rather than wait while one is being made.
    pub fn existing(&self, resource: &'static Resource) -> Option<Arc<ResourceCache>> {
        let resources = self.resources.try_lock().ok()?;
        resources.get(&resource.storage_prefix()).cloned()
    }

    /// The object at `key` as a running cache of `resource` holds it (none: no cache runs, or
    /// it has not seen the object).
    pub fn object(&self, resource: &'static Resource, key: &str) -> Option<Arc<CachedObject>> {
        self.existing(resource)?.get(key)
    }

    /// Installs a cache of `resource` holding `objects` (key, object with its resourceVersion)
    /// that nothing feeds: a cache as stale as a test needs.
    #[cfg(test)]
    pub(crate) async fn install_unfed(
        &self,
        resource: &'static Resource,
        objects: Vec<(String, Value)>,
    ) {
        let kind = kinds::behaviour(resource.storage());
        let objects = objects
            .into_iter()
            .map(|(key, object)| (key, Arc::new(CachedObject::new(&object, kind))))
            .collect();
        let cache = Arc::new(ResourceCache {
            state: RwLock::new(State {
                objects,
                revision: 1,
                floor: 1,
                history: VecDeque::new(),
                epoch: 0,
            }),
            kind,
            fresh: tokio::sync::watch::channel(1).0,
            progress_wanted: tokio::sync::Notify::new(),
            applied: tokio::sync::watch::channel(1).0,
            hints: Default::default(),
        });
        let mut resources = self.resources.lock().await;
        resources.insert(resource.storage_prefix(), cache);
    }

    /// [`Self::resource`] for a watch that continues from revision `since`. Caches are made on
    /// first use, so the list the watch continues may predate this one: a cache made now
    /// starts at `since` (while the store still has it), lest the watch be refused as too old.
    pub async fn resource_since(
        &self,
        resource: &'static Resource,
        since: Option<Revision>,
    ) -> Result<Arc<ResourceCache>, ApiError> {
        let storage = resource.storage();
        let prefix = storage.storage_prefix();
        let mut resources = self.resources.lock().await;
        if let Some(cache) = resources.get(&prefix) {
            return Ok(cache.clone());
        }
        let kind = kinds::behaviour(storage);
        let listed = match since {
            Some(at) => list(&*self.store, &prefix, kind, Some(at)).await.ok(),
            None => None,
        };
        // Compacted (or not reached yet): start now; a watch from before then is expired.
        let (objects, revision) = match listed {
            Some(listed) => listed,
            None => list(&*self.store, &prefix, kind, None).await?,
        };
        let cache = Arc::new(ResourceCache {
            state: RwLock::new(State {
                objects,
                revision,
                floor: revision,
                history: VecDeque::new(),
                epoch: 0,
            }),
            kind,
            fresh: tokio::sync::watch::channel(revision).0,
            progress_wanted: tokio::sync::Notify::new(),
            applied: tokio::sync::watch::channel(revision).0,
            hints: Default::default(),
        });
        tokio::spawn(feed(self.store.clone(), prefix.clone(), cache.clone()));
        resources.insert(prefix, cache.clone());
        Ok(cache)
    }
}

/// The objects under `prefix` as of revision `at` (`None`: now).
async fn list(
    store: &dyn Store,
    prefix: &str,
    kind: &dyn Kind,
    at: Option<Revision>,
) -> Result<(BTreeMap<String, Arc<CachedObject>>, Revision), ApiError> {
    let options = RangeOptions {
        revision: at,
        ..RangeOptions::default()
    };
    let snapshot = store
        .range(prefix, options)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut objects = BTreeMap::new();
    for kv in snapshot.kvs {
        match objects::decode(&kv.value, kv.mod_revision) {
            Ok(object) => {
                objects.insert(kv.key, Arc::new(CachedObject::new(&object, kind)));
            }
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "undecodable object skipped"),
        }
    }
    Ok((objects, snapshot.revision))
}

/// Follows the store; when the store watch ends (compaction, a lost connection) it re-lists
/// and cuts every watcher off, since they may have missed events; clients then re-watch.
async fn feed(store: Arc<dyn Store>, prefix: String, cache: Arc<ResourceCache>) {
    loop {
        let from = cache.state.read().expect("cache lock poisoned").revision + 1;
        match store.watch(&prefix, from).await {
            Ok(mut watch) => follow(&mut watch, &prefix, &cache).await,
            Err(e) => tracing::warn!(%prefix, error = %e, "watch cache cannot watch the store"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        match list(&*store, &prefix, cache.kind, None).await {
            Ok((objects, revision)) => {
                let mut state = cache.state.write().expect("cache lock poisoned");
                *state = State {
                    objects,
                    revision,
                    floor: revision,
                    history: VecDeque::new(),
                    epoch: state.epoch + 1,
                };
                drop(state);
                // Wakes every live watcher, to be cut off.
                cache.applied.send_replace(revision);
                cache.mark_fresh(revision);
            }
            Err(e) => tracing::warn!(%prefix, error = %e, "watch cache cannot re-list"),
        }
    }
}

/// Applies the store watch's events and progress until the watch fails or ends.
async fn follow(watch: &mut r8s_store::Watch, prefix: &str, cache: &ResourceCache) {
    let mut progress = watch.progress_receiver();
    loop {
        tokio::select! {
            event = watch.next() => match event {
                Some(Ok(event)) => cache.apply_promised(event).await,
                Some(Err(e)) => {
                    tracing::warn!(%prefix, error = %e, "watch cache lost its store watch");
                    return;
                }
                None => return,
            },
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
                // Progress P means every event up to P is queued: drain them, then the state
                // is complete through P.
                let reported = *progress.borrow_and_update();
                while let Some(item) = watch.try_next() {
                    match item {
                        Ok(event) => cache.apply_promised(event).await,
                        Err(e) => {
                            tracing::warn!(%prefix, error = %e, "watch cache lost its store watch");
                            return;
                        }
                    }
                }
                cache.mark_fresh(reported);
            }
            _ = cache.progress_wanted.notified() => watch.request_progress(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use r8s_store::KeyValue;

    fn cache() -> Arc<ResourceCache> {
        let resource = r8s_api::find("", "v1", "configmaps").expect("configmaps");
        Arc::new(ResourceCache {
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                revision: 1,
                floor: 1,
                history: VecDeque::new(),
                epoch: 0,
            }),
            kind: kinds::behaviour(resource),
            fresh: tokio::sync::watch::channel(1).0,
            progress_wanted: tokio::sync::Notify::new(),
            applied: tokio::sync::watch::channel(1).0,
            hints: Default::default(),
        })
    }

    fn put(cache: &ResourceCache, revision: Revision) {
        let key = format!("/registry/configmaps/default/cm-{revision}");
        cache.apply(r8s_store::WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key,
                value: br#"{"metadata":{"name":"cm"}}"#.to_vec().into(),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        });
    }

    const STORED: &[u8] = br#"{"metadata":{"name":"cm"}}"#;

    fn put_event(key: &str, revision: Revision) -> r8s_store::WatchEvent {
        r8s_store::WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: Bytes::from_static(STORED),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    #[tokio::test]
    async fn an_event_that_comes_before_its_writer_hands_over_waits_for_the_object() {
        let cache = cache();
        let key = "/registry/configmaps/default/cm";
        let hint = cache.promise(key, &Bytes::from_static(STORED));
        // The event is applied first, as the store publishes before it answers the writer.
        let applying = tokio::spawn({
            let cache = cache.clone();
            async move { cache.apply_promised(put_event(key, 2)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            cache.get(key).is_none(),
            "applied without its writer's object"
        );
        // The hint differs from the stored bytes only so the test can tell which was used.
        let hinted = serde_json::json!({"metadata": {"name": "cm", "resourceVersion": "2"}, "data": {"from": "hint"}});
        hint.send(2, &hinted);
        applying.await.unwrap();
        assert_eq!(cache.get(key).unwrap().value(), hinted);
        assert!(cache.hints.lock().unwrap().pending.is_empty());
    }

    #[tokio::test]
    async fn a_failed_writes_promise_is_void_and_other_bytes_are_decoded() {
        let cache = cache();
        let key = "/registry/configmaps/default/cm";
        // A failed write drops its promise; its event never comes.
        drop(cache.promise(key, &Bytes::from_static(STORED)));
        assert!(cache.hints.lock().unwrap().pending.is_empty());
        // A promise for other bytes is not this event's: the stored bytes are decoded.
        let _other = cache.promise(key, &Bytes::from_static(b"{}"));
        cache.apply_promised(put_event(key, 3)).await;
        assert_eq!(
            cache.get(key).unwrap().value(),
            serde_json::json!({"metadata": {"name": "cm", "resourceVersion": "3"}})
        );
        // Equal bytes written twice: a hand-over for another revision is not taken.
        let hint = cache.promise(key, &Bytes::from_static(STORED));
        hint.send(9, &serde_json::json!({"data": {"from": "hint"}}));
        cache.apply_promised(put_event(key, 4)).await;
        assert_eq!(
            cache.get(key).unwrap().value(),
            serde_json::json!({"metadata": {"name": "cm", "resourceVersion": "4"}})
        );
    }

    #[tokio::test]
    async fn promises_whose_events_never_come_are_pruned() {
        let cache = cache();
        let mut kept = Vec::new();
        for n in 0..MAX_HINTS {
            let key = format!("/registry/configmaps/default/lost-{n}");
            kept.push(cache.promise(&key, &Bytes::from_static(b"{}")));
        }
        for pending in cache.hints.lock().unwrap().pending.values_mut() {
            pending[0].since -= HINT_MAX_AGE;
        }
        let _fresh = cache.promise("/registry/configmaps/default/new", &Bytes::new());
        let hints = cache.hints.lock().unwrap();
        assert_eq!(hints.count, 1);
        assert_eq!(hints.pending.len(), 1);
    }

    #[tokio::test]
    async fn a_live_watcher_gets_every_later_event_in_order_and_none_before() {
        let cache = cache();
        put(&cache, 2);
        let mut live = cache.subscribe(Start::After(2), "").unwrap().live;
        for revision in 3..200 {
            put(&cache, revision);
        }
        for revision in 3..200 {
            assert_eq!(live.recv().await.unwrap().revision, revision);
        }
        assert!(matches!(live.try_recv(), Err(TryRecvError::Empty)));
    }

    #[tokio::test]
    async fn a_waiting_watcher_wakes_for_the_next_event() {
        let cache = cache();
        let mut live = cache.subscribe(Start::Snapshot, "").unwrap().live;
        let waiting = tokio::spawn(async move { live.recv().await.map(|e| e.revision) });
        tokio::task::yield_now().await;
        put(&cache, 2);
        assert_eq!(waiting.await.unwrap().unwrap(), 2);
    }

    #[tokio::test]
    async fn an_event_applied_after_progress_passed_its_revision_still_wakes_watchers() {
        let cache = cache();
        let mut live = cache.subscribe(Start::Snapshot, "").unwrap().live;
        let waiting = tokio::spawn(async move { live.recv().await.map(|e| e.revision) });
        tokio::task::yield_now().await;
        cache.mark_fresh(10);
        put(&cache, 5);
        let woken = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(
            woken.expect("the watcher was not woken").unwrap().unwrap(),
            5
        );
    }

    #[tokio::test]
    async fn a_watcher_the_history_moved_past_lags_then_follows_from_the_present() {
        let cache = cache();
        let mut live = cache.subscribe(Start::Snapshot, "").unwrap().live;
        let last = 2 + HISTORY as Revision + 10;
        for revision in 2..=last {
            put(&cache, revision);
        }
        assert!(matches!(live.recv().await, Err(RecvError::Lagged(_))));
        put(&cache, last + 1);
        assert_eq!(live.recv().await.unwrap().revision, last + 1);
    }

    #[tokio::test]
    async fn a_cache_made_for_a_watch_from_an_earlier_revision_gives_it_every_later_change() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(r8s_store::EmbeddedStore::open(dir.path(), Default::default()).unwrap());
        let resource = r8s_api::find("", "v1", "configmaps").expect("configmaps");
        let key = |n: u32| format!("{}/default/cm-{n}", resource.storage_prefix());
        let body = || r8s_store::Bytes::from_static(br#"{"metadata":{"name":"cm"}}"#);
        // The revision of a list the watcher took before any cache of configmaps existed,
        // then two changes it has not seen.
        let listed = store.create(&key(1), body(), None).await.unwrap();
        store.create(&key(2), body(), None).await.unwrap();
        store.create(&key(3), body(), None).await.unwrap();

        let cache = WatchCache::new(store.clone())
            .resource_since(resource, Some(listed))
            .await
            .unwrap();
        let mut live = match cache.subscribe(Start::After(listed), "") {
            Ok(subscription) => subscription.live,
            Err(e) => panic!("the watch was refused: {}", e.message),
        };
        for expected in [key(2), key(3)] {
            let event = tokio::time::timeout(Duration::from_secs(10), live.recv())
                .await
                .expect("no event")
                .unwrap();
            assert_eq!(event.key, expected);
        }
    }

    #[tokio::test]
    async fn a_re_list_cuts_live_watchers_off() {
        let cache = cache();
        let mut live = cache.subscribe(Start::Snapshot, "").unwrap().live;
        cache.state.write().unwrap().epoch += 1;
        put(&cache, 2);
        assert!(matches!(live.recv().await, Err(RecvError::Closed)));
    }
}
