//! The DNS wire: UDP and TCP listeners, one task per query so a slow upstream holds up nobody,
//! and the per-transport framing, size limits and EDNS handling around [`Records::answer`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::forward::Forwarder;
use crate::records::Records;

/// The UDP payload size this server advertises and answers within (the DNS Flag Day 2020 value,
/// which avoids IP fragmentation).
const UDP_PAYLOAD: u16 = 1232;
/// The longest a query may take, forwarding included, before it is dropped unanswered.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TCP connection may sit without a new query (RFC 7766 suggests seconds).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Queries answered at once over UDP; past this, packets are dropped and clients retry.
const MAX_UDP_IN_FLIGHT: usize = 1024;
/// Open TCP connections; past this, new ones are closed at once.
const MAX_TCP_CONNECTIONS: usize = 256;
/// Queries in flight on one TCP connection (pipelining), after which reading pauses.
const MAX_TCP_PIPELINE: usize = 16;

/// The bound UDP sockets and TCP listeners the server answers on.
pub struct Sockets {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Sockets {
    /// Binds UDP and TCP on each address. Port 0 picks one free port for both protocols.
    pub async fn bind(listen: &[SocketAddr]) -> anyhow::Result<Self> {
        anyhow::ensure!(!listen.is_empty(), "no address to serve DNS on");
        let mut sockets = Self {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for addr in listen {
            let (udp, tcp) = bind_pair(*addr).await?;
            sockets.udp.push(udp);
            sockets.tcp.push(tcp);
        }
        Ok(sockets)
    }

    /// The addresses actually bound (with the chosen ports), in the order given to `bind`.
    pub fn local_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        self.udp
            .iter()
            .map(|s| s.local_addr().context("cannot read a DNS socket's address"))
            .collect()
    }
}

/// A UDP socket and a TCP listener on the same address and port.
async fn bind_pair(addr: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    // An ephemeral UDP port may be taken for TCP by someone else: try a few.
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot bind DNS on udp {addr}"))?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot bind DNS on tcp {bound}")),
        }
    }
    anyhow::bail!("found no port free for both UDP and TCP DNS on {addr}")
}

