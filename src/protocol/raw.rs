//! Borrowed serde shapes of the JSON the relay reads: the envelope, the Handshake
//! payload and each C→S request payload. serde derive rejects a repeated known member
//! and ignores unknown ones, which is what §3.3 asks for. These shapes only check JSON
//! types; value rules (id formats, lengths) are applied by `decode`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Error, Visitor};
use serde_json::value::RawValue;

/// A JSON string that borrows from the input unless it contains escapes.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The envelope (§3.2). `version` is kept raw so that any non-negative integer, even
/// one beyond u64, can be told apart from fractions, signs and other JSON types.
#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow)]
    pub(crate) version: &'a RawValue,
    pub(crate) message_id: String,
    pub(crate) timestamp: u64,
    #[serde(borrow)]
    pub(crate) payload: &'a RawValue,
}

/// Only the envelope's `message_id`, read when the full envelope failed (§3.6 step 4).
#[derive(Deserialize)]
pub(crate) struct MessageIdOnly {
    pub(crate) message_id: String,
}

/// Only the payload's `type`.
#[derive(Deserialize)]
pub(crate) struct PayloadType<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Text<'a>,
}

/// Handshake (§5.1).
#[derive(Deserialize)]
pub(crate) struct Handshake<'a> {
    #[serde(borrow)]
    pub(crate) client_id: Text<'a>,
    #[serde(borrow)]
    pub(crate) device_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) routing_token: Option<Text<'a>>,
    pub(crate) suppress_presence: Option<bool>,
    #[serde(borrow)]
    pub(crate) identity_public_key: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) nonce: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) signature: Option<Text<'a>>,
    pub(crate) timestamp: Option<u64>,
}

/// EncryptedUpdate (§5.2). `bytes` fields are `Vec<u8>`: serde reads them only from a
/// JSON array of integers 0–255 (§3.3).
#[derive(Deserialize)]
pub(crate) struct EncryptedUpdate {
    pub(crate) recipient_id: String,
    pub(crate) ciphertext: Vec<u8>,
}

/// Acknowledgment (§5.4).
#[derive(Deserialize)]
pub(crate) struct Acknowledgment {
    pub(crate) message_id: String,
    pub(crate) status: String,
}

/// DeviceSyncMessage (§5.6).
#[derive(Deserialize)]
pub(crate) struct DeviceSyncMessage {
    pub(crate) identity_id: String,
    pub(crate) target_device_id: String,
    pub(crate) sender_device_id: String,
    pub(crate) encrypted_payload: Vec<u8>,
    pub(crate) version: u64,
}

/// DeviceSyncAck (§5.7).
#[derive(Deserialize)]
pub(crate) struct DeviceSyncAck {
    pub(crate) message_id: String,
    pub(crate) synced_version: u64,
}

/// RecoveryProofStore (§5.8).
#[derive(Deserialize)]
pub(crate) struct RecoveryProofStore {
    pub(crate) key_hash: String,
    pub(crate) proof_data: Vec<u8>,
}

/// RecoveryProofQuery (§5.9).
#[derive(Deserialize)]
pub(crate) struct RecoveryProofQuery {
    pub(crate) key_hashes: Vec<String>,
}

/// PurgeRequest (§5.11): every field optional.
#[derive(Deserialize)]
pub(crate) struct PurgeRequest {
    pub(crate) include_device_sync: Option<bool>,
    pub(crate) include_recovery_proofs: Option<bool>,
    pub(crate) recovery_key_hash: Option<String>,
}

/// AccountRevoked (§5.12).
#[derive(Deserialize)]
pub(crate) struct AccountRevoked {
    pub(crate) sender_id: String,
    pub(crate) recipient_id: String,
    pub(crate) timestamp: u64,
    pub(crate) signature: Vec<u8>,
}
