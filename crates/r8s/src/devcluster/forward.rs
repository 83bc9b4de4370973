//! `r8s devcluster forward`: how the host reaches the devcluster's API server. The host cannot
//! reach addresses inside the node namespaces, so `up` binds 127.0.0.1:<free port> in the
//! host's namespace and hands that socket to this process, which it starts inside the first
//! node's namespace: connections accepted there (on the host) go out from here (in the node),
//! bytes copied both ways.

use std::net::SocketAddr;
use std::os::fd::FromRawFd;

use anyhow::Context;

use super::process::LISTEN_FD;

pub async fn run(to: SocketAddr) -> anyhow::Result<()> {
    // SAFETY: `up` starts this process with its listening socket at LISTEN_FD, and nothing
    // else in this process owns that descriptor.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(LISTEN_FD) };
    let from = listener.local_addr().context(
        "no listening socket at descriptor 3: `r8s devcluster up` starts this forwarder",
    )?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    eprintln!("forwarding {from} (host) to {to}");
    loop {
        let (mut inbound, peer) = listener.accept().await.context("accept")?;
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(to).await {
                // A peer that hangs up mid-stream is no news worth a log line.
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => eprintln!("{peer}: cannot connect to {to}: {e}"),
            }
        });
    }
}
