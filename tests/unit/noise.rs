//! The Noise NK layer of §15.1 without I/O: the static key's forms and file, the
//! responder's opening, and the transport's framing (frames split over messages,
//! several frames in one, the size limit on the reassembled frame, messages that
//! do not decrypt). The client side is `snow` used directly, as a client would.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use vauchi_relay::noise::channel::{self, OpeningFailed};
use vauchi_relay::noise::key::{self, KeyError};
use vauchi_relay::noise::{Channel, MAGIC, PATTERN, PLAINTEXT_BYTES_MAX, Refused, StaticKey};

use crate::common::TempDir;

const LIMIT: usize = 1_048_576 + 4;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A client's opening for `server_public`: message 1 behind the magic, and the
/// handshake state that reads message 2.
fn client_opening(server_public: &[u8; 32]) -> (Vec<u8>, snow::HandshakeState) {
    let mut initiator = snow::Builder::new(PATTERN.parse().unwrap())
        .remote_public_key(server_public)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut message = vec![0u8; 200];
    let n = initiator.write_message(&[], &mut message).unwrap();
    assert_eq!(n, 48, "NK message 1 with an empty payload");
    ([&MAGIC[..], &message[..n]].concat(), initiator)
}

/// A client and the relay's channel after a complete opening.
pub(crate) fn opened(limit: usize) -> (snow::TransportState, Channel) {
    let key = StaticKey::generate();
    let (opening, mut initiator) = client_opening(key.public());
    let (reply, channel) = channel::respond(&key, &opening, limit).expect("opening accepted");
    assert_eq!(reply.len(), 51, "magic and 48 bytes of message 2");
    assert_eq!(reply[..3], MAGIC);
    let mut payload = [0u8; 64];
    assert_eq!(
        initiator.read_message(&reply[3..], &mut payload).unwrap(),
        0
    );
    (initiator.into_transport_mode().unwrap(), channel)
}

pub(crate) fn seal(client: &mut snow::TransportState, plaintext: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; plaintext.len() + 16];
    let n = client.write_message(plaintext, &mut out).unwrap();
    out.truncate(n);
    out
}

fn v1_frame(len: usize, fill: u8) -> Vec<u8> {
    let mut frame = (len as u32).to_be_bytes().to_vec();
    frame.resize(4 + len, fill);
    frame
}

#[test]
fn key_forms_accepted_and_refused() {
    let key = StaticKey::generate();
    let bytes = key.to_bytes();
    assert_eq!(StaticKey::from_bytes(&bytes), Ok(key.clone()));
    let text = b64(&bytes);
    assert_eq!(StaticKey::from_base64url(&text), Ok(key.clone()));
    let padded = base64::engine::general_purpose::URL_SAFE.encode(bytes);
    assert!(padded.ends_with('='));
    assert_eq!(
        StaticKey::from_base64url(&padded),
        Ok(key.clone()),
        "padding"
    );
    let standard = base64::engine::general_purpose::STANDARD.encode(bytes);
    if standard.contains(['+', '/']) {
        assert_eq!(
            StaticKey::from_base64url(&standard),
            Err(KeyError::NotBase64url)
        );
    }
    assert_eq!(StaticKey::from_base64url("!!"), Err(KeyError::NotBase64url));
    assert_eq!(
        StaticKey::from_base64url(&b64(&bytes[..63])),
        Err(KeyError::Length(63))
    );
    let mut mismatched = bytes;
    mismatched[40] ^= 1;
    assert_eq!(
        StaticKey::from_bytes(&mismatched),
        Err(KeyError::Mismatch),
        "public half of another key"
    );
    assert_eq!(key.public_base64url().len(), 43);
    assert_eq!(key.public_base64url(), b64(key.public()));
}

#[test]
fn debug_shows_no_private_key() {
    let key = StaticKey::generate();
    let shown = format!("{key:?}");
    assert!(shown.contains(&key.public_base64url()), "{shown}");
    for secret in [b64(key.private()), hex::encode(key.private())] {
        assert!(!shown.contains(&secret), "{shown}");
    }
    assert!(!shown.contains(&format!("{:?}", key.private())), "{shown}");
}

#[test]
fn key_file_is_created_0600_and_read_back() {
    let dir = TempDir::new("noise-key");
    let created = key::load_or_create(dir.path()).expect("created");
    let path = dir.path().join(key::KEY_FILE_NAME);
    let metadata = std::fs::metadata(&path).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&path).unwrap(), created.to_bytes());
    assert_eq!(key::load_or_create(dir.path()), Ok(created));
}

