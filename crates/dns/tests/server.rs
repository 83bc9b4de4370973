//! The server over real sockets on 127.0.0.1: cluster names from a snapshot over UDP and TCP,
//! other names forwarded to a stub upstream started here, and nothing leaving the loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use r8s_dns::{ClusterZone, Records, Sockets, serve_records};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(3);
/// What the stub upstream answers for every name it knows.
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn services(extra: &[(&str, &str)]) -> Vec<Service> {
    let mut services = vec![
        json!({
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "clusterIP": "10.96.0.20", "ports": [{ "name": "http", "port": 80 }] },
        }),
        json!({
            "metadata": { "name": "outside", "namespace": "default" },
            "spec": { "type": "ExternalName", "externalName": "ext.example" },
        }),
        json!({
            "metadata": { "name": "many", "namespace": "default" },
            "spec": { "clusterIP": "None" },
        }),
    ];
    for (name, ip) in extra {
        services.push(json!({
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "clusterIP": ip, "ports": [{ "port": 80 }] },
        }));
    }
    services
        .into_iter()
        .map(|s| serde_json::from_value(s).unwrap())
        .collect()
}

/// Sixty endpoints: more A records than fit in a 512-byte UDP answer.
fn slices() -> Vec<EndpointSlice> {
    let endpoints: Vec<_> = (1..=60)
        .map(|i| json!({ "addresses": [format!("10.244.0.{i}")] }))
        .collect();
    vec![
        serde_json::from_value(json!({
            "metadata": {
                "name": "many-1", "namespace": "default",
                "labels": { "kubernetes.io/service-name": "many" },
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
        }))
        .unwrap(),
    ]
}

fn records(extra: &[(&str, &str)]) -> Arc<Records> {
    let zone = ClusterZone::new("cluster.local", 5).unwrap();
    Arc::new(Records::new(zone, services(extra), slices(), 1))
}

/// A running server and what it needs kept alive.
struct Server {
    addr: SocketAddr,
    records: watch::Sender<Arc<Records>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(upstream: Vec<SocketAddr>) -> Server {
    let sockets = Sockets::bind(&["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    let addr = sockets.local_addrs().unwrap()[0];
    let (records, receiver) = watch::channel(records(&[]));
    let task = tokio::spawn(serve_records(sockets, receiver, upstream));
    Server {
        addr,
        records,
        task,
    }
}

/// A stand-in upstream resolver on 127.0.0.1: `A 192.0.2.1` for any name, except
/// `big.example.` (truncated over UDP, three addresses over TCP) and `slow.example.` (never
/// answered).
struct Upstream {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn upstream_answer(query: &Message, over_tcp: bool) -> Option<Message> {
    let question = query.queries.first()?;
    let name = question.name().to_ascii();
    if name == "slow.example." {
        return None;
    }
    let mut response = Message::response(query.id, query.op_code);
    response.metadata.recursion_available = true;
    response.add_query(question.clone());
    if name == "big.example." && !over_tcp {
        response.metadata.truncation = true;
        return Some(response);
    }
    let count = if name == "big.example." { 3 } else { 1 };
    for i in 0..count {
        let ip = Ipv4Addr::new(192, 0, 2, 1 + i);
        response.add_answer(Record::from_rdata(
            question.name().clone(),
            60,
            RData::A(ip.into()),
        ));
    }
    Some(response)
}

async fn start_upstream() -> Upstream {
    // The UDP port's TCP twin may already be someone's ephemeral port: try again.
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0; 65535];
        loop {
            let Ok((len, peer)) = udp.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if let Some(response) = upstream_answer(&query, false) {
                let _ = udp.send_to(&response.to_vec().unwrap(), peer).await;
            }
        }
    });
    let tcp_task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = tcp.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(query) = read_framed(&mut stream).await else {
                    return;
                };
                if let Some(response) = upstream_answer(&query, true) {
                    let _ = write_framed(&mut stream, &response).await;
                }
            });
        }
    });
    Upstream {
        addr,
        tasks: vec![udp_task, tcp_task],
    }
}

async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Message> {
    let mut len = [0; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(std::io::Error::other)
}

async fn write_framed(stream: &mut TcpStream, message: &Message) -> std::io::Result<()> {
    let bytes = message.to_vec().map_err(std::io::Error::other)?;
    let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await
}

fn query(name: &str, query_type: RecordType) -> Message {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), query_type));
    query
}

async fn ask_udp(server: SocketAddr, query: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0; 65535];
    let len = timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("no UDP answer in time")
        .unwrap();
    let response = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(response.id, query.id);
    assert_eq!(response.message_type, MessageType::Response);
    response
}

async fn ask_tcp(server: SocketAddr, query: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    write_framed(&mut stream, query).await.unwrap();
    let response = timeout(WAIT, read_framed(&mut stream))
        .await
        .expect("no TCP answer in time")
        .unwrap();
    assert_eq!(response.id, query.id);
    response
}

fn addresses(response: &Message) -> Vec<String> {
    response
        .answers
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect()
}

#[tokio::test]
async fn cluster_names_are_answered_over_udp_and_tcp() {
    let upstream = start_upstream().await;
    let server = start(vec![upstream.addr]).await;
    let query = query("web.default.svc.cluster.local.", RecordType::A);
    for response in [
        ask_udp(server.addr, &query).await,
        ask_tcp(server.addr, &query).await,
    ] {
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert!(response.authoritative);
        assert!(response.recursion_available);
        assert_eq!(addresses(&response), ["A 10.96.0.20"]);
    }
}

