//! Sans-I/O codec of the federation messages (PROTOCOL.md §11.1, §11.2): one binary
//! WebSocket message in, one [`FedMessage`] or the reason it is ignored out; one
//! message in, one whole frame out. The frame prefix, the envelope and the compact
//! JSON writer are the client protocol's (§3.1–§3.5). Values are only type-checked
//! here: id formats, `hop_count`, the integrity hash and the handshake `version` are
//! judged by the link that receives them (§11.4).
//!
//! `encode_with_id` stays one function over 70 lines: one match over every message,
//! each arm writing that message's members in §11.2 order. It is the wire layout of
//! the federation protocol as one table; split up, it would no longer read as one.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::protocol::decode::{decode_envelope_text, frame_text, payload_fields};
use crate::protocol::encode::{BYTES_JSON_BYTES_PER_ELEMENT, envelope, with_new_id};

/// JSON bytes of the members of the widest payload (PeerHandshakeAck): their names,
/// punctuation and numbers at their widest, without strings and `data`.
const MEMBERS_JSON_BYTES: usize = 160;

/// A federation message (§11.2), its fields as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FedMessage {
    /// Initiator, first message.
    PeerHandshake {
        relay_id: String,
        version: u8,
        /// The initiator's own `RELAY_LISTEN_ADDR`, informational.
        listen_addr: String,
    },
    /// Acceptor's answer to `PeerHandshake`.
    PeerHandshakeAck {
        relay_id: String,
        version: u8,
        accepted: bool,
        capacity_used_bytes: u64,
        capacity_max_bytes: u64,
    },
    /// Initiator only.
    OffloadBlob {
        /// The sender's local blob id.
        blob_id: String,
        /// 64-hex, not checked by the codec.
        routing_id: String,
        data: Vec<u8>,
        created_at_secs: u64,
        /// Lower-case hex SHA-256 of `data` ([`integrity_hash`]), not checked by the codec.
        integrity_hash: String,
        hop_count: u8,
    },
    /// Acceptor's answer to `OffloadBlob`; `reason` is written as `null` when `None`.
    OffloadAck {
        blob_id: String,
        accepted: bool,
        reason: Option<String>,
    },
    CapacityReport {
        used_bytes: u64,
        max_bytes: u64,
        blob_count: u64,
    },
    DrainNotice {
        drain_timeout_secs: u64,
    },
    DrainAck,
    /// Defined for compatibility: this version never sends it and ignores it.
    OffloadRequest {
        count: u64,
        total_bytes: u64,
    },
}

impl FedMessage {
    /// The payload `"type"` of this message.
    pub fn type_name(&self) -> &'static str {
        match self {
            FedMessage::PeerHandshake { .. } => "PeerHandshake",
            FedMessage::PeerHandshakeAck { .. } => "PeerHandshakeAck",
            FedMessage::OffloadBlob { .. } => "OffloadBlob",
            FedMessage::OffloadAck { .. } => "OffloadAck",
            FedMessage::CapacityReport { .. } => "CapacityReport",
            FedMessage::DrainNotice { .. } => "DrainNotice",
            FedMessage::DrainAck => "DrainAck",
            FedMessage::OffloadRequest { .. } => "OffloadRequest",
        }
    }
}

/// Why a received federation message is ignored (§11.1): each is counted in
/// `relay_federation_ignored_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Shorter than 4 bytes, a length prefix other than the text's length, or a text
    /// that is not UTF-8 (§3.1).
    MalformedFrame,
    /// The text is not a JSON envelope of §3.2: not JSON, not an object, an envelope
    /// member missing, repeated or mistyped, or a payload without one string `"type"`.
    BadEnvelope,
    /// The envelope `version` is a non-negative integer other than 1.
    UnsupportedVersion,
    /// The payload `"type"` is not one of §11.2 (`PeerAdvertisement` included).
    UnknownType,
    /// A field of the type is missing, repeated, of the wrong JSON type or out of its
    /// range (`version` and `hop_count` are u8).
    BadPayload,
}

/// Decodes one binary WebSocket message (frame of §3.1 + envelope of §3.2 + a
/// federation payload). Never panics; the work is linear in the message length.
pub fn decode(message: &[u8]) -> Result<FedMessage, Ignored> {
    let json = frame_text(message).ok_or(Ignored::MalformedFrame)?;
    let envelope = decode_envelope_text(json).ok_or(Ignored::BadEnvelope)?;
    if envelope.version != 1 {
        return Err(Ignored::UnsupportedVersion);
    }
    decode_payload(&envelope.payload_type, envelope.payload)
}

