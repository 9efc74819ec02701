//! End-to-end conformance of the main listener's HTTP side (PROTOCOL.md §2.3-§2.5)
//! against the relay binary: routing by exact path, health JSON, HEAD, the 400, 404,
//! 405, 426 and 431 replies, the headers every plain reply carries, and the 101.

use crate::common::*;
use crate::wire::*;
use serde_json::Value;

const ROOT: &str = r#"{"error":"This is a WebSocket relay endpoint"}"#;

/// Every plain reply (§2.3): HTTP/1.1, the four headers, an exact Content-Length,
/// and the connection closed after it (http_exchange reads to EOF).
fn check_plain(response: &Response, head_only: bool) {
    assert!(
        response.status_line.starts_with("HTTP/1.1 "),
        "{response:?}"
    );
    assert_eq!(
        response.header("Content-Type"),
        Some("application/json"),
        "{response:?}"
    );
    assert_eq!(
        response.header("Cache-Control"),
        Some("no-store"),
        "{response:?}"
    );
    assert_eq!(response.header("Connection"), Some("close"), "{response:?}");
    let length: usize = response
        .header("Content-Length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    if head_only {
        assert!(response.body.is_empty(), "HEAD has no body: {response:?}");
    } else {
        assert_eq!(length, response.body.len(), "{response:?}");
    }
}

fn get(relay: &Relay, method: &str, target: &str) -> Response {
    http_exchange(
        relay.addr,
        format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

#[test]
fn health_paths_answer_health_json_with_members_in_order() {
    let dir = TempDir::new("http-health");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "3")]);
    for target in ["/health", "/up", "/ready", "/health?verbose=1"] {
        let response = get(&relay, "GET", target);
        assert_eq!(response.status, 200, "{target}");
        check_plain(&response, false);
        let body = response.body_text();
        let value: Value = serde_json::from_str(body).unwrap();
        let expected = format!(
            r#"{{"status":"healthy","version":"{}","uptime_seconds":{},"blob_count":0,"shards":3}}"#,
            env!("CARGO_PKG_VERSION"),
            value["uptime_seconds"].as_u64().expect("u64 uptime")
        );
        assert_eq!(body, expected, "{target}");
    }
}

