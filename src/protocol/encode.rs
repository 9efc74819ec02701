//! Encoding of every message the relay sends on client sessions: exact prefix and
//! compact JSON in the member order of §3.5. Each function returns a whole frame
//! (4-byte big-endian length + JSON). Envelope `timestamp` is the `now` passed in;
//! envelope `message_id` is a new UUIDv4 unless §3.5 says otherwise. Each function
//! that makes a new id has a `*_with_id` twin taking the envelope id, for exact tests.

use super::codes::ErrorCode;
use super::ids::Id64;
use super::json_writer::FrameWriter;

/// Which notification an `Acknowledgment` push carries (§7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    Delivered,
    ReceivedByRecipient,
}

/// JSON bytes of an envelope around an empty payload with the longest type name,
/// the timestamp at its widest and a UUID message id; each message adds its own fields.
const ENVELOPE_JSON_BYTES: usize = 128;
/// JSON bytes of a `bytes` array per element: up to three digits and a comma.
pub(crate) const BYTES_JSON_BYTES_PER_ELEMENT: usize = 4;
/// JSON bytes of a quoted 64-hex id member, name included (`,"recipient_id":"…"`).
const ID_MEMBER_JSON_BYTES: usize = 96;
/// JSON bytes of a u64 member, name included.
const NUMBER_MEMBER_JSON_BYTES: usize = 48;

/// The features of HandshakeAck (§4.5), exactly these and in this order.
const FEATURES_JSON: &str = r#"["routing_token","suppress_presence","purge","device_sync","recovery_proof","account_revoked","forwarding_hints","authenticated_handshake","errors","live_push"]"#;

/// Calls `write` with a new UUIDv4 in lower-case hyphenated form (§3.4), without
/// allocating for its text.
pub(crate) fn with_new_id<T>(write: impl FnOnce(&str) -> T) -> T {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = crate::protocol::ids::random_uuid();
    write(id.hyphenated().encode_lower(&mut text))
}

/// A version-1 envelope as the relay writes it.
pub(crate) fn envelope(
    json_bytes: usize,
    now: u64,
    message_id: &str,
    payload_type: &str,
) -> FrameWriter {
    FrameWriter::envelope(
        ENVELOPE_JSON_BYTES + message_id.len() + json_bytes,
        1,
        message_id,
        now,
        payload_type,
    )
}

/// The features of a Noise session's HandshakeAck: `"noise_nk"` after the ten (§15.1).
const NOISE_FEATURES_JSON: &str = r#"["routing_token","suppress_presence","purge","device_sync","recovery_proof","account_revoked","forwarding_hints","authenticated_handshake","errors","live_push","noise_nk"]"#;

/// HandshakeAck (§4.5) with the ten features in order.
pub fn handshake_ack(now: u64) -> Vec<u8> {
    with_new_id(|id| handshake_ack_with_id(now, id))
}

/// HandshakeAck of a Noise session (§15.1): the ten features, then `"noise_nk"`.
pub fn noise_handshake_ack(now: u64) -> Vec<u8> {
    with_new_id(|id| ack_with_features(now, id, NOISE_FEATURES_JSON))
}

/// [`handshake_ack`] with a given envelope `message_id`.
pub fn handshake_ack_with_id(now: u64, envelope_message_id: &str) -> Vec<u8> {
    ack_with_features(now, envelope_message_id, FEATURES_JSON)
}

fn ack_with_features(now: u64, envelope_message_id: &str, features: &str) -> Vec<u8> {
    let server_version = env!("CARGO_PKG_VERSION");
    let mut frame = envelope(
        64 + server_version.len() + features.len(),
        now,
        envelope_message_id,
        "HandshakeAck",
    );
    frame.literal(",\"protocol_version\":1,\"server_version\":");
    frame.string(server_version);
    frame.literal(",\"features\":");
    frame.literal(features);
    frame.finish()
}

/// `Acknowledgment Stored` (§5.5); `blob_id` for EncryptedUpdate and AccountRevoked.
pub fn stored_ack(now: u64, request_message_id: &str, blob_id: Option<&str>) -> Vec<u8> {
    with_new_id(|id| stored_ack_with_id(now, id, request_message_id, blob_id))
}

/// [`stored_ack`] with a given envelope `message_id`.
pub fn stored_ack_with_id(
    now: u64,
    envelope_message_id: &str,
    request_message_id: &str,
    blob_id: Option<&str>,
) -> Vec<u8> {
    let blob_bytes = blob_id.map_or(0, |blob_id| 16 + blob_id.len());
    let mut frame = acknowledgment(
        now,
        envelope_message_id,
        request_message_id,
        "Stored",
        blob_bytes,
    );
    if let Some(blob_id) = blob_id {
        frame.literal(",\"blob_id\":");
        frame.string(blob_id);
    }
    frame.finish()
}

