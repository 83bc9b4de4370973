//! `r8s bench api`: the API server under load — creates, gets, lists of 10k objects (from the
//! store and from the watch cache), watch fan-out to 1,000 watchers, and the server's memory
//! idle and holding 10k and 100k ConfigMaps — on the embedded store and on etcd. With
//! `--kubeconfig` it drives any Kubernetes API server the same way, for a side-by-side figure.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use r8s_store::etcd_server::EtcdServer;

use super::harness::{Figure, SpawnedServer, connect, ensure_namespace, print_figures};

#[derive(Args)]
pub struct ApiBenchArgs {
    /// Print one JSON object with every figure as the last line.
    #[arg(long)]
    json: bool,
    /// Drive this API server instead of starting r8s servers (memory is then not measured).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Concurrent clients for creates and gets.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Watchers in the fan-out run.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Objects for the list runs.
    #[arg(long, default_value_t = 10_000)]
    list_objects: usize,
    /// Objects for the large memory figure (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    large_objects: usize,
}

pub async fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    let mut figures = Vec::new();
    match &args.kubeconfig {
        Some(kubeconfig) => {
            let client = connect(kubeconfig).await?;
            figures.extend(measure("target", &client, &args, None).await?);
        }
        None => {
            let server = SpawnedServer::start(None)?;
            let client = connect(&server.kubeconfig).await?;
            figures.extend(measure("embedded", &client, &args, Some(&server)).await?);
            drop(server);
            let etcd_dir = tempfile::tempdir()?;
            let etcd = EtcdServer::start(etcd_dir.path()).await?;
            let endpoint = etcd.endpoint().replace("http://", "etcd://");
            let server = SpawnedServer::start(Some(&endpoint))?;
            let client = connect(&server.kubeconfig).await?;
            figures.extend(measure("etcd", &client, &args, Some(&server)).await?);
        }
    }
    print_figures(&figures);
    println!("watch_fanout latency is from a create's acknowledgement to each watcher seeing it");
    if args.json {
        println!("{}", serde_json::json!({ "results": figures }));
    }
    Ok(())
}

fn config_map(name: String, bytes: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("payload".to_owned(), "x".repeat(bytes))])),
        ..Default::default()
    }
}

