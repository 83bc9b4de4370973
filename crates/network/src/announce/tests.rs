use serde_json::json;

use super::*;

fn node(name: &str, ip: &str, ready: bool) -> Node {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "status": {
            "addresses": [{ "type": "InternalIP", "address": ip }],
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
        },
    }))
    .unwrap()
}

fn service(name: &str, spec: serde_json::Value, ingress: &[&str]) -> Service {
    let ingress: Vec<_> = ingress.iter().map(|ip| json!({ "ip": ip })).collect();
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": spec,
        "status": { "loadBalancer": { "ingress": ingress } },
    }))
    .unwrap()
}

fn lb(name: &str, ip: &str) -> Service {
    service(name, json!({ "type": "LoadBalancer" }), &[ip])
}

fn ip4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// What `own` announces, knowing only the current nodes' addresses.
fn announced(
    own: &str,
    services: &[Service],
    nodes: &[Node],
    slices: &[EndpointSlice],
) -> BTreeSet<Ipv4Addr> {
    desired(own, services, nodes, slices, &node_addresses(nodes))
}

fn three_nodes() -> Vec<Node> {
    vec![
        node("a", "10.0.0.1", true),
        node("b", "10.0.0.2", true),
        node("c", "10.0.0.3", true),
    ]
}

#[test]
fn every_pool_address_is_announced_by_exactly_one_ready_node() {
    let nodes = three_nodes();
    let services: Vec<Service> = (0..30)
        .map(|i| lb(&format!("s{i}"), &format!("10.0.1.{i}")))
        .collect();
    let mut seen = BTreeMap::new();
    for own in ["a", "b", "c"] {
        for address in announced(own, &services, &nodes, &[]) {
            assert!(
                seen.insert(address, own).is_none(),
                "{address} announced twice"
            );
        }
    }
    assert_eq!(seen.len(), 30);
    // The Services spread over the nodes.
    for own in ["a", "b", "c"] {
        assert!(seen.values().any(|n| *n == own), "{own} announces nothing");
    }
}

#[test]
fn the_choice_depends_only_on_the_ready_nodes_not_their_order() {
    let key = "default/web";
    let chosen = announcer(key, &["a", "b", "c"]);
    assert_eq!(announcer(key, &["c", "a", "b"]), chosen);
    // A node that is not the chosen one leaving changes nothing.
    let other: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|n| Some(*n) != chosen)
        .collect();
    assert_eq!(announcer(key, &[chosen.unwrap(), other[0]]), chosen);
    assert_eq!(announcer(key, &[]), None);
}

#[test]
fn a_node_that_is_not_ready_or_is_excluded_does_not_announce() {
    let services = [lb("web", "10.0.1.1")];
    let mut nodes = three_nodes();
    let chosen = announcer("default/web", &["a", "b", "c"]).unwrap();
    let index = nodes
        .iter()
        .position(|n| n.metadata.name.as_deref() == Some(chosen))
        .unwrap();
    nodes[index] = node(chosen, "10.0.0.9", false);
    assert!(announced(chosen, &services, &nodes, &[]).is_empty());
    let holders: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|own| !announced(own, &services, &nodes, &[]).is_empty())
        .collect();
    assert_eq!(holders.len(), 1);
    nodes[index] = node(chosen, "10.0.0.9", true);
    nodes[index].metadata.labels = Some([(EXCLUDE_LABEL.to_owned(), String::new())].into());
    assert!(announced(chosen, &services, &nodes, &[]).is_empty());
}

#[test]
fn node_addresses_and_other_classes_and_types_are_not_announced() {
    let nodes = three_nodes();
    let services = [
        // The default load balancer: the nodes' own addresses.
        service(
            "nodes",
            json!({ "type": "LoadBalancer" }),
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        ),
        service(
            "classy",
            json!({ "type": "LoadBalancer", "loadBalancerClass": "example.com/lb" }),
            &["10.0.1.1"],
        ),
        service("plain", json!({ "type": "ClusterIP" }), &["10.0.1.2"]),
        service("pending", json!({ "type": "LoadBalancer" }), &[]),
    ];
    for own in ["a", "b", "c"] {
        assert!(announced(own, &services, &nodes, &[]).is_empty(), "{own}");
    }
}

#[test]
fn a_deleted_nodes_address_still_in_a_status_is_not_taken() {
    let mut nodes = three_nodes();
    let seen = node_addresses(&nodes);
    nodes.pop();
    // The default load balancer has not caught up with c's deletion yet.
    let services = [service(
        "nodes",
        json!({ "type": "LoadBalancer" }),
        &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
    )];
    for own in ["a", "b"] {
        assert!(desired(own, &services, &nodes, &[], &seen).is_empty());
    }
}

