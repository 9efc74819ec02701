//! Decoding of client frames: the frame prefix (§3.1), the envelope (§3.2), the
//! Handshake acceptance checks (§4.2, §4.3 step 1), and request payloads (§5) split
//! into the phases of §3.6 so that the session can take rate tokens in between.

use super::ids::Id64;
use super::codes::CloseReason;

/// A decoded envelope (§3.6 step 3). `payload` is the raw JSON object text.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// Any non-negative integer; the caller answers `unsupported_version` unless 1.
    pub version: u64,
    pub message_id: String,
    pub timestamp: u64,
    pub payload_type: String,
    pub payload: &'a str,
}

/// The envelope could not be decoded: `malformed_frame`. `message_id` is set when the
/// envelope's `message_id` member could still be read (§3.6 step 4).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed {
    pub message_id: Option<String>,
}

/// Checks the 4-byte prefix and decodes the envelope.
pub fn decode_envelope(message: &[u8]) -> Result<Envelope<'_>, Malformed> {
    todo!("helper B {}", message.len())
}

/// Authentication fields of a Handshake, format-checked (§4.3 step 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeAuth {
    pub identity_public_key: Id64,
    pub nonce: [u8; 32],
    pub signature: [u8; 64],
    pub timestamp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub client_id: Id64,
    pub device_id: Option<Id64>,
    pub routing_token: Option<Id64>,
    pub suppress_presence: bool,
    /// `Some` only when all four authentication fields were given.
    pub auth: Option<HandshakeAuth>,
}

impl Handshake {
    /// routing_id of §4.4.
    pub fn routing_id(&self) -> Id64 {
        self.routing_token.unwrap_or(self.client_id)
    }
}

/// Runs §4.2 checks 2 to 6 and §4.3 step 1 on the first binary data message.
/// (Check 1, text frames, is the caller's.) Authentication field format errors
/// give `AuthenticationFailed`.
pub fn decode_handshake(message: &[u8]) -> Result<Handshake, CloseReason> {
    todo!("helper B {}", message.len())
}

/// Status of an Acknowledgment (§5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    Stored,
    Delivered,
    ReceivedByRecipient,
    Failed,
}

/// A request whose fields have the right JSON types (§3.6 step 8), values unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    EncryptedUpdate { recipient_id: String, ciphertext: Vec<u8> },
    Acknowledgment { message_id: String, status: String },
    DeviceSyncMessage { identity_id: String, target_device_id: String, sender_device_id: String, encrypted_payload: Vec<u8>, version: u64 },
    DeviceSyncAck { message_id: String, synced_version: u64 },
    RecoveryProofStore { key_hash: String, proof_data: Vec<u8> },
    RecoveryProofQuery { key_hashes: Vec<String> },
    PurgeRequest { include_device_sync: bool, include_recovery_proofs: bool, recovery_key_hash: Option<String> },
    AccountRevoked { sender_id: String, recipient_id: String, timestamp: u64, signature: Vec<u8> },
}

impl Request {
    /// True for the types that take a recovery token (§3.6 step 9).
    pub fn takes_recovery_token(&self) -> bool {
        matches!(self, Request::RecoveryProofStore { .. } | Request::RecoveryProofQuery { .. })
    }
}

/// Why a request was refused before its values were checked (§3.6 steps 7 and 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeError {
    UnknownType,
    UnexpectedMessage,
    InvalidField,
}

/// §3.6 steps 7 and 8 on an envelope whose version is 1.
pub fn decode_request(envelope: &Envelope<'_>) -> Result<Request, ShapeError> {
    todo!("helper B {envelope:?}")
}

/// A request whose values passed §3.6 step 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidRequest {
    EncryptedUpdate { recipient_id: Id64, ciphertext: Vec<u8> },
    Acknowledgment { blob_id: String, status: AckStatus },
    DeviceSyncMessage { identity_id: Id64, target_device_id: Id64, sender_device_id: String, encrypted_payload: Vec<u8>, version: u64 },
    DeviceSyncAck { message_id: String, synced_version: u64 },
    RecoveryProofStore { key_hash: Id64, proof_data: Vec<u8> },
    /// Non-64-hex entries are already skipped (§5.9).
    RecoveryProofQuery { key_hashes: Vec<Id64> },
    PurgeRequest { include_device_sync: bool, include_recovery_proofs: bool, recovery_key_hash: Option<Id64> },
    AccountRevoked { sender_id: String, recipient_id: Id64, timestamp: u64, signature: Vec<u8> },
}

/// The outcome of a failed value check (§3.6 step 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    InvalidField,
    /// Answered with an `Acknowledgment Failed` and nothing else (§6.2).
    FailedAck,
}

/// §3.6 step 10. (`identity_id` ≠ session `client_id` is the session's check.)
pub fn validate(request: Request) -> Result<ValidRequest, ValueError> {
    todo!("helper B {request:?}")
}