/// Creates `count` ConfigMaps named `<prefix>-<i>` from `concurrency` clients, optionally
/// paced to `rate` per second in all; returns the rate reached and each latency.
async fn create_many(
    api: &Api<ConfigMap>,
    prefix: &str,
    count: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let api = api.clone();
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (w..count).step_by(concurrency) {
                    if let Some(rate) = rate {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let begun = Instant::now();
                    api.create(
                        &PostParams::default(),
                        &config_map(format!("{prefix}-{i}"), 1024),
                    )
                    .await?;
                    latencies.push(begun.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((count as f64 / start.elapsed().as_secs_f64(), latencies))
}

/// How long a new server is left alone before its idle memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(10);

async fn measure(
    backend: &str,
    client: &Client,
    args: &ApiBenchArgs,
    server: Option<&SpawnedServer>,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let ns = "r8s-bench";
    ensure_namespace(client, ns).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    if let Some(server) = server {
        // Idle once its controllers and scheduler have started and synced, not mid-start.
        tokio::time::sleep(IDLE_SETTLE).await;
        figures.push(Figure::memory(backend, "rss_idle", server.memory()?));
    }

    eprintln!("bench api: {backend}: creates");
    let (rate, latencies) = create_many(&api, "create", 2000, args.concurrency, None).await?;
    figures.push(Figure::latency(backend, "create", rate, latencies));

    eprintln!("bench api: {backend}: creates paced at 1000/s");
    let (rate, latencies) =
        create_many(&api, "paced", 3000, args.concurrency, Some(1000.0)).await?;
    figures.push(Figure::latency(
        backend,
        "create_1000_per_s",
        rate,
        latencies,
    ));

    eprintln!("bench api: {backend}: gets");
    let start = Instant::now();
    let gets = 5000;
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let api = api.clone();
            let concurrency = args.concurrency;
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (w..gets).step_by(concurrency) {
                    let begun = Instant::now();
                    api.get(&format!("create-{}", i % 2000)).await?;
                    latencies.push(begun.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    figures.push(Figure::latency(
        backend,
        "get",
        gets as f64 / start.elapsed().as_secs_f64(),
        latencies,
    ));

    let have = 5000;
    if args.list_objects > have {
        eprintln!(
            "bench api: {backend}: filling to {} objects",
            args.list_objects
        );
        create_many(
            &api,
            "fill",
            args.list_objects - have,
            args.concurrency,
            None,
        )
        .await?;
    }
    for (op, params) in [
        ("list_10k", ListParams::default()),
        ("list_10k_cache", ListParams::default().match_any()),
    ] {
        eprintln!("bench api: {backend}: {op}");
        let mut latencies = Vec::new();
        let start = Instant::now();
        for _ in 0..10 {
            let begun = Instant::now();
            let list = api.list(&params).await?;
            latencies.push(begun.elapsed());
            if list.items.len() < args.list_objects {
                bail!(
                    "{op} returned {} objects, expected {}",
                    list.items.len(),
                    args.list_objects
                );
            }
        }
        figures.push(Figure::latency(
            backend,
            op,
            10.0 / start.elapsed().as_secs_f64(),
            latencies,
        ));
    }
    if let Some(server) = server {
        figures.push(Figure::memory(backend, "rss_10k", server.memory()?));
    }

    eprintln!(
        "bench api: {backend}: watch fan-out to {} watchers",
        args.watchers
    );
    figures.push(fan_out(client, backend, args.watchers).await?);

    if args.large_objects > args.list_objects
        && let Some(server) = server
    {
        eprintln!(
            "bench api: {backend}: filling to {} objects",
            args.large_objects
        );
        create_many(
            &api,
            "large",
            args.large_objects - args.list_objects,
            args.concurrency,
            None,
        )
        .await?;
        figures.push(Figure::memory(backend, "rss_100k", server.memory()?));
    }
    Ok(figures)
}

/// Opens `watchers` watches on one namespace, creates objects in it and measures, for every
/// watcher and object, the time from the create's acknowledgement to the watcher's event.
async fn fan_out(client: &Client, backend: &str, watchers: usize) -> anyhow::Result<Figure> {
    let ns = "r8s-bench-fanout";
    ensure_namespace(client, ns).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    const EVENTS: usize = 50;
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let api = api.clone();
        let seen = seen.clone();
        let stream = api.watch(&WatchParams::default().timeout(120), "0").await?;
        tasks.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut count = 0;
            while let Some(event) = stream.try_next().await? {
                if let WatchEvent::Added(cm) = event {
                    let name = cm.metadata.name.unwrap_or_default();
                    if name.starts_with("fan-") {
                        seen.lock().expect("poisoned").push((name, Instant::now()));
                        count += 1;
                        if count == EVENTS {
                            break;
                        }
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    // Let every watch reach the server before the first event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut acked = HashMap::new();
    let start = Instant::now();
    for i in 0..EVENTS {
        let name = format!("fan-{i}");
        api.create(&PostParams::default(), &config_map(name.clone(), 256))
            .await?;
        acked.insert(name, Instant::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("a watcher missed events")???;
    }
    let elapsed = start.elapsed();
    let seen = seen.lock().expect("poisoned");
    let latencies: Vec<Duration> = seen
        .iter()
        .map(|(name, at)| at.saturating_duration_since(acked[name]))
        .collect();
    let delivered = latencies.len() as f64 / elapsed.as_secs_f64();
    Ok(Figure::latency(
        backend,
        "watch_fanout",
        delivered,
        latencies,
    ))
}