#[test]
fn a_local_policy_service_is_announced_by_a_node_with_a_ready_endpoint() {
    let nodes = three_nodes();
    let services = [service(
        "web",
        json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local" }),
        &["10.0.1.1"],
    )];
    let slice = |node: &str, ready: bool| -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("web-{node}"),
                "namespace": "default",
                "labels": { SERVICE_NAME_LABEL: "web" },
            },
            "addressType": "IPv4",
            "endpoints": [{ "addresses": ["10.244.0.5"], "nodeName": node, "conditions": { "ready": ready } }],
        }))
        .unwrap()
    };
    for serving in ["a", "b", "c"] {
        let slices = [slice(serving, true)];
        assert_eq!(
            announced(serving, &services, &nodes, &slices),
            BTreeSet::from([ip4("10.0.1.1")])
        );
        for other in ["a", "b", "c"].into_iter().filter(|n| *n != serving) {
            assert!(announced(other, &services, &nodes, &slices).is_empty());
        }
    }
    // No ready endpoint anywhere: nobody draws traffic that would be dropped.
    for own in ["a", "b", "c"] {
        assert!(announced(own, &services, &nodes, &[slice(own, false)]).is_empty());
    }
}

const IP_ADDR_JSON: &str = r#"[
  {"ifindex":1,"ifname":"lo","link_type":"loopback","address":"00:00:00:00:00:00","addr_info":[
    {"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295},
    {"family":"inet","local":"10.96.0.10","prefixlen":32,"scope":"global","label":"lo","valid_life_time":4294967295},
    {"family":"inet6","local":"::1","prefixlen":128,"scope":"host","valid_life_time":4294967295}]},
  {"ifindex":2,"ifname":"eth0","link_type":"ether","address":"02:00:00:00:00:01","addr_info":[
    {"family":"inet","local":"10.0.0.1","prefixlen":24,"scope":"global","label":"eth0","valid_life_time":4294967295},
    {"family":"inet","local":"10.0.0.240","prefixlen":32,"scope":"global","dynamic":true,"label":"eth0:lb","valid_life_time":50},
    {"family":"inet","local":"10.0.0.241","prefixlen":32,"scope":"global","dynamic":true,"label":"eth0:lb","valid_life_time":12}]},
  {"ifindex":3,"ifname":"cni0","link_type":"ether","address":"02:00:00:00:00:02","addr_info":[]}
]"#;

#[test]
fn held_addresses_are_those_labelled_by_the_announcer() {
    let have = Addresses::parse(IP_ADDR_JSON).unwrap();
    assert_eq!(have.device_of(ip4("10.0.0.1")), Some("eth0"));
    assert_eq!(
        have.ethernet.get("eth0"),
        Some(&(2, [0x02, 0, 0, 0, 0, 0x01]))
    );
    assert!(!have.ethernet.contains_key("lo"));
    assert_eq!(
        have.held(),
        BTreeMap::from([
            (ip4("10.0.0.240"), ("eth0", Some(50))),
            (ip4("10.0.0.241"), ("eth0", Some(12))),
        ])
    );
}

#[test]
fn changes_add_new_renew_expiring_and_drop_unwanted_addresses_only() {
    let have = Addresses::parse(IP_ADDR_JSON).unwrap();
    let wanted = BTreeSet::from([
        ip4("10.0.0.240"),
        ip4("10.0.0.242"),
        // Already the node's for another reason: left as it is.
        ip4("10.96.0.10"),
    ]);
    assert_eq!(
        changes(&have, &wanted, "eth0"),
        Changes {
            hold: vec![(ip4("10.0.0.242"), true)],
            drop: vec![(ip4("10.0.0.241"), "eth0".into())],
        }
    );
    // 10.0.0.241 has less than half its lease left: renewed, not re-announced.
    let wanted = BTreeSet::from([ip4("10.0.0.240"), ip4("10.0.0.241")]);
    assert_eq!(
        changes(&have, &wanted, "eth0"),
        Changes {
            hold: vec![(ip4("10.0.0.241"), false)],
            drop: vec![],
        }
    );
    // Nothing wanted: every held address goes, the node's own stay.
    assert_eq!(
        changes(&have, &BTreeSet::new(), "eth0").drop,
        [
            (ip4("10.0.0.240"), "eth0".to_owned()),
            (ip4("10.0.0.241"), "eth0".to_owned())
        ]
    );
}

#[test]
fn a_device_name_too_long_for_a_label_falls_back_to_lo() {
    assert_eq!(holding_device("eth0"), "eth0");
    assert_eq!(holding_device("enp0s31f6abcd"), "lo");
    assert_eq!(holding_device("enp0s31f6abc"), "enp0s31f6abc");
}

#[test]
fn the_announcement_is_a_broadcast_arp_request_for_the_address_itself() {
    let mac = [0x02, 0, 0, 0, 0, 0x01];
    let frame = announcement_frame(mac, ip4("10.0.0.240"));
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        concat!(
            "ffffffffffff",
            "020000000001",
            "0806",
            "0001",
            "0800",
            "06",
            "04",
            "0001",
            "020000000001",
            "0a0000f0",
            "000000000000",
            "0a0000f0",
        )
    );
    assert_eq!(parse_mac("02:00:00:00:00:01\n"), Some(mac));
    assert_eq!(parse_mac("00:00:00:00:00"), None);
}
