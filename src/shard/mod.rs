//! The glommio side of the relay: one executor per shard, each owning the routing
//! ids that hash to it (§10.2): their mailboxes, sender-map entries, rate buckets
//! and live sessions. Connections are accepted anywhere and handed to the owner.
//!
//! - [`mesh`]: the cross-shard message enum and bounded channels.
//! - [`accept`]: TCP accept, HTTP, the first WebSocket message, the hand-off.
//! - [`client`]: a client session's I/O loop and request handling (§3.6).
//! - [`owner`]: what a shard does for the ids it owns: store, ack, deliver, notify.
//! - [`features`]: device sync, recovery proofs and purge on their owner shards.
//! - [`offload`]: a shard's part in federation: candidates, hints, offered blobs.
//! - [`gather`]: requests answered from several shards (proof query, purge).
//! - [`dispatch`]: every mesh message to its handler; local or remote routing.
//! - [`outbound`]: a session's ordered replies, pushes and backlog (§4.8, §4.9).
//! - [`runtime`]: starting the executors, pinning, binding the listeners.

pub mod accept;
pub mod client;
pub mod deadline;
pub mod dispatch;
pub mod features;
pub mod gather;
pub mod mesh;
pub mod offload;
pub mod outbound;
pub mod owner;
pub mod runtime;
pub mod shutdown;
pub mod storage_link;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::config::Config;
use crate::metrics::{Global, RejectCode, ShardMetrics};
use crate::protocol::Id64;
use crate::protocol::{ErrorCode, encode};
use crate::session::device_sync::DeviceSyncIndex;
use crate::session::hints::HintIndex;
use crate::session::mailbox::Mailboxes;
use crate::session::nonce::NonceCache;
use crate::session::ratelimit::TokenBucket;
use crate::session::sender_map::SenderMap;
use crate::storage::RecoveryProofRecord;

use gather::Gather;
use mesh::{Mesh, SessionRef};
use outbound::SessionHandle;
use owner::Pending;

/// State shared by every shard thread (atomics only).
pub struct Shared {
    pub started: Instant,
    pub draining: AtomicBool,
    /// Blobs indexed per shard, for `/health` (§2.4).
    pub blob_counts: Vec<AtomicU64>,
    /// Open connections on the main port (§2.2).
    pub connections: AtomicU64,
    /// Client sessions open on all shards (shutdown waits for none to be left).
    pub sessions_open: AtomicU64,
    /// The federation executor is running: shards keep serving its requests (and
    /// their stores stay open) until it has drained (§14.1 step 4).
    pub federation_running: AtomicBool,
    /// Per-shard metrics, merged at scrape time (§12).
    pub metrics: Arc<[ShardMetrics]>,
    pub global_metrics: Arc<Global>,
}

impl Shared {
    pub fn new(shards: usize) -> Shared {
        Shared {
            started: Instant::now(),
            draining: AtomicBool::new(false),
            blob_counts: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            connections: AtomicU64::new(0),
            sessions_open: AtomicU64::new(0),
            federation_running: AtomicBool::new(false),
            metrics: (0..shards).map(|_| ShardMetrics::new()).collect(),
            global_metrics: Arc::new(Global::new(shards as u32)),
        }
    }

    pub fn blob_count(&self) -> u64 {
        self.blob_counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// The two rate buckets of one routing_id (§8).
pub struct Buckets {
    pub general: TokenBucket,
    pub recovery: TokenBucket,
    /// Open sessions using them; a full bucket with no session may be dropped.
    pub sessions: usize,
}

/// Everything one shard owns, behind one `RefCell` (single-threaded).
pub struct State {
    pub mailboxes: Mailboxes,
    pub sender_map: SenderMap,
    pub nonces: NonceCache,
    pub device_sync: DeviceSyncIndex,
    /// Sessions to push device-sync messages to, by (identity, device), for the
    /// identities this shard owns; the sessions may live on any shard.
    pub device_sessions: HashMap<(Id64, Id64), Vec<SessionRef>, ahash::RandomState>,
    pub proofs: HashMap<Id64, RecoveryProofRecord, ahash::RandomState>,
    /// Forwarding hints of the routing ids this shard owns (§5.13), rebuilt from
    /// storage at startup.
    pub hints: HintIndex,
    pub gathers: HashMap<u64, Gather, ahash::RandomState>,
    pub next_gather: u64,
    pub buckets: HashMap<Id64, Buckets, ahash::RandomState>,
    pub sessions: HashMap<u64, Rc<SessionHandle>, ahash::RandomState>,
    pub sessions_by_routing: HashMap<Id64, Vec<u64>, ahash::RandomState>,
    pub pending: HashMap<u64, Pending, ahash::RandomState>,
    pub next_key: u64,
    pub next_token: u64,
    pub next_session: u64,
}

/// One shard: its configuration, its ends of the mesh, its writer, its state.
pub struct Shard {
    pub index: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub mesh: Rc<Mesh>,
    pub storage: storage_link::StorageLink,
    pub state: RefCell<State>,
    /// Monotonic seconds for the rate buckets.
    pub clock_origin: Instant,
    pub deadlines: Rc<deadline::Deadlines>,
    pub shutdown: shutdown::ShutdownSignal,
    /// Where upgraded `/federation` connections go, when federation is enabled.
    pub federation: Option<flume::Sender<crate::federation::node::Command>>,
}

impl Shard {
    pub fn shards(&self) -> usize {
        self.mesh.shards()
    }

    /// The shard that owns a key (§10.2).
    pub fn owner_of(&self, key: &Id64) -> usize {
        crate::protocol::shard_of(key, self.shards())
    }

    /// Monotonic seconds since the shard started, for token buckets.
    pub fn monotonic_secs(&self) -> f64 {
        self.clock_origin.elapsed().as_secs_f64()
    }

    /// This shard's metrics (§12.2).
    pub fn metrics(&self) -> &ShardMetrics {
        &self.shared.metrics[self.index]
    }

    /// Publishes the blob gauges for `/health` and `/metrics`.
    pub fn publish_blob_count(&self) {
        let (count, bytes) = {
            let state = self.state.borrow();
            (state.mailboxes.blob_count(), state.mailboxes.data_bytes())
        };
        self.shared.blob_counts[self.index].store(count, Ordering::Relaxed);
        self.metrics().blobs_stored.set(count);
        self.metrics().storage_used_bytes.set(bytes);
    }

    /// An Error reply (§5.14), counted in `relay_messages_rejected_total`.
    pub fn error_frame(
        &self,
        code: ErrorCode,
        message_id: Option<&str>,
        retry_after_secs: Option<u64>,
    ) -> Vec<u8> {
        self.metrics().inc_rejected(code.into());
        encode::error(unix_now(), code, message_id, retry_after_secs)
    }

    /// An `Acknowledgment Failed` (§5.5), counted with `code="failed"`.
    pub fn failed_ack(&self, request_message_id: &str) -> Vec<u8> {
        self.metrics().inc_rejected(RejectCode::Failed);
        encode::failed_ack(unix_now(), request_message_id)
    }
}

/// Unix time now (§1.2).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
