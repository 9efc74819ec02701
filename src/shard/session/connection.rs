//! A client connection's state machine with no socket in it (§2.6, §2.7, §4.8-§4.10):
//! its phase, the frames read so far, the bytes to write, its one timer (the idle
//! timer while open, the close wait after), and the rules for when it reads
//! (back-pressure) and when it ends. The socket loop (`socket.rs`) moves bytes and
//! says what time it is; a test can drive the same machine by hand.
//!
//! Invariants: at most one Close of ours per connection; replies leave in request
//! order (they come from the session's `Outbound`); a client that closed first gets
//! every reply due before the echo, and TCP closes as soon as both Closes have
//! crossed.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::limits;
use crate::noise::{Channel, Refused};
use crate::protocol::CloseReason;
use crate::storage::BlobId;
use crate::wsframe::{self, CloseScan, MessageReader, Step};

use super::super::{Shard, backlog, owner};
use super::outbound::SessionHandle;
use super::requests;

/// Where the session is in its life (§4.1, §4.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// The client sent Close: finish the replies, then echo `code`.
    ClientClosed {
        code: u16,
    },
    /// We sent Close: wait for the peer's Close or EOF, up to the close wait.
    Closing,
    Done,
}

/// What the socket loop does after a write pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Something changed: run the pass again.
    Again,
    /// The connection is over: close TCP.
    End,
    /// Go on to reading, if the connection may read.
    Read,
}

pub struct Connection {
    reader: MessageReader,
    /// Once the reader has failed after our Close (1002, 1009): the peer's frames,
    /// walked from the failed one's header to its Close (§2.7).
    close_scan: Option<CloseScan>,
    out: Vec<u8>,
    out_pos: usize,
    /// Blobs in `out` whose write may trigger `Delivered` once it completes.
    out_blobs: Vec<BlobId>,
    phase: Phase,
    idle: Duration,
    last_inbound: Instant,
    deadline: Instant,
    /// A Noise session's cipher state (§15.1): every data message in either
    /// direction is a transport message carrying the v1 frame stream.
    noise: Option<Box<Channel>>,
}

impl Connection {
    /// A connection that has just been handed to its owner shard at `now`.
    pub fn new(max_message_size: usize, idle: Duration, now: Instant) -> Connection {
        Connection {
            reader: MessageReader::continuous(max_message_size + 4),
            close_scan: None,
            out: Vec::new(),
            out_pos: 0,
            out_blobs: Vec::new(),
            phase: Phase::Open,
            idle,
            last_inbound: now,
            deadline: now + idle,
            noise: None,
        }
    }

