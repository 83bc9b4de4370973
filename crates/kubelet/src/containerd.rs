//! The containerd the agent starts and supervises: a config of its own under
//! `<data-dir>/agent/containerd/` (socket, root and state dirs, so several agents share a
//! machine), restarted whenever it exits. Containers outlive it: their shims keep them running,
//! and a restarted containerd reconnects to them.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use anyhow::Context;

/// What the agent's containerd is configured with.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// `<data-dir>/agent/containerd`: config, socket, root and state live here.
    pub dir: PathBuf,
    /// Where the CNI plugins are (Debian's `containernetworking-plugins`: `/usr/lib/cni`).
    pub cni_bin_dir: PathBuf,
    /// Where the agent writes its CNI conflist.
    pub cni_conf_dir: PathBuf,
    /// The sandbox ("pause") image, imported by the agent before any pod starts.
    pub sandbox_image: String,
    /// `REGISTRY=URL` pairs: pulls from REGISTRY go to URL first.
    pub registry_mirrors: Vec<(String, String)>,
}

impl ContainerdConfig {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn hosts_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }

    /// containerd 1.6's config (version 2) for a CRI runtime with runc, cgroupfs and overlayfs.
    pub fn render(&self) -> String {
        let dir = self.dir.display();
        let mut text = format!(
            r#"# Written by r8s agent; rewritten at every start.
version = 2
root = "{dir}/root"
state = "{dir}/state"
# Plugins a node never uses cost memory and start time.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  # A node in a test network namespace may not lower OOM scores below its own.
  restrict_oom_score_adj = true
  # The kubelet proxies exec, attach and port-forward to this loopback-only server.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{hosts}"
"#,
            sandbox = self.sandbox_image,
            cni_bin = self.cni_bin_dir.display(),
            cni_conf = self.cni_conf_dir.display(),
            hosts = self.hosts_dir().display(),
        );
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    }

    /// One `hosts.toml` per mirrored registry, as containerd's `config_path` expects.
    fn write_hosts(&self) -> anyhow::Result<()> {
        let hosts = self.hosts_dir();
        if hosts.exists() {
            std::fs::remove_dir_all(&hosts)
                .with_context(|| format!("cannot clear {}", hosts.display()))?;
        }
        std::fs::create_dir_all(&hosts)?;
        for (registry, url) in &self.registry_mirrors {
            let dir = hosts.join(registry);
            std::fs::create_dir_all(&dir)?;
            let mut text = String::new();
            let _ = writeln!(text, "server = \"{}\"\n", upstream_registry_url(registry));
            let _ = writeln!(text, "[host.\"{url}\"]");
            let _ = writeln!(text, "  capabilities = [\"pull\", \"resolve\"]");
            if url.starts_with("http://") {
                let _ = writeln!(text, "  skip_verify = true");
            }
            std::fs::write(dir.join("hosts.toml"), text)?;
        }
        Ok(())
    }
}

/// Docker Hub's registry answers at another host than its name.
fn upstream_registry_url(registry: &str) -> String {
    match registry {
        "docker.io" => "https://registry-1.docker.io".into(),
        other => format!("https://{other}"),
    }
}

/// Parses `--registry-mirror REGISTRY=URL`.
pub fn parse_registry_mirror(text: &str) -> Result<(String, String), String> {
    let (registry, url) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not REGISTRY=URL"))?;
    if registry.is_empty() || registry.contains('/') {
        return Err(format!(
            "{registry:?} is not a registry host (such as docker.io)"
        ));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    }
    Ok((registry.to_string(), url.trim_end_matches('/').to_string()))
}

/// A running, supervised containerd. Dropping it leaves containerd running; `stop` ends it.
pub struct Containerd {
    socket: PathBuf,
    pid: Arc<AtomicI32>,
    stopping: Arc<AtomicBool>,
}

