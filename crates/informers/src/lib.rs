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
use std::sync::{Arc, Mutex};
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
                if let Some(now) = self.store.get(&ObjectRef::from_obj(&object)) {
                    inner.send(Change::Applied(now));
                }
            }
            Event::Delete(object) => inner.send(Change::Deleted(Arc::new(object))),
            Event::Init | Event::InitApply(_) => {}
            Event::InitDone => {
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
