//! Shared informers, as upstream's `SharedInformerFactory`: one watch and one cache per resource
//! type for every controller and the scheduler of a process, instead of one per consumer.
//!
//! Each consumer subscribes to a type and gets, first, every object the cache holds (once its
//! first list is complete), then every change as it is applied: the object after an update, or
//! the last state of a deleted one (also for objects that vanished while the watch was being
//! re-listed). Consumers never miss a change and never wait for one another: each has its own
//! unbounded queue of `Arc`s to objects the cache already holds, so fan-out costs a pointer per
//! consumer, not a copy.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What happened to one object.
#[derive(Debug)]
pub enum Change<K> {
    /// Created or updated: the object as the cache now holds it.
    Applied(Arc<K>),
    /// Deleted: its last known state.
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied(object) | Change::Deleted(object) => object,
        }
    }

    pub fn into_object(self) -> Arc<K> {
        match self {
            Change::Applied(object) | Change::Deleted(object) => object,
        }
    }
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(object) => Change::Applied(object.clone()),
            Change::Deleted(object) => Change::Deleted(object.clone()),
        }
    }
}

/// The types an informer can watch: built-in, namespaced or cluster-scoped resources.
pub trait Watchable:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Watchable for K where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

/// Each type's informer (an `Arc<Informer<K>>`) and the task driving its watch.
type Started = HashMap<TypeId, (Arc<dyn Any + Send + Sync>, JoinHandle<()>)>;

/// Every informer of one process, started on first use and stopped when this is dropped.
pub struct Informers {
    client: Client,
    started: Mutex<Started>,
}

impl Informers {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Informers {
            client,
            started: Mutex::new(HashMap::new()),
        })
    }

    /// The client informers watch with, for consumers that also write.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer for `K`, its watch started if this is the first ask.
    pub fn get<K: Watchable>(&self) -> Arc<Informer<K>> {
        let mut started = self.started.lock().unwrap();
        if let Some((informer, _)) = started.get(&TypeId::of::<K>()) {
            return informer
                .clone()
                .downcast()
                .expect("informers are keyed by their type");
        }
        let informer = Arc::new(Informer::<K>::new());
        let stream = watcher::watcher(
            Api::<K>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        let task = tokio::spawn(informer.clone().drive(stream));
        started.insert(TypeId::of::<K>(), (informer.clone(), task));
        informer
    }

    /// `K`'s cache once its first list is complete.
    pub async fn store<K: Watchable>(&self) -> Store<K> {
        self.get::<K>().store().await
    }

    /// `K`'s objects, then its changes (see [`Informer::subscribe`]).
    pub async fn subscribe<K: Watchable>(&self) -> Subscription<K> {
        self.get::<K>().subscribe().await
    }

    /// `K`'s index named `name`, made with `keys_of` on first ask, once `K`'s first list is
    /// complete (see [`Informer::index`]).
    pub async fn index<K: Watchable>(
        &self,
        name: &'static str,
        keys_of: KeysOf<K>,
    ) -> Arc<Index<K>> {
        self.get::<K>().index(name, keys_of).await
    }

    /// `K`'s cache and every object changed or deleted in it: what a controller that reads
    /// `K` and is woken by it needs.
    pub async fn cache_and_touched<K: Watchable>(
        &self,
    ) -> (
        Store<K>,
        impl Stream<Item = Arc<K>> + Send + 'static + use<K>,
    ) {
        let informer = self.get::<K>();
        (informer.store().await, informer.subscribe().await.touched())
    }
}

impl Drop for Informers {
    fn drop(&mut self) {
        for (_, task) in self.started.get_mut().unwrap().values() {
            task.abort();
        }
    }
}

/// One type's cache and the queues of its consumers.
pub struct Informer<K: Watchable> {
    store: Store<K>,
    inner: Mutex<Inner<K>>,
    synced: watch::Sender<bool>,
}

