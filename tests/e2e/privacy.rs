//! Logging and privacy (§14.2, §10.4): a full session at `RUST_LOG=trace` —
//! authenticated handshakes with routing tokens and device ids, stores, live and
//! connect-time delivery, acks, device sync, recovery proofs, a purge, bad frames
//! and refused handshakes — leaves no id, key, nonce, signature, payload byte,
//! request message_id or client address in the log or in the data directory's
//! non-database files, and the database holds none of the items §10.4 forbids.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use crate::common::*;
use crate::wire::{Identity, now, random32};
use serde_json::{Value, json};
use tungstenite::Message;

/// One secret the relay saw, and every printed form it could take.
struct Secret {
    label: String,
    forms: Vec<String>,
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

/// The forms of a byte string: hex (lower and upper, head and tail, so that a
/// truncated print is caught too), base64, and the elements of a JSON array or a
/// Rust `Debug` slice.
fn byte_forms(bytes: &[u8]) -> Vec<String> {
    let hex_lower = hex::encode(bytes);
    let hex_upper = hex_lower.to_uppercase();
    let hex_len = hex_lower.len();
    let mut forms = vec![
        hex_lower[..16].to_owned(),
        hex_lower[hex_len - 16..].to_owned(),
        hex_upper[..16].to_owned(),
        hex_upper[hex_len - 16..].to_owned(),
        base64(bytes)[..16].to_owned(),
    ];
    for window in [&bytes[..6], &bytes[bytes.len() - 6..]] {
        let numbers: Vec<String> = window.iter().map(u8::to_string).collect();
        forms.push(numbers.join(","));
        forms.push(numbers.join(", "));
    }
    forms
}

fn bytes_secret(label: &str, bytes: &[u8]) -> Secret {
    Secret {
        label: label.to_owned(),
        forms: byte_forms(bytes),
    }
}

/// A 64-hex id (or a longer hex value such as a signature): its text and its bytes.
fn hex_secret(label: &str, hex_text: &str) -> Secret {
    bytes_secret(label, &hex::decode(hex_text).unwrap())
}

fn text_secret(label: &str, text: &str) -> Secret {
    Secret {
        label: label.to_owned(),
        forms: vec![text.to_owned()],
    }
}

/// Every (secret, form) found in `text`.
fn leaks<'a>(secrets: &'a [Secret], text: &str) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    for secret in secrets {
        for form in &secret.forms {
            if text.contains(form.as_str()) {
                found.push((secret.label.as_str(), form.as_str()));
            }
        }
    }
    found
}

/// Client ports, as `127.0.0.1:<port>` and as `:<port>` not followed by a digit.
fn port_leaks(ports: &[u16], text: &str) -> Vec<u16> {
    ports
        .iter()
        .copied()
        .filter(|port| {
            text.contains(&format!("127.0.0.1:{port}"))
                || text.match_indices(&format!(":{port}")).any(|(at, m)| {
                    !text[at + m.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit())
                })
        })
        .collect()
}

/// A message id nobody else would print: a label and a fresh UUID.
fn fresh_message_id(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4())
}

struct Recorder {
    secrets: Vec<Secret>,
    ports: Vec<u16>,
    /// Every Error reason the relay sent (§5.14: no ids, keys or payload data).
    reasons: Vec<String>,
}

impl Recorder {
    fn message_id(&mut self, label: &str) -> String {
        let id = fresh_message_id(label);
        self.secrets
            .push(text_secret(&format!("message_id {label}"), &id));
        id
    }

    fn port_of(&mut self, client: &Client) {
        self.ports
            .push(client.ws.get_ref().local_addr().unwrap().port());
    }

    /// Opens an authenticated session with these extra Handshake fields, recording
    /// the nonce, the signature and the client port.
    fn session(&mut self, addr: SocketAddr, identity: &Identity, extra: Value) -> Client {
        let nonce = random32();
        let mut payload = identity.handshake_payload(&nonce, now());
        self.secrets
            .push(hex_secret("nonce", payload["nonce"].as_str().unwrap()));
        self.secrets.push(hex_secret(
            "signature",
            payload["signature"].as_str().unwrap(),
        ));
        payload
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let mut client = Client::connect(addr);
        self.port_of(&client);
        let hs = self.message_id("hs");
        client.send_json(&envelope(&hs, payload));
        let ack = client.recv_json();
        assert_eq!(ack["payload"]["type"], "HandshakeAck", "{ack}");
        client
    }

