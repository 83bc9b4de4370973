//! Runs a real etcd server (Debian's `etcd-server` package) on loopback, for the conformance
//! suite and for `r8s bench store`, which compares the embedded store against it.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, StoreError};

/// An etcd process on 127.0.0.1; stopped (and reaped) when dropped.
pub struct EtcdServer {
    child: Child,
    endpoint: String,
}

impl EtcdServer {
    /// Starts `etcd` (from `$R8S_ETCD_BIN`, else `PATH`) with its data in `dir` and waits until
    /// it answers.
    pub async fn start(dir: &Path) -> Result<Self> {
        // A port found free may be taken before etcd binds it (other tests run alongside):
        // etcd then exits at start, and a second pair of ports is tried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(dir).await {
                Err(StoreError::Etcd { message, .. })
                    if attempt < 3 && message.starts_with("etcd exited at start") =>
                {
                    let _ = std::fs::remove_dir_all(dir.join("etcd"));
                }
                result => return result,
            }
        }
    }

    async fn start_once(dir: &Path) -> Result<Self> {
        let binary = std::env::var_os("R8S_ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("etcd"));
        let io = |context: String| move |cause| StoreError::Io { context, cause };
        let [client_port, peer_port] =
            free_ports().map_err(io("cannot find a free loopback port".into()))?;
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.join("etcd.log"))
            .map_err(io(format!("cannot create {}/etcd.log", dir.display())))?;
        let mut command = Command::new(&binary);
        command
            .arg("--name=r8s-test")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=r8s-test={peer}"))
            // Room for the 1.5 MiB objects the API allows, plus the request around them.
            .arg("--max-request-bytes=4194304")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl in the forked child before exec only sets its parent-death signal, so
        // a test killed with SIGKILL does not leave etcd behind.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(io(format!(
            "cannot start {} (install Debian's etcd-server package)",
            binary.display()
        )))?;
        let mut server = Self { child, endpoint };
        server.wait_ready(dir).await?;
        Ok(server)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The process id, for measuring its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self, dir: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let failed = |message: String| StoreError::Etcd {
            endpoints: self.endpoint.clone(),
            message: format!("{message}; see {}/etcd.log", dir.display()),
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(failed(format!("etcd exited at start ({status})")));
            }
            if let Ok(mut client) = etcd_client::Client::connect([&self.endpoint], None).await
                && client.status().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed("etcd did not answer within 30s".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two distinct free ports: both listeners are held until both ports are known.
fn free_ports() -> std::io::Result<[u16; 2]> {
    let first = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let second = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok([first.local_addr()?.port(), second.local_addr()?.port()])
}
