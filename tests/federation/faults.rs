//! Federation faults end to end (§11.5-§11.7, §11.1, §12.2): a peer that vanishes,
//! stalls, answers garbage or fails its handshake costs no blob. The relay under
//! test dials a test-side acceptor (its one configured peer), is over its offload
//! threshold with a few stored blobs, and the acceptor then misbehaves. In every
//! case the relay keeps each blob that was not accepted (a recipient still gets it
//! at connect time, with no ForwardingHints), counts what it must, keeps serving an
//! honest client, and still answers `/health`.
//!
//! The acceptor is either [`RawLink`], written by hand on a plain socket so that it
//! sends nothing the test does not send (no Pongs, no Close), or [`FedPeer`]
//! (tungstenite, which answers the relay's Pings by itself, keeping the link alive
//! while the test replies with garbage). Relays run with
//! `RELAY_FEDERATION_CAPACITY_INTERVAL=1` and `RELAY_FEDERATION_PEER_TIMEOUT=2`, so
//! each case takes a few seconds. Waits are bounded by `STUCK` and never measured.

use std::net::TcpListener;

use crate::common::*;
use crate::fedwire::*;
use crate::wire::{fresh_id, now};
use serde_json::json;
use tungstenite::Message;

/// The relay under test.
const X: &str = "relay-x";
/// The test-side acceptor's relay_id.
const PEER: &str = "peer-q";

/// Stores `count` 200-byte blobs for a fresh recipient; the recipient and the ids.
fn store_for_fresh(relay: &Relay, tag: u8, count: usize) -> (String, Vec<String>) {
    let r = fresh_id();
    let datas: Vec<Vec<u8>> = (0..count).map(|i| blob_data(tag, i, 200)).collect();
    let ids = store_blobs(relay, &r, &datas);
    (r, ids)
}

/// No offer was accepted or refused: every one so far timed out or is pending.
fn assert_no_offload_settled(relay: &Relay) {
    let metrics = Metrics::of(relay);
    assert_eq!(
        metrics.offload_sent("accepted"),
        0.0,
        "{}",
        metrics.summary()
    );
    assert_eq!(
        metrics.offload_sent("refused"),
        0.0,
        "{}",
        metrics.summary()
    );
}

fn blob_id_of(offer: &serde_json::Value) -> String {
    offer["payload"]["blob_id"].as_str().unwrap().to_owned()
}

/// The peer takes an offer and drops the TCP connection without a word: the offer
/// counts as `timeout` (link loss, §11.7 step 6), every blob stays, and the relay
/// dials again and offers the same blob on the new link.
#[test]
fn a_peer_that_vanishes_mid_offer_costs_no_blob() {
    // 600 of 1000 bytes over a 0.5 threshold: one blob per tick is enough (step 7).
    let (listener, _url, _dir, relay) = relay_with_peer(X, "fault-vanish", "0.5");
    let mut link = RawLink::join(&listener, PEER);
    let (r, ids) = store_for_fresh(&relay, 20, 3);

    let (raw, offer) = link.next_offer();
    let offered = blob_id_of(&offer);
    assert!(ids.contains(&offered), "{raw}");
    link.vanish();
    wait_metrics("the lost link fails the offer", &[&relay], |m| {
        m[0].offload_sent("timeout") == 1.0
    });
    assert_kept(&relay, &r, &ids);
    honest_round_trip(&relay, 21);

    // The relay reconnects (the listener sees a new PeerHandshake) and offers the
    // same, still oldest, blob again; the peer vanishes once more.
    let mut link = RawLink::join(&listener, PEER);
    let (raw, offer) = link.next_offer();
    assert_eq!(blob_id_of(&offer), offered, "offered again: {raw}");
    link.vanish();
    wait_metrics("the second lost link fails the offer", &[&relay], |m| {
        m[0].offload_sent("timeout") == 2.0
    });
    assert_kept(&relay, &r, &ids);
    assert_no_offload_settled(&relay);
    honest_round_trip(&relay, 22);
    assert_healthy(&relay);
}

