//! What the benchmarks share: an `r8s server` started for a run, clients, figures and their
//! table.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::Serialize;

use super::percentile_ms;

#[derive(Serialize)]
pub struct Figure {
    pub backend: String,
    pub op: &'static str,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mib: Option<f64>,
    /// The part of the RSS that is the process's own anonymous memory (heap, stacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_anon_mib: Option<f64>,
}

/// A process's resident memory: all of it, and its own anonymous part. The rest is mapped
/// file pages, mostly the binary's code, which the kernel shares and can drop and read again;
/// kernels that cache files in large folios map a whole folio (up to MiBs) on a first touch.
#[derive(Clone, Copy)]
pub struct Memory {
    pub rss_mib: f64,
    pub anon_mib: f64,
}

impl Figure {
    pub fn latency(
        backend: &str,
        op: &'static str,
        ops_per_s: f64,
        mut samples: Vec<Duration>,
    ) -> Self {
        samples.sort();
        Self {
            backend: backend.to_owned(),
            op,
            ops_per_s,
            p50_ms: percentile_ms(&samples, 50.0),
            p99_ms: percentile_ms(&samples, 99.0),
            rss_mib: None,
            rss_anon_mib: None,
        }
    }

    pub fn memory(backend: &str, op: &'static str, memory: Memory) -> Self {
        Self {
            backend: backend.to_owned(),
            op,
            ops_per_s: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            rss_mib: Some(memory.rss_mib),
            rss_anon_mib: Some(memory.anon_mib),
        }
    }
}

/// An `r8s server` started for the benchmark; stopped when dropped.
pub struct SpawnedServer {
    child: Child,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl SpawnedServer {
    pub fn start(datastore: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([
                "server",
                "--disable-agent",
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(endpoint) = datastore {
            command.args(["--datastore-endpoint", endpoint]);
        }
        let mut child = command.spawn().context("cannot start r8s server")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("admin kubeconfig: "));
        std::thread::spawn(move || lines.for_each(drop));
        if !ready {
            bail!("r8s server exited before it was ready");
        }
        Ok(Self {
            child,
            kubeconfig: dir.path().join("admin.kubeconfig"),
            _dir: dir,
        })
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory(self.child.id())
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mib = |field: &str| -> anyhow::Result<f64> {
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
        Ok(kib / 1024.0)
    };
    Ok(Memory {
        rss_mib: mib("VmRSS:")?,
        anon_mib: mib("RssAnon:")?,
    })
}

pub async fn connect(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

pub async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The figures as a table on stdout.
pub fn print_figures(figures: &[Figure]) {
    println!(
        "{:<9} {:<16} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "backend", "op", "ops/s", "p50 ms", "p99 ms", "RSS MiB", "anon MiB"
    );
    for f in figures {
        match f.rss_mib {
            Some(rss) => println!(
                "{:<9} {:<16} {:>10} {:>10} {:>10} {:>10.1} {:>10.1}",
                f.backend,
                f.op,
                "",
                "",
                "",
                rss,
                f.rss_anon_mib.unwrap_or(f64::NAN)
            ),
            None => println!(
                "{:<9} {:<16} {:>10.0} {:>10.3} {:>10.3}",
                f.backend, f.op, f.ops_per_s, f.p50_ms, f.p99_ms
            ),
        }
    }
}
