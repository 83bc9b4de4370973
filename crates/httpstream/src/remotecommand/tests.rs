use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;
use crate::testing;

const EXIT_3: &str = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;

/// A container runtime's SPDY side of one exec: echoes stdin on stdout and resize events on
/// stdout too; when stdin ends it reports exit code 3 and resets every stream, as the
/// runtimes' stream server closes a session.
async fn runtime(io: hyper::upgrade::Upgraded) {
    let (sender, mut receiver) = spdy::connection(TokioIo::new(io), spdy::Role::Server);
    let mut kinds: HashMap<String, u32> = HashMap::new();
    while let Ok(Some(frame)) = receiver.next().await {
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let kind = spdy::header(&headers, "streamtype").unwrap_or_default();
                kinds.insert(kind.to_owned(), stream_id);
                let reply = Frame::SynReply {
                    stream_id,
                    fin: false,
                    headers: Vec::new(),
                };
                sender.send(reply).await.unwrap();
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if !data.is_empty() {
                    let echo = Frame::Data {
                        stream_id: kinds["stdout"],
                        fin: false,
                        data,
                    };
                    sender.send(echo).await.unwrap();
                }
                if fin && Some(&stream_id) == kinds.get("stdin") {
                    let status = Frame::Data {
                        stream_id: kinds["error"],
                        fin: false,
                        data: Bytes::from_static(EXIT_3.as_bytes()),
                    };
                    sender.send(status).await.unwrap();
                    for &stream_id in kinds.values() {
                        let reset = Frame::RstStream {
                            stream_id,
                            status: spdy::frame::RST_CANCEL,
                        };
                        sender.send(reset).await.unwrap();
                    }
                    return;
                }
            }
            _ => {}
        }
    }
}

/// A front server translating every request to `backend`.
async fn front(backend: SocketAddr, options: Options) -> SocketAddr {
    testing::serve(move |request| async move {
        let target = Target {
            authority: backend.to_string(),
            path_and_query: "/exec/token".into(),
        };
        translate(request, testing::connect(backend), target, options).unwrap()
    })
    .await
}

async fn client(address: SocketAddr) -> WebSocketStream<TcpStream> {
    let mut request = format!("ws://{address}/api/v1/namespaces/default/pods/web/exec")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        websocket::PROTOCOL_HEADER,
        HeaderValue::from_static("v5.channel.k8s.io"),
    );
    let tcp = TcpStream::connect(address).await.unwrap();
    let (socket, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(response.headers()[websocket::PROTOCOL_HEADER], V5);
    socket
}

async fn next_binary(socket: &mut WebSocketStream<TcpStream>) -> Vec<u8> {
    match socket.next().await {
        Some(Ok(Message::Binary(data))) => data.to_vec(),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

#[tokio::test]
async fn stdin_reaches_the_backend_and_its_status_ends_the_session() {
    let backend = testing::switching_backend(V4, runtime).await;
    let options = Options {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let mut socket = client(front(backend, options).await).await;
    assert_eq!(next_binary(&mut socket).await, [STDOUT], "hello on stdout");
    socket.send(message(STDIN, b"hello")).await.unwrap();
    assert_eq!(next_binary(&mut socket).await, b"\x01hello");
    socket
        .send(Message::Binary(Bytes::from_static(&[CLOSE, STDIN])))
        .await
        .unwrap();
    let status = next_binary(&mut socket).await;
    assert_eq!(status[0], ERROR);
    assert_eq!(&status[1..], EXIT_3.as_bytes());
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn resize_events_travel_on_their_own_stream_with_a_tty() {
    let backend = testing::switching_backend(V4, runtime).await;
    let options = Options {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: true,
    };
    let mut socket = client(front(backend, options).await).await;
    assert_eq!(next_binary(&mut socket).await, [STDOUT]);
    let size = br#"{"Width":80,"Height":24}"#;
    socket.send(message(RESIZE, size)).await.unwrap();
    let echoed = next_binary(&mut socket).await;
    assert_eq!((echoed[0], &echoed[1..]), (STDOUT, &size[..]));
}

#[tokio::test]
async fn a_refused_upgrade_is_reported_on_the_error_channel() {
    let backend = testing::refusing_backend(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "container not found (\"app\")",
    )
    .await;
    let options = Options {
        stdout: true,
        ..Options::default()
    };
    let mut socket = client(front(backend, options).await).await;
    assert_eq!(next_binary(&mut socket).await, [STDOUT]);
    let status = next_binary(&mut socket).await;
    assert_eq!(status[0], ERROR);
    let status: serde_json::Value = serde_json::from_slice(&status[1..]).unwrap();
    assert_eq!(status["reason"], "InternalError");
    assert_eq!(
        status["message"],
        "Internal error occurred: unable to upgrade connection: container not found (\"app\")"
    );
}

#[tokio::test]
async fn a_backend_that_ends_without_a_word_reports_success() {
    let backend = testing::switching_backend(V4, |io| async move { drop(io) }).await;
    let options = Options {
        stdout: true,
        ..Options::default()
    };
    let mut socket = client(front(backend, options).await).await;
    assert_eq!(next_binary(&mut socket).await, [STDOUT]);
    let status = next_binary(&mut socket).await;
    assert_eq!(&status[1..], br#"{"metadata":{},"status":"Success"}"#);
}

#[test]
fn streams_are_opened_as_upstreams_spdy_client_opens_them() {
    let (streams, planned) = Streams::plan(Options {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    });
    assert_eq!(
        planned,
        [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")]
    );
    assert_eq!(streams.resize, None);
    // With a TTY, stderr is merged into stdout and a resize stream is opened.
    let (streams, planned) = Streams::plan(Options {
        stdin: false,
        stdout: true,
        stderr: true,
        tty: true,
    });
    assert_eq!(planned, [(1, "error"), (3, "stdout"), (5, "resize")]);
    assert_eq!(
        (streams.output_channel(3), streams.input_stream(RESIZE)),
        (Some(STDOUT), Some(5))
    );
}

#[test]
fn wants_translation_only_for_v5_websockets() {
    let mut headers = http::HeaderMap::new();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        websocket::PROTOCOL_HEADER,
        HeaderValue::from_static("v5.channel.k8s.io"),
    );
    assert!(wants_translation(&headers));
    headers.insert(
        websocket::PROTOCOL_HEADER,
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    assert!(!wants_translation(&headers));
}
