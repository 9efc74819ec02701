//! Encoding of every message the relay sends on client sessions: exact prefix and
//! compact JSON in the member order of §3.5. Each function returns a whole frame
//! (4-byte big-endian length + JSON). Envelope `timestamp` is the `now` passed in;
//! envelope `message_id` is a new UUIDv4 unless §3.5 says otherwise.

use super::codes::ErrorCode;
use super::ids::Id64;

/// Which notification an `Acknowledgment` push carries (§7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    Delivered,
    ReceivedByRecipient,
}

/// HandshakeAck (§4.5) with the ten features in order.
pub fn handshake_ack(now: u64) -> Vec<u8> {
    todo!("{now}")
}

/// `Acknowledgment Stored` (§5.5); `blob_id` for EncryptedUpdate and AccountRevoked.
pub fn stored_ack(now: u64, request_message_id: &str, blob_id: Option<&str>) -> Vec<u8> {
    todo!("{now}{request_message_id}{blob_id:?}")
}

/// `Acknowledgment Failed` (§5.5).
pub fn failed_ack(now: u64, request_message_id: &str) -> Vec<u8> {
    todo!("{now}{request_message_id}")
}

/// `Acknowledgment Delivered|ReceivedByRecipient` pushed to a sender (§7.3).
pub fn notification(now: u64, blob_id: &str, status: Notification) -> Vec<u8> {
    todo!("{now}{blob_id}{status:?}")
}

/// Error (§5.14). `message_id` null when `None`.
pub fn error(now: u64, code: ErrorCode, message_id: Option<&str>, retry_after_secs: Option<u64>) -> Vec<u8> {
    todo!("{now}{code:?}{message_id:?}{retry_after_secs:?}")
}

/// A delivered blob (§5.3): envelope `message_id` = blob id.
pub fn encrypted_update(now: u64, blob_id: &str, recipient_id: &Id64, ciphertext: &[u8]) -> Vec<u8> {
    todo!("{now}{blob_id}{recipient_id:?}{}", ciphertext.len())
}
