//! The `r8s` binary: Kubernetes in one executable. Only wiring lives here: each subcommand
//! parses its flags and calls into the crate that does the work.

mod agent;
mod bench;
mod devcluster;
mod images;
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

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (libmimalloc-sys names no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Hands freed pages back to the kernel at once. mimalloc 3 delays it by a second and runs
/// the delayed purges only on later allocator calls of the same thread, which an idle server
/// does not make: 4 MB of freed start-up memory stayed resident. The scheduler benchmark
/// measured no cost. `MIMALLOC_PURGE_DELAY` still overrides.
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's option values; any value of this option is valid.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

fn main() -> std::process::ExitCode {
    purge_freed_memory_at_once();
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
