//! The r8s scheduler, like upstream's kube-scheduler: informers feed a cache of nodes and placed
//! pods and a scheduling queue of pending pods; each scheduling cycle runs a framework of small
//! filter and score plugins (`plugins/`, one module each), assumes the pod on the chosen node and
//! binds it through `pods/binding` while the next pod is scheduled. Pods that fit nowhere get
//! upstream's `PodScheduled=False` condition and `FailedScheduling` event, and may preempt
//! lower-priority pods. A `coordination.k8s.io/v1` Lease elects one active scheduler.
//!
//! It talks to the API server only through the Kubernetes API (a kube-rs `Client` and the
//! process's shared informers). This crate
//! must not use the store or the API server's internals.

pub mod cache;
pub mod clock;
pub mod framework;
mod informers;
pub mod labels;
pub mod leader_election;
pub mod plugins;
pub mod preemption;
pub mod queue;
mod reporter;
pub mod resources;
mod scheduler;

use std::sync::Arc;

use r8s_informers::Informers;

pub use scheduler::Scheduler;

/// The name pods ask for in `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Runs the scheduler until the process ends: stands by until this instance holds the
/// `kube-system/kube-scheduler` Lease, schedules while it does, and stands by again if it loses it.
pub async fn run(informers: Arc<Informers>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let identity = leader_election::identity();
    loop {
        let lease =
            leader_election::LeaderElector::new(client.clone(), "kube-scheduler", &identity);
        lease.acquire().await;
        tracing::info!(%identity, "became the leading scheduler");
        let scheduler = Scheduler::new(informers.clone(), Arc::new(clock::SystemClock), &identity);
        tokio::select! {
            result = scheduler.run() => return result,
            () = lease.keep() => tracing::warn!("lost the scheduler lease; standing by"),
        }
    }
}
