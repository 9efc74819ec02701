//! The metrics listener of a running relay (§12): every value moves with the
//! traffic that should move it, merged over the shards at scrape time.

use crate::common::*;

fn scrape(relay: &Relay) -> String {
    scrape_metrics(relay)
}

fn value(text: &str, name: &str, labels: &str) -> f64 {
    metric_value(text, name, labels)
}

#[test]
fn metrics_follow_the_traffic() {
    let dir = TempDir::new("metrics");
    let relay = Relay::start(
        dir.path(),
        &[("RELAY_SHARDS", "2"), ("RELAY_RATE_LIMIT", "4")],
    );
    let mut sender = Client::handshake(relay.addr, A);
    for i in 0..5 {
        sender.feed_json(&update_json(&format!("m{i}"), B, &[1, 2, 3]));
    }
    sender.flush();
    let replies: Vec<_> = (0..5).map(|_| sender.recv_json()).collect();
    assert_eq!(replies[4]["payload"]["code"], "rate_limited");
    let mut recipient = Client::handshake(relay.addr, B);
    for _ in 0..4 {
        recipient.recv_json();
    }
    // The Delivered notifications reach the sender once the blobs are written.
    for _ in 0..4 {
        assert_eq!(sender.recv_json()["payload"]["status"], "Delivered");
    }
    let text = scrape(&relay);
    assert_eq!(value(&text, "relay_shards", ""), 2.0, "{text}");
    assert_eq!(value(&text, "relay_draining", ""), 0.0);
    assert_eq!(value(&text, "relay_connections_total", ""), 2.0);
    assert_eq!(value(&text, "relay_connections_active", ""), 2.0);
    assert_eq!(
        value(&text, "relay_messages_received_total", ""),
        7.0,
        "2 handshakes + 5 requests"
    );
    assert_eq!(value(&text, "relay_blobs_created_total", ""), 4.0);
    assert_eq!(value(&text, "relay_blobs_stored", ""), 4.0);
    assert_eq!(value(&text, "relay_storage_used_bytes", ""), 12.0);
    assert_eq!(value(&text, "relay_blobs_delivered_total", ""), 4.0);
    assert_eq!(
        value(
            &text,
            "relay_messages_rejected_total",
            r#"code="rate_limited""#
        ),
        1.0
    );
    assert_eq!(
        value(&text, "relay_rate_limited_total", r#"limiter="general""#),
        1.0
    );
    assert_eq!(
        value(&text, "relay_message_duration_seconds_count", ""),
        5.0
    );
    // 2 HandshakeAcks, 5 replies, 4 deliveries, 4 notifications.
    assert_eq!(value(&text, "relay_messages_sent_total", ""), 15.0);
    let proof = envelope(
        "p",
        serde_json::json!({"type": "RecoveryProofStore", "key_hash": B, "proof_data": [1]}),
    );
    recipient.send_json(&proof);
    assert_eq!(recipient.recv_json()["payload"]["status"], "Stored");
    let text = scrape(&relay);
    assert_eq!(value(&text, "relay_recovery_vouchers_total", ""), 1.0);
    assert_eq!(value(&text, "relay_recovery_proofs_active", ""), 1.0);
    // The blobs are all on B's shard (shard 1 of 2).
    assert_eq!(value(&text, "relay_blobs_stored", r#"shard="1""#), 4.0);
}
