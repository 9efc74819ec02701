//! Each federation message received on an established link (PROTOCOL.md §11.4
//! item 4, §11.6, §11.7, §14.1), to its handler: one call per kind. Offers are
//! taken only on inbound links and their acks only on outbound ones; anything
//! else is ignored and counted, never answered with an `Error`.
//!
//! Invariant: an `OffloadAck accepted` goes back only after the owner shard has
//! committed the blob (`receive_offer` waits for its answer).

use std::rc::Rc;

use crate::mesh::{AcceptOffload, MeshMessage};
use crate::metrics::OffloadReceivedResult;
use crate::process::unix_now;
use crate::protocol::Id64;

use super::super::gossip;
use super::super::messages::{self, FedMessage};
use super::super::node::{AckOutcome, Node};
use super::super::registry::{Capacity, LinkId};

/// Which side dialled (§11.3): offers travel only on outbound links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSide {
    Outbound,
    Inbound,
}

/// One data message on an established link; returns the frames to send back.
pub async fn handle(
    node: &Rc<Node>,
    link: LinkId,
    relay_id: &str,
    side: LinkSide,
    bytes: &[u8],
) -> Vec<Vec<u8>> {
    node.registry.borrow_mut().seen(relay_id, unix_now());
    let Ok(message) = messages::decode(bytes) else {
        node.metrics().federation_ignored_total.inc();
        return Vec::new();
    };
    match (message, side) {
        (
            FedMessage::OffloadBlob {
                blob_id,
                routing_id,
                data,
                created_at_secs,
                integrity_hash,
                hop_count,
            },
            LinkSide::Inbound,
        ) => {
            let offer = Offer {
                source: relay_id,
                blob_id: &blob_id,
                routing_id: &routing_id,
                data,
                created_at_secs,
                integrity_hash: &integrity_hash,
                hop_count,
            };
            let reason = receive_offer(node, offer).await;
            vec![offload_ack(node, blob_id, reason)]
        }
        (
            FedMessage::OffloadAck {
                blob_id,
                accepted,
                reason,
            },
            LinkSide::Outbound,
        ) => settle_offer(node, link, &blob_id, accepted, reason),
        (
            FedMessage::CapacityReport {
                used_bytes,
                max_bytes,
                blob_count,
            },
            _,
        ) => {
            let capacity = Capacity {
                used: used_bytes,
                max: max_bytes,
                blob_count,
            };
            node.registry
                .borrow_mut()
                .report_capacity(relay_id, capacity);
            Vec::new()
        }
        (FedMessage::DrainNotice { .. }, _) => drain_notice(node, relay_id),
        (FedMessage::DrainAck, _) => drain_ack(node, link),
        (FedMessage::PeerAdvertisement { peers }, _) => {
            if node.config.gossip_enabled {
                vec![gossip::receive(node, peers)]
            } else {
                // Gossip off: ignored and counted like an unknown type (§15.2).
                node.metrics().federation_ignored_total.inc();
                Vec::new()
            }
        }
        // Anything else is ignored (§11.4 item 5, §11.5): handshakes repeated, an
        // OffloadBlob on an outbound link, OffloadRequest, PeerAdvertisementAck.
        _ => Vec::new(),
    }
}

/// Our OffloadAck for an offer: accepted when there is no refusal reason.
fn offload_ack(node: &Node, blob_id: String, reason: Option<&'static str>) -> Vec<u8> {
    let accepted = reason.is_none();
    let result = if accepted {
        OffloadReceivedResult::Accepted
    } else {
        OffloadReceivedResult::Refused
    };
    node.metrics().inc_offload_received(result);
    let ack = FedMessage::OffloadAck {
        blob_id,
        accepted,
        reason: reason.map(str::to_owned),
    };
    messages::encode(&ack, unix_now())
}

/// The peer's OffloadAck to one of our offers, handed to the offload manager.
fn settle_offer(
    node: &Node,
    link: LinkId,
    blob_id: &str,
    accepted: bool,
    reason: Option<String>,
) -> Vec<Vec<u8>> {
    // Only the link the offer went out on may answer it: a late ack from a
    // peer the blob was offered to earlier must not settle a later offer.
    let waiting = {
        let mut pending = node.pending_acks.borrow_mut();
        match pending.get(blob_id) {
            Some((on, _)) if *on == link.0 => pending.remove(blob_id),
            _ => None,
        }
    };
    if let Some((_, answer)) = waiting {
        let outcome = if accepted {
            AckOutcome::Accepted
        } else {
            AckOutcome::Refused(reason.unwrap_or_default())
        };
        let _ = answer.try_send(outcome);
    }
    Vec::new()
}

/// The peer is shutting down (§14.1): no more offers to it; we acknowledge.
fn drain_notice(node: &Node, relay_id: &str) -> Vec<Vec<u8>> {
    tracing::info!(relay_id = %relay_id, "federation peer is draining");
    node.registry.borrow_mut().mark_draining(relay_id);
    node.publish_peers();
    vec![messages::encode(&FedMessage::DrainAck, unix_now())]
}

/// The peer answered our DrainNotice: drain stops waiting for this link.
fn drain_ack(node: &Node, link: LinkId) -> Vec<Vec<u8>> {
    if let Some(entry) = node.links.borrow_mut().get_mut(&link.0) {
        entry.drain_acked = true;
    }
    Vec::new()
}

/// An OffloadBlob as received.
struct Offer<'a> {
    source: &'a str,
    blob_id: &'a str,
    routing_id: &'a str,
    data: Vec<u8>,
    created_at_secs: u64,
    integrity_hash: &'a str,
    hop_count: u8,
}

/// The acceptor's checks in the order of §11.4 item 4, then the store. Returns the
/// refusal reason, or `None` once the blob has committed (or was already held).
async fn receive_offer(node: &Node, offer: Offer<'_>) -> Option<&'static str> {
    if offer.hop_count >= 1 {
        return Some("hop_count too high");
    }
    if !messages::integrity_hash(&offer.data).eq_ignore_ascii_case(offer.integrity_hash) {
        return Some("integrity check failed");
    }
    let Some(recipient) = Id64::parse(offer.routing_id) else {
        return Some("invalid routing_id");
    };
    let now = unix_now();
    if offer
        .created_at_secs
        .saturating_add(node.config.blob_ttl_secs)
        <= now
    {
        return Some("expired");
    }
    let key = (offer.source.to_owned(), offer.blob_id.to_owned());
    if node.received.borrow().contains(&key) {
        return None;
    }
    if node
        .shared
        .draining
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Some("draining");
    }
    let limit = node.config.federation_offload_refuse * node.config.max_storage_bytes as f64;
    if (node.used_bytes() + offer.data.len() as u64) as f64 > limit {
        return Some("at capacity");
    }
    let (reply, answer) = flume::bounded(1);
    let owner = crate::protocol::shard_of(&recipient, node.shards.len());
    let message = MeshMessage::AcceptOffload(AcceptOffload {
        recipient,
        data: offer.data,
        created_at_secs: offer.created_at_secs,
        hop_count: offer.hop_count + 1,
        reply,
    });
    if node.shards[owner].send_async(message).await.is_err() {
        return Some("storage unavailable");
    }
    match answer.recv_async().await {
        Ok(true) => {
            node.received.borrow_mut().insert(key);
            None
        }
        _ => Some("storage unavailable"),
    }
}
