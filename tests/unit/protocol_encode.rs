//! Encoding of every S→C message (PROTOCOL.md §3.5, §4.5, §5): exact frames against
//! the spec's examples, string escaping, integer and bytes writing, and round trips.

use serde_json::Value;
use vauchi_relay::protocol::decode::{Request, decode_envelope, decode_request};
use vauchi_relay::protocol::encode::{self, Notification};
use vauchi_relay::protocol::{ErrorCode, Id64};

const A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const B: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const DEVICE: &str = "e22f9a018051dff57acb7463844564c7ace1e00fd315972863c9bcf41a09ccec";
const TARGET: &str = "6b8550e905f742f37404fb8317caca94ffecb000c0a96c5c040fe85e0705cfae";
const KEY_HASH: &str = "4ba705c25362ebd6b2ade2c57108919a1d88a537dd7d0b698f6f412b43df50b5";
const BLOB: &str = "8f8b0be7-b5e1-4fd5-b45b-2a6939393c59";
const REQUEST: &str = "48ff506c-5ee7-412d-95c9-7729ca758a49";
const NOW: u64 = 1767225600;

fn id(text: &str) -> Id64 {
    Id64::parse(text).expect("test id is 64-hex")
}

/// The JSON text of a frame, after checking that its prefix is the exact length.
fn text(frame: &[u8]) -> &str {
    assert!(frame.len() >= 4, "frame too short");
    let (prefix, json) = frame.split_at(4);
    let length = u32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    assert_eq!(
        length as usize,
        json.len(),
        "prefix must be the exact JSON length"
    );
    std::str::from_utf8(json).expect("frames are UTF-8")
}

fn parse(frame: &[u8]) -> Value {
    serde_json::from_str(text(frame)).expect("frames are JSON")
}

/// A UUIDv4 in lower case, hyphenated form (§3.4).
fn is_uuid_v4(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, &byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            14 => byte == b'4',
            19 => matches!(byte, b'8' | b'9' | b'a' | b'b'),
            _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte),
        })
}

