//! The answers, record kind by record kind, against a fixed snapshot modelled on CoreDNS's own
//! handler tests (namespace `testns`).

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use crate::records::{ClusterZone, Records};

const SERIAL: u32 = 1_499_347_823;

fn service(namespace: &str, name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    }))
    .unwrap()
}

fn slice(namespace: &str, service: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{service}-abcde"),
            "namespace": namespace,
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn http() -> Value {
    json!([{ "name": "http", "port": 80, "protocol": "TCP" }])
}

fn services() -> Vec<Service> {
    vec![
        service(
            "testns",
            "svc1",
            json!({ "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": http() }),
        ),
        service(
            "testns",
            "svc6",
            json!({ "clusterIP": "1234:abcd::1", "ports": http() }),
        ),
        service(
            "testns",
            "dual",
            json!({ "clusterIP": "10.0.0.3", "clusterIPs": ["10.0.0.3", "10::3"], "ports": http() }),
        ),
        service(
            "testns",
            "multi",
            json!({ "clusterIP": "10.0.0.4", "type": "NodePort", "ports": [
                { "name": "http", "port": 80, "protocol": "TCP" },
                { "name": "dns", "port": 53, "protocol": "UDP" },
                { "port": 8080 },
            ]}),
        ),
        service(
            "testns",
            "hdls1",
            json!({ "clusterIP": "None", "ports": http() }),
        ),
        service(
            "testns",
            "hdls-empty",
            json!({ "clusterIP": "None", "ports": http() }),
        ),
        service("testns", "hdlsprtls", json!({ "clusterIP": "None" })),
        service(
            "testns",
            "external",
            json!({ "type": "ExternalName", "externalName": "ext.interwebs.test" }),
        ),
        service(
            "testns",
            "external-to-service",
            json!({ "type": "ExternalName", "externalName": "svc1.testns.svc.cluster.local" }),
        ),
        service(
            "kube-system",
            "kube-dns",
            json!({ "clusterIP": "10.96.0.10", "ports": [
                { "name": "dns", "port": 53, "protocol": "UDP" },
                { "name": "dns-tcp", "port": 53, "protocol": "TCP" },
            ]}),
        ),
    ]
}

fn slices() -> Vec<EndpointSlice> {
    let mut ipv6 = slice(
        "testns",
        "hdls1",
        http(),
        json!([{ "addresses": ["5678:abcd::1"], "conditions": { "ready": true } }]),
    );
    ipv6.address_type = "IPv6".to_owned();
    vec![
        slice(
            "testns",
            "hdls1",
            http(),
            json!([
                { "addresses": ["172.0.0.2"], "conditions": { "ready": true } },
                { "addresses": ["172.0.0.3"] },
                { "addresses": ["172.0.0.4"], "hostname": "pet-0", "conditions": { "ready": true } },
                { "addresses": ["172.0.0.9"], "hostname": "sick", "conditions": { "ready": false } },
            ]),
        ),
        ipv6,
        slice(
            "testns",
            "hdls-empty",
            http(),
            json!([{ "addresses": ["172.0.0.30"], "conditions": { "ready": false } }]),
        ),
        slice(
            "testns",
            "hdlsprtls",
            json!([]),
            json!([{ "addresses": ["172.0.0.20"] }]),
        ),
        slice(
            "testns",
            "svc1",
            http(),
            json!([{ "addresses": ["172.0.1.1"], "conditions": { "ready": true } }]),
        ),
    ]
}

fn records() -> Records {
    let zone = ClusterZone::new("cluster.local", 5).unwrap();
    Records::new(zone, services(), slices(), SERIAL)
}

fn query(name: &str, query_type: RecordType) -> Message {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), query_type));
    query
}

fn ask(records: &Records, name: &str, query_type: RecordType) -> Message {
    let query = query(name, query_type);
    let response = records
        .answer(&query)
        .unwrap_or_else(|| panic!("{name} {query_type} was not answered"));
    assert_eq!(response.id, query.id);
    assert_eq!(response.queries, query.queries);
    assert!(response.recursion_desired);
    response
}

fn show(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
        .collect()
}

/// An authoritative NOERROR answer with exactly these records.
#[track_caller]
fn assert_answer(response: &Message, expected: &[&str]) {
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert!(response.authoritative);
    assert_eq!(show(&response.answers), expected);
    assert!(response.authorities.is_empty());
}

