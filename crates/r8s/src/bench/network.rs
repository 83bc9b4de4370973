//! `r8s bench network`: the node's service proxy and DNS on one real node. With `--services`
//! Services already programmed, each further Service is timed from its create being sent to
//! its ClusterIP accepting connections on the node (the rule live); HTTP requests through a
//! ClusterIP are counted beside the same requests straight to the pod IP (the proxy's cost);
//! and the node's cluster DNS is queried for a Service name as fast as it answers.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::{Figure, connect, ensure_namespace, print_figures};
use super::node::NetnsNode;
use super::pods::wait_for_node;

const NAMESPACE: &str = "r8s-bench-net";
const DNS: &str = "10.96.0.10:53";

#[derive(Args)]
pub struct NetworkBenchArgs {
    /// Print one JSON object with every figure as the last line.
    #[arg(long)]
    json: bool,
    /// Services programmed before the timed ones.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Services timed one after another.
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Seconds of HTTP requests per target, and of DNS queries.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests (and queries) in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

pub async fn run(args: NetworkBenchArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "r8s bench network runs a node (network namespaces, containers): run it as root"
    );
    anyhow::ensure!(args.samples > 0 && args.concurrency > 0 && args.seconds > 0);
    tokio::task::spawn_blocking(move || run_on_node(&args))
        .await
        .context("the bench stopped unexpectedly")?
}

fn run_on_node(args: &NetworkBenchArgs) -> anyhow::Result<()> {
    eprintln!("bench network: starting a node in a network namespace of its own");
    let node = NetnsNode::start("net")?;
    let measured = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                node.enter()?;
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                runtime.block_on(measure(&node, args))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the measuring thread panicked")))
    });
    if measured.is_err() {
        eprintln!("bench network: the logs end with:\n{}", node.log_tail(30));
    }
    eprintln!("bench network: tearing the node down");
    for left in node.shut_down() {
        eprintln!("bench network: could not remove {left}");
    }
    let figures = measured?;
    print_figures(&figures);
    let of = |op: &str, backend: &str| {
        figures
            .iter()
            .find(|f| f.op == op && f.backend == backend)
            .map_or(0.0, |f| f.ops_per_s)
    };
    let (direct, through) = (of("http-get", "pod-ip"), of("http-get", "cluster-ip"));
    let programming = figures.iter().find(|f| f.op == "service-live");
    println!(
        "service-live: from a Service create sent to its ClusterIP accepting connections on the node, with {} Services already programmed; p99 {:.0} ms (target < 100 ms)",
        args.services,
        programming.map_or(0.0, |f| f.p99_ms)
    );
    println!(
        "http-get: a new connection per request to busybox httpd, {} in flight; through the ClusterIP {:.1}% of straight to the pod IP (target >= 95%)",
        args.concurrency,
        if direct > 0.0 {
            through / direct * 100.0
        } else {
            0.0
        }
    );
    println!("dns-a: A queries for a Service name to the node's cluster DNS over UDP");
    if args.json {
        println!("{}", json!({ "results": figures }));
    }
    Ok(())
}

