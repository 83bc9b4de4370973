//! `r8s bench store`: durable create throughput and latency with 1 and 64 writers, watch
//! delivery latency under the 64-writer load, and the embedded store's size under churn —
//! for the embedded store and for a real etcd started here on loopback, in one run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use r8s_store::etcd_server::EtcdServer;
use r8s_store::{Bytes, EmbeddedOptions, EmbeddedStore, EtcdStore, Store};
use serde::Serialize;

use super::percentile_ms;

#[derive(Args)]
pub struct StoreBenchArgs {
    /// Print one JSON object with every figure as the last line.
    #[arg(long)]
    json: bool,
    /// Creates in the single-writer run.
    #[arg(long, default_value_t = 2000)]
    writes_1: usize,
    /// Creates in the 64-writer and watch runs.
    #[arg(long, default_value_t = 20_000)]
    writes: usize,
    /// Bytes per value (Kubernetes objects are typically 1–4 KiB).
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    /// Updates in the churn run over --churn-keys keys (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    churn_updates: usize,
    #[arg(long, default_value_t = 1000)]
    churn_keys: usize,
    /// Directory for the databases (on the disk being measured); default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const WRITERS: usize = 64;

#[derive(Serialize)]
struct Figure {
    backend: &'static str,
    op: &'static str,
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Churn only: database file plus WAL at the end and at the largest seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    db_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_db_mib: Option<f64>,
}

pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_owned()
        }
    };
    let value = Bytes::from(vec![b'x'; args.value_bytes]);
    let mut figures = Vec::new();

    let embedded_dir = dir.join("embedded");
    let embedded = EmbeddedStore::open(&embedded_dir, EmbeddedOptions::default())
        .context("cannot open the embedded store")?;
    let embedded: Arc<dyn Store> = Arc::new(embedded);
    figures.extend(measure("embedded", &embedded, &args, &value).await?);
    drop(embedded);

    let etcd_dir = dir.join("etcd");
    std::fs::create_dir_all(&etcd_dir)?;
    let server = EtcdServer::start(&etcd_dir)
        .await
        .context("cannot start the reference etcd")?;
    let etcd: Arc<dyn Store> = Arc::new(EtcdStore::connect(&[server.endpoint().to_owned()]).await?);
    figures.extend(measure("etcd", &etcd, &args, &value).await?);
    drop(etcd);
    drop(server);

    if args.churn_updates > 0 {
        figures.push(churn(&dir.join("churn"), &args, &value).await?);
    }

    println!(
        "{:<9} {:<8} {:>12} {:>10} {:>10}",
        "backend", "op", "ops/s", "p50 ms", "p99 ms"
    );
    for f in &figures {
        print!(
            "{:<9} {:<8} {:>12.0} {:>10.3} {:>10.3}",
            f.backend, f.op, f.ops_per_s, f.p50_ms, f.p99_ms
        );
        if let (Some(end), Some(max)) = (f.db_mib, f.max_db_mib) {
            print!("   database {end:.1} MiB at the end, {max:.1} MiB at most");
        }
        println!();
    }
    let rate = |backend, op| {
        figures
            .iter()
            .find(|f| f.backend == backend && f.op == op)
            .map_or(0.0, |f| f.ops_per_s)
    };
    println!(
        "embedded/etcd durable writes: {:.2}x with {WRITERS} writers, {:.2}x with 1",
        rate("embedded", "write") / rate("etcd", "write"),
        rate("embedded", "write_1") / rate("etcd", "write_1"),
    );
    println!("watch latency is measured from a write's acknowledgement to the watcher seeing it");
    if args.json {
        println!("{}", serde_json::json!({ "results": figures }));
    }
    Ok(())
}

