//! Graceful shutdown (§14.1): on SIGTERM the relay drains, answers probes with
//! 503 draining, finishes and acknowledges what it already received, closes
//! sessions with 1001, exits 0, and loses nothing it acknowledged.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::*;

fn signal(relay: &Relay, signal: i32) {
    // SAFETY: kill(2) on the child's pid, which the test owns.
    let result = unsafe { libc::kill(relay.child.id() as i32, signal) };
    assert_eq!(result, 0);
}

fn http_status(relay: &Relay, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(relay.addr).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    (response[9..12].parse().unwrap(), response)
}

#[test]
fn sigterm_during_a_burst_acknowledges_only_what_is_kept() {
    sigterm_during_a_burst_acknowledges_only_what_is_kept_over(Wire::Plain);
}

/// [`sigterm_during_a_burst_acknowledges_only_what_is_kept`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn sigterm_during_a_burst_acknowledges_only_what_is_kept_over(wire: Wire) {
    let dir = TempDir::new("shutdown");
    let vars = [("RELAY_SHARDS", "2"), ("RELAY_RATE_LIMIT", "100000")];
    let mut relay = Relay::start_over(wire, dir.path(), &vars);
    let mut sender = relay.handshake(A);
    for i in 0..500 {
        sender.feed_json(&update_json(&format!("m{i}"), B, &(i as u32).to_be_bytes()));
    }
    sender.flush();
    // "Already received" (§14.1 step 3) is what the relay has read: the signal
    // comes once all 500 have been (and the Handshake), not while some are still
    // in the socket buffer, where a draining relay leaves them.
    while metric_value(&scrape_metrics(&relay), "relay_messages_received_total", "") < 501.0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    signal(&relay, libc::SIGTERM);
    // Every reply that arrives is in order; Stored ones name kept blobs. The session
    // ends with 1001.
    let mut stored = Vec::new();
    let code = loop {
        match sender.recv() {
            Received::Json(reply) => {
                let payload = &reply["payload"];
                assert_eq!(
                    payload["message_id"],
                    format!("m{}", stored.len()),
                    "replies in order"
                );
                assert_eq!(payload["status"], "Stored", "{reply}");
                stored.push(payload["blob_id"].as_str().unwrap().to_owned());
            }
            Received::Close(code, _) => break code,
            Received::Eof => panic!("closed without a Close frame"),
        }
    };
    assert_eq!(code, 1001);
    assert_eq!(
        stored.len(),
        500,
        "messages received before shutdown are processed"
    );
    let status = relay.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let relay = Relay::start_over(wire, dir.path(), &vars);
    let mut recipient = relay.handshake(B);
    for (i, id) in stored.iter().enumerate() {
        assert_eq!(recipient.recv_json()["message_id"], id.as_str(), "blob {i}");
    }
}

#[test]
fn draining_answers_ready_with_503_and_refuses_upgrades() {
    draining_answers_ready_with_503_and_refuses_upgrades_over(Wire::Plain);
}

/// [`draining_answers_ready_with_503_and_refuses_upgrades`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn draining_answers_ready_with_503_and_refuses_upgrades_over(wire: Wire) {
    let dir = TempDir::new("draining");
    let mut relay = Relay::start_over(wire, dir.path(), &[("RELAY_SHARDS", "1")]);
    // A session that keeps the relay draining until it closes.
    let mut session = relay.handshake(A);
    signal(&relay, libc::SIGTERM);
    session.expect_close(1001);
    // The relay may already be gone once the session has closed; if it answers,
    // it answers as draining. Check it while a second session holds it open.
    let _ = relay.child.wait();
    let mut relay = Relay::start_over(
        wire,
        dir.path(),
        &[("RELAY_SHARDS", "1"), ("RELAY_HANDSHAKE_TIMEOUT", "30")],
    );
    let mut holder = relay.handshake(A);
    // Keep the holder from closing promptly: don't read its Close yet.
    signal(&relay, libc::SIGTERM);
    let (ready, body) = loop {
        let (status, body) = http_status(&relay, "/ready");
        if status == 503 {
            break (status, body);
        }
    };
    assert_eq!(ready, 503);
    assert!(body.contains(r#""status":"draining""#), "{body}");
    let (health, _) = http_status(&relay, "/health");
    assert_eq!(health, 200, "liveness stays healthy");
    let upgrade = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut stream = TcpStream::connect(relay.addr).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    stream.write_all(upgrade.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains(r#"{"error":"draining"}"#), "{response}");
    holder.expect_close(1001);
    assert_eq!(relay.child.wait().unwrap().code(), Some(0));
}
