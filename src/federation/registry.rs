//! The peer registry (PROTOCOL.md §11.3): per `relay_id`, the configured URL, the
//! outbound and inbound links (kept apart, so bidirectional peering never loses
//! one), the last known capacity, the draining mark and what offloading learned
//! about the peer. Pure bookkeeping: the link tasks and the offload manager drive it.
//!
//! Bounds: a peer enters only through a successful handshake; inbound handshakes
//! from unknown relays are refused once `FEDERATION_PEERS_MAX` are known
//! (configured peers, bounded by the configuration, always enter); each peer's set
//! of refused blobs holds at most `FEDERATION_REFUSED_BLOBS_MAX` ids. The peers
//! only gossip told of (§15.2) are kept apart, at most
//! `FEDERATION_DISCOVERED_PEERS_MAX`, the one advertised least recently forgotten
//! first.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::limits::{
    FEDERATION_DISCOVERED_PEERS_MAX, FEDERATION_PEERS_MAX, FEDERATION_REFUSED_BLOBS_MAX,
};
use crate::storage::BlobId;

/// One open link, as the registry knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkId(pub u64);

/// A peer's last reported capacity (§11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    pub used: u64,
    pub max: u64,
    pub blob_count: u64,
}

impl Capacity {
    /// `used / max`, or `None` when `max` is 0 (the peer takes nothing).
    pub fn ratio(&self) -> Option<f64> {
        (self.max > 0).then(|| self.used as f64 / self.max as f64)
    }
}

/// A bounded set that forgets its oldest members first.
#[derive(Debug, Default)]
pub struct BoundedSet<T: std::hash::Hash + Eq + Clone> {
    members: HashSet<T, ahash::RandomState>,
    order: VecDeque<T>,
    bound: usize,
}

impl<T: std::hash::Hash + Eq + Clone> BoundedSet<T> {
    pub fn new(bound: usize) -> BoundedSet<T> {
        BoundedSet {
            members: HashSet::default(),
            order: VecDeque::new(),
            bound: bound.max(1),
        }
    }

    pub fn insert(&mut self, value: T) {
        if !self.members.insert(value.clone()) {
            return;
        }
        self.order.push_back(value);
        if self.order.len() > self.bound
            && let Some(oldest) = self.order.pop_front()
        {
            self.members.remove(&oldest);
        }
    }

    pub fn contains(&self, value: &T) -> bool {
        self.members.contains(value)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.order.iter()
    }
}

/// What the registry holds per peer.
#[derive(Debug)]
pub struct Peer {
    /// The configured URL of the outbound link that reached it (hints carry it).
    pub url: Option<String>,
    pub outbound: Option<LinkId>,
    pub inbound: Option<LinkId>,
    pub capacity: Option<Capacity>,
    pub draining: bool,
    /// Refused with `capacity` or `draining`: no offers until a report shows room.
    pub paused: bool,
    /// Blobs this peer refused for another reason: never offered to it again.
    pub refused: BoundedSet<BlobId>,
    /// Unix time of the last message received from it on any link (§15.2).
    pub last_seen_secs: u64,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            url: None,
            outbound: None,
            inbound: None,
            capacity: None,
            draining: false,
            paused: false,
            refused: BoundedSet::new(FEDERATION_REFUSED_BLOBS_MAX),
            last_seen_secs: 0,
        }
    }
}

/// Why a link could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another outbound link already reaches this relay: close 1000 `duplicate link`.
    DuplicateLink,
    /// The registry is full of other relays.
    TooManyPeers,
}

/// Counts for `relay_federation_peers{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerCounts {
    pub connected: u64,
    pub draining: u64,
    pub disconnected: u64,
}

#[derive(Debug, Default)]
pub struct Registry {
    peers: BTreeMap<String, Peer>,
}

impl Registry {
    pub fn get(&self, relay_id: &str) -> Option<&Peer> {
        self.peers.get(relay_id)
    }