struct Inner<K: Watchable> {
    writer: Writer<K>,
    subscribers: Vec<mpsc::UnboundedSender<Change<K>>>,
    /// The cache as it was when a re-list began: what is missing from the new list was deleted.
    before_relist: Option<Vec<Arc<K>>>,
    /// Updated with the cache, before any consumer hears of a change.
    indexes: Vec<(&'static str, Arc<Index<K>>)>,
}

impl<K: Watchable> Default for Informer<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Watchable> Informer<K> {
    /// An informer fed by [`Informer::drive`] (tests feed their own events).
    pub fn new() -> Self {
        let writer = Writer::default();
        Informer {
            store: writer.as_reader(),
            inner: Mutex::new(Inner {
                writer,
                subscribers: Vec::new(),
                before_relist: None,
                indexes: Vec::new(),
            }),
            synced: watch::channel(false).0,
        }
    }

    /// Applies a watch's events until it ends (a kube watcher with backoff never does).
    pub async fn drive<S>(self: Arc<Self>, stream: S)
    where
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => self.apply(event),
                Err(error) => {
                    tracing::warn!(%error, kind = %K::kind(&()), "informer watch failed; retrying")
                }
            }
        }
    }

    /// Applies one watch event to the cache and hands the change to every consumer.
    pub fn apply(&self, event: Event<K>) {
        let mut inner = self.inner.lock().unwrap();
        if matches!(event, Event::Init) {
            inner.before_relist = Some(self.store.state());
        }
        inner.writer.apply_watcher_event(&event);
        match event {
            Event::Apply(object) => {
                let key = ObjectRef::from_obj(&object);
                if let Some(now) = self.store.get(&key) {
                    for (_, index) in &inner.indexes {
                        index.put(key.clone(), &now);
                    }
                    inner.send(Change::Applied(now));
                }
            }
            Event::Delete(object) => {
                let key = ObjectRef::from_obj(&object);
                for (_, index) in &inner.indexes {
                    index.remove(&key);
                }
                inner.send(Change::Deleted(Arc::new(object)))
            }
            Event::Init | Event::InitApply(_) => {}
            Event::InitDone => {
                // The new list replaced the cache at once; so do the indexes.
                if !inner.indexes.is_empty() {
                    let state = self.store.state();
                    for (_, index) in &inner.indexes {
                        index.rebuild(&state);
                    }
                }
                // What the new list lacks was deleted meanwhile.
                let mut gone: HashMap<ObjectRef<K>, Arc<K>> = inner
                    .before_relist
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|object| (ObjectRef::from_obj(&*object), object))
                    .collect();
                for object in self.store.state() {
                    let key = ObjectRef::from_obj(&*object);
                    let old = gone.remove(&key);
                    let unchanged = old.is_some_and(|old| {
                        old.meta().resource_version == object.meta().resource_version
                    });
                    if !unchanged {
                        inner.send(Change::Applied(object));
                    }
                }
                for (_, object) in gone {
                    inner.send(Change::Deleted(object));
                }
                self.synced.send_replace(true);
            }
        }
    }

    /// The cache once its first list is complete.
    pub async fn store(&self) -> Store<K> {
        self.wait_synced().await;
        self.store.clone()
    }

    /// Once the first list is complete: every object in the cache as `Applied`, then every
    /// change after it, in order. Dropping the subscription unsubscribes.
    pub async fn subscribe(&self) -> Subscription<K> {
        self.wait_synced().await;
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock().unwrap();
        for object in self.store.state() {
            let _ = sender.send(Change::Applied(object));
        }
        inner.subscribers.push(sender);
        Subscription { receiver }
    }

    /// The index named `name`, made with `keys_of` and filled from the cache if this is its
    /// first ask. Waits for the first list, as a consumer reading it needs that anyway.
    pub async fn index(&self, name: &'static str, keys_of: KeysOf<K>) -> Arc<Index<K>> {
        self.wait_synced().await;
        let mut inner = self.inner.lock().unwrap();
        if let Some((_, index)) = inner.indexes.iter().find(|(known, _)| *known == name) {
            return index.clone();
        }
        // Filled under the lock that applies events, so none falls between fill and update.
        let index = Arc::new(Index::new(keys_of));
        index.rebuild(&self.store.state());
        inner.indexes.push((name, index.clone()));
        index
    }

    async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`, so this only ends when synced.
        let _ = synced.wait_for(|synced| *synced).await;
    }
}

impl<K: Watchable> Inner<K> {
    fn send(&mut self, change: Change<K>) {
        self.subscribers
            .retain(|subscriber| subscriber.send(change.clone()).is_ok());
    }
}

/// The keys an object is found under in an [`Index`] (none: in no bucket).
pub type KeysOf<K> = fn(&K) -> Vec<String>;

/// An informer's objects grouped by keys computed from each (upstream's `Indexer`), kept in
/// step with its cache: "which pods does this controller own" becomes a lookup instead of a
/// walk over every pod of the cluster.
pub struct Index<K: Watchable> {
    keys_of: KeysOf<K>,
    state: RwLock<IndexState<K>>,
}

struct IndexState<K: Watchable> {
    buckets: HashMap<String, HashMap<ObjectRef<K>, Arc<K>>>,
    /// Each object's keys when it was put, to take it out of the right buckets.
    keys: HashMap<ObjectRef<K>, Vec<String>>,
}

impl<K: Watchable> Index<K> {
    /// An empty index; [`Informer::index`] makes them filled and kept up to date.
    pub fn new(keys_of: KeysOf<K>) -> Self {
        Index {
            keys_of,
            state: RwLock::new(IndexState {
                buckets: HashMap::new(),
                keys: HashMap::new(),
            }),
        }
    }

    /// The objects found under `key`, in no particular order.
    pub fn get(&self, key: &str) -> Vec<Arc<K>> {
        let state = self.state.read().unwrap();
        state
            .buckets
            .get(key)
            .map(|bucket| bucket.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Puts `object` under its keys now, in place of its earlier version.
    pub fn put(&self, key: ObjectRef<K>, object: &Arc<K>) {
        let keys = (self.keys_of)(object);
        let mut state = self.state.write().unwrap();
        state.take_out(&key);
        for bucket in &keys {
            state
                .buckets
                .entry(bucket.clone())
                .or_default()
                .insert(key.clone(), object.clone());
        }
        state.keys.insert(key, keys);
    }

    pub fn remove(&self, key: &ObjectRef<K>) {
        self.state.write().unwrap().take_out(key);
    }

    /// Replaces everything with `objects`.
    pub fn rebuild(&self, objects: &[Arc<K>]) {
        {
            let mut state = self.state.write().unwrap();
            state.buckets.clear();
            state.keys.clear();
        }
        for object in objects {
            self.put(ObjectRef::from_obj(&**object), object);
        }
    }
}

impl<K: Watchable> IndexState<K> {
    fn take_out(&mut self, key: &ObjectRef<K>) {
        for bucket in self.keys.remove(key).unwrap_or_default() {
            if let Some(objects) = self.buckets.get_mut(&bucket) {
                objects.remove(key);
                if objects.is_empty() {
                    self.buckets.remove(&bucket);
                }
            }
        }
    }
}

/// One consumer's queue of changes.
pub struct Subscription<K> {
    receiver: mpsc::UnboundedReceiver<Change<K>>,
}

impl<K> Stream for Subscription<K> {
    type Item = Change<K>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change<K>>> {
        self.receiver.poll_recv(cx)
    }
}

impl<K: Send + Sync + 'static> Subscription<K> {
    /// Every object changed or deleted (what wakes the owners of a child).
    pub fn touched(self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.map(Change::into_object)
    }

    /// Every object created or updated (what wakes a controller for its own objects).
    pub fn applied(self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.filter_map(|change| {
            futures::future::ready(match change {
                Change::Applied(object) => Some(object),
                Change::Deleted(_) => None,
            })
        })
    }
}

#[cfg(test)]
mod tests;
