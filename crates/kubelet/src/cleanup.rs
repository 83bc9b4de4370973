//! Removing what a node left on its machine once its agent has stopped: its containers and
//! their shims, pod network namespaces, mounts under its data dir and its cgroups
//! (`/r8s/<node>` in every hierarchy). Tests and benchmarks that run nodes on one machine use
//! it, so every node they start goes away whole even when its agent could not clean up.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Removes the leftovers of the node `node_name` whose data dir is `data_dir`. Processes are
/// found by PID through the node's cgroups and its containerd's socket path, never by name.
pub fn remove_node(data_dir: &Path, node_name: &str) {
    let cgroups = cgroup_dirs(node_name);
    // Every process in the node's cgroups (containers, pause) and every shim of its
    // containerd, by PID: all started by this node.
    let mut pod_netns = Vec::new();
    for dir in &cgroups {
        for pid in read_pids(&dir.join("cgroup.procs")) {
            if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/ns/net")) {
                pod_netns.push(meta.ino());
            }
        }
    }
    let mut shim_files = Vec::new();
    for pid in shims_of(&data_dir.join("agent/containerd")) {
        shim_files.extend(files_of_shim(pid));
        // SAFETY: a shim of this node's containerd, found by its socket path.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for dir in &cgroups {
        for pid in read_pids(&dir.join("cgroup.procs")) {
            // SAFETY: a process in this node's cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    // Pod network namespaces that CNI bind-mounted under /run/netns.
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with("cni-")
            && std::fs::metadata(&path).is_ok_and(|m| pod_netns.contains(&m.ino()))
        {
            unmount(&path);
            let _ = std::fs::remove_file(&path);
        }
    }
    for file in shim_files {
        let _ = std::fs::remove_file(file);
    }
    for mount in crate::volumes::mounts_under(data_dir) {
        unmount(&mount);
    }
    // Deepest first: a cgroup directory goes only once its children have.
    let mut dirs = cgroups;
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        let _ = std::fs::remove_dir(&dir);
    }
    // The shared parent goes with the last node that used it.
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(hierarchy.path().join("r8s"));
    }
}

/// What of the node is still on the machine (shims, mounts, cgroups), described for a
/// reader; empty once [`remove_node`] did its work.
pub fn leftovers(data_dir: &Path, node_name: &str) -> Vec<String> {
    let mut left = Vec::new();
    let shims = shims_of(&data_dir.join("agent/containerd"));
    if !shims.is_empty() {
        left.push(format!("containerd shims {shims:?}"));
    }
    left.extend(
        crate::volumes::mounts_under(data_dir)
            .iter()
            .map(|m| format!("mount {}", m.display())),
    );
    left.extend(
        cgroup_dirs(node_name)
            .iter()
            .map(|d| format!("cgroup {}", d.display())),
    );
    left
}

/// The node's cgroup directories (`/r8s/<node>` and below) in every hierarchy.
fn cgroup_dirs(node_name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let mut stack = vec![hierarchy.path().join("r8s").join(node_name)];
        while let Some(dir) = stack.pop() {
            if !dir.is_dir() {
                continue;
            }
            let entries = std::fs::read_dir(&dir).into_iter().flatten().flatten();
            stack.extend(entries.map(|e| e.path()).filter(|p| p.is_dir()));
            found.push(dir);
        }
    }
    found
}

fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// containerd shims serving the containerd under `dir` (their command line names its socket).
pub fn shims_of(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("containerd-shim") && cmdline.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// What a shim killed without its sandbox being stopped leaves outside the data dir: its
/// socket under `/run/containerd/s`, and CNI's cached results for its sandbox (the shim's id).
fn files_of_shim(pid: i32) -> Vec<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let id = args
        .iter()
        .position(|a| a == "-id")
        .and_then(|i| args.get(i + 1));
    let mut files = Vec::new();
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        let cached = std::fs::read_dir("/var/lib/cni/results")
            .into_iter()
            .flatten()
            .flatten();
        files.extend(
            cached
                .filter(|e| e.file_name().to_string_lossy().contains(&format!("-{id}-")))
                .map(|e| e.path()),
        );
    }
    // The shim's listening socket: a path in its network namespace's table of Unix sockets
    // whose inode is one of its descriptors.
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [.., inode, path] = fields[..]
            && fields.len() == 8
            && path.starts_with("/run/containerd/s/")
            && inodes.iter().any(|i| i == inode)
        {
            files.push(PathBuf::from(path));
        }
    }
    files
}

fn unmount(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(target) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: a NUL-terminated path; a lazy unmount of a mount this node made.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}
