//! The scheduling loop: pop a pod, run one cycle over the cache, assume the pod on the chosen
//! node and bind it in the background (bounded concurrency) while the next pod is scheduled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use r8s_informers::Informers;
use serde_json::json;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::cache::{Cache, PodInfo};
use crate::clock::Clock;
use crate::framework::{Framework, Rng, ScheduleError};
use crate::informers;
use crate::plugins::{default_plugins, pod_topology_spread::DefaultSelectors};
use crate::preemption::{Preemption, preempt};
use crate::queue::{Popped, SchedulingQueue};
use crate::reporter::{Report, Reporter};

/// Bindings in flight at once.
const MAX_CONCURRENT_BINDS: usize = 64;

/// State the informers and the scheduling loop share.
pub struct Shared {
    pub cache: Mutex<Cache>,
    pub queue: Mutex<SchedulingQueue>,
    pub wake: Notify,
    pub default_selectors: Arc<DefaultSelectors>,
}

pub struct Scheduler {
    informers: Arc<Informers>,
    client: Client,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    framework: Framework,
    reporter: Reporter,
    binds: Arc<Semaphore>,
}

/// The outcome of one cycle, acted on after the cache lock is released.
enum Outcome {
    Assumed(String),
    Unschedulable {
        message: String,
        plugins: Vec<&'static str>,
        preemption: Option<Preemption>,
    },
    AlreadyPlaced,
}

impl Scheduler {
    pub fn new(informers: Arc<Informers>, clock: Arc<dyn Clock>, identity: &str) -> Self {
        let client = informers.client().clone();
        let default_selectors = Arc::new(DefaultSelectors::default());
        let host = identity.split('_').next().unwrap_or(identity);
        Scheduler {
            reporter: Reporter::start(client.clone(), host),
            framework: Framework::new(default_plugins(default_selectors.clone())),
            shared: Arc::new(Shared {
                cache: Mutex::new(Cache::default()),
                queue: Mutex::new(SchedulingQueue::new(clock.clone())),
                wake: Notify::new(),
                default_selectors,
            }),
            clock,
            client,
            informers,
            binds: Arc::new(Semaphore::new(MAX_CONCURRENT_BINDS)),
        }
    }

