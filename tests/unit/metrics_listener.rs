//! The metrics listener of PROTOCOL.md §12.1 over real sockets: the index, `/metrics`
//! with and without a bearer token, 404s, keep-alive, bounded heads, and a silent
//! client that cannot hold the listener forever.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use vauchi_relay::limits::METRICS_REQUESTS_PER_CONNECTION_MAX;
use vauchi_relay::metrics::{Global, ShardMetrics, spawn_listener};

/// How long a test waits for a reply that should come at once before it declares
/// the listener stuck (a hang guard, not a performance assertion).
const STUCK: Duration = Duration::from_secs(30);

/// The key text the listener is given (any 43 base64url characters).
const PUBKEY: &str = "q1F2e9K8oQq4WbJmO9jz2pJtq0c3tP0qJ1mZ8vY4xWs";

fn start(token: Option<&str>) -> (SocketAddr, Arc<[ShardMetrics]>) {
    let shards: Arc<[ShardMetrics]> = (0..2).map(|_| ShardMetrics::new()).collect();
    let global = Arc::new(Global::new(2));
    let (addr, _thread) = spawn_listener(
        "127.0.0.1:0",
        token.map(str::to_owned),
        PUBKEY.to_owned(),
        Arc::clone(&shards),
        global,
    )
    .expect("bind the metrics listener");
    (addr, shards)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(STUCK)).expect("timeout");
    stream
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client connection that keeps bytes read past one response for the next.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: connect(addr),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads exactly one response (head plus `Content-Length` bytes).
    fn response(&mut self) -> Response {
        read_response(&mut self.stream, &mut self.buf)
    }

    /// Asserts that the listener closed the connection after the last response.
    fn assert_closed(&mut self) {
        assert!(self.buf.is_empty(), "unexpected bytes after the response");
        assert_closed(&mut self.stream);
    }
}

/// Reads one response from `buf` and the stream, leaving any later bytes in `buf`.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Response {
    let mut chunk = [0u8; 4096];
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(head_len) = parsed.parse(buf).expect("valid head") {
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8(h.value.to_vec()).expect("utf-8 header"),
                    )
                })
                .collect();
            let status = parsed.code.expect("status");
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .expect("Content-Length")
                .1
                .parse()
                .expect("numeric Content-Length");
            while buf.len() < head_len + length {
                let n = stream.read(&mut chunk).expect("read body");
                assert!(n > 0, "closed inside the body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let rest = buf.split_off(head_len + length);
            let body = String::from_utf8(buf[head_len..].to_vec()).expect("utf-8 body");
            *buf = rest;
            return Response {
                status,
                headers,
                body,
            };
        }
        let n = stream.read(&mut chunk).expect("read head");
        assert!(n > 0, "closed before a complete response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn request(addr: SocketAddr, text: &str) -> Response {
    let mut client = Client::connect(addr);
    client.send(text.as_bytes());
    client.response()
}

fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> Response {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    )
}