#[test]
fn exact_frames_match_the_spec_examples() {
    let ack_id = "b452987d-d57e-4adf-88fe-bbd53389c74e";
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            encode::handshake_ack_with_id(NOW, ack_id),
            format!(
                r#"{{"version":1,"message_id":"{ack_id}","timestamp":1767225600,"payload":{{"type":"HandshakeAck","protocol_version":1,"server_version":"{}","features":["routing_token","suppress_presence","purge","device_sync","recovery_proof","account_revoked","forwarding_hints","authenticated_handshake","errors","live_push"]}}}}"#,
                env!("CARGO_PKG_VERSION")
            ),
        ),
        (
            encode::stored_ack_with_id(NOW, "fd88aa15-7150-41a4-8510-cc5ed3f08db7", REQUEST, Some(BLOB)),
            r#"{"version":1,"message_id":"fd88aa15-7150-41a4-8510-cc5ed3f08db7","timestamp":1767225600,"payload":{"type":"Acknowledgment","message_id":"48ff506c-5ee7-412d-95c9-7729ca758a49","status":"Stored","blob_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59"}}"#.into(),
        ),
        (
            encode::stored_ack_with_id(NOW, "e", "r", None),
            r#"{"version":1,"message_id":"e","timestamp":1767225600,"payload":{"type":"Acknowledgment","message_id":"r","status":"Stored"}}"#.into(),
        ),
        (
            encode::failed_ack_with_id(NOW, "0e4b1f52-8c1d-4b7a-a3e9-6d2f5c8b9a10", REQUEST),
            r#"{"version":1,"message_id":"0e4b1f52-8c1d-4b7a-a3e9-6d2f5c8b9a10","timestamp":1767225600,"payload":{"type":"Acknowledgment","message_id":"48ff506c-5ee7-412d-95c9-7729ca758a49","status":"Failed"}}"#.into(),
        ),
        (
            encode::notification_with_id(1767225660, "5c3e2d1f-9a8b-4c7d-8e6f-1a2b3c4d5e6f", BLOB, Notification::Delivered),
            r#"{"version":1,"message_id":"5c3e2d1f-9a8b-4c7d-8e6f-1a2b3c4d5e6f","timestamp":1767225660,"payload":{"type":"Acknowledgment","message_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","status":"Delivered"}}"#.into(),
        ),
        (
            encode::notification_with_id(1767225660, "e", BLOB, Notification::ReceivedByRecipient),
            r#"{"version":1,"message_id":"e","timestamp":1767225660,"payload":{"type":"Acknowledgment","message_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","status":"ReceivedByRecipient"}}"#.into(),
        ),
        (
            encode::error_with_id(NOW, "e5d4c3b2-a1f0-4e9d-8c7b-6a5f4e3d2c1b", ErrorCode::RateLimited, Some(REQUEST), Some(1)),
            r#"{"version":1,"message_id":"e5d4c3b2-a1f0-4e9d-8c7b-6a5f4e3d2c1b","timestamp":1767225600,"payload":{"type":"Error","code":"rate_limited","reason":"rate limit exceeded","message_id":"48ff506c-5ee7-412d-95c9-7729ca758a49","retry_after_secs":1}}"#.into(),
        ),
        (
            encode::error_with_id(NOW, "e", ErrorCode::MalformedFrame, None, None),
            format!(
                r#"{{"version":1,"message_id":"e","timestamp":1767225600,"payload":{{"type":"Error","code":"malformed_frame","reason":"{}","message_id":null}}}}"#,
                ErrorCode::MalformedFrame.reason()
            ),
        ),
        (
            encode::encrypted_update(1767225660, BLOB, &id(B), &[1, 2, 3]),
            r#"{"version":1,"message_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","timestamp":1767225660,"payload":{"type":"EncryptedUpdate","recipient_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","ciphertext":[1,2,3]}}"#.into(),
        ),
        (
            encode::encrypted_update(NOW, BLOB, &id(&B.to_uppercase()), &[]),
            format!(r#"{{"version":1,"message_id":"{BLOB}","timestamp":1767225600,"payload":{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[]}}}}"#),
        ),
        (
            encode::device_sync_message(1767225700, "35618a1a-23c5-4583-8bf9-508015ad6889", &id(B), &id(TARGET), DEVICE, &[9, 8, 7], 12),
            r#"{"version":1,"message_id":"35618a1a-23c5-4583-8bf9-508015ad6889","timestamp":1767225700,"payload":{"type":"DeviceSyncMessage","identity_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","target_device_id":"6b8550e905f742f37404fb8317caca94ffecb000c0a96c5c040fe85e0705cfae","sender_device_id":"e22f9a018051dff57acb7463844564c7ace1e00fd315972863c9bcf41a09ccec","encrypted_payload":[9,8,7],"version":12}}"#.into(),
        ),
        (
            encode::recovery_proof_response(NOW, "9e8d7c6b-5a4f-4e3d-a2c1-b0a9f8e7d6c5", &[(id(KEY_HASH), &[5, 6, 7][..])]),
            r#"{"version":1,"message_id":"9e8d7c6b-5a4f-4e3d-a2c1-b0a9f8e7d6c5","timestamp":1767225600,"payload":{"type":"RecoveryProofResponse","proofs":[{"key_hash":"4ba705c25362ebd6b2ade2c57108919a1d88a537dd7d0b698f6f412b43df50b5","proof_data":[5,6,7]}]}}"#.into(),
        ),
        (
            encode::recovery_proof_response(NOW, "q", &[(id(KEY_HASH), &[][..]), (id(A), &[255, 0][..])]),
            format!(r#"{{"version":1,"message_id":"q","timestamp":1767225600,"payload":{{"type":"RecoveryProofResponse","proofs":[{{"key_hash":"{KEY_HASH}","proof_data":[]}},{{"key_hash":"{A}","proof_data":[255,0]}}]}}}}"#),
        ),
        (
            encode::recovery_proof_response(NOW, "q", &[]),
            r#"{"version":1,"message_id":"q","timestamp":1767225600,"payload":{"type":"RecoveryProofResponse","proofs":[]}}"#.into(),
        ),
        (
            encode::purge_response(NOW, "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9", 3, 1, 1),
            r#"{"version":1,"message_id":"1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9","timestamp":1767225600,"payload":{"type":"PurgeResponse","blobs_deleted":3,"device_sync_deleted":1,"recovery_proofs_deleted":1}}"#.into(),
        ),
        (
            encode::forwarding_hints_with_id(NOW, "3c4d5e6f-7a8b-4c9d-ae0f-1a2b3c4d5e6f", &[(BLOB, "ws://relay-b.example:8080", 1775001600)]),
            r#"{"version":1,"message_id":"3c4d5e6f-7a8b-4c9d-ae0f-1a2b3c4d5e6f","timestamp":1767225600,"payload":{"type":"ForwardingHints","hints":[{"blob_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","relay_url":"ws://relay-b.example:8080","expires_at_secs":1775001600}]}}"#.into(),
        ),
        (
            encode::forwarding_hints_with_id(NOW, "h", &[("b1", "ws://x", 1), ("b2", "ws://y", 2)]),
            r#"{"version":1,"message_id":"h","timestamp":1767225600,"payload":{"type":"ForwardingHints","hints":[{"blob_id":"b1","relay_url":"ws://x","expires_at_secs":1},{"blob_id":"b2","relay_url":"ws://y","expires_at_secs":2}]}}"#.into(),
        ),
        (
            encode::account_revoked_blob(1, "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d", NOW, A, B, NOW, &[17, 34]),
            r#"{"version":1,"message_id":"6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d","timestamp":1767225600,"payload":{"type":"AccountRevoked","sender_id":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a","recipient_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","timestamp":1767225600,"signature":[17,34]}}"#.into(),
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(text(&frame), expected);
    }
}

#[test]
fn account_revoked_blob_starts_as_section_5_12_shows() {
    // §5.12 shows the stored frame as `"ciphertext":[0,0,1,50,123,34,...]` only as an
    // illustration: its own example request rebuilds to 328 (0x148) JSON bytes.
    let blob = encode::account_revoked_blob(
        1,
        "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d",
        NOW,
        A,
        B,
        NOW,
        &[17, 34],
    );
    assert_eq!(&blob[..6], &[0, 0, 1, 0x48, b'{', b'"']);
    assert_eq!(blob.len(), 4 + 328);
    // The request's own values are kept as received: any version, upper-case recipient.
    let blob = encode::account_revoked_blob(7, "m", 5, "s", &B.to_uppercase(), u64::MAX, &[]);
    let expected = format!(
        r#"{{"version":7,"message_id":"m","timestamp":5,"payload":{{"type":"AccountRevoked","sender_id":"s","recipient_id":"{}","timestamp":18446744073709551615,"signature":[]}}}}"#,
        B.to_uppercase()
    );
    assert_eq!(text(&blob), expected);
}

/// §15.1: a Noise session's HandshakeAck is the plain one with `"noise_nk"`
/// appended to its features, and nothing else changed.
#[test]
fn noise_handshake_ack_appends_noise_nk() {
    let plain = parse(&encode::handshake_ack(NOW));
    let noise = parse(&encode::noise_handshake_ack(NOW));
    let mut features = plain["payload"]["features"].as_array().unwrap().clone();
    assert_eq!(features.len(), 10);
    features.push("noise_nk".into());
    assert_eq!(
        noise["payload"]["features"],
        serde_json::Value::Array(features)
    );
    let mut expected = plain.clone();
    expected["payload"]["features"] = noise["payload"]["features"].clone();
    expected["message_id"] = noise["message_id"].clone();
    assert_eq!(noise, expected);
    assert!(is_uuid_v4(noise["message_id"].as_str().unwrap()));
}

#[test]
fn new_envelope_ids_are_fresh_uuid_v4() {
    let frames = [
        encode::handshake_ack(NOW),
        encode::stored_ack(NOW, REQUEST, Some(BLOB)),
        encode::failed_ack(NOW, REQUEST),
        encode::notification(NOW, BLOB, Notification::Delivered),
        encode::error(NOW, ErrorCode::Overloaded, Some(REQUEST), Some(1)),
        encode::forwarding_hints(NOW, &[(BLOB, "ws://x", 1)]),
    ];
    let mut seen = std::collections::HashSet::new();
    for frame in &frames {
        let value = parse(frame);
        let message_id = value["message_id"]
            .as_str()
            .expect("message_id is a string");
        assert!(is_uuid_v4(message_id), "{message_id}");
        assert!(seen.insert(message_id.to_owned()), "ids must differ");
        assert_eq!(value["version"], 1);
        assert_eq!(value["timestamp"], NOW);
    }
    let second = parse(&encode::handshake_ack(NOW));
    assert!(!seen.contains(second["message_id"].as_str().expect("string")));
}

#[test]
fn strings_are_escaped_exactly_like_serde_json() {
    let mut odd: Vec<String> = vec![
        String::new(),
        "\"".into(),
        "\\".into(),
        "a\"b\\c".into(),
        "\u{7f}\u{80}é\u{2028}\u{2029}\u{fffd}😀".into(),
        "</script>".into(),
        "\"},\"type\":\"x".into(),
    ];
    odd.push((0u8..0x20).map(char::from).collect());
    for message_id in &odd {
        let escaped = serde_json::to_string(message_id).expect("serde_json escapes");
        let frame =
            encode::error_with_id(NOW, "e", ErrorCode::InvalidField, Some(message_id), None);
        let expected = format!(
            r#"{{"version":1,"message_id":"e","timestamp":1767225600,"payload":{{"type":"Error","code":"invalid_field","reason":"{}","message_id":{escaped}}}}}"#,
            ErrorCode::InvalidField.reason()
        );
        assert_eq!(text(&frame), expected, "{message_id:?}");
        assert_eq!(parse(&frame)["payload"]["message_id"], message_id.as_str());
        // Echoed ids round-trip through every echoing message.
        for frame in [
            encode::stored_ack(NOW, message_id, Some(message_id)),
            encode::failed_ack(NOW, message_id),
            encode::purge_response(NOW, message_id, 0, 0, 0),
            encode::recovery_proof_response(NOW, message_id, &[]),
        ] {
            let value = parse(&frame);
            let echoed = value["payload"]["message_id"]
                .as_str()
                .or(value["message_id"].as_str());
            assert_eq!(echoed, Some(message_id.as_str()));
        }
        let value = parse(&encode::account_revoked_blob(
            1,
            message_id,
            1,
            message_id,
            message_id,
            1,
            &[],
        ));
        assert_eq!(value["message_id"], message_id.as_str());
        assert_eq!(value["payload"]["sender_id"], message_id.as_str());
        assert_eq!(value["payload"]["recipient_id"], message_id.as_str());
        let value = parse(&encode::device_sync_message(
            1,
            message_id,
            &id(A),
            &id(B),
            message_id,
            &[],
            0,
        ));
        assert_eq!(value["message_id"], message_id.as_str());
        assert_eq!(value["payload"]["sender_device_id"], message_id.as_str());
    }
}

#[test]
fn integers_and_bytes_are_written_exactly() {
    let numbers = [
        0,
        1,
        9,
        10,
        99,
        100,
        255,
        256,
        999_999,
        1_000_000,
        u32::MAX as u64,
        10u64.pow(19),
        u64::MAX,
    ];
    for number in numbers {
        let frame = encode::purge_response(number, "m", number, number, number);
        let value = parse(&frame);
        assert_eq!(value["timestamp"].as_u64(), Some(number));
        assert_eq!(value["payload"]["blobs_deleted"].as_u64(), Some(number));
        assert!(text(&frame).contains(&format!(r#""recovery_proofs_deleted":{number}}}"#)));
        let frame = encode::error_with_id(1, "e", ErrorCode::RateLimited, None, Some(number));
        assert_eq!(
            parse(&frame)["payload"]["retry_after_secs"].as_u64(),
            Some(number)
        );
        let frame = encode::device_sync_message(number, "s", &id(A), &id(B), "d", &[], number);
        assert_eq!(parse(&frame)["payload"]["version"].as_u64(), Some(number));
    }
    let every_byte: Vec<u8> = (0..=255).collect();
    let frame = encode::encrypted_update(NOW, BLOB, &id(B), &every_byte);
    let expected: Vec<String> = every_byte.iter().map(u8::to_string).collect();
    assert!(text(&frame).contains(&format!(r#""ciphertext":[{}]}}"#, expected.join(","))));
}

#[test]
fn encoded_requests_round_trip_through_decode() {
    // The S→C forms of EncryptedUpdate and DeviceSyncMessage, and the rebuilt
    // AccountRevoked frame, are also valid C→S requests.
    let ciphertext: Vec<u8> = (0..200).map(|index| (index * 7 % 256) as u8).collect();
    let cases = [
        (
            encode::encrypted_update(NOW, BLOB, &id(B), &ciphertext),
            Request::EncryptedUpdate {
                recipient_id: B.into(),
                ciphertext: ciphertext.clone(),
            },
        ),
        (
            encode::device_sync_message(NOW, "s", &id(A), &id(TARGET), "dev\"ice", &[1], 3),
            Request::DeviceSyncMessage {
                identity_id: A.into(),
                target_device_id: TARGET.into(),
                sender_device_id: "dev\"ice".into(),
                encrypted_payload: vec![1],
                version: 3,
            },
        ),
        (
            encode::account_revoked_blob(1, "m\n", NOW, "se\\nder", B, 42, &[17, 34]),
            Request::AccountRevoked {
                sender_id: "se\\nder".into(),
                recipient_id: B.into(),
                timestamp: 42,
                signature: vec![17, 34],
            },
        ),
    ];
    for (frame, expected) in cases {
        let envelope = decode_envelope(&frame).expect("encoded frames decode");
        assert_eq!(envelope.version, 1);
        assert_eq!(decode_request(&envelope), Ok(expected));
    }
    // Every other frame is a well-formed envelope too.
    let frames = [
        encode::handshake_ack(NOW),
        encode::stored_ack(NOW, REQUEST, None),
        encode::failed_ack(NOW, REQUEST),
        encode::notification(NOW, BLOB, Notification::ReceivedByRecipient),
        encode::error(NOW, ErrorCode::StorageUnavailable, None, None),
        encode::recovery_proof_response(NOW, REQUEST, &[(id(KEY_HASH), &[1][..])]),
        encode::purge_response(NOW, REQUEST, 1, 2, 3),
        encode::forwarding_hints(NOW, &[]),
    ];
    for frame in frames {
        let envelope = decode_envelope(&frame).expect("encoded frames decode");
        assert_eq!(envelope.timestamp, NOW);
    }
}

#[test]
fn every_error_code_encodes_with_its_reason() {
    let codes = [
        ErrorCode::MalformedFrame,
        ErrorCode::UnsupportedFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownType,
        ErrorCode::UnexpectedMessage,
        ErrorCode::InvalidField,
        ErrorCode::NotPermitted,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::StorageUnavailable,
        ErrorCode::Overloaded,
    ];
    for code in codes {
        let value = parse(&encode::error(NOW, code, Some("m"), None));
        assert_eq!(value["payload"]["type"], "Error");
        assert_eq!(value["payload"]["code"], code.as_str());
        assert_eq!(value["payload"]["reason"], code.reason());
        assert_eq!(value["payload"]["message_id"], "m");
        assert!(value["payload"].get("retry_after_secs").is_none());
    }
}