    /// The same connection on a Noise session (§15.1), whose channel may hold
    /// frames decrypted past the Handshake: they are handled at the first
    /// [`Self::received`].
    pub fn with_noise(mut self, channel: Box<Channel>) -> Connection {
        let frame_bytes_max = self.reader.max_message_bytes();
        let limit = crate::noise::channel::websocket_message_bytes_max(frame_bytes_max);
        self.reader.set_max_message_bytes(limit);
        self.noise = Some(channel);
        self
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the timer next fires.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The timer fired at `now`: the idle timer asks for a 1000 close once no
    /// frame came for the idle timeout (§2.6); the close wait ends the connection.
    /// Returns true when the connection is over.
    pub fn timer_fired(&mut self, handle: &SessionHandle, now: Instant) -> bool {
        if now < self.deadline {
            return false;
        }
        match self.phase {
            Phase::Open => {
                let deadline = self.last_inbound + self.idle;
                if now >= deadline {
                    let reason = CloseReason::IdleTimeout;
                    handle.out.borrow_mut().request_close(reason);
                    // Fires again only if nothing closes the connection first.
                    self.deadline = now + limits::CLOSE_WAIT;
                } else {
                    self.deadline = deadline;
                }
                false
            }
            Phase::ClientClosed { .. } | Phase::Closing | Phase::Done => true,
        }
    }

    /// Takes up a close the shard asked for (overflow, shutdown, idle, internal
    /// error), then moves queued frames into the write buffer. Returns true if it
    /// did anything.
    pub fn prepare_output(&mut self, shard: &Shard, handle: &SessionHandle, now: Instant) -> bool {
        let mut progress = false;
        let close = handle.out.borrow().close;
        if let (Some(reason), Phase::Open | Phase::ClientClosed { .. }) = (close, self.phase) {
            self.start_close(reason.code(), reason.reason(), now);
            progress = true;
        }
        if matches!(self.phase, Phase::Open | Phase::ClientClosed { .. }) {
            self.fill_output(shard, handle);
        }
        progress
    }

    /// Moves queued frames into the write buffer, coalescing up to a bound; on a
    /// Noise session each one sealed (§15.1).
    fn fill_output(&mut self, shard: &Shard, handle: &SessionHandle) {
        while self.out.len() < limits::WRITE_COALESCE_BYTES {
            let next = handle.out.borrow_mut().next_frame();
            let Some(frame) = next else { break };
            match self.noise.as_mut() {
                None => wsframe::write_binary_frame(&mut self.out, &frame.bytes),
                Some(channel) => {
                    if channel.seal(&frame.bytes, &mut self.out).is_err() {
                        // The nonces would run out (§15.1: in practice never).
                        let reason = CloseReason::IdleTimeout;
                        handle.out.borrow_mut().request_close(reason);
                        break;
                    }
                }
            }
            shard.metrics().messages_sent_total.inc();
            if let Some(blob) = frame.blob {
                self.out_blobs.push(blob);
            }
        }
        backlog::pump(shard, handle);
    }

    /// The bytes still to write.
    pub fn unwritten(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` bytes of [`Self::unwritten`] reached the socket. Once all have, the
    /// blobs among them count as delivered (§7.3). Returns true if it did anything.
    pub fn wrote(&mut self, shard: &Rc<Shard>, handle: &SessionHandle, n: usize) -> bool {
        self.out_pos += n;
        if self.out_pos < self.out.len() || self.out.is_empty() {
            return n > 0;
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > limits::WRITE_COALESCE_BYTES {
            self.out = Vec::new();
        }
        let delivered = std::mem::take(&mut self.out_blobs);
        shard
            .metrics()
            .blobs_delivered_total
            .add(delivered.len() as u64);
        for blob in delivered {
            owner::blob_written(shard, handle, &blob);
        }
        true
    }

    /// What follows a write pass: the echo of a client's Close once every reply is
    /// written, the end once our last frame is out, the 1001 of a drain (§14.1).
    pub fn after_write(&mut self, handle: &SessionHandle, now: Instant) -> Flow {
        let written = self.out.is_empty();
        if let Phase::ClientClosed { code } = self.phase {
            let replies_done = handle.out.borrow().slots_in_use() == 0;
            if replies_done && written {
                self.out.extend_from_slice(&wsframe::close_frame(code, ""));
                self.phase = Phase::Done;
                return Flow::Again;
            }
        }
        if self.phase == Phase::Done && written {
            return Flow::End;
        }
        let drained = {
            let out = handle.out.borrow();
            out.draining && out.is_idle()
        };
        if drained && self.phase == Phase::Open && written {
            let reason = CloseReason::ShuttingDown;
            self.start_close(reason.code(), reason.reason(), now);
            return Flow::Again;
        }
        Flow::Read
    }

    /// Whether to read now: while the session may take requests (§4.9
    /// back-pressure, §4.8 window) and the socket takes what is already written for
    /// it (Pongs included); and after our Close, to see the peer's.
    pub fn may_read(&self, handle: &SessionHandle) -> bool {
        match self.phase {
            Phase::Open => {
                let out = handle.out.borrow();
                !out.draining
                    && !out.is_over_bound()
                    && out.slots_in_use() < limits::PIPELINED_REQUESTS_MAX
                    && self.out.len() - self.out_pos < limits::UNWRITTEN_BYTES_MAX
            }
            Phase::Closing => true,
            _ => false,
        }
    }

    /// Bytes read from the socket at `now`: every whole frame is handled.
    pub fn received(
        &mut self,
        shard: &Rc<Shard>,
        handle: &Rc<SessionHandle>,
        bytes: &[u8],
        now: Instant,
    ) {
        match self.close_scan.as_mut() {
            Some(scan) => {
                if scan.feed(bytes) {
                    self.phase = Phase::Done;
                }
            }
            None => {
                self.reader.feed(bytes);
                self.handle_input(shard, handle, now);
            }
        }
    }

    /// Processes every complete frame the reader holds.
    fn handle_input(&mut self, shard: &Rc<Shard>, handle: &Rc<SessionHandle>, now: Instant) {
        // Frames decrypted before the hand-off come first (§4.8).
        self.noise_frames(shard, handle, now);
        let consumed = self.reader.consumed();
        loop {
            let step = self.reader.poll();
            // Every whole frame restarts the idle timer (§2.6), the fragments of an
            // unfinished message included.
            if !matches!(step, Step::NeedMore) || self.reader.consumed() != consumed {
                self.last_inbound = now;
            }
            match step {
                Step::NeedMore => return,
                Step::Write(pong) => {
                    if matches!(self.phase, Phase::Open | Phase::ClientClosed { .. }) {
                        self.out.extend_from_slice(&pong);
                    }
                }
                Step::Message {
                    binary, payload, ..
                } if self.noise.is_some() => {
                    self.noise_message(shard, handle, binary, &payload, now)
                }
                Step::Message {
                    binary, payload, ..
                } => {
                    shard.metrics().messages_received_total.inc();
                    if self.phase == Phase::Open {
                        requests::handle_message(shard, handle, binary, payload);
                    }
                }
                Step::PeerClose { code } => {
                    match self.phase {
                        Phase::Open => {
                            // Replies still due get the close wait to be written (§4.10).
                            self.phase = Phase::ClientClosed { code };
                            self.deadline = now + limits::CLOSE_WAIT;
                        }
                        Phase::Closing => self.phase = Phase::Done,
                        _ => {}
                    }
                    return;
                }
                Step::Fail { code, reason } => return self.failed(code, reason, now),
            }
        }
    }

    /// A data message of a Noise session: one transport message, whose plaintext
    /// continues the frame stream (§15.1). A text frame, or one that does not
    /// decrypt, closes with 1008 `decryption failed`.
    fn noise_message(
        &mut self,
        shard: &Rc<Shard>,
        handle: &Rc<SessionHandle>,
        binary: bool,
        payload: &[u8],
        now: Instant,
    ) {
        if self.phase != Phase::Open {
            return;
        }
        let opened = match (binary, self.noise.as_mut()) {
            (true, Some(channel)) => channel.open(payload),
            _ => Err(Refused::Decryption),
        };
        match opened {
            Ok(()) => self.noise_frames(shard, handle, now),
            Err(refused) => self.noise_refused(refused, now),
        }
    }

    /// Hands every whole frame the Noise channel holds to the request pipeline.
    fn noise_frames(&mut self, shard: &Rc<Shard>, handle: &Rc<SessionHandle>, now: Instant) {
        while self.phase == Phase::Open {
            let Some(channel) = self.noise.as_mut() else {
                return;
            };
            match channel.next_frame() {
                Ok(None) => return,
                Ok(Some(frame)) => {
                    shard.metrics().messages_received_total.inc();
                    requests::handle_message(shard, handle, true, frame);
                }
                Err(refused) => return self.noise_refused(refused, now),
            }
        }
    }

    /// Closes for a refusal of the Noise channel; the reader goes on to the
    /// peer's Close.
    fn noise_refused(&mut self, refused: Refused, now: Instant) {
        let reason = refused.close_reason();
        if self.phase == Phase::Open {
            self.start_close(reason.code(), reason.reason(), now);
        }
    }

    /// The reader refused a frame (1002, 1007, 1009).
    fn failed(&mut self, code: u16, reason: &'static str, now: Instant) {
        if self.phase == Phase::Open {
            self.start_close(code, reason, now);
        }
        if self.phase == Phase::Closing {
            // The frames go on from the failed one's header, whose length is known:
            // wait for the peer's Close behind it, not for its next bytes, which may
            // still be the refused frame's payload.
            let scan = self.reader.take_close_scan();
            if scan.seen() {
                self.phase = Phase::Done;
            }
            self.close_scan = Some(scan);
        } else {
            self.phase = Phase::Done;
        }
    }

    /// Sends our Close (at most one per connection, §2.7) and starts the close wait.
    fn start_close(&mut self, code: u16, reason: &str, now: Instant) {
        // Frames already in the buffer are whole; the Close goes after them.
        self.out
            .extend_from_slice(&wsframe::close_frame(code, reason));
        // A client that closed first has sent its Close already: once ours is written
        // the closing handshake is complete, and TCP closes at once (§2.7).
        self.phase = match self.phase {
            Phase::ClientClosed { .. } => Phase::Done,
            _ => Phase::Closing,
        };
        self.deadline = now + limits::CLOSE_WAIT;
    }
}