    /// Starts the informers, waits for their first lists, then schedules until dropped.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut informers = JoinSet::new();
        let mut synced = Vec::new();
        let mut sync = || {
            let (sender, receiver) = watch::channel(false);
            synced.push(receiver);
            sender
        };
        let (i, s) = (&self.informers, &self.shared);
        informers.spawn(informers::nodes(i.subscribe().await, s.clone(), sync()));
        informers.spawn(informers::namespaces(
            i.subscribe().await,
            s.clone(),
            sync(),
        ));
        informers.spawn(informers::selectors::<Service>(
            i.subscribe().await,
            s.clone(),
            informers::service_selector,
            sync(),
        ));
        informers.spawn(informers::selectors::<ReplicationController>(
            i.subscribe().await,
            s.clone(),
            informers::replication_controller_selector,
            sync(),
        ));
        informers.spawn(informers::selectors::<ReplicaSet>(
            i.subscribe().await,
            s.clone(),
            informers::replica_set_selector,
            sync(),
        ));
        informers.spawn(informers::selectors::<StatefulSet>(
            i.subscribe().await,
            s.clone(),
            informers::stateful_set_selector,
            sync(),
        ));
        // Pods last: nodes are known when pending pods arrive.
        informers.spawn(informers::pods(i.subscribe().await, s.clone(), sync()));
        for mut receiver in synced {
            receiver
                .wait_for(|done| *done)
                .await
                .map_err(|_| anyhow::anyhow!("a scheduler informer stopped before it synced"))?;
        }
        tracing::info!("scheduler caches synced");
        let seed = k8s_openapi::jiff::Timestamp::now().as_nanosecond() as u64;
        let mut rng = Rng::new(seed);
        tokio::select! {
            () = async { loop { self.schedule_one(&mut rng).await } } => unreachable!(),
            Some(result) = informers.join_next() => {
                result?;
                anyhow::bail!("a scheduler informer stopped")
            }
        }
    }

    async fn next_pod(&self) -> Popped {
        loop {
            let next_backoff = {
                let mut queue = self.shared.queue.lock().unwrap();
                queue.flush();
                if let Some(popped) = queue.pop() {
                    return popped;
                }
                queue.next_backoff_expiry()
            };
            let wait = next_backoff
                .map(|t| t.saturating_duration_since(self.clock.now()))
                .unwrap_or(Duration::from_secs(30))
                .clamp(Duration::from_millis(1), Duration::from_secs(30));
            tokio::select! {
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn schedule_one(&self, rng: &mut Rng) {
        let Popped { info, attempts } = self.next_pod().await;
        let outcome = self.cycle(&info, rng);
        match outcome {
            Outcome::AlreadyPlaced => self.shared.queue.lock().unwrap().remove(&info.uid),
            Outcome::Assumed(node) => {
                self.shared.queue.lock().unwrap().remove(&info.uid);
                let permit = self
                    .binds
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the bind semaphore is never closed");
                let (client, shared, reporter) = (
                    self.client.clone(),
                    self.shared.clone(),
                    self.reporter.clone(),
                );
                tokio::spawn(async move {
                    bind(client, shared, reporter, info, attempts, node).await;
                    drop(permit);
                });
            }
            Outcome::Unschedulable {
                message,
                plugins,
                preemption,
            } => {
                self.shared
                    .queue
                    .lock()
                    .unwrap()
                    .unschedulable(&info.uid, plugins);
                let nominated_node = preemption.as_ref().map(|p| p.node.clone());
                if let Some(preemption) = preemption {
                    self.evict(&info, preemption);
                }
                self.reporter.send(Report::Unschedulable {
                    pod: info,
                    message,
                    nominated_node,
                });
            }
        }
        // The loop is CPU-bound: let informers and binds run between pods.
        tokio::task::yield_now().await;
    }

    /// One scheduling cycle under the cache lock.
    fn cycle(&self, info: &Arc<PodInfo>, rng: &mut Rng) -> Outcome {
        let mut cache = self.shared.cache.lock().unwrap();
        if cache.is_placed(&info.uid) {
            return Outcome::AlreadyPlaced;
        }
        match self.framework.schedule(info, &mut cache, rng) {
            Ok(decision) => {
                cache.assume(info.clone(), &decision.node);
                Outcome::Assumed(decision.node)
            }
            Err(ScheduleError::NoNodes) => Outcome::Unschedulable {
                message: "no nodes available to schedule pods".to_owned(),
                plugins: Vec::new(),
                preemption: None,
            },
            Err(ScheduleError::Fit(failure)) => {
                let (fit, state) = *failure;
                let mut message = fit.message();
                let preemption = match preempt(&self.framework, info, &cache, &fit, &state) {
                    Ok(preemption) => Some(preemption),
                    Err(why) => {
                        message.push(' ');
                        message.push_str(&why);
                        None
                    }
                };
                Outcome::Unschedulable {
                    message,
                    plugins: fit.plugins(),
                    preemption,
                }
            }
        }
    }

    /// Deletes the victims gracefully; the pod waits (nominated) until their deletion frees room.
    fn evict(&self, preemptor: &Arc<PodInfo>, preemption: Preemption) {
        for victim in preemption.victims {
            let client = self.client.clone();
            let reporter = self.reporter.clone();
            let preemptor = preemptor.clone();
            let node = preemption.node.clone();
            tokio::spawn(async move {
                let pods: Api<Pod> = Api::namespaced(client, &victim.namespace);
                let delete = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: Some(victim.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pods.delete(&victim.name, &delete).await {
                    Ok(_) => reporter.send(Report::Preempted {
                        victim,
                        preemptor,
                        node,
                    }),
                    Err(error) => {
                        tracing::warn!(%error, victim = %victim.key(), "cannot preempt pod")
                    }
                }
            });
        }
    }
}

/// Writes the binding; on failure the assumption is dropped and the pod retried after back-off.
async fn bind(
    client: Client,
    shared: Arc<Shared>,
    reporter: Reporter,
    info: Arc<PodInfo>,
    attempts: u32,
    node: String,
) {
    let pods: Api<Pod> = Api::namespaced(client, &info.namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": info.name, "namespace": info.namespace, "uid": info.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let result = pods
        .create_subresource::<_, serde::de::IgnoredAny>(
            "binding",
            &info.name,
            &PostParams::default(),
            &binding,
        )
        .await;
    match result {
        Ok(_) => reporter.send(Report::Scheduled { pod: info, node }),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            // Deleted, or bound by someone else: the informer brings the truth.
            tracing::debug!(pod = %info.key(), message = %status.message, "binding refused");
            shared.cache.lock().unwrap().forget(&info.uid);
        }
        Err(error) => {
            tracing::warn!(%error, pod = %info.key(), %node, "binding failed; retrying");
            shared.cache.lock().unwrap().forget(&info.uid);
            shared.queue.lock().unwrap().retry(info, attempts);
            shared.wake.notify_one();
        }
    }
}
