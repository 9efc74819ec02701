//! The federation message codec (PROTOCOL.md §11.1, §11.2, Appendix A.4): every §11.2
//! example decodes to its value and encodes back to the same bytes, every variant
//! round-trips, and each way a message is ignored gives its `Ignored` reason.

use crate::common::frame;
use crate::federation_examples::EXAMPLES;
use crate::wire::{is_uuid_v4, unprefix};
use serde_json::Value;
use vauchi_relay::federation::messages::{
    AdvertisedPeer, FedMessage, Ignored, decode, encode, encode_with_id, integrity_hash,
};

const ROUTING_ID: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const BLOB: &str = "8f8b0be7-b5e1-4fd5-b45b-2a6939393c59";
const HASH_123: &str = "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81";
const NOW: u64 = 1767225600;

/// What each of `EXAMPLES` means.
fn example_values() -> [FedMessage; 9] {
    [
        FedMessage::PeerHandshake {
            relay_id: "7c73f18d-e506-46d4-8d07-f9308b544e6d".to_owned(),
            version: 1,
            listen_addr: "0.0.0.0:8080".to_owned(),
        },
        FedMessage::PeerHandshakeAck {
            relay_id: "35618a1a-23c5-4583-8bf9-508015ad6889".to_owned(),
            version: 1,
            accepted: true,
            capacity_used_bytes: 52428800,
            capacity_max_bytes: 1073741824,
        },
        FedMessage::OffloadBlob {
            blob_id: BLOB.to_owned(),
            routing_id: ROUTING_ID.to_owned(),
            data: vec![1, 2, 3],
            created_at_secs: 1767225600,
            integrity_hash: HASH_123.to_owned(),
            hop_count: 0,
        },
        FedMessage::OffloadAck {
            blob_id: BLOB.to_owned(),
            accepted: true,
            reason: None,
        },
        FedMessage::OffloadAck {
            blob_id: BLOB.to_owned(),
            accepted: false,
            reason: Some("at capacity".to_owned()),
        },
        FedMessage::CapacityReport {
            used_bytes: 52428800,
            max_bytes: 1073741824,
            blob_count: 1200,
        },
        FedMessage::DrainNotice {
            drain_timeout_secs: 300,
        },
        FedMessage::DrainAck,
        FedMessage::OffloadRequest {
            count: 10,
            total_bytes: 4096,
        },
    ]
}

/// A version-1 envelope around `payload`.
fn wrap(payload: &str) -> Vec<u8> {
    frame(&format!(
        r#"{{"version":1,"message_id":"m","timestamp":1767225600,"payload":{payload}}}"#
    ))
}

/// The envelope `message_id` and `timestamp` of an example.
fn envelope_of(json: &str) -> (String, u64) {
    let value: Value = serde_json::from_str(json).expect("example is JSON");
    (
        value["message_id"].as_str().expect("string id").to_owned(),
        value["timestamp"].as_u64().expect("u64 timestamp"),
    )
}

// ---- §11.2 examples -------------------------------------------------------------------

#[test]
fn every_example_decodes_to_its_value() {
    for (json, expected) in EXAMPLES.iter().zip(example_values()) {
        assert_eq!(decode(&frame(json)), Ok(expected), "{json}");
    }
}

#[test]
fn every_example_encodes_to_the_same_bytes() {
    for (json, message) in EXAMPLES.iter().zip(example_values()) {
        let (message_id, timestamp) = envelope_of(json);
        let encoded = encode_with_id(&message, timestamp, &message_id);
        assert_eq!(unprefix(&encoded), *json);
        assert_eq!(encoded, frame(json));
    }
}

