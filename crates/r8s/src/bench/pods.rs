//! `r8s bench pods`: pod startup latency on one real node with the image present. N pods are
//! created as fast as the API takes them, each timed from its create being sent to the watch
//! showing it Ready. Beside it, in the same run and against the same containerd, the runtime
//! alone starts the same sandbox and container through CRI, with the configs the kubelet would
//! send. And the memory of the server (control plane and agent in one process), of containerd
//! and of its shims, idle and with the N pods running.

mod memory;
mod raw;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use r8s_kubelet::cri::{Cri, v1};
use serde_json::json;
use tokio::sync::watch;

use super::harness::{connect, ensure_namespace};
use super::node::NetnsNode;
use super::percentile_ms;
use memory::Memory;
use raw::{raw_starts, remove_sandboxes};

const NAMESPACE: &str = "r8s-bench-pods";
const IMAGE: &str = "busybox:1";
/// The node's pod capacity (the agent's default `--max-pods`).
const MAX_PODS: usize = 110;
/// How long the node is left alone before its memory is read.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Args)]
pub struct PodsBenchArgs {
    /// Print one JSON object with every figure as the last line.
    #[arg(long)]
    json: bool,
    /// Pods to start on the node (at most 110, its pod capacity).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pod creates in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Sandbox+container starts through CRI alone, for reference (default: as many as --pods).
    #[arg(long)]
    raw: Option<usize>,
    /// Raw starts in flight (default: all at once, as the kubelet is handed the pods: their
    /// creates take a fraction of the time their starts do).
    #[arg(long)]
    raw_concurrency: Option<usize>,
    /// How long to wait for every pod to be Ready.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

pub async fn run(args: PodsBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_PODS).contains(&args.pods)
            && args.concurrency > 0
            && args.raw != Some(0)
            && args.raw_concurrency != Some(0),
        "--pods must be 1 to {MAX_PODS} (the node's capacity); the other counts positive"
    );
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "r8s bench pods runs a node (network namespaces, containers): run it as root"
    );
    // Ctrl-C ends the measuring, not the process: the node is torn down first.
    let (interrupt, interrupted) = watch::channel(false);
    let on_interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("bench pods: interrupted");
            let _ = interrupt.send(true);
        }
    });
    let result = tokio::task::spawn_blocking(move || run_on_node(&args, interrupted)).await;
    on_interrupt.abort();
    result.context("the bench stopped unexpectedly")?
}

/// Fails with [`Interrupted`] once Ctrl-C is pressed.
async fn interrupt<T>(mut interrupted: watch::Receiver<bool>) -> anyhow::Result<T> {
    if interrupted.wait_for(|&i| i).await.is_err() {
        std::future::pending::<()>().await;
    }
    Err(Interrupted.into())
}

#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Starts the node, measures from a thread inside its network namespace, and tears the node
/// down whatever happened.
fn run_on_node(args: &PodsBenchArgs, interrupted: watch::Receiver<bool>) -> anyhow::Result<()> {
    eprintln!("bench pods: starting r8s server with its agent in a network namespace of its own");
    let node = NetnsNode::start("pods")?;
    eprintln!(
        "bench pods: node {} in network namespace {}",
        node.node_name, node.netns
    );
    let measured = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                node.enter()?;
                // Built after entering: its threads, and so its sockets, live in the namespace.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                runtime.block_on(measure(&node, args, interrupted))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the measuring thread panicked")))
    });
    if measured.as_ref().is_err_and(|e| !e.is::<Interrupted>()) {
        eprintln!(
            "bench pods: the server's log ends with:\n{}",
            node.log_tail(30)
        );
    }
    eprintln!("bench pods: tearing the node down");
    for left in node.shut_down() {
        eprintln!("bench pods: could not remove {left}");
    }
    measured?.print(args);
    Ok(())
}

struct Report {
    node: String,
    pods: Latencies,
    /// From the first create sent to the last acknowledged.
    created: Duration,
    raw: Latencies,
    raw_concurrency: usize,
    idle: Memory,
    loaded: Memory,
    /// From the delete to every pod gone from the API and every sandbox stopped.
    deleted: Option<Duration>,
}