/// The peer reads everything and writes nothing, not even a Pong: each offer
/// times out after the peer timeout, every blob stays, and the relay closes the
/// link with 1000 `idle timeout` once nothing has been received for twice the
/// peer timeout (§11.6).
#[test]
fn a_peer_that_stalls_costs_no_blob_and_its_link_times_out() {
    let (listener, _url, _dir, relay) = relay_with_peer(X, "fault-stall", "0.5");
    let mut link = RawLink::join(&listener, PEER);
    let (r, ids) = store_for_fresh(&relay, 30, 3);

    let (mut offers, mut pings) = (0, 0);
    let close = loop {
        match link.next_event() {
            RawEvent::Message(raw, message) => match payload_type(&message) {
                "OffloadBlob" => {
                    assert!(ids.contains(&blob_id_of(&message)), "{raw}");
                    offers += 1;
                }
                "CapacityReport" => {}
                _ => panic!("unexpected on an outbound link: {raw}"),
            },
            RawEvent::Ping => pings += 1,
            RawEvent::Close(code, reason) => break (code, reason),
            other => panic!("expected the relay to close a silent link, got {other:?}"),
        }
    };
    assert_eq!(close, (1000, "idle timeout".to_owned()));
    assert!(
        offers >= 1,
        "the relay offered a blob before the idle close"
    );
    assert!(pings >= 1, "the relay pinged (and got no Pong)");
    // Gone without answering the Close: the relay stops waiting for it.
    link.vanish();
    wait_metrics(
        "every offer on the stalled link timed out",
        &[&relay],
        |m| m[0].offload_sent("timeout") >= offers as f64,
    );
    assert_no_offload_settled(&relay);
    assert_kept(&relay, &r, &ids);
    honest_round_trip(&relay, 31);
    assert_healthy(&relay);
}

/// The peer answers each offer with garbage: frames §11.1 ignores and counts, and
/// OffloadAcks that match no offer in flight (which §11.5 ignores without
/// counting). Nothing is deleted; then one correct `accepted: true` replaces
/// exactly that blob by a hint.
#[test]
fn a_peer_that_answers_garbage_costs_no_blob() {
    // 800 of 1000 bytes over a 0.5 threshold: two blobs per tick (step 7), so the
    // two oldest are in flight and the other two are not.
    let (listener, url, _dir, relay) = relay_with_peer(X, "fault-garbage", "0.5");
    let peer = FedPeer::accept(&listener);
    let (raw, handshake) = peer.recv_message();
    assert_eq!(payload_type(&handshake), "PeerHandshake", "{raw}");
    peer.send(peer_handshake_ack(PEER, true, 0, 1_000_000));
    let (r, ids) = store_for_fresh(&relay, 40, 4);

    let (raw, offer) = next_offer(&peer);
    let first = blob_id_of(&offer);
    assert!(ids.contains(&first), "{raw}");
    // Each of these carries, or tries to carry, an acceptance of the first offer.
    let accept_first = offload_ack(&first, true, None);
    let enveloped = |version: u64| {
        json!({"version": version, "message_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": now(), "payload": accept_first})
        .to_string()
    };
    let mut bad_prefix = frame(&enveloped(1));
    bad_prefix[3] = bad_prefix[3].wrapping_add(1);
    let mut random = uuid::Uuid::new_v4().as_bytes().to_vec();
    random[0] = 0xff;
    let counted = [
        // Random bytes (a length prefix far beyond the message).
        Message::binary(random),
        // A text frame holding the acceptance.
        Message::text(enveloped(1)),
        // A frame whose prefix is one off.
        Message::binary(bad_prefix),
        // Not JSON.
        Message::binary(frame("{\"version\":1,")),
        // Envelope version 2.
        Message::binary(frame(&enveloped(2))),
        // An unknown type.
        Message::binary(fed_frame(
            json!({"type": "OffloadVerdict", "blob_id": first, "accepted": true}),
        )),
        // An OffloadAck whose `accepted` is a string.
        Message::binary(fed_frame(
            json!({"type": "OffloadAck", "blob_id": first, "accepted": "true", "reason": null}),
        )),
    ];
    let ignored = counted.len() as f64;
    for message in counted {
        peer.send_message(message);
    }

    let (raw, offer) = next_offer(&peer);
    let second = blob_id_of(&offer);
    assert!(ids.contains(&second) && second != first, "{raw}");
    // Well-formed acceptances of no offer in flight: a blob id this relay never
    // issued, and one of its stored blobs that it did not offer.
    let idle = ids
        .iter()
        .find(|id| **id != first && **id != second)
        .unwrap();
    peer.send(offload_ack(&uuid::Uuid::new_v4().to_string(), true, None));
    peer.send(offload_ack(idle, true, None));

    wait_metrics(
        "both offers time out, the garbage counted",
        &[&relay],
        |m| {
            m[0].offload_sent("timeout") >= 2.0
                && m[0].get("relay_federation_ignored_total", "") == ignored
        },
    );
    assert_no_offload_settled(&relay);
    assert_kept(&relay, &r, &ids);
    honest_round_trip(&relay, 41);

    // The peer finally answers correctly for the first blob only. Offers queued
    // on the test side may be from ticks whose wait is over, so the acceptance is
    // repeated for each offer of that blob until the relay counts it.
    loop {
        let (_, offer) = next_offer(&peer);
        if Metrics::of(&relay).offload_sent("accepted") >= 1.0 {
            break;
        }
        if blob_id_of(&offer) == first {
            peer.send(offload_ack(&first, true, None));
        }
    }
    // 600 bytes left: the first blob is gone, and so is the honest client's.
    wait_metrics("only the accepted blob leaves", &[&relay], |m| {
        m[0].offload_sent("accepted") == 1.0 && m[0].used_bytes() == 600.0
    });
    let mailbox = Mailbox::read(relay.addr, &r);
    let kept: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| *id != first)
        .collect();
    let got: Vec<&str> = mailbox.blobs.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(got, kept, "{mailbox:?}");
    mailbox.check_hints(&url);
    assert_eq!(mailbox.hint_ids(), std::slice::from_ref(&first));
    let metrics = Metrics::of(&relay);
    assert_eq!(
        metrics.get("relay_federation_ignored_total", ""),
        ignored,
        "only what §11.1 ignores is counted: {}",
        metrics.summary()
    );
    assert_eq!(
        metrics.offload_sent("refused"),
        0.0,
        "{}",
        metrics.summary()
    );
    honest_round_trip(&relay, 42);
    assert_healthy(&relay);
}