/// NODATA: NOERROR, no answer, the zone's SOA in the authority section.
#[track_caller]
fn assert_nodata(response: &Message) {
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert!(response.authoritative);
    assert!(response.answers.is_empty(), "{:?}", show(&response.answers));
    assert_soa_authority(response);
}

#[track_caller]
fn assert_nxdomain(response: &Message) {
    assert_eq!(response.response_code, ResponseCode::NXDomain);
    assert!(response.authoritative);
    assert!(response.answers.is_empty(), "{:?}", show(&response.answers));
    assert_soa_authority(response);
}

#[track_caller]
fn assert_soa_authority(response: &Message) {
    assert_eq!(
        show(&response.authorities),
        [
            "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1499347823 7200 1800 86400 5"
        ]
    );
}

#[test]
fn cluster_ip_service_answers_its_cluster_ip() {
    let response = ask(&records(), "svc1.testns.svc.cluster.local.", RecordType::A);
    assert_answer(&response, &["svc1.testns.svc.cluster.local. 5 A 10.0.0.1"]);
}

#[test]
fn node_port_service_answers_like_cluster_ip() {
    let response = ask(&records(), "multi.testns.svc.cluster.local.", RecordType::A);
    assert_answer(&response, &["multi.testns.svc.cluster.local. 5 A 10.0.0.4"]);
}

#[test]
fn ipv6_service_answers_aaaa() {
    let response = ask(
        &records(),
        "svc6.testns.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_answer(
        &response,
        &["svc6.testns.svc.cluster.local. 5 AAAA 1234:abcd::1"],
    );
}

#[test]
fn dual_stack_service_answers_each_family() {
    let records = records();
    let a = ask(&records, "dual.testns.svc.cluster.local.", RecordType::A);
    assert_answer(&a, &["dual.testns.svc.cluster.local. 5 A 10.0.0.3"]);
    let aaaa = ask(&records, "dual.testns.svc.cluster.local.", RecordType::AAAA);
    assert_answer(&aaaa, &["dual.testns.svc.cluster.local. 5 AAAA 10::3"]);
}

