//! `r8s bench …`: benchmarks that print figures, with the reference measured in the same run.

mod api;
mod controllers;
mod harness;
mod network;
mod node;
mod pods;
mod scheduler;
mod store;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable writes and watch latency: the embedded store against a real etcd.
    Store(store::StoreBenchArgs),
    /// The API server under load, on the embedded store and on etcd.
    Api(api::ApiBenchArgs),
    /// Scheduling throughput and latency on hollow nodes.
    Scheduler(scheduler::SchedulerBenchArgs),
    /// Deployments to fully available on hollow nodes: the Deployment and ReplicaSet controllers.
    Controllers(controllers::ControllersBenchArgs),
    /// Pod startup latency on a real node beside the runtime's own, and the node's memory.
    Pods(pods::PodsBenchArgs),
    /// Service rule programming, the proxy's cost per request, and cluster DNS, on a real node.
    Network(network::NetworkBenchArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store(args) => store::run(args).await,
        BenchCommand::Api(args) => api::run(args).await,
        BenchCommand::Scheduler(args) => scheduler::run(args).await,
        BenchCommand::Controllers(args) => controllers::run(args).await,
        BenchCommand::Pods(args) => pods::run(args).await,
        BenchCommand::Network(args) => network::run(args).await,
    }
}

/// Latency percentile `p` (0–100) of sorted samples, in milliseconds.
fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}