    /// A handshake the relay must refuse with 1008; returns the close reason.
    fn refused(&mut self, addr: SocketAddr, payload: Value) -> String {
        let mut client = Client::connect(addr);
        self.port_of(&client);
        let hs = self.message_id("refused-hs");
        client.send_json(&envelope(&hs, payload));
        client.expect_close(1008)
    }

    /// Sends a request and returns its reply, skipping delivery notifications and
    /// recording Error reasons.
    fn request(&mut self, client: &mut Client, json: &str) -> Value {
        client.send_json(json);
        self.reply(client)
    }

    fn reply(&mut self, client: &mut Client) -> Value {
        loop {
            let message = client.recv_json();
            let status = &message["payload"]["status"];
            if status == "Delivered" || status == "ReceivedByRecipient" {
                continue;
            }
            if message["payload"]["type"] == "Error" {
                self.reasons
                    .push(message["payload"]["reason"].as_str().unwrap().to_owned());
            }
            return message;
        }
    }

    fn expect_error(&mut self, client: &mut Client, json: &str, code: &str) {
        let reply = self.request(client, json);
        assert_eq!(reply["payload"]["code"], code, "{reply}");
    }
}

fn signal_and_wait(relay: &mut Relay) {
    // SAFETY: kill(2) on the child's pid, which the test owns.
    let result = unsafe { libc::kill(relay.child.id() as i32, libc::SIGTERM) };
    assert_eq!(result, 0);
    let start = Instant::now();
    loop {
        if let Some(status) = relay.child.try_wait().unwrap() {
            assert!(status.success(), "relay exit status {status}");
            break;
        }
        assert!(start.elapsed() < STUCK, "relay did not exit after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The reader thread collects what was left in the pipe.
    let start = Instant::now();
    while !relay
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("shutdown complete"))
    {
        assert!(start.elapsed() < STUCK, "no `shutdown complete` line");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn is_database_file(name: &str) -> bool {
    name.starts_with("shard-")
        && (name.ends_with(".db") || name.ends_with(".db-wal") || name.ends_with(".db-shm"))
}

/// Every file under `dir`, recursively, with its name relative to `dir`.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            for (inner, bytes) in files(&path) {
                out.push((format!("{name}/{inner}"), bytes));
            }
        } else {
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[test]
fn the_scanner_finds_every_printed_form() {
    // Pins the detector itself, so that a clean log means something.
    let id = hex::encode(random32());
    let secrets = vec![hex_secret("id", &id)];
    let bytes = hex::decode(&id).unwrap();
    for printed in [
        format!("routing_id={id}"),
        format!("id {}", id.to_uppercase()),
        format!("short {}…", &id[..16]),
        format!("data {bytes:?}"),
        format!("data {}", serde_json::to_string(&bytes).unwrap()),
        format!("b64 {}", base64(&bytes)),
    ] {
        assert!(!leaks(&secrets, &printed).is_empty(), "missed {printed}");
    }
    assert!(leaks(&secrets, "relay started shards=2").is_empty());
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(b"fo"), "Zm8");
    assert_eq!(port_leaks(&[40001], "peer 127.0.0.1:40001"), vec![40001]);
    assert_eq!(port_leaks(&[40001], "at :40001 closed"), vec![40001]);
    assert!(port_leaks(&[40001], "count=400012").is_empty());
}

#[test]
fn a_full_session_at_trace_level_logs_no_ids_keys_payloads_or_addresses() {
    let dir = TempDir::new("privacy");
    let mut relay = Relay::start(
        dir.path(),
        &[
            ("RUST_LOG", "trace"),
            ("RELAY_SHARDS", "2"),
            ("RELAY_RATE_LIMIT", "10000"),
        ],
    );
    let sender = Identity::fresh();
    let recipient = Identity::fresh();
    let sender_token = hex::encode(random32());
    let recipient_token = hex::encode(random32());
    let sender_device = hex::encode(random32());
    let recipient_device = hex::encode(random32());
    let second_device = hex::encode(random32());
    let key_hash = hex::encode(random32());
    let ciphertext_random: Vec<u8> = random32().iter().chain(&random32()).copied().collect();
    // Printable bytes, so that a lossy UTF-8 print of the payload is caught too.
    let ciphertext_text = format!("plaintext-marker-{}", uuid::Uuid::new_v4().simple());
    let ciphertext_offline: Vec<u8> = random32().to_vec();
    let proof_data: Vec<u8> = random32().to_vec();
    let sync_payload: Vec<u8> = random32().to_vec();

    let mut rec = Recorder {
        secrets: vec![
            hex_secret("sender client_id", &sender.id),
            hex_secret("recipient client_id", &recipient.id),
            hex_secret("sender routing_token", &sender_token),
            hex_secret("recipient routing_token", &recipient_token),
            hex_secret("sender device_id", &sender_device),
            hex_secret("recipient device_id", &recipient_device),
            hex_secret("second device_id", &second_device),
            hex_secret("key_hash", &key_hash),
            bytes_secret("ciphertext", &ciphertext_random),
            text_secret("ciphertext text", &ciphertext_text),
            bytes_secret("ciphertext text bytes", ciphertext_text.as_bytes()),
            bytes_secret("offline ciphertext", &ciphertext_offline),
            bytes_secret("proof_data", &proof_data),
            bytes_secret("device-sync payload", &sync_payload),
        ],
        ports: Vec::new(),
        reasons: Vec::new(),
    };

    // Recipient first, so that the stores are pushed live.
    let mut owner = rec.session(
        relay.addr,
        &recipient,
        json!({"routing_token": recipient_token, "device_id": recipient_device}),
    );
    let mut alice = rec.session(
        relay.addr,
        &sender,
        json!({"routing_token": sender_token, "device_id": sender_device}),
    );
    let mut blob_ids = Vec::new();
    for ciphertext in [&ciphertext_random[..], ciphertext_text.as_bytes()] {
        let mid = rec.message_id("update");
        let reply = rec.request(&mut alice, &update_json(&mid, &recipient_token, ciphertext));
        assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
        assert_eq!(reply["payload"]["message_id"], mid.as_str());
        blob_ids.push(reply["payload"]["blob_id"].as_str().unwrap().to_owned());
    }
    for (blob_id, ciphertext) in blob_ids
        .iter()
        .zip([&ciphertext_random[..], ciphertext_text.as_bytes()])
    {
        let push = owner.recv_json();
        assert_eq!(push["payload"]["type"], "EncryptedUpdate", "{push}");
        assert_eq!(push["message_id"], blob_id.as_str());
        assert_eq!(push["payload"]["ciphertext"], json!(ciphertext));
    }
    owner.send_json(&ack_json(&blob_ids[0], "ReceivedByRecipient"));
    owner.send_json(&ack_json(&blob_ids[1], "Delivered"));

    // Device sync to the recipient identity's second device, fetched at connect.
    let mid = rec.message_id("sync");
    let reply = rec.request(
        &mut owner,
        &envelope(
            &mid,
            json!({"type": "DeviceSyncMessage", "identity_id": recipient.id,
                   "target_device_id": second_device, "sender_device_id": recipient_device,
                   "encrypted_payload": sync_payload, "version": 7}),
        ),
    );
    assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
    let mut laptop = rec.session(
        relay.addr,
        &recipient,
        json!({"routing_token": recipient_token, "device_id": second_device}),
    );
    let sync = laptop.recv_json();
    assert_eq!(sync["payload"]["type"], "DeviceSyncMessage", "{sync}");
    assert_eq!(sync["payload"]["encrypted_payload"], json!(sync_payload));
    let ack_mid = rec.message_id("sync-ack");
    laptop.send_json(&envelope(
        &ack_mid,
        json!({"type": "DeviceSyncAck", "message_id": sync["message_id"], "synced_version": 7}),
    ));
    laptop.close();

    // Recovery proofs.
    let mid = rec.message_id("proof-store");
    let reply = rec.request(
        &mut owner,
        &envelope(
            &mid,
            json!({"type": "RecoveryProofStore", "key_hash": key_hash, "proof_data": proof_data}),
        ),
    );
    assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
    let mid = rec.message_id("proof-query");
    let reply = rec.request(
        &mut owner,
        &envelope(
            &mid,
            json!({"type": "RecoveryProofQuery", "key_hashes": [key_hash]}),
        ),
    );
    assert_eq!(
        reply["payload"]["proofs"][0]["proof_data"],
        json!(proof_data)
    );

    // A blob stored while the recipient is away reaches it at connect time.
    owner.close();
    let mid = rec.message_id("offline");
    let reply = rec.request(
        &mut alice,
        &update_json(&mid, &recipient_token, &ciphertext_offline),
    );
    assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
    let mut owner = rec.session(
        relay.addr,
        &recipient,
        json!({"routing_token": recipient_token, "device_id": recipient_device}),
    );
    let backlog = owner.recv_json();
    assert_eq!(backlog["payload"]["ciphertext"], json!(ciphertext_offline));

    // Bad frames and refused requests, each carrying secrets the relay must not echo.
    let update = update_json(&rec.message_id("bad-prefix"), &recipient_token, &[1, 2]);
    let mut bad_prefix = frame(&update);
    bad_prefix[3] ^= 1;
    alice.send_raw(Message::binary(bad_prefix));
    assert_eq!(rec.reply(&mut alice)["payload"]["code"], "malformed_frame");
    let not_json = format!("{{\"routing\": \"{recipient_token}\", ");
    alice.send_raw(Message::binary(frame(&not_json)));
    assert_eq!(rec.reply(&mut alice)["payload"]["code"], "malformed_frame");
    alice.send_raw(Message::text(update_json("text", &sender_token, &[3])));
    assert_eq!(
        rec.reply(&mut alice)["payload"]["code"],
        "unsupported_frame"
    );
    let mid = rec.message_id("unknown");
    rec.expect_error(
        &mut alice,
        &envelope(&mid, json!({"type": "Gossip", "id": sender_token})),
        "unknown_type",
    );
    let mid = rec.message_id("second-hs");
    rec.expect_error(
        &mut alice,
        &envelope(&mid, json!({"type": "Handshake", "client_id": sender.id})),
        "unexpected_message",
    );
    let mid = rec.message_id("bad-recipient");
    let almost = format!("{}zz", &recipient_token[..62]);
    rec.expect_error(
        &mut alice,
        &update_json(&mid, &almost, &ciphertext_random),
        "invalid_field",
    );
    let mid = rec.message_id("bad-hash");
    rec.expect_error(
        &mut alice,
        &envelope(
            &mid,
            json!({"type": "RecoveryProofStore", "key_hash": format!("{key_hash}00"), "proof_data": proof_data}),
        ),
        "invalid_field",
    );
    let mid = rec.message_id("foreign-sync");
    rec.expect_error(
        &mut alice,
        &envelope(
            &mid,
            json!({"type": "DeviceSyncMessage", "identity_id": recipient.id,
                   "target_device_id": second_device, "sender_device_id": sender_device,
                   "encrypted_payload": sync_payload, "version": 1}),
        ),
        "not_permitted",
    );
    // An ack for a foreign blob: no reply, no effect.
    alice.send_json(&ack_json(&blob_ids[0], "ReceivedByRecipient"));

    // Refused handshakes: a bad signature, a replayed nonce, a bad device id.
    let nonce = random32();
    let mut forged = sender.handshake_payload(&nonce, now());
    rec.secrets.push(hex_secret(
        "refused nonce",
        forged["nonce"].as_str().unwrap(),
    ));
    let mut signature = hex::decode(forged["signature"].as_str().unwrap()).unwrap();
    signature[0] ^= 1;
    rec.secrets
        .push(bytes_secret("forged signature", &signature));
    forged["signature"] = json!(hex::encode(&signature));
    assert_eq!(rec.refused(relay.addr, forged), "authentication failed");
    let nonce = random32();
    let replayed = sender.handshake_payload(&nonce, now());
    rec.secrets.push(hex_secret(
        "replayed nonce",
        replayed["nonce"].as_str().unwrap(),
    ));
    rec.secrets.push(hex_secret(
        "replayed signature",
        replayed["signature"].as_str().unwrap(),
    ));
    let mut again = Client::connect(relay.addr);
    rec.port_of(&again);
    again.send_json(&envelope("replay", replayed.clone()));
    assert_eq!(again.recv_json()["payload"]["type"], "HandshakeAck");
    assert_eq!(rec.refused(relay.addr, replayed), "authentication failed");
    let bad_device = json!({"type": "Handshake", "client_id": recipient.id,
                            "device_id": format!("{}x", &recipient_device[..63])});
    assert_eq!(rec.refused(relay.addr, bad_device), "invalid handshake");

    // Purge everything the recipient has.
    let mid = rec.message_id("purge");
    let reply = rec.request(
        &mut owner,
        &envelope(
            &mid,
            json!({"type": "PurgeRequest", "include_device_sync": true,
                   "include_recovery_proofs": true, "recovery_key_hash": key_hash}),
        ),
    );
    assert_eq!(reply["payload"]["type"], "PurgeResponse", "{reply}");
    assert_eq!(reply["payload"]["blobs_deleted"], 1, "{reply}");
    assert_eq!(reply["payload"]["recovery_proofs_deleted"], 1, "{reply}");

    owner.close();
    alice.close();
    again.close();
    signal_and_wait(&mut relay);

    let log = relay.log.lock().unwrap().join("\n");
    let lines = relay.log.lock().unwrap().len();
    assert!(
        log.contains(" TRACE "),
        "RUST_LOG=trace produced no TRACE line, so the test could not fail:\n{log}"
    );
    assert!(lines >= 5, "only {lines} log lines:\n{log}");
    eprintln!("{lines} log lines checked");

    let mut failures = Vec::new();
    for (label, form) in leaks(&rec.secrets, &log) {
        let line = log.lines().find(|l| l.contains(form)).unwrap();
        failures.push(format!("log: {label} ({form}) in {line:?}"));
    }
    for port in port_leaks(&rec.ports, &log) {
        let line = log
            .lines()
            .find(|l| l.contains(&format!(":{port}")))
            .unwrap();
        failures.push(format!("log: client port {port} in {line:?}"));
    }
    for reason in &rec.reasons {
        for (label, form) in leaks(&rec.secrets, reason) {
            failures.push(format!("Error reason: {label} ({form}) in {reason:?}"));
        }
    }
    // Files other than the shard databases: the lock, relay_id and anything else.
    let mut database = Vec::new();
    for (name, bytes) in files(dir.path()) {
        if is_database_file(&name) {
            database.extend(bytes);
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        for (label, form) in leaks(&rec.secrets, &text) {
            failures.push(format!("file {name}: {label} ({form})"));
        }
        for port in port_leaks(&rec.ports, &text) {
            failures.push(format!("file {name}: client port {port}"));
        }
    }
    // §10.4: the databases never hold the sender's ids, public keys, nonces or
    // signatures, as text or as raw bytes.
    assert!(
        !database.is_empty(),
        "no shard database in {:?}",
        dir.path()
    );
    let database_text = String::from_utf8_lossy(&database);
    let never_stored: Vec<&Secret> = rec
        .secrets
        .iter()
        .filter(|s| {
            s.label.starts_with("sender")
                || s.label.contains("nonce")
                || s.label.contains("signature")
        })
        .collect();
    assert!(never_stored.len() >= 10, "secrets to check in the database");
    for secret in never_stored {
        for form in &secret.forms {
            if database_text.contains(form.as_str()) {
                failures.push(format!("database: {} ({form})", secret.label));
            }
        }
    }
    for (label, raw) in [
        ("sender public key", hex::decode(&sender.id).unwrap()),
        ("sender routing_token", hex::decode(&sender_token).unwrap()),
        ("sender device_id", hex::decode(&sender_device).unwrap()),
    ] {
        if database.windows(raw.len()).any(|w| w == raw.as_slice()) {
            failures.push(format!("database: raw bytes of the {label}"));
        }
    }
    assert!(
        failures.is_empty(),
        "§14.2/§10.4 leaks:\n{}",
        failures.join("\n")
    );
}
