//! The glommio side of the relay: one executor per shard, each owning the routing
//! ids that hash to it (§10.2): their mailboxes, sender-map entries, rate buckets
//! and live sessions. Connections are accepted anywhere and handed to the owner.
//!
//! The files, from the bottom up (a file imports only those above it, and the
//! vocabulary of [`crate::mesh`] and [`crate::process`]):
//!
//! - [`state`], [`pending`], [`gather`], [`session::outbound`]: the data a shard
//!   owns (indices, storage work waiting by token, gathers, each session's ordered
//!   replies), with no runtime in them.
//! - this file: [`Shard`], the state with its clock, mesh ends, store and metrics.
//! - [`route`]: how a handler reaches an owner, a session's reply slot or the
//!   store (`route`, `send_reply`, `submit_*`).
//! - [`owner`], [`backlog`], [`features`], [`offload`], [`fanout`]: what a shard
//!   does for the keys it owns and for the requests that span shards.
//! - [`dispatch`] (every mesh message to its handler) and [`completions`] (every
//!   storage completion to its handler): two flat tables, one call per arm.
//! - [`session`]: a client connection on its owner shard: the §3.6 request
//!   pipeline and the socket loop.
//! - [`accept`]: TCP accept, HTTP, the first WebSocket message, the hand-off.
//! - [`runtime`]: starting the executors, pinning, binding the listeners.

pub mod accept;
pub mod backlog;
pub mod completions;
pub mod deadline;
pub mod dispatch;
pub mod fanout;
pub mod features;
pub mod first_message;
pub mod gather;
pub mod offload;
pub mod owner;
pub mod pending;
pub mod route;
pub mod runtime;
pub mod session;
pub mod shutdown;
pub mod state;
pub mod storage_link;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::Config;
use crate::mesh::{Mesh, MeshMessage, ToFederation};
use crate::metrics::{RejectCode, ShardMetrics};
use crate::process::{Clock, Shared};
use crate::protocol::Id64;
use crate::protocol::{ErrorCode, encode};

pub use state::{Buckets, State};

/// One shard: its configuration, its ends of the mesh, its store, its state.
pub struct Shard {
    pub index: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub mesh: Rc<Mesh>,
    pub storage: storage_link::StorageLink,
    pub state: RefCell<State>,
    pub clock: Clock,
    pub deadlines: Rc<deadline::Deadlines>,
    pub shutdown: shutdown::ShutdownSignal,
    /// Where upgraded `/federation` connections go, when federation is enabled.
    pub federation: Option<flume::Sender<ToFederation>>,
    /// Handles a message addressed to this shard: `dispatch::handle`, passed in by
    /// whoever builds the shard, so that [`route`] can handle local work in place
    /// without importing the handlers it routes to.
    pub dispatch: fn(&Rc<Shard>, MeshMessage),
}

impl Shard {
    pub fn shards(&self) -> usize {
        self.mesh.shards()
    }

    /// The shard that owns a key (§10.2).
    pub fn owner_of(&self, key: &Id64) -> usize {
        crate::protocol::shard_of(key, self.shards())
    }

    /// Unix seconds now (§1.2), by the shard's clock.
    pub fn now(&self) -> u64 {
        self.clock.unix_secs()
    }

    /// Monotonic seconds, for token buckets.
    pub fn monotonic_secs(&self) -> f64 {
        self.clock.monotonic_secs()
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
        encode::error(self.now(), code, message_id, retry_after_secs)
    }

    /// An `Acknowledgment Failed` (§5.5), counted with `code="failed"`.
    pub fn failed_ack(&self, request_message_id: &str) -> Vec<u8> {
        self.metrics().inc_rejected(RejectCode::Failed);
        encode::failed_ack(self.now(), request_message_id)
    }
}
