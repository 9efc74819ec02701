//! §3.6 step 10: the values of a well-typed request (ids, lengths, the ack status).
//! After it, a request names only valid ids and stays within the field limits.

use super::request::{AckStatus, Request};
use crate::limits::{
    RECOVERY_QUERY_KEY_HASHES_MAX, REVOCATION_SIGNATURE_BYTES_MAX, SENDER_DEVICE_ID_BYTES_MAX,
    SENDER_ID_BYTES_MAX,
};
use crate::protocol::Id64;

/// A request whose values passed §3.6 step 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidRequest {
    EncryptedUpdate {
        recipient_id: Id64,
        ciphertext: Vec<u8>,
    },
    Acknowledgment {
        blob_id: String,
        status: AckStatus,
    },
    DeviceSyncMessage {
        identity_id: Id64,
        target_device_id: Id64,
        sender_device_id: String,
        encrypted_payload: Vec<u8>,
        version: u64,
    },
    DeviceSyncAck {
        message_id: String,
        synced_version: u64,
    },
    RecoveryProofStore {
        key_hash: Id64,
        proof_data: Vec<u8>,
    },
    /// Non-64-hex entries are already skipped (§5.9).
    RecoveryProofQuery {
        key_hashes: Vec<Id64>,
    },
    PurgeRequest {
        include_device_sync: bool,
        include_recovery_proofs: bool,
        recovery_key_hash: Option<Id64>,
    },
    AccountRevoked {
        sender_id: String,
        recipient_id: Id64,
        timestamp: u64,
        signature: Vec<u8>,
    },
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
    let id = |text: &str| Id64::parse(text).ok_or(ValueError::InvalidField);
    let valid = match request {
        Request::EncryptedUpdate {
            recipient_id,
            ciphertext,
        } => ValidRequest::EncryptedUpdate {
            recipient_id: id(&recipient_id)?,
            ciphertext,
        },
        Request::Acknowledgment { message_id, status } => ValidRequest::Acknowledgment {
            blob_id: message_id,
            status: ack_status(&status).ok_or(ValueError::InvalidField)?,
        },
        Request::DeviceSyncMessage {
            identity_id,
            target_device_id,
            sender_device_id,
            encrypted_payload,
            version,
        } => {
            if sender_device_id.len() > SENDER_DEVICE_ID_BYTES_MAX {
                return Err(ValueError::InvalidField);
            }
            ValidRequest::DeviceSyncMessage {
                identity_id: id(&identity_id)?,
                target_device_id: id(&target_device_id)?,
                sender_device_id,
                encrypted_payload,
                version,
            }
        }
        Request::DeviceSyncAck {
            message_id,
            synced_version,
        } => ValidRequest::DeviceSyncAck {
            message_id,
            synced_version,
        },
        Request::RecoveryProofStore {
            key_hash,
            proof_data,
        } => ValidRequest::RecoveryProofStore {
            key_hash: id(&key_hash)?,
            proof_data,
        },
        Request::RecoveryProofQuery { key_hashes } => proof_query(&key_hashes)?,
        Request::PurgeRequest {
            include_device_sync,
            include_recovery_proofs,
            recovery_key_hash,
        } => ValidRequest::PurgeRequest {
            include_device_sync,
            include_recovery_proofs,
            recovery_key_hash: recovery_key_hash.as_deref().map(id).transpose()?,
        },
        Request::AccountRevoked {
            sender_id,
            recipient_id,
            timestamp,
            signature,
        } => account_revoked(sender_id, &recipient_id, timestamp, signature)?,
    };
    Ok(valid)
}

/// Entries that are not 64 hex digits are skipped (§5.9); too many is refused.
fn proof_query(key_hashes: &[String]) -> Result<ValidRequest, ValueError> {
    if key_hashes.len() > RECOVERY_QUERY_KEY_HASHES_MAX {
        return Err(ValueError::InvalidField);
    }
    Ok(ValidRequest::RecoveryProofQuery {
        key_hashes: key_hashes
            .iter()
            .filter_map(|text| Id64::parse(text))
            .collect(),
    })
}

fn account_revoked(
    sender_id: String,
    recipient_id: &str,
    timestamp: u64,
    signature: Vec<u8>,
) -> Result<ValidRequest, ValueError> {
    // The length limits are `invalid_field`; only then is a bad recipient the
    // `Failed` ack that older relays sent (§5.12).
    if sender_id.len() > SENDER_ID_BYTES_MAX || signature.len() > REVOCATION_SIGNATURE_BYTES_MAX {
        return Err(ValueError::InvalidField);
    }
    Ok(ValidRequest::AccountRevoked {
        sender_id,
        recipient_id: Id64::parse(recipient_id).ok_or(ValueError::FailedAck)?,
        timestamp,
        signature,
    })
}

fn ack_status(text: &str) -> Option<AckStatus> {
    match text {
        "Stored" => Some(AckStatus::Stored),
        "Delivered" => Some(AckStatus::Delivered),
        "ReceivedByRecipient" => Some(AckStatus::ReceivedByRecipient),
        "Failed" => Some(AckStatus::Failed),
        _ => None,
    }
}
