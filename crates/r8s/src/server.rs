//! `r8s server`: the control plane, like `kubeadm init` plus the processes it starts. It opens
//! the store, makes (or reuses) the cluster's PKI and admin kubeconfig, and serves the API.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use r8s_apiserver::{ApiServer, Config, first_service_ip, parse_cidr, parse_port_range};
use r8s_cluster::{ServingNames, ensure_server_pki, ensure_service_account_key, write_kubeconfig};

#[derive(Args)]
pub struct ServerArgs {
    /// Where the server keeps its state.
    #[arg(long, default_value = "/var/lib/r8s")]
    data_dir: PathBuf,
    /// The port the API server listens on.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// The address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The address other machines reach this server at (added to its certificate).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// etcd cluster to use instead of the embedded store: etcd://HOST:PORT[,HOST:PORT…]
    #[arg(long)]
    datastore_endpoint: Option<String>,
    /// Service ClusterIPs come from this range; its first address is the `kubernetes` Service.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// Node ports for NodePort and LoadBalancer Services.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Run only the control plane, no node agent on this machine.
    #[arg(long)]
    disable_agent: bool,
    /// Read-only requests served at once; more get 429 Too Many Requests (0: no limit).
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests served at once; more get 429 Too Many Requests (0: no limit).
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// The issuer (`iss`) of ServiceAccount tokens, also their default audience.
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    service_account_issuer: String,
    /// How long a node may go without a kubelet heartbeat before it is marked Unknown and
    /// tainted unreachable (a Go duration such as `40s`).
    #[arg(long, default_value = "40s", value_parser = parse_go_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// How long certificates issued through CertificateSigningRequests are valid, unless a
    /// request asks for less (upstream's controller-manager flag of that name).
    #[arg(long, default_value = "8760h", value_parser = parse_go_duration)]
    cluster_signing_duration: std::time::Duration,
    /// Pod CIDRs for nodes come from this range, one /24 each.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// Addresses for LoadBalancer Services, one each, announced on the nodes' network by ARP
    /// (MetalLB's L2 mode): a CIDR (every address of it) or FIRST-LAST, IPv4 (repeatable).
    /// Without it, LoadBalancer Services get the Ready nodes' addresses.
    #[arg(long = "lb-pool", value_name = "RANGE")]
    lb_pool: Vec<r8s_controllers::service_lb::AddressRange>,
    #[command(flatten)]
    agent: crate::agent::NodeArgs,
}

pub(crate) fn parse_go_duration(text: &str) -> Result<std::time::Duration, String> {
    let nanos = r8s_api::protobuf::parse_duration(text)?;
    u64::try_from(nanos)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("{text:?} is negative"))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let service_cidr = parse_cidr(&args.service_cidr).context("--service-cidr")?;
    let cluster_cidr = parse_cidr(&args.cluster_cidr).context("--cluster-cidr")?;
    let node_port_range =
        parse_port_range(&args.service_node_port_range).context("--service-node-port-range")?;
    let lb_pool = lb_pool(&args.lb_pool, &[service_cidr, cluster_cidr])?;
    let store_dir = args.data_dir.join("server").join("db");
    let store = r8s_store::open(args.datastore_endpoint.as_deref(), &store_dir)
        .await
        .context("cannot open the store")?;

    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    ips.extend(args.advertise_address);
    if !args.bind_address.is_unspecified() {
        ips.push(args.bind_address);
    }
    let names = ServingNames::for_apiserver(&ips, IpAddr::V4(first_service_ip(service_cidr)));
    let pki = ensure_server_pki(&args.data_dir.join("server").join("tls"), &names)
        .context("cannot prepare the cluster's certificates")?;

    let service_account_key = ensure_service_account_key(&args.data_dir.join("server").join("tls"))
        .context("cannot prepare the service account signing key")?;

    let listen = SocketAddr::new(args.bind_address, args.https_listen_port);
    let server = ApiServer::start(
        Config {
            listen,
            ca_pem: pki.ca.cert.clone(),
            cert_pem: pki.serving.cert.clone(),
            key_pem: pki.serving.key.clone(),
            service_cidr,
            advertise_port: args.https_listen_port,
            node_port_range,
            max_requests_inflight: args.max_requests_inflight,
            max_mutating_requests_inflight: args.max_mutating_requests_inflight,
            service_account_key_pem: service_account_key.private_pem,
            service_account_public_pem: service_account_key.public_pem,
            service_account_issuer: args.service_account_issuer,
            kubelet_client_cert_pem: pki.kubelet_client.cert.clone(),
            kubelet_client_key_pem: pki.kubelet_client.key.clone(),
        },
        store,
    )
    .await?;

    let local = if args.bind_address.is_unspecified() || args.bind_address.is_loopback() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        args.bind_address
    };
    let url = format!("https://{}", SocketAddr::new(local, server.address.port()));
    let kubeconfig = args.data_dir.join("admin.kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &url,
        &pki.ca.cert,
        "kubernetes-admin",
        &pki.admin,
    )
    .context("cannot write the admin kubeconfig")?;
    // A closed stdout (a supervisor that stopped reading) must not stop the server.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "r8s API server listening on {}", server.address);
    let _ = writeln!(out, "admin kubeconfig: {}", kubeconfig.display());
    let _ = writeln!(
        out,
        "  kubectl --kubeconfig {} get namespaces",
        kubeconfig.display()
    );
    let _ = out.flush();
    drop(out);
    // The controller manager and the scheduler share one informer per resource type, as they
    // would one SharedInformerFactory in a single upstream binary. Both are clients of the API
    // server like any other, as the admin until component identities exist, but reach it in
    // process: no TLS, sockets or HTTP framing between parts of one binary.
    let admin = loopback_client(&server);
    let informers = r8s_informers::Informers::new(admin.clone());
    let controllers = tokio::spawn(run_controllers(
        informers.clone(),
        pki.ca.clone(),
        args.node_monitor_grace_period,
        args.cluster_signing_duration,
        cluster_cidr,
        lb_pool,
    ));
    let scheduler = tokio::spawn(r8s_scheduler::run(informers));
    ensure_kube_dns(&admin, args.agent.cluster_dns()).await?;
    let mut agent = if args.disable_agent {
        None
    } else {
        let ranges = (args.cluster_cidr.clone(), args.service_cidr.clone());
        Some(crate::agent::start(admin, &args.data_dir, &pki.ca, &args.agent, ranges).await?)
    };
    let agent_done = async {
        match agent.as_mut() {
            Some(agent) => agent.wait().await,
            None => std::future::pending().await,
        }
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    tokio::select! {
        result = server.wait() => result,
        result = controllers => result.context("the controller manager stopped")?,
        result = scheduler => result.context("the scheduler stopped")?,
        result = agent_done => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
    }
}

