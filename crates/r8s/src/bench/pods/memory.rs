//! Resident memory of a node's processes: the server (control plane), the agent, the agent's
//! containerd, containerd's shims.

use std::path::Path;

use crate::bench::node::{NetnsNode, shims_of};

/// Resident memory of the node's processes.
pub struct Memory {
    pub server_mib: f64,
    pub agent_mib: f64,
    pub containerd_mib: f64,
    pub shims: usize,
    pub shims_rss_mib: f64,
    pub shims_pss_mib: f64,
}

impl Memory {
    pub fn sample(node: &NetnsNode) -> Self {
        let server = node.server_pid();
        let agent = node.agent_pid();
        let containerd = child_running(agent, "containerd");
        let shims = shims_of(&node.containerd_dir());
        let total = |field: &str, file: &str| -> f64 {
            // A fold from +0.0: an empty f64 sum is -0.0.
            let kib = shims.iter().map(|&pid| proc_kib(pid, file, field));
            kib.fold(0.0, |sum, k| sum + k) / 1024.0
        };
        Self {
            server_mib: proc_kib(server, "status", "VmRSS:") / 1024.0,
            agent_mib: proc_kib(agent, "status", "VmRSS:") / 1024.0,
            containerd_mib: containerd.map_or(0.0, |pid| proc_kib(pid, "status", "VmRSS:"))
                / 1024.0,
            shims: shims.len(),
            shims_rss_mib: total("VmRSS:", "status"),
            shims_pss_mib: total("Pss:", "smaps_rollup"),
        }
    }
}

/// A field in kB from `/proc/<pid>/<file>` (`status`, `smaps_rollup`); 0 if absent.
fn proc_kib(pid: i32, file: &str, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The child of `parent` running the program named `name`.
fn child_running(parent: i32, name: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            ppid == Some(parent) && exe.file_name() == Some(Path::new(name).as_os_str())
        })
}
