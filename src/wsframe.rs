//! A sans-I/O reader for RFC 6455 frames, used on the accepting shard between the
//! `101` reply and the hand-off to the owner shard (GLOMMIO-NOTES: bytes buffered by a
//! WebSocket library cannot be taken back out). It reads exactly up to the end of the
//! first data message, answering control frames, so the rest stays unread.

/// What the first-message reader wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes and call `feed` again.
    NeedMore,
    /// Write these bytes (a Pong) to the peer, then call `poll` again.
    Write(Vec<u8>),
    /// The first data message is complete. `consumed` bytes of everything fed so far
    /// belong to it (and to the control frames before it); the rest is the session's.
    Message { binary: bool, payload: Vec<u8>, consumed: usize },
    /// The peer sent Close with this code (1000 when it gave none): echo and close.
    PeerClose { code: u16 },
    /// Close the connection with this close code and reason (1002, 1007, 1009).
    Fail { code: u16, reason: &'static str },
}

/// Accumulates bytes and yields the first data message (fragments joined) while
/// answering Pings and ignoring Pongs. Frames must be masked (client to server).
pub struct FirstMessageReader {
    _private: (),
}

impl FirstMessageReader {
    /// `max_message_bytes` bounds both each frame and the joined message (§2.6).
    pub fn new(max_message_bytes: usize) -> Self {
        todo!("helper C {max_message_bytes}")
    }
    /// Adds bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        todo!("{}", bytes.len())
    }
    /// The next step given everything fed so far.
    pub fn poll(&mut self) -> Step {
        todo!()
    }
    /// Bytes fed but not consumed (after `Message`): hand these to the session.
    pub fn into_remainder(self) -> Vec<u8> {
        todo!()
    }
}

/// An unmasked server Close frame with this code and reason.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    todo!("{code}{reason}")
}

/// Integration placeholder until the continuous reader lands.
pub type MessageReader = FirstMessageReader;

/// Appends an unmasked, unfragmented binary frame.
pub fn write_binary_frame(out: &mut Vec<u8>, payload: &[u8]) {
    todo!("{}{}", out.len(), payload.len())
}
