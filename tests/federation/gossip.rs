//! Gossip peer discovery (§15.2) end to end: three relays teaching each other of
//! the third and never dialling it; what a relay advertises, to whom, and with
//! which capacity; how it counts and bounds what it is told; and gossip disabled.
//!
//! Waits are bounded by `STUCK` and never measured.

use std::net::TcpListener;

use serde_json::{Value, json};

use crate::common::*;
use crate::fedwire::*;
use crate::wire::now;

fn gossiping(relay_id: &str) -> FedRelay {
    let mut relay = FedRelay::new(relay_id);
    relay
        .set("RELAY_FEDERATION_GOSSIP_ENABLED", "true")
        .set("RELAY_FEDERATION_GOSSIP_INTERVAL", "1");
    relay
}

fn discovered(m: &Metrics) -> f64 {
    m.get("relay_federation_discovered_peers", "")
}

fn entry(relay_id: &str, url: &str) -> Value {
    json!({"relay_id": relay_id, "url": url, "capacity_pct": 10, "last_seen_secs": now()})
}

fn advertise(peer: &FedPeer, entries: Vec<Value>) -> u64 {
    peer.send(json!({"type": "PeerAdvertisement", "peers": entries}));
    let (raw, _) = peer.recv_except(&["CapacityReport"]);
    let ack = crate::wire::expect_layout(&raw, &["type", "new_peers_count"]);
    assert_eq!(ack["payload"]["type"], "PeerAdvertisementAck", "{raw}");
    ack["payload"]["new_peers_count"].as_u64().unwrap()
}

#[test]
fn three_relays_learn_of_each_other_and_dial_no_one_new() {
    let (dir_a, dir_b, dir_c) = (
        TempDir::new("gossip-a"),
        TempDir::new("gossip-b"),
        TempDir::new("gossip-c"),
    );
    let b = gossiping("relay-b").start(dir_b.path());
    let c = gossiping("relay-c").start(dir_c.path());
    let peers = format!("{},{}", url_of(&b), url_of(&c));
    let a = gossiping("relay-a").peer(&peers).start(dir_a.path());
    // A advertises C to B and B to C; neither knew the other.
    wait_metrics("B and C each discover the other", &[&a, &b, &c], |m| {
        discovered(&m[1]) == 1.0 && discovered(&m[2]) == 1.0
    });
    // A learns nothing: B and C have no outbound links to advertise on.
    assert_eq!(discovered(&Metrics::of(&a)), 0.0);
    // Discovery informs, nothing more: B and C still have one peer each, A.
    for relay in [&b, &c] {
        assert_eq!(count_log(relay, &["outbound federation link up"]), 0);
        let m = Metrics::of(relay);
        assert_eq!(
            m.get("relay_federation_peers", r#"state="connected""#),
            1.0,
            "{}",
            m.summary()
        );
    }
}

#[test]
fn a_relay_advertises_its_other_outbound_peers_with_their_capacity() {
    let (p, q) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let p_url = format!("ws://{}", p.local_addr().unwrap());
    let q_url = format!("ws://{}", q.local_addr().unwrap());
    let dir = TempDir::new("gossip-adverts");
    let _x = gossiping("relay-x")
        .peer(&format!("{p_url},{q_url}"))
        .start(dir.path());
    let (on_p, on_q) = (FedPeer::accept(&p), FedPeer::accept(&q));
    for (peer, id, used, max) in [(&on_p, "relay-p", 42, 100), (&on_q, "relay-q", 5, 0)] {
        let (raw, hello) = peer.recv_message();
        assert_eq!(hello["payload"]["type"], "PeerHandshake", "{raw}");
        peer.send(peer_handshake_ack(id, true, used, max));
    }
    let t0 = now();
    for (peer, other, url, pct) in [
        (&on_p, "relay-q", &q_url, 0),
        (&on_q, "relay-p", &p_url, 42),
    ] {
        let (raw, _) = peer.recv_except(&["CapacityReport"]);
        let advert: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(advert["payload"]["type"], "PeerAdvertisement", "{raw}");
        // Members in the order of §15.2, compact.
        let written = format!(
            r#""payload":{{"type":"PeerAdvertisement","peers":[{{"relay_id":"{other}","url":"{url}","capacity_pct":{pct},"last_seen_secs":"#
        );
        assert!(raw.contains(&written), "{raw}");
        let entries = advert["payload"]["peers"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "only the other peer: {raw}");
        let e = &entries[0];
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["capacity_pct", "last_seen_secs", "relay_id", "url"],
            "{raw}"
        );
        assert_eq!(e["relay_id"], other, "{raw}");
        assert_eq!(e["url"], url.as_str(), "{raw}");
        assert_eq!(e["capacity_pct"], pct, "{raw}");
        let seen = e["last_seen_secs"].as_u64().unwrap();
        assert!((t0 - 5..=now()).contains(&seen), "{raw}");
        peer.send(json!({"type": "PeerAdvertisementAck", "new_peers_count": 1}));
    }
    // The ack is not answered, and advertisements keep coming each interval.
    let (raw, _) = on_p.recv_except(&["CapacityReport"]);
    assert!(raw.contains("PeerAdvertisement"), "{raw}");
}

