//! A session's outbound side as the shard sees it: replies in request order (one
//! slot per request, filled when its work completes), pushes, the connect-time
//! backlog, the bound of §4.9, and the close request. The session task drains it.

use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use crate::keyed::mailbox::Entry;
use crate::protocol::{CloseReason, Id64};
use crate::storage::BlobId;

/// One message to write. `blob` is set for delivered blobs: writing it may trigger
/// a `Delivered` notification (§7.3).
#[derive(Debug, Clone)]
pub struct OutFrame {
    pub bytes: Rc<[u8]>,
    pub blob: Option<BlobId>,
}

impl OutFrame {
    pub fn reply(bytes: Vec<u8>) -> OutFrame {
        OutFrame {
            bytes: bytes.into(),
            blob: None,
        }
    }
}

#[derive(Debug)]
enum Slot {
    /// Waiting for its request, received at `opened`, to complete.
    Pending { opened: std::time::Instant },
    /// Frames to write; `done` is false while more may be appended (the backlog).
    /// `counted` frames count toward the bound of §4.9 (all but the backlog's).
    Frames {
        frames: VecDeque<OutFrame>,
        done: bool,
        counted: bool,
    },
}

/// Connect-time delivery progress (§4.6).
#[derive(Debug)]
pub enum Backlog {
    /// Entries still to read and write, in delivery order; `max_key` is the largest
    /// storage key seen so far, from which the catch-up snapshot continues.
    Loading {
        todo: VecDeque<Entry>,
        max_key: Option<u64>,
        reading: bool,
    },
    /// Caught up: new blobs arrive as live pushes.
    Live,
}

/// The shard-facing half of a session.
pub struct SessionHandle {
    pub id: u64,
    pub routing_id: Id64,
    pub client_id: Id64,
    pub device_id: Option<Id64>,
    pub suppress_presence: bool,
    pub out: std::cell::RefCell<Outbound>,
}

impl SessionHandle {
    /// This session's address for other shards.
    pub fn reference(&self, shard: usize) -> crate::mesh::SessionRef {
        crate::mesh::SessionRef {
            shard,
            session: self.id,
        }
    }
}

pub struct Outbound {
    slots: VecDeque<Slot>,
    first_slot: u64,
    next_slot: u64,
    backlog_slot: Option<u64>,
    pushes: VecDeque<OutFrame>,
    queued_messages: usize,
    queued_bytes: usize,
    bound_messages: usize,
    bound_bytes: usize,
    pub close: Option<CloseReason>,
    /// Shutdown: stop reading, finish the replies due, then close with 1001.
    pub draining: bool,
    pub backlog: Backlog,
    waker: Option<Waker>,
}

impl Outbound {
    pub fn new(bound_messages: usize, bound_bytes: usize) -> Outbound {
        Outbound {
            slots: VecDeque::new(),
            first_slot: 0,
            next_slot: 0,
            backlog_slot: None,
            pushes: VecDeque::new(),
            queued_messages: 0,
            queued_bytes: 0,
            bound_messages,
            bound_bytes,
            close: None,
            draining: false,
            backlog: Backlog::Live,
            waker: None,
        }
    }