/// A client of `server` as the cluster admin, served in this process.
fn loopback_client(server: &ApiServer) -> kube::Client {
    let loopback = server.loopback(r8s_cluster::tls::Identity::authenticated(
        r8s_cluster::ADMIN_COMMON_NAME.to_owned(),
        vec![r8s_cluster::ADMIN_ORGANIZATION.to_owned()],
    ));
    let service = tower::service_fn(move |request| {
        let loopback = loopback.clone();
        async move { Ok::<_, std::convert::Infallible>(loopback.call(request).await) }
    });
    kube::Client::new(service, "default")
}

/// The `--lb-pool` ranges as one pool (none given: none), refused where they overlap the
/// cluster's own ranges, whose addresses the service rules and routes already claim.
fn lb_pool(
    ranges: &[r8s_controllers::service_lb::AddressRange],
    cluster_ranges: &[(Ipv4Addr, u8)],
) -> anyhow::Result<Option<r8s_controllers::service_lb::Pool>> {
    if ranges.is_empty() {
        return Ok(None);
    }
    for range in ranges {
        for &(base, bits) in cluster_ranges {
            let cluster: r8s_controllers::service_lb::AddressRange =
                format!("{base}/{bits}").parse()?;
            if range.overlaps(&cluster) {
                anyhow::bail!(
                    "--lb-pool {range} overlaps the cluster's range {base}/{bits} (--service-cidr \
                     or --cluster-cidr)"
                );
            }
        }
    }
    Ok(Some(r8s_controllers::service_lb::Pool::new(ranges)))
}

/// The controller manager, a client of the API server like any other.
async fn run_controllers(
    informers: Arc<r8s_informers::Informers>,
    ca: r8s_cluster::Pem,
    node_monitor_grace_period: std::time::Duration,
    cluster_signing_duration: std::time::Duration,
    cluster_cidr: (Ipv4Addr, u8),
    lb_pool: Option<r8s_controllers::service_lb::Pool>,
) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let options = r8s_controllers::Options {
        cluster_signing: Some(r8s_controllers::certificates::SigningCa {
            cert_pem: ca.cert.clone(),
            key_pem: ca.key,
            duration: cluster_signing_duration,
        }),
        root_ca_pem: ca.cert,
        node_monitor_grace_period: Some(node_monitor_grace_period),
        node_ipam: Some(r8s_controllers::node_ipam::Ranges {
            cluster: cluster_cidr,
            node_mask: 24,
        }),
        lb_pool,
    };
    // One controller manager at a time among servers sharing a store: the holder of the
    // `kube-system/kube-controller-manager` Lease, as upstream's.
    let identity = r8s_scheduler::leader_election::identity();
    loop {
        let lease = r8s_scheduler::leader_election::LeaderElector::new(
            client.clone(),
            "kube-controller-manager",
            &identity,
        );
        lease.acquire().await;
        tracing::info!(%identity, "became the leading controller manager");
        tokio::select! {
            result = r8s_controllers::run(informers.clone(), options.clone()) => return result,
            () = lease.keep() => tracing::warn!("lost the controller-manager lease; standing by"),
        }
    }
}

/// The `kube-system/kube-dns` Service at the cluster DNS address, as kubeadm's DNS addon makes
/// it: pods find it in their resolv.conf, and every node's agent answers on that address.
async fn ensure_kube_dns(client: &kube::Client, ip: IpAddr) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Service;
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), "kube-system");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "kube-dns",
            "labels": { "k8s-app": "kube-dns", "kubernetes.io/name": "r8s-dns" },
        },
        "spec": {
            "clusterIP": ip.to_string(),
            "ports": [
                { "name": "dns", "port": 53, "protocol": "UDP" },
                { "name": "dns-tcp", "port": 53, "protocol": "TCP" },
            ],
        },
    }))?;
    match services.create(&Default::default(), &service).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e).context("cannot create the kube-system/kube-dns Service"),
    }
}
