//! Federation end to end (§11, §4.6, §5.13, §12.2, §14.1) against real relay
//! processes on 127.0.0.1, and against a raw federation peer written with
//! tungstenite that speaks exactly the v1 messages of §11.2 in the frames of §3.1:
//!
//! * the acceptor side of `/federation`: handshake, OffloadBlob checks in the order
//!   of §11.4, repeated offers, DrainNotice, ignored input;
//! * the initiator side: the relay dials its configured peer, reports capacity at
//!   once, offloads over its threshold and keeps what the peer refuses;
//! * relay to relay: offload with forwarding hints, a peer killed mid-offload,
//!   bidirectional peering, the one-hop rule, and drain on SIGTERM.
//!
//! Every relay runs with `RELAY_FEDERATION_CAPACITY_INTERVAL=1` and
//! `RELAY_FEDERATION_PEER_TIMEOUT=2` (the smallest allowed), and a tiny
//! `RELAY_MAX_STORAGE_BYTES` where a test needs it over its threshold, so each case
//! takes a few seconds. Waits are bounded by `STUCK` and never measured.

use std::collections::BTreeSet;
use std::net::TcpListener;

use crate::common::*;
use crate::fedwire::*;
use crate::wire::{expect_layout, fresh_id, http_exchange, is_uuid_v4, now, upgrade_request};
use serde_json::json;
use tungstenite::Message;

/// The relay under test in the raw-peer cases.
const X: &str = "relay-x";
/// The raw peer's relay_id.
const PEER: &str = "peer-q";

/// Checks an OffloadBlob the relay sent for one of the blobs `ids` (stored with
/// `datas` for `routing_id` between `t0` and `t1`); returns (blob_id, data,
/// created_at_secs).
fn check_offer(
    raw: &str,
    ids: &[String],
    datas: &[Vec<u8>],
    routing_id: &str,
    (t0, t1): (u64, u64),
) -> (String, Vec<u8>, u64) {
    let offer = expect_layout(
        raw,
        &[
            "type",
            "blob_id",
            "routing_id",
            "data",
            "created_at_secs",
            "integrity_hash",
            "hop_count",
        ],
    );
    let payload = &offer["payload"];
    let blob_id = payload["blob_id"].as_str().unwrap().to_owned();
    let index = ids
        .iter()
        .position(|id| *id == blob_id)
        .unwrap_or_else(|| panic!("offered a blob that was never stored: {raw}"));
    let data = bytes_of(&payload["data"]);
    assert_eq!(data, datas[index], "{raw}");
    assert_eq!(payload["routing_id"], routing_id, "{raw}");
    assert_eq!(payload["hop_count"], 0, "{raw}");
    assert_eq!(payload["integrity_hash"], integrity_hash(&data), "{raw}");
    let created = payload["created_at_secs"].as_u64().unwrap();
    assert!(
        t0 <= created && created <= t1,
        "original created_at_secs: {raw}"
    );
    (blob_id, data, created)
}

/// Reads the raw acceptor's link until `reports` CapacityReports have come,
/// refusing every OffloadBlob on the way with `at capacity`; returns how many.
fn refuse_offers_for(peer: &FedPeer, reports: usize) -> usize {
    let (mut seen, mut refused) = (0, 0);
    while seen < reports {
        let (raw, message) = peer.recv_message();
        match payload_type(&message) {
            "CapacityReport" => seen += 1,
            "OffloadBlob" => {
                let blob_id = message["payload"]["blob_id"].as_str().unwrap();
                peer.send(offload_ack(blob_id, false, Some("at capacity")));
                refused += 1;
            }
            _ => panic!("unexpected on an outbound link: {raw}"),
        }
    }
    refused
}

// ---------------------------------------------------------------- §2.3: disabled

