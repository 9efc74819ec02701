//! End-to-end conformance of storing and delivering blobs (PROTOCOL.md §4.6, §4.7,
//! §4.9, §5.2-§5.5, §7.3, §7.4, §9): exact Stored, Failed, EncryptedUpdate and
//! notification layouts, the blob quotas, Delivered and ReceivedByRecipient across
//! shards, suppress_presence, and a slow reader closed with 1013 losing nothing.

use crate::common::*;
use crate::wire::*;
use serde_json::{Value, json};

/// A session that reads raw JSON text.
fn session(relay: &Relay, handshake: Value) -> RawWs {
    let mut ws = RawWs::connect_to(relay);
    ws.send_json(&envelope_of(handshake));
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    ws
}

fn plain(relay: &Relay, client_id: &str) -> RawWs {
    session(relay, json!({"type": "Handshake", "client_id": client_id}))
}

/// Stores one blob and returns its id, checking the Stored layout (§5.5).
fn store(ws: &mut RawWs, message_id: &str, recipient: &str, ciphertext: &[u8]) -> String {
    ws.send_json(&update_json(message_id, recipient, ciphertext));
    let raw = ws.recv_text();
    let value = expect_layout(&raw, &["type", "message_id", "status", "blob_id"]);
    assert_eq!(value["payload"]["type"], "Acknowledgment", "{raw}");
    assert_eq!(value["payload"]["status"], "Stored", "{raw}");
    assert_eq!(value["payload"]["message_id"], message_id, "{raw}");
    assert!(is_uuid_v4(value["message_id"].as_str().unwrap()), "{raw}");
    let blob_id = value["payload"]["blob_id"].as_str().unwrap().to_owned();
    assert!(is_uuid_v4(&blob_id), "{raw}");
    assert_ne!(value["message_id"], blob_id.as_str(), "a new envelope id");
    blob_id
}

/// Expects the Failed ack of §5.5 for `message_id`.
fn expect_failed(ws: &mut RawWs, message_id: &str) {
    let raw = ws.recv_text();
    let value = expect_layout(&raw, &["type", "message_id", "status"]);
    assert_eq!(value["payload"]["type"], "Acknowledgment", "{raw}");
    assert_eq!(value["payload"]["status"], "Failed", "{raw}");
    assert_eq!(value["payload"]["message_id"], message_id, "{raw}");
}

/// Expects a delivered EncryptedUpdate (§5.3) and returns its blob id.
fn expect_update(ws: &mut RawWs, recipient: &str, ciphertext: &[u8]) -> String {
    let raw = ws.recv_text();
    let value = expect_layout(&raw, &["type", "recipient_id", "ciphertext"]);
    assert_eq!(value["payload"]["type"], "EncryptedUpdate", "{raw}");
    assert_eq!(value["payload"]["recipient_id"], recipient, "{raw}");
    assert_eq!(value["payload"]["ciphertext"], json!(ciphertext), "{raw}");
    value["message_id"].as_str().unwrap().to_owned()
}

/// Expects a notification (§5.5) for `blob_id` with `status`.
fn expect_notification(ws: &mut RawWs, blob_id: &str, status: &str) {
    let raw = ws.recv_text();
    let value = expect_layout(&raw, &["type", "message_id", "status"]);
    assert_eq!(value["payload"]["type"], "Acknowledgment", "{raw}");
    assert_eq!(value["payload"]["status"], status, "{raw}");
    assert_eq!(value["payload"]["message_id"], blob_id, "{raw}");
    assert!(is_uuid_v4(value["message_id"].as_str().unwrap()), "{raw}");
}

/// A request whose reply proves every earlier request of `ws` was processed.
fn barrier(ws: &mut RawWs, label: &str) {
    ws.send_json(&envelope_of(json!({"type": "Bogus"})).replace("\"hs\"", "\"barrier\""));
    let raw = ws.recv_text();
    let (code, message_id) = expect_error(&raw);
    assert_eq!(
        (code.as_str(), message_id),
        ("unknown_type", json!("barrier")),
        "{label}"
    );
}

#[test]
fn blob_count_quota_fails_the_third_store() {
    blob_count_quota_fails_the_third_store_over(Wire::Plain);
}