#[test]
fn http_1_0_health_is_answered() {
    let dir = TempDir::new("http-10");
    let relay = Relay::start(dir.path(), &[]);
    let response = http_exchange(relay.addr, b"GET /up HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200);
    check_plain(&response, false);
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let dir = TempDir::new("http-head");
    let relay = Relay::start(dir.path(), &[]);
    for target in ["/health", "/", "/elsewhere"] {
        let got = get(&relay, "GET", target);
        let head = get(&relay, "HEAD", target);
        assert_eq!(head.status, got.status, "{target}");
        check_plain(&head, true);
        assert_eq!(
            head.header("Content-Length"),
            got.header("Content-Length"),
            "{target}"
        );
    }
}

#[test]
fn routing_table_compares_paths_exactly() {
    let dir = TempDir::new("http-route");
    let relay = Relay::start(dir.path(), &[]);
    // (method, target, status, exact body)
    let rows: &[(&str, &str, u16, &str)] = &[
        ("GET", "/", 200, ROOT),
        ("GET", "/healthz", 200, ROOT),
        ("GET", "/health/", 200, ROOT),
        ("GET", "/HEALTH", 200, ROOT),
        ("GET", "/%68ealth", 200, ROOT),
        ("GET", "/upload", 200, ROOT),
        ("GET", "/federation", 200, ROOT),
        ("POST", "/", 405, r#"{"error":"method not allowed"}"#),
        ("POST", "/health", 405, r#"{"error":"method not allowed"}"#),
        ("PUT", "/ready", 405, r#"{"error":"method not allowed"}"#),
        ("DELETE", "/", 405, r#"{"error":"method not allowed"}"#),
        ("OPTIONS", "/", 405, r#"{"error":"method not allowed"}"#),
    ];
    for (method, target, status, body) in rows {
        let response = get(&relay, method, target);
        assert_eq!(response.status, *status, "{method} {target}");
        check_plain(&response, false);
        assert_eq!(response.body_text(), *body, "{method} {target}");
        if *status == 405 {
            assert_eq!(response.header("Allow"), Some("GET, HEAD"), "{method}");
        }
    }
}

#[test]
fn upgrade_errors_table() {
    let dir = TempDir::new("http-upgrade");
    let relay = Relay::start(dir.path(), &[]);
    let head = |path: &str, version: Option<&str>, key: Option<&str>| {
        let mut raw = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        );
        if let Some(v) = version {
            raw.push_str(&format!("Sec-WebSocket-Version: {v}\r\n"));
        }
        if let Some(k) = key {
            raw.push_str(&format!("Sec-WebSocket-Key: {k}\r\n"));
        }
        raw + "\r\n"
    };
    // (request, status, exact body if the spec fixes one)
    let rows: Vec<(String, u16, Option<&str>)> = vec![
        (
            head("/federation", Some("13"), Some(KEY)),
            404,
            Some(r#"{"error":"federation disabled"}"#),
        ),
        (
            head("/federation?x=1", Some("13"), Some(KEY)),
            404,
            Some(r#"{"error":"federation disabled"}"#),
        ),
        (head("/", Some("8"), Some(KEY)), 426, None),
        (head("/", None, Some(KEY)), 426, None),
        (head("/", Some("13"), None), 400, None),
        (head("/", Some("13"), Some("not base64!")), 400, None),
        // base64 of 15 bytes, not 16.
        (
            head("/", Some("13"), Some("AAAAAAAAAAAAAAAAAAAA")),
            400,
            None,
        ),
        (
            "NOT AN HTTP REQUEST\r\n\r\n".to_owned(),
            400,
            Some(r#"{"error":"bad request"}"#),
        ),
        (
            "GET / HTTP/1.1\r\nBroken header line\r\n\r\n".to_owned(),
            400,
            Some(r#"{"error":"bad request"}"#),
        ),
    ];
    for (request, status, body) in rows {
        let response = http_exchange(relay.addr, request.as_bytes());
        assert_eq!(response.status, status, "{request:?}");
        check_plain(&response, false);
        if let Some(body) = body {
            assert_eq!(response.body_text(), body, "{request:?}");
        }
        if status == 426 {
            assert_eq!(
                response.header("Sec-WebSocket-Version"),
                Some("13"),
                "{request:?}"
            );
        }
    }
}

#[test]
fn a_head_over_8192_bytes_gets_431() {
    let dir = TempDir::new("http-431-size");
    let relay = Relay::start(dir.path(), &[]);
    let request = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(8200));
    let response = http_exchange(relay.addr, request.as_bytes());
    assert_eq!(response.status, 431);
    check_plain(&response, false);
}

#[test]
fn sixty_four_header_fields_pass_and_sixty_five_get_431() {
    let dir = TempDir::new("http-431-count");
    let relay = Relay::start(dir.path(), &[]);
    for (fields, status) in [(64, 200), (65, 431)] {
        let mut request = "GET /health HTTP/1.1\r\n".to_owned();
        for i in 0..fields {
            request.push_str(&format!("X-F{i}: v\r\n"));
        }
        request.push_str("\r\n");
        let response = http_exchange(relay.addr, request.as_bytes());
        assert_eq!(response.status, status, "{fields} header fields");
        check_plain(&response, false);
    }
}

#[test]
fn upgrade_tokens_are_case_insensitive_lists_and_nothing_is_negotiated() {
    let dir = TempDir::new("http-101");
    let relay = Relay::start(dir.path(), &[]);
    let request = format!(
        "GET /any/path?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade:  WebSocket \r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\nOrigin: http://evil.example\r\n\r\n"
    );
    let mut ws = RawWs::upgrade_with(relay.addr, &request);
    let response = parse_response(ws.head.as_bytes());
    assert_eq!(response.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_eq!(response.header("Sec-WebSocket-Protocol"), None);
    assert_eq!(response.header("Sec-WebSocket-Extensions"), None);
    // The session works: a Handshake is acknowledged.
    ws.send_json(&handshake_json(A));
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
}

#[test]
fn a_connection_over_the_limit_gets_503_overloaded() {
    // §2.2 item 2: every TCP connection counts, whatever it turns out to be.
    let dir = TempDir::new("http-503");
    let relay = Relay::start(dir.path(), &[("RELAY_MAX_CONNECTIONS", "2")]);
    let mut first = RawWs::connect(relay.addr);
    first.send_json(&handshake_json(A));
    first.recv_text();
    let mut second = RawWs::connect(relay.addr);
    second.send_json(&handshake_json(B));
    second.recv_text();
    let response = http_exchange(relay.addr, upgrade_request("/", "").as_bytes());
    assert_eq!(response.status, 503, "{response:?}");
    check_plain(&response, false);
    assert_eq!(response.body_text(), r#"{"error":"overloaded"}"#);
    assert_eq!(response.header("Retry-After"), Some("5"));
}
