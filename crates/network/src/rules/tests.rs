use serde_json::json;

use super::*;

fn service(value: serde_json::Value) -> Service {
    serde_json::from_value(value).unwrap()
}

fn slice(service: &str, port: (&str, i32), endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{service}-abc"),
            "namespace": "default",
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "ports": [{ "name": port.0, "port": port.1, "protocol": "TCP" }],
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn web() -> Service {
    service(json!({
        "metadata": { "name": "web", "namespace": "default" },
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.20",
            "clusterIPs": ["10.96.0.20"],
            "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP" }],
        },
    }))
}

fn render_with(services: &[Service], slices: &[EndpointSlice]) -> String {
    render(&Input {
        node_name: "n1",
        cluster_cidr: "10.244.0.0/16",
        services,
        slices,
    })
}

#[test]
fn cluster_ips_and_node_ports_dnat_to_ready_endpoints_at_random() {
    let slices = [slice(
        "web",
        ("http", 8080),
        json!([
            { "addresses": ["10.244.0.5"], "conditions": { "ready": true }, "nodeName": "n1" },
            { "addresses": ["10.244.1.7"], "conditions": { "ready": true }, "nodeName": "n2" },
            { "addresses": ["10.244.1.8"], "conditions": { "ready": false }, "nodeName": "n2" },
        ]),
    )];
    let text = render_with(&[web()], &slices);
    assert!(text.starts_with("add table ip r8s-proxy\ndelete table ip r8s-proxy\n"));
    assert!(
        text.contains("ip daddr 10.96.0.20 tcp dport 80 goto svc-"),
        "{text}"
    );
    assert!(
        text.contains("fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 30080 goto ext-")
    );
    assert!(text.contains("numgen random mod 2 vmap"), "{text}");
    assert!(text.contains("meta l4proto tcp dnat to 10.244.0.5:8080"));
    assert!(text.contains("meta l4proto tcp dnat to 10.244.1.7:8080"));
    assert!(
        !text.contains("10.244.1.8"),
        "an unready endpoint got traffic: {text}"
    );
    // Hairpin and off-cluster sources are masqueraded; so is NodePort traffic (policy Cluster).
    assert!(text.contains("ip saddr 10.244.0.5 jump mark-for-masquerade"));
    assert!(text.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"));
}

#[test]
fn services_without_endpoints_headless_and_external_names_have_no_rules() {
    let headless = service(json!({
        "metadata": { "name": "db", "namespace": "default" },
        "spec": { "clusterIP": "None", "ports": [{ "port": 5432 }] },
    }));
    let external = service(json!({
        "metadata": { "name": "ext", "namespace": "default" },
        "spec": { "type": "ExternalName", "externalName": "example.org" },
    }));
    let text = render_with(&[web(), headless, external], &[]);
    assert!(!text.contains("dnat"), "{text}");
    assert!(!text.contains("10.96.0.20"), "{text}");
}

#[test]
fn terminating_endpoints_serve_only_when_none_is_ready() {
    let slices = [slice(
        "web",
        ("http", 8080),
        json!([
            { "addresses": ["10.244.0.5"], "conditions": { "ready": false, "serving": true, "terminating": true } },
        ]),
    )];
    let text = render_with(&[web()], &slices);
    assert!(text.contains("dnat to 10.244.0.5:8080"), "{text}");
}

#[test]
fn local_traffic_policies_keep_to_this_nodes_endpoints() {
    let mut local = web();
    let spec = local.spec.as_mut().unwrap();
    spec.external_traffic_policy = Some("Local".into());
    spec.internal_traffic_policy = Some("Local".into());
    let slices = [slice(
        "web",
        ("http", 8080),
        json!([{ "addresses": ["10.244.1.7"], "conditions": { "ready": true }, "nodeName": "n2" }]),
    )];
    let text = render_with(&[local], &slices);
    // No local endpoint: the ClusterIP has no rule, external traffic is dropped.
    assert!(!text.contains("ip daddr 10.96.0.20"), "{text}");
    assert!(text.contains("    drop\n"), "{text}");
}

#[test]
fn client_ip_affinity_remembers_the_endpoint() {
    let mut sticky = web();
    sticky.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
    let slices = [slice(
        "web",
        ("http", 8080),
        json!([{ "addresses": ["10.244.0.5"], "conditions": { "ready": true } }]),
    )];
    let text = render_with(&[sticky], &slices);
    assert!(
        text.contains("flags dynamic,timeout; timeout 10800s;"),
        "{text}"
    );
    assert!(text.contains("update @aff-"), "{text}");
    assert!(text.contains("ip saddr @aff-"), "{text}");
}

/// The kernel's own check of the text (`nft -c`, nothing applied), where nft can run.
#[test]
fn the_ruleset_is_valid_nftables() {
    let slices = [slice(
        "web",
        ("http", 8080),
        json!([
            { "addresses": ["10.244.0.5"], "conditions": { "ready": true } },
            { "addresses": ["10.244.0.6"], "conditions": { "ready": true } },
        ]),
    )];
    let mut sticky = web();
    sticky.metadata.name = Some("sticky".into());
    sticky.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
    let text = render_with(&[web(), sticky], &slices);
    let check = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut check) = check else {
        eprintln!("nft is not installed: the syntax check is skipped");
        return;
    };
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}