#[tokio::test]
async fn missing_cluster_names_are_nxdomain_over_the_wire() {
    let server = start(Vec::new()).await;
    let response = ask_udp(
        server.addr,
        &query("nope.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(response.response_code, ResponseCode::NXDomain);
    assert_eq!(response.authorities[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn other_names_are_forwarded_upstream() {
    let upstream = start_upstream().await;
    let server = start(vec![upstream.addr]).await;
    let query = query("www.example.", RecordType::A);
    for response in [
        ask_udp(server.addr, &query).await,
        ask_tcp(server.addr, &query).await,
    ] {
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert!(!response.authoritative);
        assert!(response.recursion_available);
        assert_eq!(addresses(&response), [format!("A {UPSTREAM_IP}")]);
    }
}

#[tokio::test]
async fn truncated_upstream_answers_are_retried_over_tcp() {
    let upstream = start_upstream().await;
    let server = start(vec![upstream.addr]).await;
    let response = ask_udp(server.addr, &query("big.example.", RecordType::A)).await;
    assert!(!response.truncation);
    assert_eq!(
        addresses(&response),
        ["A 192.0.2.1", "A 192.0.2.2", "A 192.0.2.3"]
    );
}

#[tokio::test]
async fn external_name_targets_are_resolved_upstream() {
    let upstream = start_upstream().await;
    let server = start(vec![upstream.addr]).await;
    let response = ask_udp(
        server.addr,
        &query("outside.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&response),
        ["CNAME ext.example.", &format!("A {UPSTREAM_IP}")]
    );
}

#[tokio::test]
async fn without_upstream_other_names_are_refused() {
    let server = start(Vec::new()).await;
    let response = ask_udp(server.addr, &query("www.example.", RecordType::A)).await;
    assert_eq!(response.response_code, ResponseCode::Refused);
    assert!(!response.recursion_available);
    // The cluster's own names still answer.
    let web = ask_tcp(
        server.addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&web), ["A 10.96.0.20"]);
}

#[tokio::test]
async fn a_slow_upstream_does_not_hold_up_other_queries() {
    let upstream = start_upstream().await;
    let server = start(vec![upstream.addr]).await;
    let stuck = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let slow = query("slow.example.", RecordType::A);
    stuck
        .send_to(&slow.to_vec().unwrap(), server.addr)
        .await
        .unwrap();
    let answered = timeout(Duration::from_secs(1), async {
        let cluster = ask_udp(
            server.addr,
            &query("web.default.svc.cluster.local.", RecordType::A),
        )
        .await;
        let forwarded = ask_udp(server.addr, &query("www.example.", RecordType::A)).await;
        (cluster, forwarded)
    })
    .await
    .expect("queries waited behind the slow one");
    assert_eq!(addresses(&answered.0), ["A 10.96.0.20"]);
    assert_eq!(addresses(&answered.1), [format!("A {UPSTREAM_IP}")]);
    // The slow query itself ends in SERVFAIL once the upstream attempts time out.
    let mut buf = vec![0; 65535];
    let len = timeout(Duration::from_secs(6), stuck.recv(&mut buf))
        .await
        .expect("the slow query was never answered")
        .unwrap();
    let response = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(response.id, slow.id);
    assert_eq!(response.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let server = start(Vec::new()).await;
    let query = query("many.default.svc.cluster.local.", RecordType::A);
    let udp = ask_udp(server.addr, &query).await;
    assert!(udp.truncation);
    assert!(udp.answers.is_empty());
    let tcp = ask_tcp(server.addr, &query).await;
    assert!(!tcp.truncation);
    assert_eq!(tcp.answers.len(), 60);
}

#[tokio::test]
async fn edns_lets_a_larger_udp_answer_through() {
    let server = start(Vec::new()).await;
    let mut query = query("many.default.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    query.set_edns(edns);
    let response = ask_udp(server.addr, &query).await;
    assert!(!response.truncation);
    assert_eq!(response.answers.len(), 60);
    assert_eq!(response.edns.as_ref().map(Edns::max_payload), Some(1232));
}

#[tokio::test]
async fn pipelined_tcp_queries_are_all_answered() {
    let server = start(Vec::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let first = query("web.default.svc.cluster.local.", RecordType::A);
    let second = query("nope.default.svc.cluster.local.", RecordType::A);
    write_framed(&mut stream, &first).await.unwrap();
    write_framed(&mut stream, &second).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = timeout(WAIT, read_framed(&mut stream))
            .await
            .unwrap()
            .unwrap();
        ids.push(response.id);
    }
    ids.sort_unstable();
    let mut expected = vec![first.id, second.id];
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn malformed_packets_get_formerr_and_the_server_keeps_going() {
    let server = start(Vec::new()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00];
    garbage.extend_from_slice(&[0x00, 0x00, 0x3f, 0x41]);
    socket.send_to(&garbage, server.addr).await.unwrap();
    socket.send_to(&[0xff], server.addr).await.unwrap();
    let mut buf = vec![0; 512];
    let len = timeout(WAIT, socket.recv(&mut buf)).await.unwrap().unwrap();
    let response = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(response.id, 0x1234);
    assert_eq!(response.response_code, ResponseCode::FormErr);
    let web = ask_udp(
        server.addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&web), ["A 10.96.0.20"]);
}

#[tokio::test]
async fn new_snapshots_are_served_at_once() {
    let server = start(Vec::new()).await;
    let query = query("new.default.svc.cluster.local.", RecordType::A);
    let before = ask_udp(server.addr, &query).await;
    assert_eq!(before.response_code, ResponseCode::NXDomain);
    server
        .records
        .send_replace(records(&[("new", "10.96.0.99")]));
    let after = ask_udp(server.addr, &query).await;
    assert_eq!(addresses(&after), ["A 10.96.0.99"]);
}
