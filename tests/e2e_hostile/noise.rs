//! Hostile input on Noise sessions (§15.1), in volume against the relay binary: a
//! garbled message 1, a replayed opening, transport messages that do not decrypt,
//! text frames before and after the encrypted Handshake, and length prefixes far
//! over the limit spread across messages. Each offender gets its close code; the
//! relay stays up with bounded memory; an honest Noise pair exchanges a blob
//! meanwhile, and the session whose opening was replayed goes on untouched.

use serde_json::Value;

use crate::attacks::MemoryWatch;
use crate::common::noise::{self, NoiseClient};
use crate::common::*;
use crate::wire::*;

/// Connections per hostile case.
const OFFENDERS: usize = 40;

/// A Noise session past its Handshake, on the raw client.
fn noise_session(relay: &Relay) -> RawWs {
    let mut ws = RawWs::connect_to(relay);
    ws.send_json(&handshake_json(&fresh_id()));
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    ws
}

fn sealed(noise: &mut NoiseClient, plaintext: &[u8]) -> Vec<u8> {
    encode_frame(0x82, &noise.seal(plaintext), true)
}

/// One offender of each kind: its connection, after the offence is written, and
/// the close it must get.
fn offend(relay: &Relay, kind: usize, seed: usize) -> (RawWs, u16, &'static str) {
    let key = relay.noise_key.unwrap();
    match kind {
        0 => {
            let (mut opening, _) = noise::opening(&key);
            opening[3 + seed % 48] ^= 0x5a;
            let mut ws = RawWs::connect(relay.addr);
            ws.send_binary(&opening);
            (ws, 1008, "noise handshake failed")
        }
        1 => {
            let mut ws = noise_session(relay);
            let noise = ws.noise.as_mut().unwrap();
            let mut message = noise.seal(&frame(&update_json("x", &fresh_id(), &[1])));
            let at = seed % message.len();
            message[at] ^= 1;
            ws.send_frame(0x82, &message, true);
            (ws, 1008, "decryption failed")
        }
        2 => {
            let mut ws = noise_session(relay);
            ws.send_frame(0x81, b"{\"hello\":1}", true);
            (ws, 1008, "decryption failed")
        }
        3 => {
            let mut ws = RawWs::connect_to(relay);
            ws.send_frame(0x81, b"hello", true);
            (ws, 1008, "decryption failed")
        }
        _ => {
            // A prefix claiming 4 GiB, its 4 bytes over two messages.
            let mut ws = noise_session(relay);
            let noise = ws.noise.as_mut().unwrap();
            let mut bytes = sealed(noise, &[0xff, 0xff]);
            bytes.extend(sealed(noise, &[0xff, 0xff, 1, 2, 3]));
            ws.write(&bytes);
            (ws, 1009, "message too big")
        }
    }
}

#[test]
fn hostile_noise_input_closes_each_offender_and_loses_nothing_else() {
    let dir = TempDir::new("noise-hostile");
    let vars = [("RELAY_SHARDS", "2"), ("RELAY_RATE_LIMIT", "100000")];
    let relay = Relay::start_over(Wire::Noise, dir.path(), &vars);
    // The victim of the replay: a session whose opening and encrypted Handshake
    // were seen on the wire.
    let victim_id = fresh_id();
    let mut victim = RawWs::connect(relay.addr);
    let (opening, state) = noise::opening(&relay.noise_key.unwrap());
    let opening_frame = encode_frame(0x82, &opening, true);
    victim.write(&opening_frame);
    let reply = match victim.next_raw_event() {
        Event::Binary(reply) => reply,
        other => panic!("{other:?}"),
    };
    let mut client = NoiseClient::finish(state, &reply);
    let handshake_frame = sealed(&mut client, &frame(&handshake_json(&victim_id)));
    victim.noise = Some(client);
    victim.write(&handshake_frame);
    victim.recv_text();
    let memory = MemoryWatch::start(&relay);
    let mut offenders = Vec::new();
    for seed in 0..OFFENDERS {
        for kind in 0..5 {
            offenders.push(offend(&relay, kind, seed));
        }
        // The replayed opening gets a fresh message 2, but the replayed Handshake
        // was sealed for other keys.
        let mut replay = RawWs::connect(relay.addr);
        replay.write(&[opening_frame.clone(), handshake_frame.clone()].concat());
        assert!(matches!(replay.next_raw_event(), Event::Binary(m) if m.len() == 51));
        offenders.push((replay, 1008, "decryption failed"));
    }
    for (index, (mut ws, code, reason)) in offenders.into_iter().enumerate() {
        assert_eq!(
            ws.next_raw_event(),
            Event::Close(code, reason.to_owned()),
            "offender {index}"
        );
    }
    memory.assert_bounded("noise offenders", OFFENDERS * 6, 64);
    // An honest Noise pair, and the victim, are served.
    let recipient_id = fresh_id();
    let mut recipient = relay.handshake(&recipient_id);
    let mut sender = relay.handshake(&fresh_id());
    sender.send_json(&update_json("h", &recipient_id, b"honest"));
    assert_eq!(sender.recv_json()["payload"]["status"], "Stored");
    let pushed = recipient.recv_json();
    assert_eq!(
        pushed["payload"]["ciphertext"],
        serde_json::json!(b"honest")
    );
    victim.send_json(&update_json("v", &recipient_id, b"victim"));
    let stored: Value = serde_json::from_str(&victim.recv_text()).unwrap();
    assert_eq!(stored["payload"]["status"], "Stored", "{stored}");
    let pushed = recipient.recv_json();
    assert_eq!(
        pushed["payload"]["ciphertext"],
        serde_json::json!(b"victim")
    );
    let scrape = scrape_metrics(&relay);
    // Every opening that decrypted counted: victim, honest pair, offenders of kinds
    // 1-4 and the replays.
    let openings = 3 + OFFENDERS * 5;
    assert_eq!(
        metric_value(&scrape, "relay_noise_sessions_total", ""),
        openings as f64
    );
}
