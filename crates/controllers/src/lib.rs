//! The r8s controller manager: one module per controller, each a `reconcile(object, ctx)` over
//! informers (kube-rs's `Controller`), idempotent and reading the world from the API, never
//! from memory of past runs.
//!
//! Controllers talk to the API server only through the Kubernetes API (a kube-rs `Client`), like
//! upstream's kube-controller-manager. This crate must not use the store or the API server's
//! internals; it may use `r8s_api` (the catalogue).

pub mod certificates;
pub mod clock;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod garbage_collector;
pub mod history;
pub mod hpa;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod ownership;
pub mod pod_gc;
pub mod replicaset;
pub mod resourcequota;
pub mod root_ca_publisher;
pub mod selector;
pub mod service_endpoints;
pub mod service_lb;
pub mod serviceaccount;
pub mod statefulset;
pub mod taint_eviction;
pub mod ttl_after_finished;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::Controller;
use r8s_informers::{Informers, Watchable};

use clock::{Clock, SystemClock};

type Run =
    fn(Arc<Informers>, Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Every controller, by the name upstream's controller manager gives it.
fn controllers() -> Vec<(&'static str, Run)> {
    vec![
        ("namespace", |informers, _| {
            Box::pin(namespace::run(informers))
        }),
        ("garbagecollector", |informers, _| {
            Box::pin(garbage_collector::run(informers.client().clone()))
        }),
        ("replicaset", |informers, clock| {
            Box::pin(replicaset::run(informers, clock))
        }),
        ("deployment", |informers, clock| {
            Box::pin(deployment::run(informers, clock))
        }),
        ("replicationcontroller", |informers, clock| {
            Box::pin(replicaset::run_replication_controllers(informers, clock))
        }),
        ("job", |informers, clock| {
            Box::pin(job::run(informers, clock))
        }),
        ("cronjob", |informers, clock| {
            Box::pin(cronjob::run(informers, clock))
        }),
        ("daemonset", |informers, clock| {
            Box::pin(daemonset::run(informers, clock))
        }),
        ("statefulset", |informers, clock| {
            Box::pin(statefulset::run(informers, clock))
        }),
        ("resourcequota", |informers, _| {
            Box::pin(resourcequota::run(informers))
        }),
        ("serviceaccount", |informers, _| {
            Box::pin(serviceaccount::run(informers))
        }),
        ("endpointslice", |informers, clock| {
            Box::pin(endpointslice::run(informers, clock))
        }),
        ("endpoints", |informers, clock| {
            Box::pin(endpoints::run(informers, clock))
        }),
        ("taint-eviction-controller", |informers, clock| {
            Box::pin(taint_eviction::run(informers, clock))
        }),
        ("disruption", |informers, clock| {
            Box::pin(disruption::run(informers, clock))
        }),
        ("podgc", |informers, clock| {
            Box::pin(pod_gc::run(informers, clock))
        }),
        ("horizontalpodautoscaling", |informers, clock| {
            Box::pin(hpa::run(informers.client().clone(), clock))
        }),
        ("ttl-after-finished", |informers, clock| {
            Box::pin(ttl_after_finished::run(informers, clock))
        }),
        ("csrapproving", |informers, clock| {
            Box::pin(certificates::approving::run(
                informers.client().clone(),
                clock,
            ))
        }),
    ]
}

/// What the host of the controller manager hands it, as upstream's flags do.
#[derive(Clone, Default)]
pub struct Options {
    /// The cluster CA (PEM) that root-ca-cert-publisher puts in every namespace.
    pub root_ca_pem: String,
    /// How long a silent kubelet's node stays Ready (upstream's `--node-monitor-grace-period`,
    /// 40 s when unset).
    pub node_monitor_grace_period: Option<Duration>,
    /// Pod CIDRs for Nodes (upstream's `--allocate-node-cidrs`); none: Nodes bring their own.
    pub node_ipam: Option<node_ipam::Ranges>,
    /// The CA csrsigning issues certificates with; none: csrsigning does not run (upstream
    /// starts it only when its signing files are configured).
    pub cluster_signing: Option<certificates::SigningCa>,
    /// Addresses for LoadBalancer Services (`r8s server --lb-pool`); none: the nodes'
    /// addresses.
    pub lb_pool: Option<service_lb::Pool>,
}

/// Runs every controller concurrently. One that stops or fails is logged and restarted after a
/// pause; the others keep running.
pub async fn run(informers: Arc<Informers>, options: Options) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let client = informers.client().clone();
    let mut tasks: Vec<_> = controllers()
        .into_iter()
        .map(|(name, run)| {
            let (informers, clock) = (informers.clone(), clock.clone());
            supervise(name, move || run(informers.clone(), clock.clone()))
        })
        .collect();
    let grace = options
        .node_monitor_grace_period
        .unwrap_or(node_lifecycle::DEFAULT_GRACE_PERIOD);
    let (lifecycle_informers, lifecycle_clock) = (informers.clone(), clock.clone());
    tasks.push(supervise("nodelifecycle", move || {
        Box::pin(node_lifecycle::run(
            lifecycle_informers.clone(),
            lifecycle_clock.clone(),
            grace,
        ))
    }));
    if let Some(ranges) = options.node_ipam {
        let ipam_informers = informers.clone();
        tasks.push(supervise("nodeipam", move || {
            Box::pin(node_ipam::run(ipam_informers.clone(), ranges))
        }));
    }
    if let Some(ca) = options.cluster_signing.clone() {
        let (signing_client, signing_clock) = (client.clone(), clock.clone());
        tasks.push(supervise("csrsigning", move || {
            Box::pin(certificates::signing::run(
                signing_client.clone(),
                ca.clone(),
                signing_clock.clone(),
            ))
        }));
    }
    let (lb_informers, lb_clock, lb_pool) =
        (informers.clone(), clock.clone(), options.lb_pool.clone());
    tasks.push(supervise("service-lb-controller", move || {
        Box::pin(service_lb::run(
            lb_informers.clone(),
            lb_clock.clone(),
            lb_pool.clone(),
        ))
    }));
    tasks.push(supervise("root-ca-cert-publisher", move || {
        Box::pin(root_ca_publisher::run(
            client.clone(),
            options.root_ca_pem.clone(),
        ))
    }));
    // Dropping this future (a lost leader election) stops every controller.
    let mut tasks = AbortOnDrop(tasks);
    futures::future::join_all(tasks.0.iter_mut()).await;
    Ok(())
}

/// Tasks aborted when their owner is dropped.
struct AbortOnDrop<T>(Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs one controller, restarting it a second after it stops, fails or panics.
fn supervise<F>(name: &'static str, start: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            // Aborting the supervisor aborts the controller too.
            let mut controller = AbortOnDrop(vec![tokio::spawn(start())]);
            match (&mut controller.0[0]).await {
                Ok(Ok(())) => tracing::warn!(controller = name, "controller stopped"),
                Ok(Err(error)) => {
                    tracing::error!(
                        controller = name,
                        error = format!("{error:#}"),
                        "controller failed"
                    )
                }
                Err(panic) => tracing::error!(controller = name, %panic, "controller panicked"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Treats 404 Not Found as done: what a controller wanted gone is gone.
pub(crate) fn ignore_not_found(error: kube::Error) -> Result<(), kube::Error> {
    match error {
        kube::Error::Api(status) if status.code == 404 => Ok(()),
        error => Err(error),
    }
}

/// A controller of `K` woken by, and reading, the shared informer of `K`.
async fn controller_for<K: Watchable>(informers: &Informers) -> Controller<K> {
    let informer = informers.get::<K>();
    Controller::for_shared_stream(informer.subscribe().await.applied(), informer.store().await)
}