/// The peer takes an offer and answers with bytes that are no WebSocket frame
/// (a reserved opcode): the link ends, the offer counts as `timeout`, every blob
/// stays, and the relay dials again.
#[test]
fn a_peer_that_breaks_websocket_framing_costs_no_blob() {
    let (listener, _url, _dir, relay) = relay_with_peer(X, "fault-framing", "0.5");
    let mut link = RawLink::join(&listener, PEER);
    let (r, ids) = store_for_fresh(&relay, 50, 3);

    let (raw, offer) = link.next_offer();
    assert!(ids.contains(&blob_id_of(&offer)), "{raw}");
    // FIN + opcode 0x3 (reserved, RFC 6455 §5.2).
    link.send_frame(0x83, b"garbage");
    expect_1002_and_nothing_lost(link, &relay, &r, &ids, 51);
    // The relay dials again.
    let link = RawLink::join(&listener, PEER);
    drop(link);
    let metrics = Metrics::of(&relay);
    assert_eq!(
        metrics.offload_sent("accepted"),
        0.0,
        "{}",
        metrics.summary()
    );
    assert_kept(&relay, &r, &ids);
    assert_healthy(&relay);
}

/// The peer answers the PeerHandshake with garbage, then with a refusal: each is a
/// failed attempt (§11.5), the relay dials again with backoff, offers nothing on a
/// link that never came up, and loses nothing.
#[test]
fn a_peer_that_fails_its_handshake_is_retried_and_costs_no_blob() {
    let (listener, _url, _dir, relay) = relay_with_peer(X, "fault-handshake", "0.5");
    let (r, ids) = store_for_fresh(&relay, 60, 3);
    let answers = [
        // Random bytes.
        Message::binary(vec![0xff, 0x00, 0x13, 0x37, 0xde, 0xad]),
        // A well-formed refusal.
        Message::binary(fed_frame(peer_handshake_ack(PEER, false, 0, 0))),
        // An acceptance in a text frame.
        Message::text(
            String::from_utf8(
                fed_frame(peer_handshake_ack(PEER, true, 0, 1_000_000))[4..].to_vec(),
            )
            .unwrap(),
        ),
    ];
    for answer in answers {
        let label = format!("{answer:?}");
        let (mut link, _) = RawLink::accept_handshake(&listener);
        match answer {
            Message::Binary(bytes) => link.send_frame(0x82, &bytes),
            Message::Text(text) => link.send_frame(0x81, text.as_bytes()),
            _ => unreachable!(),
        }
        // The attempt ends: no capacity report, no offer on a link that never came up.
        match link.next_event() {
            RawEvent::Close(..) | RawEvent::CloseEmpty | RawEvent::Eof => {}
            other => panic!("{label}: expected the attempt to end, got {other:?}"),
        }
        link.vanish();
        assert_kept(&relay, &r, &ids);
    }
    // Three handshakes seen: the relay tried again after each failed attempt.
    let metrics = Metrics::of(&relay);
    assert_eq!(
        metrics.get("relay_offload_sent_total", ""),
        0.0,
        "{}",
        metrics.summary()
    );
    honest_round_trip(&relay, 61);
    assert_kept(&relay, &r, &ids);
    assert_healthy(&relay);
}

/// Completes the handshake of the relay's next outbound link on `listener`,
/// claiming `used` of 1 000 000 bytes.
fn accept_peer(listener: &TcpListener, relay_id: &str, used: u64) -> FedPeer {
    let peer = FedPeer::accept(listener);
    let (raw, hello) = peer.recv_message();
    assert_eq!(payload_type(&hello), "PeerHandshake", "{raw}");
    peer.send(peer_handshake_ack(relay_id, true, used, 1_000_000));
    peer
}

