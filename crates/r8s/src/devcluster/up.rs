//! `r8s devcluster up`: the switch and node namespaces, `r8s server` in the first, the
//! forwarder that gives the host its kubeconfig, `r8s agent` in the others, then a wait until
//! every Node is Ready. A failed `up` removes what it made, as `down` does (logs stay).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node;

use super::network::{self, Subnet};
use super::process::{Detached, log_tail};
use super::{API_PORT, Layout, UpArgs};

/// A process `up` started, watched until the devcluster is Ready.
struct Started {
    what: String,
    log: PathBuf,
    child: Child,
}

impl Started {
    /// An error with the end of its log, if it has exited.
    fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of {}:\n{}",
                self.what,
                self.log.display(),
                log_tail(&self.log, 20)
            );
        }
        Ok(())
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    super::require_root_and_ip()?;
    for (binary, package) in [("containerd", "containerd"), ("runc", "runc")] {
        if !on_path(binary) {
            bail!(
                "{binary} is not on PATH: the nodes run containers with it (Debian: apt-get install {package})"
            );
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        bail!(
            "no CNI plugins in /usr/lib/cni: the nodes' pod network needs them (Debian: apt-get install containernetworking-plugins)"
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let layout = Layout::of(&args.dir)?;
    let dir = layout.dir.display();
    if let Some(what) = layout.running() {
        bail!(
            "a devcluster is running in {dir} ({what}): `r8s devcluster down --dir {dir}` stops it"
        );
    }
    if layout.marker().exists() {
        bail!(
            "{dir} holds the state of a stopped devcluster: `r8s devcluster down --dir {dir}` removes it"
        );
    }
    let subnet = args
        .subnet
        .unwrap_or_else(|| Subnet::from_hash(layout.hash));
    network::check_host_collision(subnet)?;
    let images = match &args.images {
        Some(images) => tarballs(images)?,
        None => Vec::new(),
    };
    match create(&layout, &args, subnet, &images).await {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("r8s devcluster up failed; removing what it made (the logs stay)");
            for problem in super::down::teardown(&layout) {
                eprintln!("  could not remove: {problem}");
            }
            Err(e)
        }
    }
}

async fn create(
    layout: &Layout,
    args: &UpArgs,
    subnet: Subnet,
    images: &[PathBuf],
) -> anyhow::Result<()> {
    let switch = layout.switch();
    std::fs::write(
        layout.marker(),
        format!(
            "r8s devcluster: {} nodes on {subnet}, network namespaces {}*\n",
            args.nodes,
            layout.prefix()
        ),
    )
    .with_context(|| format!("cannot write {}", layout.marker().display()))?;
    eprintln!(
        "creating {} nodes on {subnet} (namespaces {}*)",
        args.nodes,
        layout.prefix()
    );
    network::create_switch(&switch)?;
    for index in 1..=args.nodes {
        network::create_node(
            &layout.node(index),
            &switch,
            &format!("n{index}"),
            subnet.host(index),
        )?;
        // Images reach the nodes as tarballs each agent imports at start, and through the
        // registry mirror below for pulls.
        let image_dir = layout.node_dir(index).join("agent").join("images");
        std::fs::create_dir_all(&image_dir)
            .with_context(|| format!("cannot create {}", image_dir.display()))?;
        for image in images {
            link_or_copy(
                image,
                &image_dir.join(image.file_name().unwrap_or_default()),
            )?;
        }
    }

    let mirror = if images.is_empty() {
        None
    } else {
        eprintln!(
            "serving the images from a registry mirror at {}:5000",
            subnet.host(1)
        );
        Some(super::registry::start(layout, subnet.host(1), images)?)
    };

    let exe = std::env::current_exe().context("cannot find the r8s binary")?;
    let server_ip = IpAddr::V4(subnet.host(1));
    let server_url = format!("https://{}", SocketAddr::new(server_ip, API_PORT));
    let mut started = Vec::new();
    let server = node_command(
        &exe,
        layout,
        1,
        subnet,
        mirror.as_deref(),
        &[
            "server".into(),
            "--bind-address".into(),
            server_ip.to_string(),
            "--https-listen-port".into(),
            API_PORT.to_string(),
        ],
    );
    started.push(start_node(layout, 1, server, "r8s server")?);
    eprintln!("waiting for the API server at {server_url}");
    wait_for_line(
        &mut started[0],
        "admin kubeconfig: ",
        Duration::from_secs(120),
    )
    .await?;

    let port = start_forwarder(layout, &exe, SocketAddr::new(server_ip, API_PORT))?;
    write_host_kubeconfig(
        &layout.node_dir(1).join("admin.kubeconfig"),
        &layout.kubeconfig(),
        &format!("https://127.0.0.1:{port}"),
    )?;

    let join = join_flags(&exe, &layout.kubeconfig(), &server_url)?;
    for index in 2..=args.nodes {
        let mut subcommand = vec!["agent".to_owned()];
        subcommand.extend_from_slice(&join);
        let agent = node_command(&exe, layout, index, subnet, mirror.as_deref(), &subcommand);
        started.push(start_node(layout, index, agent, "r8s agent")?);
    }

    let names: Vec<String> = (1..=args.nodes).map(|i| layout.node(i)).collect();
    wait_ready(&layout.kubeconfig(), &names, &mut started, args.timeout).await?;
    let dir = layout.dir.display();
    println!("devcluster up on {subnet}: {} Ready", names.join(", "));
    println!(
        "  kubectl --kubeconfig {} get nodes",
        layout.kubeconfig().display()
    );
    println!("  logs: {dir}/node<I>/log; remove it: r8s devcluster down --dir {dir}");
    Ok(())
}

pub(super) fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// The image tarballs in `dir`: the files the agent imports.
fn tarballs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the images dir {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "tar" || ext == "gz" || ext == "tgz")
        })
        .collect();
    if found.is_empty() {
        bail!(
            "no image tarballs (.tar, .tar.gz, .tgz) in {}",
            dir.display()
        );
    }
    found.sort();
    Ok(found)
}

fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

/// `r8s <subcommand…>` with the flags every node has.
fn node_command(
    exe: &Path,
    layout: &Layout,
    index: u8,
    subnet: Subnet,
    mirror: Option<&str>,
    subcommand: &[String],
) -> Command {
    let mut command = Command::new(exe);
    command
        .args(subcommand)
        .arg("--data-dir")
        .arg(layout.node_dir(index))
        .args(["--node-name", &layout.node(index)])
        .args(["--node-ip", &subnet.host(index).to_string()])
        // Nothing inside reaches the host's resolvers: cluster names only.
        .args(["--dns-forward", "none"]);
    if let Some(url) = mirror {
        command
            .arg("--registry-mirror")
            .arg(format!("docker.io={url}"));
    }
    command
}

fn start_node(layout: &Layout, index: u8, command: Command, what: &str) -> anyhow::Result<Started> {
    let log = layout.node_log(index);
    let process = layout.node_process(index);
    let child = Detached {
        command,
        netns: &layout.node(index),
        log: &log,
        pid_file: &process.pid_file,
        listener: None,
    }
    .spawn()?;
    eprintln!(
        "started {what} in {} (log {})",
        layout.node(index),
        log.display()
    );
    Ok(Started {
        what: format!("{what} in {}", layout.node(index)),
        log,
        child,
    })
}