fn assert_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("unexpected bytes after the response"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn the_index_names_the_service_version_and_endpoints() {
    let (addr, _) = start(None);
    let response = get(addr, "/", None);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(
        response.body,
        format!(
            r#"{{"service":"vauchi-relay-metrics","version":"{}","endpoints":["/metrics","/pubkey"]}}"#,
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// §12.1: `/pubkey` is the Noise public key as text, and needs no token.
#[test]
fn pubkey_serves_the_public_key_without_a_token() {
    for token in [None, Some("secret")] {
        let (addr, _) = start(token);
        let response = get(addr, "/pubkey", None);
        assert_eq!(response.status, 200, "{token:?}");
        assert_eq!(response.header("Content-Type"), Some("text/plain"));
        assert_eq!(response.body, PUBKEY);
    }
}

#[test]
fn metrics_without_a_token_serves_the_current_values() {
    let (addr, shards) = start(None);
    shards[1].blobs_stored.set(17);
    let response = get(addr, "/metrics", None);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(response.body.contains("# TYPE relay_blobs_stored gauge\n"));
    assert!(
        response
            .body
            .contains("relay_blobs_stored{shard=\"1\"} 17\n"),
        "{}",
        response.body
    );
    // A query string is not part of the path.
    assert_eq!(get(addr, "/metrics?x=1", None).status, 200);
}

#[test]
fn a_token_guards_metrics_with_an_exact_bearer_match() {
    let (addr, _) = start(Some("s3cret-token"));
    for authorization in [
        None,
        Some("Bearer wrong-token!"),
        Some("Bearer s3cret-toke"),
        Some("Bearer s3cret-token2"),
        Some("bearer s3cret-token"),
        Some("Bearer  s3cret-token"),
        Some("Basic s3cret-token"),
        Some("s3cret-token"),
    ] {
        let response = get(addr, "/metrics", authorization);
        assert_eq!(response.status, 401, "{authorization:?}");
        assert_eq!(response.header("WWW-Authenticate"), Some("Bearer"));
        assert_eq!(response.body, "Unauthorized");
    }
    let response = get(addr, "/metrics", Some("Bearer s3cret-token"));
    assert_eq!(response.status, 200);
    assert!(response.body.contains("relay_shards 2\n"));
    // The index needs no token.
    assert_eq!(get(addr, "/", None).status, 200);
}

#[test]
fn anything_else_is_404() {
    let (addr, _) = start(Some("t"));
    for path in ["/metrics/", "/Metrics", "/health", "/pubkey/", "/metricsx"] {
        assert_eq!(get(addr, path, None).status, 404, "{path}");
    }
    for method in ["POST", "HEAD", "PUT", "DELETE"] {
        let response = request(
            addr,
            &format!("{method} / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(response.status, 404, "{method}");
    }
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let (addr, _) = start(Some("tok"));
    let mut client = Client::connect(addr);
    client.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n");
    let first = client.response();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("Connection"), None, "kept alive");
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let second = client.response();
    assert_eq!(second.status, 200);
    assert!(second.body.contains("vauchi-relay-metrics"));
}

#[test]
fn pipelined_requests_are_answered_in_order_and_connection_close_is_honoured() {
    let (addr, _) = start(None);
    let mut client = Client::connect(addr);
    client.send(
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
          GET / HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(client.response().status, 404);
    assert_eq!(client.response().status, 200);
    let last = client.response();
    assert_eq!(last.status, 200);
    assert_eq!(last.header("Connection"), Some("close"));
    client.assert_closed();
}

#[test]
fn a_keep_alive_connection_is_closed_after_the_request_limit() {
    let (addr, _) = start(None);
    let mut client = Client::connect(addr);
    let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    client.send(&one.repeat(METRICS_REQUESTS_PER_CONNECTION_MAX));
    for served in 1..METRICS_REQUESTS_PER_CONNECTION_MAX {
        let response = client.response();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Connection"), None, "request {served}");
    }
    let last = client.response();
    assert_eq!(last.header("Connection"), Some("close"));
    client.assert_closed();
}

#[test]
fn http_1_0_and_requests_with_a_body_get_one_response_and_a_close() {
    let (addr, _) = start(None);
    for request in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let mut client = Client::connect(addr);
        client.send(request.as_bytes());
        let response = client.response();
        assert_eq!(response.status, 200, "{request:?}");
        assert_eq!(response.header("Connection"), Some("close"), "{request:?}");
        client.assert_closed();
    }
}

#[test]
fn a_bad_or_oversized_head_is_refused_and_closed() {
    let (addr, _) = start(None);
    let mut client = Client::connect(addr);
    client.send(b"\x01\x02 nonsense\r\n\r\n");
    assert_eq!(client.response().status, 400);
    client.assert_closed();

    let mut client = Client::connect(addr);
    let big = format!(
        "GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(vauchi_relay::limits::HEAD_BYTES_MAX)
    );
    // The listener may close while we are still writing; the reply is what matters.
    let _ = client.stream.write_all(big.as_bytes());
    assert_eq!(client.response().status, 431);
}

#[test]
fn a_silent_client_does_not_hold_the_listener_forever() {
    // The listener serves one connection at a time; a client that connects and says
    // nothing must be dropped after the read timeout so the next scrape is served.
    let (addr, _) = start(None);
    let _silent = connect(addr);
    assert_eq!(get(addr, "/", None).status, 200);
}

#[test]
fn binding_an_address_in_use_returns_the_error() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let shards: Arc<[ShardMetrics]> = (0..1).map(|_| ShardMetrics::new()).collect();
    let result = spawn_listener(
        addr,
        None,
        PUBKEY.to_owned(),
        shards,
        Arc::new(Global::new(1)),
    );
    let error = result.expect_err("bind must fail");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
}
