//! Resource usage of the node, its pods and their containers, sampled from cgroups every
//! [`INTERVAL`] (cAdvisor's role in upstream's kubelet). CPU rates need two samples, so each
//! sample keeps the one before; the kubelet API serves the latest as the Summary API
//! (`/stats/summary`) and as Prometheus text (`/metrics/resource`), which feed the API server's
//! `metrics.k8s.io` and so `kubectl top`.

pub mod cgroup;
mod render;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::cri::{Cri, v1};

pub use render::{prometheus_resource, summary};

/// How often usage is sampled (cAdvisor's housekeeping interval).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One cgroup's usage at one moment, with the CPU rate since the sample before.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub at: SystemTime,
    pub usage: cgroup::Usage,
    /// CPU used since the previous sample, in billionths of a core; `None` on the first.
    pub nano_cores: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ContainerStats {
    pub name: String,
    pub start: SystemTime,
    pub measured: Measured,
}

#[derive(Debug, Clone)]
pub struct PodStats {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub start: SystemTime,
    pub measured: Measured,
    pub containers: Vec<ContainerStats>,
}

/// Everything one sampling pass saw.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub node_name: String,
    pub node: Measured,
    /// The node's memory, for its available bytes.
    pub memory_capacity: u64,
    /// When the machine booted: the node's start time.
    pub boot_time: SystemTime,
    /// The file system holding the agent's data (pods' volumes, images, logs).
    pub fs: Option<FsStats>,
    pub pods: Vec<PodStats>,
    /// The time between this sample and the one before.
    pub window: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct FsStats {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// Samples usage and keeps the latest snapshot.
pub struct Sampler {
    cri: Cri,
    cgroups: cgroup::Hierarchies,
    cgroup_root: String,
    node_name: String,
    memory_capacity: u64,
    data_dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last sample of each cgroup, by path.
    previous: HashMap<String, (SystemTime, u64)>,
    last_at: Option<SystemTime>,
    latest: Option<Arc<Snapshot>>,
}

impl Sampler {
    pub fn new(
        cri: Cri,
        cgroup_root: &str,
        node_name: &str,
        memory_capacity: u64,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            cri,
            cgroups: cgroup::Hierarchies::detect(),
            cgroup_root: cgroup_root.trim_end_matches('/').to_owned(),
            node_name: node_name.to_owned(),
            memory_capacity,
            data_dir,
            state: Mutex::new(State::default()),
        }
    }

    /// The latest snapshot, once there is one.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.state.lock().unwrap().latest.clone()
    }

    /// Samples every [`INTERVAL`] until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = self.sample().await {
                tracing::debug!("cannot sample resource usage: {e}");
            }
        }
    }

    /// One pass: the node's root cgroup, each ready sandbox's pod cgroup and each running
    /// container's cgroup below it (containerd names it by the container ID).
    pub async fn sample(&self) -> Result<(), tonic::Status> {
        let mut runtime = self.cri.runtime.clone();
        let sandboxes = runtime
            .list_pod_sandbox(v1::ListPodSandboxRequest {
                filter: Some(v1::PodSandboxFilter {
                    state: Some(v1::PodSandboxStateValue {
                        state: v1::PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .items;
        let containers = runtime
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    state: Some(v1::ContainerStateValue {
                        state: v1::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .containers;
        let fs = fs_stats(&self.data_dir);
        let mut state = self.state.lock().unwrap();
        let mut seen = HashMap::new();
        let mut measure = |path: &str| -> Option<Measured> {
            let usage = self.cgroups.read(path)?;
            let at = SystemTime::now();
            let nano_cores = state.previous.get(path).and_then(|&(then, cpu_ns)| {
                let elapsed = at.duration_since(then).ok()?.as_nanos();
                let used = u128::from(usage.cpu_ns.checked_sub(cpu_ns)?);
                (elapsed > 0).then(|| (used * 1_000_000_000 / elapsed) as u64)
            });
            seen.insert(path.to_owned(), (at, usage.cpu_ns));
            Some(Measured {
                at,
                usage,
                nano_cores,
            })
        };
        let Some(node) = measure("/") else {
            return Err(tonic::Status::unavailable("the root cgroup cannot be read"));
        };
        let mut pods = Vec::new();
        for sandbox in &sandboxes {
            let Some(meta) = &sandbox.metadata else {
                continue;
            };
            let pod_cgroup = format!("{}/pod{}", self.cgroup_root, meta.uid);
            let Some(measured) = measure(&pod_cgroup) else {
                continue;
            };
            let containers = containers
                .iter()
                .filter(|c| c.pod_sandbox_id == sandbox.id)
                .filter_map(|c| {
                    let name = c.metadata.as_ref()?.name.clone();
                    let measured = measure(&format!("{pod_cgroup}/{}", c.id))?;
                    Some(ContainerStats {
                        name,
                        start: from_nanos(c.created_at),
                        measured,
                    })
                })
                .collect();
            pods.push(PodStats {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                start: from_nanos(sandbox.created_at),
                measured,
                containers,
            });
        }
        let window = state
            .last_at
            .and_then(|then| node.at.duration_since(then).ok())
            .unwrap_or_default();
        state.previous = seen;
        state.last_at = Some(node.at);
        state.latest = Some(Arc::new(Snapshot {
            node_name: self.node_name.clone(),
            node,
            memory_capacity: self.memory_capacity,
            boot_time: boot_time(),
            fs,
            pods,
            window,
        }));
        Ok(())
    }
}

fn from_nanos(nanos: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// The `btime` line of /proc/stat.
fn boot_time() -> SystemTime {
    let seconds = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            stat.lines()
                .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
        })
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn fs_stats(dir: &std::path::Path) -> Option<FsStats> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize;
    Some(FsStats {
        capacity_bytes: stat.f_blocks * block,
        available_bytes: stat.f_bavail * block,
        used_bytes: (stat.f_blocks - stat.f_bfree) * block,
        inodes: stat.f_files,
        inodes_free: stat.f_ffree,
    })
}
