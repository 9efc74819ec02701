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
/// The same for one `PeerAdvertisement` entry, without its two strings.
const ADVERTISED_PEER_JSON_BYTES: usize = 80;

mod raw;
mod values;

pub use values::{AdvertisedPeer, FedMessage, Ignored};

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
        "PeerAdvertisement" => fields::<raw::PeerAdvertisement>(payload)?.into_message(),
        "PeerAdvertisementAck" => fields::<raw::PeerAdvertisementAck>(payload)?.into_message(),
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
        FedMessage::PeerAdvertisement { peers } => {
            frame.literal(",\"peers\":[");
            for (i, peer) in peers.iter().enumerate() {
                frame.literal(if i == 0 {
                    "{\"relay_id\":"
                } else {
                    ",{\"relay_id\":"
                });
                frame.string(&peer.relay_id);
                frame.literal(",\"url\":");
                frame.string(&peer.url);
                frame.literal(",\"capacity_pct\":");
                frame.number(u64::from(peer.capacity_pct));
                frame.literal(",\"last_seen_secs\":");
                frame.number(peer.last_seen_secs);
                frame.literal("}");
            }
            frame.literal("]");
        }
        FedMessage::PeerAdvertisementAck { new_peers_count } => {
            frame.literal(",\"new_peers_count\":");
            frame.number(*new_peers_count);
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
        FedMessage::PeerAdvertisement { peers } => peers
            .iter()
            .map(|p| ADVERTISED_PEER_JSON_BYTES + p.relay_id.len() + p.url.len())
            .sum(),
        FedMessage::CapacityReport { .. }
        | FedMessage::DrainNotice { .. }
        | FedMessage::DrainAck
        | FedMessage::OffloadRequest { .. }
        | FedMessage::PeerAdvertisementAck { .. } => 0,
    };
    MEMBERS_JSON_BYTES + variable
}

/// Lower-case hex SHA-256 of `data`: the `integrity_hash` of `OffloadBlob` (§11.2,
/// Appendix A.4).
pub fn integrity_hash(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