/// Answers queries on `sockets` from the latest `records` until aborted: cluster names from the
/// snapshot, everything else forwarded to `upstream` (REFUSED when it is empty).
pub async fn serve_records(
    sockets: Sockets,
    records: watch::Receiver<Arc<Records>>,
    upstream: Vec<SocketAddr>,
) -> anyhow::Result<()> {
    let handler = Arc::new(Handler {
        records,
        forwarder: Forwarder::new(upstream),
    });
    let mut listeners = JoinSet::new();
    for socket in sockets.udp {
        listeners.spawn(serve_udp(Arc::new(socket), handler.clone()));
    }
    for listener in sockets.tcp {
        listeners.spawn(serve_tcp(listener, handler.clone()));
    }
    // Listeners only return on failure; dropping the set (on abort) stops the rest.
    match listeners.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(e).context("a DNS listener panicked"),
        None => Ok(()),
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>) -> anyhow::Result<()> {
    let in_flight = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let mut buf = vec![0; usize::from(u16::MAX)];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                // Errors here are per-datagram (a peer's ICMP error, an oversized packet).
                tracing::debug!("dns: udp receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            continue;
        };
        let packet = buf[..len].to_vec();
        let (socket, handler) = (socket.clone(), handler.clone());
        tokio::spawn(async move {
            let answer = timeout(QUERY_TIMEOUT, handler.handle(&packet, Transport::Udp)).await;
            if let Ok(Some(response)) = answer
                && let Err(e) = socket.send_to(&response, peer).await
            {
                tracing::debug!("dns: cannot answer {peer}: {e}");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) -> anyhow::Result<()> {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Usually out of file descriptors: back off rather than spin.
                tracing::debug!("dns: tcp accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            serve_connection(stream, handler).await;
            drop(permit);
        });
    }
}

/// Length-prefixed queries on one connection, answered as each completes (RFC 7766 allows any
/// order), until the client closes it or stays idle.
async fn serve_connection(stream: TcpStream, handler: Arc<Handler>) {
    let (mut reader, mut writer) = stream.into_split();
    let (responses, mut to_write) = mpsc::channel::<Vec<u8>>(MAX_TCP_PIPELINE);
    let read = async move {
        loop {
            // A slot before reading, so a client cannot queue unbounded work.
            let Ok(slot) = responses.clone().reserve_owned().await else {
                return;
            };
            let mut len = [0; 2];
            let mut packet = match timeout(TCP_IDLE_TIMEOUT, reader.read_exact(&mut len)).await {
                Ok(Ok(_)) => vec![0; usize::from(u16::from_be_bytes(len))],
                _ => return,
            };
            if !matches!(
                timeout(TCP_IDLE_TIMEOUT, reader.read_exact(&mut packet)).await,
                Ok(Ok(_))
            ) {
                return;
            }
            let handler = handler.clone();
            tokio::spawn(async move {
                let answer = timeout(QUERY_TIMEOUT, handler.handle(&packet, Transport::Tcp)).await;
                if let Ok(Some(response)) = answer {
                    slot.send(response);
                }
            });
        }
    };
    let write = async move {
        while let Some(response) = to_write.recv().await {
            // `handle` keeps TCP answers within 65535 bytes.
            let Ok(len) = u16::try_from(response.len()) else {
                continue;
            };
            let mut framed = Vec::with_capacity(response.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&response);
            if writer.write_all(&framed).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(read, write);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

struct Handler {
    records: watch::Receiver<Arc<Records>>,
    forwarder: Forwarder,
}

impl Handler {
    /// The encoded answer to one packet, or `None` to stay silent (not a query, or too broken to
    /// say anything about).
    async fn handle(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let Ok(query) = Message::from_vec(packet) else {
            return format_error(packet);
        };
        if query.message_type != MessageType::Query {
            return None;
        }
        let mut response = if query.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891: only EDNS version 0 exists.
            Message::error_msg(query.id, query.op_code, ResponseCode::BADVERS)
        } else {
            let records = self.records.borrow().clone();
            match records.answer(&query) {
                Some(mut response) => {
                    if let Some(target) = records.external_alias(&response) {
                        self.forwarder.chase(&mut response, target).await;
                    }
                    response
                }
                None => self.forwarder.forward(&query).await,
            }
        };
        response.metadata.recursion_available = self.forwarder.enabled();
        // EDNS is hop-by-hop: answer with ours exactly when the client spoke it.
        response.edns = query.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(UDP_PAYLOAD);
            edns
        });
        let limit = match transport {
            Transport::Udp => query.max_payload().min(UDP_PAYLOAD),
            Transport::Tcp => u16::MAX,
        };
        encode(&response, usize::from(limit))
    }
}

/// `response` on the wire, cut down to its header and question with TC set when it exceeds
/// `limit` (the client then retries over TCP).
fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Some(bytes),
        Ok(_) => response.truncate().to_vec().ok(),
        Err(e) => {
            tracing::warn!("dns: cannot encode an answer: {e}");
            let mut failure =
                Message::error_msg(response.id, response.op_code, ResponseCode::ServFail);
            failure.add_queries(response.queries.iter().cloned());
            failure.to_vec().ok()
        }
    }
}