async fn measure(
    node: &NetnsNode,
    args: &PodsBenchArgs,
    interrupted: watch::Receiver<bool>,
) -> anyhow::Result<Report> {
    let client = connect(&node.kubeconfig()).await?;
    let socket = node.containerd_dir().join("containerd.sock");
    let cri = async {
        wait_for_node(&client, node).await?;
        anyhow::Ok(Cri::connect(&socket.to_string_lossy()).await?)
    };
    let cri = tokio::select! {
        cri = cri => cri?,
        interrupted = interrupt(interrupted.clone()) => interrupted?,
    };
    let measured = tokio::select! {
        measured = measure_on(node, args, &client, &cri) => measured,
        interrupted = interrupt(interrupted) => interrupted,
    };
    // Whatever happened, no sandbox outlives the bench: removed through the runtime, each
    // releases its network and shim properly. The kubelet, stopped, cannot make new ones.
    let frozen = node.freeze();
    let mut runtime = cri.runtime.clone();
    let left = runtime.list_pod_sandbox(v1::ListPodSandboxRequest { filter: None });
    if let Ok(Ok(left)) = tokio::time::timeout(Duration::from_secs(10), left).await {
        let ids = left.into_inner().items.into_iter().map(|s| s.id).collect();
        let _ = tokio::time::timeout(Duration::from_secs(60), remove_sandboxes(&cri, ids)).await;
    }
    frozen.until_shutdown();
    measured
}

async fn measure_on(
    node: &NetnsNode,
    args: &PodsBenchArgs,
    client: &Client,
    cri: &Cri,
) -> anyhow::Result<Report> {
    ensure_namespace(client, NAMESPACE).await?;
    wait_for_service_account(client).await?;
    tokio::time::sleep(SETTLE).await;
    let idle = Memory::sample(node);

    let raw_count = args.raw.unwrap_or(args.pods);
    eprintln!(
        "bench pods: {raw_count} sandbox+container starts through CRI alone, the server stopped meanwhile"
    );
    let raw_concurrency = args.raw_concurrency.unwrap_or(raw_count);
    let raw = raw_starts(node, cri, raw_count, raw_concurrency).await?;
    // The server, continued, catches up on what it missed before the pods are timed.
    tokio::time::sleep(SETTLE).await;

    eprintln!("bench pods: creating {} pods", args.pods);
    let (pods, created) = pod_starts(client, args).await?;
    tokio::time::sleep(SETTLE).await;
    let loaded = Memory::sample(node);

    eprintln!("bench pods: deleting the pods");
    let deleted = delete_pods(client, cri).await;
    Ok(Report {
        node: node.node_name.clone(),
        pods,
        created,
        raw,
        raw_concurrency,
        idle,
        loaded,
        deleted,
    })
}