    /// The peer's entry, created if needed. Only relays that dial in are capped:
    /// configured peers (`outbound`) always get one, so unauthenticated inbound
    /// links can never crowd out the peers this relay offloads to.
    fn entry(&mut self, relay_id: &str, outbound: bool) -> Result<&mut Peer, Refusal> {
        if !self.peers.contains_key(relay_id) {
            if !outbound && self.peers.len() >= FEDERATION_PEERS_MAX {
                self.forget_one_disconnected();
                if self.peers.len() >= FEDERATION_PEERS_MAX {
                    return Err(Refusal::TooManyPeers);
                }
            }
            self.peers.insert(relay_id.to_owned(), Peer::new());
        }
        Ok(self.peers.get_mut(relay_id).expect("inserted above"))
    }

    fn forget_one_disconnected(&mut self) {
        let gone = self
            .peers
            .iter()
            .find(|(_, p)| p.outbound.is_none() && p.inbound.is_none())
            .map(|(id, _)| id.clone());
        if let Some(id) = gone {
            self.peers.remove(&id);
        }
    }

    /// A successful outbound handshake (§11.5): records the link, the URL and the
    /// capacity, and clears the draining mark (§11.6).
    pub fn attach_outbound(
        &mut self,
        relay_id: &str,
        url: &str,
        link: LinkId,
        capacity: Capacity,
    ) -> Result<(), Refusal> {
        let peer = self.entry(relay_id, true)?;
        if peer.outbound.is_some() {
            return Err(Refusal::DuplicateLink);
        }
        peer.outbound = Some(link);
        peer.url = Some(url.to_owned());
        peer.draining = false;
        Self::set_capacity(peer, capacity);
        Ok(())
    }

    /// A successful inbound handshake (§11.4): returns the inbound link it replaces.
    pub fn attach_inbound(
        &mut self,
        relay_id: &str,
        link: LinkId,
    ) -> Result<Option<LinkId>, Refusal> {
        let peer = self.entry(relay_id, false)?;
        peer.draining = false;
        Ok(peer.inbound.replace(link))
    }

    /// A link ended: only that link is forgotten, never the other direction.
    pub fn detach(&mut self, relay_id: &str, link: LinkId) {
        if let Some(peer) = self.peers.get_mut(relay_id) {
            if peer.outbound == Some(link) {
                peer.outbound = None;
            }
            if peer.inbound == Some(link) {
                peer.inbound = None;
            }
        }
    }

    /// A CapacityReport (§11.4 item 5, §11.5).
    pub fn report_capacity(&mut self, relay_id: &str, capacity: Capacity) {
        if let Some(peer) = self.peers.get_mut(relay_id) {
            Self::set_capacity(peer, capacity);
        }
    }

    fn set_capacity(peer: &mut Peer, capacity: Capacity) {
        peer.capacity = Some(capacity);
        // A report that shows room lifts a pause caused by `capacity` or `draining`
        // refusals (§11.7 step 5); the refuse ratio is checked again at choice time.
        if capacity.used < capacity.max {
            peer.paused = false;
        }
    }

    pub fn mark_draining(&mut self, relay_id: &str) {
        if let Some(peer) = self.peers.get_mut(relay_id) {
            peer.draining = true;
        }
    }

    /// The offload target (§11.7 step 1): open outbound link, not draining, not
    /// paused, known `max` > 0 and `used/max` below `refuse`; lowest ratio, ties to
    /// the smallest relay_id (the map is ordered by relay_id).
    pub fn choose(&self, own_relay_id: &str, refuse: f64) -> Option<&str> {
        let mut best: Option<(&str, f64)> = None;
        for (id, peer) in &self.peers {
            if id == own_relay_id || peer.outbound.is_none() || peer.draining || peer.paused {
                continue;
            }
            let Some(ratio) = peer.capacity.and_then(|c| c.ratio()) else {
                continue;
            };
            if ratio >= refuse {
                continue;
            }
            if best.is_none_or(|(_, r)| ratio < r) {
                best = Some((id, ratio));
            }
        }
        best.map(|(id, _)| id)
    }

