//! Decoding of client frames: the frame prefix (§3.1), the envelope (§3.2), the
//! Handshake acceptance checks (§4.2, §4.3 step 1), and request payloads (§5) split
//! into the phases of §3.6 so that the session can take rate tokens in between.
//!
//! This file reads the envelope and the Handshake; `request` reads the request
//! payloads (steps 7 and 8), `validate` checks their values (step 10).

mod request;
mod validate;

pub(crate) use request::payload_fields;
pub use request::{AckStatus, Request, ShapeError, decode_request};
pub use validate::{ValidRequest, ValueError, validate};

use super::codes::CloseReason;
use super::ids::{Id64, decode_hex};
use std::borrow::Cow;

use super::raw;
use super::unique;
use serde_json::value::RawValue;

/// A Noise (v2) opening is at least this long and starts with `NOISE_PREFIX` (§4.2).
const NOISE_OPENING_BYTES_MIN: usize = 51;
const NOISE_PREFIX: [u8; 3] = [0x00, 0x56, 0x32];

/// A decoded envelope (§3.6 step 3). `payload` is the raw JSON object text.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// Any non-negative integer; the caller answers `unsupported_version` unless 1.
    pub version: u64,
    pub message_id: String,
    pub timestamp: u64,
    pub payload_type: String,
    pub payload: &'a str,
    /// An EncryptedUpdate's `recipient_id` and raw `ciphertext`, when they were read
    /// with the type (`raw::PayloadHead`); `decode_request` then reads no more.
    update: Option<(Option<Cow<'a, str>>, Option<&'a str>)>,
}

/// The envelope could not be decoded: `malformed_frame`. `message_id` is set when the
/// envelope's `message_id` member could still be read (§3.6 step 4).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed {
    pub message_id: Option<String>,
}

/// Checks the 4-byte prefix and decodes the envelope.
///
/// A repeated envelope member, known or not, is malformed (§3.3), and so is a
/// repeated payload `"type"`: the type cannot be told. Other repeated payload
/// members are the request's `invalid_field` (`decode_request`). When the
/// prefix or the UTF-8 is wrong, no `message_id` is read, since the JSON text itself
/// is not known.
pub fn decode_envelope(message: &[u8]) -> Result<Envelope<'_>, Malformed> {
    let no_id = Malformed { message_id: None };
    let json = frame_text(message).ok_or(no_id)?;
    decode_envelope_text(json).ok_or_else(|| Malformed {
        message_id: read_message_id(json),
    })
}

/// The JSON text behind a correct 4-byte prefix (§3.1), if it is UTF-8.
pub(crate) fn frame_text(message: &[u8]) -> Option<&str> {
    let (prefix, body) = message.split_first_chunk::<4>()?;
    let length = usize::try_from(u32::from_be_bytes(*prefix)).ok()?;
    if length != body.len() {
        return None;
    }
    std::str::from_utf8(body).ok()
}

/// The envelope of §3.2 in a frame's JSON text, if it is one.
pub(crate) fn decode_envelope_text(json: &str) -> Option<Envelope<'_>> {
    // serde derive would also read a struct from a JSON array; only objects are valid.
    if !is_object(json) {
        return None;
    }
    let envelope: raw::Envelope<'_> = unique::from_str(json).ok()?;
    let version = parse_version(envelope.version.get())?;
    let payload = envelope.payload.get();
    if !is_object(payload) {
        return None;
    }
    // One pass for the hot request. It fails on any repeated member; the type is then
    // read alone, refusing only a repeated `type`, and the request's own read
    // answers the other repeats.
    let (payload_type, update) = match unique::from_str::<raw::PayloadHead<'_>>(payload) {
        Ok(head) => {
            let update = (head.kind.0 == "EncryptedUpdate").then(|| {
                (
                    head.recipient_id.map(|text| text.0),
                    head.ciphertext.map(RawValue::get),
                )
            });
            (head.kind.0.into_owned(), update)
        }
        Err(_) => {
            let payload_type: raw::PayloadType<'_> = serde_json::from_str(payload).ok()?;
            (payload_type.kind.0.into_owned(), None)
        }
    };
    Some(Envelope {
        version,
        message_id: envelope.message_id,
        timestamp: envelope.timestamp,
        payload_type,
        payload,
        update,
    })
}

/// A non-negative JSON integer as u64, saturating: any value beyond u64 is still a
/// version other than 1 (`unsupported_version`), not a malformed frame. JSON number
/// grammar means that a text of ASCII digits only has no sign, fraction or exponent.
fn parse_version(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().unwrap_or(u64::MAX))
}

/// Whether a JSON text, already known to be one value or about to be parsed as one,
/// starts with an object.
fn is_object(json: &str) -> bool {
    json.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// Best effort for §3.6 step 4: the envelope's `message_id` when it is a string.
fn read_message_id(json: &str) -> Option<String> {
    if !is_object(json) {
        return None;
    }
    serde_json::from_str::<raw::MessageIdOnly>(json)
        .ok()
        .map(|only| only.message_id)
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
    if message.len() >= NOISE_OPENING_BYTES_MIN && message.starts_with(&NOISE_PREFIX) {
        return Err(CloseReason::NoiseNotSupported);
    }
    let envelope = decode_envelope(message).map_err(|_| CloseReason::HandshakeRequired)?;
    if envelope.version != 1 {
        return Err(CloseReason::UnsupportedVersion);
    }
    if envelope.payload_type != "Handshake" {
        return Err(CloseReason::HandshakeRequired);
    }
    let fields: raw::Handshake<'_> =
        unique::from_str(envelope.payload).map_err(|_| CloseReason::HandshakeRequired)?;
    let optional_id = |text: &Option<raw::Text<'_>>| match text {
        None => Ok(None),
        Some(text) => Id64::parse(&text.0)
            .map(Some)
            .ok_or(CloseReason::InvalidHandshake),
    };
    let client_id = Id64::parse(&fields.client_id.0).ok_or(CloseReason::InvalidHandshake)?;
    let device_id = optional_id(&fields.device_id)?;
    let routing_token = optional_id(&fields.routing_token)?;
    let auth = match (
        &fields.identity_public_key,
        &fields.nonce,
        &fields.signature,
        fields.timestamp,
    ) {
        (Some(key), Some(nonce), Some(signature), Some(timestamp)) => Some(HandshakeAuth {
            identity_public_key: Id64::parse(&key.0).ok_or(CloseReason::AuthenticationFailed)?,
            nonce: decode_hex::<32>(&nonce.0).ok_or(CloseReason::AuthenticationFailed)?,
            signature: decode_hex::<64>(&signature.0).ok_or(CloseReason::AuthenticationFailed)?,
            timestamp,
        }),
        _ => None,
    };
    Ok(Handshake {
        client_id,
        device_id,
        routing_token,
        suppress_presence: fields.suppress_presence.unwrap_or(false),
        auth,
    })
}
