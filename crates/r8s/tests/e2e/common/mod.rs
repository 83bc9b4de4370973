//! Helpers for tests that run `r8s server` and drive it with the real kubectl.

#![allow(dead_code)] // each test binary uses its own share of these helpers

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

pub mod node;

pub const R8S: &str = env!("CARGO_BIN_EXE_r8s");

/// The directory holding the real kubectl and helm (fetched once per test process).
pub fn tools_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("R8S_TOOLS_BIN") {
            return PathBuf::from(dir);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-k8s-tools.sh");
        let out = Command::new("bash")
            .arg(script)
            .output()
            .expect("run fetch-k8s-tools.sh");
        assert!(
            out.status.success(),
            "fetch-k8s-tools.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("bin dir")
                .trim(),
        )
    })
    .clone()
}

/// An `r8s server` on an ephemeral loopback port with its own data dir; stopped on drop.
pub struct TestServer {
    child: Child,
    pub data_dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    /// A server with a node agent lives in a network namespace of its own (see `node.rs`).
    pub node: Option<node::NodeNet>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap())
    }

    pub fn start_in(data_dir: tempfile::TempDir) -> Self {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: tempfile::TempDir, extra_args: &[&str]) -> Self {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra_args);
        Self::launch(data_dir, &args, None)
    }

    /// `r8s server` with its node agent (real containers), in a network namespace of its own.
    pub fn start_node() -> Self {
        Self::start_node_in(tempfile::tempdir().unwrap(), &[])
    }

    pub fn start_node_in(data_dir: tempfile::TempDir, extra_args: &[&str]) -> Self {
        Self::start_node_net(data_dir, node::NodeNet::create(), extra_args)
    }

    /// `r8s server` with its agent on `switch` at `ip`, serving the API there for other nodes.
    pub fn start_node_on(switch: &node::Switch, ip: &str) -> Self {
        Self::start_node_on_with(switch, ip, &[])
    }

    /// [`Self::start_node_on`] with more `r8s server` flags.
    pub fn start_node_on_with(switch: &node::Switch, ip: &str, extra_args: &[&str]) -> Self {
        let net = node::NodeNet::on_switch(switch, ip);
        Self::start_node_net(tempfile::tempdir().unwrap(), net, extra_args)
    }

    fn start_node_net(
        data_dir: tempfile::TempDir,
        net: node::NodeNet,
        extra_args: &[&str],
    ) -> Self {
        let images = data_dir.path().join("agent/images");
        node::test_images(&images);
        // Cluster DNS in tests never forwards to the host's resolvers.
        let mut args = vec![
            "--node-name",
            &net.node_name,
            "--node-ip",
            &net.ip,
            "--dns-forward",
            "none",
        ];
        args.extend_from_slice(extra_args);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::launch(data_dir, &args, Some(net))
    }

    /// A command run inside the server's network namespace, if it has one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        node::command_in(self.node.as_ref(), program)
    }

    fn launch(
        data_dir: tempfile::TempDir,
        extra_args: &[&str],
        net: Option<node::NodeNet>,
    ) -> Self {
        let (child, url) = Self::spawn(data_dir.path(), extra_args, net.as_ref());
        let kubeconfig = data_dir.path().join("admin.kubeconfig");
        Self {
            child,
            data_dir,
            kubeconfig,
            url,
            node: net,
        }
    }

    fn spawn(data_dir: &Path, extra_args: &[&str], net: Option<&node::NodeNet>) -> (Child, String) {
        // A node on a switch serves the API on its address, for the other nodes.
        let bind = net
            .filter(|n| n.switched)
            .map_or("127.0.0.1", |n| n.ip.as_str());
        let mut child = node::command_in(net, R8S)
            .args(["server", "--bind-address", bind, "--https-listen-port", "0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start r8s server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.expect("server output");
            if let Some(address) = line.strip_prefix("r8s API server listening on ") {
                url = Some(format!("https://{address}"));
            }
            if line.starts_with("admin kubeconfig: ") {
                break;
            }
        }
        // Keep reading so the server never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        (child, url.expect("r8s server printed its address"))
    }

    /// Stops the server and hands back its data dir, for restart tests.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.terminate();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// Restarts the server (and its agent) on the same data dir and network namespace; the
    /// node's containers keep running meanwhile.
    pub fn restart(&mut self) {
        self.terminate();
        let net = self.node.as_ref().expect("a node server");
        let args = [
            "--node-name".to_string(),
            net.node_name.clone(),
            "--node-ip".into(),
            net.ip.clone(),
            "--dns-forward".into(),
            "none".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (child, url) = Self::spawn(self.data_dir.path(), &args, self.node.as_ref());
        self.child = child;
        self.url = url;
    }

    fn terminate(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.command(tools_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl with `input` on its stdin.
    pub fn kubectl_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(tools_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().expect("kubectl output")
    }

    /// Creates the objects of a YAML document with `kubectl create -f -`.
    pub fn create(&self, yaml: &str) -> Output {
        self.kubectl_input(&["create", "-f", "-"], yaml)
    }

    pub fn create_ok(&self, yaml: &str) {
        let out = self.create(yaml);
        assert!(
            out.status.success(),
            "kubectl create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs kubectl and returns its stdout, failing the test if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ARGS -o json`, parsed.
    /// Applies a manifest that must be refused; what kubectl said.
    pub fn apply_refused(&self, yaml: &str) -> String {
        let out = self.kubectl_input(&["apply", "-f", "-"], yaml);
        assert!(!out.status.success(), "accepted: {yaml}");
        output_text(&out)
    }

    /// Applies a CustomResourceDefinition and waits until it is Established.
    pub fn apply_crd(&self, yaml: &str, name: &str) {
        let out = self.kubectl_input(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "apply CRD: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let crd = format!("crd/{name}");
        self.kubectl_ok(&["wait", "--for=condition=Established", &crd, "--timeout=30s"]);
    }

    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).expect("kubectl printed JSON")
    }

    /// A client certificate for `user` in `group`, signed by the cluster CA, written to `dir`:
    /// (certificate, key) paths.
    pub fn client_cert(&self, dir: &Path, user: &str, group: &str) -> (PathBuf, PathBuf) {
        let tls = self.data_dir.path().join("server/tls");
        let (key, csr, crt) = (
            dir.join(format!("{user}.key")),
            dir.join(format!("{user}.csr")),
            dir.join(format!("{user}.crt")),
        );
        // rustls takes only X.509 v3 client certificates: give it the extensions that make one.
        let extensions = dir.join("client.ext");
        std::fs::write(
            &extensions,
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        let subject = format!("/O={group}/CN={user}");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
            "-subj",
            &subject,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&tls.join("ca.crt")),
            "-CAkey",
            &s(&tls.join("ca.key")),
            "-CAcreateserial",
            "-extfile",
            &s(&extensions),
            "-days",
            "1",
            "-out",
            &s(&crt),
        ]);
        (crt, key)
    }

    /// curl with the admin client certificate; returns (HTTP code, body).
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let tls = self.data_dir.path().join("server/tls");
        let out = self
            .command("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(tls.join("ca.crt"))
            .arg("--cert")
            .arg(tls.join("admin.crt"))
            .arg("--key")
            .arg(tls.join("admin.key"))
            .args(args)
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').expect("curl printed a code");
        (code.trim().parse().expect("http code"), body.to_owned())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(net) = &self.node
            && self.child.try_wait().ok().flatten().is_none()
        {
            // Let the kubelet stop and remove the pods as it would; what it leaves, the
            // network's teardown removes.
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "--all",
                "-A",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ]);
            let pods = self.data_dir.path().join("agent/pods");
            eventually(std::time::Duration::from_secs(20), || {
                std::fs::read_dir(&pods).map_or(true, |mut d| d.next().is_none())
            });
            let _ = net;
        }
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
        if let Some(net) = self.node.take() {
            net.teardown(self.data_dir.path());
        }
    }
}

