//! Decoding of client frames: prefix (PROTOCOL.md §3.1), envelope (§3.2), Handshake
//! acceptance (§4.2, §4.3 step 1), request shapes (§3.6 steps 7-8) and values (step 10).

use vauchi_relay::protocol::decode::{
    AckStatus, Envelope, Handshake, HandshakeAuth, Malformed, Request, ShapeError, ValidRequest,
    ValueError, decode_envelope, decode_handshake, decode_request, validate,
};
use vauchi_relay::protocol::{CloseReason, Id64};

const A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const B: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const DEVICE: &str = "e22f9a018051dff57acb7463844564c7ace1e00fd315972863c9bcf41a09ccec";
const TARGET: &str = "6b8550e905f742f37404fb8317caca94ffecb000c0a96c5c040fe85e0705cfae";
const KEY_HASH: &str = "4ba705c25362ebd6b2ade2c57108919a1d88a537dd7d0b698f6f412b43df50b5";
const NONCE: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SIGNATURE: &str = "ba60e1debfee7a5fa58161f2224e26671a39ed105deefae3adc97603c469bae8f20690af899d5bb9f3c40d01ed842cb6d4e066bebd899862100c485cc31f320a";

const A1_JSON: &str = r#"{"version":1,"message_id":"48ff506c-5ee7-412d-95c9-7729ca758a49","timestamp":1767225600,"payload":{"type":"Acknowledgment","message_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","status":"ReceivedByRecipient"}}"#;

/// The binary message for `json`: exact prefix, then the text.
fn frame(json: &str) -> Vec<u8> {
    let mut message = (json.len() as u32).to_be_bytes().to_vec();
    message.extend_from_slice(json.as_bytes());
    message
}

/// A version-1 envelope around `payload`.
fn wrap(payload: &str) -> Vec<u8> {
    frame(&format!(
        r#"{{"version":1,"message_id":"m","timestamp":1767225600,"payload":{payload}}}"#
    ))
}

fn id(text: &str) -> Id64 {
    Id64::parse(text).expect("test id is 64-hex")
}

// ---- §3.1, §3.2: frame and envelope -------------------------------------------------

#[test]
fn appendix_a1_frame_decodes() {
    let message = frame(A1_JSON);
    assert_eq!(message.len(), 211);
    assert_eq!(&message[..6], &[0x00, 0x00, 0x00, 0xcf, 0x7b, 0x22]);
    let envelope = decode_envelope(&message).expect("A.1 decodes");
    assert_eq!(envelope.version, 1);
    assert_eq!(envelope.message_id, "48ff506c-5ee7-412d-95c9-7729ca758a49");
    assert_eq!(envelope.timestamp, 1767225600);
    assert_eq!(envelope.payload_type, "Acknowledgment");
    assert_eq!(
        envelope.payload,
        r#"{"type":"Acknowledgment","message_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","status":"ReceivedByRecipient"}"#
    );
}

#[test]
fn appendix_a1_wrong_prefix_is_malformed() {
    let mut message = frame(A1_JSON);
    message[3] = 0xce;
    assert_eq!(
        decode_envelope(&message).unwrap_err(),
        Malformed { message_id: None }
    );
    // One byte too long behind the right prefix is malformed too.
    let mut message = frame(A1_JSON);
    message.push(b' ');
    assert!(decode_envelope(&message).is_err());
}

#[test]
fn short_or_non_utf8_messages_are_malformed() {
    let cases: &[&[u8]] = &[
        &[],
        &[0],
        &[0, 0, 0],
        &[0, 0, 0, 0],
        &[0, 0, 0, 1],
        &[0, 0, 0, 1, 0xff],
        &[0, 0, 0, 2, 0xc3, 0x28],
        &[0xff, 0xff, 0xff, 0xff, b'{', b'}'],
    ];
    for case in cases {
        assert_eq!(
            decode_envelope(case).unwrap_err(),
            Malformed { message_id: None },
            "{case:?}"
        );
    }
    // A byte-order mark is not JSON.
    let message = frame(&format!("\u{feff}{A1_JSON}"));
    assert!(decode_envelope(&message).is_err());
}