/// [`blob_count_quota_fails_the_third_store`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn blob_count_quota_fails_the_third_store_over(wire: Wire) {
    let dir = TempDir::new("quota-count");
    let relay = Relay::start_over(
        wire,
        dir.path(),
        &[("RELAY_MAX_BLOBS_PER_USER", "2"), ("RELAY_SHARDS", "2")],
    );
    let mut sender = plain(&relay, A);
    store(&mut sender, "q1", B, &[1]);
    store(&mut sender, "q2", B, &[2]);
    sender.send_json(&update_json("q3", B, &[3]));
    expect_failed(&mut sender, "q3");
    // Nothing else follows the Failed ack; the quota is per recipient.
    store(&mut sender, "q4", &fresh_id(), &[4]);
    // An ack frees a slot. (The recipient suppresses presence, so that no
    // notifications reach the sender's stream.)
    let mut recipient = session(
        &relay,
        json!({"type": "Handshake", "client_id": B, "suppress_presence": true}),
    );
    let first = expect_update(&mut recipient, B, &[1]);
    expect_update(&mut recipient, B, &[2]);
    recipient.send_json(&ack_json(&first, "Stored"));
    barrier(&mut recipient, "ack processed");
    store(&mut sender, "q5", B, &[5]);
    sender.send_json(&update_json("q6", B, &[6]));
    expect_failed(&mut sender, "q6");
}

#[test]
fn byte_quota_refuses_only_when_the_total_would_exceed_it() {
    let dir = TempDir::new("quota-bytes");
    let relay = Relay::start(dir.path(), &[("RELAY_MAX_STORAGE_PER_USER", "10")]);
    let mut sender = plain(&relay, A);
    store(&mut sender, "b1", B, &[0; 6]);
    store(&mut sender, "b2", B, &[0; 4]);
    // 10 + 0 is not over 10; 10 + 1 is.
    store(&mut sender, "b3", B, &[]);
    sender.send_json(&update_json("b4", B, &[0]));
    expect_failed(&mut sender, "b4");
    // A single blob over the limit for an empty mailbox.
    sender.send_json(&update_json("b5", A, &[0; 11]));
    expect_failed(&mut sender, "b5");
}

#[test]
fn zero_quotas_mean_unlimited() {
    let dir = TempDir::new("quota-zero");
    let relay = Relay::start(
        dir.path(),
        &[
            ("RELAY_MAX_BLOBS_PER_USER", "0"),
            ("RELAY_MAX_STORAGE_PER_USER", "0"),
        ],
    );
    let mut sender = plain(&relay, A);
    for i in 0..5 {
        store(&mut sender, &format!("z{i}"), B, &[0; 100]);
    }
}

#[test]
fn delivered_then_received_by_recipient_across_shards() {
    delivered_then_received_by_recipient_across_shards_over(Wire::Plain);
}

/// [`delivered_then_received_by_recipient_across_shards`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn delivered_then_received_by_recipient_across_shards_over(wire: Wire) {
    // With 2 shards, A is on shard 0 and B on shard 1 (Appendix A.2).
    let dir = TempDir::new("notify");
    let relay = Relay::start_over(wire, dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut sender = plain(&relay, A);
    let mut recipient = plain(&relay, B);
    let blob_id = store(&mut sender, "n1", B, &[1, 2, 3]);
    assert_eq!(expect_update(&mut recipient, B, &[1, 2, 3]), blob_id);
    expect_notification(&mut sender, &blob_id, "Delivered");
    recipient.send_json(&ack_json(&blob_id, "ReceivedByRecipient"));
    expect_notification(&mut sender, &blob_id, "ReceivedByRecipient");
}

#[test]
fn connect_time_delivery_notifies_every_sender_session_once() {
    connect_time_delivery_notifies_every_sender_session_once_over(Wire::Plain);
}

/// [`connect_time_delivery_notifies_every_sender_session_once`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn connect_time_delivery_notifies_every_sender_session_once_over(wire: Wire) {
    let dir = TempDir::new("notify-connect");
    let relay = Relay::start_over(wire, dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut sender = plain(&relay, A);
    let mut other_sender = plain(&relay, A);
    let blob_id = store(&mut sender, "c1", B, &[7]);
    let mut recipient = plain(&relay, B);
    assert_eq!(expect_update(&mut recipient, B, &[7]), blob_id);
    expect_notification(&mut sender, &blob_id, "Delivered");
    expect_notification(&mut other_sender, &blob_id, "Delivered");
    // A second delivery of the same blob sends no second Delivered: the next
    // notification the sender sees is the ReceivedByRecipient.
    let mut again = plain(&relay, B);
    assert_eq!(expect_update(&mut again, B, &[7]), blob_id);
    again.send_json(&ack_json(&blob_id, "ReceivedByRecipient"));
    expect_notification(&mut sender, &blob_id, "ReceivedByRecipient");
    expect_notification(&mut other_sender, &blob_id, "ReceivedByRecipient");
}

