//! Gossip peer discovery (PROTOCOL.md §15.2): every
//! `RELAY_FEDERATION_GOSSIP_INTERVAL` a `PeerAdvertisement` on each open outbound
//! link, naming the other peers this relay has outbound links to; an advertisement
//! received on any link is answered with the number of peers it taught us, which
//! are remembered for `RELAY_FEDERATION_PEER_TTL` and never dialled: discovery
//! informs the operator (`relay_federation_discovered_peers`) and nothing else.
//!
//! Entries whose URL or relay id are not valid by the §13.2 rules are skipped, and
//! so are URLs over `FEDERATION_GOSSIP_URL_BYTES_MAX`; the
//! discovered peers themselves are bounded in [`super::registry::Discovered`].

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{is_relay_id, normalise_peer};
use crate::limits::{FEDERATION_GOSSIP_TICK, FEDERATION_GOSSIP_URL_BYTES_MAX};
use crate::process::unix_now;

use super::messages::{self, AdvertisedPeer, FedMessage};
use super::node::{LinkOut, Node};
use super::registry::Capacity;

/// A `PeerAdvertisement` received (§15.2): remembers the peers it names that are
/// not this relay, nor a configured peer (by normalised URL, or by the relay id
/// reached through one), and answers with how many were not known yet.
pub fn receive(node: &Node, peers: Vec<AdvertisedPeer>) -> Vec<u8> {
    let now = unix_now();
    let expires_at = now.saturating_add(node.config.peer_ttl_secs);
    let mut new_peers_count = 0;
    {
        let registry = node.registry.borrow();
        let mut discovered = node.discovered.borrow_mut();
        discovered.forget_expired(now);
        for peer in peers {
            if peer.url.len() > FEDERATION_GOSSIP_URL_BYTES_MAX {
                continue;
            }
            let Some(url) = normalise_peer(&peer.url) else {
                continue;
            };
            if !is_relay_id(&peer.relay_id) || peer.relay_id == node.relay_id {
                continue;
            }
            let configured = node.config.federation_peers.contains(&url)
                || registry
                    .get(&peer.relay_id)
                    .is_some_and(|known| known.url.is_some());
            if configured {
                continue;
            }
            if discovered.remember(&peer.relay_id, &url, expires_at) {
                new_peers_count += 1;
            }
        }
    }
    node.publish_discovered();
    let ack = FedMessage::PeerAdvertisementAck { new_peers_count };
    messages::encode(&ack, now)
}

/// Every gossip interval, an advertisement on each outbound link; every tick,
/// expired discoveries forgotten. Runs until shutdown.
pub async fn run(node: Rc<Node>) {
    let interval = Duration::from_secs(node.config.gossip_interval_secs);
    let mut due = Instant::now() + interval;
    loop {
        glommio::timer::sleep(FEDERATION_GOSSIP_TICK).await;
        if node.stopping.get() {
            return;
        }
        node.discovered.borrow_mut().forget_expired(unix_now());
        node.publish_discovered();
        if Instant::now() >= due {
            advertise(&node);
            due = Instant::now() + interval;
        }
    }
}

/// One `PeerAdvertisement` per open outbound link, naming every other peer with
/// an open outbound link (not the receiver, not this relay); none when that list
/// is empty.
fn advertise(node: &Node) {
    let (entries, links): (Vec<AdvertisedPeer>, Vec<_>) = {
        let registry = node.registry.borrow();
        registry
            .outbound()
            .filter(|(relay_id, _)| *relay_id != node.relay_id)
            .filter_map(|(relay_id, peer)| {
                let entry = AdvertisedPeer {
                    relay_id: relay_id.to_owned(),
                    url: peer.url.clone()?,
                    capacity_pct: capacity_pct(peer.capacity),
                    last_seen_secs: peer.last_seen_secs,
                };
                Some((entry, peer.outbound?))
            })
            .unzip()
    };
    let now = unix_now();
    for (receiver, link) in links.iter().enumerate() {
        let peers: Vec<AdvertisedPeer> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != receiver)
            .map(|(_, entry)| entry.clone())
            .collect();
        if peers.is_empty() {
            continue;
        }
        let frame = messages::encode(&FedMessage::PeerAdvertisement { peers }, now);
        node.send_soon(*link, LinkOut::Frame(frame));
    }
}

/// ⌊100 · used / max⌋ from the last report, 0 when max is 0 or none came; a
/// peer over its maximum saturates at 255 (the field is a u8).
fn capacity_pct(capacity: Option<Capacity>) -> u8 {
    match capacity {
        Some(Capacity { used, max, .. }) if max > 0 => {
            let pct = u128::from(used) * 100 / u128::from(max);
            u8::try_from(pct).unwrap_or(u8::MAX)
        }
        _ => 0,
    }
}
