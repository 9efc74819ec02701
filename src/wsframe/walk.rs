//! Walks over the frame headers of a byte stream that some other reader parses:
//! [`LengthCheck`] finds a non-minimal length, [`CloseScan`] the peer's Close after a
//! failure. Neither keeps a payload; each holds at most one header.

use super::header::{HEADER_BYTES_MAX, OPCODE_CLOSE, declared_length, minimal_length};

/// Walks the frame headers of a byte stream, passing over payloads without keeping
/// them (holds at most one header): the part that [`LengthCheck`] and [`CloseScan`]
/// share. A header is reported once it is whole, mask included.
#[derive(Debug, Default)]
struct HeaderWalk {
    /// The current frame's header bytes read so far.
    header: [u8; HEADER_BYTES_MAX],
    header_len: usize,
    /// Payload bytes of the current frame still to pass over.
    payload_left: u64,
}

/// A whole frame header as the walk saw it.
struct WalkedHeader {
    opcode: u8,
    length_bytes: usize,
    declared_len: u64,
}

impl HeaderWalk {
    /// Walks `bytes` until `stop` says so for a header: `Some((at, end))`, where `at`
    /// is the offset in `bytes` of that header's first byte (0 if it began in earlier
    /// bytes) and `end` the offset just past it; the walk goes on from `end`.
    fn walk(
        &mut self,
        bytes: &[u8],
        mut stop: impl FnMut(&WalkedHeader) -> bool,
    ) -> Option<(usize, usize)> {
        let mut pos = 0;
        let mut header_start = 0;
        while pos < bytes.len() {
            if self.payload_left > 0 {
                let pass = self.payload_left.min((bytes.len() - pos) as u64);
                self.payload_left -= pass;
                pos += pass as usize;
                continue;
            }
            if self.header_len == 0 {
                header_start = pos;
            }
            self.header[self.header_len] = bytes[pos];
            self.header_len += 1;
            pos += 1;
            let header = &self.header[..self.header_len];
            let Some((length_bytes, declared_len)) = declared_length(header) else {
                continue;
            };
            let mask_bytes = if header[1] & 0x80 != 0 { 4 } else { 0 };
            if header.len() < 2 + length_bytes + mask_bytes {
                continue;
            }
            let walked = WalkedHeader {
                opcode: self.header[0] & 0x0F,
                length_bytes,
                declared_len,
            };
            self.header_len = 0;
            self.payload_left = declared_len;
            if stop(&walked) {
                return Some((header_start, pos));
            }
        }
        None
    }
}

/// Finds the first length that is not written minimally (RFC 6455 §5.2) in a byte
/// stream of frames. For links read by a WebSocket library that does not check it
/// (federation).
#[derive(Debug, Default)]
pub struct LengthCheck {
    walk: HeaderWalk,
    failed: bool,
}

/// A non-minimal length found by [`LengthCheck::feed`] in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// The bytes before the offending header (its part in these bytes): whole
    /// frames or their parts, safe to pass on.
    pub pass: usize,
    /// The bytes up to the end of that header: the walk goes on after them.
    pub walked: usize,
}

impl LengthCheck {
    pub fn new() -> LengthCheck {
        LengthCheck::default()
    }

    /// Whether a non-minimal length has been seen.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Walks `bytes`, the next ones of the stream; `Err` when a frame header with a
    /// non-minimal length ends in them. Once failed, every call fails with nothing
    /// to pass or walk.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        if self.failed {
            return Err(Violation { pass: 0, walked: 0 });
        }
        let found = self
            .walk
            .walk(bytes, |h| !minimal_length(h.length_bytes, h.declared_len));
        match found {
            Some((pass, walked)) => {
                self.failed = true;
                Err(Violation { pass, walked })
            }
            None => Ok(()),
        }
    }

    /// A scan for the peer's Close that goes on from where this walk is: every
    /// byte given to `feed` (up to a violation's header) has been walked, so it
    /// stays in step with the frames wherever a reader gave up.
    pub fn into_close_scan(self) -> CloseScan {
        CloseScan {
            walk: self.walk,
            ..CloseScan::default()
        }
    }
}

/// Looks for the peer's Close in the frames that follow ours, whatever else they
/// hold, without keeping payloads: where a reader has failed on a frame whose
/// header still tells its length (a protocol error, a message over the limit), the
/// frames after it can still be told apart (§2.7: TCP closes once that Close is in).
#[derive(Debug, Default)]
pub struct CloseScan {
    walk: HeaderWalk,
    /// A Close header has been walked; its payload is passing.
    in_close: bool,
    seen: bool,
}

impl CloseScan {
    /// Starts at a frame boundary.
    pub fn new() -> CloseScan {
        CloseScan::default()
    }

    /// Whether a whole Close frame is in (its payload too, so that nothing of it is
    /// left unread).
    pub fn seen(&self) -> bool {
        self.seen
    }

    /// Walks the next bytes of the stream; then [`CloseScan::seen`].
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.seen {
            return true;
        }
        let mut rest = bytes;
        if !self.in_close {
            match self.walk.walk(bytes, |h| h.opcode == OPCODE_CLOSE) {
                Some((_, end)) => {
                    self.in_close = true;
                    rest = &bytes[end..];
                }
                None => return false,
            }
        }
        let pass = self.walk.payload_left.min(rest.len() as u64);
        self.walk.payload_left -= pass;
        self.seen = self.walk.payload_left == 0;
        self.seen
    }
}
