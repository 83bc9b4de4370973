use super::*;

fn node(name: &str, ip: &str, is_ready: bool) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "status": {
                "addresses": [{ "type": "InternalIP", "address": ip }],
                "conditions": [{ "type": "Ready", "status": if is_ready { "True" } else { "False" } }],
            },
        }))
        .unwrap(),
    )
}

fn service(type_: &str, class: Option<&str>) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "type": type_, "loadBalancerClass": class, "ports": [{ "port": 80 }] },
    }))
    .unwrap()
}

/// A Service as the cache holds it: `created` orders Services by age, `status` is the
/// ingress it shows.
fn cached(name: &str, created: u32, spec: Value, status: &[&str]) -> Arc<Service> {
    let mut spec = spec;
    spec["ports"] = json!([{ "port": 80 }]);
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": format!("uid-{name}"),
                "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z"),
            },
            "spec": spec,
            "status": { "loadBalancer": { "ingress": ingress(status) } },
        }))
        .unwrap(),
    )
}

fn lb(name: &str, created: u32) -> Arc<Service> {
    cached(name, created, json!({ "type": "LoadBalancer" }), &[])
}

fn pool(text: &str) -> PoolAddresses {
    PoolAddresses::new(Pool::new(&[text.parse().unwrap()]))
}

