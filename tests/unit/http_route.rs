//! Table tests for `http::route` and the plain replies (PROTOCOL.md §2.2-§2.5): every
//! row of the §2.3 table, the upgrade checks (400, 404, 405, 426, 503) and the headers
//! every plain reply carries.

use vauchi_relay::http::{
    HeadParse, HealthPath, Request, Route, RouteContext, bad_request, handshake_timeout,
    head_too_large, overloaded, parse_head, route, route_mtls,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455 §1.3's worked example.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const OPEN: RouteContext = RouteContext {
    federation_enabled: true,
    federation_mtls: false,
    draining: false,
};
const NO_FEDERATION: RouteContext = RouteContext {
    federation_enabled: false,
    federation_mtls: false,
    draining: false,
};
const DRAINING: RouteContext = RouteContext {
    federation_enabled: true,
    federation_mtls: false,
    draining: true,
};

fn request(raw: &str) -> Request {
    match parse_head(raw.as_bytes()) {
        HeadParse::Complete { request, .. } => request,
        other => panic!("expected Complete for {raw:?}, got {other:?}"),
    }
}

fn plain(method: &str, target: &str) -> Request {
    request(&format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

fn upgrade(method: &str, target: &str, version: Option<&str>, key: Option<&str>) -> Request {
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    );
    if let Some(version) = version {
        raw.push_str(&format!("Sec-WebSocket-Version: {version}\r\n"));
    }
    if let Some(key) = key {
        raw.push_str(&format!("Sec-WebSocket-Key: {key}\r\n"));
    }
    raw.push_str("\r\n");
    request(&raw)
}

fn good_upgrade(target: &str) -> Request {
    upgrade("GET", target, Some("13"), Some(KEY))
}

/// A parsed reply: status line, headers in order, body.
struct Reply {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Reply {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("reply has a blank line");
        let head = std::str::from_utf8(&bytes[..end]).expect("reply head is UTF-8");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line").to_string();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("header has ': '");
                (name.to_string(), value.to_string())
            })
            .collect();
        Reply {
            status_line,
            headers,
            body: bytes[end + 4..].to_vec(),
        }
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// Checks the §2.3 rules for a plain reply and returns it parsed.
fn check_plain(bytes: &[u8], status_line: &str, body: &str, head_only: bool) -> Reply {
    let reply = Reply::parse(bytes);
    assert_eq!(reply.status_line, status_line);
    assert_eq!(
        &reply.names()[..4],
        [
            "Content-Type",
            "Content-Length",
            "Cache-Control",
            "Connection"
        ]
    );
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(
        reply.header("Content-Length"),
        Some(&*body.len().to_string())
    );
    assert_eq!(reply.header("Cache-Control"), Some("no-store"));
    assert_eq!(reply.header("Connection"), Some("close"));
    if head_only {
        assert!(reply.body.is_empty(), "HEAD reply has no body");
    } else {
        assert_eq!(std::str::from_utf8(&reply.body), Ok(body));
    }
    reply
}

fn expect_reply(route: Route) -> Vec<u8> {
    match route {
        Route::Reply(bytes) => bytes,
        other => panic!("expected Reply, got {other:?}"),
    }
}

fn check_101(bytes: &[u8]) {
    let expected = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    );
    assert_eq!(std::str::from_utf8(bytes), Ok(expected.as_str()));
}

#[test]
fn upgrade_to_federation_when_enabled() {
    match route(&good_upgrade("/federation"), OPEN) {
        Route::FederationUpgrade { response } => check_101(&response),
        other => panic!("{other:?}"),
    }
}

#[test]
fn upgrade_to_federation_with_query_string() {
    match route(&good_upgrade("/federation?peer=1"), OPEN) {
        Route::FederationUpgrade { response } => check_101(&response),
        other => panic!("{other:?}"),
    }
}

#[test]
fn upgrade_to_federation_when_disabled_is_404() {
    let bytes = expect_reply(route(&good_upgrade("/federation"), NO_FEDERATION));
    check_plain(
        &bytes,
        "HTTP/1.1 404 Not Found",
        r#"{"error":"federation disabled"}"#,
        false,
    );
}

#[test]
fn upgrade_to_federation_under_mtls_is_403() {
    let mtls = RouteContext {
        federation_mtls: true,
        ..OPEN
    };
    let bytes = expect_reply(route(&good_upgrade("/federation"), mtls));
    check_plain(
        &bytes,
        "HTTP/1.1 403 Forbidden",
        r#"{"error":"federation requires mTLS"}"#,
        false,
    );
    // Clients are unaffected.
    match route(&good_upgrade("/"), mtls) {
        Route::ClientUpgrade { response } => check_101(&response),
        other => panic!("{other:?}"),
    }
    // Draining still answers first.
    let draining = RouteContext {
        draining: true,
        ..mtls
    };
    let bytes = expect_reply(route(&good_upgrade("/federation"), draining));
    assert!(bytes.starts_with(b"HTTP/1.1 503"));
}