    pub fn set_waker(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// True while the queue is over the bound of §4.9: stop reading requests.
    pub fn is_over_bound(&self) -> bool {
        self.queued_messages >= self.bound_messages || self.queued_bytes >= self.bound_bytes
    }

    /// Requests whose replies are not written yet.
    pub fn slots_in_use(&self) -> usize {
        self.slots.len()
    }

    /// Opens a reply slot for the next request and returns its id.
    pub fn open_slot(&mut self) -> u64 {
        let id = self.next_slot;
        self.next_slot += 1;
        self.slots.push_back(Slot::Pending {
            opened: std::time::Instant::now(),
        });
        id
    }

    /// Opens a slot already holding its reply.
    pub fn reply_now(&mut self, frame: Vec<u8>) -> Option<std::time::Duration> {
        let id = self.open_slot();
        self.fill(id, frame)
    }

    /// Fills a pending slot; returns how long its request waited (for
    /// `relay_message_duration_seconds`). Unknown ids (already written) are ignored.
    pub fn fill(&mut self, slot: u64, frame: Vec<u8>) -> Option<std::time::Duration> {
        self.fill_many(slot, vec![frame])
    }

    /// Fills a pending slot with several frames (possibly none).
    pub fn fill_many(&mut self, slot: u64, frames: Vec<Vec<u8>>) -> Option<std::time::Duration> {
        let position = slot.checked_sub(self.first_slot)?;
        let entry = self.slots.get_mut(position as usize)?;
        let Slot::Pending { opened } = *entry else {
            return None;
        };
        self.queued_messages += frames.len();
        self.queued_bytes += frames.iter().map(Vec::len).sum::<usize>();
        let frames = frames.into_iter().map(OutFrame::reply).collect();
        *entry = Slot::Frames {
            frames,
            done: true,
            counted: true,
        };
        self.wake();
        Some(opened.elapsed())
    }

    /// A live push that must follow every reply already due (a device-sync message
    /// must not overtake the connect-time snapshot). Over the bound it closes the
    /// session with 1013 like any live push (§4.9).
    pub fn push_ordered(&mut self, frame: Vec<u8>) -> bool {
        if self.is_over_bound() {
            self.request_close(CloseReason::Overloaded);
            return false;
        }
        self.append_after_replies(frame);
        true
    }

    /// Queues a frame behind every reply slot already open (or as a push when none
    /// is), so it cannot overtake a reply that is due first. The bound is the
    /// caller's.
    fn append_after_replies(&mut self, frame: Vec<u8>) {
        if self.slots.is_empty() {
            self.queued_messages += 1;
            self.queued_bytes += frame.len();
            self.pushes.push_back(OutFrame::reply(frame));
            self.wake();
        } else {
            self.reply_now(frame);
        }
    }

    /// Opens the connect-time delivery slot (the first after HandshakeAck).
    pub fn open_backlog(&mut self, todo: VecDeque<Entry>, max_key: Option<u64>) {
        let id = self.next_slot;
        self.next_slot += 1;
        self.slots.push_back(Slot::Frames {
            frames: VecDeque::new(),
            done: false,
            counted: false,
        });
        self.backlog_slot = Some(id);
        self.backlog = Backlog::Loading {
            todo,
            max_key,
            reading: false,
        };
    }

    /// Appends delivered blobs to the backlog slot. Backlog frames are paced by the
    /// socket (the next chunk is read only when these are written), so they never
    /// count toward the overflow bound (§4.6).
    pub fn append_backlog(&mut self, frames: impl IntoIterator<Item = OutFrame>) {
        if let Some((queue, _)) = self.backlog_slot_mut() {
            queue.extend(frames);
            self.wake();
        }
    }

    /// The backlog slot's frames and `done` flag, while connect-time delivery runs.
    fn backlog_slot_mut(&mut self) -> Option<(&mut VecDeque<OutFrame>, &mut bool)> {
        let position = (self.backlog_slot? - self.first_slot) as usize;
        match self.slots.get_mut(position) {
            Some(Slot::Frames { frames, done, .. }) => Some((frames, done)),
            _ => None,
        }
    }

    /// True when the backlog slot has nothing left to write: time for the next chunk.
    pub fn backlog_drained(&mut self) -> bool {
        self.backlog_slot_mut()
            .is_some_and(|(frames, _)| frames.is_empty())
    }

    /// Ends connect-time delivery: from now on blobs are pushed live.
    pub fn finish_backlog(&mut self) {
        if let Some((_, done)) = self.backlog_slot_mut() {
            *done = true;
        }
        self.backlog_slot = None;
        self.backlog = Backlog::Live;
        self.wake();
    }

    /// A live push (§4.7). Over the bound, the session must close with 1013 and the
    /// item waits in storage for the next connect (§4.9): returns false then.
    pub fn push(&mut self, frame: OutFrame) -> bool {
        if self.is_over_bound() {
            self.request_close(CloseReason::Overloaded);
            return false;
        }
        self.queued_messages += 1;
        self.queued_bytes += frame.bytes.len();
        self.pushes.push_back(frame);
        self.wake();
        true
    }

    /// A best-effort notification (§4.9: dropped when it does not fit). It queues
    /// behind every reply slot already open, so a `Delivered` never overtakes the
    /// `Stored` ack of the same blob (§7.3).
    pub fn notify(&mut self, frame: Vec<u8>) {
        if !self.is_over_bound() {
            self.append_after_replies(frame);
        }
    }

    pub fn begin_drain(&mut self) {
        self.draining = true;
        self.wake();
    }

    /// True when nothing is left to write: no open slot and no push.
    pub fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.pushes.is_empty()
    }

    pub fn request_close(&mut self, reason: CloseReason) {
        if self.close.is_none() {
            self.close = Some(reason);
        }
        self.wake();
    }

    /// The next frame to write, in order: pushes first (they may interleave), then
    /// the head reply slot when it is ready.
    pub fn next_frame(&mut self) -> Option<OutFrame> {
        if let Some(frame) = self.pushes.pop_front() {
            self.account_written(&frame, true);
            return Some(frame);
        }
        loop {
            match self.slots.front_mut()? {
                Slot::Pending { .. } => return None,
                Slot::Frames {
                    frames,
                    done,
                    counted,
                } => {
                    if let Some(frame) = frames.pop_front() {
                        let counted = *counted;
                        self.account_written(&frame, counted);
                        return Some(frame);
                    }
                    if !*done {
                        return None;
                    }
                    self.slots.pop_front();
                    self.first_slot += 1;
                }
            }
        }
    }

    fn account_written(&mut self, frame: &OutFrame, counted: bool) {
        if counted {
            self.queued_messages -= 1;
            self.queued_bytes -= frame.bytes.len();
        }
    }
}