#[test]
fn encode_writes_a_fresh_uuid_v4_and_now() {
    let message = FedMessage::DrainAck;
    let first = encode(&message, NOW);
    let second = encode(&message, NOW + 1);
    let first_json: Value = serde_json::from_str(&unprefix(&first)).expect("JSON");
    let second_json: Value = serde_json::from_str(&unprefix(&second)).expect("JSON");
    assert_eq!(first_json["version"], 1);
    assert_eq!(first_json["timestamp"], NOW);
    assert_eq!(second_json["timestamp"], NOW + 1);
    let first_id = first_json["message_id"].as_str().expect("string id");
    let second_id = second_json["message_id"].as_str().expect("string id");
    assert!(is_uuid_v4(first_id), "{first_id}");
    assert!(is_uuid_v4(second_id), "{second_id}");
    assert_ne!(first_id, second_id);
    assert_eq!(decode(&first), Ok(message));
}

#[test]
fn encode_is_compact_and_type_first() {
    let encoded = encode(
        &FedMessage::OffloadAck {
            blob_id: BLOB.to_owned(),
            accepted: false,
            reason: Some("a \"quoted\"\n reason".to_owned()),
        },
        NOW,
    );
    let json = unprefix(&encoded);
    assert!(json.contains(r#","payload":{"type":"OffloadAck","blob_id":"#));
    assert!(json.ends_with(r#","accepted":false,"reason":"a \"quoted\"\n reason"}}"#));
    assert!(!json.contains(": ") && !json.contains(", "));
}

// ---- round trips ------------------------------------------------------------------------

/// One value of every variant, with edge values: empty and escaped strings, empty and
/// full-range data, the extremes of u8 and u64.
fn edge_values() -> Vec<FedMessage> {
    vec![
        FedMessage::PeerHandshake {
            relay_id: String::new(),
            version: u8::MAX,
            listen_addr: "[::1]:8080 \"\\\u{0}\u{1f}é🦀".to_owned(),
        },
        FedMessage::PeerHandshakeAck {
            relay_id: "r".to_owned(),
            version: 0,
            accepted: false,
            capacity_used_bytes: u64::MAX,
            capacity_max_bytes: 0,
        },
        FedMessage::OffloadBlob {
            blob_id: "b".to_owned(),
            routing_id: ROUTING_ID.to_ascii_uppercase(),
            data: (0..=255).collect(),
            created_at_secs: u64::MAX,
            integrity_hash: "not checked by the codec".to_owned(),
            hop_count: u8::MAX,
        },
        FedMessage::OffloadBlob {
            blob_id: String::new(),
            routing_id: String::new(),
            data: Vec::new(),
            created_at_secs: 0,
            integrity_hash: String::new(),
            hop_count: 0,
        },
        FedMessage::OffloadAck {
            blob_id: String::new(),
            accepted: true,
            reason: Some(String::new()),
        },
        FedMessage::OffloadAck {
            blob_id: "b".to_owned(),
            accepted: false,
            reason: None,
        },
        FedMessage::CapacityReport {
            used_bytes: 0,
            max_bytes: u64::MAX,
            blob_count: u64::MAX,
        },
        FedMessage::DrainNotice {
            drain_timeout_secs: u64::MAX,
        },
        FedMessage::DrainAck,
        FedMessage::OffloadRequest {
            count: u64::MAX,
            total_bytes: 0,
        },
    ]
}

#[test]
fn every_variant_round_trips() {
    for message in example_values().into_iter().chain(edge_values()) {
        let encoded = encode(&message, NOW);
        assert_eq!(
            decode(&encoded),
            Ok(message.clone()),
            "{}",
            unprefix(&encoded)
        );
        // serde_json reads the same JSON: the writer escapes correctly.
        let _: Value = serde_json::from_str(&unprefix(&encoded)).expect("valid JSON");
    }
}

// ---- §15.2: gossip ----------------------------------------------------------------------

#[test]
fn gossip_messages_are_written_as_the_spec_shows_and_read_back() {
    let advertisement = FedMessage::PeerAdvertisement {
        peers: vec![
            AdvertisedPeer {
                relay_id: "relay-c".to_owned(),
                url: "wss://c.example:8443".to_owned(),
                capacity_pct: 42,
                last_seen_secs: NOW,
            },
            AdvertisedPeer {
                relay_id: "relay-\"d\"".to_owned(),
                url: "ws://d.example".to_owned(),
                capacity_pct: 255,
                last_seen_secs: 0,
            },
        ],
    };
    let encoded = encode_with_id(&advertisement, NOW, "m");
    assert_eq!(
        unprefix(&encoded),
        r#"{"version":1,"message_id":"m","timestamp":1767225600,"payload":{"type":"PeerAdvertisement","peers":[{"relay_id":"relay-c","url":"wss://c.example:8443","capacity_pct":42,"last_seen_secs":1767225600},{"relay_id":"relay-\"d\"","url":"ws://d.example","capacity_pct":255,"last_seen_secs":0}]}}"#
    );
    assert_eq!(decode(&encoded), Ok(advertisement));
    let empty = FedMessage::PeerAdvertisement { peers: Vec::new() };
    assert!(unprefix(&encode_with_id(&empty, NOW, "m")).contains(r#""peers":[]}"#));
    assert_eq!(decode(&encode(&empty, NOW)), Ok(empty));
    let ack = FedMessage::PeerAdvertisementAck { new_peers_count: 3 };
    assert_eq!(
        unprefix(&encode_with_id(&ack, NOW, "m")),
        r#"{"version":1,"message_id":"m","timestamp":1767225600,"payload":{"type":"PeerAdvertisementAck","new_peers_count":3}}"#
    );
    assert_eq!(decode(&encode(&ack, NOW)), Ok(ack));
}

#[test]
fn a_malformed_advertisement_entry_is_a_bad_payload() {
    for entries in [
        r#"[{"relay_id":"r","url":"ws://x","capacity_pct":256,"last_seen_secs":0}]"#,
        r#"[{"relay_id":"r","url":"ws://x","capacity_pct":1}]"#,
        r#"[{"relay_id":7,"url":"ws://x","capacity_pct":1,"last_seen_secs":0}]"#,
        r#"{"relay_id":"r"}"#,
        r#"null"#,
    ] {
        let payload = format!(r#"{{"type":"PeerAdvertisement","peers":{entries}}}"#);
        assert_eq!(
            decode(&wrap(&payload)),
            Err(Ignored::BadPayload),
            "{entries}"
        );
    }
    let payload = r#"{"type":"PeerAdvertisementAck","new_peers_count":-1}"#;
    assert_eq!(decode(&wrap(payload)), Err(Ignored::BadPayload));
}

// ---- §3.3: values -----------------------------------------------------------------------

#[test]
fn unknown_fields_are_ignored() {
    let decoded = decode(&frame(
        r#"{"x":[{"y":null}],"version":1,"message_id":"m","timestamp":0,"payload":{"type":"DrainNotice","extra":{"a":[1,"b"]},"drain_timeout_secs":5,"accepted":"not a bool here"}}"#,
    ));
    assert_eq!(
        decoded,
        Ok(FedMessage::DrainNotice {
            drain_timeout_secs: 5
        })
    );
    assert_eq!(
        decode(&wrap(r#"{"type":"DrainAck","drain_timeout_secs":"x"}"#)),
        Ok(FedMessage::DrainAck)
    );
}

#[test]
fn absent_reason_is_none() {
    assert_eq!(
        decode(&wrap(
            r#"{"type":"OffloadAck","blob_id":"b","accepted":true}"#
        )),
        Ok(FedMessage::OffloadAck {
            blob_id: "b".to_owned(),
            accepted: true,
            reason: None,
        })
    );
}

#[test]
fn escaped_strings_decode() {
    assert_eq!(
        decode(&wrap(
            r#"{"type":"PeerHandshake","relay_id":"a\"b\u00e9\ud83e\udd80","version":1,"listen_addr":"x\\y"}"#
        )),
        Ok(FedMessage::PeerHandshake {
            relay_id: "a\"bé🦀".to_owned(),
            version: 1,
            listen_addr: "x\\y".to_owned(),
        })
    );
}

// ---- §11.1: ignored messages --------------------------------------------------------------

#[test]
fn short_frames_are_malformed() {
    for short in [&[][..], &[0], &[0, 0], &[0, 0, 0]] {
        assert_eq!(decode(short), Err(Ignored::MalformedFrame));
    }
}

#[test]
fn wrong_length_prefix_is_malformed() {
    let right = frame(EXAMPLES[7]);
    let mut shorter = right.clone();
    shorter[3] -= 1;
    assert_eq!(decode(&shorter), Err(Ignored::MalformedFrame));
    let mut longer = right.clone();
    longer[3] += 1;
    assert_eq!(decode(&longer), Err(Ignored::MalformedFrame));
    assert_eq!(
        decode(&right[..right.len() - 1]),
        Err(Ignored::MalformedFrame)
    );
    let mut trailing = right.clone();
    trailing.push(b' ');
    assert_eq!(decode(&trailing), Err(Ignored::MalformedFrame));
    assert_eq!(decode(&[0, 0, 0, 0]), Err(Ignored::BadEnvelope));
}

#[test]
fn text_that_is_not_utf8_is_malformed() {
    let mut message = frame(
        r#"{"version":1,"message_id":"m","timestamp":0,"payload":{"type":"DrainAck","x":"??"}}"#,
    );
    let at = message.len() - 5;
    message[at] = 0xff;
    assert_eq!(decode(&message), Err(Ignored::MalformedFrame));
}

#[test]
fn text_that_is_not_a_json_envelope_is_a_bad_envelope() {
    let envelope_payload = r#"{"type":"DrainAck"}"#;
    for json in [
        "hello",
        "",
        "{",
        "null",
        "[1,0,0,{}]",
        r#"["version",1]"#,
        r#"{"version":1,"message_id":"m","timestamp":0,"payload":{"type":"DrainAck"}"#,
        r#"{"version":1,"message_id":"m","timestamp":0,"payload":{"type":"DrainAck"}} x"#,
        // Missing or mistyped envelope members (§3.2).
        r#"{"message_id":"m","timestamp":0,"payload":{"type":"DrainAck"}}"#,
        r#"{"version":1,"timestamp":0,"payload":{"type":"DrainAck"}}"#,
        r#"{"version":1,"message_id":"m","payload":{"type":"DrainAck"}}"#,
        r#"{"version":1,"message_id":"m","timestamp":0}"#,
        r#"{"version":"1","message_id":"m","timestamp":0,"payload":{"type":"DrainAck"}}"#,
        r#"{"version":-1,"message_id":"m","timestamp":0,"payload":{"type":"DrainAck"}}"#,
        r#"{"version":1.0,"message_id":"m","timestamp":0,"payload":{"type":"DrainAck"}}"#,
        r#"{"version":1,"message_id":7,"timestamp":0,"payload":{"type":"DrainAck"}}"#,
        r#"{"version":1,"message_id":"m","timestamp":-1,"payload":{"type":"DrainAck"}}"#,
        r#"{"version":1,"message_id":"m","timestamp":0,"payload":[]}"#,
        r#"{"version":1,"message_id":"m","timestamp":0,"payload":{}}"#,
        r#"{"version":1,"message_id":"m","timestamp":0,"payload":{"type":7}}"#,
        r#"{"version":1,"message_id":"m","timestamp":0,"payload":{"type":"DrainAck","type":"DrainAck"}}"#,
        r#"{"version":1,"version":1,"message_id":"m","timestamp":0,"payload":{"type":"DrainAck"}}"#,
    ] {
        assert_eq!(decode(&frame(json)), Err(Ignored::BadEnvelope), "{json}");
    }
    assert_eq!(
        decode(&wrap(envelope_payload)),
        Ok(FedMessage::DrainAck),
        "the well-formed control case"
    );
}

#[test]
fn envelope_version_other_than_1_is_unsupported() {
    for version in ["2", "0", "255", "256", "18446744073709551616"] {
        let json = format!(
            r#"{{"version":{version},"message_id":"m","timestamp":0,"payload":{{"type":"DrainAck"}}}}"#
        );
        assert_eq!(
            decode(&frame(&json)),
            Err(Ignored::UnsupportedVersion),
            "{json}"
        );
    }
    // The version is judged before the type and the fields.
    assert_eq!(
        decode(&frame(
            r#"{"version":2,"message_id":"m","timestamp":0,"payload":{"type":"PeerAdvertisement"}}"#
        )),
        Err(Ignored::UnsupportedVersion)
    );
}

#[test]
fn unknown_types_are_unknown() {
    for kind in [
        "peeradvertisement",
        "Handshake",
        "EncryptedUpdate",
        "Error",
        "drainack",
        "DrainAck ",
        "",
    ] {
        let payload = format!(r#"{{"type":"{kind}","relay_id":"r","version":1}}"#);
        assert_eq!(decode(&wrap(&payload)), Err(Ignored::UnknownType), "{kind}");
    }
}

/// Every example payload with each of its fields removed in turn.
#[test]
fn a_missing_field_is_a_bad_payload() {
    let mut checked = 0;
    for json in EXAMPLES {
        let envelope: Value = serde_json::from_str(json).expect("JSON");
        let payload = envelope["payload"].as_object().expect("object");
        for field in payload.keys().filter(|key| *key != "type") {
            let mut without = payload.clone();
            without.remove(field);
            let payload_json = serde_json::to_string(&without).expect("serializes");
            let expected = if field == "reason" {
                // Optional (§3.3): absent means not given.
                Ok(FedMessage::OffloadAck {
                    blob_id: BLOB.to_owned(),
                    accepted: payload["accepted"].as_bool().expect("bool"),
                    reason: None,
                })
            } else {
                Err(Ignored::BadPayload)
            };
            assert_eq!(decode(&wrap(&payload_json)), expected, "{payload_json}");
            checked += 1;
        }
    }
    assert_eq!(checked, 26);
}

#[test]
fn a_field_of_the_wrong_type_is_a_bad_payload() {
    for payload in [
        r#"{"type":"PeerHandshake","relay_id":7,"version":1,"listen_addr":"a"}"#,
        r#"{"type":"PeerHandshake","relay_id":"r","version":"1","listen_addr":"a"}"#,
        r#"{"type":"PeerHandshake","relay_id":"r","version":1.0,"listen_addr":"a"}"#,
        r#"{"type":"PeerHandshake","relay_id":"r","version":-1,"listen_addr":"a"}"#,
        r#"{"type":"PeerHandshake","relay_id":"r","version":256,"listen_addr":"a"}"#,
        r#"{"type":"PeerHandshake","relay_id":"r","version":1,"listen_addr":null}"#,
        r#"{"type":"PeerHandshakeAck","relay_id":"r","version":1,"accepted":1,"capacity_used_bytes":0,"capacity_max_bytes":0}"#,
        r#"{"type":"PeerHandshakeAck","relay_id":"r","version":1,"accepted":true,"capacity_used_bytes":18446744073709551616,"capacity_max_bytes":0}"#,
        r#"{"type":"PeerHandshakeAck","relay_id":"r","version":1,"accepted":true,"capacity_used_bytes":0,"capacity_max_bytes":1e3}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":[1,2,256],"created_at_secs":0,"integrity_hash":"h","hop_count":0}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":[1,-2],"created_at_secs":0,"integrity_hash":"h","hop_count":0}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":[1.5],"created_at_secs":0,"integrity_hash":"h","hop_count":0}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":"AQID","created_at_secs":0,"integrity_hash":"h","hop_count":0}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":{"0":1},"created_at_secs":0,"integrity_hash":"h","hop_count":0}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":[null],"created_at_secs":0,"integrity_hash":"h","hop_count":0}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":[1],"created_at_secs":0,"integrity_hash":"h","hop_count":300}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":[1],"created_at_secs":0,"integrity_hash":"h","hop_count":256}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":[1],"created_at_secs":-5,"integrity_hash":"h","hop_count":0}"#,
        r#"{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":[1],"created_at_secs":0,"integrity_hash":["h"],"hop_count":0}"#,
        r#"{"type":"OffloadAck","blob_id":"b","accepted":"true","reason":null}"#,
        r#"{"type":"OffloadAck","blob_id":"b","accepted":true,"reason":5}"#,
        r#"{"type":"OffloadAck","blob_id":null,"accepted":true,"reason":null}"#,
        r#"{"type":"CapacityReport","used_bytes":"1","max_bytes":2,"blob_count":3}"#,
        r#"{"type":"CapacityReport","used_bytes":1,"max_bytes":2,"blob_count":true}"#,
        r#"{"type":"DrainNotice","drain_timeout_secs":[300]}"#,
        r#"{"type":"OffloadRequest","count":10,"total_bytes":-1}"#,
    ] {
        assert_eq!(
            decode(&wrap(payload)),
            Err(Ignored::BadPayload),
            "{payload}"
        );
    }
}

#[test]
fn hop_count_300_is_a_bad_payload() {
    let json = EXAMPLES[2].replace(r#""hop_count":0"#, r#""hop_count":300"#);
    assert!(json.contains(r#""hop_count":300}"#));
    assert_eq!(decode(&frame(&json)), Err(Ignored::BadPayload));
    let json = EXAMPLES[2].replace(r#""hop_count":0"#, r#""hop_count":255"#);
    assert!(matches!(
        decode(&frame(&json)),
        Ok(FedMessage::OffloadBlob { hop_count: 255, .. })
    ));
}

#[test]
fn a_repeated_payload_member_is_a_bad_payload() {
    assert_eq!(
        decode(&wrap(
            r#"{"type":"DrainNotice","drain_timeout_secs":1,"drain_timeout_secs":2}"#
        )),
        Err(Ignored::BadPayload)
    );
}

/// Repeats of names the codec does not read used to pass (§3.3 makes every repeat
/// malformed): an unknown payload member twice is a bad payload, an unknown
/// envelope member twice a bad envelope.
#[test]
fn a_repeated_unknown_member_is_refused_too() {
    assert_eq!(
        decode(&wrap(r#"{"type":"DrainAck","x":1,"x":1}"#)),
        Err(Ignored::BadPayload)
    );
    let envelope =
        r#"{"version":1,"message_id":"m","timestamp":0,"x":1,"x":1,"payload":{"type":"DrainAck"}}"#;
    let mut message = (envelope.len() as u32).to_be_bytes().to_vec();
    message.extend_from_slice(envelope.as_bytes());
    assert_eq!(decode(&message), Err(Ignored::BadEnvelope));
}

/// Deep nesting costs linear work and no stack: where a member is unknown it is
/// skipped however deep; where a typed field or the envelope is expected it is refused.
#[test]
fn deep_nesting_is_decoded_without_overflowing_the_stack() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let in_unknown = format!(r#"{{"type":"DrainAck","x":{deep}}}"#);
    assert_eq!(decode(&wrap(&in_unknown)), Ok(FedMessage::DrainAck));
    let in_envelope = format!(
        r#"{{"x":{deep},"version":1,"message_id":"m","timestamp":0,"payload":{{"type":"DrainAck"}}}}"#
    );
    assert_eq!(decode(&frame(&in_envelope)), Ok(FedMessage::DrainAck));
    let in_field = format!(
        r#"{{"type":"OffloadBlob","blob_id":"b","routing_id":"r","data":{deep},"created_at_secs":0,"integrity_hash":"h","hop_count":0}}"#
    );
    assert_eq!(decode(&wrap(&in_field)), Err(Ignored::BadPayload));
    assert_eq!(decode(&frame(&deep)), Err(Ignored::BadEnvelope));
}

// ---- Appendix A.4: integrity hash ---------------------------------------------------------

#[test]
fn integrity_hash_of_the_example_data() {
    assert_eq!(integrity_hash(&[1, 2, 3]), HASH_123);
    assert_eq!(
        integrity_hash(&[]),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
