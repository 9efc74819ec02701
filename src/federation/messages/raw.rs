//! The serde shapes of the payloads that have fields. serde derive refuses a missing,
//! repeated or mistyped known member (an integer beyond u8 included) and ignores
//! unknown ones, which is what §3.3 asks for; `Bytes` is read only from a JSON array
//! of integers 0–255. Each shape's `into_message` takes every field by name, so a
//! field added to a shape and not to its message does not compile.

use serde::Deserialize;

use super::values::{AdvertisedPeer, FedMessage};

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

#[derive(Deserialize)]
pub(super) struct PeerAdvertisement {
    peers: Vec<AdvertisedEntry>,
}

#[derive(Deserialize)]
struct AdvertisedEntry {
    relay_id: String,
    url: String,
    capacity_pct: u8,
    last_seen_secs: u64,
}

impl PeerAdvertisement {
    pub(super) fn into_message(self) -> FedMessage {
        let PeerAdvertisement { peers } = self;
        let peers = peers
            .into_iter()
            .map(|entry| {
                let AdvertisedEntry {
                    relay_id,
                    url,
                    capacity_pct,
                    last_seen_secs,
                } = entry;
                AdvertisedPeer {
                    relay_id,
                    url,
                    capacity_pct,
                    last_seen_secs,
                }
            })
            .collect();
        FedMessage::PeerAdvertisement { peers }
    }
}

#[derive(Deserialize)]
pub(super) struct PeerAdvertisementAck {
    new_peers_count: u64,
}

impl PeerAdvertisementAck {
    pub(super) fn into_message(self) -> FedMessage {
        let PeerAdvertisementAck { new_peers_count } = self;
        FedMessage::PeerAdvertisementAck { new_peers_count }
    }
}
