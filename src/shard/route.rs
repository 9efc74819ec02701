//! How a handler reaches what it does not hold: the owner shard of a key (`route`
//! for a request that may be refused with `overloaded`, `post` for a message that
//! must not be lost), the reply slot of a session on any shard, and the store
//! (`submit_refusable`, `submit_unrefusable`). Work for a key this shard owns is
//! handled in place through `Shard::dispatch`, so local and cross-shard requests
//! behave identically.

use std::rc::Rc;

use crate::mesh::{MeshMessage, Reply, ReplyTo};
use crate::protocol::ErrorCode;
use crate::storage::WriteOp;
use crate::storage::writer::Job;

use super::Shard;
use super::pending::Pending;

impl Shard {
    /// Sends a request to the owner shard, handling it here when this shard owns
    /// it. Gives the message back when the owner's queue is full.
    #[allow(clippy::result_large_err)] // See `Mesh::try_send`.
    pub fn route(self: &Rc<Self>, owner: usize, message: MeshMessage) -> Result<(), MeshMessage> {
        if owner == self.index {
            (self.dispatch)(self, message);
            Ok(())
        } else {
            self.mesh.try_send(owner, message)
        }
    }

    /// Sends a message that must arrive (a reply, a notification, a registration).
    pub fn post(self: &Rc<Self>, owner: usize, message: MeshMessage) {
        if owner == self.index {
            (self.dispatch)(self, message);
        } else {
            self.mesh.post(owner, message);
        }
    }

    /// Sends a reply to its session's slot, here or on another shard.
    pub fn send_reply(self: &Rc<Self>, reply: ReplyTo, frame: Vec<u8>) {
        if reply.shard == self.index {
            self.deliver_reply(reply, frame);
        } else {
            self.mesh
                .post(reply.shard, MeshMessage::Reply(Reply { reply, frame }));
        }
    }

    /// Fills a reply slot of a session on this shard (gone sessions are skipped).
    pub fn deliver_reply(&self, reply: ReplyTo, frame: Vec<u8>) {
        self.deliver_frames(reply, vec![frame]);
    }

    /// Fills a reply slot with several frames (possibly none).
    pub fn deliver_frames(&self, reply: ReplyTo, frames: Vec<Vec<u8>>) {
        let waited = self
            .state
            .borrow()
            .sessions
            .get(&reply.session)
            .and_then(|h| h.out.borrow_mut().fill_many(reply.slot, frames));
        if let Some(waited) = waited {
            self.metrics().observe_duration(waited);
        }
    }

    /// Answers a request the store could not queue (§5.2: the shard's queue is
    /// full).
    pub fn refuse_overloaded(self: &Rc<Self>, reply: ReplyTo, request_message_id: &str) {
        let frame = self.error_frame(ErrorCode::Overloaded, Some(request_message_id), Some(1));
        self.send_reply(reply, frame);
    }

    /// Queues a commit that must not be refused (deletions, purge steps): it counts
    /// against the writer's limit but is queued even past it, and the hand-over
    /// waits for channel room in a task, so the event loop never blocks.
    pub fn submit_unrefusable(&self, ops: Vec<WriteOp>, pending: Pending) {
        let token = self.wait_on(pending);
        self.storage.submit(Job::Commit { token, ops });
    }

    /// Queues a read of stored data (it may go past the writer's limit).
    pub fn submit_read(&self, keys: Vec<u64>, pending: Pending) {
        let token = self.wait_on(pending);
        self.storage.submit(Job::Read { token, keys });
    }

    /// Queues `ops` as one commit answered by `pending`, or gives `pending` back
    /// when the writer already has `WRITER_QUEUE_DEPTH` jobs outstanding (the caller
    /// answers `overloaded`).
    #[allow(clippy::result_large_err)] // Given back by value, as `Mesh::try_send`.
    pub fn submit_refusable(&self, ops: Vec<WriteOp>, pending: Pending) -> Result<(), Pending> {
        let token = self.state.borrow_mut().next_token();
        match self.storage.try_submit(Job::Commit { token, ops }) {
            Ok(()) => {
                self.state.borrow_mut().pending.insert(token, pending);
                Ok(())
            }
            Err(_) => Err(pending),
        }
    }

    fn wait_on(&self, pending: Pending) -> u64 {
        let mut state = self.state.borrow_mut();
        let token = state.next_token();
        state.pending.insert(token, pending);
        token
    }
}