/// The payload of a version-1 envelope, given its `"type"`: the type picks the serde
/// shape, which then becomes the message.
fn decode_payload(payload_type: &str, payload: &str) -> Result<FedMessage, Ignored> {
    let message = match payload_type {
        "PeerHandshake" => fields::<raw::PeerHandshake>(payload)?.into_message(),
        "PeerHandshakeAck" => fields::<raw::PeerHandshakeAck>(payload)?.into_message(),
        "OffloadBlob" => fields::<raw::OffloadBlob>(payload)?.into_message(),
        "OffloadAck" => fields::<raw::OffloadAck>(payload)?.into_message(),
        "CapacityReport" => fields::<raw::CapacityReport>(payload)?.into_message(),
        "DrainNotice" => fields::<raw::DrainNotice>(payload)?.into_message(),
        "DrainAck" => fields::<raw::DrainAck>(payload)?.into_message(),
        "OffloadRequest" => fields::<raw::OffloadRequest>(payload)?.into_message(),
        _ => return Err(Ignored::UnknownType),
    };
    Ok(message)
}

fn fields<'a, T: Deserialize<'a>>(payload: &'a str) -> Result<T, Ignored> {
    payload_fields(payload).ok_or(Ignored::BadPayload)
}

/// Encodes one message as a complete frame (length prefix + compact JSON envelope
/// with a fresh UUIDv4 `message_id` and `timestamp` = `now_secs`), its members in the
/// order of §11.2.
pub fn encode(message: &FedMessage, now_secs: u64) -> Vec<u8> {
    with_new_id(|id| encode_with_id(message, now_secs, id))
}

/// [`encode`] with a given envelope `message_id`.
pub fn encode_with_id(message: &FedMessage, now_secs: u64, message_id: &str) -> Vec<u8> {
    let mut frame = envelope(
        json_bytes(message),
        now_secs,
        message_id,
        message.type_name(),
    );
    match message {
        FedMessage::PeerHandshake {
            relay_id,
            version,
            listen_addr,
        } => {
            frame.literal(",\"relay_id\":");
            frame.string(relay_id);
            frame.literal(",\"version\":");
            frame.number(u64::from(*version));
            frame.literal(",\"listen_addr\":");
            frame.string(listen_addr);
        }
        FedMessage::PeerHandshakeAck {
            relay_id,
            version,
            accepted,
            capacity_used_bytes,
            capacity_max_bytes,
        } => {
            frame.literal(",\"relay_id\":");
            frame.string(relay_id);
            frame.literal(",\"version\":");
            frame.number(u64::from(*version));
            frame.literal(",\"accepted\":");
            frame.boolean(*accepted);
            frame.literal(",\"capacity_used_bytes\":");
            frame.number(*capacity_used_bytes);
            frame.literal(",\"capacity_max_bytes\":");
            frame.number(*capacity_max_bytes);
        }
        FedMessage::OffloadBlob {
            blob_id,
            routing_id,
            data,
            created_at_secs,
            integrity_hash,
            hop_count,
        } => {
            frame.literal(",\"blob_id\":");
            frame.string(blob_id);
            frame.literal(",\"routing_id\":");
            frame.string(routing_id);
            frame.literal(",\"data\":");
            frame.bytes(data);
            frame.literal(",\"created_at_secs\":");
            frame.number(*created_at_secs);
            frame.literal(",\"integrity_hash\":");
            frame.string(integrity_hash);
            frame.literal(",\"hop_count\":");
            frame.number(u64::from(*hop_count));
        }
        FedMessage::OffloadAck {
            blob_id,
            accepted,
            reason,
        } => {
            frame.literal(",\"blob_id\":");
            frame.string(blob_id);
            frame.literal(",\"accepted\":");
            frame.boolean(*accepted);
            frame.literal(",\"reason\":");
            match reason {
                Some(reason) => frame.string(reason),
                None => frame.literal("null"),
            }
        }
        FedMessage::CapacityReport {
            used_bytes,
            max_bytes,
            blob_count,
        } => {
            frame.literal(",\"used_bytes\":");
            frame.number(*used_bytes);
            frame.literal(",\"max_bytes\":");
            frame.number(*max_bytes);
            frame.literal(",\"blob_count\":");
            frame.number(*blob_count);
        }
        FedMessage::DrainNotice { drain_timeout_secs } => {
            frame.literal(",\"drain_timeout_secs\":");
            frame.number(*drain_timeout_secs);
        }
        FedMessage::DrainAck => {}
        FedMessage::OffloadRequest { count, total_bytes } => {
            frame.literal(",\"count\":");
            frame.number(*count);
            frame.literal(",\"total_bytes\":");
            frame.number(*total_bytes);
        }
    }
    frame.finish()
}

