//! The federation messages as values (§11.2, §15.2), and why a received one is
//! ignored; `super` reads and writes them.

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
    /// Gossip (§15.2): the peers the sender has outbound links to.
    PeerAdvertisement {
        peers: Vec<AdvertisedPeer>,
    },
    /// The answer to `PeerAdvertisement`: how many advertised peers were new.
    PeerAdvertisementAck {
        new_peers_count: u64,
    },
}

/// One entry of a `PeerAdvertisement` (§15.2), as on the wire (not yet judged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedPeer {
    pub relay_id: String,
    pub url: String,
    pub capacity_pct: u8,
    pub last_seen_secs: u64,
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
            FedMessage::PeerAdvertisement { .. } => "PeerAdvertisement",
            FedMessage::PeerAdvertisementAck { .. } => "PeerAdvertisementAck",
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
    /// The payload `"type"` is not one of §11.2 or §15.2.
    UnknownType,
    /// A field of the type is missing, repeated, of the wrong JSON type or out of its
    /// range (`version` and `hop_count` are u8).
    BadPayload,
}