async fn wait_for_line(started: &mut Started, line: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        started.check()?;
        let text = std::fs::read_to_string(&started.log).unwrap_or_default();
        if text.lines().any(|l| l.starts_with(line)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not print {line:?} within {limit:?}; the end of {}:\n{}",
                started.what,
                started.log.display(),
                log_tail(&started.log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts the forwarder on a free loopback port of the host; returns the port.
fn start_forwarder(layout: &Layout, exe: &Path, to: SocketAddr) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot listen on a loopback port for the forwarder")?;
    let port = listener.local_addr()?.port();
    let mut command = Command::new(exe);
    command
        .args(["devcluster", "forward", "--to", &to.to_string(), "--dir"])
        .arg(&layout.dir);
    let log = layout.dir.join("forward.log");
    let recorded = layout.forwarder();
    Detached {
        command,
        netns: &layout.node(1),
        log: &log,
        pid_file: &recorded.pid_file,
        listener: Some(&listener),
    }
    .spawn()?;
    Ok(port)
}

/// The server's admin kubeconfig with the forwarder's address: the server's certificate
/// names 127.0.0.1, so it verifies as it is.
fn write_host_kubeconfig(from: &Path, to: &Path, url: &str) -> anyhow::Result<()> {
    use base64::Engine;
    let config = kube::config::Kubeconfig::read_from(from)
        .with_context(|| format!("cannot read {}", from.display()))?;
    let config = serde_json::to_value(&config)?;
    let field = |value: &serde_json::Value, what: &str| -> anyhow::Result<String> {
        let text = value
            .as_str()
            .with_context(|| format!("{} has no {what}", from.display()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .with_context(|| format!("the {what} of {} is not base64", from.display()))?;
        String::from_utf8(bytes).with_context(|| format!("the {what} is not PEM text"))
    };
    let user = &config["users"][0];
    let ca = field(
        &config["clusters"][0]["cluster"]["certificate-authority-data"],
        "certificate-authority-data",
    )?;
    let client = r8s_cluster::Pem {
        cert: field(
            &user["user"]["client-certificate-data"],
            "client-certificate-data",
        )?,
        key: field(&user["user"]["client-key-data"], "client-key-data")?,
    };
    let name = user["name"].as_str().unwrap_or("kubernetes-admin");
    r8s_cluster::write_kubeconfig(to, url, &ca, name, &client)
        .with_context(|| format!("cannot write {}", to.display()))
}

/// The flags of `r8s agent` that join the cluster, from `r8s token create
/// --print-join-command` (run on the host, through the forwarder).
fn join_flags(exe: &Path, kubeconfig: &Path, server_url: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new(exe)
        .args([
            "token",
            "create",
            "--print-join-command",
            "--server",
            server_url,
        ])
        .args(["--description", "r8s devcluster", "--kubeconfig"])
        .arg(kubeconfig)
        .output()
        .context("cannot run r8s token create")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "r8s token create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if words.get(..2) != Some(&["r8s".to_owned(), "agent".to_owned()][..]) {
        bail!("r8s token create printed no join command: {text:?}");
    }
    Ok(words[2..].to_vec())
}

/// Waits until every Node in `names` is Ready, read through the host's kubeconfig.
async fn wait_ready(
    kubeconfig: &Path,
    names: &[String],
    started: &mut [Started],
    limit: Duration,
) -> anyhow::Result<()> {
    let client = crate::agent::admin_client(kubeconfig).await?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let deadline = Instant::now() + limit;
    let mut reported = usize::MAX;
    loop {
        for process in started.iter_mut() {
            process.check()?;
        }
        let (ready, problem) = match nodes.list(&Default::default()).await {
            Ok(list) => {
                let ready: Vec<&str> = list
                    .items
                    .iter()
                    .filter(|node| is_ready(node))
                    .filter_map(|node| node.metadata.name.as_deref())
                    .filter(|name| names.iter().any(|n| n == name))
                    .collect();
                (ready.len(), None)
            }
            Err(e) => (0, Some(e.to_string())),
        };
        if ready == names.len() {
            return Ok(());
        }
        if ready != reported {
            eprintln!("{ready}/{} nodes Ready", names.len());
            reported = ready;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = started
                .iter()
                .map(|s| s.log.display().to_string())
                .collect();
            bail!(
                "only {ready} of {} nodes were Ready after {limit:?}{}; see {}",
                names.len(),
                problem
                    .map(|p| format!(" (last error: {p})"))
                    .unwrap_or_default(),
                logs.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}
