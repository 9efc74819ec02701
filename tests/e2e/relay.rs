//! End-to-end tests of the store-and-forward path against the relay binary on
//! 127.0.0.1: cross-shard delivery, durability across restarts, pipelining,
//! ordering of a large backlog, live push, and the rate and size limits.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::*;
use serde_json::Value;

/// Sends `count` blobs from A to B, returning their blob ids in send order.
fn send_blobs(relay: &Relay, count: usize, ciphertext: impl Fn(usize) -> Vec<u8>) -> Vec<String> {
    let mut sender = Client::handshake(relay.addr, A);
    let mut ids = Vec::new();
    for i in 0..count {
        sender.feed_json(&update_json(&format!("m{i}"), B, &ciphertext(i)));
    }
    sender.flush();
    for i in 0..count {
        let ack = sender.recv_json();
        assert_eq!(ack["payload"]["type"], "Acknowledgment", "{ack}");
        assert_eq!(ack["payload"]["status"], "Stored", "{ack}");
        assert_eq!(
            ack["payload"]["message_id"],
            format!("m{i}"),
            "replies in request order"
        );
        ids.push(ack["payload"]["blob_id"].as_str().unwrap().to_owned());
    }
    sender.close();
    ids
}

/// Connects as B and reads `count` delivered blobs.
fn receive_blobs(relay: &Relay, count: usize) -> (Client, Vec<Value>) {
    let mut recipient = Client::handshake(relay.addr, B);
    let blobs = (0..count)
        .map(|_| recipient.recv_json())
        .collect::<Vec<_>>();
    for blob in &blobs {
        assert_eq!(blob["payload"]["type"], "EncryptedUpdate", "{blob}");
        assert_eq!(blob["payload"]["recipient_id"], B);
        assert!(
            blob["payload"].get("sender_id").is_none(),
            "zero knowledge: no sender"
        );
    }
    (recipient, blobs)
}

fn cross_shard_delivery(shards: &str) {
    let dir = TempDir::new("cross");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", shards)]);
    let ids = send_blobs(&relay, 3, |i| vec![i as u8, 1, 2]);
    let (_recipient, blobs) = receive_blobs(&relay, 3);
    for (i, blob) in blobs.iter().enumerate() {
        assert_eq!(blob["message_id"], ids[i].as_str());
        assert_eq!(blob["payload"]["ciphertext"], serde_json::json!([i, 1, 2]));
    }
}

#[test]
fn delivers_across_shards_with_two_shards() {
    // A hashes to shard 0 and B to shard 1 of 2 (Appendix A.2).
    cross_shard_delivery("2");
}

#[test]
fn delivers_across_shards_with_four_shards() {
    // A hashes to shard 2 and B to shard 1 of 4 (Appendix A.2).
    cross_shard_delivery("4");
}