/// `Acknowledgment Failed` (§5.5).
pub fn failed_ack(now: u64, request_message_id: &str) -> Vec<u8> {
    with_new_id(|id| failed_ack_with_id(now, id, request_message_id))
}

/// [`failed_ack`] with a given envelope `message_id`.
pub fn failed_ack_with_id(
    now: u64,
    envelope_message_id: &str,
    request_message_id: &str,
) -> Vec<u8> {
    acknowledgment(now, envelope_message_id, request_message_id, "Failed", 0).finish()
}

/// `Acknowledgment Delivered|ReceivedByRecipient` pushed to a sender (§7.3).
pub fn notification(now: u64, blob_id: &str, status: Notification) -> Vec<u8> {
    with_new_id(|id| notification_with_id(now, id, blob_id, status))
}

/// [`notification`] with a given envelope `message_id`.
pub fn notification_with_id(
    now: u64,
    envelope_message_id: &str,
    blob_id: &str,
    status: Notification,
) -> Vec<u8> {
    let status = match status {
        Notification::Delivered => "Delivered",
        Notification::ReceivedByRecipient => "ReceivedByRecipient",
    };
    acknowledgment(now, envelope_message_id, blob_id, status, 0).finish()
}

/// An Acknowledgment up to its `status`; `extra_bytes` is room for what follows.
fn acknowledgment(
    now: u64,
    envelope_message_id: &str,
    message_id: &str,
    status: &str,
    extra_bytes: usize,
) -> FrameWriter {
    let mut frame = envelope(
        48 + message_id.len() + status.len() + extra_bytes,
        now,
        envelope_message_id,
        "Acknowledgment",
    );
    frame.literal(",\"message_id\":");
    frame.string(message_id);
    frame.literal(",\"status\":");
    frame.string(status);
    frame
}

/// Error (§5.14). `message_id` null when `None`.
pub fn error(
    now: u64,
    code: ErrorCode,
    message_id: Option<&str>,
    retry_after_secs: Option<u64>,
) -> Vec<u8> {
    with_new_id(|id| error_with_id(now, id, code, message_id, retry_after_secs))
}

/// [`error`] with a given envelope `message_id`.
pub fn error_with_id(
    now: u64,
    envelope_message_id: &str,
    code: ErrorCode,
    message_id: Option<&str>,
    retry_after_secs: Option<u64>,
) -> Vec<u8> {
    let reason = code.reason();
    let mut frame = envelope(
        96 + code.as_str().len() + reason.len() + message_id.map_or(0, str::len),
        now,
        envelope_message_id,
        "Error",
    );
    frame.literal(",\"code\":");
    frame.string(code.as_str());
    frame.literal(",\"reason\":");
    frame.string(reason);
    frame.literal(",\"message_id\":");
    match message_id {
        Some(message_id) => frame.string(message_id),
        None => frame.literal("null"),
    }
    if let Some(retry_after_secs) = retry_after_secs {
        frame.literal(",\"retry_after_secs\":");
        frame.number(retry_after_secs);
    }
    frame.finish()
}

/// A delivered blob (§5.3): envelope `message_id` = blob id.
pub fn encrypted_update(
    now: u64,
    blob_id: &str,
    recipient_id: &Id64,
    ciphertext: &[u8],
) -> Vec<u8> {
    let mut frame = envelope(
        ID_MEMBER_JSON_BYTES + 16 + BYTES_JSON_BYTES_PER_ELEMENT * ciphertext.len(),
        now,
        blob_id,
        "EncryptedUpdate",
    );
    frame.literal(",\"recipient_id\":");
    frame.id(recipient_id);
    frame.literal(",\"ciphertext\":");
    frame.bytes(ciphertext);
    frame.finish()
}

/// A delivered device-sync message (§5.6): envelope `message_id` = the stored id; ids
/// canonical, `sender_device_id` as received.
pub fn device_sync_message(
    now: u64,
    stored_id: &str,
    identity_id: &Id64,
    target_device_id: &Id64,
    sender_device_id: &str,
    encrypted_payload: &[u8],
    version: u64,
) -> Vec<u8> {
    let mut frame = envelope(
        2 * ID_MEMBER_JSON_BYTES
            + 24
            + sender_device_id.len()
            + 24
            + BYTES_JSON_BYTES_PER_ELEMENT * encrypted_payload.len()
            + NUMBER_MEMBER_JSON_BYTES,
        now,
        stored_id,
        "DeviceSyncMessage",
    );
    frame.literal(",\"identity_id\":");
    frame.id(identity_id);
    frame.literal(",\"target_device_id\":");
    frame.id(target_device_id);
    frame.literal(",\"sender_device_id\":");
    frame.string(sender_device_id);
    frame.literal(",\"encrypted_payload\":");
    frame.bytes(encrypted_payload);
    frame.literal(",\"version\":");
    frame.number(version);
    frame.finish()
}