#[test]
fn missing_family_is_nodata_with_soa() {
    let response = ask(
        &records(),
        "svc1.testns.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_nodata(&response);
}

#[test]
fn missing_service_is_nxdomain_with_soa() {
    let records = records();
    assert_nxdomain(&ask(
        &records,
        "svc0.testns.svc.cluster.local.",
        RecordType::A,
    ));
    assert_nxdomain(&ask(
        &records,
        "svc0.testns.svc.cluster.local.",
        RecordType::AAAA,
    ));
    assert_nxdomain(&ask(
        &records,
        "svc1.nons.svc.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn search_path_expansions_of_other_names_are_nxdomain() {
    let records = records();
    for name in [
        "example.com.testns.svc.cluster.local.",
        "example.com.svc.cluster.local.",
        "example.com.cluster.local.",
        "svc1.cluster.local.",
    ] {
        assert_nxdomain(&ask(&records, name, RecordType::A));
    }
}

#[test]
fn zone_apex_and_structural_names_exist_without_data() {
    let records = records();
    for name in [
        "cluster.local.",
        "svc.cluster.local.",
        "pod.cluster.local.",
        "testns.svc.cluster.local.",
        "testns.pod.cluster.local.",
    ] {
        assert_nodata(&ask(&records, name, RecordType::A));
    }
}

#[test]
fn unknown_namespace_is_nxdomain() {
    assert_nxdomain(&ask(&records(), "nons.svc.cluster.local.", RecordType::A));
}

#[test]
fn soa_is_answered_at_the_apex_only() {
    let records = records();
    let apex = ask(&records, "cluster.local.", RecordType::SOA);
    assert_answer(
        &apex,
        &[
            "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1499347823 7200 1800 86400 5",
        ],
    );
    assert_nodata(&ask(
        &records,
        "svc1.testns.svc.cluster.local.",
        RecordType::SOA,
    ));
    assert_nxdomain(&ask(
        &records,
        "nope.testns.svc.cluster.local.",
        RecordType::SOA,
    ));
}

#[test]
fn ns_at_the_apex_names_ns_dns_with_the_kube_dns_address() {
    let records = records();
    let response = ask(&records, "cluster.local.", RecordType::NS);
    assert_answer(&response, &["cluster.local. 5 NS ns.dns.cluster.local."]);
    assert_eq!(
        show(&response.additionals),
        ["ns.dns.cluster.local. 5 A 10.96.0.10"]
    );
    let a = ask(&records, "ns.dns.cluster.local.", RecordType::A);
    assert_answer(&a, &["ns.dns.cluster.local. 5 A 10.96.0.10"]);
    assert_nodata(&ask(&records, "svc.cluster.local.", RecordType::NS));
    assert_nxdomain(&ask(&records, "foo.svc.cluster.local.", RecordType::NS));
}

#[test]
fn headless_service_answers_its_ready_endpoints() {
    let records = records();
    let a = ask(&records, "hdls1.testns.svc.cluster.local.", RecordType::A);
    assert_answer(
        &a,
        &[
            "hdls1.testns.svc.cluster.local. 5 A 172.0.0.2",
            "hdls1.testns.svc.cluster.local. 5 A 172.0.0.3",
            "hdls1.testns.svc.cluster.local. 5 A 172.0.0.4",
        ],
    );
    let aaaa = ask(
        &records,
        "hdls1.testns.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_answer(
        &aaaa,
        &["hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1"],
    );
}

#[test]
fn headless_service_without_ready_endpoints_is_nxdomain() {
    let records = records();
    assert_nxdomain(&ask(
        &records,
        "hdls-empty.testns.svc.cluster.local.",
        RecordType::A,
    ));
    assert_nxdomain(&ask(
        &records,
        "sick.hdls1.testns.svc.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn headless_endpoints_resolve_by_hostname_or_dashed_ip() {
    let records = records();
    let pet = ask(
        &records,
        "pet-0.hdls1.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(
        &pet,
        &["pet-0.hdls1.testns.svc.cluster.local. 5 A 172.0.0.4"],
    );
    let dashed = ask(
        &records,
        "172-0-0-2.hdls1.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(
        &dashed,
        &["172-0-0-2.hdls1.testns.svc.cluster.local. 5 A 172.0.0.2"],
    );
    let v6 = ask(
        &records,
        "5678-abcd--1.hdls1.testns.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_answer(
        &v6,
        &["5678-abcd--1.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1"],
    );
    // An endpoint with a hostname is named by it only.
    assert_nxdomain(&ask(
        &records,
        "172-0-0-4.hdls1.testns.svc.cluster.local.",
        RecordType::A,
    ));
    assert_nxdomain(&ask(
        &records,
        "bogus.hdls1.testns.svc.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn portless_headless_service_has_addresses_but_no_srv() {
    let records = records();
    let a = ask(
        &records,
        "hdlsprtls.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(&a, &["hdlsprtls.testns.svc.cluster.local. 5 A 172.0.0.20"]);
    let endpoint = ask(
        &records,
        "172-0-0-20.hdlsprtls.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(
        &endpoint,
        &["172-0-0-20.hdlsprtls.testns.svc.cluster.local. 5 A 172.0.0.20"],
    );
    assert_nodata(&ask(
        &records,
        "hdlsprtls.testns.svc.cluster.local.",
        RecordType::SRV,
    ));
}

#[test]
fn endpoints_of_a_cluster_ip_service_resolve_by_name_too() {
    let response = ask(
        &records(),
        "172-0-1-1.svc1.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(
        &response,
        &["172-0-1-1.svc1.testns.svc.cluster.local. 5 A 172.0.1.1"],
    );
}

#[test]
fn srv_for_a_named_port_targets_the_service() {
    let response = ask(
        &records(),
        "_http._tcp.svc1.testns.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_answer(
        &response,
        &[
            "_http._tcp.svc1.testns.svc.cluster.local. 5 SRV 0 100 80 svc1.testns.svc.cluster.local.",
        ],
    );
    assert_eq!(
        show(&response.additionals),
        ["svc1.testns.svc.cluster.local. 5 A 10.0.0.1"]
    );
}

#[test]
fn srv_on_the_service_name_lists_every_port() {
    let response = ask(
        &records(),
        "multi.testns.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_answer(
        &response,
        &[
            "multi.testns.svc.cluster.local. 5 SRV 0 33 80 multi.testns.svc.cluster.local.",
            "multi.testns.svc.cluster.local. 5 SRV 0 33 53 multi.testns.svc.cluster.local.",
            "multi.testns.svc.cluster.local. 5 SRV 0 33 8080 multi.testns.svc.cluster.local.",
        ],
    );
    assert_eq!(
        show(&response.additionals),
        ["multi.testns.svc.cluster.local. 5 A 10.0.0.4"]
    );
}

#[test]
fn srv_of_a_dual_stack_service_carries_both_addresses() {
    let response = ask(
        &records(),
        "dual.testns.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_answer(
        &response,
        &["dual.testns.svc.cluster.local. 5 SRV 0 50 80 dual.testns.svc.cluster.local."],
    );
    assert_eq!(
        show(&response.additionals),
        [
            "dual.testns.svc.cluster.local. 5 A 10.0.0.3",
            "dual.testns.svc.cluster.local. 5 AAAA 10::3",
        ]
    );
}

#[test]
fn srv_matches_port_name_and_protocol() {
    let records = records();
    let dns = ask(
        &records,
        "_dns._udp.multi.testns.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_answer(
        &dns,
        &[
            "_dns._udp.multi.testns.svc.cluster.local. 5 SRV 0 100 53 multi.testns.svc.cluster.local.",
        ],
    );
    assert_nxdomain(&ask(
        &records,
        "_dns._tcp.multi.testns.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_nxdomain(&ask(
        &records,
        "_https._tcp.svc1.testns.svc.cluster.local.",
        RecordType::SRV,
    ));
    // A port-and-protocol name also answers A, as in CoreDNS.
    let a = ask(
        &records,
        "_http._tcp.svc1.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(
        &a,
        &["_http._tcp.svc1.testns.svc.cluster.local. 5 A 10.0.0.1"],
    );
}

#[test]
fn headless_srv_has_one_record_per_endpoint() {
    let response = ask(
        &records(),
        "_http._tcp.hdls1.testns.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_answer(
        &response,
        &[
            "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 25 80 172-0-0-2.hdls1.testns.svc.cluster.local.",
            "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 25 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
            "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 25 80 pet-0.hdls1.testns.svc.cluster.local.",
            "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 25 80 5678-abcd--1.hdls1.testns.svc.cluster.local.",
        ],
    );
    assert_eq!(
        show(&response.additionals),
        [
            "172-0-0-2.hdls1.testns.svc.cluster.local. 5 A 172.0.0.2",
            "172-0-0-3.hdls1.testns.svc.cluster.local. 5 A 172.0.0.3",
            "pet-0.hdls1.testns.svc.cluster.local. 5 A 172.0.0.4",
            "5678-abcd--1.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1",
        ]
    );
}

#[test]
fn external_name_service_answers_a_cname() {
    let records = records();
    let cname = ask(
        &records,
        "external.testns.svc.cluster.local.",
        RecordType::CNAME,
    );
    assert_answer(
        &cname,
        &["external.testns.svc.cluster.local. 5 CNAME ext.interwebs.test."],
    );
    // For an address query the chain leaves the zone: the server resolves the rest upstream.
    let a = ask(
        &records,
        "external.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(
        &a,
        &["external.testns.svc.cluster.local. 5 CNAME ext.interwebs.test."],
    );
    assert_eq!(
        records.external_alias(&a),
        Some(Name::from_ascii("ext.interwebs.test.").unwrap())
    );
    assert_nodata(&ask(
        &records,
        "external.testns.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_nxdomain(&ask(
        &records,
        "endpoint.external.testns.svc.cluster.local.",
        RecordType::CNAME,
    ));
    assert_nxdomain(&ask(
        &records,
        "_http._tcp.external.testns.svc.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn external_name_inside_the_zone_is_followed() {
    let records = records();
    let a = ask(
        &records,
        "external-to-service.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(
        &a,
        &[
            "external-to-service.testns.svc.cluster.local. 5 CNAME svc1.testns.svc.cluster.local.",
            "svc1.testns.svc.cluster.local. 5 A 10.0.0.1",
        ],
    );
    assert_eq!(records.external_alias(&a), None);
}

#[test]
fn cname_query_for_a_cluster_ip_service_is_nodata() {
    assert_nodata(&ask(
        &records(),
        "svc1.testns.svc.cluster.local.",
        RecordType::CNAME,
    ));
}

#[test]
fn pod_names_answer_the_ip_they_spell() {
    let records = records();
    let v4 = ask(
        &records,
        "10-244-1-5.anyns.pod.cluster.local.",
        RecordType::A,
    );
    assert_answer(&v4, &["10-244-1-5.anyns.pod.cluster.local. 5 A 10.244.1.5"]);
    let v6 = ask(
        &records,
        "fd00--1.anyns.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_answer(&v6, &["fd00--1.anyns.pod.cluster.local. 5 AAAA fd00::1"]);
    assert_nodata(&ask(
        &records,
        "fd00--1.anyns.pod.cluster.local.",
        RecordType::A,
    ));
    assert_nodata(&ask(
        &records,
        "10-244-1-5.anyns.pod.cluster.local.",
        RecordType::AAAA,
    ));
    assert_nxdomain(&ask(
        &records,
        "10-244-1-256.testns.pod.cluster.local.",
        RecordType::A,
    ));
    assert_nxdomain(&ask(
        &records,
        "my-pod.testns.pod.cluster.local.",
        RecordType::A,
    ));
    assert_nxdomain(&ask(
        &records,
        "x.10-244-1-5.testns.pod.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn ptr_for_a_cluster_ip_names_the_service() {
    let response = ask(&records(), "1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_answer(
        &response,
        &["1.0.0.10.in-addr.arpa. 5 PTR svc1.testns.svc.cluster.local."],
    );
}

#[test]
fn ptr_for_an_endpoint_names_its_hostname() {
    let records = records();
    let pet = ask(&records, "4.0.0.172.in-addr.arpa.", RecordType::PTR);
    assert_answer(
        &pet,
        &["4.0.0.172.in-addr.arpa. 5 PTR pet-0.hdls1.testns.svc.cluster.local."],
    );
    let dashed = ask(&records, "2.0.0.172.in-addr.arpa.", RecordType::PTR);
    assert_answer(
        &dashed,
        &["2.0.0.172.in-addr.arpa. 5 PTR 172-0-0-2.hdls1.testns.svc.cluster.local."],
    );
    let v6_name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa.";
    let v6 = ask(&records, v6_name, RecordType::PTR);
    assert_answer(
        &v6,
        &[&format!(
            "{v6_name} 5 PTR 5678-abcd--1.hdls1.testns.svc.cluster.local."
        )],
    );
}

#[test]
fn ptr_for_a_service_ipv6_cluster_ip() {
    let name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa.";
    let response = ask(&records(), name, RecordType::PTR);
    assert_answer(
        &response,
        &[&format!("{name} 5 PTR svc6.testns.svc.cluster.local.")],
    );
}

#[test]
fn reverse_names_nobody_owns_are_left_to_upstream() {
    let records = records();
    for (name, query_type) in [
        ("8.8.8.8.in-addr.arpa.", RecordType::PTR),
        ("9.0.0.172.in-addr.arpa.", RecordType::PTR), // not ready
        ("0.10.in-addr.arpa.", RecordType::PTR),
        ("1.0.0.10.in-addr.arpa.", RecordType::A),
    ] {
        assert!(records.answer(&query(name, query_type)).is_none(), "{name}");
    }
}

#[test]
fn names_outside_the_cluster_domain_are_left_to_upstream() {
    let records = records();
    for name in ["example.com.", "local.", "cluster.local.example.com.", "."] {
        assert!(
            records.answer(&query(name, RecordType::A)).is_none(),
            "{name}"
        );
    }
}

#[test]
fn names_are_case_insensitive_and_keep_the_askers_case() {
    let records = records();
    let a = ask(&records, "SVC1.TestNS.svc.Cluster.Local.", RecordType::A);
    assert_answer(&a, &["SVC1.TestNS.svc.Cluster.Local. 5 A 10.0.0.1"]);
    let srv = ask(
        &records,
        "_HTTP._Tcp.Svc1.testns.SVC.cluster.local.",
        RecordType::SRV,
    );
    assert_answer(
        &srv,
        &[
            "_HTTP._Tcp.Svc1.testns.SVC.cluster.local. 5 SRV 0 100 80 svc1.testns.svc.cluster.local.",
        ],
    );
    let pet = ask(
        &records,
        "PET-0.hdls1.testns.svc.cluster.local.",
        RecordType::A,
    );
    assert_answer(
        &pet,
        &["PET-0.hdls1.testns.svc.cluster.local. 5 A 172.0.0.4"],
    );
    let ptr = ask(&records, "1.0.0.10.IN-ADDR.ARPA.", RecordType::PTR);
    assert_answer(
        &ptr,
        &["1.0.0.10.IN-ADDR.ARPA. 5 PTR svc1.testns.svc.cluster.local."],
    );
}

#[test]
fn dns_version_is_a_txt_record() {
    let records = records();
    let txt = ask(&records, "dns-version.cluster.local.", RecordType::TXT);
    assert_answer(&txt, &["dns-version.cluster.local. 28800 TXT 1.1.0"]);
    assert_nodata(&ask(
        &records,
        "svc1.testns.svc.cluster.local.",
        RecordType::TXT,
    ));
    assert_nxdomain(&ask(
        &records,
        "svc0.testns.svc.cluster.local.",
        RecordType::TXT,
    ));
}

#[test]
fn other_types_are_nodata_or_nxdomain_by_name() {
    let records = records();
    assert_nodata(&ask(
        &records,
        "svc1.testns.svc.cluster.local.",
        RecordType::MX,
    ));
    assert_nxdomain(&ask(
        &records,
        "svc0.testns.svc.cluster.local.",
        RecordType::MX,
    ));
    assert_nodata(&ask(
        &records,
        "svc1.testns.svc.cluster.local.",
        RecordType::PTR,
    ));
}

#[test]
fn names_longer_than_any_record_are_nxdomain() {
    let records = records();
    assert_nxdomain(&ask(
        &records,
        "a._http._tcp.svc1.testns.svc.cluster.local.",
        RecordType::A,
    ));
    assert_nxdomain(&ask(
        &records,
        "svc1.testns.other.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn zone_transfers_are_refused() {
    let response = ask(&records(), "cluster.local.", RecordType::AXFR);
    assert_eq!(response.response_code, ResponseCode::Refused);
    assert!(response.answers.is_empty() && response.authorities.is_empty());
}

#[test]
fn unsynced_records_answer_servfail_for_cluster_names() {
    let records = Records::unsynced(ClusterZone::new("cluster.local", 5).unwrap());
    let response = ask(&records, "svc1.testns.svc.cluster.local.", RecordType::A);
    assert_eq!(response.response_code, ResponseCode::ServFail);
    assert!(
        records
            .answer(&query("example.com.", RecordType::A))
            .is_none()
    );
}

#[test]
fn malformed_queries_are_answered_with_an_error() {
    let records = records();
    let mut two = query("svc1.testns.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("svc6.testns.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        records.answer(&two).unwrap().response_code,
        ResponseCode::FormErr
    );
    let mut none = query("svc1.testns.svc.cluster.local.", RecordType::A);
    none.queries.clear();
    assert_eq!(
        records.answer(&none).unwrap().response_code,
        ResponseCode::FormErr
    );
    let mut update = query("cluster.local.", RecordType::SOA);
    update.metadata.op_code = OpCode::Update;
    assert_eq!(
        records.answer(&update).unwrap().response_code,
        ResponseCode::NotImp
    );
}

#[test]
fn other_classes_in_the_zone_are_refused() {
    let mut chaos = query("svc1.testns.svc.cluster.local.", RecordType::A);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let response = records().answer(&chaos).unwrap();
    assert_eq!(response.response_code, ResponseCode::Refused);
}

#[test]
fn ttl_and_domain_come_from_the_zone() {
    let zone = ClusterZone::new("Corp.Example.", 30).unwrap();
    let records = Records::new(zone, services(), slices(), 7);
    let a = ask(&records, "svc1.testns.svc.corp.example.", RecordType::A);
    assert_eq!(
        show(&a.answers),
        ["svc1.testns.svc.corp.example. 30 A 10.0.0.1"]
    );
    let missing = ask(&records, "svc0.testns.svc.corp.example.", RecordType::A);
    assert_eq!(
        show(&missing.authorities),
        ["corp.example. 30 SOA ns.dns.corp.example. hostmaster.corp.example. 7 7200 1800 86400 30"]
    );
    assert!(
        records
            .answer(&query("svc1.testns.svc.cluster.local.", RecordType::A))
            .is_none()
    );
}

#[test]
fn ttl_is_capped_at_an_hour_and_the_soa_ttl_at_five_minutes() {
    let zone = ClusterZone::new("cluster.local", 86400).unwrap();
    let records = Records::new(zone, services(), slices(), 7);
    let a = ask(&records, "svc1.testns.svc.cluster.local.", RecordType::A);
    assert_eq!(a.answers[0].ttl, 3600);
    let missing = ask(&records, "svc0.testns.svc.cluster.local.", RecordType::A);
    assert_eq!(missing.authorities[0].ttl, 300);
    let RData::SOA(soa) = &missing.authorities[0].data else {
        panic!("not an SOA");
    };
    assert_eq!(soa.minimum, 3600);
}

#[test]
fn invalid_cluster_domains_are_rejected() {
    assert!(ClusterZone::new("", 5).is_err());
    assert!(ClusterZone::new(".", 5).is_err());
    assert!(ClusterZone::new(&"a".repeat(64), 5).is_err());
}
