//! `r8s sim …`: simulated cluster members for tests and scale benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use r8s_sim::{Capacity, Cidr, HollowNodes, SimConfig};

#[derive(Subcommand)]
pub enum SimCommand {
    /// Run hollow nodes: fake kubelets that register, heartbeat and report their pods Running,
    /// without running anything (like upstream's kubemark and kwok).
    Nodes(NodesArgs),
}

#[derive(Args)]
pub struct NodesArgs {
    /// The cluster to join.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// How many nodes to run.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Nodes are named <prefix>0, <prefix>1, …
    #[arg(long, default_value = "hollow-")]
    name_prefix: String,
    /// Each node's CPU capacity.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Each node's memory capacity.
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// How many pods each node takes.
    #[arg(long, default_value = "110")]
    pods: String,
    /// Each node's ephemeral-storage capacity.
    #[arg(long, default_value = "100Gi")]
    ephemeral_storage: String,
    /// Where the nodes' /24 pod CIDRs come from [default: 10.244.0.0/16, widened to hold
    /// --count nodes]. A node that already has a podCIDR keeps it.
    #[arg(long)]
    cluster_cidr: Option<Cidr>,
    /// Seconds between status reports of an unchanged node (upstream's
    /// nodeStatusReportFrequency); leases are renewed every 10 s regardless.
    #[arg(long, default_value_t = 300)]
    node_status_report_frequency: u64,
    /// API requests in flight, per kind of work.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

pub async fn run(command: SimCommand) -> anyhow::Result<()> {
    match command {
        SimCommand::Nodes(args) => nodes(args).await,
    }
}

async fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let mut config = SimConfig::new(args.count, args.name_prefix);
    config.capacity = Capacity {
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        ephemeral_storage: args.ephemeral_storage,
    };
    if let Some(cidr) = args.cluster_cidr {
        config.cluster_cidr = cidr;
    }
    config.node_status_report_frequency = Duration::from_secs(args.node_status_report_frequency);
    config.concurrency = args.concurrency;
    let client = r8s_sim::client(&args.kubeconfig).await?;
    let started = Instant::now();
    let nodes = HollowNodes::register(client, config)
        .await
        .context("cannot register the hollow nodes")?;
    let names = nodes.nodes();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{} hollow nodes registered ({} … {}) in {:.2} s",
        names.len(),
        names[0].name,
        names[names.len() - 1].name,
        started.elapsed().as_secs_f64()
    );
    let _ = out.flush();
    drop(out);
    nodes.run(shutdown()).await;
    Ok(())
}

/// SIGINT or SIGTERM: heartbeats stop, the Nodes stay (they go NotReady).
async fn shutdown() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
