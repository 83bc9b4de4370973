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
    /// The node's address: [`NODE_IP`] on `lo`, or its own on a [`Switch`].
    pub ip: String,
    /// Whether the node is on a switch (then other nodes reach its address).
    pub switched: bool,
}

/// A bridge in a network namespace of its own that nodes' veths plug into: a test network
/// between node namespaces with no way out of the machine.
pub struct Switch {
    pub netns: String,
}

fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("{}-{n}", std::process::id())
}

impl Switch {
    pub fn create() -> Self {
        let netns = format!("r8s-test-{}-sw", unique_id());
        run(&["ip", "netns", "add", &netns]);
        run(&["ip", "-n", &netns, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &netns, "link", "set", "br0", "up"]);
        Self { netns }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        // The veths' switch ends go with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
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
            // A long-running helper (a registry) must not outlive a test that was killed.
            // SAFETY: prctl in the forked child before exec only sets its parent-death signal.
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
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
    /// A node on a switch at `ip` (a /24 of the switch's network).
    pub fn on_switch(switch: &Switch, ip: &str) -> Self {
        let id = unique_id();
        let netns = format!("r8s-test-{id}");
        let (inside, outside) = (format!("v{id}"), format!("p{id}"));
        run(&["ip", "netns", "add", &netns]);
        run(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            &netns,
            "link",
            "add",
            &inside,
            "type",
            "veth",
            "peer",
            "name",
            &outside,
            "netns",
            &switch.netns,
        ]);
        run(&[
            "ip",
            "-n",
            &switch.netns,
            "link",
            "set",
            &outside,
            "master",
            "br0",
            "up",
        ]);
        run(&[
            "ip",
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &inside,
        ]);
        run(&["ip", "-n", &netns, "link", "set", &inside, "up"]);
        Self {
            netns,
            node_name: format!("node-{id}"),
            ip: ip.to_owned(),
            switched: true,
        }
    }

    pub fn create() -> Self {
        let id = unique_id();
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
            ip: NODE_IP.to_owned(),
            switched: false,
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

/// An `r8s agent` joined to a server from a network namespace of its own on a switch; stopped
/// and cleaned up on drop.
pub struct JoinedAgent {
    child: std::process::Child,
    pub data_dir: tempfile::TempDir,
    net: Option<NodeNet>,
}

impl JoinedAgent {
    /// `r8s agent` on `switch` at `ip` with `join` (the flags after `r8s agent`).
    pub fn command(net: &NodeNet, data_dir: &Path, join: &[&str]) -> Command {
        let mut command = command_in(Some(net), super::R8S);
        command
            .arg("agent")
            .args(join)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--node-name", &net.node_name, "--node-ip", &net.ip])
            .args(["--dns-forward", "none"]);
        command
    }

    pub fn start(switch: &Switch, ip: &str, join: &[&str]) -> Self {
        let net = NodeNet::on_switch(switch, ip);
        let data_dir = tempfile::tempdir().unwrap();
        test_images(&data_dir.path().join("agent/images"));
        let child = Self::command(&net, data_dir.path(), join)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start r8s agent");
        Self {
            child,
            data_dir,
            net: Some(net),
        }
    }

    pub fn node_name(&self) -> &str {
        &self.net.as_ref().unwrap().node_name
    }
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        if let Some(net) = self.net.take() {
            net.teardown(self.data_dir.path());
        }
    }
}
