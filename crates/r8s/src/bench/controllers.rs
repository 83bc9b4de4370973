//! `r8s bench controllers`: the Deployment and ReplicaSet controllers (and the scheduler between
//! them and the nodes) under load. An `r8s server` (or, with `--kubeconfig`, any cluster and
//! whatever controller manager and scheduler it runs) gets N hollow nodes, then M Deployments of
//! R replicas created as fast as the API takes them; the figures are the time until every
//! Deployment is seen fully available through a watch, the time from each create's
//! acknowledgement to its Deployment being available, and the server's memory. Hollow nodes
//! report their pods Running and Ready, so nothing runs.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, Namespace, Node, PodSpec, PodTemplateSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use r8s_sim::{HollowNodes, SimConfig};
use serde_json::json;

use super::harness::{Figure, SpawnedServer, connect, ensure_namespace, print_figures};

const NAMESPACE: &str = "r8s-bench-controllers";
const NODE_PREFIX: &str = "bench-controllers-node-";
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct ControllersBenchArgs {
    /// Print one JSON object with every figure as the last line.
    #[arg(long)]
    json: bool,
    /// Load this cluster (its controller manager is what is measured) instead of starting r8s.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Hollow nodes to register.
    #[arg(long, default_value_t = 1000)]
    nodes: u32,
    /// Deployments to create.
    #[arg(long, default_value_t = 1000)]
    deployments: usize,
    /// Replicas of each Deployment.
    #[arg(long, default_value_t = 10)]
    replicas: i32,
    /// Creates in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to wait, from the first create, for every Deployment to be available.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
}

/// What the Deployment watch has seen so far.
#[derive(Default)]
struct Seen {
    /// When each Deployment was first seen fully available.
    available: HashMap<String, Instant>,
    /// Each Deployment's latest `status.availableReplicas`, for progress.
    replicas: HashMap<String, i32>,
}

impl Seen {
    fn progress(&self, args: &ControllersBenchArgs) -> String {
        format!(
            "{} of {} Deployments ({} of {} replicas) available",
            self.available.len(),
            args.deployments,
            self.replicas.values().sum::<i32>(),
            args.deployments as i64 * i64::from(args.replicas)
        )
    }
}

/// What one run measured, from the first create.
struct Measured {
    created: Duration,
    create_latencies: Vec<Duration>,
    all_available: Duration,
    available_latencies: Vec<Duration>,
}

pub async fn run(args: ControllersBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.nodes > 0 && args.deployments > 0 && args.replicas > 0 && args.concurrency > 0,
        "--nodes, --deployments, --replicas and --concurrency must be positive"
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

    eprintln!("bench controllers: registering {} hollow nodes", args.nodes);
    let started = Instant::now();
    let mut config = SimConfig::new(args.nodes, NODE_PREFIX);
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
    let node_names: Vec<String> = nodes.nodes().iter().map(|n| n.name.clone()).collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let heartbeats = tokio::spawn(nodes.run(async {
        let _ = stopped.await;
    }));

    let measured = measure(&client, &args).await;
    let rss = match &server {
        Some(server) => Some(server.memory()?),
        None => None,
    };
    if args.kubeconfig.is_some() {
        // Someone else's cluster: take everything away again, whether or not the run succeeded.
        if let Err(e) = clean_up(&client, &node_names, stop, heartbeats, &args).await {
            eprintln!("bench controllers: cleaning up failed: {e:#}");
        }
    } else {
        let _ = stop.send(());
        let _ = heartbeats.await;
    }
    let measured = measured?;

    figures.push(Figure::latency(
        backend,
        "create_deploys",
        args.deployments as f64 / measured.created.as_secs_f64(),
        measured.create_latencies,
    ));
    let total_s = measured.all_available.as_secs_f64();
    figures.push(Figure::latency(
        backend,
        "available",
        args.deployments as f64 / total_s,
        measured.available_latencies,
    ));
    let pods = args.deployments as f64 * f64::from(args.replicas);
    figures.push(Figure::latency(
        backend,
        "pods_ready",
        pods / total_s,
        Vec::new(),
    ));
    if let Some(rss) = rss {
        figures.push(Figure::memory(backend, "rss", rss));
    }

    print_figures(&figures);
    println!(
        "{} Deployments of {} replicas available on {} hollow nodes in {total_s:.2} s from the first create",
        args.deployments, args.replicas, args.nodes
    );
    println!(
        "available: Deployments per second to the last one available; latency from a create's acknowledgement to its Deployment seen with every replica available"
    );
    if args.json {
        let mut results = Vec::new();
        for figure in &figures {
            let mut result = serde_json::to_value(figure)?;
            if figure.op == "available" {
                result["total_s"] = json!(total_s);
                result["deployments"] = json!(args.deployments);
                result["replicas"] = json!(args.replicas);
                result["nodes"] = json!(args.nodes);
            }
            results.push(result);
        }
        println!("{}", json!({ "results": results }));
    }
    Ok(())
}

