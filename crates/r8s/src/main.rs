//! The `r8s` binary: Kubernetes in one executable. Only wiring lives here: each subcommand
//! parses its flags and calls into the crate that does the work.

mod agent;
mod bench;
mod devcluster;
mod images;
mod memory;
mod server;
mod sim;
mod token;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "r8s",
    version,
    about = "Kubernetes, written from scratch in Rust, in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a control plane (like `kubeadm init`).
    Server(server::ServerArgs),
    /// Join this machine to a cluster as a node (like `kubeadm join`).
    Agent(agent::AgentArgs),
    /// Bootstrap tokens that let nodes join (like `kubeadm token`).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Container images on this node.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Measure r8s's components against their references.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Simulated cluster members (hollow nodes) for tests and scale benchmarks.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Several nodes on this machine, each in a network namespace (like kind).
    #[command(subcommand)]
    Devcluster(devcluster::DevclusterCommand),
}

// Under load glibc's malloc took about 30% of the server's CPU (consolidating and unlinking
// chunks across threads); mimalloc's per-thread free lists cost a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("r8s: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if matches!(cli.command, Command::Server(_) | Command::Agent(_)) {
        memory::purge_at_once_while_starting(memory::START_UP);
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Bench(command) => bench::run(command).await,
            Command::Images(command) => images::run(command).await,
            Command::Sim(command) => sim::run(command).await,
            Command::Token(command) => token::run(command).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Devcluster(command) => devcluster::run(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("r8s: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
