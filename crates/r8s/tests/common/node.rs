//! Test nodes: an `r8s server` with its agent runs in a network namespace of its own (a pod
//! bridge, pod addresses and hostPorts that touch nothing outside), entered with
//! `nsenter --net` so the host's mounts and cgroups stay visible to runc. Teardown removes
//! everything the node made, even when the agent could not: containers, shims, mounts, pod
//! network namespaces, cgroups, and the namespace itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The node's address, on `lo` inside its namespace (each namespace has its own).
pub const NODE_IP: &str = "10.200.0.1";

pub struct NodeNet {
    pub netns: String,
    pub node_name: String,
}

/// `program` inside `net`'s network namespace (or as is without one).
pub fn command_in(net: Option<&NodeNet>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match net {
        Some(net) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net=/run/netns/{}", net.netns))
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The project's busybox test images (docker-archive tarballs) into `dir`, where the agent
/// imports them at start.
pub fn test_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-images.py");
    run(&[
        "python3",
        script.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--tag",
        "busybox:1",
    ]);
}

impl NodeNet {
    pub fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let netns = format!("r8s-test-{id}");
        run(&["ip", "netns", "add", &netns]);
        run(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{NODE_IP}/32"),
            "dev",
            "lo",
        ]);
        Self {
            netns,
            node_name: format!("node-{id}"),
        }
    }

    /// Removes what the node left: call after its server process has exited.
    pub fn teardown(self, data_dir: &Path) {
        let containerd_dir = data_dir.join("agent/containerd");
        // Every process in the node's cgroups (containers, pause) and every shim of its
        // containerd, by PID: all started by this test's node.
        let cgroups = self.cgroup_dirs();
        let mut pod_netns_inodes = Vec::new();
        for dir in &cgroups {
            for pid in read_pids(&dir.join("cgroup.procs")) {
                if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/ns/net")) {
                    use std::os::unix::fs::MetadataExt;
                    pod_netns_inodes.push(meta.ino());
                }
            }
        }
        for pid in shims_of(&containerd_dir) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for dir in &cgroups {
            for pid in read_pids(&dir.join("cgroup.procs")) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        // Pod network namespaces that CNI bind-mounted under /run/netns.
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            use std::os::unix::fs::MetadataExt;
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("cni-")
                    && std::fs::metadata(&path).is_ok_and(|m| pod_netns_inodes.contains(&m.ino()))
                {
                    unmount(&path);
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        for mount in mounts_under(data_dir) {
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
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }

    /// The node's cgroup directories (`/r8s/<node>` and below) in every hierarchy.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return found;
        };
        for hierarchy in hierarchies.flatten() {
            let root = hierarchy.path().join("r8s").join(&self.node_name);
            let mut stack = vec![root];
            while let Some(dir) = stack.pop() {
                if !dir.is_dir() {
                    continue;
                }
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    stack.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                }
                found.push(dir);
            }
        }
        found
    }
}

fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// containerd shims serving the containerd under `dir` (their command line names its socket).
fn shims_of(dir: &Path) -> Vec<i32> {
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

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn unmount(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(target) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}