impl Containerd {
    /// Writes the config, starts containerd and restarts it whenever it exits. Returns once the
    /// process is started; callers wait for its socket with [`crate::cri::Cri::connect_when_up`].
    pub fn start(config: &ContainerdConfig, binary: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create {}", config.dir.display()))?;
        std::fs::create_dir_all(&config.cni_conf_dir)?;
        std::fs::write(config.config_file(), config.render())?;
        config.write_hosts()?;
        let log_path = config.dir.join("containerd.log");
        let pid = Arc::new(AtomicI32::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(config.config_file())
            .stdin(Stdio::null());
        // containerd dies with the agent (its shims, and so the containers, do not): a
        // restarted agent starts a new one, which reconnects to them.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread_pid = pid.clone();
        let thread_stopping = stopping.clone();
        // A thread of its own: PR_SET_PDEATHSIG follows the spawning thread, which must live
        // as long as the agent.
        std::thread::Builder::new()
            .name("containerd".into())
            .spawn(move || {
                supervise(
                    command,
                    &log_path,
                    &thread_pid,
                    &thread_stopping,
                    started_tx,
                )
            })
            .context("cannot start the containerd supervisor thread")?;
        started_rx
            .recv()
            .context("the containerd supervisor stopped")?
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            socket: config.socket(),
            pid,
            stopping,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Ends containerd (SIGTERM) and its supervision; containers keep running in their shims.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let pid = self.pid();
        if pid > 0 {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

fn supervise(
    mut command: Command,
    log_path: &Path,
    pid: &AtomicI32,
    stopping: &AtomicBool,
    started: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    let mut started = Some(started);
    let mut backoff = Duration::from_millis(100);
    while !stopping.load(Ordering::SeqCst) {
        let spawned = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .and_then(|log| {
                let err = log.try_clone()?;
                command.stdout(log).stderr(err).spawn()
            });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if let Some(started) = started.take() {
                    let _ = started.send(Err(e));
                    return;
                }
                tracing::error!("cannot restart containerd: {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        pid.store(child.id() as i32, Ordering::SeqCst);
        if let Some(started) = started.take() {
            let _ = started.send(Ok(()));
        }
        let began = std::time::Instant::now();
        let status = child.wait();
        pid.store(0, Ordering::SeqCst);
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        tracing::warn!(
            "containerd exited ({status:?}); restarting it (log: {})",
            log_path.display()
        );
        // A containerd that ran a while gets restarted at once; one that keeps failing, slower.
        if began.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(100);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerdConfig {
        ContainerdConfig {
            dir: "/data/agent/containerd".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
            cni_conf_dir: "/data/agent/cni/net.d".into(),
            sandbox_image: "r8s.local/pause:1".into(),
            registry_mirrors: vec![("docker.io".into(), "http://127.0.0.1:5000".into())],
        }
    }

    #[test]
    fn config_keeps_every_path_under_the_data_dir() {
        let text = config().render();
        assert!(text.contains("root = \"/data/agent/containerd/root\""));
        assert!(text.contains("address = \"/data/agent/containerd/containerd.sock\""));
        assert!(text.contains("sandbox_image = \"r8s.local/pause:1\""));
        assert!(text.contains("conf_dir = \"/data/agent/cni/net.d\""));
        assert!(text.contains("config_path = \"/data/agent/containerd/certs.d\""));
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains("SystemdCgroup = false"));
    }

    #[test]
    fn mirrors_parse_and_are_checked() {
        assert_eq!(
            parse_registry_mirror("docker.io=http://127.0.0.1:5000/").unwrap(),
            ("docker.io".into(), "http://127.0.0.1:5000".into())
        );
        assert!(parse_registry_mirror("docker.io").is_err());
        assert!(parse_registry_mirror("docker.io=127.0.0.1:5000").is_err());
        assert!(parse_registry_mirror("a/b=http://x").is_err());
    }

    #[test]
    fn hosts_files_name_the_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        config.dir = dir.path().into();
        config.write_hosts().unwrap();
        let text =
            std::fs::read_to_string(dir.path().join("certs.d/docker.io/hosts.toml")).unwrap();
        assert!(text.contains("server = \"https://registry-1.docker.io\""));
        assert!(text.contains("[host.\"http://127.0.0.1:5000\"]"));
    }
}
