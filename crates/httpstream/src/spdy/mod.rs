//! SPDY/3.1 as Kubernetes streams use it: frames ([`frame`]) and one connection's two halves.
//! The sending half is a task that owns the header compressor and writes frames in order; the
//! receiving half decodes frames and answers the peer's PINGs. There is no flow control:
//! moby/spdystream, which kubelets and runtimes use, neither sends nor honours WINDOW_UPDATE.

mod dictionary;
pub mod frame;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub use frame::{Frame, FrameError, Headers, header};

/// How many frames may wait for the connection before senders wait.
const QUEUE: usize = 64;
/// Frames are written in batches up to about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// Which end of the connection this is: it decides whose PINGs are answered (a client's
/// PING ids are odd, a server's even).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// The connection has closed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the SPDY connection is closed")]
pub struct Closed;

/// Sends frames on the connection; clones share it. The connection's write side closes once
/// every sender (but not the receiver) is dropped.
#[derive(Clone)]
pub struct Sender {
    frames: mpsc::Sender<Frame>,
}

impl Sender {
    pub async fn send(&self, frame: Frame) -> Result<(), Closed> {
        self.frames.send(frame).await.map_err(|_| Closed)
    }
}

/// Receives frames from the connection.
pub struct Receiver<R> {
    io: R,
    buffer: BytesMut,
    decoder: frame::Decoder,
    role: Role,
    replies: mpsc::WeakSender<Frame>,
}

impl<R: AsyncRead + Unpin> Receiver<R> {
    /// The next frame other than a PING from the peer (those are answered here), or `None` at
    /// the end of the connection. Cancel-safe.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            let decoded = self
                .decoder
                .decode(&mut self.buffer)
                .map_err(std::io::Error::other)?;
            match decoded {
                Some(Frame::Ping(id)) if (id % 2 == 1) == (self.role == Role::Server) => {
                    if let Some(replies) = self.replies.upgrade() {
                        let _ = replies.send(Frame::Ping(id)).await;
                    }
                }
                Some(frame) => return Ok(Some(frame)),
                None => {
                    if self.io.read_buf(&mut self.buffer).await? == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// Starts a SPDY connection over `io`: the sending task is spawned, and ends (shutting the
/// write side down) when every [`Sender`] is gone or the connection fails.
pub fn connection<IO>(io: IO, role: Role) -> (Sender, Receiver<tokio::io::ReadHalf<IO>>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (frames, queue) = mpsc::channel(QUEUE);
    let replies = frames.downgrade();
    tokio::spawn(write_frames(write, queue));
    (
        Sender { frames },
        Receiver {
            io: read,
            buffer: BytesMut::with_capacity(16 * 1024),
            decoder: frame::Decoder::new(),
            role,
            replies,
        },
    )
}

async fn write_frames(mut io: impl AsyncWrite + Unpin, mut queue: mpsc::Receiver<Frame>) {
    let mut encoder = frame::Encoder::new();
    let mut batch = BytesMut::new();
    while let Some(frame) = queue.recv().await {
        encoder.encode(&frame, &mut batch);
        while batch.len() < BATCH_BYTES {
            match queue.try_recv() {
                Ok(frame) => encoder.encode(&frame, &mut batch),
                Err(_) => break,
            }
        }
        if let Err(e) = async {
            io.write_all(&batch).await?;
            io.flush().await
        }
        .await
        {
            tracing::debug!(error = %e, "SPDY connection write failed");
            return;
        }
        batch.clear();
    }
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn frames_cross_and_pings_from_the_peer_are_answered() {
        let (client_io, server_io) = tokio::io::duplex(1024);
        let (client, mut client_rx) = connection(client_io, Role::Client);
        let (server, mut server_rx) = connection(server_io, Role::Server);
        client
            .send(Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hi"),
            })
            .await
            .unwrap();
        assert_eq!(
            server_rx.next().await.unwrap(),
            Some(Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hi"),
            })
        );
        // The server's ping (even) is echoed by the client's receiver; the echo reaches the
        // server as a frame of its own, since it is not one the server must answer.
        server.send(Frame::Ping(2)).await.unwrap();
        let reader = tokio::spawn(async move { client_rx.next().await.unwrap() });
        assert_eq!(server_rx.next().await.unwrap(), Some(Frame::Ping(2)));
        drop(client);
        assert_eq!(
            server_rx.next().await.unwrap(),
            None,
            "client closed its side"
        );
        drop(server);
        assert_eq!(reader.await.unwrap(), None);
    }
}
