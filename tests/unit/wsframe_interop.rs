//! The accepting shard's path against a real client: a tungstenite client connects
//! over TCP on 127.0.0.1, `http` parses and answers the upgrade, `wsframe` reads the
//! first message while answering a Ping, and the pipelined second message is left in
//! the remainder, intact, for the session.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use tungstenite::{Bytes, Message};
use vauchi_relay::http::{HeadParse, Route, RouteContext, parse_head, route};
use vauchi_relay::wsframe::{FirstMessageReader, Step, close_frame, server_binary_frame};

const CONTEXT: RouteContext = RouteContext {
    federation_enabled: false,
    federation_mtls: false,
    draining: false,
};

/// Reads until the head is complete; returns the upgrade reply and the bytes after it.
fn accept_upgrade(socket: &mut TcpStream) -> (Vec<u8>, Vec<u8>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let read = socket.read(&mut chunk).expect("read head");
        assert!(read > 0, "client closed during the head");
        buffer.extend_from_slice(&chunk[..read]);
        match parse_head(&buffer) {
            HeadParse::Partial => continue,
            HeadParse::Complete { head_len, request } => match route(&request, CONTEXT) {
                Route::ClientUpgrade { response } => {
                    return (response, buffer.split_off(head_len));
                }
                other => panic!("expected a client upgrade, got {other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}

/// Feeds the reader from the socket in small chunks until the first message.
fn read_first_message(socket: &mut TcpStream, already_read: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut reader = FirstMessageReader::new(1 << 16);
    reader.feed(already_read);
    let mut chunk = [0u8; 7];
    loop {
        match reader.poll() {
            Step::NeedMore => {
                let read = socket.read(&mut chunk).expect("read frame");
                assert!(read > 0, "client closed before its message");
                reader.feed(&chunk[..read]);
            }
            Step::Write(pong) => socket.write_all(&pong).expect("write pong"),
            Step::Message {
                binary: true,
                payload,
                ..
            } => return (payload, reader.into_remainder()),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn tungstenite_client_through_upgrade_ping_and_pipelined_messages() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        let (response, after_head) = accept_upgrade(&mut socket);
        socket.write_all(&response).expect("write 101");
        let (first, remainder) = read_first_message(&mut socket, &after_head);
        // The session side: the second message starts exactly at the remainder.
        let (second, _) = read_first_message(&mut socket, &remainder);
        let mut reply = first.clone();
        reply.extend_from_slice(&second);
        socket
            .write_all(&server_binary_frame(&reply))
            .expect("write reply");
        socket
            .write_all(&close_frame(1000, "bye"))
            .expect("write close");
    });

    let (mut client, response) =
        tungstenite::connect(format!("ws://{address}/")).expect("client handshake");
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
    assert!(response.headers().get("Sec-WebSocket-Extensions").is_none());
    client
        .write(Message::Ping(Bytes::from_static(b"hi")))
        .expect("ping");
    client
        .write(Message::Binary(Bytes::from_static(b"first ")))
        .expect("first");
    client
        .write(Message::Binary(Bytes::from_static(b"second")))
        .expect("second");
    client.flush().expect("flush");

    let mut received = Vec::new();
    loop {
        match client.read() {
            Ok(Message::Close(frame)) => {
                let frame = frame.expect("close has a code");
                assert_eq!(u16::from(frame.code), 1000);
                assert_eq!(frame.reason.as_str(), "bye");
                break;
            }
            Ok(message) => received.push(message),
            Err(error) => panic!("{error}"),
        }
    }
    assert_eq!(
        received,
        [
            Message::Pong(Bytes::from_static(b"hi")),
            Message::Binary(Bytes::from_static(b"first second")),
        ]
    );
    server.join().expect("server thread");
}