/// An ack from a peer a blob was offered to earlier never settles the offer of
/// the same blob to another peer: that peer's refusal keeps the blob (§11.7).
#[test]
fn a_late_ack_from_an_earlier_peer_never_settles_a_later_offer() {
    let (l1, l2) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let url1 = format!("ws://{}", l1.local_addr().unwrap());
    let url2 = format!("ws://{}", l2.local_addr().unwrap());
    let dir = TempDir::new("fault-late-ack");
    let relay = FedRelay::new(X)
        .set("RELAY_FEDERATION_PEERS", &format!("{url1},{url2}"))
        .tiny(1000, "0.5")
        .start(dir.path());
    // Dialled in configuration order; P1 is the emptier peer, so it is chosen first.
    let p1 = accept_peer(&l1, "peer-1", 0);
    let p2 = accept_peer(&l2, "peer-2", 100_000);
    let (r, ids) = store_for_fresh(&relay, 40, 3);
    let offered = blob_id_of(&p1.recv_except(&["CapacityReport"]).1);
    assert_eq!(offered, ids[0]);
    // P1 now looks fuller than P2 and lets the offer time out.
    p1.send(capacity_report(500_000, 1_000_000, 1));
    wait_metrics("P1's offer timed out", &[&relay], |m| {
        m[0].offload_sent("timeout") == 1.0
    });
    let (raw, again) = p2.recv_except(&["CapacityReport"]);
    assert_eq!(blob_id_of(&again), offered, "{raw}");
    // P1's late acceptance arrives first (a pause orders the two links), then
    // P2, which holds the live offer, refuses it.
    p1.send(offload_ack(&offered, true, None));
    std::thread::sleep(std::time::Duration::from_millis(300));
    p2.send(offload_ack(&offered, false, Some("integrity check failed")));
    wait_metrics("P2's refusal counted", &[&relay], |m| {
        m[0].offload_sent("refused") == 1.0
    });
    let metrics = Metrics::of(&relay);
    assert_eq!(
        metrics.offload_sent("accepted"),
        0.0,
        "{}",
        metrics.summary()
    );
    assert_kept(&relay, &r, &ids);
}

/// A configured peer that was never reached counts as disconnected (§12.2).
#[test]
fn a_configured_peer_never_reached_is_counted_disconnected() {
    // A port nobody listens on.
    let url = format!("ws://{}", free_port_addr());
    let dir = TempDir::new("fault-unreached");
    let relay = FedRelay::new(X).peer(&url).start(dir.path());
    let metrics = Metrics::of(&relay);
    assert_eq!(
        metrics.get("relay_federation_peers", r#"state="disconnected""#),
        1.0,
        "{}",
        metrics.summary()
    );
    assert_eq!(
        metrics.get("relay_federation_peers", r#"state="connected""#),
        0.0
    );
    assert_healthy(&relay);
}

/// The peer answers an offer in a frame whose length is written in a longer form
/// than needed (64 bits for a short message; RFC 6455 §5.2). The relay used to
/// read it; now it ends the link with 1002 as for any framing violation (§2.6,
/// §11.1) without reading that frame: the offer counts as `timeout` and every
/// blob stays.
#[test]
fn a_peer_that_writes_non_minimal_lengths_is_closed_with_1002() {
    let (listener, _url, _dir, relay) = relay_with_peer(X, "fault-lengths", "0.5");
    let mut link = RawLink::join(&listener, PEER);
    let (r, ids) = store_for_fresh(&relay, 52, 3);
    let (raw, offer) = link.next_offer();
    assert!(ids.contains(&blob_id_of(&offer)), "{raw}");
    let ack = fed_frame(offload_ack(&blob_id_of(&offer), false, Some("no")));
    link.write_raw(&crate::wire::frame_with_length_form(0x82, &ack, 8, false));
    expect_1002_and_nothing_lost(link, &relay, &r, &ids, 53);
    assert_eq!(Metrics::of(&relay).offload_sent("refused"), 0.0);
}

/// After the peer broke the framing mid-offer: the relay ends the link with 1002
/// (§11.1; bounded, since a link that stays up keeps sending reports), the offer
/// counts as `timeout`, every blob stays and an honest client is served.
fn expect_1002_and_nothing_lost(
    mut link: RawLink,
    relay: &Relay,
    r: &str,
    ids: &[String],
    tag: u8,
) {
    let close = (0..50).map(|_| link.next_event()).find(|event| {
        matches!(
            event,
            RawEvent::Close(..) | RawEvent::CloseEmpty | RawEvent::Eof
        )
    });
    match close {
        Some(RawEvent::Close(code, _)) => assert_eq!(code, 1002),
        other => panic!("expected close 1002, got {other:?}"),
    }
    link.vanish();
    wait_metrics("the broken link fails the offer", &[relay], |m| {
        m[0].offload_sent("timeout") == 1.0
    });
    assert_kept(relay, r, ids);
    honest_round_trip(relay, tag);
}
