//! A sans-I/O reader for RFC 6455 frames, used on the accepting shard between the
//! `101` reply and the hand-off to the owner shard (GLOMMIO-NOTES: bytes buffered by a
//! WebSocket library cannot be taken back out). It reads exactly up to the end of the
//! first data message, answering control frames, so the rest stays unread.
//!
//! Invariants: every frame's declared length is checked against the limit before any
//! of its payload is buffered or allocated for; `consumed` plus the bytes still
//! buffered always equals the bytes fed.
//!
//! The frame writers are in `write.rs`; the header walks that check a stream read by
//! another reader (`LengthCheck`, `CloseScan`) in `walk.rs`; the opcodes and length
//! encoding all three share in `header.rs`.

mod header;
mod walk;
mod write;

pub use header::minimal_length;
use header::{
    CONTROL_PAYLOAD_BYTES_MAX, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_CONTINUATION, OPCODE_PING,
    OPCODE_PONG, OPCODE_TEXT, declared_length,
};
pub use walk::{CloseScan, LengthCheck, Violation};
use write::server_frame;
pub use write::{close_frame, server_binary_frame, write_binary_frame, write_binary_header};

const PROTOCOL_ERROR: Step = Step::Fail {
    code: 1002,
    reason: "protocol error",
};
const INVALID_UTF8: Step = Step::Fail {
    code: 1007,
    reason: "invalid utf-8",
};
const TOO_BIG: Step = Step::Fail {
    code: 1009,
    reason: "message too big",
};

/// What the first-message reader wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes and call `feed` again.
    NeedMore,
    /// Write these bytes (a Pong) to the peer, then call `poll` again.
    Write(Vec<u8>),
    /// The first data message is complete. `consumed` bytes of everything fed so far
    /// belong to it (and to the control frames before it); the rest is the session's.
    Message {
        binary: bool,
        payload: Vec<u8>,
        consumed: usize,
    },
    /// The peer sent Close with this code (1000 when it gave none): echo and close.
    PeerClose { code: u16 },
    /// Close the connection with this close code and reason (1002, 1007, 1009).
    Fail { code: u16, reason: &'static str },
}

/// How the reader ended, so that polling again repeats the answer.
#[derive(Debug, Clone, Copy)]
enum End {
    Message,
    PeerClose(u16),
    Fail(u16, &'static str),
}

/// Accumulates bytes and yields the first data message (fragments joined) while
/// answering Pings and ignoring Pongs. Frames must be masked (client to server).
///
/// Memory bound: the reader holds the fragments joined so far plus the unparsed
/// bytes. Since a frame is refused (1009) as soon as its header shows that it would
/// take the message past `max_message_bytes`, the joined fragments plus the frame
/// being read never exceed `max_message_bytes + 14` bytes (a control frame in the
/// middle of a message adds at most 139). Whatever the caller feeds beyond the frame
/// being read is held as well, so a caller that reads in chunks of at most `c` bytes
/// and polls after each `feed` keeps the reader under `max_message_bytes + 139 + c`
/// bytes held. The allocations behind them may carry spare capacity of up to the
/// same again (the read buffer grows by doubling and can become a message).
pub struct FirstMessageReader {
    max_message_bytes: usize,
    /// Fed bytes not yet parsed; always starts at a frame boundary.
    buffer: Vec<u8>,
    /// Bytes parsed and dropped from `buffer`, over all frames.
    consumed: usize,
    /// The joined payload of a fragmented data message, and whether it is binary;
    /// `None` between messages.
    fragments: Option<(bool, Vec<u8>)>,
    /// Header plus payload length of the frame at the start of `buffer`, once its
    /// header has been read and checked but the frame is not complete yet.
    pending_frame_bytes: Option<usize>,
    end: Option<End>,
    /// A session reader goes on after each message; a first-message reader stops.
    continuous: bool,
}

/// A frame header whose length has been checked.
struct Header {
    fin: bool,
    opcode: u8,
    /// Header bytes including the mask.
    header_len: usize,
    payload_len: usize,
    mask: [u8; 4],
}

impl FirstMessageReader {
    /// `max_message_bytes` bounds both each frame and the joined message (§2.6).
    pub fn new(max_message_bytes: usize) -> Self {
        FirstMessageReader {
            max_message_bytes,
            buffer: Vec::new(),
            consumed: 0,
            fragments: None,
            pending_frame_bytes: None,
            end: None,
            continuous: false,
        }
    }