/// Polls `check` until it holds or `timeout` passes; returns whether it held.
/// A self-signed certificate and key for `host` in `dir` (`web.crt`, `web.key`), as a site's
/// TLS Secret would hold them.
pub fn self_signed_cert(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join("web.crt"), dir.join("web.key"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={host}")])
        .args(["-addext", &format!("subjectAltName=DNS:{host}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (crt, key)
}

pub fn eventually(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    check()
}

/// What a command printed, stdout then stderr.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `check` for up to 20 seconds, and fails the test naming `what` if it never holds.
pub fn wait_for(what: &str, check: impl FnMut() -> bool) {
    assert!(
        eventually(std::time::Duration::from_secs(20), check),
        "timed out waiting for {what}"
    );
}

/// An `r8s sim nodes` process (hollow nodes `hollow-0`, `hollow-1`, …) registered with a test
/// server; stopped (by its pid) on drop.
pub struct SimNodes {
    child: Child,
}

impl SimNodes {
    pub fn start(server: &TestServer, count: u32) -> Self {
        Self::start_with(server, count, &[])
    }

    /// [`Self::start`] with more `r8s sim nodes` flags.
    pub fn start_with(server: &TestServer, count: u32, extra_args: &[&str]) -> Self {
        let mut child = Command::new(R8S)
            .args([
                "sim",
                "nodes",
                "--count",
                &count.to_string(),
                "--kubeconfig",
            ])
            .arg(&server.kubeconfig)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start r8s sim nodes");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let registered = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("hollow nodes registered"));
        assert!(registered, "r8s sim nodes did not register its nodes");
        std::thread::spawn(move || lines.for_each(drop));
        Self { child }
    }

    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling our own child by its pid.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let _ = self.child.wait();
        }
    }
}

impl Drop for SimNodes {
    fn drop(&mut self) {
        self.stop();
    }
}
