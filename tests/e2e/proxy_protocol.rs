//! The PROXY protocol on the main port (§2.9) against the relay binary: the
//! header of a trusted source names the client address that the per-address limit
//! counts (§2.10), in both versions, split over many segments, with TLVs, and with
//! LOCAL; untrusted sources are direct and cannot claim an address; a trusted
//! source without a valid header is closed without a response.
//!
//! The loopback sources 127.0.0.1-127.0.0.3 stand for a load balancer and clients.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use crate::common::*;
use crate::wire::{Response, fresh_id, parse_response};

const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const DIRECT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const OTHER_DIRECT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

fn v1(client: [u8; 4]) -> Vec<u8> {
    let [a, b, c, d] = client;
    format!("PROXY TCP4 {a}.{b}.{c}.{d} 127.0.0.1 40000 8080\r\n").into_bytes()
}

/// A v2 PROXY (command 1) or LOCAL (0) header over TCP/IPv4 from `client`, with
/// `tlv_bytes` of TLVs.
fn v2(command: u8, client: [u8; 4], tlv_bytes: usize) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x20 | command, 0x11]);
    header.extend_from_slice(&((12 + tlv_bytes) as u16).to_be_bytes());
    header.extend_from_slice(&client);
    header.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
    // One TLV: type 0x04 (NOOP), its length, zeros.
    if tlv_bytes > 0 {
        header.push(0x04);
        header.extend_from_slice(&((tlv_bytes - 3) as u16).to_be_bytes());
        header.extend(std::iter::repeat_n(0, tlv_bytes - 3));
    }
    header
}

/// Everything the relay sends until it closes.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return bytes,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("relay neither answered nor closed within {STUCK:?}")
            }
            Err(_) => return bytes,
        }
    }
}

/// `prefix` and then a /health request from `source`, in one write: the response.
fn health_from(source: IpAddr, addr: SocketAddr, prefix: &[u8]) -> Response {
    let mut stream = connect_from(source, addr);
    stream.write_all(&[prefix, HEALTH].concat()).unwrap();
    parse_response(&read_to_close(&mut stream))
}

/// A session from `source` behind `prefix`, its HandshakeAck received.
fn session_from(source: IpAddr, addr: SocketAddr, prefix: &[u8]) -> Client {
    let mut stream = connect_from(source, addr);
    stream.write_all(prefix).unwrap();
    let mut client = Client::over(stream, addr);
    client.handshake_as(&fresh_id());
    client
}

fn connection_errors(relay: &Relay) -> f64 {
    metric_value(&scrape_metrics(relay), "relay_connection_errors_total", "")
}

fn refused_per_ip(relay: &Relay) -> f64 {
    let text = scrape_metrics(relay);
    metric_value(
        &text,
        "relay_connections_refused_total",
        "{reason=\"per_ip\"}",
    )
}

#[test]
fn the_trusted_balancers_header_names_the_client_that_the_per_address_limit_counts() {
    let dir = TempDir::new("proxy-protocol");
    let relay = Relay::start(
        dir.path(),
        &[
            ("RELAY_PROXY_PROTOCOL", "any"),
            ("RELAY_PROXY_TRUSTED", "127.0.0.1/32"),
            ("RELAY_MAX_CONNECTIONS_PER_IP", "1"),
            ("RELAY_SHARDS", "2"),
        ],
    );
    // A v1 header for client 203.0.113.5, then a session that stores.
    let mut first = session_from(BALANCER, relay.addr, &v1([203, 0, 113, 5]));
    first.send_json(&update_json("u1", B, &[1, 2]));
    assert_eq!(first.recv_json()["payload"]["status"], "Stored");

    // The same client behind a v2 header is at its limit; the balancer is not.
    let refused = health_from(BALANCER, relay.addr, &v2(1, [203, 0, 113, 5], 0));
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.body_text(), r#"{"error":"too many connections"}"#);
    assert_eq!(refused_per_ip(&relay), 1.0);

    // Another client, its v2 header with 300 bytes of TLVs arriving one byte per
    // segment, and the request only after it.
    let mut stream = connect_from(BALANCER, relay.addr);
    for byte in v2(1, [203, 0, 113, 6], 300) {
        stream.write_all(&[byte]).unwrap();
    }
    stream.write_all(HEALTH).unwrap();
    let served = parse_response(&read_to_close(&mut stream));
    assert_eq!(served.status, 200, "{served:?}");

    // LOCAL (the balancer's own health check) keeps the TCP peer: 127.0.0.1, which
    // has one connection while this session lasts.
    let mut local = session_from(BALANCER, relay.addr, &v2(0, [0; 4], 0));
    let again = health_from(BALANCER, relay.addr, &v2(0, [0; 4], 0));
    assert_eq!(again.status, 429, "{again:?}");
    local.send_json(&update_json("u2", B, &[3]));
    assert_eq!(local.recv_json()["payload"]["status"], "Stored");

    // Untrusted sources are direct: no header is read, so they cannot claim an
    // address. A session from 127.0.0.2 counts as 127.0.0.2, and a header it sends
    // is just bytes in front of HTTP.
    let direct = session_from(DIRECT, relay.addr, b"");
    let claimed = health_from(DIRECT, relay.addr, &v1([198, 51, 100, 1]));
    assert_eq!(claimed.status, 429, "{claimed:?}");
    let garbled = health_from(OTHER_DIRECT, relay.addr, &v1([198, 51, 100, 1]));
    assert_eq!(garbled.status, 400, "{garbled:?}");
    assert_eq!(refused_per_ip(&relay), 3.0);
    drop((first, local, direct));
}

#[test]
fn a_trusted_source_without_a_valid_header_is_closed_without_a_response() {
    let dir = TempDir::new("proxy-protocol-invalid");
    let relay = Relay::start(
        dir.path(),
        &[
            ("RELAY_PROXY_PROTOCOL", "v2"),
            // The default: 127.0.0.0/8 and ::1.
            ("RELAY_PROXY_TRUSTED", ""),
            ("RELAY_HANDSHAKE_TIMEOUT", "1"),
        ],
    );
    let errors_before = connection_errors(&relay);
    let mut bad_version = v2(1, [203, 0, 113, 5], 0);
    bad_version[12] = 0x31;
    let cases: [(&str, Vec<u8>); 4] = [
        ("no header", HEALTH.to_vec()),
        (
            "the other version",
            [v1([203, 0, 113, 5]), HEALTH.to_vec()].concat(),
        ),
        (
            "a malformed header",
            [bad_version, HEALTH.to_vec()].concat(),
        ),
        // Incomplete until the handshake timer closes it.
        (
            "an incomplete header",
            v2(1, [203, 0, 113, 5], 0)[..15].to_vec(),
        ),
    ];
    for (label, bytes) in &cases {
        let mut stream = connect_from(BALANCER, relay.addr);
        stream.write_all(bytes).unwrap();
        let answer = read_to_close(&mut stream);
        assert!(
            answer.is_empty(),
            "{label}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(
        connection_errors(&relay),
        errors_before + cases.len() as f64
    );

    // A valid header is served.
    let served = health_from(DIRECT, relay.addr, &v2(1, [203, 0, 113, 5], 0));
    assert_eq!(served.status, 200, "{served:?}");
}