/// Each decided Service's ingress IPs, by name.
fn ips(decisions: &[Decision]) -> Vec<(String, Vec<String>)> {
    decisions
        .iter()
        .map(|d| {
            let ips = d.ingress.as_array().unwrap();
            (
                d.service.name_any(),
                ips.iter()
                    .map(|i| i["ip"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn notes(decisions: &[Decision]) -> Vec<(String, Note)> {
    decisions
        .iter()
        .filter_map(|d| Some((d.service.name_any(), d.note.clone()?)))
        .collect()
}

#[test]
fn load_balancers_get_the_ready_nodes_addresses() {
    let nodes = [
        node("b", "10.0.0.2", true),
        node("a", "10.0.0.1", true),
        node("c", "10.0.0.3", false),
    ];
    let addresses = node_addresses(&nodes);
    assert_eq!(addresses, ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(
        wanted_ingress(&service("LoadBalancer", None), &addresses).unwrap(),
        json!([{ "ip": "10.0.0.1", "ipMode": "VIP" }, { "ip": "10.0.0.2", "ipMode": "VIP" }])
    );
    // Without a pool, that is what a pass decides.
    let decisions =
        Addresses::new(None).reconcile(&[Arc::new(service("LoadBalancer", None))], &nodes);
    assert_eq!(
        ips(&decisions),
        [("web".into(), vec!["10.0.0.1".into(), "10.0.0.2".into()])]
    );
}

#[test]
fn other_classes_are_left_alone_and_other_types_cleared() {
    let addresses = ["10.0.0.1".to_owned()];
    assert!(wanted_ingress(&service("LoadBalancer", Some("example.com/lb")), &addresses).is_none());
    assert_eq!(
        wanted_ingress(&service("ClusterIP", None), &addresses).unwrap(),
        json!([])
    );
}

#[test]
fn with_a_pool_each_load_balancer_gets_the_lowest_free_address_once() {
    let mut addresses = pool("10.0.0.240/30");
    let services = [
        lb("b", 2),
        lb("a", 1),
        cached(
            "other",
            0,
            json!({ "type": "LoadBalancer", "loadBalancerClass": "example.com/lb" }),
            &[],
        ),
        cached("plain", 0, json!({ "type": "ClusterIP" }), &[]),
    ];
    let decisions = addresses.reconcile(&services);
    assert_eq!(
        ips(&decisions),
        [
            ("a".into(), vec!["10.0.0.240".into()]),
            ("b".into(), vec!["10.0.0.241".into()]),
            ("plain".into(), vec![]),
        ]
    );
    assert_eq!(
        notes(&decisions),
        [
            (
                "a".into(),
                Note {
                    warning: false,
                    reason: IP_ALLOCATED,
                    message: r#"Assigned IP ["10.0.0.240"]"#.into()
                }
            ),
            (
                "b".into(),
                Note {
                    warning: false,
                    reason: IP_ALLOCATED,
                    message: r#"Assigned IP ["10.0.0.241"]"#.into()
                }
            ),
        ]
    );
    // The statuses have not reached the cache yet: the next pass decides the same, quietly.
    let again = addresses.reconcile(&services);
    assert_eq!(ips(&again), ips(&decisions));
    assert!(notes(&again).is_empty());
}

#[test]
fn addresses_are_recovered_from_status_after_a_restart() {
    // A fresh controller over Services that already hold addresses (one outside the pool
    // now, one claimed twice by a status written by hand).
    let services = [
        lb("new", 0),
        cached(
            "kept",
            1,
            json!({ "type": "LoadBalancer" }),
            &["10.0.0.242"],
        ),
        cached(
            "copy",
            3,
            json!({ "type": "LoadBalancer" }),
            &["10.0.0.242"],
        ),
        cached(
            "moved",
            2,
            json!({ "type": "LoadBalancer" }),
            &["192.168.9.9"],
        ),
    ];
    let mut addresses = pool("10.0.0.240/30");
    let decisions = addresses.reconcile(&services);
    assert_eq!(
        ips(&decisions),
        [
            ("new".into(), vec!["10.0.0.240".into()]),
            ("kept".into(), vec!["10.0.0.242".into()]),
            ("moved".into(), vec!["10.0.0.241".into()]),
            ("copy".into(), vec!["10.0.0.243".into()]),
        ]
    );
    // Recovered addresses are not news.
    assert!(!notes(&decisions).iter().any(|(name, _)| name == "kept"));
}

#[test]
fn an_address_is_released_when_its_service_goes_or_stops_balancing() {
    let mut addresses = pool("10.0.0.240/31");
    addresses.reconcile(&[lb("a", 0), lb("b", 1)]);
    assert_eq!(
        addresses.allocator().held_by("uid-a"),
        Some("10.0.0.240".parse().unwrap())
    );
    // a is deleted, b becomes a ClusterIP Service: both addresses are free again.
    let b_plain = cached("b", 1, json!({ "type": "ClusterIP" }), &["10.0.0.241"]);
    let decisions = addresses.reconcile(&[b_plain.clone(), lb("c", 2), lb("d", 3)]);
    assert_eq!(
        ips(&decisions),
        [
            ("c".into(), vec!["10.0.0.240".into()]),
            ("d".into(), vec!["10.0.0.241".into()]),
            ("b".into(), vec![]),
        ]
    );
    assert_eq!(addresses.allocator().held_by("uid-b"), None);
}

#[test]
fn load_balancer_ip_is_honoured_only_inside_the_pool_and_free() {
    let mut addresses = pool("10.0.0.240/29");
    let asks = |name: &str, created: u32, ip: &str| {
        cached(
            name,
            created,
            json!({ "type": "LoadBalancer", "loadBalancerIP": ip }),
            &[],
        )
    };
    let services = [
        asks("a", 0, "10.0.0.245"),
        asks("b", 1, "10.0.0.245"),
        asks("c", 2, "10.0.1.1"),
        lb("d", 3),
    ];
    let decisions = addresses.reconcile(&services);
    assert_eq!(
        ips(&decisions),
        [
            ("a".into(), vec!["10.0.0.245".into()]),
            ("b".into(), vec![]),
            ("c".into(), vec![]),
            ("d".into(), vec!["10.0.0.240".into()]),
        ]
    );
    let warnings: Vec<(String, String)> = notes(&decisions)
        .into_iter()
        .filter(|(_, n)| n.warning && n.reason == ALLOCATION_FAILED)
        .map(|(name, n)| (name, n.message))
        .collect();
    assert_eq!(
        warnings,
        [
            ("b".into(), r#"Failed to allocate IP for "default/b": spec.loadBalancerIP 10.0.0.245 is already in use by default/a"#.into()),
            ("c".into(), r#"Failed to allocate IP for "default/c": spec.loadBalancerIP 10.0.1.1 is not in the pool (10.0.0.240-10.0.0.247)"#.into()),
        ]
    );
    // Asking for another address moves the Service there.
    let decisions = addresses.reconcile(&[asks("a", 0, "10.0.0.246"), lb("d", 3)]);
    assert_eq!(ips(&decisions)[0], ("a".into(), vec!["10.0.0.246".into()]));
    assert_eq!(
        addresses.allocator().held_by("uid-a"),
        Some("10.0.0.246".parse().unwrap())
    );
}

#[test]
fn an_exhausted_pool_leaves_the_service_pending_with_one_warning() {
    let mut addresses = pool("10.0.0.240/32");
    let services = [lb("a", 0), lb("b", 1)];
    let decisions = addresses.reconcile(&services);
    assert_eq!(ips(&decisions)[1], ("b".into(), vec![]));
    let warning = notes(&decisions).pop().unwrap();
    assert_eq!(
        warning,
        (
            "b".into(),
            Note {
                warning: true,
                reason: ALLOCATION_FAILED,
                message: r#"Failed to allocate IP for "default/b": no available IPs: all 1 addresses of the pool (10.0.0.240-10.0.0.240) are in use"#.into(),
            }
        )
    );
    // Still exhausted: no second event.
    assert!(
        notes(&addresses.reconcile(&services))
            .iter()
            .all(|(_, n)| !n.warning)
    );
    // Once a's address is free, b gets it.
    let decisions = addresses.reconcile(&[lb("b", 1)]);
    assert_eq!(ips(&decisions), [("b".into(), vec!["10.0.0.240".into()])]);
}