#[test]
fn a_crash_while_writing_the_key_leaves_no_short_key_file() {
    let dir = TempDir::new("noise-key-crash");
    // What a crash mid-write leaves: the temporary file, short, even loosely
    // readable. It is not the key file, so startup makes a key and replaces it.
    let leftover = dir.path().join(format!("{}.new", key::KEY_FILE_NAME));
    std::fs::write(&leftover, b"short").unwrap();
    std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).unwrap();
    let created = key::load_or_create(dir.path()).expect("created over the leftover");
    let path = dir.path().join(key::KEY_FILE_NAME);
    assert_eq!(std::fs::read(&path).unwrap(), created.to_bytes());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !leftover.exists(),
        "renamed into place, nothing left beside it"
    );
    assert_eq!(key::load_or_create(dir.path()), Ok(created));
}

#[test]
fn key_file_refusals_name_the_file_and_not_the_key() {
    let key = StaticKey::generate();
    let secret = b64(key.private());
    let cases: [(&str, Vec<u8>, u32); 4] = [
        ("group readable", key.to_bytes().to_vec(), 0o640),
        ("others readable", key.to_bytes().to_vec(), 0o604),
        ("63 bytes", key.to_bytes()[..63].to_vec(), 0o600),
        (
            "mismatched",
            [&key.to_bytes()[..32], &[9u8; 32][..]].concat(),
            0o600,
        ),
    ];
    for (label, content, mode) in cases {
        let dir = TempDir::new("noise-key-bad");
        let path = dir.path().join(key::KEY_FILE_NAME);
        std::fs::write(&path, &content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let error = key::load_or_create(dir.path()).expect_err(label);
        assert!(
            error.contains(&path.display().to_string()),
            "{label}: {error}"
        );
        assert!(!error.contains(&secret), "{label}: {error}");
        assert_eq!(std::fs::read(&path).unwrap(), content, "{label}: file kept");
    }
}

#[test]
fn a_garbled_or_foreign_opening_fails() {
    let key = StaticKey::generate();
    let (mut opening, _) = client_opening(key.public());
    let limit = LIMIT;
    let mut garbled = opening.clone();
    garbled[20] ^= 1;
    assert_eq!(
        channel::respond(&key, &garbled, limit).err(),
        Some(OpeningFailed)
    );
    let other = StaticKey::generate();
    assert_eq!(
        channel::respond(&other, &opening, limit).err(),
        Some(OpeningFailed),
        "message 1 for another relay's key"
    );
    opening.truncate(50);
    assert_eq!(
        channel::respond(&key, &opening, limit).err(),
        Some(OpeningFailed)
    );
    assert_eq!(
        channel::respond(&key, &vec![0; 70_000], limit).err(),
        Some(OpeningFailed)
    );
}

#[test]
fn a_message_one_payload_is_ignored() {
    let key = StaticKey::generate();
    let mut initiator = snow::Builder::new(PATTERN.parse().unwrap())
        .remote_public_key(key.public())
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut message = vec![0u8; 300];
    let n = initiator.write_message(b"hello", &mut message).unwrap();
    let opening = [&MAGIC[..], &message[..n]].concat();
    assert!(channel::respond(&key, &opening, LIMIT).is_ok());
}

#[test]
fn frames_are_cut_by_their_prefix_across_and_within_messages() {
    let (mut client, mut channel) = opened(LIMIT);
    // Two frames in one message.
    let (a, b) = (v1_frame(10, 1), v1_frame(3, 2));
    channel
        .open(&seal(&mut client, &[a.clone(), b.clone()].concat()))
        .unwrap();
    assert_eq!(channel.next_frame(), Ok(Some(a)));
    assert_eq!(channel.next_frame(), Ok(Some(b)));
    assert_eq!(channel.next_frame(), Ok(None));
    // One frame over four messages, its prefix itself split.
    let big = v1_frame(150_000, 3);
    for piece in [
        &big[..2],
        &big[2..60_000],
        &big[60_000..120_000],
        &big[120_000..],
    ] {
        assert_eq!(channel.next_frame(), Ok(None));
        channel.open(&seal(&mut client, piece)).unwrap();
    }
    assert_eq!(channel.next_frame(), Ok(Some(big)));
    // A frame's end and the next one's start in one message.
    let (c, d) = (v1_frame(20, 4), v1_frame(20, 5));
    let stream = [c.clone(), d.clone()].concat();
    channel.open(&seal(&mut client, &stream[..30])).unwrap();
    assert_eq!(channel.next_frame(), Ok(Some(c)));
    assert_eq!(channel.next_frame(), Ok(None));
    assert!(channel.has_buffered());
    channel.open(&seal(&mut client, &stream[30..])).unwrap();
    assert_eq!(channel.next_frame(), Ok(Some(d)));
    assert!(!channel.has_buffered());
}

#[test]
fn a_prefix_over_the_limit_is_refused_before_its_bytes_arrive() {
    let (mut client, mut channel) = opened(1000 + 4);
    channel
        .open(&seal(&mut client, &v1_frame(1000, 1)))
        .unwrap();
    assert!(matches!(channel.next_frame(), Ok(Some(_))), "at the limit");
    channel
        .open(&seal(&mut client, &1001u32.to_be_bytes()[..3]))
        .unwrap();
    assert_eq!(channel.next_frame(), Ok(None));
    channel
        .open(&seal(&mut client, &1001u32.to_be_bytes()[3..]))
        .unwrap();
    assert_eq!(channel.next_frame(), Err(Refused::TooBig));
    let (mut client, mut channel) = opened(LIMIT);
    channel
        .open(&seal(&mut client, &u32::MAX.to_be_bytes()))
        .unwrap();
    assert_eq!(channel.next_frame(), Err(Refused::TooBig));
}

#[test]
fn messages_that_do_not_decrypt_are_refused() {
    let (mut client, mut channel) = opened(LIMIT);
    let first = seal(&mut client, &v1_frame(5, 1));
    let mut tampered = first.clone();
    tampered[2] ^= 1;
    assert_eq!(channel.open(&tampered), Err(Refused::Decryption));
    assert_eq!(
        channel.open(&first[..10]),
        Err(Refused::Decryption),
        "short"
    );
    assert_eq!(channel.open(&vec![0; 70_000]), Err(Refused::Decryption));
    // A failed message consumes no nonce: the genuine one still opens.
    channel.open(&first).unwrap();
    assert_eq!(channel.open(&first), Err(Refused::Decryption), "replayed");
    // Skipping a message breaks the nonce sequence.
    let _skipped = seal(&mut client, &v1_frame(1, 1));
    let next = seal(&mut client, &v1_frame(1, 1));
    assert_eq!(channel.open(&next), Err(Refused::Decryption));
}

/// The relay's output, read back by the client: the WebSocket frames' payloads.
fn client_reads(client: &mut snow::TransportState, mut out: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    while !out.is_empty() {
        assert_eq!(out[0], 0x82, "final binary frame");
        let (len, header) = match out[1] {
            126 => (u16::from_be_bytes([out[2], out[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mut plain = vec![0u8; len];
        let n = client
            .read_message(&out[header..header + len], &mut plain)
            .unwrap();
        plain.truncate(n);
        messages.push(plain);
        out = &out[header + len..];
    }
    messages
}

#[test]
fn a_frame_that_fits_is_one_message_and_a_larger_one_is_split() {
    let (mut client, mut channel) = opened(LIMIT);
    let mut out = Vec::new();
    let small = v1_frame(100, 1);
    let fits = v1_frame(PLAINTEXT_BYTES_MAX - 4, 2);
    let large = v1_frame(200_000, 3);
    for frame in [&small, &fits, &large] {
        channel.seal(frame, &mut out).unwrap();
    }
    let messages = client_reads(&mut client, &out);
    let sizes: Vec<usize> = messages.iter().map(Vec::len).collect();
    let rest = 200_004 - 3 * PLAINTEXT_BYTES_MAX;
    assert_eq!(
        sizes,
        [
            104,
            PLAINTEXT_BYTES_MAX,
            PLAINTEXT_BYTES_MAX,
            PLAINTEXT_BYTES_MAX,
            PLAINTEXT_BYTES_MAX,
            rest
        ]
    );
    assert_eq!(messages.concat(), [small, fits, large].concat());
}

/// A key file that can be neither read nor written (its directory is a file
/// here; root ignores permission bits) stops startup naming it.
#[test]
fn an_unusable_key_path_is_an_error_naming_the_file() {
    let dir = TempDir::new("noise-key-notdir");
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let error = key::load_or_create(&not_a_dir).expect_err("not a directory");
    assert!(error.contains(key::KEY_FILE_NAME), "{error}");
}