/// FORMERR for a query that does not decode, built from its raw header; nothing for packets too
/// short to carry a header, or that are responses (answering those could loop).
fn format_error(packet: &[u8]) -> Option<Vec<u8>> {
    const QR: u8 = 0x80;
    const OPCODE_AND_RD: u8 = 0x79;
    const FORMERR: u8 = 1;
    if packet.len() < 12 || packet[2] & QR != 0 {
        return None;
    }
    let mut header = vec![0; 12];
    header[..2].copy_from_slice(&packet[..2]);
    header[2] = QR | (packet[2] & OPCODE_AND_RD);
    header[3] = FORMERR;
    Some(header)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    use super::*;
    use crate::records::ClusterZone;

    fn handler(records: Records) -> Handler {
        let (_, receiver) = watch::channel(Arc::new(records));
        Handler {
            records: receiver,
            forwarder: Forwarder::new(Vec::new()),
        }
    }

    fn zone() -> ClusterZone {
        ClusterZone::new("cluster.local", 5).unwrap()
    }

    fn query(name: &str, query_type: RecordType) -> Message {
        let mut query = Message::query();
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), query_type));
        query
    }

    #[tokio::test]
    async fn garbage_with_a_header_is_answered_formerr() {
        let handler = handler(Records::unsynced(zone()));
        let mut packet = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x05];
        packet.extend_from_slice(&[0xff; 20]);
        let response = handler.handle(&packet, Transport::Udp).await.unwrap();
        let response = Message::from_vec(&response).unwrap();
        assert_eq!(response.id, 0xabcd);
        assert_eq!(response.message_type, MessageType::Response);
        assert_eq!(response.response_code, ResponseCode::FormErr);
        assert!(response.recursion_desired);
    }

    #[tokio::test]
    async fn runts_and_responses_are_dropped() {
        let handler = handler(Records::unsynced(zone()));
        assert!(handler.handle(&[1, 2, 3], Transport::Udp).await.is_none());
        assert!(handler.handle(&[], Transport::Tcp).await.is_none());
        let mut response = query("x.cluster.local.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        let bytes = response.to_vec().unwrap();
        assert!(handler.handle(&bytes, Transport::Udp).await.is_none());
    }

    #[tokio::test]
    async fn other_names_are_refused_without_upstream() {
        let handler = handler(Records::unsynced(zone()));
        let bytes = query("example.com.", RecordType::A).to_vec().unwrap();
        let response = handler.handle(&bytes, Transport::Udp).await.unwrap();
        let response = Message::from_vec(&response).unwrap();
        assert_eq!(response.response_code, ResponseCode::Refused);
        assert!(!response.recursion_available);
        assert_eq!(response.queries.len(), 1);
    }

    #[tokio::test]
    async fn unknown_opcode_is_not_implemented() {
        let no_services: [Service; 0] = [];
        let no_slices: [EndpointSlice; 0] = [];
        let handler = handler(Records::new(zone(), no_services, no_slices, 1));
        let mut notify = query("cluster.local.", RecordType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        let bytes = notify.to_vec().unwrap();
        let response =
            Message::from_vec(&handler.handle(&bytes, Transport::Udp).await.unwrap()).unwrap();
        assert_eq!(response.response_code, ResponseCode::NotImp);
    }

    #[tokio::test]
    async fn edns_version_above_zero_is_badvers() {
        let handler = handler(Records::unsynced(zone()));
        let mut query = query("x.cluster.local.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_version(1);
        query.set_edns(edns);
        let bytes = query.to_vec().unwrap();
        let response =
            Message::from_vec(&handler.handle(&bytes, Transport::Udp).await.unwrap()).unwrap();
        // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
        assert_eq!(
            u16::from(response.response_code),
            u16::from(ResponseCode::BADVERS)
        );
        assert_eq!(response.edns.as_ref().map(Edns::version), Some(0));
    }

    #[test]
    fn oversized_udp_answers_are_truncated() {
        let mut response = query("big.cluster.local.", RecordType::TXT).into_response();
        for i in 0..100 {
            let txt = hickory_proto::rr::rdata::TXT::new(vec![format!("{i:0>100}")]);
            response.add_answer(hickory_proto::rr::Record::from_rdata(
                Name::from_ascii("big.cluster.local.").unwrap(),
                5,
                hickory_proto::rr::RData::TXT(txt),
            ));
        }
        let full = encode(&response, usize::from(u16::MAX)).unwrap();
        let cut = Message::from_vec(&encode(&response, 512).unwrap()).unwrap();
        assert!(full.len() > 512);
        assert!(cut.truncation);
        assert!(cut.answers.is_empty());
        assert_eq!(cut.queries, response.queries);
    }
}