/// JSON bytes of a payload's members, for the frame's initial capacity: exact enough
/// that a message is written without growing its buffer unless its strings need escapes.
fn json_bytes(message: &FedMessage) -> usize {
    let variable = match message {
        FedMessage::PeerHandshake {
            relay_id,
            listen_addr,
            ..
        } => relay_id.len() + listen_addr.len(),
        FedMessage::PeerHandshakeAck { relay_id, .. } => relay_id.len(),
        FedMessage::OffloadBlob {
            blob_id,
            routing_id,
            data,
            integrity_hash,
            ..
        } => {
            blob_id.len()
                + routing_id.len()
                + BYTES_JSON_BYTES_PER_ELEMENT * data.len()
                + integrity_hash.len()
        }
        FedMessage::OffloadAck {
            blob_id, reason, ..
        } => blob_id.len() + reason.as_ref().map_or(0, String::len),
        FedMessage::CapacityReport { .. }
        | FedMessage::DrainNotice { .. }
        | FedMessage::DrainAck
        | FedMessage::OffloadRequest { .. } => 0,
    };
    MEMBERS_JSON_BYTES + variable
}

/// Lower-case hex SHA-256 of `data`: the `integrity_hash` of `OffloadBlob` (§11.2,
/// Appendix A.4).
pub fn integrity_hash(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The serde shapes of the payloads that have fields. serde derive refuses a missing,
/// repeated or mistyped known member (an integer beyond u8 included) and ignores
/// unknown ones, which is what §3.3 asks for; `Bytes` is read only from a JSON array
/// of integers 0–255. Each shape's `into_message` takes every field by name, so a
/// field added to a shape and not to its message does not compile.
mod raw {
    use serde::Deserialize;

    use super::FedMessage;

    #[derive(Deserialize)]
    pub(super) struct PeerHandshake {
        relay_id: String,
        version: u8,
        listen_addr: String,
    }

    impl PeerHandshake {
        pub(super) fn into_message(self) -> FedMessage {
            let PeerHandshake {
                relay_id,
                version,
                listen_addr,
            } = self;
            FedMessage::PeerHandshake {
                relay_id,
                version,
                listen_addr,
            }
        }
    }

    #[derive(Deserialize)]
    pub(super) struct PeerHandshakeAck {
        relay_id: String,
        version: u8,
        accepted: bool,
        capacity_used_bytes: u64,
        capacity_max_bytes: u64,
    }

    impl PeerHandshakeAck {
        pub(super) fn into_message(self) -> FedMessage {
            let PeerHandshakeAck {
                relay_id,
                version,
                accepted,
                capacity_used_bytes,
                capacity_max_bytes,
            } = self;
            FedMessage::PeerHandshakeAck {
                relay_id,
                version,
                accepted,
                capacity_used_bytes,
                capacity_max_bytes,
            }
        }
    }

    #[derive(Deserialize)]
    pub(super) struct OffloadBlob {
        blob_id: String,
        routing_id: String,
        data: crate::protocol::raw::Bytes,
        created_at_secs: u64,
        integrity_hash: String,
        hop_count: u8,
    }

    impl OffloadBlob {
        pub(super) fn into_message(self) -> FedMessage {
            let OffloadBlob {
                blob_id,
                routing_id,
                data,
                created_at_secs,
                integrity_hash,
                hop_count,
            } = self;
            FedMessage::OffloadBlob {
                blob_id,
                routing_id,
                data: data.0,
                created_at_secs,
                integrity_hash,
                hop_count,
            }
        }
    }

    /// `reason` absent or `null` is `None` (§3.3).
    #[derive(Deserialize)]
    pub(super) struct OffloadAck {
        blob_id: String,
        accepted: bool,
        reason: Option<String>,
    }

    impl OffloadAck {
        pub(super) fn into_message(self) -> FedMessage {
            let OffloadAck {
                blob_id,
                accepted,
                reason,
            } = self;
            FedMessage::OffloadAck {
                blob_id,
                accepted,
                reason,
            }
        }
    }

    #[derive(Deserialize)]
    pub(super) struct CapacityReport {
        used_bytes: u64,
        max_bytes: u64,
        blob_count: u64,
    }

    impl CapacityReport {
        pub(super) fn into_message(self) -> FedMessage {
            let CapacityReport {
                used_bytes,
                max_bytes,
                blob_count,
            } = self;
            FedMessage::CapacityReport {
                used_bytes,
                max_bytes,
                blob_count,
            }
        }
    }

    #[derive(Deserialize)]
    pub(super) struct DrainNotice {
        drain_timeout_secs: u64,
    }

    impl DrainNotice {
        pub(super) fn into_message(self) -> FedMessage {
            let DrainNotice { drain_timeout_secs } = self;
            FedMessage::DrainNotice { drain_timeout_secs }
        }
    }

    /// No fields; read so that repeated member names are refused (§3.3).
    #[derive(Deserialize)]
    pub(super) struct DrainAck {}

    impl DrainAck {
        pub(super) fn into_message(self) -> FedMessage {
            let DrainAck {} = self;
            FedMessage::DrainAck
        }
    }

    #[derive(Deserialize)]
    pub(super) struct OffloadRequest {
        count: u64,
        total_bytes: u64,
    }

    impl OffloadRequest {
        pub(super) fn into_message(self) -> FedMessage {
            let OffloadRequest { count, total_bytes } = self;
            FedMessage::OffloadRequest { count, total_bytes }
        }
    }
}