    /// The offload manager's outcome of a refusal (§11.7 step 5).
    pub fn refused(&mut self, relay_id: &str, blob: BlobId, reason: &str) {
        if let Some(peer) = self.peers.get_mut(relay_id) {
            if reason.contains("capacity") || reason.contains("draining") {
                peer.paused = true;
            } else {
                peer.refused.insert(blob);
            }
        }
    }

    /// A message from the peer arrived at `now` (unix seconds).
    pub fn seen(&mut self, relay_id: &str, now: u64) {
        if let Some(peer) = self.peers.get_mut(relay_id) {
            peer.last_seen_secs = now;
        }
    }

    /// The peers with an open outbound link, by relay_id.
    pub fn outbound(&self) -> impl Iterator<Item = (&str, &Peer)> {
        self.peers
            .iter()
            .filter(|(_, peer)| peer.outbound.is_some())
            .map(|(id, peer)| (id.as_str(), peer))
    }

    /// The configured URLs through which peers were reached.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.peers.values().filter_map(|p| p.url.as_deref())
    }

    pub fn counts(&self) -> PeerCounts {
        let mut counts = PeerCounts::default();
        for peer in self.peers.values() {
            let connected = peer.outbound.is_some() || peer.inbound.is_some();
            match (connected, peer.draining) {
                (true, true) => counts.draining += 1,
                (true, false) => counts.connected += 1,
                (false, _) => counts.disconnected += 1,
            }
        }
        counts
    }
}

/// A peer known only from gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    url: String,
    /// Unix seconds; forgotten from then on.
    expires_at: u64,
    /// Its key in `order`.
    seq: u64,
}

/// The discovered peers, by relay_id, bounded.
#[derive(Debug)]
pub struct Discovered {
    peers: HashMap<String, Entry, ahash::RandomState>,
    /// relay_ids by the sequence number of their newest advertisement: the first
    /// is the one advertised least recently.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    bound: usize,
}

impl Default for Discovered {
    fn default() -> Discovered {
        Discovered::new(FEDERATION_DISCOVERED_PEERS_MAX)
    }
}

impl Discovered {
    pub fn new(bound: usize) -> Discovered {
        Discovered {
            peers: HashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            bound: bound.max(1),
        }
    }

    /// Remembers `relay_id` at `url` until `expires_at`; true if it was not known.
    pub fn remember(&mut self, relay_id: &str, url: &str, expires_at: u64) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(entry) = self.peers.get_mut(relay_id) {
            self.order.remove(&entry.seq);
            self.order.insert(seq, relay_id.to_owned());
            entry.seq = seq;
            entry.url = url.to_owned();
            entry.expires_at = entry.expires_at.max(expires_at);
            return false;
        }
        if self.peers.len() >= self.bound
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.peers.remove(&oldest);
        }
        self.order.insert(seq, relay_id.to_owned());
        let entry = Entry {
            url: url.to_owned(),
            expires_at,
            seq,
        };
        self.peers.insert(relay_id.to_owned(), entry);
        true
    }

    pub fn contains(&self, relay_id: &str) -> bool {
        self.peers.contains_key(relay_id)
    }

    /// Forgets `relay_id`: it is no longer known only from gossip.
    pub fn forget(&mut self, relay_id: &str) {
        if let Some(entry) = self.peers.remove(relay_id) {
            self.order.remove(&entry.seq);
        }
    }

    /// Forgets every peer whose time has come by `now`.
    pub fn forget_expired(&mut self, now: u64) {
        let order = &mut self.order;
        self.peers.retain(|_, entry| {
            let keep = entry.expires_at > now;
            if !keep {
                order.remove(&entry.seq);
            }
            keep
        });
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The URL a discovered peer was last advertised with.
    pub fn url(&self, relay_id: &str) -> Option<&str> {
        self.peers.get(relay_id).map(|e| e.url.as_str())
    }
}