#[test]
fn advertised_peers_are_counted_filtered_bounded_and_forgotten() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let configured = format!("ws://{}", listener.local_addr().unwrap());
    let dir = TempDir::new("gossip-counts");
    let x = gossiping("relay-x")
        .peer(&configured)
        .set("RELAY_FEDERATION_PEER_TTL", "3")
        .start(dir.path());
    let (peer, _, _) = FedPeer::join(x.addr, "relay-in");
    let long_id = "r".repeat(129);
    let huge_url = format!("ws://{}.example", "h".repeat(2100));
    let entries = vec![
        entry("relay-x", "ws://elsewhere.example"),    // itself
        entry("relay-cfg", &format!("{configured}/")), // configured, by URL
        entry("relay-bad-url", "http://n.example"),    // invalid URL
        entry("relay-query", "ws://n.example/?q=1"),   // invalid URL
        entry(&long_id, "ws://n.example"),             // over-long id
        entry("relay-n1", "WS://n1.example:8080/"),    // new
        entry("relay-n2", "wss://n2.example"),         // new
        entry("relay-n1", "ws://n1.example:8080"),     // repeated
        entry("relay-huge", &huge_url),                // URL over 2 KiB
    ];
    assert_eq!(advertise(&peer, entries), 2);
    wait_metrics("two discovered", &[&x], |m| discovered(&m[0]) == 2.0);
    // Named again: known, not new.
    assert_eq!(
        advertise(&peer, vec![entry("relay-n2", "wss://n2.example")]),
        0
    );
    // Nobody names them for the TTL: forgotten, and the gauge falls.
    wait_metrics("the discoveries expire", &[&x], |m| {
        discovered(&m[0]) == 0.0
    });
    assert_eq!(
        advertise(&peer, vec![entry("relay-n2", "wss://n2.example")]),
        1
    );
    // A URL of exactly 2 KiB is still taken (the bound is on what is longer).
    let edge_url = format!("ws://{}.example", "e".repeat(2048 - "ws://.example".len()));
    assert_eq!(edge_url.len(), 2048);
    assert_eq!(advertise(&peer, vec![entry("relay-edge", &edge_url)]), 1);
    // At most 1024 are kept; the least recently advertised go first.
    let many: Vec<Value> = (0..1100)
        .map(|i| entry(&format!("relay-m{i}"), &format!("ws://m{i}.example")))
        .collect();
    assert_eq!(advertise(&peer, many), 1100);
    wait_metrics("bounded at 1024", &[&x], |m| discovered(&m[0]) == 1024.0);
    assert_eq!(
        advertise(&peer, vec![entry("relay-m1099", "ws://m1099.example")]),
        0
    );
    assert_eq!(
        advertise(&peer, vec![entry("relay-m0", "ws://m0.example")]),
        1
    );
    assert_eq!(
        Metrics::of(&x).get("relay_federation_ignored_total", ""),
        0.0
    );
}

#[test]
fn with_gossip_disabled_advertisements_are_ignored_and_counted() {
    let dir = TempDir::new("gossip-off");
    let x = FedRelay::new("relay-x").start(dir.path());
    let (peer, _, _) = FedPeer::join(x.addr, "relay-in");
    peer.send(json!({"type": "PeerAdvertisement", "peers": [entry("relay-n", "ws://n.example")]}));
    peer.send(json!({"type": "PeerAdvertisementAck", "new_peers_count": 4}));
    peer.send(drain_notice(30));
    let (raw, ack) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(
        ack["payload"]["type"], "DrainAck",
        "no answer to gossip: {raw}"
    );
    let m = Metrics::of(&x);
    assert_eq!(
        m.get("relay_federation_ignored_total", ""),
        1.0,
        "{}",
        m.summary()
    );
    assert_eq!(discovered(&m), 0.0);
}
