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

fn ruleset(services: &[Service], slices: &[EndpointSlice]) -> Ruleset {
    let services: Vec<Arc<Service>> = services.iter().cloned().map(Arc::new).collect();
    let slices: Vec<Arc<EndpointSlice>> = slices.iter().cloned().map(Arc::new).collect();
    render(&Input {
        node_name: "n1",
        cluster_cidr: "10.244.0.0/16",
        services: &services,
        slices: &slices,
    })
}

fn render_with(services: &[Service], slices: &[EndpointSlice]) -> String {
    ruleset(services, slices).full()
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
        text.contains("elements = { 10.96.0.20 . tcp . 80 : goto svc-"),
        "{text}"
    );
    assert!(
        text.contains("elements = { tcp . 30080 : goto ext-"),
        "{text}"
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
    assert!(!text.contains("10.96.0.20 . tcp"), "{text}");
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

/// Ten web-like services, the first `ready` of them with an endpoint each.
fn fleet(ready: usize, affinity: bool) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..10 {
        let name = format!("web{i}");
        let mut service = web();
        service.metadata.name = Some(name.clone());
        let spec = service.spec.as_mut().unwrap();
        spec.cluster_ip = Some(format!("10.96.0.{}", 20 + i));
        spec.cluster_ips = Some(vec![format!("10.96.0.{}", 20 + i)]);
        spec.ports.as_mut().unwrap()[0].node_port = Some(30080 + i as i32);
        if affinity && i % 2 == 0 {
            spec.session_affinity = Some("ClientIP".into());
        }
        services.push(service);
        if i < ready {
            slices.push(slice(
                &name,
                ("http", 8080),
                json!([{ "addresses": [format!("10.244.0.{}", 5 + i)], "conditions": { "ready": true } }]),
            ));
        }
    }
    (services, slices)
}

/// Runs `steps` of nft input in a network namespace of its own; the table it ends with.
fn applied(steps: &[String]) -> Option<String> {
    let mut script = String::new();
    for (i, step) in steps.iter().enumerate() {
        static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("r8s-rules-{}-{run}-{i}.nft", std::process::id()));
        std::fs::write(&path, step).unwrap();
        script.push_str(&format!("nft -f {} && ", path.display()));
    }
    script.push_str("nft list table ip r8s-proxy");
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .ok()?;
    if !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted")
    {
        eprintln!("no network namespaces here: the check is skipped");
        return None;
    }
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        steps.join("\n----\n")
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_change_is_applied_as_its_difference_and_ends_where_a_full_write_would() {
    let (services, slices) = fleet(10, true);
    let before = ruleset(&services, &slices);
    // Some services lose their endpoints, one goes, one comes, one changes port.
    let (mut services_after, slices_after) = fleet(6, true);
    services_after.remove(3);
    let mut extra = web();
    extra.metadata.name = Some("extra".into());
    extra.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(31000);
    extra.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.99".into());
    extra.spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.0.99".into()]);
    services_after.push(extra);
    services_after[0]
        .spec
        .as_mut()
        .unwrap()
        .ports
        .as_mut()
        .unwrap()[0]
        .port = 81;
    let mut slices_after = slices_after;
    slices_after.push(slice(
        "extra",
        ("http", 8080),
        json!([{ "addresses": ["10.244.0.50"], "conditions": { "ready": true } }]),
    ));
    let after = ruleset(&services_after, &slices_after);
    let changes = after.changes_from(&before);
    assert!(!changes.contains("delete table"), "{changes}");
    assert_eq!(after.changes_from(&after), "");
    // One service losing its endpoint touches only its own pieces.
    let (services_one, slices_one) = fleet(9, true);
    let one = ruleset(&services_one, &slices_one).changes_from(&before);
    assert!(one.lines().all(|l| !l.starts_with("add")), "{one}");
    assert_eq!(
        one.matches("delete chain").count(),
        3,
        "svc, ext, sep: {one}"
    );
    let Some(incremental) = applied(&[before.full(), changes]) else {
        return;
    };
    let whole = applied(&[after.full()]).unwrap();
    // Chains, sets and map elements may be listed in another order: compare sorted lines,
    // one map element per line.
    let blocks = |text: &str| {
        let mut lines: Vec<String> = text
            .replace("elements = {", "elements = {\n")
            .split(['\n', ','])
            .map(|l| l.trim().trim_end_matches('}').trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        blocks(&incremental),
        blocks(&whole),
        "{incremental}\n----\n{whole}"
    );
}
