//! Test nodes: an `r8s server` with its agent runs in a network namespace of its own (a pod
//! bridge, pod addresses and hostPorts that touch nothing outside), entered with
//! `nsenter --net` so the host's mounts and cgroups stay visible to runc. Teardown removes
//! everything the node made, even when the agent could not: containers, shims, mounts, pod
//! network namespaces, cgroups, and the namespace itself.

use std::path::Path;
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
        r8s_kubelet::cleanup::remove_node(data_dir, &self.node_name);
        let left = r8s_kubelet::cleanup::leftovers(data_dir, &self.node_name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        if !left.is_empty() {
            // A second panic while a failed test unwinds would abort the whole test binary.
            if std::thread::panicking() {
                eprintln!("node {} left {left:?}", self.node_name);
            } else {
                panic!("node {} left {left:?}", self.node_name);
            }
        }
    }
}
