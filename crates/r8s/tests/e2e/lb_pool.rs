//! The built-in load balancer with an address pool (`r8s server --lb-pool`), as MetalLB's L2
//! mode: a LoadBalancer Service gets an address of the pool, one node holds it so ARP on the
//! node network finds it, and a client elsewhere on that network reaches the Service through
//! it. The server is a node on a test switch; the client is another namespace on the switch.

use crate::common;

use std::time::Duration;

use common::node::{NodeNet, Switch};
use common::{TestServer, eventually};
use serde_json::Value;

const SERVER_IP: &str = "10.200.0.1";
const CLIENT_IP: &str = "10.200.0.9";
const POOL: &str = "10.200.0.240/28";
/// The lowest address of the pool: the first Service's.
const FIRST: &str = "10.200.0.240";
const WAIT: Duration = Duration::from_secs(90);

/// A network namespace on the switch with no node in it, removed on drop.
struct Client {
    net: Option<NodeNet>,
    dir: tempfile::TempDir,
}

impl Client {
    fn on(switch: &Switch, ip: &str) -> Self {
        let client = Self {
            net: Some(NodeNet::on_switch(switch, ip)),
            dir: tempfile::tempdir().unwrap(),
        };
        // Learn neighbours from gratuitous ARP, so the node's announcement shows here.
        let out = client
            .command("sysctl")
            .args(["-w", "net.ipv4.conf.all.arp_accept=1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        client
    }

    fn command(&self, program: &str) -> std::process::Command {
        common::node::command_in(self.net.as_ref(), program)
    }

    /// The client's neighbour entry for `ip`, as `ip neigh` prints it.
    fn neighbour(&self, ip: &str) -> String {
        let out = self
            .command("ip")
            .args(["neigh", "show", ip])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// curl from the client: the body, or what curl said.
    fn fetch(&self, url: &str) -> Result<String, String> {
        let out = self
            .command("curl")
            .args(["-sS", "--max-time", "5", url])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(net) = self.net.take() {
            net.teardown(self.dir.path());
        }
    }
}

fn node_ready(server: &TestServer) -> bool {
    let out = server.kubectl(&["get", "nodes", "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|nodes| {
        nodes["items"].as_array().is_some_and(|items| {
            items.iter().any(|n| {
                n["spec"]["podCIDR"].is_string()
                    && n["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    })
}

/// The EXTERNAL-IP column of `kubectl get svc NAME`.
fn external_ip(server: &TestServer, name: &str) -> String {
    let table = server.kubectl_ok(&["get", "svc", name]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let column = header.iter().position(|h| *h == "EXTERNAL-IP");
    column
        .and_then(|c| row.get(c))
        .map_or_else(String::new, |s| (*s).to_owned())
}

/// The node's IPv4 addresses, as `ip -4 -o addr show` prints them.
fn node_addresses(server: &TestServer) -> String {
    let out = server
        .command("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether an event with `reason` about Service `name` was recorded, with a note containing
/// `note`.
fn has_event(server: &TestServer, name: &str, reason: &str, note: &str) -> bool {
    let events = server.get_json(&["events"]);
    events["items"].as_array().into_iter().flatten().any(|e| {
        e["involvedObject"]["kind"] == "Service"
            && e["involvedObject"]["name"] == name
            && e["reason"] == reason
            && e["message"].as_str().is_some_and(|m| m.contains(note))
    })
}

#[test]
fn a_pool_address_is_assigned_announced_served_and_released() {
    let switch = Switch::create();
    let server = TestServer::start_node_on_with(&switch, SERVER_IP, &["--lb-pool", POOL]);
    let client = Client::on(&switch, CLIENT_IP);
    assert!(
        eventually(WAIT, || node_ready(&server)),
        "the node never became Ready"
    );
    server.create_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: nginx
    image: nginx:latest
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 80, name: http}]
    readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere}
spec:
  type: LoadBalancer
  loadBalancerIP: 10.200.0.100
  selector: {app: web}
  ports: [{port: 8080, targetPort: http}]
"#,
    );

    // The pool's lowest address, where kubectl shows it.
    let assigned = eventually(WAIT, || external_ip(&server, "web") == FIRST);
    assert!(
        assigned,
        "web never got {FIRST}: {}",
        server.kubectl_ok(&["get", "svc", "web"])
    );
    assert!(
        eventually(WAIT, || has_event(&server, "web", "IPAllocated", FIRST)),
        "no IPAllocated event for web"
    );
    // An address outside the pool is refused: pending, and a warning says why.
    assert_eq!(external_ip(&server, "elsewhere"), "<pending>");
    assert!(
        eventually(WAIT, || has_event(
            &server,
            "elsewhere",
            "AllocationFailed",
            "10.200.0.100 is not in the pool"
        )),
        "no AllocationFailed event for elsewhere"
    );

    // The only node holds the address on its switch interface, labelled as the announcer's.
    let held = eventually(WAIT, || {
        node_addresses(&server)
            .lines()
            .any(|l| l.contains(&format!("inet {FIRST}/32")) && l.contains(":lb"))
    });
    assert!(
        held,
        "the node never held {FIRST}: {}",
        node_addresses(&server)
    );
    // It told the switch: the client knows where the address is before sending anything.
    let told = eventually(Duration::from_secs(5), || {
        client.neighbour(FIRST).contains("lladdr")
    });
    assert!(
        told,
        "no gratuitous ARP for {FIRST}: {:?}",
        client.neighbour(FIRST)
    );

    // The client on the switch reaches the pod through the pool address.
    let ready = eventually(WAIT, || {
        server.kubectl_ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.status.containerStatuses[0].ready}",
        ]) == "true"
    });
    assert!(ready, "the web pod never became ready");
    let url = format!("http://{FIRST}:8080/");
    let mut last = Err(String::new());
    let served = eventually(WAIT, || {
        last = client.fetch(&url);
        last.as_ref()
            .is_ok_and(|body| body.contains("Welcome to nginx!"))
    });
    assert!(served, "{url} from the client: {last:?}");

    // Deleted, the Service's address leaves the node and stops answering.
    server.kubectl_ok(&["delete", "svc", "web"]);
    let gone = eventually(WAIT, || {
        !node_addresses(&server).contains(&format!("inet {FIRST}/"))
    });
    assert!(
        gone,
        "{FIRST} stayed on the node: {}",
        node_addresses(&server)
    );
    assert!(client.fetch(&url).is_err(), "{url} still answers");
}
