//! A node for benchmarks: `r8s server` with its agent in a network namespace of its own (its
//! pod bridge, pod addresses and hostPorts touch nothing outside), entered with `nsenter --net`
//! so runc keeps seeing the host's mounts and cgroups. Dropping it stops the server and removes
//! everything the node made, even what its agent could not: containers, shims, mounts, pod
//! network namespaces, cgroups and the namespace. This is the end-to-end tests' teardown
//! (`tests/common/node.rs`), which the binary cannot share.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The node's address, on `lo` inside its namespace.
const NODE_IP: &str = "10.200.0.1";

pub struct NetnsNode {
    pub netns: String,
    pub node_name: String,
    /// `data/` is the server's data dir, `server.log` its stderr; `scratch/` is the caller's.
    root: tempfile::TempDir,
    server: Option<Child>,
    netns_made: bool,
}

impl NetnsNode {
    /// A namespace, the test images in the agent's import directory, and `r8s server` (this
    /// binary) started in the namespace; returns once the server has written its kubeconfig.
    pub fn start(tag: &str) -> anyhow::Result<Self> {
        let id = std::process::id();
        let mut node = Self {
            netns: format!("r8s-bench-{tag}-{id}"),
            node_name: format!("bench-{tag}-{id}"),
            root: tempfile::Builder::new()
                .prefix("r8s-bench-")
                .tempdir()
                .context("cannot make a temporary directory")?,
            server: None,
            netns_made: false,
        };
        run(&["ip", "netns", "add", &node.netns])?;
        node.netns_made = true;
        run(&["ip", "-n", &node.netns, "link", "set", "lo", "up"])?;
        let address = format!("{NODE_IP}/32");
        run(&[
            "ip",
            "-n",
            &node.netns,
            "addr",
            "add",
            &address,
            "dev",
            "lo",
        ])?;
        std::fs::create_dir_all(node.scratch())?;
        test_images(&node.data_dir().join("agent/images"))?;
        node.spawn_server()?;
        Ok(node)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// A directory for the caller's files, removed with the node.
    pub fn scratch(&self) -> PathBuf {
        self.root.path().join("scratch")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    pub fn containerd_dir(&self) -> PathBuf {
        self.data_dir().join("agent/containerd")
    }

    pub fn server_pid(&self) -> i32 {
        self.server.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn server_alive(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.server_pid()));
        stat.is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    }

    /// Moves the calling thread (only it, and the threads it starts later) into the node's
    /// network namespace, where the API server listens.
    pub fn enter(&self) -> anyhow::Result<()> {
        let path = format!("/run/netns/{}", self.netns);
        let file = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
        // SAFETY: a namespace file held open for the call; setns affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("cannot enter {path}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops the server process (SIGSTOP) until the returned guard is dropped: containerd and
    /// the containers keep running, the kubelet and the control plane do nothing meanwhile.
    pub fn freeze(&self) -> Frozen {
        let pid = self.server_pid();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Frozen(pid)
    }

    /// The last `lines` lines of the server's log, for an error report.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn_server(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.root.path().join("server.log"))?;
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(std::env::current_exe()?)
            .args(["server", "--bind-address", "127.0.0.1"])
            .args(["--https-listen-port", "0", "--node-ip", NODE_IP])
            .arg("--node-name")
            .arg(&self.node_name)
            .arg("--data-dir")
            .arg(self.data_dir())
            // The bench stops the server while it measures the runtime alone: the node must
            // not be marked unreachable for that.
            .args(["--node-monitor-grace-period", "10m"])
            // A process group of its own: Ctrl-C reaches the bench, which tears the node down.
            .process_group(0)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start r8s server under nsenter")?;
        let stdout = child.stdout.take().expect("piped");
        self.server = Some(child);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // Keeps reading after the kubeconfig line, so the server never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("admin kubeconfig: ") {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            bail!(
                "r8s server did not write its kubeconfig; its log ends with:\n{}",
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the server has not exited after 20 s.
    fn stop_server(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        let pid = child.id() as i32;
        // SAFETY: signalling our own child by its pid; SIGCONT in case it was left frozen.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Removes what the node left; the server must have exited.
    fn teardown(&self) {
        r8s_kubelet::cleanup::remove_node(&self.data_dir(), &self.node_name);
        if self.netns_made {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns])
                .status();
        }
    }

    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if Path::new("/run/netns").join(&self.netns).exists() {
            left.push(format!("network namespace {}", self.netns));
        }
        left.extend(r8s_kubelet::cleanup::leftovers(
            &self.data_dir(),
            &self.node_name,
        ));
        left
    }

    /// Stops the server and removes everything; returns what could not be removed.
    pub fn shut_down(mut self) -> Vec<String> {
        self.stop_server();
        self.teardown();
        let left = self.leftovers();
        self.netns_made = false;
        left
    }
}

impl Drop for NetnsNode {
    fn drop(&mut self) {
        self.stop_server();
        self.teardown();
    }
}

/// A stopped server; continued when dropped.
pub struct Frozen(i32);

impl Frozen {
    /// Keeps the server stopped until the node is shut down (which continues it only to
    /// terminate it).
    pub fn until_shutdown(self) {
        std::mem::forget(self);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: continuing our own child, stopped by `NetnsNode::freeze`.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The project's busybox test images (docker-archive tarballs, `busybox:1` among the tags) into
/// `dir`, where the agent imports them at start.
fn test_images(dir: &Path) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-images.py");
    anyhow::ensure!(
        script.exists(),
        "{} is missing: run the bench from the r8s source tree it was built in",
        script.display()
    );
    std::fs::create_dir_all(dir)?;
    let (script, dir) = (script.to_string_lossy(), dir.to_string_lossy());
    run(&["python3", &script, "--out", &dir, "--tag", "busybox:1"])
}

pub use r8s_kubelet::cleanup::shims_of;