/// Waits for the node to be Ready with a podCIDR, as a pod on it needs.
pub(super) async fn wait_for_node(client: &Client, node: &NetnsNode) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let found = nodes.get_opt(&node.node_name).await.ok().flatten();
        let ready = found.as_ref().is_some_and(|n| {
            let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref());
            let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
            cidr.is_some()
                && conditions
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return Ok(());
        }
        if !node.server_alive() {
            bail!("r8s server exited before its node was Ready");
        }
        if Instant::now() > deadline {
            bail!(
                "node {} was not Ready with a podCIDR within 180 s",
                node.node_name
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Pods are admitted only once their namespace's `default` ServiceAccount exists.
async fn wait_for_service_account(client: &Client) -> anyhow::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(60);
    while accounts.get_opt("default").await?.is_none() {
        if Instant::now() > deadline {
            bail!("no ServiceAccount default in {NAMESPACE} after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The pod every start is made of, by the API and by hand.
fn bench_pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([("app".to_owned(), "bench-pods".to_owned())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(IMAGE.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["sleep".into(), "3600".into()]),
                ..Default::default()
            }],
            restart_policy: Some("Always".into()),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Latency samples, sorted, and the wall time they were taken in.
struct Latencies {
    samples: Vec<Duration>,
    wall: Duration,
}

impl Latencies {
    fn new(mut samples: Vec<Duration>, wall: Duration) -> Self {
        samples.sort();
        Self { samples, wall }
    }

    fn p(&self, percentile: f64) -> f64 {
        percentile_ms(&self.samples, percentile)
    }

    fn per_s(&self) -> f64 {
        self.samples.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn json(&self, backend: &str, op: &str) -> serde_json::Value {
        json!({
            "backend": backend,
            "op": op,
            "samples": self.samples.len(),
            "ops_per_s": self.per_s(),
            "p50_ms": self.p(50.0),
            "p99_ms": self.p(99.0),
            "max_ms": self.p(100.0),
        })
    }
}

/// Creates the pods, `concurrency` at a time, and times each from its create being sent to the
/// watch (opened before the first create) showing it Ready; also returns how long the creates
/// took.
async fn pod_starts(
    client: &Client,
    args: &PodsBenchArgs,
) -> anyhow::Result<(Latencies, Duration)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let since = pods
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut watch = tokio::spawn(watch_ready(pods.clone(), since, ready.clone(), args.pods));
    let sent: Mutex<HashMap<String, Instant>> = Mutex::default();
    let begun = Instant::now();
    futures::stream::iter(0..args.pods)
        .map(|i| {
            let (pods, sent) = (&pods, &sent);
            async move {
                let name = format!("bench-pod-{i}");
                sent.lock()
                    .expect("poisoned")
                    .insert(name.clone(), Instant::now());
                pods.create(&PostParams::default(), &bench_pod(&name))
                    .await
                    .with_context(|| format!("cannot create pod {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<()>()
        .await?;
    let created = begun.elapsed();
    let limit = Duration::from_secs(args.timeout_seconds);
    match tokio::time::timeout(limit, &mut watch).await {
        Ok(watched) => watched??,
        Err(_) => {
            watch.abort();
            let count = ready.lock().expect("poisoned").len();
            bail!(
                "only {count} of {} pods were Ready within {} s{}",
                args.pods,
                args.timeout_seconds,
                stuck_pod(&pods).await
            );
        }
    }
    let ready = ready.lock().expect("poisoned");
    let sent = sent.lock().expect("poisoned");
    let samples = sent
        .iter()
        .filter_map(|(name, at)| ready.get(name).map(|r| r.saturating_duration_since(*at)))
        .collect();
    let last = ready.values().max().copied().unwrap_or(begun);
    Ok((Latencies::new(samples, last - begun), created))
}

/// Records when each pod is first seen Ready, until `want` are.
async fn watch_ready(
    pods: Api<Pod>,
    mut resource_version: String,
    ready: Arc<Mutex<HashMap<String, Instant>>>,
    want: usize,
) -> anyhow::Result<()> {
    loop {
        let mut events = pods
            .watch(&WatchParams::default().timeout(290), &resource_version)
            .await?
            .boxed();
        while let Some(event) = events.try_next().await? {
            let seen = Instant::now();
            let pod = match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => pod,
                WatchEvent::Bookmark(b) => {
                    resource_version = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(e) => bail!("the pod watch failed: {}", e.message),
            };
            if let Some(rv) = &pod.metadata.resource_version {
                resource_version = rv.clone();
            }
            if pod_ready(&pod)
                && let Some(name) = pod.metadata.name
            {
                let mut ready = ready.lock().expect("poisoned");
                ready.entry(name).or_insert(seen);
                if ready.len() >= want {
                    return Ok(());
                }
            }
        }
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The status of one pod that is not Ready, for an error message.
async fn stuck_pod(pods: &Api<Pod>) -> String {
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return String::new();
    };
    list.items
        .iter()
        .find(|p| !pod_ready(p))
        .map(|p| {
            let status = serde_json::to_string(&p.status).unwrap_or_default();
            format!(
                "; e.g. {}: {status}",
                p.metadata.name.as_deref().unwrap_or("?")
            )
        })
        .unwrap_or_default()
}

/// Deletes the bench's pods; returns how long until all are gone from the API and no sandbox
/// runs, then waits a little more for the agent to remove the sandboxes.
async fn delete_pods(client: &Client, cri: &Cri) -> Option<Duration> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let begun = Instant::now();
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    if let Err(e) = pods.delete_collection(&now, &ListParams::default()).await {
        eprintln!("bench pods: cannot delete the pods: {e}");
        return None;
    }
    let sandboxes = || async {
        let list = v1::ListPodSandboxRequest { filter: None };
        let items = cri.runtime.clone().list_pod_sandbox(list).await;
        items.map(|r| r.into_inner().items).unwrap_or_default()
    };
    let mut deleted = None;
    while begun.elapsed() < Duration::from_secs(60) {
        let left = sandboxes().await;
        if deleted.is_none() {
            let gone = pods
                .list_metadata(&ListParams::default().limit(1))
                .await
                .is_ok_and(|l| l.items.is_empty());
            let stopped = left
                .iter()
                .all(|s| s.state() != v1::PodSandboxState::SandboxReady);
            if gone && stopped {
                deleted = Some(begun.elapsed());
            }
        }
        if deleted.is_some() && left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    deleted
}

impl Report {
    fn print(&self, args: &PodsBenchArgs) {
        let n = self.pods.samples.len();
        println!(
            "{n} pods ({IMAGE}, already present) on node {}: {} creates in flight, all sent and acknowledged in {:.2} s",
            self.node,
            args.concurrency,
            self.created.as_secs_f64()
        );
        println!(
            "{:<12} {:<24} {:>7} {:>8} {:>9} {:>9} {:>9}",
            "backend", "op", "samples", "ops/s", "p50 ms", "p99 ms", "max ms"
        );
        for (backend, op, l) in [
            ("r8s-kubelet", "pod-start", &self.pods),
            ("cri-raw", "sandbox+container-start", &self.raw),
        ] {
            println!(
                "{backend:<12} {op:<24} {:>7} {:>8.1} {:>9.1} {:>9.1} {:>9.1}",
                l.samples.len(),
                l.per_s(),
                l.p(50.0),
                l.p(99.0),
                l.p(100.0)
            );
        }
        println!(
            "pod-start: from a create being sent to the watch showing the pod Ready; ops/s: pods from the first create to the last Ready"
        );
        println!(
            "cri-raw: RunPodSandbox + CreateContainer + StartContainer with the kubelet's configs for the same pod, against the same containerd, {} in flight, the r8s server stopped meanwhile",
            self.raw_concurrency
        );
        let ratio = self.pods.p(50.0) / self.raw.p(50.0).max(1e-9);
        let verdict = |met: bool| if met { "met" } else { "missed" };
        println!(
            "pod-start p50 / cri-raw p50: {ratio:.2}x (target <= 1.3x: {}); pod-start p99: {:.0} ms (target <= 1000 ms: {}; upstream SLO 5 s)",
            verdict(ratio <= 1.3),
            self.pods.p(99.0),
            verdict(self.pods.p(99.0) <= 1000.0)
        );
        println!();
        let (idle, loaded) = (&self.idle, &self.loaded);
        println!(
            "{:<30} {:>10} {:>12}",
            "memory",
            "idle",
            format!("{n} pods")
        );
        println!(
            "{:<30} {:>6.1} MiB {:>8.1} MiB",
            "r8s server, VmRSS", idle.server_mib, loaded.server_mib
        );
        println!(
            "{:<30} {:>6.1} MiB {:>8.1} MiB  (target idle: <= 30 MiB)",
            "r8s agent, VmRSS", idle.agent_mib, loaded.agent_mib
        );
        println!(
            "{:<30} {:>6.1} MiB {:>8.1} MiB",
            "containerd, VmRSS", idle.containerd_mib, loaded.containerd_mib
        );
        println!(
            "{:<30} {:>6.1} MiB {:>8.1} MiB  ({} shims)",
            "containerd shims, total PSS", idle.shims_pss_mib, loaded.shims_pss_mib, loaded.shims
        );
        println!(
            "{:<30} {:>6.1} MiB {:>8.1} MiB",
            "containerd shims, total VmRSS", idle.shims_rss_mib, loaded.shims_rss_mib
        );
        println!(
            "r8s server: the control plane (API server, store, controllers, scheduler) with --disable-agent; r8s agent: the node (kubelet, service proxy, DNS), joined with a token; containerd and its shims are separate processes"
        );
        match self.deleted {
            Some(d) => println!(
                "deleting the {n} pods: gone from the API, every sandbox stopped, after {:.1} s",
                d.as_secs_f64()
            ),
            None => println!("deleting the {n} pods: not done within 60 s"),
        }
        if args.json {
            let mut pods = self.pods.json("r8s-kubelet", "pod-start");
            pods["p50_vs_raw"] = json!(ratio);
            pods["in_flight"] = json!(args.concurrency);
            pods["create_s"] = json!(self.created.as_secs_f64());
            let mut raw = self.raw.json("cri-raw", "sandbox+container-start");
            raw["in_flight"] = json!(self.raw_concurrency);
            let memory = |backend: &str, idle: f64, loaded: f64| json!({"backend": backend, "op": "rss", "idle_mib": idle, "pods_mib": loaded, "pods": n});
            let results = [
                pods,
                raw,
                memory("r8s-server", idle.server_mib, loaded.server_mib),
                memory("r8s-agent", idle.agent_mib, loaded.agent_mib),
                memory("containerd", idle.containerd_mib, loaded.containerd_mib),
                json!({"backend": "containerd-shims", "op": "pss", "idle_mib": idle.shims_pss_mib,
                    "pods_mib": loaded.shims_pss_mib, "rss_mib": loaded.shims_rss_mib,
                    "shims": loaded.shims, "pods": n}),
                json!({"backend": "r8s-kubelet", "op": "pod-delete", "pods": n,
                    "seconds": self.deleted.map(|d| d.as_secs_f64())}),
            ];
            println!("{}", json!({ "results": results }));
        }
    }
}
