//! A node for benchmarks: `r8s server --disable-agent` and an `r8s agent` joined to it with a
//! bootstrap token (two processes, so each one's memory is measured alone), in a network
//! namespace of their own (the pod bridge, pod addresses and hostPorts touch nothing outside),
//! entered with `nsenter --net` so runc keeps seeing the host's mounts and cgroups. Dropping it stops the server and removes
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
    /// Where the API server listens, as it printed it.
    server_address: String,
    agent: Option<Child>,
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
            server_address: String::new(),
            agent: None,
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
        node.spawn_agent()?;
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

    pub fn agent_pid(&self) -> i32 {
        self.agent.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Whether both the server and the agent still run.
    pub fn server_alive(&self) -> bool {
        [self.server_pid(), self.agent_pid()]
            .into_iter()
            .all(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                stat.is_ok_and(|s| {
                    s.rsplit_once(") ")
                        .is_some_and(|(_, rest)| !rest.starts_with('Z'))
                })
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

    /// Stops the server and agent processes (SIGSTOP) until the returned guard is dropped:
    /// containerd and the containers keep running, the kubelet and the control plane do
    /// nothing meanwhile.
    pub fn freeze(&self) -> Frozen {
        let pids = vec![self.agent_pid(), self.server_pid()];
        for &pid in &pids {
            // SAFETY: signalling our own children by their pids.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        Frozen(pids)
    }

    /// The last `lines` lines of the server's and the agent's logs, for an error report.
    pub fn log_tail(&self, lines: usize) -> String {
        ["server.log", "agent.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.root.path().join(name)).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                format!(
                    "{name}:\n{}",
                    all[all.len().saturating_sub(lines)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A command run in the node's network namespace.
    fn in_netns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        command
    }

    /// Joins an agent to the server with a token, as `r8s token create --print-join-command`
    /// says, with the same data dir (the agent keeps to its `agent/` part).
    fn spawn_agent(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe()?;
        let out = self
            .in_netns(&exe)
            .args(["token", "create", "--print-join-command"])
            .arg("--server")
            .arg(format!("https://{}", self.server_address))
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .context("cannot run r8s token create")?;
        if !out.status.success() {
            bail!(
                "r8s token create failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let join = String::from_utf8_lossy(&out.stdout).into_owned();
        let words: Vec<&str> = join.split_whitespace().skip(2).collect();
        let log = std::fs::File::create(self.root.path().join("agent.log"))?;
        let child = self
            .in_netns(&exe)
            .arg("agent")
            .args(&words)
            .args(["--node-ip", NODE_IP, "--dns-forward", "none"])
            .arg("--node-name")
            .arg(&self.node_name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .process_group(0)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start r8s agent under nsenter")?;
        self.agent = Some(child);
        Ok(())
    }

    fn spawn_server(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.root.path().join("server.log"))?;
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(std::env::current_exe()?)
            .args(["server", "--disable-agent", "--bind-address", NODE_IP])
            .args(["--https-listen-port", "0"])
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
            let mut address = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.strip_prefix("r8s API server listening on ") {
                    address = Some(at.to_owned());
                }
                if line.starts_with("admin kubeconfig: ") {
                    let _ = ready_tx.send(address.take().unwrap_or_default());
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => {
                self.server_address = address;
                Ok(())
            }
            Err(_) => bail!(
                "r8s server did not write its kubeconfig; its log ends with:\n{}",
                self.log_tail(20)
            ),
        }
    }

    /// Stops the agent, then the server: SIGTERM, then SIGKILL if one has not exited after 20 s.
    fn stop_server(&mut self) {
        for child in [self.agent.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            stop(child);
        }
    }
}

fn stop(mut child: Child) {
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

impl NetnsNode {
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

/// A stopped server and agent; continued when dropped.
pub struct Frozen(Vec<i32>);

impl Frozen {
    /// Keeps the server stopped until the node is shut down (which continues it only to
    /// terminate it).
    pub fn until_shutdown(self) {
        std::mem::forget(self);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: continuing our own children, stopped by `NetnsNode::freeze`.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
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
