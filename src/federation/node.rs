//! The state of the federation executor (PROTOCOL.md §11), which its tasks share:
//! the peer registry, every open link's queue, offers waiting for their
//! `OffloadAck`, and the mesh senders through which it reaches the shards (waiting
//! for room is fine here: shards never wait on it). Link tasks (`link/`) and the
//! offload manager (`offload.rs`) work on it; `executor.rs` starts them.
//!
//! Invariant: nothing here deletes a blob; the owner shard does, in the
//! transaction that writes the hint, and only after the peer's `OffloadAck`
//! accepted it (§11.7 step 4).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls::ClientConfig;

use crate::config::Config;
use crate::limits;
use crate::mesh::MeshMessage;
use crate::metrics::{PeerState, ShardMetrics};
use crate::process::{Shared, unix_now};

use super::messages::{self, FedMessage};
use super::registry::{BoundedSet, Discovered, LinkId, Registry};

/// `fut`, or `None` after `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// What a link task is asked to send.
#[derive(Debug)]
pub enum LinkOut {
    Frame(Vec<u8>),
    Close(u16, &'static str),
}

/// The answer to one of our offers (§11.7 steps 4-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Accepted,
    Refused(String),
}

/// One open link as the executor knows it.
pub struct LinkEntry {
    pub relay_id: String,
    pub out: flume::Sender<LinkOut>,
    /// Our DrainNotice has been answered (or the link never needs one).
    pub drain_acked: bool,
}

/// The state of the federation executor (single-threaded).
pub struct Node {
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub relay_id: String,
    pub shards: Vec<flume::Sender<MeshMessage>>,
    pub registry: RefCell<Registry>,
    pub links: RefCell<HashMap<u64, LinkEntry>>,
    next_link: Cell<u64>,
    /// Offloads waiting for their `OffloadAck`, by our blob id.
    pub pending_acks: RefCell<HashMap<String, (u64, flume::Sender<AckOutcome>)>>,
    /// (source relay_id, source blob_id) of offers accepted here.
    pub received: RefCell<BoundedSet<(String, String)>>,
    /// Shutdown has begun: no reconnects, no offloads.
    pub stopping: Cell<bool>,
    /// Accepted offloads whose blob-to-hint commit is still on its shard.
    pub committing: Cell<u64>,
    /// Established links that have left the registry and are closing (our Close,
    /// the wait for the peer's): drain waits for them too, so that the executor
    /// does not end, and drop them, mid-close.
    pub closing: Cell<u64>,
    /// TLS for `wss://` peers (§11.5); loaded once, and only if one is configured.
    pub tls: Option<Arc<ClientConfig>>,
    /// Peers known only from gossip (§15.2).
    pub discovered: RefCell<Discovered>,
}

impl Node {
    pub fn new(
        config: Arc<Config>,
        shared: Arc<Shared>,
        relay_id: String,
        shards: Vec<flume::Sender<MeshMessage>>,
        tls: Option<Arc<ClientConfig>>,
    ) -> Node {
        Node {
            config,
            shared,
            relay_id,
            shards,
            registry: RefCell::new(Registry::default()),
            links: RefCell::new(HashMap::new()),
            next_link: Cell::new(0),
            pending_acks: RefCell::new(HashMap::new()),
            received: RefCell::new(BoundedSet::new(limits::FEDERATION_RECEIVED_OFFERS_MAX)),
            stopping: Cell::new(false),
            committing: Cell::new(0),
            closing: Cell::new(0),
            tls,
            discovered: RefCell::new(Discovered::default()),
        }
    }

    /// Metrics that are not per shard are kept on shard 0's set (merged anyway).
    pub fn metrics(&self) -> &ShardMetrics {
        &self.shared.metrics[0]
    }

    /// Used bytes (§11.2): the data of every stored blob, summed over the shards.
    pub fn used_bytes(&self) -> u64 {
        self.shared
            .metrics
            .iter()
            .map(|m| m.storage_used_bytes.get())
            .sum()
    }

    pub fn capacity_report(&self) -> Vec<u8> {
        messages::encode(
            &FedMessage::CapacityReport {
                used_bytes: self.used_bytes(),
                max_bytes: self.config.max_storage_bytes,
                blob_count: self.shared.blob_count(),
            },
            unix_now(),
        )
    }

    /// The largest federation message (§11.1).
    pub fn message_size_limit(&self) -> usize {
        self.config.max_message_size + limits::FEDERATION_MESSAGE_EXTRA_BYTES + 4
    }

    pub fn peer_timeout(&self) -> Duration {
        Duration::from_secs(self.config.federation_peer_timeout_secs)
    }

    /// A new link id and its outgoing queue.
    pub fn open_link(&self, relay_id: &str) -> (LinkId, flume::Receiver<LinkOut>) {
        let id = self.next_link.get() + 1;
        self.next_link.set(id);
        let (out, receiver) = flume::bounded(limits::FEDERATION_LINK_QUEUE_DEPTH);
        self.links.borrow_mut().insert(
            id,
            LinkEntry {
                relay_id: relay_id.to_owned(),
                out,
                drain_acked: !self.stopping.get(),
            },
        );
        (LinkId(id), receiver)
    }

    /// A link ended: forget it, and fail the offloads that waited on it.
    pub fn close_link(&self, link: LinkId) {
        if let Some(entry) = self.links.borrow_mut().remove(&link.0) {
            self.registry.borrow_mut().detach(&entry.relay_id, link);
        }
        self.pending_acks
            .borrow_mut()
            .retain(|_, (waiting_on, _)| *waiting_on != link.0);
        self.publish_peers();
    }

    /// Queues a frame on a link without waiting; a full queue drops it (capacity
    /// reports are periodic, so the next one replaces it).
    pub fn send_soon(&self, link: LinkId, message: LinkOut) -> bool {
        self.links
            .borrow()
            .get(&link.0)
            .is_some_and(|e| e.out.try_send(message).is_ok())
    }

    /// `relay_federation_discovered_peers` (§15.2).
    pub fn publish_discovered(&self) {
        let count = self.discovered.borrow().len() as u64;
        self.shared.global_metrics.set_discovered_peers(count);
    }

    pub fn publish_peers(&self) {
        let registry = self.registry.borrow();
        let mut counts = registry.counts();
        // Configured peers never reached yet are known too, as disconnected.
        let reached: std::collections::HashSet<&str> = registry.urls().collect();
        counts.disconnected += self
            .config
            .federation_peers
            .iter()
            .filter(|url| !reached.contains(url.as_str()))
            .count() as u64;
        let global = &self.shared.global_metrics;
        global.set_federation_peers(PeerState::Connected, counts.connected);
        global.set_federation_peers(PeerState::Draining, counts.draining);
        global.set_federation_peers(PeerState::Disconnected, counts.disconnected);
    }
}