#[test]
fn the_mtls_listener_routes_only_the_federation_upgrade() {
    match route_mtls(&good_upgrade("/federation"), false) {
        Route::FederationUpgrade { response } => check_101(&response),
        other => panic!("{other:?}"),
    }
    for target in ["/", "/health", "/federation/", "/ws"] {
        let bytes = expect_reply(route_mtls(&good_upgrade(target), false));
        check_plain(
            &bytes,
            "HTTP/1.1 404 Not Found",
            r#"{"error":"not found"}"#,
            false,
        );
    }
    let plain_get = request("GET /federation HTTP/1.1\r\nHost: x\r\n\r\n");
    let bytes = expect_reply(route_mtls(&plain_get, false));
    assert!(bytes.starts_with(b"HTTP/1.1 404"));
    let bytes = expect_reply(route_mtls(&good_upgrade("/federation"), true));
    assert!(bytes.starts_with(b"HTTP/1.1 503"));
}

#[test]
fn upgrade_on_any_other_path_is_a_client_session() {
    for target in [
        "/",
        "/ws",
        "/federation/",
        "/Federation",
        "/health",
        "/x?y=z",
    ] {
        for context in [OPEN, NO_FEDERATION] {
            match route(&good_upgrade(target), context) {
                Route::ClientUpgrade { response } => check_101(&response),
                other => panic!("{target}: {other:?}"),
            }
        }
    }
}

#[test]
fn upgrade_with_flexible_connection_tokens() {
    let raw = format!(
        "GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    match route(&request(&raw), OPEN) {
        Route::ClientUpgrade { response } => check_101(&response),
        other => panic!("{other:?}"),
    }
}

#[test]
fn upgrade_over_http_1_0_is_still_routed() {
    let raw = format!(
        "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    assert!(matches!(
        route(&request(&raw), OPEN),
        Route::ClientUpgrade { .. }
    ));
}

#[test]
fn health_paths_for_get_and_head() {
    let rows = [
        ("GET", "/health", HealthPath::Health, false),
        ("GET", "/up", HealthPath::Up, false),
        ("GET", "/ready", HealthPath::Ready, false),
        ("HEAD", "/health", HealthPath::Health, true),
        ("HEAD", "/up", HealthPath::Up, true),
        ("HEAD", "/ready", HealthPath::Ready, true),
        ("GET", "/health?x=1", HealthPath::Health, false),
        ("GET", "/ready?", HealthPath::Ready, false),
    ];
    for (method, target, path, head_only) in rows {
        for context in [OPEN, NO_FEDERATION, DRAINING] {
            assert_eq!(
                route(&plain(method, target), context),
                Route::Health { path, head_only },
                "{method} {target}"
            );
        }
    }
}

#[test]
fn other_get_and_head_paths_get_the_root_reply() {
    let body = r#"{"error":"This is a WebSocket relay endpoint"}"#;
    let targets = [
        "/",
        "/health/",
        "/healthz",
        "/Health",
        "/upload",
        "/ready/now",
        "/%68ealth",
        "/federation",
        "/?health",
    ];
    for target in targets {
        let bytes = expect_reply(route(&plain("GET", target), OPEN));
        check_plain(&bytes, "HTTP/1.1 200 OK", body, false);
        let bytes = expect_reply(route(&plain("HEAD", target), OPEN));
        check_plain(&bytes, "HTTP/1.1 200 OK", body, true);
    }
}

#[test]
fn other_methods_are_405_with_allow() {
    for method in [
        "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "get", "CONNECT",
    ] {
        for target in ["/", "/health", "/federation"] {
            let bytes = expect_reply(route(&plain(method, target), OPEN));
            let reply = check_plain(
                &bytes,
                "HTTP/1.1 405 Method Not Allowed",
                r#"{"error":"method not allowed"}"#,
                false,
            );
            assert_eq!(reply.header("Allow"), Some("GET, HEAD"), "{method}");
        }
    }
}

#[test]
fn non_get_upgrade_is_405() {
    for method in ["POST", "PUT", "OPTIONS"] {
        let bytes = expect_reply(route(&upgrade(method, "/", Some("13"), Some(KEY)), OPEN));
        let reply = check_plain(
            &bytes,
            "HTTP/1.1 405 Method Not Allowed",
            r#"{"error":"method not allowed"}"#,
            false,
        );
        assert_eq!(reply.header("Allow"), Some("GET, HEAD"));
    }
}

