//! The frame prefix (§3.1) and the envelope (§3.2, §3.6 steps 3 and 4): the JSON
//! text behind a correct prefix, and the envelope's members with the payload still
//! raw. A repeated envelope member or payload `type` is malformed (§3.3).

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::protocol::{raw, unique};

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
    pub(super) update: Option<(Option<Cow<'a, str>>, Option<&'a str>)>,
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
pub(super) fn is_object(json: &str) -> bool {
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
