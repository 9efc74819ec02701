//! End-to-end conformance of session admission (PROTOCOL.md §2.2, §2.6, §4.1-§4.5,
//! Appendix A.3): every 1008 close of §4.2 in its check order, authenticated
//! Handshakes and nonce replay across shards, the handshake and idle timers, Pings
//! before the Handshake, the exact HandshakeAck, and case-insensitive ids.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;
use crate::wire::*;
use serde_json::{Value, json};

/// An envelope with a handshake-like payload, spelled out so members can be broken.
fn env(version: Value, payload: Value) -> Vec<u8> {
    frame(
        &json!({"version": version, "message_id": "hs", "timestamp": 1767225600u64, "payload": payload})
            .to_string(),
    )
}

fn hs(extra: Value) -> Value {
    let mut payload = json!({"type": "Handshake", "client_id": A});
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    payload
}

const HANDSHAKE_REQUIRED: &str = "handshake required";
const INVALID_HANDSHAKE: &str = "invalid handshake";

#[test]
fn first_message_close_table() {
    let dir = TempDir::new("hs-close");
    let relay = Relay::start(dir.path(), &[]);
    let valid = frame(&handshake_json(A));
    let mut short_prefix = valid.clone();
    short_prefix[3] -= 1;
    let mut noise = vec![0x00, 0x56, 0x32];
    noise.extend([7u8; 48]);
    let bad63 = &A[..63];
    let upper_g = format!("{}g", &A[..63]);
    let a_json = format!(
        "{{\"version\":1,\"version\":1,\"message_id\":\"hs\",\"timestamp\":1,\"payload\":{{\"type\":\"Handshake\",\"client_id\":\"{A}\"}}}}"
    );
    // (label, first message, is text, close reason)
    let rows: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (
            "text frame",
            handshake_json(A).into_bytes(),
            true,
            HANDSHAKE_REQUIRED,
        ),
        // A Noise opening whose message 1 does not decrypt (§15.1).
        (
            "garbled noise opening of 51 bytes",
            noise.clone(),
            false,
            "noise handshake failed",
        ),
        (
            "garbled noise opening of 60 bytes",
            [noise.clone(), vec![0; 9]].concat(),
            false,
            "noise handshake failed",
        ),
        (
            "noise magic but 50 bytes",
            noise[..50].to_vec(),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "text noise opening",
            noise.clone(),
            true,
            HANDSHAKE_REQUIRED,
        ),
        ("3 bytes", vec![0, 0, 0], false, HANDSHAKE_REQUIRED),
        ("empty", vec![], false, HANDSHAKE_REQUIRED),
        ("prefix one short", short_prefix, false, HANDSHAKE_REQUIRED),
        ("not JSON", frame("{nope"), false, HANDSHAKE_REQUIRED),
        ("JSON array", frame("[1]"), false, HANDSHAKE_REQUIRED),
        (
            "repeated envelope member",
            frame(&a_json),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "version as string",
            env(json!("1"), hs(json!({}))),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "negative version",
            env(json!(-1), hs(json!({}))),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "version 2",
            env(json!(2), hs(json!({}))),
            false,
            "unsupported version",
        ),
        (
            "version 0",
            env(json!(0), hs(json!({}))),
            false,
            "unsupported version",
        ),
        (
            "version 2 before a bad type",
            env(json!(2), json!({"type": "Nope"})),
            false,
            "unsupported version",
        ),
        (
            "version 2 before a bad client_id",
            env(json!(2), hs(json!({"client_id": "x"}))),
            false,
            "unsupported version",
        ),
        (
            "payload without type",
            env(json!(1), json!({"client_id": A})),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "type is EncryptedUpdate",
            env(
                json!(1),
                json!({"type": "EncryptedUpdate", "recipient_id": B, "ciphertext": []}),
            ),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "type is unknown",
            env(json!(1), json!({"type": "Hello", "client_id": A})),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "client_id a number",
            env(json!(1), hs(json!({"client_id": 5}))),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "suppress_presence a string",
            env(json!(1), hs(json!({"suppress_presence": "yes"}))),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "payload timestamp a string",
            env(json!(1), hs(json!({"timestamp": "now"}))),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "bad type before bad client_id",
            env(json!(1), hs(json!({"client_id": 5, "device_id": "x"}))),
            false,
            HANDSHAKE_REQUIRED,
        ),
        (
            "client_id 63 hex",
            env(json!(1), hs(json!({"client_id": bad63}))),
            false,
            INVALID_HANDSHAKE,
        ),
        (
            "client_id 65 hex",
            env(json!(1), hs(json!({"client_id": format!("{A}0")}))),
            false,
            INVALID_HANDSHAKE,
        ),
        (
            "client_id not hex",
            env(json!(1), hs(json!({"client_id": upper_g}))),
            false,
            INVALID_HANDSHAKE,
        ),
        (
            "client_id empty",
            env(json!(1), hs(json!({"client_id": ""}))),
            false,
            INVALID_HANDSHAKE,
        ),
        (
            "device_id 63 hex",
            env(json!(1), hs(json!({"device_id": bad63}))),
            false,
            INVALID_HANDSHAKE,
        ),
        (
            "routing_token not hex",
            env(json!(1), hs(json!({"routing_token": upper_g}))),
            false,
            INVALID_HANDSHAKE,
        ),
        (
            "invalid id before auth",
            env(
                json!(1),
                hs(
                    json!({"routing_token": "x", "identity_public_key": B, "nonce": ZEROS, "signature": format!("{ZEROS}{ZEROS}"), "timestamp": 1}),
                ),
            ),
            false,
            INVALID_HANDSHAKE,
        ),
    ];
    for (label, first, text, reason) in rows {
        let event = first_reply(relay.addr, &first, text);
        assert_eq!(event, Event::Close(1008, reason.to_owned()), "{label}");
    }
}