/// RecoveryProofResponse (§5.10): envelope `message_id` echoes the query's. `proofs`
/// are (canonical key_hash, proof_data) in response order.
pub fn recovery_proof_response(
    now: u64,
    request_message_id: &str,
    proofs: &[(Id64, &[u8])],
) -> Vec<u8> {
    let proofs_bytes: usize = proofs
        .iter()
        .map(|(_, data)| ID_MEMBER_JSON_BYTES + 16 + BYTES_JSON_BYTES_PER_ELEMENT * data.len())
        .sum();
    let mut frame = envelope(
        16 + proofs_bytes,
        now,
        request_message_id,
        "RecoveryProofResponse",
    );
    frame.literal(",\"proofs\":[");
    for (index, (key_hash, proof_data)) in proofs.iter().enumerate() {
        frame.literal(if index == 0 { "{" } else { ",{" });
        frame.literal("\"key_hash\":");
        frame.id(key_hash);
        frame.literal(",\"proof_data\":");
        frame.bytes(proof_data);
        frame.literal("}");
    }
    frame.literal("]");
    frame.finish()
}

/// PurgeResponse (§5.11): envelope `message_id` echoes the request's.
pub fn purge_response(
    now: u64,
    request_message_id: &str,
    blobs_deleted: u64,
    device_sync_deleted: u64,
    recovery_proofs_deleted: u64,
) -> Vec<u8> {
    let mut frame = envelope(
        3 * NUMBER_MEMBER_JSON_BYTES,
        now,
        request_message_id,
        "PurgeResponse",
    );
    frame.literal(",\"blobs_deleted\":");
    frame.number(blobs_deleted);
    frame.literal(",\"device_sync_deleted\":");
    frame.number(device_sync_deleted);
    frame.literal(",\"recovery_proofs_deleted\":");
    frame.number(recovery_proofs_deleted);
    frame.finish()
}

/// ForwardingHints (§5.13): `hints` are (blob_id, relay_url, expires_at_secs), already
/// filtered and ordered by the caller.
pub fn forwarding_hints(now: u64, hints: &[(&str, &str, u64)]) -> Vec<u8> {
    with_new_id(|id| forwarding_hints_with_id(now, id, hints))
}

/// [`forwarding_hints`] with a given envelope `message_id`.
pub fn forwarding_hints_with_id(
    now: u64,
    envelope_message_id: &str,
    hints: &[(&str, &str, u64)],
) -> Vec<u8> {
    let hints_bytes: usize = hints
        .iter()
        .map(|(blob_id, relay_url, _)| 80 + blob_id.len() + relay_url.len())
        .sum();
    let mut frame = envelope(
        16 + hints_bytes,
        now,
        envelope_message_id,
        "ForwardingHints",
    );
    frame.literal(",\"hints\":[");
    for (index, (blob_id, relay_url, expires_at_secs)) in hints.iter().enumerate() {
        frame.literal(if index == 0 { "{" } else { ",{" });
        frame.literal("\"blob_id\":");
        frame.string(blob_id);
        frame.literal(",\"relay_url\":");
        frame.string(relay_url);
        frame.literal(",\"expires_at_secs\":");
        frame.number(*expires_at_secs);
        frame.literal("}");
    }
    frame.literal("]");
    frame.finish()
}

/// The frame §5.12 stores as a blob for an AccountRevoked request: the request's own
/// envelope `version`, `message_id` and `timestamp`, and a payload of exactly `type`,
/// `sender_id`, `recipient_id` (as received, not canonicalised), `timestamp` and
/// `signature`, in that order.
pub fn account_revoked_blob(
    version: u64,
    message_id: &str,
    timestamp: u64,
    sender_id: &str,
    recipient_id: &str,
    payload_timestamp: u64,
    signature: &[u8],
) -> Vec<u8> {
    let mut frame = FrameWriter::envelope(
        ENVELOPE_JSON_BYTES
            + message_id.len()
            + 16
            + sender_id.len()
            + 20
            + recipient_id.len()
            + NUMBER_MEMBER_JSON_BYTES
            + 16
            + BYTES_JSON_BYTES_PER_ELEMENT * signature.len(),
        version,
        message_id,
        timestamp,
        "AccountRevoked",
    );
    frame.literal(",\"sender_id\":");
    frame.string(sender_id);
    frame.literal(",\"recipient_id\":");
    frame.string(recipient_id);
    frame.literal(",\"timestamp\":");
    frame.number(payload_timestamp);
    frame.literal(",\"signature\":");
    frame.bytes(signature);
    frame.finish()
}
