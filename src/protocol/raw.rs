//! Borrowed serde shapes of the JSON the relay reads: the envelope, the Handshake
//! payload and each C→S request payload. serde derive rejects a repeated known member
//! and ignores unknown ones; `decode` reads them through `unique`, which refuses a
//! repeated unknown member too (§3.3). These shapes only check JSON types; value
//! rules (id formats, lengths) are applied by `decode`.

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

/// A JSON `bytes` value (§3.3): an array of integers 0–255, read as serde reads a
/// `Vec<u8>` from JSON (any other element, a fraction or an exponent included, is a
/// type error), but in one tight pass over the array's text with the exact capacity,
/// instead of serde's per-element calls and repeated growth: this was about a fifth
/// of the relay's CPU in the store benchmark. Only for serde_json over borrowed text.
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        parse_byte_array(raw.get())
            .map(Bytes)
            .ok_or_else(|| D::Error::custom("expected an array of integers 0-255"))
    }
}

fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The bytes of a JSON text that is one valid JSON value (as a `RawValue` is), if it
/// is an array whose elements are all integers 0–255 written without sign, fraction
/// or exponent. One pass over the text: any character other than digits, commas and
/// whitespace between the brackets means some element is not such an integer.
pub(crate) fn parse_byte_array(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    let first = text.iter().position(|&byte| !is_json_whitespace(byte))?;
    let last = text.iter().rposition(|&byte| !is_json_whitespace(byte))?;
    if text[first] != b'[' || text[last] != b']' || last == first {
        return None;
    }
    let body = &text[first + 1..last];
    let mut bytes = Vec::with_capacity(body.iter().filter(|&&byte| byte == b',').count() + 1);
    // The element being read: its value, its digit count, and whether whitespace
    // already followed its digits.
    let (mut value, mut digits, mut ended) = (0u16, 0u8, false);
    for &byte in body {
        match byte {
            b'0'..=b'9' if !ended && digits < 3 => {
                value = value * 10 + u16::from(byte - b'0');
                digits += 1;
            }
            b',' if digits > 0 => {
                bytes.push(u8::try_from(value).ok()?);
                (value, digits, ended) = (0, 0, false);
            }
            byte if is_json_whitespace(byte) => ended = digits > 0,
            _ => return None,
        }
    }
    match digits {
        0 if bytes.is_empty() => {}
        0 => return None,
        _ => bytes.push(u8::try_from(value).ok()?),
    }
    Some(bytes)
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

/// The payload's `type` with, in the same pass, the two members of an
/// EncryptedUpdate (the hot request), `ciphertext` still raw. It fails where
/// `PayloadType` would not (those members repeated or of another JSON type, which
/// other payload types must ignore), so a failure is retried with `PayloadType`.
#[derive(Deserialize)]
pub(crate) struct PayloadHead<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Text<'a>,
    #[serde(borrow)]
    pub(crate) recipient_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) ciphertext: Option<&'a RawValue>,
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

/// EncryptedUpdate (§5.2). `bytes` fields are `Bytes` (§3.3).
#[derive(Deserialize)]
pub(crate) struct EncryptedUpdate {
    pub(crate) recipient_id: String,
    pub(crate) ciphertext: Bytes,
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
    pub(crate) encrypted_payload: Bytes,
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
    pub(crate) proof_data: Bytes,
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
    pub(crate) signature: Bytes,
}
