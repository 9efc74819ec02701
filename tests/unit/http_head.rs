//! Table tests for `http::parse_head` (PROTOCOL.md §2.3, §2.5): limits, parse errors,
//! HTTP/1.0 and 1.1, path extraction and the upgrade token rules.

use vauchi_relay::http::{HeadParse, Request, parse_head};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn complete(raw: &str) -> (usize, Request) {
    match parse_head(raw.as_bytes()) {
        HeadParse::Complete { head_len, request } => (head_len, request),
        other => panic!("expected Complete for {raw:?}, got {other:?}"),
    }
}

#[test]
fn simple_get_is_complete_with_exact_head_length() {
    let raw = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let (head_len, request) = complete(raw);
    assert_eq!(head_len, raw.len());
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/health");
    assert!(!request.is_upgrade);
    assert_eq!(request.websocket_version, None);
    assert_eq!(request.websocket_key, None);
}

#[test]
fn bytes_after_the_head_are_not_part_of_it() {
    let head = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    let raw = format!("{head}hello");
    let (head_len, request) = complete(&raw);
    assert_eq!(head_len, head.len());
    assert_eq!(request.method, "POST");
}

#[test]
fn http_1_0_is_accepted() {
    let (_, request) = complete("GET /up HTTP/1.0\r\n\r\n");
    assert_eq!(request.path, "/up");
}

#[test]
fn path_table() {
    // (request-target, expected path): the path stops at the first `?`, exact bytes.
    let rows = [
        ("/", "/"),
        ("/health", "/health"),
        ("/health/", "/health/"),
        ("/healthz", "/healthz"),
        ("/health?verbose=1", "/health"),
        ("/health?a?b", "/health"),
        ("/?", "/"),
        ("/HEALTH", "/HEALTH"),
        ("/%68ealth", "/%68ealth"),
        ("/federation?x=1", "/federation"),
        ("*", "*"),
    ];
    for (target, path) in rows {
        let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
        let (_, request) = complete(&raw);
        assert_eq!(request.path, path, "target {target:?}");
    }
}

#[test]
fn partial_heads_ask_for_more() {
    let rows = [
        "",
        "G",
        "GET / HTTP/1.1",
        "GET / HTTP/1.1\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n\r",
    ];
    for raw in rows {
        assert_eq!(parse_head(raw.as_bytes()), HeadParse::Partial, "{raw:?}");
    }
}

#[test]
fn malformed_heads_are_bad() {
    let rows: [&[u8]; 7] = [
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
    ];
    for raw in rows {
        assert_eq!(
            parse_head(raw),
            HeadParse::Bad,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

fn head_of_length(total: usize) -> String {
    // "GET / HTTP/1.1\r\nX: <filler>\r\n\r\n" padded to exactly `total` bytes.
    let fixed = "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
    format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(total - fixed))
}

#[test]
fn head_of_exactly_8192_bytes_is_accepted() {
    let raw = head_of_length(8192);
    assert_eq!(raw.len(), 8192);
    let (head_len, _) = complete(&raw);
    assert_eq!(head_len, 8192);
}

#[test]
fn complete_head_of_8193_bytes_is_too_large() {
    let raw = head_of_length(8193);
    assert_eq!(parse_head(raw.as_bytes()), HeadParse::TooLarge);
}

#[test]
fn incomplete_head_already_over_the_limit_is_too_large() {
    let raw = head_of_length(20_000);
    let unfinished = &raw.as_bytes()[..8193];
    assert_eq!(parse_head(unfinished), HeadParse::TooLarge);
    // One byte less is still within the limit and may yet complete.
    assert_eq!(parse_head(&raw.as_bytes()[..8192]), HeadParse::Partial);
}

#[test]
fn a_small_head_followed_by_many_bytes_is_fine() {
    let raw = format!("GET / HTTP/1.1\r\n\r\n{}", "x".repeat(20_000));
    let (head_len, _) = complete(&raw);
    assert_eq!(head_len, 18);
}

fn head_with_fields(count: usize) -> String {
    let mut raw = String::from("GET / HTTP/1.1\r\n");
    for i in 0..count {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    raw
}

#[test]
fn sixty_four_header_fields_are_accepted() {
    complete(&head_with_fields(64));
}

#[test]
fn sixty_five_header_fields_are_too_large() {
    assert_eq!(
        parse_head(head_with_fields(65).as_bytes()),
        HeadParse::TooLarge
    );
    // Also while the head is still incomplete.
    let raw = head_with_fields(65);
    let unfinished = &raw.as_bytes()[..raw.len() - 2];
    assert_eq!(parse_head(unfinished), HeadParse::TooLarge);
}

#[test]
fn upgrade_token_table() {
    // (header lines, expected is_upgrade)
    let rows: &[(&str, bool)] = &[
        ("Upgrade: websocket\r\nConnection: Upgrade\r\n", true),
        ("upgrade: WebSocket\r\nconnection: upgrade\r\n", true),
        ("UPGRADE: WEBSOCKET\r\nCONNECTION: UPGRADE\r\n", true),
        ("Upgrade:websocket\r\nConnection:Upgrade\r\n", true),
        (
            "Upgrade:   websocket   \r\nConnection:  Upgrade  \r\n",
            true,
        ),
        (
            "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n",
            true,
        ),
        (
            "Upgrade: websocket\r\nConnection: Upgrade,keep-alive\r\n",
            true,
        ),
        (
            "Upgrade: websocket\r\nConnection: keep-alive ,  upgrade , close\r\n",
            true,
        ),
        ("Upgrade: h2c, websocket\r\nConnection: Upgrade\r\n", true),
        // Repeated headers: every occurrence counts.
        (
            "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n",
            true,
        ),
        (
            "Upgrade: h2c\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
            true,
        ),
        // Missing or wrong tokens.
        ("Upgrade: websocket\r\n", false),
        ("Connection: Upgrade\r\n", false),
        ("Upgrade: websockets\r\nConnection: Upgrade\r\n", false),
        ("Upgrade: websocket\r\nConnection: Upgraded\r\n", false),
        ("Upgrade: websocket\r\nConnection: keep-alive\r\n", false),
        ("Upgrade: web socket\r\nConnection: Upgrade\r\n", false),
        ("Upgrade: websocket/13\r\nConnection: Upgrade\r\n", false),
        (
            "Upgrade: websocket\r\nConnection: upgrade-insecure\r\n",
            false,
        ),
        ("X-Upgrade: websocket\r\nConnection: Upgrade\r\n", false),
        ("Upgrade: h2c\r\nConnection: upgrade: websocket\r\n", false),
    ];
    for (headers, expected) in rows {
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        let (_, request) = complete(&raw);
        assert_eq!(request.is_upgrade, *expected, "{headers:?}");
    }
}

#[test]
fn websocket_version_and_key_are_captured_trimmed() {
    let raw = format!(
        "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         sec-websocket-key:   {KEY}  \r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (_, request) = complete(&raw);
    assert!(request.is_upgrade);
    assert_eq!(request.websocket_key.as_deref(), Some(KEY));
    assert_eq!(request.websocket_version.as_deref(), Some("13"));
}

#[test]
fn repeated_websocket_key_is_joined_so_it_cannot_validate() {
    let raw =
        format!("GET / HTTP/1.1\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Key: {KEY}\r\n\r\n");
    let (_, request) = complete(&raw);
    assert_eq!(request.websocket_key, Some(format!("{KEY}, {KEY}")));
}
