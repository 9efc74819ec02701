//! Request payloads (§5) with their JSON types checked, §3.6 steps 7 and 8: the
//! payload type picks the shape (or is unknown, or not a request), and a member
//! missing, repeated or of the wrong JSON type is `invalid_field`. The values are
//! checked later (`validate`).

use super::envelope::{Envelope, is_object};
use crate::protocol::{raw, unique};

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
    EncryptedUpdate {
        recipient_id: String,
        ciphertext: Vec<u8>,
    },
    Acknowledgment {
        message_id: String,
        status: String,
    },
    DeviceSyncMessage {
        identity_id: String,
        target_device_id: String,
        sender_device_id: String,
        encrypted_payload: Vec<u8>,
        version: u64,
    },
    DeviceSyncAck {
        message_id: String,
        synced_version: u64,
    },
    RecoveryProofStore {
        key_hash: String,
        proof_data: Vec<u8>,
    },
    RecoveryProofQuery {
        key_hashes: Vec<String>,
    },
    PurgeRequest {
        include_device_sync: bool,
        include_recovery_proofs: bool,
        recovery_key_hash: Option<String>,
    },
    AccountRevoked {
        sender_id: String,
        recipient_id: String,
        timestamp: u64,
        signature: Vec<u8>,
    },
}

impl Request {
    /// True for the types that take a recovery token (§3.6 step 9).
    pub fn takes_recovery_token(&self) -> bool {
        matches!(
            self,
            Request::RecoveryProofStore { .. } | Request::RecoveryProofQuery { .. }
        )
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
    let payload = envelope.payload;
    let request = match envelope.payload_type.as_str() {
        "EncryptedUpdate" => encrypted_update(envelope)?,
        "Acknowledgment" => {
            let raw::Acknowledgment { message_id, status } = fields(payload)?;
            Request::Acknowledgment { message_id, status }
        }
        "DeviceSyncMessage" => {
            let fields: raw::DeviceSyncMessage = fields(payload)?;
            Request::DeviceSyncMessage {
                identity_id: fields.identity_id,
                target_device_id: fields.target_device_id,
                sender_device_id: fields.sender_device_id,
                encrypted_payload: fields.encrypted_payload.0,
                version: fields.version,
            }
        }
        "DeviceSyncAck" => {
            let raw::DeviceSyncAck {
                message_id,
                synced_version,
            } = fields(payload)?;
            Request::DeviceSyncAck {
                message_id,
                synced_version,
            }
        }
        "RecoveryProofStore" => {
            let raw::RecoveryProofStore {
                key_hash,
                proof_data,
            } = fields(payload)?;
            Request::RecoveryProofStore {
                key_hash,
                proof_data: proof_data.0,
            }
        }
        "RecoveryProofQuery" => {
            let raw::RecoveryProofQuery { key_hashes } = fields(payload)?;
            Request::RecoveryProofQuery { key_hashes }
        }
        "PurgeRequest" => {
            let fields: raw::PurgeRequest = fields(payload)?;
            Request::PurgeRequest {
                include_device_sync: fields.include_device_sync.unwrap_or(false),
                include_recovery_proofs: fields.include_recovery_proofs.unwrap_or(false),
                recovery_key_hash: fields.recovery_key_hash,
            }
        }
        "AccountRevoked" => {
            let fields: raw::AccountRevoked = fields(payload)?;
            Request::AccountRevoked {
                sender_id: fields.sender_id,
                recipient_id: fields.recipient_id,
                timestamp: fields.timestamp,
                signature: fields.signature.0,
            }
        }
        "Handshake"
        | "HandshakeAck"
        | "PurgeResponse"
        | "RecoveryProofResponse"
        | "ForwardingHints"
        | "Error" => return Err(ShapeError::UnexpectedMessage),
        _ => return Err(ShapeError::UnknownType),
    };
    Ok(request)
}

/// The hot request: its fields were usually read with the payload type already
/// (`Envelope::update`); otherwise, after a repeated member, read them here.
fn encrypted_update(envelope: &Envelope<'_>) -> Result<Request, ShapeError> {
    if envelope.update.is_some() {
        let Some((Some(recipient_id), Some(ciphertext))) = &envelope.update else {
            return Err(ShapeError::InvalidField);
        };
        return Ok(Request::EncryptedUpdate {
            recipient_id: recipient_id.to_string(),
            ciphertext: raw::parse_byte_array(ciphertext).ok_or(ShapeError::InvalidField)?,
        });
    }
    let raw::EncryptedUpdate {
        recipient_id,
        ciphertext,
    } = fields(envelope.payload)?;
    Ok(Request::EncryptedUpdate {
        recipient_id,
        ciphertext: ciphertext.0,
    })
}

/// Reads a payload's fields with their JSON types checked (§3.6 step 8).
fn fields<'a, T: serde::Deserialize<'a>>(payload: &'a str) -> Result<T, ShapeError> {
    payload_fields(payload).ok_or(ShapeError::InvalidField)
}

/// Reads a payload object into a serde shape: `None` if it is not an object, if a
/// known member is missing or of the wrong JSON type, or if any member name, known
/// or not, is repeated. Unknown members are otherwise ignored (§3.3).
pub(crate) fn payload_fields<'a, T: serde::Deserialize<'a>>(payload: &'a str) -> Option<T> {
    // decode_envelope guarantees an object, but `Envelope` can be built by hand, and
    // serde derive would read a struct from a JSON array too.
    if !is_object(payload) {
        return None;
    }
    unique::from_str(payload).ok()
}
