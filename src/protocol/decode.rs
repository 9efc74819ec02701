//! Decoding of client frames: the frame prefix (§3.1), the envelope (§3.2), the
//! Handshake acceptance checks (§4.2, §4.3 step 1), and request payloads (§5) split
//! into the phases of §3.6 so that the session can take rate tokens in between.
//!
//! This file reads the Handshake; `envelope` reads the prefix and the envelope,
//! `request` the request payloads (steps 7 and 8), `validate` checks their values
//! (step 10).

mod envelope;
mod request;
mod validate;

pub use envelope::{Envelope, Malformed, decode_envelope};
pub(crate) use envelope::{decode_envelope_text, frame_text};
pub(crate) use request::payload_fields;
pub use request::{AckStatus, Request, ShapeError, decode_request};
pub use validate::{ValidRequest, ValueError, validate};

use super::codes::CloseReason;
use super::ids::{Id64, decode_hex};

use super::raw;
use super::unique;

/// A Noise (v2) opening is at least this long and starts with `NOISE_PREFIX` (§4.2).
const NOISE_OPENING_BYTES_MIN: usize = 51;
const NOISE_PREFIX: [u8; 3] = [0x00, 0x56, 0x32];

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

/// §4.2 check 2: the first binary data message is a Noise opening (§15.1).
pub fn is_noise_opening(message: &[u8]) -> bool {
    message.len() >= NOISE_OPENING_BYTES_MIN && message.starts_with(&NOISE_PREFIX)
}

/// Runs §4.2 checks 3 to 6 and §4.3 step 1 on a Handshake frame: the first binary
/// data message of a plain session, or the first frame inside a Noise one. (Checks
/// 1 and 2, text frames and Noise openings, are the caller's.) Authentication
/// field format errors give `AuthenticationFailed`.
pub fn decode_handshake(message: &[u8]) -> Result<Handshake, CloseReason> {
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