#[test]
fn null_optional_fields_mean_not_given() {
    let dir = TempDir::new("hs-null");
    let relay = Relay::start(dir.path(), &[]);
    let payload = hs(
        json!({"device_id": null, "routing_token": null, "suppress_presence": null,
        "identity_public_key": null, "nonce": null, "signature": null, "timestamp": null}),
    );
    let mut ws = RawWs::connect(relay.addr);
    ws.send_binary(&env(json!(1), payload));
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
}

#[test]
fn handshake_with_only_some_auth_fields_is_accepted_unauthenticated() {
    let dir = TempDir::new("hs-partial");
    let relay = Relay::start(dir.path(), &[]);
    // A bad signature is never looked at when the timestamp is missing.
    let payload = hs(
        json!({"identity_public_key": A, "nonce": ZEROS, "signature": format!("{ZEROS}{ZEROS}")}),
    );
    let mut ws = RawWs::connect(relay.addr);
    ws.send_binary(&env(json!(1), payload));
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
}

fn accepted(relay: &Relay, payload: Value) -> bool {
    match first_reply(relay.addr, &frame(&envelope_of(payload)), false) {
        Event::Binary(bytes) => {
            let ack: Value = serde_json::from_str(&unprefix(&bytes)).unwrap();
            assert_eq!(ack["payload"]["type"], "HandshakeAck", "{ack}");
            true
        }
        Event::Close(1008, reason) => {
            assert_eq!(reason, "authentication failed");
            false
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn authentication_table() {
    let dir = TempDir::new("hs-auth");
    let relay = Relay::start(dir.path(), &[]);
    let t = now();
    let other = Identity::fresh();
    // (label, payload builder given a fresh identity and nonce, accepted)
    type Build = Box<dyn Fn(&Identity, [u8; 32]) -> Value>;
    let rows: Vec<(&str, Build, bool)> = vec![
        (
            "fresh signature",
            Box::new(move |id, n| id.handshake_payload(&n, t)),
            true,
        ),
        (
            "59 s old",
            Box::new(move |id, n| id.handshake_payload(&n, t - 59)),
            true,
        ),
        (
            "59 s ahead",
            Box::new(move |id, n| id.handshake_payload(&n, t + 59)),
            true,
        ),
        (
            "upper-case hex everywhere",
            Box::new(move |id, n| {
                let mut p = id.handshake_payload(&n, t);
                for k in ["client_id", "identity_public_key", "nonce", "signature"] {
                    p[k] = json!(p[k].as_str().unwrap().to_uppercase());
                }
                p
            }),
            true,
        ),
        (
            "upper-case client_id, lower-case key",
            Box::new(move |id, n| {
                let mut p = id.handshake_payload(&n, t);
                p["client_id"] = json!(id.id.to_uppercase());
                p
            }),
            true,
        ),
        (
            "120 s old",
            Box::new(move |id, n| id.handshake_payload(&n, t - 120)),
            false,
        ),
        (
            "120 s ahead",
            Box::new(move |id, n| id.handshake_payload(&n, t + 120)),
            false,
        ),
        (
            "signed at another time",
            Box::new(move |id, n| {
                let mut p = id.handshake_payload(&n, t);
                p["timestamp"] = json!(t - 1);
                p
            }),
            false,
        ),
        (
            "key is not the client_id",
            Box::new(move |id, n| {
                let mut p = id.handshake_payload(&n, t);
                p["client_id"] = json!(other.id);
                p
            }),
            false,
        ),
        (
            "signature by another key",
            Box::new(move |id, n| {
                let mut p = id.handshake_payload(&n, t);
                p["signature"] = json!(Identity::fresh().sign(&n, t));
                p
            }),
            false,
        ),
        (
            "nonce 31 bytes",
            Box::new(move |id, n| {
                let mut p = id.handshake_payload(&n, t);
                p["nonce"] = json!(hex::encode(&n[..31]));
                p
            }),
            false,
        ),
        (
            "signature 63 bytes",
            Box::new(move |id, n| {
                let mut p = id.handshake_payload(&n, t);
                p["signature"] = json!(p["signature"].as_str().unwrap()[..126].to_owned());
                p
            }),
            false,
        ),
        (
            "key not hex",
            Box::new(move |id, n| {
                let mut p = id.handshake_payload(&n, t);
                p["identity_public_key"] = json!(format!("{}z", &id.id[..63]));
                p
            }),
            false,
        ),
    ];
    for (label, build, expect) in rows {
        let identity = Identity::fresh();
        let payload = build(&identity, random32());
        assert_eq!(accepted(&relay, payload), expect, "{label}");
    }
}

#[test]
fn appendix_a3_vector_is_refused_outside_its_time_window() {
    // The vector's timestamp is 2026-01-01, more than 60 s before any run of this test.
    let dir = TempDir::new("hs-a3");
    let relay = Relay::start(dir.path(), &[]);
    assert!(now() > 1767225660);
    let identity = Identity::from_seed(
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap(),
    );
    assert_eq!(identity.id, A, "Appendix A.3 key");
    let nonce: [u8; 32] = std::array::from_fn(|i| i as u8);
    let payload = identity.handshake_payload(&nonce, 1767225600);
    assert_eq!(
        payload["signature"],
        "ba60e1debfee7a5fa58161f2224e26671a39ed105deefae3adc97603c469bae8f20690af899d5bb9f3c40d01ed842cb6d4e066bebd899862100c485cc31f320a"
    );
    assert!(!accepted(&relay, payload));
}

fn replay(shards: &str, first_token: Option<&str>, second_token: Option<&str>) {
    let dir = TempDir::new("hs-replay");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", shards)]);
    let identity = Identity::fresh();
    let nonce = random32();
    let t = now();
    let with_token = |token: Option<&str>| {
        let mut p = identity.handshake_payload(&nonce, t);
        if let Some(token) = token {
            p["routing_token"] = json!(token);
        }
        p
    };
    // The first connection stays open while the second replays its nonce.
    let mut first = RawWs::connect(relay.addr);
    first.send_json(&envelope_of(with_token(first_token)));
    let ack: Value = serde_json::from_str(&first.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    assert!(!accepted(&relay, with_token(second_token)), "replay");
    // A different nonce from the same key is fine.
    assert!(accepted(&relay, identity.handshake_payload(&random32(), t)));
}

#[test]
fn replayed_nonce_is_refused() {
    replay("1", None, None);
}

#[test]
fn replayed_nonce_is_refused_when_the_routing_token_lives_on_another_shard() {
    // With 4 shards, B is on shard 1 and 64 × `0` on shard 3 (Appendix A.2).
    replay("4", Some(B), Some(ZEROS));
}

#[test]
fn replayed_nonce_is_refused_with_and_without_a_routing_token() {
    // The identity's own shard versus shard 3 of 4.
    replay("4", None, Some(ZEROS));
}

#[test]
fn a_nonce_is_used_up_even_when_the_signature_fails() {
    // §4.3 step 4 records the nonce before step 5 verifies the signature.
    let dir = TempDir::new("hs-usedup");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let identity = Identity::fresh();
    let nonce = random32();
    let t = now();
    let mut bad = identity.handshake_payload(&nonce, t);
    bad["signature"] = json!(Identity::fresh().sign(&nonce, t));
    assert!(!accepted(&relay, bad));
    assert!(!accepted(&relay, identity.handshake_payload(&nonce, t)));
}

#[test]
fn the_same_nonce_under_another_key_is_not_a_replay() {
    let dir = TempDir::new("hs-pair");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let nonce = random32();
    let t = now();
    assert!(accepted(
        &relay,
        Identity::fresh().handshake_payload(&nonce, t)
    ));
    assert!(accepted(
        &relay,
        Identity::fresh().handshake_payload(&nonce, t)
    ));
}

#[test]
fn handshake_ack_is_exact() {
    let dir = TempDir::new("hs-ack");
    let relay = Relay::start(dir.path(), &[]);
    let mut ws = RawWs::connect(relay.addr);
    ws.send_json(&handshake_json(A));
    let raw = ws.recv_text();
    let value = expect_layout(
        &raw,
        &["type", "protocol_version", "server_version", "features"],
    );
    assert!(is_uuid_v4(value["message_id"].as_str().unwrap()), "{raw}");
    let expected_payload = format!(
        r#""payload":{{"type":"HandshakeAck","protocol_version":1,"server_version":"{}","features":["routing_token","suppress_presence","purge","device_sync","recovery_proof","account_revoked","forwarding_hints","authenticated_handshake","errors","live_push"]}}}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(raw.ends_with(&expected_payload), "{raw}");
}

#[test]
fn pings_before_the_handshake_are_answered_and_do_not_fail_it() {
    let dir = TempDir::new("hs-ping");
    let relay = Relay::start(dir.path(), &[]);
    let mut ws = RawWs::connect(relay.addr);
    for payload in [&b"one"[..], b"", b"three"] {
        ws.send_frame(0x89, payload, true);
        assert_eq!(ws.next_event(), Event::Pong(payload.to_vec()));
    }
    // An unsolicited Pong is ignored too.
    ws.send_frame(0x8a, b"pong", true);
    ws.send_json(&handshake_json(A));
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
}

#[test]
fn silence_after_the_upgrade_closes_with_handshake_timeout() {
    let dir = TempDir::new("hs-timeout");
    let relay = Relay::start(dir.path(), &[("RELAY_HANDSHAKE_TIMEOUT", "1")]);
    let mut ws = RawWs::connect(relay.addr);
    ws.expect_close(1008, "handshake timeout");
}

#[test]
fn pings_do_not_satisfy_the_handshake_timer() {
    let dir = TempDir::new("hs-timeout-ping");
    let relay = Relay::start(dir.path(), &[("RELAY_HANDSHAKE_TIMEOUT", "1")]);
    let mut ws = RawWs::connect(relay.addr);
    ws.send_frame(0x89, b"p", true);
    assert_eq!(ws.next_event(), Event::Pong(b"p".to_vec()));
    ws.expect_close(1008, "handshake timeout");
}

#[test]
fn an_unfinished_http_head_gets_the_tcp_connection_closed() {
    let dir = TempDir::new("hs-slowloris");
    let relay = Relay::start(dir.path(), &[("RELAY_HANDSHAKE_TIMEOUT", "1")]);
    let mut stream = TcpStream::connect(relay.addr).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection not closed: {e}"),
    }
    // The relay MAY send 408 first; nothing else.
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn an_idle_session_closes_with_1000_idle_timeout() {
    let dir = TempDir::new("idle");
    let relay = Relay::start(dir.path(), &[("RELAY_IDLE_TIMEOUT", "1")]);
    let mut ws = RawWs::connect(relay.addr);
    ws.send_json(&handshake_json(A));
    ws.recv_text();
    ws.expect_close(1000, "idle timeout");
}

#[test]
fn inbound_pings_restart_the_idle_timer() {
    // Timers under test: five Pings 400 ms apart keep a 1 s idle timer from firing.
    let dir = TempDir::new("idle-ping");
    let relay = Relay::start(dir.path(), &[("RELAY_IDLE_TIMEOUT", "1")]);
    let mut ws = RawWs::connect(relay.addr);
    ws.send_json(&handshake_json(A));
    ws.recv_text();
    for i in 0..5u8 {
        std::thread::sleep(Duration::from_millis(400));
        ws.send_frame(0x89, &[i], true);
        assert_eq!(ws.next_event(), Event::Pong(vec![i]), "ping {i}");
    }
    ws.expect_close(1000, "idle timeout");
}

#[test]
fn upper_case_client_id_is_the_same_mailbox() {
    let dir = TempDir::new("case");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut upper = Client::handshake(relay.addr, &B.to_uppercase());
    let mut lower = Client::handshake(relay.addr, B);
    let mut sender = Client::handshake(relay.addr, A);
    // Sent to both spellings; both sessions get both, with lower-case recipient_id.
    sender.send_json(&update_json("u1", B, &[1]));
    sender.send_json(&update_json("u2", &B.to_uppercase(), &[2]));
    for i in 0..2 {
        assert_eq!(sender.recv_json()["payload"]["status"], "Stored", "{i}");
    }
    for session in [&mut upper, &mut lower] {
        for ciphertext in [1, 2] {
            let pushed = session.recv_json();
            assert_eq!(pushed["payload"]["type"], "EncryptedUpdate", "{pushed}");
            assert_eq!(pushed["payload"]["recipient_id"], B, "{pushed}");
            assert_eq!(pushed["payload"]["ciphertext"], json!([ciphertext]));
        }
    }
}

#[test]
fn upper_case_routing_token_is_the_same_mailbox() {
    let dir = TempDir::new("case-token");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "4")]);
    let mut sender = Client::handshake(relay.addr, A);
    sender.send_json(&update_json("u1", ZEROS, &[9]));
    assert_eq!(sender.recv_json()["payload"]["status"], "Stored");
    let mut ws = RawWs::connect(relay.addr);
    ws.send_json(&envelope_of(json!({"type": "Handshake", "client_id": B,
        "routing_token": ZEROS.to_uppercase()})));
    ws.recv_text();
    let pushed: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(pushed["payload"]["recipient_id"], ZEROS);
    assert_eq!(pushed["payload"]["ciphertext"], json!([9]));
}

#[test]
fn outbound_pushes_do_not_restart_the_idle_timer() {
    // Timers under test: a blob is pushed to B every 300 ms for 3 s, but B sends
    // nothing, so its 1 s idle timer fires long before the stream ends.
    let dir = TempDir::new("idle-push");
    let relay = Relay::start(dir.path(), &[("RELAY_IDLE_TIMEOUT", "1")]);
    let mut recipient = RawWs::connect(relay.addr);
    recipient.send_json(&handshake_json(B));
    recipient.recv_text();
    let addr = relay.addr;
    let pusher = std::thread::spawn(move || {
        let mut sender = RawWs::connect(addr);
        sender.send_json(&handshake_json(A));
        sender.recv_text();
        for i in 0..10u8 {
            sender.send_json(&update_json(&format!("i{i}"), B, &[i]));
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let mut pushes = 0;
    loop {
        match recipient.next_event() {
            Event::Binary(_) => pushes += 1,
            Event::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (1000, "idle timeout"));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(pushes < 10, "closed only after every push: {pushes}");
    pusher.join().unwrap();
}