/// Creates the Deployments and waits, through one watch, for every one to be available.
async fn measure(client: &Client, args: &ControllersBenchArgs) -> anyhow::Result<Measured> {
    ensure_namespace(client, NAMESPACE).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    // Creates are timed from their acknowledgement; availability from the watch.
    let acknowledged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    // The watch starts from before the first create, so no status update is missed.
    let since = deployments
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watch = tokio::spawn(watch_available(
        deployments.clone(),
        since,
        seen.clone(),
        args.deployments,
    ));

    eprintln!(
        "bench controllers: creating {} Deployments of {} replicas",
        args.deployments, args.replicas
    );
    let begun = Instant::now();
    let create_latencies: Vec<Duration> = futures::stream::iter(0..args.deployments)
        .map(|i| {
            let deployments = deployments.clone();
            let acknowledged = acknowledged.clone();
            async move {
                let name = format!("bench-deploy-{i}");
                let sent = Instant::now();
                deployments
                    .create(&PostParams::default(), &deployment(&name, args.replicas))
                    .await
                    .with_context(|| format!("cannot create Deployment {name}"))?;
                let at = Instant::now();
                acknowledged.lock().expect("poisoned").insert(name, at);
                anyhow::Ok(at - sent)
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect()
        .await?;
    let created = begun.elapsed();
    eprintln!(
        "bench controllers: created in {:.2} s; waiting for every Deployment to be available",
        created.as_secs_f64()
    );
    let deadline = Duration::from_secs(args.timeout_seconds);
    let waited = tokio::time::timeout(deadline.saturating_sub(begun.elapsed()), async {
        // A long run says how far it has got.
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        tokio::pin!(watch);
        loop {
            tokio::select! {
                result = &mut watch => return result,
                _ = ticks.tick() => eprintln!(
                    "bench controllers: {:.0} s: {}",
                    begun.elapsed().as_secs_f64(),
                    seen.lock().expect("poisoned").progress(args)
                ),
            }
        }
    })
    .await;
    match waited {
        Ok(result) => result??,
        Err(_) => bail!(
            "only {} within {} s",
            seen.lock().expect("poisoned").progress(args),
            args.timeout_seconds
        ),
    }
    let acknowledged = acknowledged.lock().expect("poisoned");
    let available = &seen.lock().expect("poisoned").available;
    let last = available.values().max().copied().unwrap_or(begun);
    let available_latencies = acknowledged
        .iter()
        .filter_map(|(name, at)| {
            available
                .get(name)
                .map(|seen| seen.saturating_duration_since(*at))
        })
        .collect();
    Ok(Measured {
        created,
        create_latencies,
        all_available: last.saturating_duration_since(begun),
        available_latencies,
    })
}

/// A Deployment whose pods only hollow nodes take, each pod small enough for many per node.
fn deployment(name: &str, replicas: i32) -> Deployment {
    let labels = BTreeMap::from([("app".to_owned(), name.to_owned())]);
    let requests = [("cpu", "10m"), ("memory", "16Mi")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
        .collect();
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some("registry.k8s.io/pause:3.10".into()),
                        resources: Some(ResourceRequirements {
                            requests: Some(requests),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    // On a foreign cluster, real nodes would have to run them.
                    node_selector: Some([("type".to_owned(), "hollow".to_owned())].into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Every replica available, as of the Deployment's current spec.
fn is_available(deployment: &Deployment) -> bool {
    let Some(status) = &deployment.status else {
        return false;
    };
    let observed = matches!(
        (status.observed_generation, deployment.metadata.generation),
        (Some(observed), Some(generation)) if observed >= generation
    );
    observed && status.available_replicas.unwrap_or(0) == deployment.spec.replicas.unwrap_or(1)
}

/// Records when each Deployment is first seen available, until `want` are.
async fn watch_available(
    deployments: Api<Deployment>,
    mut resource_version: String,
    seen: Arc<Mutex<Seen>>,
    want: usize,
) -> anyhow::Result<()> {
    loop {
        let mut events = deployments
            .watch(&WatchParams::default().timeout(290), &resource_version)
            .await?
            .boxed();
        while let Some(event) = events.try_next().await? {
            let deployment = match event {
                WatchEvent::Added(d) | WatchEvent::Modified(d) => d,
                WatchEvent::Bookmark(b) => {
                    resource_version = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(e) => bail!("the Deployment watch failed: {}", e.message),
            };
            if let Some(rv) = &deployment.metadata.resource_version {
                resource_version = rv.clone();
            }
            let mut seen = seen.lock().expect("poisoned");
            let replicas = deployment
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            seen.replicas.insert(deployment.name_any(), replicas);
            if is_available(&deployment) {
                seen.available
                    .entry(deployment.name_any())
                    .or_insert_with(Instant::now);
                if seen.available.len() >= want {
                    return Ok(());
                }
            }
        }
    }
}

/// Removes the namespace while the hollow nodes still finish its pods' deletions, then stops
/// them and removes their Nodes (their Leases go with them, by owner reference).
async fn clean_up(
    client: &Client,
    node_names: &[String],
    stop: tokio::sync::oneshot::Sender<()>,
    heartbeats: tokio::task::JoinHandle<()>,
    args: &ControllersBenchArgs,
) -> anyhow::Result<()> {
    eprintln!("bench controllers: deleting namespace {NAMESPACE} and the hollow nodes");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deleted = match namespaces.delete(NAMESPACE, &DeleteParams::default()).await {
        Ok(deleted) => deleted.left(),
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => {
            let _ = stop.send(());
            let _ = heartbeats.await;
            return Err(e).context("cannot delete the namespace");
        }
    };
    let gone = match deleted.and_then(|ns| ns.uid()) {
        Some(uid) => tokio::time::timeout(
            Duration::from_secs(args.timeout_seconds),
            await_condition(namespaces, NAMESPACE, conditions::is_deleted(&uid)),
        )
        .await
        .map_err(|_| anyhow::anyhow!("namespace {NAMESPACE} is still terminating"))
        .and_then(|r| r.context("cannot watch the namespace's deletion").map(drop)),
        None => Ok(()),
    };
    let _ = stop.send(());
    let _ = heartbeats.await;
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(node_names)
        .map(|name| {
            let nodes = nodes.clone();
            async move {
                match nodes.delete(name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("cannot delete Node {name}")),
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<()>()
        .await?;
    gone
}
