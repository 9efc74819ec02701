//! The Noise NK transport (§15.1) against the relay binary, with the test client
//! of `common/noise.rs`: the key (`/pubkey`, the key file, RELAY_NOISE_STATIC_KEY),
//! the opening and `"noise_nk"`, frames larger than one message, requests
//! pipelined behind the encrypted Handshake across the hand-off, Pings in clear,
//! RELAY_REQUIRE_NOISE_ENCRYPTION, and the behaviours of §4-§9 (delivery, live
//! push, notifications, device sync, proofs, purge, back-pressure, shutdown) run
//! over Noise by the same test functions as over plain sessions. Hostile input is
//! in `e2e_hostile/noise.rs`.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::noise::{self, MAGIC, PLAINTEXT_MAX};
use crate::common::*;
use crate::wire::*;
use crate::{delivery, features, shutdown};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn features_of(ack: &Value) -> Vec<String> {
    assert_eq!(ack["payload"]["type"], "HandshakeAck", "{ack}");
    serde_json::from_value(ack["payload"]["features"].clone()).unwrap()
}

#[test]
fn a_noise_session_gets_noise_nk_and_a_plain_one_does_not() {
    let dir = TempDir::new("noise-ack");
    let relay = Relay::start_over(Wire::Noise, dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut noisy = relay.connect();
    noisy.send_json(&handshake_json(A));
    let noise_features = features_of(&noisy.recv_json());
    let mut plain = Client::connect(relay.addr);
    plain.send_json(&handshake_json(B));
    let plain_features = features_of(&plain.recv_json());
    assert_eq!(plain_features.len(), 10);
    assert!(!plain_features.contains(&"noise_nk".to_owned()));
    let mut expected = plain_features.clone();
    expected.push("noise_nk".to_owned());
    assert_eq!(noise_features, expected, "appended after the ten");
    let scrape = scrape_metrics(&relay);
    assert_eq!(metric_value(&scrape, "relay_noise_sessions_total", ""), 1.0);
}

#[test]
fn the_key_file_is_made_once_with_mode_0600_and_kept() {
    let dir = TempDir::new("noise-keyfile");
    let first = Relay::start_over(Wire::Noise, dir.path(), &[]);
    let path = dir.path().join("relay_noise_key.bin");
    let bytes = std::fs::read(&path).expect("the key file");
    assert_eq!(bytes.len(), 64);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(first.noise_key.unwrap()[..], bytes[32..], "/pubkey");
    let log = first.log.lock().unwrap().join("\n");
    assert!(!log.contains(&b64(&bytes[..32])), "private key logged");
    assert!(
        !log.contains(&hex::encode(&bytes[..32])),
        "private key logged"
    );
    drop(first);
    let second = Relay::start_over(Wire::Noise, dir.path(), &[]);
    assert_eq!(second.noise_key, Some(bytes[32..].try_into().unwrap()));
    second.handshake(A);
}

#[test]
fn relay_noise_static_key_is_used_and_no_file_is_written() {
    let dir = TempDir::new("noise-env");
    let key = vauchi_relay::noise::StaticKey::generate();
    let text = b64(&key.to_bytes());
    // At trace level, so that nothing anywhere may print the key.
    let relay = Relay::start_over(
        Wire::Noise,
        dir.path(),
        &[("RELAY_NOISE_STATIC_KEY", &text), ("RUST_LOG", "trace")],
    );
    assert_eq!(relay.noise_key.as_ref(), Some(key.public()));
    assert!(!dir.path().join("relay_noise_key.bin").exists());
    let mut session = relay.handshake(A);
    session.send_json(&update_json("k1", B, &[1]));
    assert_eq!(session.recv_json()["payload"]["status"], "Stored");
    session.close();
    let log = relay.log.lock().unwrap().join("\n");
    assert!(!log.contains(&text) && !log.contains(&b64(key.private())));
    assert!(!log.contains(&hex::encode(key.private())));
}

/// §15.1, §13.1: a bad key file or variable stops startup with status 1 naming
/// the file or variable, and never prints the key.
#[test]
fn a_bad_key_stops_startup_naming_the_file_or_variable() {
    let key = vauchi_relay::noise::StaticKey::generate();
    let secret = b64(key.private());
    let cases: [(&str, Vec<u8>, u32); 2] = [
        ("readable by others", key.to_bytes().to_vec(), 0o644),
        ("short", key.to_bytes()[..60].to_vec(), 0o600),
    ];
    for (label, content, mode) in cases {
        let dir = TempDir::new("noise-badfile");
        let path = dir.path().join("relay_noise_key.bin");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let output = relay_command(dir.path(), &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{label}: {stderr}");
        assert!(stderr.contains("relay_noise_key.bin"), "{label}: {stderr}");
        assert!(!stderr.contains(&secret), "{label}: {stderr}");
    }
    let dir = TempDir::new("noise-badvar");
    let mut mismatched = key.to_bytes();
    mismatched[63] ^= 1;
    let text = b64(&mismatched);
    let vars = [("RELAY_NOISE_STATIC_KEY", text.as_str())];
    let output = relay_command(dir.path(), &vars).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("RELAY_NOISE_STATIC_KEY"), "{stderr}");
    assert!(
        !stderr.contains(&text) && !stderr.contains(&secret),
        "{stderr}"
    );
}

/// §15.1: a frame over 65519 bytes travels in consecutive messages both ways; a
/// frame that fits is one message.
#[test]
fn frames_larger_than_one_message_are_split_and_reassembled() {
    let dir = TempDir::new("noise-large");
    let relay = Relay::start_over(Wire::Noise, dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut sender = relay.handshake(A);
    let mut recipient = RawWs::connect_to(&relay);
    recipient.send_json(&handshake_json(B));
    assert!(unprefix(&recv_frame(&mut recipient)).contains("HandshakeAck"));
    let ciphertext: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let json = update_json("big", B, &ciphertext);
    assert!(json.len() > 3 * PLAINTEXT_MAX, "spans several messages");
    sender.send_json(&json);
    let stored = sender.recv_json();
    assert_eq!(stored["payload"]["status"], "Stored", "{stored}");
    // Read the push message by message.
    let mut sizes = Vec::new();
    let frame = loop {
        match recipient.next_raw_event() {
            Event::Binary(message) => {
                sizes.push(message.len() - 16);
                let noise = recipient.noise.as_mut().unwrap();
                noise.open(&message);
                if let Some(frame) = noise.next_frame() {
                    break frame;
                }
            }
            other => panic!("{other:?}"),
        }
    };
    let (last, full) = sizes.split_last().unwrap();
    assert!(full.iter().all(|n| *n == PLAINTEXT_MAX), "{sizes:?}");
    assert!(*last <= PLAINTEXT_MAX && !full.is_empty(), "{sizes:?}");
    let value: Value = serde_json::from_str(&unprefix(&frame)).unwrap();
    assert_eq!(value["payload"]["ciphertext"], json!(ciphertext));
    // A small reply is one message.
    recipient.send_json(&ack_json(value["message_id"].as_str().unwrap(), "Stored"));
    recipient.send_json(&envelope("bar", json!({"type": "Bogus"})));
    match recipient.next_raw_event() {
        Event::Binary(message) => {
            let noise = recipient.noise.as_mut().unwrap();
            noise.open(&message);
            let reply = noise.next_frame().expect("one message, one frame");
            assert!(unprefix(&reply).contains("unknown_type"));
        }
        other => panic!("{other:?}"),
    }
}

fn recv_frame(ws: &mut RawWs) -> Vec<u8> {
    match ws.next_event() {
        Event::Binary(frame) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// §4.8 and §15.1 together: frames behind the encrypted Handshake, in the same
/// transport message and in the next ones, all written at once, are processed
/// after the hand-off to the owner shard, in order.
#[test]
fn requests_pipelined_behind_the_encrypted_handshake_survive_the_hand_off() {
    let dir = TempDir::new("noise-pipeline");
    let relay = Relay::start_over(Wire::Noise, dir.path(), &[("RELAY_SHARDS", "2")]);
    for (round, client_id) in [A, B, A, B].iter().enumerate() {
        let mut ws = RawWs::connect_to(&relay);
        let noise = ws.noise.as_mut().unwrap();
        let handshake = frame(&handshake_json(client_id));
        let first = frame(&envelope("p1", json!({"type": "Bogus"})));
        let second = frame(&envelope("p2", json!({"type": "Bogus"})));
        let third = frame(&envelope("p3", json!({"type": "Bogus"})));
        let mut bytes = Vec::new();
        for plaintext in [[handshake, first.clone()].concat(), second, third] {
            bytes.extend(encode_frame(0x82, &noise.seal(&plaintext), true));
        }
        ws.write(&bytes);
        let ack: Value = serde_json::from_str(&unprefix(&recv_frame(&mut ws))).unwrap();
        assert!(features_of(&ack).contains(&"noise_nk".to_owned()));
        for id in ["p1", "p2", "p3"] {
            let (code, message_id) = expect_error(&unprefix(&recv_frame(&mut ws)));
            assert_eq!(
                (code.as_str(), message_id),
                ("unknown_type", json!(id)),
                "{round}"
            );
        }
    }
}

#[test]
fn pings_are_answered_in_clear_on_a_noise_session() {
    let dir = TempDir::new("noise-ping");
    let relay = Relay::start_over(Wire::Noise, dir.path(), &[]);
    let mut ws = RawWs::connect_to(&relay);
    // Before the encrypted Handshake and after it.
    ws.send_frame(0x89, b"early", true);
    assert_eq!(ws.next_raw_event(), Event::Pong(b"early".to_vec()));
    ws.send_json(&handshake_json(A));
    recv_frame(&mut ws);
    ws.send_frame(0x89, b"late", true);
    assert_eq!(ws.next_raw_event(), Event::Pong(b"late".to_vec()));
    // The client's Close, in clear, is echoed.
    ws.send_frame(0x88, &1000u16.to_be_bytes(), true);
    assert_eq!(ws.next_raw_event(), Event::Close(1000, String::new()));
}

#[test]
fn the_handshake_timer_runs_until_the_encrypted_handshake() {
    let dir = TempDir::new("noise-timer");
    let relay = Relay::start_over(Wire::Noise, dir.path(), &[("RELAY_HANDSHAKE_TIMEOUT", "1")]);
    let mut ws = RawWs::connect_to(&relay);
    ws.expect_close(1008, "handshake timeout");
}

#[test]
fn require_noise_closes_plain_handshakes_and_keeps_probes() {
    let dir = TempDir::new("noise-required");
    let relay = Relay::start_over(
        Wire::Noise,
        dir.path(),
        &[("RELAY_REQUIRE_NOISE_ENCRYPTION", "true")],
    );
    let mut plain = RawWs::connect(relay.addr);
    plain.send_json(&handshake_json(A));
    plain.expect_close(1008, "noise required");
    // A short message with the magic is not an opening either (§4.2 step 2).
    let mut short = RawWs::connect(relay.addr);
    short.send_binary(&[&MAGIC[..], &[0; 40]].concat());
    short.expect_close(1008, "noise required");
    let mut noisy = relay.handshake(A);
    noisy.send_json(&update_json("r1", B, &[1]));
    assert_eq!(noisy.recv_json()["payload"]["status"], "Stored");
    let health = http_exchange(relay.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(health.status, 200);
}

/// §15.1: requiring Noise leaves federation links alone: a peer's plain
/// PeerHandshake on `/federation` is answered.
#[test]
fn require_noise_leaves_federation_links_alone() {
    let dir = TempDir::new("noise-required-fed");
    let relay = Relay::start(
        dir.path(),
        &[
            ("RELAY_REQUIRE_NOISE_ENCRYPTION", "true"),
            ("RELAY_FEDERATION_ENABLED", "true"),
        ],
    );
    let mut peer = RawWs::upgrade_with(relay.addr, &upgrade_request("/federation", ""));
    peer.send_json(&envelope(
        "fed-1",
        json!({"type": "PeerHandshake", "relay_id": "peer-noise", "version": 1,
               "listen_addr": "127.0.0.1:0"}),
    ));
    let ack: Value = serde_json::from_str(&peer.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "PeerHandshakeAck", "{ack}");
    assert_eq!(ack["payload"]["accepted"], true, "{ack}");
}

#[test]
fn an_opening_for_another_key_fails_the_noise_handshake() {
    let dir = TempDir::new("noise-otherkey");
    let relay = Relay::start(dir.path(), &[]);
    let other = vauchi_relay::noise::StaticKey::generate();
    let (opening, _) = noise::opening(other.public());
    let mut ws = RawWs::connect(relay.addr);
    ws.send_binary(&opening);
    ws.expect_close(1008, "noise handshake failed");
}

// §4-§9 over Noise: the same test functions as the plain sessions'.

#[test]
fn delivery_and_notifications_across_shards_over_noise() {
    delivery::delivered_then_received_by_recipient_across_shards_over(Wire::Noise);
}

#[test]
fn connect_time_delivery_over_noise() {
    delivery::connect_time_delivery_notifies_every_sender_session_once_over(Wire::Noise);
}

#[test]
fn stored_acks_precede_delivered_over_noise() {
    delivery::delivered_never_precedes_the_senders_stored_ack_over(Wire::Noise);
}

#[test]
fn quotas_over_noise() {
    delivery::blob_count_quota_fails_the_third_store_over(Wire::Noise);
}

#[test]
fn back_pressure_closes_a_slow_noise_reader_with_1013_losing_nothing() {
    delivery::a_recipient_that_stops_reading_is_closed_with_1013_and_loses_nothing_over(
        Wire::Noise,
    );
}

#[test]
fn live_push_registration_over_noise() {
    delivery::a_closing_session_leaves_a_newer_sessions_live_push_in_place_over(Wire::Noise);
}

#[test]
fn device_sync_over_noise() {
    features::device_sync_flow("2", json!({}), Wire::Noise);
}

#[test]
fn recovery_proofs_over_noise() {
    features::recovery_proofs_are_stored_replaced_and_queried_across_shards_over(Wire::Noise);
}

#[test]
fn purge_over_noise() {
    features::purge_deletes_blobs_device_sync_and_the_proof_over(Wire::Noise);
}

#[test]
fn shutdown_during_a_burst_over_noise() {
    shutdown::sigterm_during_a_burst_acknowledges_only_what_is_kept_over(Wire::Noise);
}

#[test]
fn draining_over_noise() {
    shutdown::draining_answers_ready_with_503_and_refuses_upgrades_over(Wire::Noise);
}

/// §2.6 + §15.1 "The size limit of §2.6 applies to the reassembled
/// frame": a v1 frame of exactly RELAY_MAX_MESSAGE_SIZE + 4 bytes is accepted on a
/// plain session, so it must be on a Noise one, where it travels as one transport
/// message of frame + 16 bytes.
#[test]
fn a_frame_of_exactly_the_limit_is_accepted_over_noise_with_a_small_limit() {
    exact_limit_over(Wire::Noise);
}

/// The control: the same frame on a plain session is accepted; one byte more is
/// refused on both.
#[test]
fn a_frame_of_exactly_the_limit_is_accepted_plain_with_a_small_limit() {
    exact_limit_over(Wire::Plain);
}

fn exact_limit_over(wire: Wire) {
    let dir = TempDir::new("noise-exact-limit");
    let relay = Relay::start_over(wire, dir.path(), &[("RELAY_MAX_MESSAGE_SIZE", "1024")]);
    let mut client = relay.handshake(A);
    let mut json = String::new();
    'outer: for n in 1..1000 {
        for id in ["k", "kk"] {
            let candidate = update_json(id, B, &vec![1u8; n]);
            if candidate.len() == 1024 {
                json = candidate;
                break 'outer;
            }
        }
    }
    assert_eq!(json.len(), 1024);
    client.send_json(&json);
    let reply = client.recv_json();
    assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
    // One byte more is over the limit either way (§2.6).
    let over = json.replacen("\"k", "\"kk", 1);
    assert_eq!(over.len(), 1025);
    client.send_json(&over);
    assert_eq!(client.expect_close(1009), "message too big");
}