#[test]
fn other_statuses_delete_without_forwarding() {
    let dir = TempDir::new("notify-status");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut sender = plain(&relay, A);
    let mut recipient = plain(&relay, B);
    let first = store(&mut sender, "s1", B, &[1]);
    expect_update(&mut recipient, B, &[1]);
    expect_notification(&mut sender, &first, "Delivered");
    recipient.send_json(&ack_json(&first, "Delivered"));
    barrier(&mut recipient, "ack processed");
    // The second blob's notifications come next, with nothing for the first.
    let second = store(&mut sender, "s2", B, &[2]);
    expect_update(&mut recipient, B, &[2]);
    expect_notification(&mut sender, &second, "Delivered");
    recipient.send_json(&ack_json(&second, "ReceivedByRecipient"));
    expect_notification(&mut sender, &second, "ReceivedByRecipient");
}

#[test]
fn suppress_presence_suppresses_delivered_and_received_by_recipient() {
    let dir = TempDir::new("suppress");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut sender = plain(&relay, A);
    let mut hidden = session(
        &relay,
        json!({"type": "Handshake", "client_id": B, "suppress_presence": true}),
    );
    let first = store(&mut sender, "h1", B, &[1]);
    assert_eq!(expect_update(&mut hidden, B, &[1]), first);
    hidden.send_json(&ack_json(&first, "ReceivedByRecipient"));
    barrier(&mut hidden, "ack processed");
    // A visible session of B now sees the second blob: its Delivered is the first
    // notification the sender gets, so nothing was sent for the first blob.
    let mut visible = plain(&relay, B);
    let second = store(&mut sender, "h2", B, &[2]);
    assert_eq!(expect_update(&mut visible, B, &[2]), second);
    assert_eq!(expect_update(&mut hidden, B, &[2]), second);
    expect_notification(&mut sender, &second, "Delivered");
    // The suppressing session's ack of the second blob forwards nothing either.
    hidden.send_json(&ack_json(&second, "ReceivedByRecipient"));
    barrier(&mut hidden, "second ack processed");
    let third = store(&mut sender, "h3", B, &[3]);
    assert_eq!(expect_update(&mut visible, B, &[3]), third);
    expect_notification(&mut sender, &third, "Delivered");
}

#[test]
fn suppress_presence_does_not_affect_the_sessions_own_sends() {
    let dir = TempDir::new("suppress-send");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut sender = session(
        &relay,
        json!({"type": "Handshake", "client_id": A, "suppress_presence": true}),
    );
    let mut recipient = plain(&relay, B);
    let blob_id = store(&mut sender, "o1", B, &[1]);
    expect_update(&mut recipient, B, &[1]);
    expect_notification(&mut sender, &blob_id, "Delivered");
}

#[test]
fn delivered_never_precedes_the_senders_stored_ack() {
    delivered_never_precedes_the_senders_stored_ack_over(Wire::Plain);
}

/// [`delivered_never_precedes_the_senders_stored_ack`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn delivered_never_precedes_the_senders_stored_ack_over(wire: Wire) {
    let dir = TempDir::new("notify-order");
    let relay = Relay::start_over(
        wire,
        dir.path(),
        &[("RELAY_SHARDS", "2"), ("RELAY_RATE_LIMIT", "100000")],
    );
    let mut recipient = plain(&relay, B);
    let mut sender = plain(&relay, A);
    let count = 200;
    for i in 0..count {
        sender.send_json(&update_json(&format!("d{i}"), B, &[i as u8]));
    }
    let mut stored = std::collections::HashSet::new();
    let mut delivered = 0;
    let mut next_reply = 0;
    while next_reply < count || delivered < count {
        let value: Value = serde_json::from_str(&sender.recv_text()).unwrap();
        let payload = &value["payload"];
        match payload["status"].as_str().unwrap() {
            "Stored" => {
                assert_eq!(payload["message_id"], format!("d{next_reply}"), "order");
                next_reply += 1;
                stored.insert(payload["blob_id"].as_str().unwrap().to_owned());
            }
            "Delivered" => {
                let blob_id = payload["message_id"].as_str().unwrap();
                assert!(stored.contains(blob_id), "Delivered before Stored: {value}");
                delivered += 1;
            }
            other => panic!("unexpected status {other}: {value}"),
        }
    }
    for i in 0..count {
        expect_update(&mut recipient, B, &[i as u8]);
    }
}

#[test]
fn a_routing_token_is_the_senders_identity_for_notifications() {
    // §4.4: the sender map keys by the storing session's routing_id.
    let dir = TempDir::new("notify-token");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "4")]);
    let mut sender = session(
        &relay,
        json!({"type": "Handshake", "client_id": A, "routing_token": ZEROS}),
    );
    let mut token_owner = plain(&relay, ZEROS);
    let mut recipient = plain(&relay, B);
    let blob_id = store(&mut sender, "t1", B, &[1]);
    expect_update(&mut recipient, B, &[1]);
    expect_notification(&mut token_owner, &blob_id, "Delivered");
    expect_notification(&mut sender, &blob_id, "Delivered");
}

#[test]
fn a_recipient_that_stops_reading_is_closed_with_1013_and_loses_nothing() {
    a_recipient_that_stops_reading_is_closed_with_1013_and_loses_nothing_over(Wire::Plain);
}