#[test]
fn head_with_upgrade_headers_is_not_an_upgrade() {
    // §2.5: an upgrade request is a GET; a HEAD falls through to the GET/HEAD rows.
    assert_eq!(
        route(&upgrade("HEAD", "/health", Some("13"), Some(KEY)), OPEN),
        Route::Health {
            path: HealthPath::Health,
            head_only: true
        }
    );
    let bytes = expect_reply(route(&upgrade("HEAD", "/", Some("13"), Some(KEY)), OPEN));
    check_plain(
        &bytes,
        "HTTP/1.1 200 OK",
        r#"{"error":"This is a WebSocket relay endpoint"}"#,
        true,
    );
}

#[test]
fn wrong_or_missing_websocket_version_is_426() {
    for version in [
        None,
        Some("12"),
        Some("14"),
        Some("13, 8"),
        Some(""),
        Some("013"),
    ] {
        for target in ["/", "/federation"] {
            let bytes = expect_reply(route(&upgrade("GET", target, version, Some(KEY)), OPEN));
            let reply = check_plain(
                &bytes,
                "HTTP/1.1 426 Upgrade Required",
                r#"{"error":"unsupported websocket version"}"#,
                false,
            );
            assert_eq!(
                reply.header("Sec-WebSocket-Version"),
                Some("13"),
                "{version:?}"
            );
        }
    }
}

#[test]
fn bad_or_missing_websocket_key_is_400() {
    let keys = [
        None,
        Some(""),
        Some("dGhlIHNhbXBsZSBub25jZQ"),       // padding missing
        Some("dGhlIHNhbXBsZSBub25jZQ="),      // padding short
        Some("dGhlIHNhbXBsZSBub25jZQ==="),    // padding long
        Some("dGhlIHNhbXBsZSBub25jZQ=A"),     // padding not at the end
        Some("dGhlIHNhbXBsZSBub25jZ!=="),     // not in the alphabet
        Some("dGhlIHNhbXBsZSBub25jZR=="),     // non-zero trailing bits: no 16 bytes encode to this
        Some("dGhlIHNhbXBsZSBub25jZQ"),       // unpadded
        Some("aGVsbG8="),                     // valid base64 of 5 bytes
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="), // valid base64 of 20 bytes
        Some("dGhlIHNhbXBsZSBub25jZQ-_"),     // URL-safe alphabet
    ];
    for key in keys {
        let bytes = expect_reply(route(&upgrade("GET", "/", Some("13"), key), OPEN));
        check_plain(
            &bytes,
            "HTTP/1.1 400 Bad Request",
            r#"{"error":"bad request"}"#,
            false,
        );
    }
}

#[test]
fn valid_keys_of_sixteen_bytes_upgrade() {
    for key in [
        KEY,
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "/////////////////////w==",
        "+/+/+/+/+/+/+/+/+/+/+w==",
    ] {
        assert!(
            matches!(
                route(&upgrade("GET", "/", Some("13"), Some(key)), OPEN),
                Route::ClientUpgrade { .. }
            ),
            "{key}"
        );
    }
}

#[test]
fn draining_refuses_every_upgrade_with_503() {
    for target in ["/", "/federation", "/ws"] {
        let bytes = expect_reply(route(&good_upgrade(target), DRAINING));
        let reply = check_plain(
            &bytes,
            "HTTP/1.1 503 Service Unavailable",
            r#"{"error":"draining"}"#,
            false,
        );
        assert_eq!(reply.header("Retry-After"), Some("5"));
    }
}

#[test]
fn draining_keeps_answering_plain_requests() {
    let bytes = expect_reply(route(&plain("GET", "/"), DRAINING));
    check_plain(
        &bytes,
        "HTTP/1.1 200 OK",
        r#"{"error":"This is a WebSocket relay endpoint"}"#,
        false,
    );
}

#[test]
fn fixed_replies() {
    check_plain(
        &bad_request(),
        "HTTP/1.1 400 Bad Request",
        r#"{"error":"bad request"}"#,
        false,
    );
    check_plain(
        &head_too_large(),
        "HTTP/1.1 431 Request Header Fields Too Large",
        r#"{"error":"request header fields too large"}"#,
        false,
    );
    let reply = check_plain(
        &overloaded(),
        "HTTP/1.1 503 Service Unavailable",
        r#"{"error":"overloaded"}"#,
        false,
    );
    assert_eq!(reply.header("Retry-After"), Some("5"));
    check_plain(
        &handshake_timeout(),
        "HTTP/1.1 408 Request Timeout",
        r#"{"error":"request timeout"}"#,
        false,
    );
}

#[test]
fn bad_request_reply_is_exact() {
    let expected = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
                    Content-Length: 23\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n\
                    {\"error\":\"bad request\"}";
    assert_eq!(std::str::from_utf8(&bad_request()), Ok(expected));
}
