//! `r8s devcluster up|down`: several nodes on one machine, like kind, for tests, demos and
//! newcomers. Each node is a network namespace on a private switch (see `network.rs`); the
//! first runs `r8s server`, the others join it with `r8s agent` and a bootstrap token, as the
//! tutorial's hosts do. Everything lives under `--dir`:
//!
//! ```text
//! DIR/devcluster         what `up` made (down deletes node state only where it is)
//! DIR/admin.kubeconfig   the admin kubeconfig for the host (through the forwarder)
//! DIR/forward.pid|log    the forwarder from 127.0.0.1 to the API server (forward.rs)
//! DIR/nodeI/             node I's data dir, with its `pid` and `log`
//! ```
//!
//! Names come from a hash of DIR, so devclusters in different dirs coexist: namespaces (and
//! Node names) `r8s-dc-<hash>-n<I>`, the switch `r8s-dc-<hash>-sw`.

mod down;
mod forward;
mod network;
mod process;
mod registry;
mod up;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use network::Subnet;
use process::Recorded;

/// The API server's port, inside the first node's namespace.
const API_PORT: u16 = 6443;

#[derive(Subcommand)]
pub enum DevclusterCommand {
    /// Start a cluster of N nodes on this machine, each in a network namespace of its own.
    Up(UpArgs),
    /// Stop a devcluster's processes and remove its namespaces and node state (logs stay).
    Down {
        /// The devcluster's directory, as given to `up`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Copy connections from the listening socket at descriptor 3 to an address (`up` starts
    /// it inside the first node's namespace).
    #[command(hide = true)]
    Forward {
        #[arg(long)]
        to: SocketAddr,
        /// The devcluster's directory, which tells this process apart in `down`.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Args)]
pub struct UpArgs {
    /// How many nodes: the first runs the control plane and a node agent, the others join it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=250))]
    nodes: u8,
    /// Where the devcluster keeps its nodes' data, logs, PIDs and admin kubeconfig.
    #[arg(long)]
    dir: PathBuf,
    /// Image tarballs (docker-archive .tar, .tar.gz, .tgz) every node imports at start.
    #[arg(long)]
    images: Option<PathBuf>,
    /// The nodes' network (default: a /24 of 10.200.0.0/13 picked from --dir).
    #[arg(long, value_parser = Subnet::parse)]
    subnet: Option<Subnet>,
    /// How long to wait for every node to be Ready.
    #[arg(long, default_value = "5m", value_parser = crate::server::parse_go_duration)]
    timeout: Duration,
}

pub async fn run(command: DevclusterCommand) -> anyhow::Result<()> {
    match command {
        DevclusterCommand::Up(args) => up::run(args).await,
        DevclusterCommand::Down { dir } => down::run(&dir),
        DevclusterCommand::Forward { to, dir: _ } => forward::run(to).await,
    }
}

/// Where a devcluster's pieces are, all derived from its directory.
struct Layout {
    dir: PathBuf,
    hash: u64,
}

impl Layout {
    fn of(dir: &Path) -> anyhow::Result<Self> {
        let dir = match dir.canonicalize() {
            Ok(dir) => dir,
            Err(_) => std::path::absolute(dir)
                .with_context(|| format!("cannot make {} absolute", dir.display()))?,
        };
        let hash = dir_hash(dir.as_os_str().as_encoded_bytes());
        Ok(Self { dir, hash })
    }

    /// What every namespace (and Node) name of this devcluster starts with.
    fn prefix(&self) -> String {
        format!("r8s-dc-{:06x}-", self.hash & 0xff_ffff)
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix())
    }

    /// Node `index`'s network namespace and Node name (unique on the machine, which the
    /// node's cgroups `/r8s/<name>` need).
    fn node(&self, index: u8) -> String {
        format!("{}n{index}", self.prefix())
    }

    fn node_dir(&self, index: u8) -> PathBuf {
        self.dir.join(format!("node{index}"))
    }

    fn node_log(&self, index: u8) -> PathBuf {
        self.node_dir(index).join("log")
    }

    fn node_process(&self, index: u8) -> Recorded {
        Recorded {
            pid_file: self.node_dir(index).join("pid"),
            markers: vec![self.node_dir(index).to_string_lossy().into_owned()],
        }
    }

    fn forwarder(&self) -> Recorded {
        Recorded {
            pid_file: self.dir.join("forward.pid"),
            markers: vec!["forward".into(), self.dir.to_string_lossy().into_owned()],
        }
    }

    /// The registry mirror `up --images` runs (registry.rs).
    fn registry(&self) -> Recorded {
        Recorded {
            pid_file: self.dir.join("registry.pid"),
            // Whole arguments: its command line is `docker-registry serve DIR/registry.yml`.
            markers: vec![
                "docker-registry".into(),
                self.registry_config().to_string_lossy().into_owned(),
            ],
        }
    }

    fn registry_config(&self) -> PathBuf {
        self.dir.join("registry.yml")
    }

    fn registry_dir(&self) -> PathBuf {
        self.dir.join("registry")
    }

    /// Every process `up` records, nodes last.
    fn recorded(&self) -> Vec<Recorded> {
        [self.forwarder(), self.registry()]
            .into_iter()
            .chain(
                self.node_indices()
                    .into_iter()
                    .map(|i| self.node_process(i)),
            )
            .collect()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// Written first by `up`, removed last by `down`: only a dir holding it is one whose
    /// node state `down` may delete.
    fn marker(&self) -> PathBuf {
        self.dir.join("devcluster")
    }

    /// The nodes this devcluster has, by their directories and their namespaces.
    fn node_indices(&self) -> BTreeSet<u8> {
        let mut found: BTreeSet<u8> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| {
                entry
                    .file_name()
                    .to_str()?
                    .strip_prefix("node")?
                    .parse()
                    .ok()
            })
            .collect();
        let node_prefix = format!("{}n", self.prefix());
        found.extend(
            network::namespaces_with_prefix(&node_prefix)
                .iter()
                .filter_map(|name| name.strip_prefix(&node_prefix)?.parse::<u8>().ok()),
        );
        found
    }

    /// Why this devcluster is (partly) running, if it is: its namespaces or live processes.
    fn running(&self) -> Option<String> {
        let namespaces = network::namespaces_with_prefix(&self.prefix());
        if !namespaces.is_empty() {
            return Some(format!("network namespaces {}", namespaces.join(", ")));
        }
        let processes: Vec<String> = self
            .recorded()
            .into_iter()
            .filter_map(|recorded| recorded.running())
            .map(|pid| pid.to_string())
            .collect();
        (!processes.is_empty()).then(|| format!("processes {}", processes.join(", ")))
    }
}

/// A stable hash (std's is seeded per process), so `up` and `down` agree on names: FNV-1a,
/// then MurmurHash3's finalizer, so that dirs differing in one character differ in every bit.
fn dir_hash(bytes: &[u8]) -> u64 {
    let mut hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// Both commands create namespaces and (up) run containers.
fn require_root_and_ip() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("r8s devcluster needs root: it creates network namespaces and runs containers");
    }
    network::ip(&["-V"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_differ_between_dirs() {
        let a = Layout::of(Path::new("/nonexistent/devcluster-a")).unwrap();
        let b = Layout::of(Path::new("/nonexistent/devcluster-b")).unwrap();
        assert_eq!(a.prefix(), Layout::of(&a.dir).unwrap().prefix());
        assert_ne!(a.prefix(), b.prefix());
        assert!(a.node(250).len() < 64 && a.node(1).starts_with("r8s-dc-"));
        let (one, two) = (dir_hash(b"/tmp/dc1"), dir_hash(b"/tmp/dc2"));
        assert!((one ^ two).count_ones() > 16, "{one:x} {two:x}");
    }
}