async fn measure(
    backend: &'static str,
    store: &Arc<dyn Store>,
    args: &StoreBenchArgs,
    value: &Bytes,
) -> anyhow::Result<Vec<Figure>> {
    eprintln!(
        "bench store: {backend}: {} writes with 1 writer",
        args.writes_1
    );
    let one = writes(store, "/bench/write_1", 1, args.writes_1, value).await?;
    eprintln!(
        "bench store: {backend}: {} writes with {WRITERS} writers",
        args.writes
    );
    let many = writes(store, "/bench/write", WRITERS, args.writes, value).await?;

    eprintln!("bench store: {backend}: watch under {WRITERS} writers");
    let mut watch = store.watch("/bench/watch", 0).await?;
    let expected = args.writes;
    let watcher = tokio::spawn(async move {
        let mut seen = HashMap::with_capacity(expected);
        while seen.len() < expected {
            match watch.next().await {
                Some(Ok(event)) => {
                    seen.insert(event.kv.key, Instant::now());
                }
                Some(Err(e)) => return Err(anyhow::anyhow!("watch failed: {e}")),
                None => return Err(anyhow::anyhow!("watch ended early")),
            }
        }
        Ok(seen)
    });
    let watched = writes(store, "/bench/watch", WRITERS, args.writes, value).await?;
    let seen = tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .context("the watcher did not see every write within 120s")???;
    // An event that reaches the watcher before the writer has its acknowledgement counts as
    // delivered at once.
    let mut early = 0;
    let mut delivery: Vec<Duration> = watched
        .acks
        .iter()
        .map(|(key, acked)| {
            let seen = seen.get(key).copied().unwrap_or(*acked);
            early += usize::from(seen < *acked);
            seen.saturating_duration_since(*acked)
        })
        .collect();
    delivery.sort();
    eprintln!(
        "bench store: {backend}: {:.0}% of watch events arrived before their write's acknowledgement",
        100.0 * early as f64 / delivery.len().max(1) as f64
    );

    Ok(vec![
        one.figure(backend, "write_1"),
        many.figure(backend, "write"),
        Figure {
            backend,
            op: "watch",
            ops_per_s: watched.ops_per_s(),
            p50_ms: percentile_ms(&delivery, 50.0),
            p99_ms: percentile_ms(&delivery, 99.0),
            db_mib: None,
            max_db_mib: None,
        },
    ])
}

struct WriteRun {
    elapsed: Duration,
    /// Sorted write latencies.
    latencies: Vec<Duration>,
    /// When each key's write was acknowledged.
    acks: Vec<(String, Instant)>,
}

impl WriteRun {
    fn ops_per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn figure(&self, backend: &'static str, op: &'static str) -> Figure {
        Figure {
            backend,
            op,
            ops_per_s: self.ops_per_s(),
            p50_ms: percentile_ms(&self.latencies, 50.0),
            p99_ms: percentile_ms(&self.latencies, 99.0),
            db_mib: None,
            max_db_mib: None,
        }
    }
}

/// `total` creates under `prefix` from `writers` concurrent writers, each waiting for its
/// acknowledgement before the next.
async fn writes(
    store: &Arc<dyn Store>,
    prefix: &str,
    writers: usize,
    total: usize,
    value: &Bytes,
) -> anyhow::Result<WriteRun> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let value = value.clone();
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut done = Vec::new();
                for i in (w..total).step_by(writers) {
                    let key = format!("{prefix}/{i:08}");
                    let begun = Instant::now();
                    store.create(&key, value.clone(), None).await?;
                    let acked = Instant::now();
                    done.push((key, begun, acked));
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    let mut acks = Vec::with_capacity(total);
    for task in tasks {
        for (key, begun, acked) in task.await?? {
            latencies.push(acked - begun);
            acks.push((key, acked));
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Ok(WriteRun {
        elapsed,
        latencies,
        acks,
    })
}

/// Updates `churn_keys` keys `churn_updates` times in all with the default compaction policy,
/// watching the database's size on disk.
async fn churn(dir: &Path, args: &StoreBenchArgs, value: &Bytes) -> anyhow::Result<Figure> {
    eprintln!(
        "bench store: embedded: churn, {} updates to {} keys",
        args.churn_updates, args.churn_keys
    );
    let store = Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default())?);
    let db_path = store.path().to_owned();
    let size = move || {
        let wal = db_path.with_extension("db-wal");
        [&db_path, &wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    let max_size = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (max_size, done, size) = (max_size.clone(), done.clone(), size.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                max_size.fetch_max(size(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let keys = args.churn_keys.max(1);
    let per_key = args.churn_updates.div_ceil(keys);
    let writers = WRITERS.min(keys);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mine: Vec<usize> = (w..keys).step_by(writers).collect();
                let mut revs = Vec::with_capacity(mine.len());
                for k in &mine {
                    revs.push(
                        store
                            .create(&format!("/churn/{k}"), value.clone(), None)
                            .await?,
                    );
                }
                for _ in 1..per_key {
                    for (k, rev) in mine.iter().zip(revs.iter_mut()) {
                        let begun = Instant::now();
                        *rev = store
                            .update(&format!("/churn/{k}"), value.clone(), *rev, None)
                            .await?;
                        latencies.push(begun.elapsed());
                    }
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    latencies.sort();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let end = size();
    Ok(Figure {
        backend: "embedded",
        op: "churn",
        ops_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
        db_mib: Some(mib(end)),
        max_db_mib: Some(mib(max_size.load(Ordering::Relaxed).max(end))),
    })
}