/// [`a_recipient_that_stops_reading_is_closed_with_1013_and_loses_nothing`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn a_recipient_that_stops_reading_is_closed_with_1013_and_loses_nothing_over(
    wire: Wire,
) {
    let dir = TempDir::new("slow-reader");
    let relay = Relay::start_over(
        wire,
        dir.path(),
        &[
            ("RELAY_SHARDS", "2"),
            ("RELAY_MAX_MESSAGE_SIZE", "65536"),
            ("RELAY_RATE_LIMIT", "1000000"),
            ("RELAY_MAX_BLOBS_PER_USER", "0"),
            ("RELAY_MAX_STORAGE_PER_USER", "0"),
            ("RELAY_STORAGE_BACKEND", "memory"),
        ],
    );
    // B reads its HandshakeAck, then nothing while A pours about 60 MB of pushes.
    let mut slow = plain(&relay, B);
    let mut sender = plain(&relay, A);
    let count = 1000;
    let ciphertext = |i: usize| {
        let mut c = vec![255u8; 15000];
        c[..4].copy_from_slice(&(i as u32).to_be_bytes());
        c
    };
    let mut ids = Vec::new();
    for batch in 0..count / 50 {
        for i in batch * 50..(batch + 1) * 50 {
            sender.send_json(&update_json(&format!("w{i}"), B, &ciphertext(i)));
        }
        while ids.len() < (batch + 1) * 50 {
            let value: Value = serde_json::from_str(&sender.recv_text()).unwrap();
            if value["payload"]["status"] == "Stored" {
                ids.push(value["payload"]["blob_id"].as_str().unwrap().to_owned());
            }
        }
    }
    // Whatever B got before the Close is a prefix of the stream; then 1013.
    let mut prefix = 0;
    loop {
        match slow.next_event() {
            Event::Binary(bytes) => {
                let value: Value = serde_json::from_str(&unprefix(&bytes)).unwrap();
                assert_eq!(value["message_id"], ids[prefix].as_str(), "push {prefix}");
                prefix += 1;
                assert!(prefix < count, "the relay never closed the slow reader");
            }
            Event::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (1013, "overloaded"));
                break;
            }
            other => panic!("after {prefix} pushes: {other:?}"),
        }
    }
    // The next connect delivers every blob, in order.
    let mut again = plain(&relay, B);
    for (i, id) in ids.iter().enumerate() {
        let value: Value = serde_json::from_str(&again.recv_text()).unwrap();
        assert_eq!(value["message_id"], id.as_str(), "blob {i}");
        assert_eq!(value["payload"]["ciphertext"], json!(ciphertext(i)));
    }
}

#[test]
fn pending_blobs_precede_the_reply_to_a_pipelined_request() {
    // §4.6: connect-time delivery goes out before any reply to a request that
    // followed the Handshake. Found red: the pending blobs arrive, but the request
    // written in the same read as the Handshake is never answered (see
    // e2e_session_errors::a_request_written_together_with_the_handshake_is_answered).
    let dir = TempDir::new("connect-order");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut sender = plain(&relay, A);
    let ids: Vec<String> = (0..20)
        .map(|i| store(&mut sender, &format!("p{i}"), B, &[i as u8]))
        .collect();
    let mut ws = RawWs::connect(relay.addr);
    let mut bytes = encode_frame(0x82, &frame(&handshake_json(B)), true);
    bytes.extend(encode_frame(
        0x82,
        &frame(&update_json("mine", A, &[1])),
        true,
    ));
    ws.write(&bytes);
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(&expect_update(&mut ws, B, &[i as u8]), id, "blob {i}");
    }
    let reply: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(reply["payload"]["message_id"], "mine", "{reply}");
}

#[test]
fn a_closing_session_leaves_a_newer_sessions_live_push_in_place() {
    a_closing_session_leaves_a_newer_sessions_live_push_in_place_over(Wire::Plain);
}

/// [`a_closing_session_leaves_a_newer_sessions_live_push_in_place`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn a_closing_session_leaves_a_newer_sessions_live_push_in_place_over(wire: Wire) {
    // §4.10: a session removes only its own live-push registration.
    let dir = TempDir::new("unregister");
    let relay = Relay::start_over(wire, dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut older = plain(&relay, B);
    let mut newer = plain(&relay, B);
    older.send_frame(0x88, &1000u16.to_be_bytes(), true);
    assert!(matches!(older.next_event(), Event::Close(1000, _)));
    assert_eq!(older.next_event(), Event::Eof);
    let mut sender = plain(&relay, A);
    let blob_id = store(&mut sender, "l1", B, &[1]);
    assert_eq!(expect_update(&mut newer, B, &[1]), blob_id);
}