    /// A reader for a whole session: polling after `Message` reads the next one.
    pub fn continuous(max_message_bytes: usize) -> Self {
        FirstMessageReader {
            continuous: true,
            ..FirstMessageReader::new(max_message_bytes)
        }
    }

    /// Changes the bound on each frame and joined message from the next frame on:
    /// a Noise session's messages carry their frames with a 16-byte tag, in
    /// messages of up to 65535 bytes (§15.1).
    pub fn set_max_message_bytes(&mut self, max_message_bytes: usize) {
        self.max_message_bytes = max_message_bytes;
    }

    /// The bound on each frame and joined message.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Adds bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        // Grow as bytes arrive, doubling but never past the end of the frame being read:
        // a header alone reserves nothing for its declared length, and a whole frame
        // leaves no slack.
        let limit = self.pending_frame_bytes.unwrap_or(usize::MAX);
        reserve_bounded(&mut self.buffer, bytes.len(), limit);
        self.buffer.extend_from_slice(bytes);
    }

    /// The next step given everything fed so far. After `PeerClose` or `Fail`, polling
    /// again repeats it; polling after `Message` is a programmer error.
    pub fn poll(&mut self) -> Step {
        match self.end {
            None => {}
            Some(End::Message) if self.continuous => self.end = None,
            Some(End::Message) => panic!("FirstMessageReader polled after its message"),
            Some(End::PeerClose(code)) => return Step::PeerClose { code },
            Some(End::Fail(code, reason)) => return Step::Fail { code, reason },
        }
        let step = self.advance();
        self.end = match step {
            Step::Message { .. } => Some(End::Message),
            Step::PeerClose { code } => Some(End::PeerClose(code)),
            Step::Fail { code, reason } => Some(End::Fail(code, reason)),
            Step::NeedMore | Step::Write(_) => None,
        };
        step
    }

    /// Bytes of whole frames parsed so far (control frames and the fragments of an
    /// unfinished message included): it grows whenever a frame has arrived.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Bytes fed but not consumed (after `Message`): hand these to the session.
    pub fn into_remainder(self) -> Vec<u8> {
        self.buffer
    }

    /// Takes the bytes fed but not consumed, leaving the reader without them.
    pub fn take_remainder(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }

    /// Whether the reader has failed (`Fail`): its bytes no longer parse.
    pub fn failed(&self) -> bool {
        matches!(self.end, Some(End::Fail(..)))
    }

    /// After a failure on a frame whose header tells its length: a scan for the
    /// peer's Close from that header on, fed what the reader held.
    pub fn take_close_scan(&mut self) -> CloseScan {
        let mut scan = CloseScan::new();
        scan.feed(&self.take_remainder());
        scan
    }

    /// Parses whole frames until one needs an answer or the bytes run out.
    fn advance(&mut self) -> Step {
        loop {
            let header = match self.header() {
                Ok(Some(header)) => header,
                Ok(None) => return Step::NeedMore,
                Err(step) => return step,
            };
            let frame_len = header.header_len + header.payload_len;
            if self.buffer.len() < frame_len {
                self.pending_frame_bytes = Some(frame_len);
                return Step::NeedMore;
            }
            self.pending_frame_bytes = None;
            self.consumed += frame_len;
            let payload = header.header_len..frame_len;
            unmask(&mut self.buffer[payload.clone()], header.mask);
            if header.opcode & 0x08 != 0 {
                // A control frame: at most 125 bytes, copied out.
                let control = self.buffer[payload].to_vec();
                self.buffer.drain(..frame_len);
                match header.opcode {
                    OPCODE_PING => return Step::Write(server_frame(OPCODE_PONG, &control)),
                    OPCODE_CLOSE => return peer_close(&control),
                    _ => continue, // Pong: ignored.
                }
            }
            let (binary, joined) = match self.fragments.take() {
                Some((binary, mut joined)) => {
                    reserve_bounded(&mut joined, payload.len(), self.max_message_bytes);
                    joined.extend_from_slice(&self.buffer[payload]);
                    self.buffer.drain(..frame_len);
                    (binary, joined)
                }
                None => (
                    header.opcode == OPCODE_BINARY,
                    self.take_frame_payload(header.header_len, frame_len),
                ),
            };
            if !header.fin {
                self.fragments = Some((binary, joined));
                continue;
            }
            if !binary && std::str::from_utf8(&joined).is_err() {
                return INVALID_UTF8;
            }
            return Step::Message {
                binary,
                payload: joined,
                consumed: self.consumed,
            };
        }
    }

