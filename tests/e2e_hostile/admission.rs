//! Admission and the handshake timer (§2.2) against the relay binary: hundreds of
//! connections that dribble their HTTP head are each closed by the handshake timer
//! (not before it) while a normal client is served, and `RELAY_MAX_CONNECTIONS`
//! refuses the connection over the limit with `503` until a slot frees up. Both
//! count in `relay_connection_errors_total` (§12.2).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::wire::{RawWs, Response, fresh_id, http_exchange, parse_response, upgrade_request};

/// The dribbling pace of the slow clients.
const DRIBBLE_INTERVAL: Duration = Duration::from_millis(200);
/// The slow clients.
const SLOW_CLIENTS: usize = 300;
/// `RELAY_HANDSHAKE_TIMEOUT` in the slowloris test.
const HANDSHAKE_TIMEOUT_SECS: u64 = 2;
/// A close this soon after connecting came from something other than the timer.
const TOO_EARLY: Duration = Duration::from_secs(1);
/// Three client addresses: Linux routes all of 127.0.0.0/8 to the loopback.
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const SECOND: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const THIRD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn scrape(relay: &Relay) -> String {
    scrape_metrics(relay)
}

fn connection_errors(relay: &Relay) -> u64 {
    let text = scrape(relay);
    let line = text
        .lines()
        .find(|l| l.starts_with("relay_connection_errors_total "))
        .unwrap_or_else(|| panic!("no relay_connection_errors_total in\n{text}"));
    line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
}

/// A complete upgrade request padded so that, at one byte per interval, it cannot
/// be finished within the hang guard: the relay only ever sees a partial head.
fn slow_head() -> Vec<u8> {
    let padding = "a".repeat(400);
    upgrade_request("/", &format!("X-Padding: {padding}\r\n")).into_bytes()
}

struct SlowClient {
    stream: TcpStream,
    connected_at: Instant,
    sent: usize,
    received: Vec<u8>,
    closed_after: Option<Duration>,
}

impl SlowClient {
    /// Whether the relay has closed the connection (EOF or reset); keeps any bytes
    /// it sent first.
    fn poll_closed(&mut self) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }
}

#[test]
fn slow_http_heads_are_closed_by_the_handshake_timer_while_others_are_served() {
    let dir = TempDir::new("admission-slowloris");
    let timeout = HANDSHAKE_TIMEOUT_SECS.to_string();
    let relay = Relay::start(
        dir.path(),
        &[("RELAY_HANDSHAKE_TIMEOUT", &timeout), ("RELAY_SHARDS", "2")],
    );
    let errors_before = connection_errors(&relay);
    let head = slow_head();
    let mut slow: Vec<SlowClient> = (0..SLOW_CLIENTS)
        .map(|_| {
            let mut stream = TcpStream::connect(relay.addr).unwrap();
            let connected_at = Instant::now();
            stream.write_all(&head[..1]).unwrap();
            stream.set_nonblocking(true).unwrap();
            SlowClient {
                stream,
                connected_at,
                sent: 1,
                received: Vec::new(),
                closed_after: None,
            }
        })
        .collect();

    // Meanwhile a normal client connects, completes its Handshake and stores.
    let addr = relay.addr;
    let normal = std::thread::spawn(move || {
        let mut client = Client::handshake(addr, &fresh_id());
        client.send_json(&update_json("u1", B, &[1, 2, 3]));
        let reply = client.recv_json();
        client.close();
        (Instant::now(), reply)
    });

    let start = Instant::now();
    while slow.iter().any(|c| c.closed_after.is_none()) {
        let open = slow.iter().filter(|c| c.closed_after.is_none()).count();
        assert!(
            start.elapsed() < STUCK,
            "{open} of {SLOW_CLIENTS} slow connections still open after {STUCK:?} \
             with RELAY_HANDSHAKE_TIMEOUT={HANDSHAKE_TIMEOUT_SECS}"
        );
        std::thread::sleep(DRIBBLE_INTERVAL);
        for client in slow.iter_mut().filter(|c| c.closed_after.is_none()) {
            let closed = client.poll_closed()
                || match client.stream.write(&head[client.sent..client.sent + 1]) {
                    Ok(_) => {
                        client.sent += 1;
                        false
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                    Err(_) => true,
                };
            if closed {
                client.closed_after = Some(client.connected_at.elapsed());
            }
        }
    }

    let (served_at, reply) = normal.join().expect("the normal client thread");
    assert_eq!(reply["payload"]["type"], "Acknowledgment", "{reply}");
    assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
    let first_close = slow
        .iter()
        .map(|c| c.connected_at + c.closed_after.unwrap())
        .min()
        .unwrap();
    eprintln!(
        "normal client served {:?} before the first slow connection closed",
        first_close.saturating_duration_since(served_at)
    );

    let mut early = Vec::new();
    for (i, client) in slow.iter().enumerate() {
        let after = client.closed_after.unwrap();
        if after < TOO_EARLY {
            early.push((i, after, client.sent));
        }
        assert!(
            client.sent < head.len(),
            "slow client {i} finished its head"
        );
        // The relay MAY send 408 first (§2.2); nothing else.
        assert!(
            client.received.is_empty() || client.received.starts_with(b"HTTP/1.1 408"),
            "slow client {i} got {:?}",
            String::from_utf8_lossy(&client.received)
        );
    }
    assert!(
        early.is_empty(),
        "closed before the {HANDSHAKE_TIMEOUT_SECS} s handshake timer could fire \
         (index, after, bytes sent): {early:?}"
    );
    let longest = slow.iter().map(|c| c.closed_after.unwrap()).max().unwrap();
    eprintln!("slow connections closed after at most {longest:?}");

    let errors_after = connection_errors(&relay);
    assert!(
        errors_after >= errors_before + SLOW_CLIENTS as u64,
        "relay_connection_errors_total went from {errors_before} to {errors_after} \
         after {SLOW_CLIENTS} handshake timeouts"
    );
}

/// Sends an upgrade request: the upgraded connection, or the refusal read to EOF.
fn try_upgrade(addr: SocketAddr) -> Result<RawWs, Response> {
    try_upgrade_from(LOOPBACK, addr)
}

/// The same, from the loopback address `source`.
fn try_upgrade_from(source: IpAddr, addr: SocketAddr) -> Result<RawWs, Response> {
    let mut stream = connect_from(source, addr);
    stream
        .write_all(upgrade_request("/", "").as_bytes())
        .unwrap();
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => bytes.push(byte[0]),
            Ok(_) => panic!("EOF inside the response head: {bytes:?}"),
            Err(e) => panic!("no response head within {STUCK:?}: {e}"),
        }
    }
    if bytes.starts_with(b"HTTP/1.1 101") {
        return Ok(RawWs {
            stream,
            head: String::from_utf8(bytes).unwrap(),
            noise: None,
        });
    }
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    bytes.extend(rest);
    Err(parse_response(&bytes))
}

