//! `r8s bench scheduler`: scheduling throughput on hollow nodes. An `r8s server` (or, with
//! `--kubeconfig`, any cluster and whatever scheduler it runs) gets N hollow nodes, then M pods
//! created as fast as the API takes them; the figures are pods bound per second, the time from
//! each create's acknowledgement to the pod being seen bound, and the server's memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use r8s_sim::{HollowNodes, SimConfig};

use super::harness::{Figure, SpawnedServer, connect, ensure_namespace, print_figures};

const NAMESPACE: &str = "r8s-bench-scheduler";

#[derive(Args)]
pub struct SchedulerBenchArgs {
    /// Print one JSON object with every figure as the last line.
    #[arg(long)]
    json: bool,
    /// Load this cluster (its scheduler is what is measured) instead of starting r8s.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Hollow nodes to register.
    #[arg(long, default_value_t = 5000)]
    nodes: u32,
    /// Pods to schedule.
    #[arg(long, default_value_t = 50_000)]
    pods: usize,
    /// Creates in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to wait for every pod to be bound.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
}

pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.nodes > 0 && args.pods > 0,
        "--nodes and --pods must be positive"
    );
    let server = match &args.kubeconfig {
        Some(_) => None,
        None => Some(SpawnedServer::start(None)?),
    };
    let kubeconfig = match (&args.kubeconfig, &server) {
        (Some(path), _) => path.clone(),
        (None, Some(server)) => server.kubeconfig.clone(),
        (None, None) => unreachable!("a server is started when no kubeconfig is given"),
    };
    let backend = if server.is_some() { "r8s" } else { "target" };
    let client = connect(&kubeconfig).await?;
    let mut figures = Vec::new();

    eprintln!("bench scheduler: registering {} hollow nodes", args.nodes);
    let started = Instant::now();
    let mut config = SimConfig::new(args.nodes, "bench-node-");
    config.concurrency = 64;
    let nodes = HollowNodes::register(r8s_sim::client(&kubeconfig).await?, config)
        .await
        .context("cannot register the hollow nodes")?;
    let registered = started.elapsed();
    figures.push(Figure::latency(
        backend,
        "register_nodes",
        f64::from(args.nodes) / registered.as_secs_f64(),
        vec![registered],
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let heartbeats = tokio::spawn(nodes.run(async {
        let _ = stopped.await;
    }));

    ensure_namespace(&client, NAMESPACE).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // Creates are timed from their acknowledgement; binds from the watch.
    let acknowledged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // The watch starts from before the first create, so no bind is missed.
    let since = pods
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watch = tokio::spawn(watch_binds(pods.clone(), since, bound.clone(), args.pods));

    eprintln!("bench scheduler: creating {} pods", args.pods);
    let begun = Instant::now();
    futures::stream::iter(0..args.pods)
        .map(|i| {
            let pods = pods.clone();
            let acknowledged = acknowledged.clone();
            async move {
                let name = format!("bench-pod-{i}");
                // The answer is not parsed: the load generator shares the CPU it measures.
                let body = serde_json::to_vec(&pod(&name))?;
                let request = kube::core::Request::new(pods.resource_url())
                    .create(&PostParams::default(), body)?;
                pods.clone().into_client().request_text(request).await?;
                acknowledged
                    .lock()
                    .expect("poisoned")
                    .insert(name, Instant::now());
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<()>()
        .await?;
    let created = begun.elapsed();
    figures.push(Figure::latency(
        backend,
        "create_pods",
        args.pods as f64 / created.as_secs_f64(),
        Vec::new(),
    ));
    match tokio::time::timeout(Duration::from_secs(args.timeout_seconds), watch).await {
        Ok(result) => result??,
        Err(_) => bail!(
            "only {} of {} pods were bound within {} s",
            bound.lock().expect("poisoned").len(),
            args.pods,
            args.timeout_seconds
        ),
    }
    let all_bound = begun.elapsed();
    let latencies: Vec<Duration> = {
        let acknowledged = acknowledged.lock().expect("poisoned");
        let bound = bound.lock().expect("poisoned");
        acknowledged
            .iter()
            .filter_map(|(name, at)| bound.get(name).map(|b| b.saturating_duration_since(*at)))
            .collect()
    };
    figures.push(Figure::latency(
        backend,
        "schedule",
        args.pods as f64 / all_bound.as_secs_f64(),
        latencies,
    ));
    if let Some(server) = &server {
        figures.push(Figure::memory(backend, "rss", server.memory()?));
    }

    let _ = stop.send(());
    let _ = heartbeats.await;
    if args.kubeconfig.is_some() {
        // Someone else's cluster: take the load away again (the hollow Nodes stay, NotReady).
        let _ = pods
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
    }
    print_figures(&figures);
    println!(
        "schedule: pods bound per second from the first create to the last bind; latency from a create's acknowledgement to the pod seen bound"
    );
    if args.json {
        println!("{}", serde_json::json!({ "results": figures }));
    }
    Ok(())
}

/// A pod every hollow node can take many of.
fn pod(name: &str) -> Pod {
    let requests = [("cpu", "10m"), ("memory", "16Mi")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([("app".to_owned(), "bench".to_owned())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Of a pod, what the bench's watch reads: the rest of each event is skipped, not built, so
/// the observer takes little of the CPU it measures.
#[derive(Clone, serde::Deserialize)]
struct Placed {
    metadata: PlacedMeta,
    #[serde(default)]
    spec: PlacedSpec,
}

#[derive(Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlacedMeta {
    name: String,
    resource_version: Option<String>,
}

#[derive(Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlacedSpec {
    node_name: Option<String>,
}

/// Records when each pod is first seen with a node, until `want` are.
async fn watch_binds(
    pods: Api<Pod>,
    mut resource_version: String,
    bound: Arc<Mutex<HashMap<String, Instant>>>,
    want: usize,
) -> anyhow::Result<()> {
    let client = pods.clone().into_client();
    let collection = kube::core::Request::new(pods.resource_url());
    loop {
        let request = collection.watch(&WatchParams::default().timeout(290), &resource_version)?;
        let mut events = client.request_events::<Placed>(request).await?.boxed();
        while let Some(event) = events.try_next().await? {
            let pod = match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => pod,
                WatchEvent::Bookmark(b) => {
                    resource_version = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(e) => bail!("the pod watch failed: {}", e.message),
            };
            if let Some(rv) = pod.metadata.resource_version {
                resource_version = rv;
            }
            if pod.spec.node_name.is_some_and(|n| !n.is_empty()) {
                let mut bound = bound.lock().expect("poisoned");
                bound.entry(pod.metadata.name).or_insert_with(Instant::now);
                if bound.len() >= want {
                    return Ok(());
                }
            }
        }
    }
}