    /// Takes the (unmasked) payload of the frame at the start of the buffer, copying
    /// whichever is smaller: the payload, or the bytes after the frame (the buffer's
    /// allocation then becomes the payload). A large message is never held twice.
    fn take_frame_payload(&mut self, header_len: usize, frame_len: usize) -> Vec<u8> {
        if self.buffer.len() - frame_len > frame_len - header_len {
            let payload = self.buffer[header_len..frame_len].to_vec();
            self.buffer.drain(..frame_len);
            return payload;
        }
        let rest = self.buffer.split_off(frame_len);
        let mut frame = std::mem::replace(&mut self.buffer, rest);
        frame.drain(..header_len);
        frame
    }

    /// Reads and checks the header at the start of the buffer: `Ok(None)` when more
    /// bytes are needed, `Err` with the failure as soon as the bytes present show one.
    fn header(&self) -> Result<Option<Header>, Step> {
        let bytes = &self.buffer;
        if bytes.len() < 2 {
            return Ok(None);
        }
        let fin = bytes[0] & 0x80 != 0;
        let rsv = bytes[0] & 0x70;
        let opcode = bytes[0] & 0x0F;
        let masked = bytes[1] & 0x80 != 0;
        let length_code = bytes[1] & 0x7F;
        let is_control = opcode & 0x08 != 0;
        let known = matches!(
            opcode,
            OPCODE_CONTINUATION
                | OPCODE_TEXT
                | OPCODE_BINARY
                | OPCODE_CLOSE
                | OPCODE_PING
                | OPCODE_PONG
        );
        let in_message = self.fragments.is_some();
        if rsv != 0 || !known || !masked {
            return Err(PROTOCOL_ERROR);
        }
        if is_control && (!fin || usize::from(length_code) > CONTROL_PAYLOAD_BYTES_MAX) {
            return Err(PROTOCOL_ERROR);
        }
        if (opcode == OPCODE_CONTINUATION && !in_message)
            || ((opcode == OPCODE_TEXT || opcode == OPCODE_BINARY) && in_message)
        {
            return Err(PROTOCOL_ERROR);
        }
        let Some((length_bytes, declared_len)) = declared_length(bytes) else {
            return Ok(None);
        };
        // RFC 6455 §5.2: the most significant bit of a 64-bit length is 0, and a
        // length is written in the shortest form that holds it (§2.6: 1002).
        if declared_len >> 63 != 0 || !minimal_length(length_bytes, declared_len) {
            return Err(PROTOCOL_ERROR);
        }
        // Control payloads are at most 125 bytes and do not join the message.
        let joined_len = match (&self.fragments, is_control) {
            (Some((_, joined)), false) => joined.len() as u64,
            _ => 0,
        };
        if declared_len.saturating_add(joined_len) > self.max_message_bytes as u64 {
            return Err(TOO_BIG);
        }
        let header_len = 2 + length_bytes + 4;
        if bytes.len() < header_len {
            return Ok(None);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&bytes[header_len - 4..header_len]);
        Ok(Some(Header {
            fin,
            opcode,
            header_len,
            // Fits: it is at most max_message_bytes, a usize.
            payload_len: declared_len as usize,
            mask,
        }))
    }
}

/// Makes room for `additional` more bytes, doubling the capacity but not past
/// `limit` (unless the bytes themselves need more), so that a vector sized by a
/// checked frame or message length never carries up to twice that in slack.
fn reserve_bounded(bytes: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = bytes.len().saturating_add(additional);
    if needed <= bytes.capacity() {
        return;
    }
    let doubled = bytes.capacity().saturating_mul(2).min(limit);
    bytes.reserve_exact(needed.max(doubled) - bytes.len());
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// The step for a Close payload (RFC 6455 §5.5.1, §7.4): no code means 1000; one
/// byte, a code that must not be sent, or a reason that is not UTF-8 fails.
fn peer_close(payload: &[u8]) -> Step {
    let code = match payload {
        [] => return Step::PeerClose { code: 1000 },
        [_] => return PROTOCOL_ERROR,
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
    };
    // The codes tungstenite accepts too, so a session behaves the same after hand-off.
    if !matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999) {
        return PROTOCOL_ERROR;
    }
    if std::str::from_utf8(&payload[2..]).is_err() {
        return INVALID_UTF8;
    }
    Step::PeerClose { code }
}

/// The same reader for a whole session: after each `Message` it goes on with the
/// next frame instead of stopping.
pub type MessageReader = FirstMessageReader;