#[test]
fn federation_disabled_answers_the_upgrade_with_404() {
    for vars in [&[][..], &[("RELAY_FEDERATION_ENABLED", "false")][..]] {
        let dir = TempDir::new("fed-off");
        let relay = Relay::start(dir.path(), vars);
        let response = http_exchange(relay.addr, upgrade_request("/federation", "").as_bytes());
        assert_eq!(response.status, 404, "{vars:?}: {response:?}");
        assert_eq!(response.body_text(), r#"{"error":"federation disabled"}"#);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        let refused = FedPeer::connect(relay.addr)
            .err()
            .expect("no federation link while federation is disabled");
        assert!(refused.contains("404"), "{refused}");
    }
}

// ---------------------------------------------------------------- §11.4: acceptor

#[test]
fn acceptor_answers_a_peer_handshake_with_its_capacity() {
    let dir = TempDir::new("fed-hs");
    let relay = FedRelay::new(X)
        .set("RELAY_MAX_STORAGE_BYTES", "100000")
        .start(dir.path());
    let r = fresh_id();
    store_blobs(&relay, &r, &[blob_data(1, 0, 100), blob_data(1, 1, 100)]);
    // The ack carries the used bytes; allow the figure to catch up with the two
    // commits, but it must become exactly 200.
    let deadline = std::time::Instant::now() + STUCK;
    let (peer, raw) = loop {
        let (peer, raw, ack) = FedPeer::join(relay.addr, PEER);
        if ack["payload"]["capacity_used_bytes"] == 200 || std::time::Instant::now() > deadline {
            break (peer, raw);
        }
        drop(peer);
        std::thread::sleep(POLL);
    };
    let ack = expect_layout(
        &raw,
        &[
            "type",
            "relay_id",
            "version",
            "accepted",
            "capacity_used_bytes",
            "capacity_max_bytes",
        ],
    );
    assert!(is_uuid_v4(ack["message_id"].as_str().unwrap()), "{raw}");
    let payload = &ack["payload"];
    assert_eq!(payload["relay_id"], X, "{raw}");
    assert_eq!(payload["version"], 1, "{raw}");
    assert_eq!(payload["accepted"], true, "{raw}");
    assert_eq!(payload["capacity_used_bytes"], 200, "{raw}");
    assert_eq!(payload["capacity_max_bytes"], 100000, "{raw}");
    // Both sides report capacity on every open link (§11.6), inbound ones included.
    let (raw, report) = peer.recv_message();
    assert_eq!(payload_type(&report), "CapacityReport", "{raw}");
    let report = expect_layout(&raw, &["type", "used_bytes", "max_bytes", "blob_count"]);
    assert_eq!(report["payload"]["used_bytes"], 200, "{raw}");
    assert_eq!(report["payload"]["max_bytes"], 100000, "{raw}");
    assert_eq!(report["payload"]["blob_count"], 2, "{raw}");
}

#[test]
fn acceptor_stores_an_offloaded_blob_once_and_pushes_it_live() {
    // The helper's hash is the one of Appendix A.4.
    assert_eq!(
        integrity_hash(&[1, 2, 3]),
        "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81"
    );
    let dir = TempDir::new("fed-accept");
    let relay = FedRelay::new(X).start(dir.path());
    let r = fresh_id();
    let mut live = Client::handshake(relay.addr, &r);
    let (peer, _, _) = FedPeer::join(relay.addr, PEER);

    // An offer for the upper-case spelling is stored for the canonical routing_id.
    let data = blob_data(3, 0, 200);
    let source_id = uuid::Uuid::new_v4().to_string();
    peer.send(offload_blob(&source_id, &r.to_uppercase(), &data, now(), 0));
    let (raw, _) = peer.recv_except(&["CapacityReport"]);
    let ack = expect_layout(&raw, &["type", "blob_id", "accepted", "reason"]);
    assert_eq!(ack["payload"]["type"], "OffloadAck", "{raw}");
    assert_eq!(ack["payload"]["blob_id"], source_id.as_str(), "{raw}");
    assert_eq!(ack["payload"]["accepted"], true, "{raw}");
    assert!(ack["payload"]["reason"].is_null(), "{raw}");
    // Pushed live to the connected recipient, under a new id (§11.4, §4.7).
    let pushed = live.recv_json();
    assert_eq!(pushed["payload"]["type"], "EncryptedUpdate", "{pushed}");
    assert_eq!(pushed["payload"]["recipient_id"], r.as_str(), "{pushed}");
    assert_eq!(bytes_of(&pushed["payload"]["ciphertext"]), data);
    let local_id = pushed["message_id"].as_str().unwrap();
    assert!(is_uuid_v4(local_id) && local_id != source_id, "{pushed}");

    // The same offer again is accepted without a second copy.
    peer.send(offload_blob(&source_id, &r, &data, now(), 0));
    let (raw, ack) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(ack["payload"]["blob_id"], source_id.as_str(), "{raw}");
    assert_eq!(ack["payload"]["accepted"], true, "repeated offer: {raw}");

    // The integrity hash is compared case-insensitively.
    let second = blob_data(3, 1, 200);
    let second_id = uuid::Uuid::new_v4().to_string();
    let mut offer = offload_blob(&second_id, &r, &second, now(), 0);
    offer["integrity_hash"] = json!(integrity_hash(&second).to_uppercase());
    peer.send(offer);
    let (raw, ack) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(ack["payload"]["blob_id"], second_id.as_str(), "{raw}");
    assert_eq!(ack["payload"]["accepted"], true, "upper-case hash: {raw}");

    // The live session gets the second blob next, then a client-stored marker: no
    // duplicate of the repeated offer in between.
    let marker = blob_data(3, 2, 10);
    store_blobs(&relay, &r, std::slice::from_ref(&marker));
    let next = live.recv_json();
    assert_eq!(bytes_of(&next["payload"]["ciphertext"]), second, "{next}");
    let next = live.recv_json();
    assert_eq!(bytes_of(&next["payload"]["ciphertext"]), marker, "{next}");
    live.close();

    let mailbox = Mailbox::read(relay.addr, &r);
    assert_eq!(
        mailbox.datas(),
        sorted(&[data, second, marker]),
        "each blob stored once"
    );
    assert!(
        mailbox.hints_raw.is_none(),
        "no hints on the acceptor: {mailbox:?}"
    );
    let metrics = Metrics::of(&relay);
    assert_eq!(metrics.get("relay_blobs_created_total", ""), 3.0);
    assert!(metrics.offload_received("accepted") >= 2.0, "{}", metrics.0);
    assert_eq!(metrics.offload_received("refused"), 0.0);
}

#[test]
fn acceptor_refuses_offloads_in_the_order_of_the_checks() {
    let dir = TempDir::new("fed-refuse");
    // Refuse at 0.95 × 1000 = 950 bytes.
    let relay = FedRelay::new(X)
        .set("RELAY_MAX_STORAGE_BYTES", "1000")
        .start(dir.path());
    let r = fresh_id();
    let (peer, _, _) = FedPeer::join(relay.addr, PEER);
    let big = blob_data(4, 0, 951);
    let wrong_hash = integrity_hash(b"something else");
    let expired = 1;
    // Each offer fails the check it is named after and every later one.
    let mut hop = offload_blob("b-hop", "not-hex", &big, expired, 1);
    hop["integrity_hash"] = json!(wrong_hash);
    let mut integrity = offload_blob("b-integrity", "not-hex", &big, expired, 0);
    integrity["integrity_hash"] = json!(wrong_hash);
    let offers = [
        (hop, "hop_count"),
        (integrity, "integrity"),
        (
            offload_blob("b-routing", "not-hex", &big, expired, 0),
            "invalid routing_id",
        ),
        (offload_blob("b-expired", &r, &big, expired, 0), "expired"),
        (offload_blob("b-capacity", &r, &big, now(), 0), "capacity"),
    ];
    for (offer, _) in &offers {
        peer.send(offer.clone());
    }
    for (offer, reason) in &offers {
        let (raw, _) = peer.recv_except(&["CapacityReport"]);
        let ack = expect_layout(&raw, &["type", "blob_id", "accepted", "reason"]);
        assert_eq!(ack["payload"]["type"], "OffloadAck", "{raw}");
        assert_eq!(
            ack["payload"]["blob_id"], offer["blob_id"],
            "in order: {raw}"
        );
        assert_eq!(ack["payload"]["accepted"], false, "{raw}");
        let text = ack["payload"]["reason"].as_str().unwrap_or_default();
        assert!(text.contains(reason), "expected {reason:?}: {raw}");
    }
    // The link stays open and a blob that fits is still accepted.
    let small = blob_data(4, 1, 100);
    peer.send(offload_blob("b-fits", &r, &small, now(), 0));
    let (raw, ack) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(ack["payload"]["blob_id"], "b-fits", "{raw}");
    assert_eq!(ack["payload"]["accepted"], true, "{raw}");
    let mailbox = Mailbox::read(relay.addr, &r);
    assert_eq!(mailbox.datas(), vec![small], "nothing refused was stored");
    let metrics = Metrics::of(&relay);
    assert_eq!(metrics.offload_received("refused"), 5.0, "{}", metrics.0);
    assert_eq!(metrics.offload_received("accepted"), 1.0, "{}", metrics.0);
}

#[test]
fn acceptor_refuses_a_self_link_another_version_and_an_empty_relay_id() {
    let dir = TempDir::new("fed-refuse-hs");
    let relay = FedRelay::new(X).start(dir.path());
    for (relay_id, version, reason) in [
        (X, 1, "self link"),
        (PEER, 2, "unsupported version"),
        ("", 1, "handshake required"),
    ] {
        let peer = FedPeer::connect(relay.addr).unwrap_or_else(|e| panic!("{e}"));
        peer.send(peer_handshake(relay_id, version));
        let (raw, _) = peer.recv_message();
        let ack = expect_layout(
            &raw,
            &[
                "type",
                "relay_id",
                "version",
                "accepted",
                "capacity_used_bytes",
                "capacity_max_bytes",
            ],
        );
        let payload = &ack["payload"];
        assert_eq!(payload["type"], "PeerHandshakeAck", "{raw}");
        assert_eq!(payload["relay_id"], X, "{raw}");
        assert_eq!(payload["version"], 1, "{raw}");
        assert_eq!(payload["accepted"], false, "{reason}: {raw}");
        assert_eq!(payload["capacity_used_bytes"], 0, "{raw}");
        assert_eq!(payload["capacity_max_bytes"], 0, "{raw}");
        assert_eq!(peer.expect_close(&[]), (1008, reason.to_owned()));
    }
}

#[test]
fn acceptor_requires_a_binary_peer_handshake_first() {
    let dir = TempDir::new("fed-first");
    let relay = FedRelay::new(X).start(dir.path());
    let handshake = String::from_utf8(fed_frame(peer_handshake(PEER, 1))[4..].to_vec()).unwrap();
    let firsts = [
        Some(Message::binary(fed_frame(capacity_report(0, 1000, 0)))),
        Some(Message::text(handshake)),
        Some(Message::binary(vec![0, 0, 0, 9, b'{'])),
        // Nothing at all: the relay gives up after RELAY_FEDERATION_PEER_TIMEOUT.
        None,
    ];
    for first in firsts {
        let label = format!("{first:?}");
        let peer = FedPeer::connect(relay.addr).unwrap_or_else(|e| panic!("{e}"));
        if let Some(message) = first {
            peer.send_message(message);
        }
        match peer.recv() {
            FedEvent::Close(code, reason) => {
                assert_eq!(
                    (code, reason.as_str()),
                    (1008, "handshake required"),
                    "{label}"
                );
            }
            other => panic!("{label}: expected close 1008 and no ack, got {other:?}"),
        }
    }
    // The relay still accepts a proper peer.
    FedPeer::join(relay.addr, PEER);
}

#[test]
fn acceptor_acks_drain_notices_and_ignores_the_rest() {
    let dir = TempDir::new("fed-ignore");
    let relay = FedRelay::new(X).start(dir.path());
    let (peer, _, _) = FedPeer::join(relay.addr, PEER);
    // A CapacityReport gets no reply; the DrainNotice after it gets a DrainAck.
    peer.send(capacity_report(10, 1000, 1));
    peer.send(drain_notice(30));
    let (raw, ack) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(payload_type(&ack), "DrainAck", "{raw}");
    expect_layout(&raw, &["type"]);
    // Four messages that §11.1 ignores and counts: a text frame, a malformed frame,
    // an envelope version 2, an unknown type.
    let version_2 = json!({"version": 2, "message_id": "v2", "timestamp": now(),
        "payload": capacity_report(0, 1, 0)});
    peer.send_message(Message::text(r#"{"hello":"relay"}"#));
    peer.send_message(Message::binary(vec![0, 1]));
    peer.send_message(Message::binary(frame(&version_2.to_string())));
    peer.send(json!({"type": "Bogus", "anything": [1, 2]}));
    peer.send(drain_notice(30));
    let (raw, ack) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(payload_type(&ack), "DrainAck", "the link stays open: {raw}");
    let metrics = Metrics::of(&relay);
    assert_eq!(
        metrics.get("relay_federation_ignored_total", ""),
        4.0,
        "{}",
        metrics.summary()
    );
    // OffloadRequest and the gossip advertisement get no reply either (§11.2, §15.2).
    peer.send(json!({"type": "OffloadRequest", "count": 10, "total_bytes": 4096}));
    peer.send(json!({"type": "PeerAdvertisement", "peers": []}));
    peer.send(drain_notice(30));
    let (raw, ack) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(payload_type(&ack), "DrainAck", "no reply to either: {raw}");
}

// ---------------------------------------------------------------- §11.5, §11.7: initiator

#[test]
fn initiator_offloads_to_a_raw_peer_and_keeps_what_it_refuses() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let dir = TempDir::new("fed-initiator");
    // Over the threshold at 500 of 1000 bytes.
    let relay = FedRelay::new(X)
        .peer(&url)
        .tiny(1000, "0.5")
        .start(dir.path());
    let peer = FedPeer::accept(&listener);
    assert_eq!(peer.path, "/federation");
    let (raw, _) = peer.recv_message();
    let handshake = expect_layout(&raw, &["type", "relay_id", "version", "listen_addr"]);
    assert_eq!(handshake["payload"]["type"], "PeerHandshake", "{raw}");
    assert_eq!(handshake["payload"]["relay_id"], X, "{raw}");
    assert_eq!(handshake["payload"]["version"], 1, "{raw}");
    assert!(handshake["payload"]["listen_addr"].is_string(), "{raw}");
    peer.send(peer_handshake_ack("peer-p", true, 0, 1_000_000));
    // A CapacityReport at once, before anything else.
    let (raw, _) = peer.recv_message();
    let report = expect_layout(&raw, &["type", "used_bytes", "max_bytes", "blob_count"]);
    assert_eq!(report["payload"]["type"], "CapacityReport", "{raw}");
    assert_eq!(report["payload"]["used_bytes"], 0, "{raw}");
    assert_eq!(report["payload"]["max_bytes"], 1000, "{raw}");
    assert_eq!(report["payload"]["blob_count"], 0, "{raw}");

    let r = fresh_id();
    let datas: Vec<Vec<u8>> = (0..3).map(|i| blob_data(5, i, 200)).collect();
    let t0 = now();
    let ids = store_blobs(&relay, &r, &datas);
    let window = (t0, now());

    // Refused with `at capacity`: the relay keeps every blob.
    let (raw, _) = next_offer(&peer);
    let (blob_id, _, _) = check_offer(&raw, &ids, &datas, &r, window);
    peer.send(offload_ack(&blob_id, false, Some("at capacity")));
    let refused = 1 + refuse_offers_for(&peer, 2);
    wait_metrics("the relay counts the refusals", &[&relay], |m| {
        m[0].offload_sent("refused") == refused as f64
    });
    let mailbox = Mailbox::read(relay.addr, &r);
    let got: Vec<&str> = mailbox.blobs.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(got, ids, "refused blobs stay, in order: {mailbox:?}");
    assert!(mailbox.hints_raw.is_none(), "{mailbox:?}");

    // Room again: the next offer is accepted, later ones refused.
    peer.send(capacity_report(0, 1_000_000, 0));
    let (raw, _) = next_offer(&peer);
    let (accepted_id, _, created) = check_offer(&raw, &ids, &datas, &r, window);
    peer.send(offload_ack(&accepted_id, true, None));
    refuse_offers_for(&peer, 2);
    wait_metrics("the accepted blob leaves the relay", &[&relay], |m| {
        m[0].offload_sent("accepted") == 1.0 && m[0].blobs_stored() == 2.0
    });
    let mailbox = Mailbox::read(relay.addr, &r);
    let kept: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| *id != accepted_id)
        .collect();
    let got: Vec<&str> = mailbox.blobs.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(got, kept, "{mailbox:?}");
    mailbox.check_hints(&url);
    assert_eq!(mailbox.hint_ids(), std::slice::from_ref(&accepted_id));
    assert_eq!(mailbox.hints[0]["expires_at_secs"], created + DEFAULT_TTL);
    assert!(mailbox.after_hints.is_empty(), "{mailbox:?}");
}

// ---------------------------------------------------------------- relay to relay

#[test]
fn offload_moves_blobs_to_the_peer_and_leaves_hints() {
    let (dir_a, dir_b) = (TempDir::new("fed-a"), TempDir::new("fed-b"));
    // Trace-level logs, searched for the routing id at the end (§11.8).
    let b = FedRelay::new("relay-b")
        .set("RUST_LOG", "trace")
        .start(dir_b.path());
    let b_url = url_of(&b);
    // A is over its threshold from the first 200-byte blob (100 of 1000 bytes), so
    // it offloads every blob; a 50-byte blob stored afterwards stays.
    let a = FedRelay::new("relay-a")
        .peer(&b_url)
        .tiny(1000, "0.1")
        .set("RUST_LOG", "trace")
        .start(dir_a.path());
    let t0 = now();
    let Offloaded {
        recipient: r,
        datas,
        ids,
    } = offload_four(&a, &b, 6, "A offloads its four blobs to B");
    let t1 = now();

    let small = blob_data(6, 9, 50);
    let small_id = store_blobs(&a, &r, std::slice::from_ref(&small));
    // On A: the blob still there, then one ForwardingHints naming B (§4.6 order).
    let on_a = Mailbox::read(a.addr, &r);
    assert_eq!(on_a.blobs.len(), 1, "{on_a:?}");
    assert_eq!(on_a.blobs[0].id, small_id[0]);
    assert!(on_a.after_hints.is_empty(), "{on_a:?}");
    on_a.check_hints(&b_url);
    let hinted: BTreeSet<String> = on_a.hint_ids().into_iter().collect();
    assert_eq!(
        hinted,
        ids.iter().cloned().collect(),
        "one hint per offloaded blob"
    );
    for hint in &on_a.hints {
        let expires = hint["expires_at_secs"].as_u64().unwrap();
        assert!(
            (t0 + DEFAULT_TTL..=t1 + DEFAULT_TTL).contains(&expires),
            "{hint}"
        );
    }
    // Following the hint: B has every blob, with the same data, under its own ids.
    let on_b = Mailbox::read(
        addr_of_url(on_a.hints[0]["relay_url"].as_str().unwrap()),
        &r,
    );
    assert_eq!(on_b.datas(), sorted(&datas));
    assert!(on_b.hints_raw.is_none(), "{on_b:?}");
    for blob in &on_b.blobs {
        assert!(is_uuid_v4(&blob.id) && !ids.contains(&blob.id), "{blob:?}");
    }
    let (ma, mb) = (Metrics::of(&a), Metrics::of(&b));
    assert_eq!(ma.offload_sent("refused") + ma.offload_sent("timeout"), 0.0);
    assert_eq!(
        ma.get("relay_federation_peers", r#"state="connected""#),
        1.0,
        "{}",
        ma.summary()
    );
    assert_eq!(mb.blobs_stored(), 4.0);
    // Federation logs never contain routing ids (§11.8, §14.2).
    for relay in [&a, &b] {
        let log = relay.log.lock().unwrap();
        assert!(
            log.iter().any(|l| l.contains("TRACE")),
            "trace logging is on: {log:?}"
        );
        let leaked: Vec<&String> = log
            .iter()
            .filter(|l| l.to_ascii_lowercase().contains(&r))
            .collect();
        assert!(leaked.is_empty(), "{leaked:?}");
    }
}

#[test]
fn killing_the_peer_during_an_offload_loses_no_blob() {
    let (dir_a, dir_b) = (TempDir::new("fed-kill-a"), TempDir::new("fed-kill-b"));
    let mut b = FedRelay::new("relay-b").start(dir_b.path());
    let b_addr = b.addr;
    let b_url = url_of(&b);
    let a = FedRelay::new("relay-a")
        .peer(&b_url)
        .tiny(1000, "0.1")
        .start(dir_a.path());
    let r = fresh_id();
    // Two batches' worth (§11.7: up to 10 per tick).
    let datas: Vec<Vec<u8>> = (0..20).map(|i| blob_data(7, i, 200)).collect();
    let ids = store_blobs(&a, &r, &datas);
    wait_metrics("B accepts a first offload", &[&b], |m| {
        m[0].offload_received("accepted") >= 1.0
    });
    b.kill();
    // B comes back on the same address and data directory; A reconnects and
    // finishes the job.
    let b = FedRelay::new("relay-b").listen(b_addr).start(dir_b.path());
    wait_metrics("A offloads everything after B's restart", &[&a, &b], |m| {
        m[0].blobs_stored() == 0.0
    });
    // Read A before B: a blob leaves A only after B has committed it.
    let on_a = Mailbox::read(a.addr, &r);
    assert!(on_a.blobs.is_empty(), "{on_a:?}");
    on_a.check_hints(&b_url);
    let mut hinted = on_a.hint_ids();
    hinted.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(hinted, all, "one hint per blob, none twice");
    let on_b = Mailbox::read(b.addr, &r);
    let held: BTreeSet<Vec<u8>> = on_b.datas().into_iter().collect();
    let sent: BTreeSet<Vec<u8>> = datas.iter().cloned().collect();
    assert_eq!(held, sent, "every blob is on B, and nothing else");
}

#[test]
fn bidirectional_peers_offload_both_ways() {
    // Each relay must know the other's address before either starts, so both
    // addresses are picked up front (bind 127.0.0.1:0, release). Starting A, then
    // B, then restarting A would work too but takes longer and tests less.
    let (addr_a, addr_b) = (free_port_addr(), free_port_addr());
    let (url_a, url_b) = (format!("ws://{addr_a}"), format!("ws://{addr_b}"));
    let (dir_a, dir_b) = (TempDir::new("fed-bi-a"), TempDir::new("fed-bi-b"));
    let a = FedRelay::new("relay-a")
        .listen(addr_a)
        .peer(&url_b)
        .tiny(1000, "0.1")
        .start(dir_a.path());
    let b = FedRelay::new("relay-b")
        .listen(addr_b)
        .peer(&url_a)
        .tiny(1000, "0.1")
        .start(dir_b.path());
    assert_eq!((a.addr, b.addr), (addr_a, addr_b));

    // A over its threshold: its blobs go to B.
    let r1 = fresh_id();
    let datas_1: Vec<Vec<u8>> = (0..2).map(|i| blob_data(8, i, 200)).collect();
    let ids_1 = store_blobs(&a, &r1, &datas_1);
    wait_metrics("A offloads to B", &[&a, &b], |m| {
        m[0].offload_sent("accepted") == 2.0
            && m[0].used_bytes() == 0.0
            && m[1].offload_received("accepted") == 2.0
    });
    // Then B over its threshold (with room left on A): B's own blobs go to A, and
    // the ones it received from A stay (one hop at most).
    let r2 = fresh_id();
    let datas_2: Vec<Vec<u8>> = (0..2).map(|i| blob_data(8, 10 + i, 200)).collect();
    let ids_2 = store_blobs(&b, &r2, &datas_2);
    wait_metrics("B offloads to A", &[&a, &b], |m| {
        m[1].offload_sent("accepted") == 2.0
            && m[1].used_bytes() == 400.0
            && m[0].offload_received("accepted") == 2.0
    });

    let hints_1 = Mailbox::read(a.addr, &r1);
    assert!(hints_1.blobs.is_empty(), "{hints_1:?}");
    hints_1.check_hints(&url_b);
    assert_eq!(sorted_ids(hints_1.hint_ids()), sorted_ids(ids_1));
    assert_eq!(Mailbox::read(b.addr, &r1).datas(), sorted(&datas_1));

    let hints_2 = Mailbox::read(b.addr, &r2);
    assert!(hints_2.blobs.is_empty(), "{hints_2:?}");
    hints_2.check_hints(&url_a);
    assert_eq!(sorted_ids(hints_2.hint_ids()), sorted_ids(ids_2));
    assert_eq!(Mailbox::read(a.addr, &r2).datas(), sorted(&datas_2));

    // A is over its threshold now with only B's blobs: it sent nothing back.
    assert_eq!(Metrics::of(&a).offload_sent("accepted"), 2.0);
}

fn sorted_ids(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn a_blob_that_arrived_by_offload_is_never_offloaded_again() {
    // A → B → C, where C is a raw acceptor that claims plenty of room and watches
    // what B sends.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let c_url = format!("ws://{}", listener.local_addr().unwrap());
    let (dir_a, dir_b) = (TempDir::new("fed-hop-a"), TempDir::new("fed-hop-b"));
    let b = FedRelay::new("relay-b")
        .peer(&c_url)
        .tiny(1000, "0.1")
        .start(dir_b.path());
    let c = FedPeer::accept(&listener);
    let (raw, handshake) = c.recv_message();
    assert_eq!(payload_type(&handshake), "PeerHandshake", "{raw}");
    c.send(peer_handshake_ack("relay-c", true, 0, 1_000_000));
    let a = FedRelay::new("relay-a")
        .peer(&url_of(&b))
        .tiny(1000, "0.1")
        .start(dir_a.path());

    let r = fresh_id();
    let datas: Vec<Vec<u8>> = (0..3).map(|i| blob_data(9, i, 200)).collect();
    store_blobs(&a, &r, &datas);
    wait_metrics("A offloads its three blobs to B", &[&a, &b], |m| {
        m[0].offload_sent("accepted") == 3.0
            && m[0].used_bytes() == 0.0
            && m[1].offload_received("accepted") == 3.0
    });
    // B is over its threshold (600 of 1000 bytes) with hop_count-1 blobs only.
    // Three of its capacity reports (three ticks) later, it has offered C nothing.
    let watch = |reports: usize| {
        let mut seen = 0;
        while seen < reports {
            let (raw, message) = c.recv_message();
            match payload_type(&message) {
                "CapacityReport" => {
                    if message["payload"]["used_bytes"] == 600 {
                        seen += 1;
                    }
                }
                "OffloadBlob" => panic!("B offloaded a blob that arrived by offload: {raw}"),
                _ => panic!("unexpected from B: {raw}"),
            }
        }
    };
    watch(3);
    let metrics = Metrics::of(&b);
    assert_eq!(
        metrics.get("relay_offload_sent_total", ""),
        0.0,
        "{}",
        metrics.summary()
    );

    // Control: a blob stored on B by a client (hop_count 0) is offered, and only it.
    let fresh = blob_data(9, 7, 200);
    let fresh_ids = store_blobs(&b, &r, std::slice::from_ref(&fresh));
    let (raw, offer) = next_offer(&c);
    assert_eq!(offer["payload"]["blob_id"], fresh_ids[0].as_str(), "{raw}");
    assert_eq!(bytes_of(&offer["payload"]["data"]), fresh, "{raw}");
    assert_eq!(offer["payload"]["hop_count"], 0, "{raw}");
    c.send(offload_ack(&fresh_ids[0], true, None));
    watch(2);
    wait_metrics("B counts its one offload", &[&b], |m| {
        m[0].offload_sent("accepted") == 1.0
    });
}

// ---------------------------------------------------------------- §14.1: drain

#[test]
fn sigterm_sends_drain_notice_on_every_link_and_exits_0() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let dir = TempDir::new("fed-drain");
    let mut relay = FedRelay::new(X)
        .peer(&url)
        .set("RELAY_FEDERATION_DRAIN_TIMEOUT", "20")
        .start(dir.path());
    // An outbound link to the raw acceptor P...
    let p = FedPeer::accept(&listener);
    let (raw, handshake) = p.recv_message();
    assert_eq!(payload_type(&handshake), "PeerHandshake", "{raw}");
    p.send(peer_handshake_ack("peer-p", true, 0, 1_000_000));
    let (raw, report) = p.recv_message();
    assert_eq!(payload_type(&report), "CapacityReport", "{raw}");
    // ...and an inbound link from the raw initiator Q.
    let (q, _, _) = FedPeer::join(relay.addr, PEER);

    signal(&relay, libc::SIGTERM);
    for (name, link) in [("outbound", &p), ("inbound", &q)] {
        let (raw, notice) = link.recv_except(&["CapacityReport"]);
        assert_eq!(payload_type(&notice), "DrainNotice", "{name}: {raw}");
        let notice = expect_layout(&raw, &["type", "drain_timeout_secs"]);
        assert_eq!(notice["payload"]["drain_timeout_secs"], 20, "{name}: {raw}");
    }
    // While draining, offers are refused with `draining` (§11.4 check 5).
    let r = fresh_id();
    q.send(offload_blob("late", &r, &blob_data(10, 0, 50), now(), 0));
    let (raw, ack) = q.recv_except(&["CapacityReport"]);
    assert_eq!(ack["payload"]["blob_id"], "late", "{raw}");
    assert_eq!(ack["payload"]["accepted"], false, "{raw}");
    let reason = ack["payload"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("draining"), "{raw}");
    for link in [&p, &q] {
        link.send(drain_ack());
    }
    for (name, link) in [("outbound", &p), ("inbound", &q)] {
        assert_eq!(
            link.expect_close(&["CapacityReport"]),
            (1001, "server shutting down".to_owned()),
            "{name}"
        );
    }
    assert_eq!(wait_exit(&mut relay).code(), Some(0), "{:?}", tail(&relay));
}

#[test]
fn an_oversized_federation_message_closes_the_link_with_1009() {
    let dir = TempDir::new("fed-size");
    let relay = FedRelay::new(X)
        .set("RELAY_MAX_MESSAGE_SIZE", "1024")
        .start(dir.path());
    let (peer, _, _) = FedPeer::join(relay.addr, PEER);
    // §11.1: RELAY_MAX_MESSAGE_SIZE + 65536 + 4 is the largest message.
    let limit = 1024 + 65_536 + 4;
    peer.send_message(Message::binary(vec![b'x'; limit + 1]));
    let (code, _) = peer.expect_close(&["CapacityReport"]);
    assert_eq!(code, 1009);
    // A message at the limit is merely ignored by another link.
    let (peer, _, _) = FedPeer::join(relay.addr, PEER);
    peer.send_message(Message::binary(vec![b'x'; limit]));
    peer.send(drain_notice(30));
    let (raw, ack) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(payload_type(&ack), "DrainAck", "{raw}");
}

/// §11.7 acts unless `used / max < threshold`, and a batch stops only once used
/// bytes fall *below* the threshold. With 1000 bytes at most, the threshold at 0.80
/// and three 400-byte blobs (1200 bytes), the relay used to offload one blob and
/// stop at exactly 800 bytes for good. Now two leave (800 is still at the
/// threshold), 400 bytes remain, and no later tick offers the third.
#[test]
fn offloading_goes_on_at_exactly_the_threshold_and_stops_below_it() {
    let (listener, _url, _dir, relay) = relay_with_peer(X, "fed-threshold", "0.80");
    let peer = FedPeer::accept(&listener);
    let _handshake = peer.recv_message();
    peer.send(peer_handshake_ack("peer-p", true, 0, 1_000_000));
    let r = fresh_id();
    let datas: Vec<Vec<u8>> = (0..3).map(|i| blob_data(8, i, 400)).collect();
    let ids = store_blobs(&relay, &r, &datas);

    // Accept every offer; stop after three reports at 400 bytes (three ticks after
    // the batch), or after twenty reports if it never gets there.
    let (mut accepted, mut reports, mut at_400) = (Vec::new(), 0, 0);
    while at_400 < 3 && reports < 20 {
        let (raw, message) = peer.recv_message();
        match payload_type(&message) {
            "OffloadBlob" => {
                let blob_id = message["payload"]["blob_id"].as_str().unwrap().to_owned();
                peer.send(offload_ack(&blob_id, true, None));
                accepted.push(blob_id);
            }
            "CapacityReport" => {
                reports += 1;
                if message["payload"]["used_bytes"] == 400 {
                    at_400 += 1;
                }
            }
            _ => panic!("unexpected on an outbound link: {raw}"),
        }
    }
    assert_eq!(
        accepted,
        ids[..2].to_vec(),
        "the two oldest leave, and only they"
    );
    assert_eq!(at_400, 3, "400 bytes remain");
    let mailbox = Mailbox::read(relay.addr, &r);
    let kept: Vec<&str> = mailbox.blobs.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(kept, vec![ids[2].as_str()], "{mailbox:?}");
}

/// A `/federation` peer refused before its PeerHandshake (here: a text frame first)
/// that echoes the Close and keeps TCP open gets its TCP connection closed at once
/// (§2.7), not after the close wait: a sentinel connection opened when the Close
/// arrives, which the handshake timer (2 s) ends, is still open when it has ended.
#[test]
fn acceptor_ends_tcp_as_soon_as_a_refused_peer_echoes_the_close() {
    let dir = TempDir::new("fed-close-echo");
    let relay = FedRelay::new(X)
        .set("RELAY_HANDSHAKE_TIMEOUT", "2")
        .start(dir.path());
    let mut ws = crate::wire::RawWs::upgrade_with(relay.addr, &upgrade_request("/federation", ""));
    ws.send_frame(0x81, b"hello", true);
    assert_eq!(
        ws.next_event(),
        crate::wire::Event::Close(1008, "handshake required".to_owned())
    );
    let sentinel = std::net::TcpStream::connect(relay.addr).unwrap();
    ws.send_frame(0x88, &1008u16.to_be_bytes(), true);
    assert_eq!(
        ws.next_event(),
        crate::wire::Event::Eof,
        "TCP ends after the echo"
    );
    crate::wire::assert_still_open(&sentinel, "federation acceptor");
}

/// A first message in a frame whose length is not written minimally (RFC 6455
/// §5.2) used to be read; the acceptor now closes with 1002 (§2.6, §11.1)
/// without answering it.
#[test]
fn acceptor_closes_a_non_minimal_length_with_1002() {
    let dir = TempDir::new("fed-lengths");
    let relay = FedRelay::new(X).start(dir.path());
    let cases = [
        // A PeerHandshake (over 125 bytes) with a 64-bit length.
        crate::wire::encode_frame_with_length_form(0x82, &fed_frame(peer_handshake(PEER, 1)), 8),
        // A DrainAck (under 126 bytes) with a 16-bit length.
        crate::wire::encode_frame_with_length_form(0x82, &fed_frame(drain_ack()), 2),
    ];
    for bytes in cases {
        let mut ws =
            crate::wire::RawWs::upgrade_with(relay.addr, &upgrade_request("/federation", ""));
        ws.write(&bytes);
        assert_eq!(
            ws.next_event(),
            crate::wire::Event::Close(1002, "protocol error".to_owned()),
        );
    }
    FedPeer::join(relay.addr, PEER);
}

/// After a framing violation the WebSocket library ends its stream, and the link
/// used to drop TCP right after its 1002, the peer's bytes unread (a reset that can
/// lose that Close). It now waits for the peer's Close on the raw stream (§2.7),
/// walking on from the offending frame, and closes TCP once it is in. Shown
/// without timing: a bare connection opened when the 1002 arrives is ended by the
/// handshake timer (2 s) while the link still waits; then the echo ends the link.
#[test]
fn acceptor_waits_for_the_close_of_a_peer_that_broke_the_framing() {
    let dir = TempDir::new("fed-broken-close");
    let relay = FedRelay::new(X)
        .set("RELAY_HANDSHAKE_TIMEOUT", "2")
        .start(dir.path());
    let mut ws = crate::wire::RawWs::upgrade_with(relay.addr, &upgrade_request("/federation", ""));
    let hello = fed_frame(peer_handshake(PEER, 1));
    let mut bytes = crate::wire::encode_frame_with_length_form(0x82, &hello, 8);
    bytes.extend(crate::wire::encode_frame(0x82, &hello, true));
    ws.write(&bytes);
    assert_eq!(
        ws.next_event(),
        crate::wire::Event::Close(1002, "protocol error".to_owned())
    );
    crate::wire::wait_out_the_handshake_timer(relay.addr);
    crate::wire::assert_still_open(&ws.stream, "the link waits for the peer's Close");
    ws.send_frame(0x88, &1002u16.to_be_bytes(), true);
    assert_eq!(
        ws.next_event(),
        crate::wire::Event::Eof,
        "TCP ends after the echo"
    );
}