/// `relay_connections_refused_total{reason}` now.
fn refused(relay: &Relay, reason: &str) -> f64 {
    metric_value(
        &scrape(relay),
        "relay_connections_refused_total",
        &format!("{{reason=\"{reason}\"}}"),
    )
}

fn assert_too_many(response: &Response) {
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(response.body_text(), r#"{"error":"too many connections"}"#);
    assert_eq!(response.header("Retry-After"), Some("5"), "{response:?}");
}

/// A session from `source`, its HandshakeAck received (so certainly admitted).
fn session_from(source: IpAddr, addr: SocketAddr) -> Client {
    let mut client = Client::over(connect_from(source, addr), addr);
    client.handshake_as(&fresh_id());
    client
}

fn assert_overloaded(response: &Response) {
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.body_text(), r#"{"error":"overloaded"}"#);
    assert_eq!(response.header("Retry-After"), Some("5"), "{response:?}");
}

#[test]
fn the_connection_over_the_limit_gets_503_until_one_closes() {
    let dir = TempDir::new("admission-limit");
    let relay = Relay::start(
        dir.path(),
        &[
            ("RELAY_MAX_CONNECTIONS", "5"),
            ("RELAY_SHARDS", "2"),
            // The upgraded-only connections below must outlive the test.
            ("RELAY_HANDSHAKE_TIMEOUT", "600"),
        ],
    );
    let errors_before = connection_errors(&relay);
    // Five connections the relay has certainly accepted (it answered each):
    // two upgraded and awaiting their Handshake, three idle sessions.
    let mut upgraded: Vec<RawWs> = (0..2).map(|_| RawWs::connect(relay.addr)).collect();
    let mut sessions: Vec<Client> = (0..3)
        .map(|_| Client::handshake(relay.addr, &fresh_id()))
        .collect();

    assert_overloaded(
        &try_upgrade(relay.addr)
            .err()
            .expect("6th connection refused"),
    );
    // Whatever the connection turns out to be, it counts: a probe is refused too.
    assert_overloaded(&http_exchange(
        relay.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    ));

    // The admitted connections are unaffected.
    sessions[0].send_json(&update_json("u1", B, &[7]));
    assert_eq!(sessions[0].recv_json()["payload"]["status"], "Stored");
    upgraded[0].send_json(&handshake_json(&fresh_id()));
    let ack: serde_json::Value = serde_json::from_str(&upgraded[0].recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");

    let errors_refused = connection_errors(&relay);
    assert!(
        errors_refused >= errors_before + 2,
        "relay_connection_errors_total went from {errors_before} to {errors_refused} \
         after two refusals"
    );
    assert_eq!(refused(&relay, "global"), 2.0, "§2.10: refusals by reason");
    assert_eq!(refused(&relay, "per_ip"), 0.0);

    // Close one session and wait for the relay's side of the close.
    let mut closing = sessions.pop().unwrap();
    closing.close();
    while let Received::Json(_) = closing.recv() {}
    // The slot is released when the relay has dropped the socket, which the client
    // cannot observe exactly; retry (bounded by the hang guard) until admitted.
    let start = Instant::now();
    let mut refusals_meanwhile = 0;
    let mut admitted = loop {
        match try_upgrade(relay.addr) {
            Ok(ws) => break ws,
            Err(response) => {
                assert_overloaded(&response);
                refusals_meanwhile += 1;
                assert!(
                    start.elapsed() < STUCK,
                    "no connection admitted within {STUCK:?} after one of five closed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    eprintln!("{refusals_meanwhile} refusals before the freed slot was reused");
    admitted.send_json(&handshake_json(&fresh_id()));
    let ack: serde_json::Value = serde_json::from_str(&admitted.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    // Five again: the next one is refused.
    assert_overloaded(&try_upgrade(relay.addr).err().expect("over the limit again"));
    assert!(connection_errors(&relay) > errors_refused);
    drop(upgraded);
}

#[test]
fn an_address_over_its_limit_gets_429_on_every_shard_while_other_addresses_are_admitted() {
    let dir = TempDir::new("admission-per-ip");
    let relay = Relay::start(
        dir.path(),
        &[
            ("RELAY_MAX_CONNECTIONS_PER_IP", "2"),
            ("RELAY_MAX_CONNECTIONS", "4"),
            // Two shards accept: the count must be exact whichever one the kernel
            // gives a connection to.
            ("RELAY_SHARDS", "2"),
        ],
    );
    let errors_before = connection_errors(&relay);
    let mut first: Vec<Client> = (0..2).map(|_| session_from(LOOPBACK, relay.addr)).collect();

    // The address's third connection is refused, whatever it would have been, and
    // as often as it is tried (each attempt may reach either shard).
    for _ in 0..4 {
        assert_too_many(
            &try_upgrade_from(LOOPBACK, relay.addr)
                .err()
                .expect("a third connection from 127.0.0.1 is refused"),
        );
    }
    let mut probe = connect_from(LOOPBACK, relay.addr);
    probe
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut bytes = Vec::new();
    probe.read_to_end(&mut bytes).unwrap();
    assert_too_many(&parse_response(&bytes));
    assert_eq!(refused(&relay, "per_ip"), 5.0);
    assert_eq!(refused(&relay, "global"), 0.0);
    assert!(connection_errors(&relay) >= errors_before + 5);

    // Another address is not affected, and the admitted sessions carry on.
    let mut second: Vec<Client> = (0..2).map(|_| session_from(SECOND, relay.addr)).collect();
    second[0].send_json(&update_json("u1", B, &[1]));
    assert_eq!(second[0].recv_json()["payload"]["status"], "Stored");
    first[1].send_json(&update_json("u2", B, &[2]));
    assert_eq!(first[1].recv_json()["payload"]["status"], "Stored");

    // Four open: the global limit applies first (§2.10), to a new address and to
    // one at its own limit alike.
    assert_overloaded(&try_upgrade_from(THIRD, relay.addr).err().expect("global"));
    assert_overloaded(
        &try_upgrade_from(LOOPBACK, relay.addr)
            .err()
            .expect("global"),
    );
    assert_eq!(refused(&relay, "global"), 2.0);
    assert_eq!(refused(&relay, "per_ip"), 5.0);

    // When one of 127.0.0.1's sessions has closed, the address gets a slot again
    // (retrying until the relay has dropped the socket, bounded by the hang guard).
    let mut closing = first.pop().unwrap();
    closing.close();
    while let Received::Json(_) = closing.recv() {}
    let start = Instant::now();
    let mut admitted = loop {
        match try_upgrade_from(LOOPBACK, relay.addr) {
            Ok(ws) => break ws,
            Err(response) => {
                assert!(
                    [429, 503].contains(&response.status),
                    "while the slot is released: {response:?}"
                );
                assert!(
                    start.elapsed() < STUCK,
                    "127.0.0.1 not admitted within {STUCK:?} after one of its sessions closed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    admitted.send_json(&handshake_json(&fresh_id()));
    let ack: serde_json::Value = serde_json::from_str(&admitted.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    drop((first, second));
}