#[test]
fn malformed_envelopes_table() {
    let some = Some("m");
    // (JSON text, the message_id that can still be read)
    let cases: &[(&str, Option<&str>)] = &[
        ("", None),
        ("{", None),
        ("null", None),
        ("1", None),
        (r#""m""#, None),
        (r#"[1,"m",1767225600,{"type":"EncryptedUpdate"}]"#, None),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":{"type":"X"}"#,
            None,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":{"type":"X"}} x"#,
            None,
        ),
        // Missing members.
        (
            r#"{"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1,"timestamp":1,"payload":{"type":"X"}}"#,
            None,
        ),
        (
            r#"{"version":1,"message_id":"m","payload":{"type":"X"}}"#,
            some,
        ),
        (r#"{"version":1,"message_id":"m","timestamp":1}"#, some),
        // version: only non-negative integers.
        (
            r#"{"version":-1,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1.0,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1.5,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1e0,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":-0,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":"1","message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":true,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":null,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":[1],"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        // message_id: a string.
        (
            r#"{"version":1,"message_id":5,"timestamp":1,"payload":{"type":"X"}}"#,
            None,
        ),
        (
            r#"{"version":1,"message_id":null,"timestamp":1,"payload":{"type":"X"}}"#,
            None,
        ),
        // timestamp: u64.
        (
            r#"{"version":1,"message_id":"m","timestamp":-1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1.5,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":"1","payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":null,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":18446744073709551616,"payload":{"type":"X"}}"#,
            some,
        ),
        // payload: an object with a string "type".
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":null}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":"X"}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":["X"]}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":{}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":{"type":5}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":{"type":null}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":{"Type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":{"type":"X","type":"Y"}}"#,
            some,
        ),
        // Repeated envelope members.
        (
            r#"{"version":1,"version":1,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            None,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"timestamp":1,"payload":{"type":"X"}}"#,
            some,
        ),
        (
            r#"{"version":1,"message_id":"m","timestamp":1,"payload":{"type":"X"},"payload":{"type":"X"}}"#,
            some,
        ),
    ];
    for (json, message_id) in cases {
        assert_eq!(
            decode_envelope(&frame(json)).unwrap_err(),
            Malformed {
                message_id: message_id.map(str::to_owned)
            },
            "{json}"
        );
    }
}

#[test]
fn envelope_accepts_any_version_unknown_members_and_whitespace() {
    let cases: &[(&str, u64)] = &[
        (
            r#"{"version":0,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            0,
        ),
        (
            r#"{"version":2,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            2,
        ),
        (
            r#"{"version":255,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            255,
        ),
        (
            r#"{"version":18446744073709551615,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#,
            u64::MAX,
        ),
        (
            r#" { "extra" : [1, {"a":null}] , "version" : 1 , "message_id" : "m" , "timestamp" : 1 , "payload" : { "type" : "X" , "y" : 2 } } "#,
            1,
        ),
    ];
    for (json, version) in cases {
        let message = frame(json);
        let envelope = decode_envelope(&message).expect(json);
        assert_eq!(envelope.version, *version, "{json}");
        assert_eq!(envelope.message_id, "m");
        assert_eq!(envelope.payload_type, "X");
        assert!(envelope.payload.starts_with('{') && envelope.payload.ends_with('}'));
    }
    // An integer too large for u64 is still a non-negative integer: it is a version
    // other than 1, not a malformed frame.
    let json = r#"{"version":99999999999999999999999,"message_id":"m","timestamp":1,"payload":{"type":"X"}}"#;
    let message = frame(json);
    let envelope = decode_envelope(&message).expect("huge version decodes");
    assert_ne!(envelope.version, 1);
}

#[test]
fn envelope_strings_are_unescaped() {
    let json = r#"{"version":1,"message_id":"a\"b\\c\u00e9\n\ud83d\ude00","timestamp":1,"payload":{"type":"Enc\u0072yptedUpdate"}}"#;
    let message = frame(json);
    let envelope = decode_envelope(&message).expect("escaped strings decode");
    assert_eq!(envelope.message_id, "a\"b\\c\u{e9}\n\u{1f600}");
    assert_eq!(envelope.payload_type, "EncryptedUpdate");
}

// ---- §4.2, §4.3 step 1: Handshake ----------------------------------------------------

fn handshake_frame(fields: &str) -> Vec<u8> {
    wrap(&format!(r#"{{"type":"Handshake",{fields}}}"#))
}

#[test]
fn section_5_1_examples_are_accepted() {
    let b = r#"{"version":1,"message_id":"m-b-1","timestamp":1767225600,"payload":{"type":"Handshake","client_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","device_id":"e22f9a018051dff57acb7463844564c7ace1e00fd315972863c9bcf41a09ccec","suppress_presence":false}}"#;
    assert_eq!(
        decode_handshake(&frame(b)),
        Ok(Handshake {
            client_id: id(B),
            device_id: Some(id(DEVICE)),
            routing_token: None,
            suppress_presence: false,
            auth: None,
        })
    );
    let a = format!(
        r#"{{"version":1,"message_id":"m-a-1","timestamp":1767225600,"payload":{{"type":"Handshake","client_id":"{A}","identity_public_key":"{A}","nonce":"{NONCE}","signature":"{SIGNATURE}","timestamp":1767225600}}}}"#
    );
    let mut nonce = [0u8; 32];
    for (index, byte) in nonce.iter_mut().enumerate() {
        *byte = index as u8;
    }
    let mut signature = [0u8; 64];
    hex::decode_to_slice(SIGNATURE, &mut signature).expect("vector signature");
    let handshake = decode_handshake(&frame(&a)).expect("A.3 handshake decodes");
    assert_eq!(handshake.client_id, id(A));
    assert_eq!(handshake.routing_id(), id(A));
    assert_eq!(
        handshake.auth,
        Some(HandshakeAuth {
            identity_public_key: id(A),
            nonce,
            signature,
            timestamp: 1767225600
        })
    );
}

#[test]
fn handshake_ids_are_canonical_and_optional_fields_default() {
    let upper_a = A.to_uppercase();
    let handshake = decode_handshake(&handshake_frame(&format!(
        r#""client_id":"{upper_a}","routing_token":"{}","device_id":null,"suppress_presence":true,"nonce":null"#,
        B.to_uppercase()
    )))
    .expect("decodes");
    assert_eq!(handshake.client_id, id(A));
    assert_eq!(handshake.routing_token, Some(id(B)));
    assert_eq!(handshake.routing_id(), id(B));
    assert_eq!(handshake.device_id, None);
    assert!(handshake.suppress_presence);

    let handshake = decode_handshake(&handshake_frame(&format!(
        r#""client_id":"{A}","suppress_presence":null,"x":[]"#
    )))
    .expect("decodes");
    assert!(!handshake.suppress_presence);
    assert_eq!(handshake.routing_token, None);

    // Authentication applies only when all four fields are given; three are ignored,
    // even when their formats are wrong.
    let handshake = decode_handshake(&handshake_frame(&format!(
        r#""client_id":"{A}","identity_public_key":"zz","nonce":"{NONCE}","signature":"{SIGNATURE}","timestamp":null"#
    )))
    .expect("decodes");
    assert_eq!(handshake.auth, None);

    // Either case is accepted for the authentication fields.
    let handshake = decode_handshake(&handshake_frame(&format!(
        r#""client_id":"{A}","identity_public_key":"{}","nonce":"{}","signature":"{}","timestamp":0"#,
        A.to_uppercase(),
        NONCE.to_uppercase(),
        SIGNATURE.to_uppercase()
    )))
    .expect("decodes");
    assert_eq!(
        handshake.auth.map(|auth| auth.identity_public_key),
        Some(id(A))
    );
}

/// §4.2 check 2: at least 51 bytes starting with `00 56 32`, nothing else.
#[test]
fn noise_openings_are_told_by_magic_and_length() {
    use vauchi_relay::protocol::decode::is_noise_opening;
    let mut noise = vec![0x00, 0x56, 0x32];
    noise.resize(51, 0xab);
    assert!(is_noise_opening(&noise));
    assert!(is_noise_opening(&[noise.clone(), vec![0; 100]].concat()));
    assert!(!is_noise_opening(&noise[..50]), "50 bytes");
    let mut other = noise.clone();
    other[2] = 0x31;
    assert!(!is_noise_opening(&other), "other magic");
    // A Noise opening wins even over a well-formed frame: the check comes first.
    let mut noise_frame = handshake_frame(&format!(r#""client_id":"{A}""#));
    noise_frame[..3].copy_from_slice(&[0x00, 0x56, 0x32]);
    assert!(is_noise_opening(&noise_frame));
    let plain = handshake_frame(&format!(r#""client_id":"{A}""#));
    assert!(!is_noise_opening(&plain));
}

#[test]
fn handshake_refusals_table() {
    use CloseReason::*;
    let mut noise = vec![0x00, 0x56, 0x32];
    noise.resize(51, 0xab);
    let short_noise = noise[..50].to_vec();
    let mut cases: Vec<(Vec<u8>, CloseReason, &str)> = vec![
        // A Noise opening is the caller's (§4.2 check 2); as a v1 frame it is
        // malformed.
        (noise, HandshakeRequired, "noise opening read as a frame"),
        (short_noise, HandshakeRequired, "50-byte noise-like opening"),
        (vec![], HandshakeRequired, "empty"),
        (frame("{}"), HandshakeRequired, "empty object"),
        (frame("not json"), HandshakeRequired, "not json"),
    ];
    // §4.2 check 4: version, checked before the type and the fields.
    for version in ["0", "2", "255", "99999999999999999999999"] {
        let json = format!(
            r#"{{"version":{version},"message_id":"m","timestamp":1,"payload":{{"type":"Handshake","client_id":"{A}"}}}}"#
        );
        cases.push((frame(&json), UnsupportedVersion, "version"));
    }
    let json =
        r#"{"version":2,"message_id":"m","timestamp":1,"payload":{"type":"Nope","client_id":5}}"#;
    cases.push((frame(json), UnsupportedVersion, "version before type"));
    let payloads: Vec<(String, CloseReason)> = vec![
        // check 5: type and field JSON types.
        (format!(r#"{{"type":"EncryptedUpdate","client_id":"{A}"}}"#), HandshakeRequired),
        (format!(r#"{{"type":"handshake","client_id":"{A}"}}"#), HandshakeRequired),
        (r#"{"type":"Handshake"}"#.into(), HandshakeRequired),
        (r#"{"type":"Handshake","client_id":null}"#.into(), HandshakeRequired),
        (r#"{"type":"Handshake","client_id":5}"#.into(), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":["{A}"]}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","client_id":"{A}"}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","device_id":5}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","routing_token":true}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","suppress_presence":"false"}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","suppress_presence":0}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","timestamp":-1}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","timestamp":"1"}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","nonce":5}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","signature":[1]}}"#), HandshakeRequired),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","identity_public_key":{{}}}}"#), HandshakeRequired),
        // A wrong JSON type is found before a bad id.
        (r#"{"type":"Handshake","client_id":"abc","suppress_presence":1}"#.into(), HandshakeRequired),
        // check 6: id formats.
        (r#"{"type":"Handshake","client_id":"abc"}"#.into(), InvalidHandshake),
        (format!(r#"{{"type":"Handshake","client_id":"{}"}}"#, &A[..63]), InvalidHandshake),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","device_id":""}}"#), InvalidHandshake),
        (format!(r#"{{"type":"Handshake","client_id":"{A}","routing_token":"{A}0"}}"#), InvalidHandshake),
        // A bad id is found before bad authentication fields.
        (
            r#"{"type":"Handshake","client_id":"abc","identity_public_key":"x","nonce":"x","signature":"x","timestamp":1}"#
                .into(),
            InvalidHandshake,
        ),
        // §4.3 step 1: authentication field formats.
        (
            format!(r#"{{"type":"Handshake","client_id":"{A}","identity_public_key":"{}","nonce":"{NONCE}","signature":"{SIGNATURE}","timestamp":1}}"#, &A[..62]),
            AuthenticationFailed,
        ),
        (
            format!(r#"{{"type":"Handshake","client_id":"{A}","identity_public_key":"{A}","nonce":"{}","signature":"{SIGNATURE}","timestamp":1}}"#, &NONCE[..62]),
            AuthenticationFailed,
        ),
        (
            format!(r#"{{"type":"Handshake","client_id":"{A}","identity_public_key":"{A}","nonce":"{}g","signature":"{SIGNATURE}","timestamp":1}}"#, &NONCE[..63]),
            AuthenticationFailed,
        ),
        (
            format!(r#"{{"type":"Handshake","client_id":"{A}","identity_public_key":"{A}","nonce":"{NONCE}","signature":"{}","timestamp":1}}"#, &SIGNATURE[..64]),
            AuthenticationFailed,
        ),
    ];
    for (message, expected, label) in cases {
        assert_eq!(decode_handshake(&message), Err(expected), "{label}");
    }
    for (payload, expected) in payloads {
        assert_eq!(
            decode_handshake(&wrap(&payload)),
            Err(expected),
            "{payload}"
        );
    }
}

// ---- §3.6 steps 7-8: request shapes --------------------------------------------------

fn request(payload: &str) -> Result<Request, ShapeError> {
    let message = wrap(payload);
    let envelope: Envelope<'_> = decode_envelope(&message).expect("test envelope decodes");
    decode_request(&envelope)
}

#[test]
fn section_5_examples_decode() {
    let cases: Vec<(String, Request)> = vec![
        (
            format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[1,2,3]}}"#),
            Request::EncryptedUpdate { recipient_id: B.into(), ciphertext: vec![1, 2, 3] },
        ),
        (
            r#"{"type":"Acknowledgment","message_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","status":"ReceivedByRecipient"}"#.into(),
            Request::Acknowledgment {
                message_id: "8f8b0be7-b5e1-4fd5-b45b-2a6939393c59".into(),
                status: "ReceivedByRecipient".into(),
            },
        ),
        (
            format!(r#"{{"type":"DeviceSyncMessage","identity_id":"{B}","target_device_id":"{TARGET}","sender_device_id":"{DEVICE}","encrypted_payload":[9,8,7],"version":12}}"#),
            Request::DeviceSyncMessage {
                identity_id: B.into(),
                target_device_id: TARGET.into(),
                sender_device_id: DEVICE.into(),
                encrypted_payload: vec![9, 8, 7],
                version: 12,
            },
        ),
        (
            r#"{"type":"DeviceSyncAck","message_id":"35618a1a-23c5-4583-8bf9-508015ad6889","synced_version":12}"#.into(),
            Request::DeviceSyncAck {
                message_id: "35618a1a-23c5-4583-8bf9-508015ad6889".into(),
                synced_version: 12,
            },
        ),
        (
            format!(r#"{{"type":"RecoveryProofStore","key_hash":"{KEY_HASH}","proof_data":[5,6,7]}}"#),
            Request::RecoveryProofStore { key_hash: KEY_HASH.into(), proof_data: vec![5, 6, 7] },
        ),
        (
            format!(r#"{{"type":"RecoveryProofQuery","key_hashes":["{KEY_HASH}"]}}"#),
            Request::RecoveryProofQuery { key_hashes: vec![KEY_HASH.into()] },
        ),
        (
            format!(r#"{{"type":"PurgeRequest","include_device_sync":true,"include_recovery_proofs":true,"recovery_key_hash":"{KEY_HASH}"}}"#),
            Request::PurgeRequest {
                include_device_sync: true,
                include_recovery_proofs: true,
                recovery_key_hash: Some(KEY_HASH.into()),
            },
        ),
        (
            format!(r#"{{"type":"AccountRevoked","sender_id":"{A}","recipient_id":"{B}","timestamp":1767225600,"signature":[17,34]}}"#),
            Request::AccountRevoked {
                sender_id: A.into(),
                recipient_id: B.into(),
                timestamp: 1767225600,
                signature: vec![17, 34],
            },
        ),
        // Optional fields: absent and null mean "not given"; unknown fields are ignored.
        (
            r#"{"type":"PurgeRequest"}"#.into(),
            Request::PurgeRequest {
                include_device_sync: false,
                include_recovery_proofs: false,
                recovery_key_hash: None,
            },
        ),
        (
            r#"{"type":"PurgeRequest","include_device_sync":null,"include_recovery_proofs":null,"recovery_key_hash":null,"zz":1}"#.into(),
            Request::PurgeRequest {
                include_device_sync: false,
                include_recovery_proofs: false,
                recovery_key_hash: None,
            },
        ),
        (
            format!(r#"{{"sender_id":"someone","ciphertext":[],"recipient_id":"{B}","type":"EncryptedUpdate","extra":{{"a":[1,2]}}}}"#),
            Request::EncryptedUpdate { recipient_id: B.into(), ciphertext: vec![] },
        ),
        (
            r#"{"type":"EncryptedUpdate","recipient_id":"x","ciphertext":[0,255,128]}"#.into(),
            Request::EncryptedUpdate { recipient_id: "x".into(), ciphertext: vec![0, 255, 128] },
        ),
        (
            r#"{"type":"RecoveryProofQuery","key_hashes":[]}"#.into(),
            Request::RecoveryProofQuery { key_hashes: vec![] },
        ),
    ];
    for (payload, expected) in cases {
        assert_eq!(request(&payload), Ok(expected), "{payload}");
    }
}

#[test]
fn type_classification_table() {
    for kind in [
        "Handshake",
        "HandshakeAck",
        "PurgeResponse",
        "RecoveryProofResponse",
        "ForwardingHints",
        "Error",
    ] {
        let payload = format!(r#"{{"type":"{kind}","client_id":"{A}"}}"#);
        assert_eq!(
            request(&payload),
            Err(ShapeError::UnexpectedMessage),
            "{kind}"
        );
    }
    for kind in [
        "",
        "Foo",
        "encryptedupdate",
        "EncryptedUpdate ",
        "OffloadBlob",
        "Ping",
    ] {
        let payload = format!(r#"{{"type":"{kind}"}}"#);
        assert_eq!(request(&payload), Err(ShapeError::UnknownType), "{kind:?}");
    }
}

#[test]
fn invalid_field_shapes_table() {
    let cases: Vec<String> = vec![
        // Missing required fields.
        r#"{"type":"EncryptedUpdate","ciphertext":[1]}"#.into(),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}"}}"#),
        r#"{"type":"Acknowledgment","status":"Stored"}"#.into(),
        r#"{"type":"Acknowledgment","message_id":"x"}"#.into(),
        format!(
            r#"{{"type":"DeviceSyncMessage","identity_id":"{B}","target_device_id":"{TARGET}","sender_device_id":"d","encrypted_payload":[]}}"#
        ),
        r#"{"type":"DeviceSyncAck","message_id":"x"}"#.into(),
        r#"{"type":"RecoveryProofStore","key_hash":"x"}"#.into(),
        r#"{"type":"RecoveryProofQuery"}"#.into(),
        format!(
            r#"{{"type":"AccountRevoked","sender_id":"s","recipient_id":"{B}","signature":[]}}"#
        ),
        // Required field null.
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":null,"ciphertext":[1]}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":null}}"#),
        r#"{"type":"RecoveryProofQuery","key_hashes":null}"#.into(),
        // Wrong JSON types.
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":5,"ciphertext":[1]}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":"AQID"}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":"010203"}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":{{}}}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[256]}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[-1]}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[1.5]}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[1.0]}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":["1"]}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[null]}}"#),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[[1]]}}"#),
        r#"{"type":"Acknowledgment","message_id":1,"status":"Stored"}"#.into(),
        r#"{"type":"Acknowledgment","message_id":"x","status":true}"#.into(),
        format!(
            r#"{{"type":"DeviceSyncMessage","identity_id":"{B}","target_device_id":"{TARGET}","sender_device_id":"d","encrypted_payload":[],"version":-1}}"#
        ),
        format!(
            r#"{{"type":"DeviceSyncMessage","identity_id":"{B}","target_device_id":"{TARGET}","sender_device_id":"d","encrypted_payload":[],"version":"12"}}"#
        ),
        format!(
            r#"{{"type":"DeviceSyncMessage","identity_id":"{B}","target_device_id":"{TARGET}","sender_device_id":7,"encrypted_payload":[],"version":1}}"#
        ),
        r#"{"type":"DeviceSyncAck","message_id":"x","synced_version":1.5}"#.into(),
        r#"{"type":"RecoveryProofStore","key_hash":"x","proof_data":[300]}"#.into(),
        r#"{"type":"RecoveryProofQuery","key_hashes":"x"}"#.into(),
        r#"{"type":"RecoveryProofQuery","key_hashes":["x",5]}"#.into(),
        r#"{"type":"RecoveryProofQuery","key_hashes":[null]}"#.into(),
        r#"{"type":"PurgeRequest","include_device_sync":"true"}"#.into(),
        r#"{"type":"PurgeRequest","include_recovery_proofs":1}"#.into(),
        r#"{"type":"PurgeRequest","recovery_key_hash":5}"#.into(),
        format!(
            r#"{{"type":"AccountRevoked","sender_id":"s","recipient_id":"{B}","timestamp":18446744073709551616,"signature":[]}}"#
        ),
        format!(
            r#"{{"type":"AccountRevoked","sender_id":["s"],"recipient_id":"{B}","timestamp":1,"signature":[]}}"#
        ),
        format!(
            r#"{{"type":"AccountRevoked","sender_id":"s","recipient_id":"{B}","timestamp":1,"signature":"ab"}}"#
        ),
        // Repeated known fields.
        format!(
            r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","recipient_id":"{B}","ciphertext":[1]}}"#
        ),
        format!(
            r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[1],"ciphertext":[2]}}"#
        ),
        r#"{"type":"Acknowledgment","message_id":"x","status":"Stored","status":"Failed"}"#.into(),
        r#"{"type":"PurgeRequest","include_device_sync":true,"include_device_sync":true}"#.into(),
        r#"{"type":"PurgeRequest","recovery_key_hash":null,"recovery_key_hash":null}"#.into(),
    ];
    for payload in cases {
        assert_eq!(
            request(&payload),
            Err(ShapeError::InvalidField),
            "{payload}"
        );
    }
}

// ---- §3.6 step 10: values -----------------------------------------------------------

#[test]
fn valid_values_are_canonicalised() {
    let upper_b = B.to_uppercase();
    let cases: Vec<(Request, ValidRequest)> = vec![
        (
            Request::EncryptedUpdate {
                recipient_id: upper_b.clone(),
                ciphertext: vec![1],
            },
            ValidRequest::EncryptedUpdate {
                recipient_id: id(B),
                ciphertext: vec![1],
            },
        ),
        (
            Request::Acknowledgment {
                message_id: "Blob".into(),
                status: "Delivered".into(),
            },
            ValidRequest::Acknowledgment {
                blob_id: "Blob".into(),
                status: AckStatus::Delivered,
            },
        ),
        (
            Request::DeviceSyncMessage {
                identity_id: upper_b.clone(),
                target_device_id: TARGET.to_uppercase(),
                sender_device_id: "é".repeat(128),
                encrypted_payload: vec![9],
                version: 3,
            },
            ValidRequest::DeviceSyncMessage {
                identity_id: id(B),
                target_device_id: id(TARGET),
                sender_device_id: "é".repeat(128),
                encrypted_payload: vec![9],
                version: 3,
            },
        ),
        (
            Request::DeviceSyncAck {
                message_id: "m".into(),
                synced_version: 4,
            },
            ValidRequest::DeviceSyncAck {
                message_id: "m".into(),
                synced_version: 4,
            },
        ),
        (
            Request::RecoveryProofStore {
                key_hash: KEY_HASH.to_uppercase(),
                proof_data: vec![],
            },
            ValidRequest::RecoveryProofStore {
                key_hash: id(KEY_HASH),
                proof_data: vec![],
            },
        ),
        (
            Request::RecoveryProofQuery {
                key_hashes: vec![
                    "x".into(),
                    KEY_HASH.into(),
                    B.to_uppercase(),
                    KEY_HASH.into(),
                    format!("{KEY_HASH}0"),
                ],
            },
            ValidRequest::RecoveryProofQuery {
                key_hashes: vec![id(KEY_HASH), id(B), id(KEY_HASH)],
            },
        ),
        (
            Request::RecoveryProofQuery {
                key_hashes: vec![KEY_HASH.into(); 100],
            },
            ValidRequest::RecoveryProofQuery {
                key_hashes: vec![id(KEY_HASH); 100],
            },
        ),
        (
            Request::PurgeRequest {
                include_device_sync: true,
                include_recovery_proofs: false,
                recovery_key_hash: Some(KEY_HASH.to_uppercase()),
            },
            ValidRequest::PurgeRequest {
                include_device_sync: true,
                include_recovery_proofs: false,
                recovery_key_hash: Some(id(KEY_HASH)),
            },
        ),
        (
            Request::PurgeRequest {
                include_device_sync: false,
                include_recovery_proofs: true,
                recovery_key_hash: None,
            },
            ValidRequest::PurgeRequest {
                include_device_sync: false,
                include_recovery_proofs: true,
                recovery_key_hash: None,
            },
        ),
        (
            Request::AccountRevoked {
                sender_id: "s".repeat(256),
                recipient_id: upper_b,
                timestamp: 9,
                signature: vec![7; 1024],
            },
            ValidRequest::AccountRevoked {
                sender_id: "s".repeat(256),
                recipient_id: id(B),
                timestamp: 9,
                signature: vec![7; 1024],
            },
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(validate(request.clone()), Ok(expected), "{request:?}");
    }
    for (text, status) in [
        ("Stored", AckStatus::Stored),
        ("Delivered", AckStatus::Delivered),
        ("ReceivedByRecipient", AckStatus::ReceivedByRecipient),
        ("Failed", AckStatus::Failed),
    ] {
        let request = Request::Acknowledgment {
            message_id: "b".into(),
            status: text.into(),
        };
        assert_eq!(
            validate(request),
            Ok(ValidRequest::Acknowledgment {
                blob_id: "b".into(),
                status
            })
        );
    }
}

#[test]
fn invalid_values_table() {
    use ValueError::*;
    let sync = |identity: &str, target: &str, sender: String| Request::DeviceSyncMessage {
        identity_id: identity.into(),
        target_device_id: target.into(),
        sender_device_id: sender,
        encrypted_payload: vec![],
        version: 1,
    };
    let revoked =
        |sender: String, recipient: &str, signature_bytes: usize| Request::AccountRevoked {
            sender_id: sender,
            recipient_id: recipient.into(),
            timestamp: 1,
            signature: vec![0; signature_bytes],
        };
    let cases: Vec<(Request, ValueError)> = vec![
        (
            Request::EncryptedUpdate {
                recipient_id: "x".into(),
                ciphertext: vec![],
            },
            InvalidField,
        ),
        (
            Request::EncryptedUpdate {
                recipient_id: format!(" {B}"),
                ciphertext: vec![],
            },
            InvalidField,
        ),
        (
            Request::Acknowledgment {
                message_id: "b".into(),
                status: "stored".into(),
            },
            InvalidField,
        ),
        (
            Request::Acknowledgment {
                message_id: "b".into(),
                status: "".into(),
            },
            InvalidField,
        ),
        (
            Request::Acknowledgment {
                message_id: "b".into(),
                status: "Stored ".into(),
            },
            InvalidField,
        ),
        (sync("x", TARGET, "d".into()), InvalidField),
        (sync(B, "x", "d".into()), InvalidField),
        (sync(B, TARGET, "d".repeat(257)), InvalidField),
        // 256 characters but 257 bytes.
        (
            sync(B, TARGET, format!("{}é", "d".repeat(255))),
            InvalidField,
        ),
        (
            Request::RecoveryProofStore {
                key_hash: "x".into(),
                proof_data: vec![],
            },
            InvalidField,
        ),
        (
            Request::RecoveryProofQuery {
                key_hashes: vec![KEY_HASH.into(); 101],
            },
            InvalidField,
        ),
        // The bound counts entries as given, invalid ones included.
        (
            Request::RecoveryProofQuery {
                key_hashes: vec!["x".into(); 101],
            },
            InvalidField,
        ),
        (
            Request::PurgeRequest {
                include_device_sync: true,
                include_recovery_proofs: true,
                recovery_key_hash: Some("x".into()),
            },
            InvalidField,
        ),
        (revoked("s".repeat(257), B, 0), InvalidField),
        (revoked("s".into(), B, 1025), InvalidField),
        // Length limits are checked before the recipient.
        (revoked("s".repeat(257), "x", 0), InvalidField),
        (revoked("s".into(), "x", 1025), InvalidField),
        (revoked("s".into(), "x", 0), FailedAck),
        (revoked("s".into(), &B[..63], 1024), FailedAck),
    ];
    for (request, expected) in cases {
        assert_eq!(validate(request.clone()), Err(expected), "{request:?}");
    }
}

// ---- §3.3 bytes: the relay reads them exactly as serde reads a Vec<u8> --------------

/// One array element as JSON text: mostly integers near the u8 range, and every
/// other kind of JSON value a client could put there.
fn byte_element() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u32..300).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "-0", "-1", "0.0", "1.0", "1e2", "1E0", "-0.0", "255.5", "18446744073709551616",
            "null", "true", "\"1\"", "\"1,2\"", "[1]", "[1,2]", "{}", "{\"a\":1}", "[]",
        ])
        .prop_map(str::to_string),
    ]
}

proptest::proptest! {
    #[test]
    fn bytes_fields_read_as_serde_reads_vec_u8(
        elements in proptest::collection::vec(byte_element(), 0..40),
        spaces in proptest::collection::vec(proptest::sample::select(vec!["", " ", "\n", "\t ", "\r\n"]), 80),
    ) {
        // Elements with JSON whitespace around them and around the brackets.
        let mut array = format!("{}[", spaces[0]);
        for (i, element) in elements.iter().enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push_str(spaces[(2 * i + 1) % spaces.len()]);
            array.push_str(element);
            array.push_str(spaces[(2 * i + 2) % spaces.len()]);
        }
        array.push_str(spaces[79]);
        array.push(']');
        let expected = serde_json::from_str::<Vec<u8>>(&array).ok();
        let payload = format!(
            r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":{array}}}"#
        );
        let got = match request(&payload) {
            Ok(Request::EncryptedUpdate { ciphertext, .. }) => Some(ciphertext),
            Err(ShapeError::InvalidField) => None,
            other => panic!("unexpected {other:?} for {array}"),
        };
        proptest::prop_assert_eq!(got, expected, "{}", array);
    }
}

#[test]
fn bytes_edge_cases_follow_serde() {
    for (array, expected) in [
        ("[]", Some(vec![])),
        ("[ ]", Some(vec![])),
        ("[0,255]", Some(vec![0, 255])),
        ("[ 7 , 8 ]", Some(vec![7, 8])),
        ("[256]", None),
        ("[-0]", None),
        ("[\"1,2\"]", None),
    ] {
        assert_eq!(
            serde_json::from_str::<Vec<u8>>(array).ok(),
            expected.clone(),
            "serde on {array}"
        );
        let payload =
            format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":{array}}}"#);
        let got = match request(&payload) {
            Ok(Request::EncryptedUpdate { ciphertext, .. }) => Some(ciphertext),
            Err(ShapeError::InvalidField) => None,
            other => panic!("unexpected {other:?} for {array}"),
        };
        assert_eq!(got, expected, "{array}");
    }
}

#[test]
fn encrypted_update_members_are_only_special_in_an_encrypted_update() {
    // Read with the type in one pass; other payload types ignore them whatever
    // their JSON type (§3.3: unknown members are ignored)...
    let ack = r#"{"type":"Acknowledgment","message_id":"x","status":"Stored","recipient_id":5,"ciphertext":{}}"#;
    assert_eq!(
        request(ack),
        Ok(Request::Acknowledgment {
            message_id: "x".into(),
            status: "Stored".into()
        })
    );
    // ...but not repeated: a repeated member name, known or not, is invalid_field.
    let ack = r#"{"type":"Acknowledgment","message_id":"x","status":"Stored","recipient_id":5,"ciphertext":"no","ciphertext":{}}"#;
    assert_eq!(request(ack), Err(ShapeError::InvalidField));
    // In an EncryptedUpdate a repeated member is invalid_field, not a malformed frame.
    for payload in [
        format!(
            r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","recipient_id":"{B}","ciphertext":[1]}}"#
        ),
        format!(
            r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[1],"ciphertext":[1]}}"#
        ),
        r#"{"type":"EncryptedUpdate","ciphertext":[1]}"#.to_string(),
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}"}}"#),
    ] {
        assert_eq!(
            request(&payload),
            Err(ShapeError::InvalidField),
            "{payload}"
        );
    }
    // An escaped recipient_id reads as its unescaped text, as before.
    let escaped = r#"{"type":"EncryptedUpdate","recipient_id":"a\u0062c","ciphertext":[9]}"#;
    assert_eq!(
        request(escaped),
        Ok(Request::EncryptedUpdate {
            recipient_id: "abc".into(),
            ciphertext: vec![9]
        })
    );
    // A repeated type is still a malformed envelope.
    let twice = format!(
        r#"{{"type":"EncryptedUpdate","type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[1]}}"#
    );
    assert!(decode_envelope(&wrap(&twice)).is_err());
}

/// A member name repeated in the same object (§3.3) used to pass wherever the shape
/// did not know the name: an unknown envelope member read twice, a `sender_id`
/// twice in an EncryptedUpdate. Now: malformed in the envelope, invalid_field in a
/// payload, names compared after unescaping, known or not, for every payload type.
#[test]
fn repeated_member_names_are_refused_known_or_not() {
    let payload =
        format!(r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[1,2]}}"#);
    // The envelope: an unknown member twice, or spelled once with an escape.
    for envelope in [
        format!(
            r#"{{"version":1,"message_id":"m","timestamp":1,"x":1,"x":2,"payload":{payload}}}"#
        ),
        format!(
            r#"{{"version":1,"x":1,"message_id":"m","timestamp":1,"payload":{payload},"\u0078":[]}}"#
        ),
        format!(
            r#"{{"version":1,"message_id":"m","timestamp":1,"payload":{payload},"payload":{payload}}}"#
        ),
    ] {
        assert_eq!(
            decode_envelope(&frame(&envelope)).map(|_| ()),
            // The message_id is still read for §3.6 step 4.
            Err(Malformed {
                message_id: Some("m".into())
            }),
            "{envelope}"
        );
    }
    // Distinct unknown names, however many, are still ignored.
    let many: String = (0..100).map(|i| format!(r#""u{i}":{i},"#)).collect();
    let envelope =
        format!(r#"{{{many}"version":1,"message_id":"m","timestamp":1,"payload":{payload}}}"#);
    assert!(decode_envelope(&frame(&envelope)).is_ok());
    // The payload: unknown and known names repeated, early or late, after a hundred others.
    for payload in [
        format!(
            r#"{{"type":"EncryptedUpdate","sender_id":"s","recipient_id":"{B}","ciphertext":[1],"sender_id":"s"}}"#
        ),
        format!(
            r#"{{"type":"EncryptedUpdate","recipient_id":"{B}","ciphertext":[1],"z":null,"\u007a":null}}"#
        ),
        format!(
            r#"{{"type":"EncryptedUpdate",{many}"recipient_id":"{B}","ciphertext":[1],"u42":0}}"#
        ),
        r#"{"type":"Acknowledgment","message_id":"x","status":"Stored","status":"Stored"}"#
            .to_string(),
        r#"{"type":"PurgeRequest","extra":1,"extra":1}"#.to_string(),
        r#"{"type":"RecoveryProofQuery","key_hashes":[],"key_hashes":[]}"#.to_string(),
    ] {
        assert_eq!(
            request(&payload),
            Err(ShapeError::InvalidField),
            "{payload}"
        );
    }
    // The same payloads without the repeat are requests.
    let unique = format!(
        r#"{{"type":"EncryptedUpdate","sender_id":"s",{many}"recipient_id":"{B}","ciphertext":[1]}}"#
    );
    assert!(matches!(
        request(&unique),
        Ok(Request::EncryptedUpdate { .. })
    ));
    // An unknown type is unknown_type before any field check (§3.6 step 7).
    assert_eq!(
        request(r#"{"type":"Nope","a":1,"a":1}"#),
        Err(ShapeError::UnknownType)
    );
    // A Handshake with a repeated member is not a valid Handshake (§4.2 step 5).
    let handshake = format!(r#"{{"type":"Handshake","client_id":"{A}","flag":1,"flag":1}}"#);
    assert_eq!(
        decode_handshake(&wrap(&handshake)),
        Err(CloseReason::HandshakeRequired)
    );
}