async fn measure(node: &NetnsNode, args: &NetworkBenchArgs) -> anyhow::Result<Vec<Figure>> {
    let client = connect(&node.kubeconfig()).await?;
    wait_for_node(&client, node).await?;
    ensure_namespace(&client, NAMESPACE).await?;
    let pod_ip = start_backend(&client).await?;
    eprintln!("bench network: creating {} Services", args.services);
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let mut last_ip = String::new();
    for i in 0..args.services {
        last_ip = cluster_ip(&create_service(&services, &format!("bulk-{i}")).await?)?;
    }
    if !last_ip.is_empty() {
        wait_live(&last_ip, Duration::from_secs(300)).await?;
    }
    eprintln!("bench network: timing {} more", args.samples);
    let mut live = Vec::new();
    for i in 0..args.samples {
        let began = Instant::now();
        let ip = cluster_ip(&create_service(&services, &format!("timed-{i}")).await?)?;
        wait_live(&ip, Duration::from_secs(60)).await?;
        live.push(began.elapsed());
    }
    let rate = live.len() as f64 / live.iter().map(Duration::as_secs_f64).sum::<f64>();
    let mut figures = vec![Figure::latency("r8s-proxy", "service-live", rate, live)];
    let seconds = Duration::from_secs(args.seconds);
    let web = cluster_ip(&services.get("timed-0").await?)?;
    for (backend, ip) in [("pod-ip", pod_ip.as_str()), ("cluster-ip", web.as_str())] {
        let target: SocketAddr = format!("{ip}:80").parse()?;
        let (rate, samples) = load(args.concurrency, seconds, move || http_get(target)).await?;
        figures.push(Figure::latency(backend, "http-get", rate, samples));
    }
    let query = dns_query(&format!("timed-0.{NAMESPACE}.svc.cluster.local"));
    let (rate, samples) = load(args.concurrency, seconds, move || {
        let query = query.clone();
        async move { dns_ask(&query).await }
    })
    .await?;
    figures.push(Figure::latency("r8s-dns", "dns-a", rate, samples));
    Ok(figures)
}

/// One busybox httpd pod; its IP once it is Ready.
async fn start_backend(client: &Client) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "web", "labels": { "app": "bench-web" } },
        "spec": { "containers": [{
            "name": "httpd", "image": "busybox:1", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www"],
            "readinessProbe": { "tcpSocket": { "port": 80 }, "periodSeconds": 1 },
        }]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pod = pods.get("web").await?;
        let status = pod.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready && let Some(ip) = status.pod_ip {
            return Ok(ip);
        }
        if Instant::now() > deadline {
            bail!("the backend pod was not Ready within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_service(services: &Api<Service>, name: &str) -> anyhow::Result<Service> {
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "selector": { "app": "bench-web" }, "ports": [{ "port": 80 }] },
    }))?;
    Ok(services.create(&PostParams::default(), &service).await?)
}

fn cluster_ip(service: &Service) -> anyhow::Result<String> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .context("the Service has no ClusterIP")
}

/// Waits until `ip:80` accepts a connection: its rule is live (without one the address is
/// unreachable and connecting fails at once).
async fn wait_live(ip: &str, limit: Duration) -> anyhow::Result<()> {
    let target: SocketAddr = format!("{ip}:80").parse()?;
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(target).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{target} did not accept connections within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs `op` from `concurrency` tasks for `seconds`; the rate of successes and their latencies.
async fn load<F, Fut>(
    concurrency: usize,
    seconds: Duration,
    op: F,
) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let began = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while began.elapsed() < seconds {
                    let start = Instant::now();
                    op().await?;
                    samples.push(start.elapsed());
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let rate = all.len() as f64 / began.elapsed().as_secs_f64();
    Ok((rate, all))
}

async fn http_get(target: SocketAddr) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(target).await?;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let status = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    anyhow::ensure!(
        status.starts_with(b"HTTP/1.") && status.windows(5).any(|w| w == b" 200 "),
        "{target} answered {:?}",
        String::from_utf8_lossy(status)
    );
    Ok(())
}

/// A standard query (recursion desired) for `name`'s A record.
fn dns_query(name: &str) -> Vec<u8> {
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet
}

async fn dns_ask(query: &[u8]) -> anyhow::Result<()> {
    let socket = tokio::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.send_to(query, DNS).await?;
    let mut answer = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut answer))
        .await
        .context("the cluster DNS did not answer within 2 s")??;
    // NOERROR with one answer or more.
    anyhow::ensure!(
        n > 12 && answer[3] & 0x0f == 0 && (answer[6], answer[7]) != (0, 0),
        "the cluster DNS did not answer the name"
    );
    Ok(())
}
