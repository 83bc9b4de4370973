//! Forwarding names outside the cluster to the upstream resolvers: UDP first, TCP when the answer
//! comes back truncated, the next upstream when one fails or is slow.

use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout, timeout_at};

/// How long one upstream gets before the next is tried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a forwarded query may take in all; stub resolvers give up around 5 s anyway.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(4);

pub(crate) struct Forwarder {
    upstream: Vec<SocketAddr>,
    /// Where the next query starts, so load and failures spread over the upstreams.
    next: AtomicUsize,
}

impl Forwarder {
    pub fn new(upstream: Vec<SocketAddr>) -> Self {
        Self {
            upstream,
            next: AtomicUsize::new(0),
        }
    }

    /// Whether there is anywhere to forward to (and so whether recursion is available).
    pub fn enabled(&self) -> bool {
        !self.upstream.is_empty()
    }

    /// The upstream's answer to `query`: REFUSED with no upstream, SERVFAIL when none answered.
    pub async fn forward(&self, query: &Message) -> Message {
        let code = if self.enabled() {
            match self.exchange(query).await {
                Some(response) => return response,
                None => ResponseCode::ServFail,
            }
        } else {
            ResponseCode::Refused
        };
        let mut response = Message::error_msg(query.id, query.op_code, code);
        response.metadata.recursion_desired = query.recursion_desired;
        response.add_queries(query.queries.iter().cloned());
        response
    }

    /// Resolves `target` (an ExternalName's CNAME target) upstream and appends what it answers,
    /// so the client gets the whole chain in one response.
    pub async fn chase(&self, response: &mut Message, target: Name) {
        let Some(query_type) = response.queries.first().map(Query::query_type) else {
            return;
        };
        if !self.enabled() {
            return;
        }
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(target, query_type));
        if let Some(chased) = self.exchange(&query).await {
            response.metadata.truncation |= chased.truncation;
            response.answers.extend(chased.answers);
        }
    }

    /// Sends `query` to the upstreams in turn until one answers; the answer carries the ID of
    /// `query`, but went out under a fresh random one so off-path spoofing must guess it.
    async fn exchange(&self, query: &Message) -> Option<Message> {
        let mut outgoing = query.clone();
        outgoing.metadata.id = random_id();
        let bytes = outgoing.to_vec().ok()?;
        let deadline = Instant::now() + TOTAL_TIMEOUT;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.upstream.len() {
            let upstream = self.upstream[(start + i) % self.upstream.len()];
            let attempt = timeout(ATTEMPT_TIMEOUT, exchange_with(upstream, &bytes, &outgoing));
            match timeout_at(deadline, attempt).await {
                Ok(Ok(Ok(mut response))) => {
                    response.metadata.id = query.id;
                    return Some(response);
                }
                Ok(Ok(Err(e))) => tracing::debug!("upstream {upstream} failed: {e}"),
                Ok(Err(_)) => tracing::debug!("upstream {upstream} timed out"),
                Err(_) => break,
            }
        }
        None
    }
}

/// One upstream's answer: over UDP, and again over TCP if that came back truncated.
async fn exchange_with(
    upstream: SocketAddr,
    bytes: &[u8],
    query: &Message,
) -> std::io::Result<Message> {
    let response = exchange_udp(upstream, bytes, query).await?;
    if !response.truncation {
        return Ok(response);
    }
    exchange_tcp(upstream, bytes, query).await
}

async fn exchange_udp(
    upstream: SocketAddr,
    bytes: &[u8],
    query: &Message,
) -> std::io::Result<Message> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    // A fresh socket per query: a random source port, and no answers to tell apart.
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0; usize::from(u16::MAX)];
    loop {
        let len = socket.recv(&mut buf).await?;
        if let Some(response) = matching_response(&buf[..len], query) {
            return Ok(response);
        }
    }
}

async fn exchange_tcp(
    upstream: SocketAddr,
    bytes: &[u8],
    query: &Message,
) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let mut len = [0; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    matching_response(&buf, query).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the upstream's TCP answer does not match the query",
        )
    })
}

/// `bytes` decoded, if it is the answer to `query` (same ID and question); anything else on the
/// socket is ignored.
fn matching_response(bytes: &[u8], query: &Message) -> Option<Message> {
    let response = Message::from_vec(bytes).ok()?;
    (response.message_type == MessageType::Response
        && response.id == query.id
        && response.queries == query.queries)
        .then_some(response)
}

fn random_id() -> u16 {
    // RandomState is seeded from the OS per process and stepped per instance; the low 16 bits
    // of a keyed hash are as unpredictable as a DNS ID needs.
    RandomState::new().hash_one(0u8) as u16
}
