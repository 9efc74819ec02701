//! The mesh: one bounded flume channel into every shard, carrying the messages of
//! [`messages`]. Requests use `try_send` and are refused with `overloaded` when the
//! target's queue is full; replies and notifications, which must not be lost while
//! their sender is busy, go through a per-destination outbox drained by a forwarder
//! task, so a shard never blocks on a peer.

pub mod messages;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::limits;

pub use messages::*;

/// The channels of a mesh of `shards` shards: every sender, and each shard's inbox.
pub fn channels(
    shards: usize,
) -> (
    Vec<flume::Sender<MeshMessage>>,
    Vec<flume::Receiver<MeshMessage>>,
) {
    (0..shards)
        .map(|_| flume::bounded(limits::MESH_QUEUE_DEPTH))
        .unzip()
}

/// This shard's ends of the mesh.
pub struct Mesh {
    senders: Vec<flume::Sender<MeshMessage>>,
    outboxes: Vec<RefCell<VecDeque<MeshMessage>>>,
    forwarder_running: Vec<std::cell::Cell<bool>>,
}

impl Mesh {
    pub fn new(senders: Vec<flume::Sender<MeshMessage>>) -> Mesh {
        let shards = senders.len();
        Mesh {
            senders,
            outboxes: (0..shards).map(|_| RefCell::new(VecDeque::new())).collect(),
            forwarder_running: (0..shards).map(|_| std::cell::Cell::new(false)).collect(),
        }
    }

    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Sends a request, or gives it back when the target's queue is full.
    // The message comes back by value so the caller can answer for it; boxing every
    // mesh message to shrink the error would cost an allocation per request.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, to: usize, message: MeshMessage) -> Result<(), MeshMessage> {
        self.senders[to]
            .try_send(message)
            .map_err(|e| e.into_inner())
    }

    /// Sends a reply or notification without blocking and without losing it: when
    /// the target's queue is full it waits in this shard's outbox, in order. The
    /// outbox is bounded by the requests in flight, which admission bounds.
    pub fn post(self: &Rc<Self>, to: usize, message: MeshMessage) {
        if self.outboxes[to].borrow().is_empty() {
            match self.senders[to].try_send(message) {
                Ok(()) => return,
                Err(flume::TrySendError::Disconnected(_)) => return,
                Err(flume::TrySendError::Full(message)) => {
                    self.outboxes[to].borrow_mut().push_back(message)
                }
            }
        } else {
            self.outboxes[to].borrow_mut().push_back(message);
        }
        if !self.forwarder_running[to].replace(true) {
            let mesh = Rc::clone(self);
            glommio::spawn_local(async move {
                loop {
                    let next = mesh.outboxes[to].borrow_mut().pop_front();
                    let Some(message) = next else { break };
                    if mesh.senders[to].send_async(message).await.is_err() {
                        mesh.outboxes[to].borrow_mut().clear();
                        break;
                    }
                }
                mesh.forwarder_running[to].set(false);
            })
            .detach();
        }
    }
}