#[test]
fn sqlite_keeps_every_stored_blob_across_a_restart() {
    let dir = TempDir::new("restart");
    let ids = {
        let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
        send_blobs(&relay, 20, |i| vec![i as u8; 10])
    };
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let (_recipient, blobs) = receive_blobs(&relay, 20);
    let got: Vec<&str> = blobs
        .iter()
        .map(|b| b["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn memory_backend_loses_blobs_at_exit() {
    let dir = TempDir::new("memory");
    let vars = [("RELAY_SHARDS", "2"), ("RELAY_STORAGE_BACKEND", "memory")];
    {
        let relay = Relay::start(dir.path(), &vars);
        send_blobs(&relay, 2, |_| vec![7]);
        let (_recipient, blobs) = receive_blobs(&relay, 2);
        assert_eq!(blobs.len(), 2);
    }
    let relay = Relay::start(dir.path(), &vars);
    // Nothing is pending: a message sent now is the first thing B receives.
    let mut recipient = Client::handshake(relay.addr, B);
    let ids = send_blobs(&relay, 1, |_| vec![9]);
    let pushed = recipient.recv_json();
    assert_eq!(pushed["message_id"], ids[0].as_str());
}

#[test]
fn pipelined_handshake_update_and_close_is_stored() {
    // A real client writes the upgrade, Handshake and EncryptedUpdate back to back
    // and closes soon after; the hand-off to the owner shard must keep them.
    let dir = TempDir::new("pipeline");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "4")]);
    let mut raw = TcpStream::connect(relay.addr).unwrap();
    let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    for json in [handshake_json(A), update_json("p1", B, &[4, 5, 6])] {
        bytes.extend(masked_binary_frame(&frame(&json)));
    }
    raw.write_all(&bytes).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    raw.write_all(&masked_close_frame(1000)).unwrap();
    let mut sink = Vec::new();
    raw.set_read_timeout(Some(STUCK)).unwrap();
    let _ = raw.read_to_end(&mut sink);
    let (_recipient, blobs) = receive_blobs(&relay, 1);
    assert_eq!(
        blobs[0]["payload"]["ciphertext"],
        serde_json::json!([4, 5, 6])
    );
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    out.extend(mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn masked_binary_frame(payload: &[u8]) -> Vec<u8> {
    masked(2, payload)
}

fn masked_close_frame(code: u16) -> Vec<u8> {
    masked(8, &code.to_be_bytes())
}

#[test]
fn a_thousand_pending_blobs_arrive_in_order() {
    let dir = TempDir::new("backlog");
    let relay = Relay::start(
        dir.path(),
        &[("RELAY_SHARDS", "2"), ("RELAY_RATE_LIMIT", "100000")],
    );
    let ids = send_blobs(&relay, 1000, |i| (i as u32).to_be_bytes().to_vec());
    let (_recipient, blobs) = receive_blobs(&relay, 1000);
    for (i, blob) in blobs.iter().enumerate() {
        assert_eq!(blob["message_id"], ids[i].as_str(), "blob {i} out of order");
    }
}

#[test]
fn live_push_reaches_a_connected_recipient_and_acks_delete() {
    let dir = TempDir::new("live");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut recipient = Client::handshake(relay.addr, B);
    let ids = send_blobs(&relay, 2, |i| vec![i as u8]);
    for id in &ids {
        let pushed = recipient.recv_json();
        assert_eq!(pushed["message_id"], id.as_str());
        recipient.send_json(&ack_json(id, "ReceivedByRecipient"));
    }
    recipient.close();
    // Acked blobs are gone: a new session of B receives only what is sent next.
    let mut again = Client::handshake(relay.addr, B);
    let later = send_blobs(&relay, 1, |_| vec![42]);
    assert_eq!(again.recv_json()["message_id"], later[0].as_str());
}

#[test]
fn the_general_bucket_refuses_with_rate_limited() {
    let dir = TempDir::new("rate");
    let relay = Relay::start(dir.path(), &[("RELAY_RATE_LIMIT", "3")]);
    let mut client = Client::handshake(relay.addr, A);
    for i in 0..4 {
        client.feed_json(&update_json(&format!("r{i}"), B, &[1]));
    }
    client.flush();
    for i in 0..3 {
        assert_eq!(
            client.recv_json()["payload"]["status"],
            "Stored",
            "request {i}"
        );
    }
    let refused = client.recv_json();
    assert_eq!(refused["payload"]["type"], "Error");
    assert_eq!(refused["payload"]["code"], "rate_limited");
    assert_eq!(refused["payload"]["message_id"], "r3");
    assert!(refused["payload"]["retry_after_secs"].as_u64().unwrap() >= 1);
}

#[test]
fn an_oversized_message_closes_with_1009() {
    let dir = TempDir::new("size");
    let relay = Relay::start(dir.path(), &[("RELAY_MAX_MESSAGE_SIZE", "1024")]);
    let mut client = Client::handshake(relay.addr, A);
    // Exactly RELAY_MAX_MESSAGE_SIZE + 4 bytes is accepted (§2.6)...
    let fits = vec![b' '; 1028];
    client.send_raw(tungstenite::Message::binary(fits));
    assert_eq!(client.recv_json()["payload"]["code"], "malformed_frame");
    // ...one byte more closes the session.
    client.send_raw(tungstenite::Message::binary(vec![0u8; 1029]));
    client.expect_close(1009);
}

#[test]
fn health_probes_answer_with_real_values() {
    let dir = TempDir::new("health");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "3")]);
    send_blobs(&relay, 2, |_| vec![1]);
    for path in ["/health", "/up", "/ready"] {
        let (status, body) = http_get(&relay, path);
        assert_eq!(status, 200, "{path}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["shards"], 3);
        assert_eq!(body["blob_count"], 2);
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    }
    let (status, _) = http_get(&relay, "/healthz");
    assert_eq!(status, 200);
}

fn http_get(relay: &Relay, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(relay.addr).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
