//! One client's Noise session (§15.1), sans I/O: the responder's answer to an
//! opening, then the transport. Inbound, each WebSocket message is one transport
//! message whose plaintext joins a stream of v1 frames, cut again by their 4-byte
//! length prefixes, so a frame may span messages and a message hold several
//! frames. Outbound, each frame is sealed into as few messages as its length
//! needs: one when it fits, as v1.1.0 did.
//!
//! Bounds: the reassembly buffer holds at most one frame of the session's limit
//! (`frame_bytes_max`, §2.6) plus one message's plaintext
//! (`limits::NOISE_REASSEMBLY_EXTRA_BYTES`); a prefix over the limit is refused
//! as soon as its 4 bytes are in.

use snow::TransportState;

use super::key::StaticKey;
use crate::limits;
use crate::protocol::CloseReason;
use crate::wsframe;

/// The Noise protocol name (§15.1): no prologue, the relay is the responder.
pub const PATTERN: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";
/// The 3 bytes in front of both opening messages ("\0V2").
pub const MAGIC: [u8; 3] = [0x00, 0x56, 0x32];
/// Largest Noise message (Noise spec §3).
pub const MESSAGE_BYTES_MAX: usize = 65_535;
/// The AEAD tag every transport message carries.
pub const TAG_BYTES: usize = 16;
/// Largest plaintext of one transport message: 65519 bytes.
pub const PLAINTEXT_BYTES_MAX: usize = MESSAGE_BYTES_MAX - TAG_BYTES;

/// The WebSocket message limit on a Noise session whose v1 frames may be up to
/// `frame_bytes_max` (§2.6): the limit applies to the reassembled frame (the
/// channel enforces it), and a transport message may be up to 65535 bytes, tag
/// included, whatever the frame limit (§15.1).
pub fn websocket_message_bytes_max(frame_bytes_max: usize) -> usize {
    frame_bytes_max.max(MESSAGE_BYTES_MAX)
}

// The reassembly bound of `limits` is one message's plaintext.
const _: () = assert!(limits::NOISE_REASSEMBLY_EXTRA_BYTES == PLAINTEXT_BYTES_MAX);

/// Why the session must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A message did not decrypt (1008 `decryption failed`).
    Decryption,
    /// A reassembled frame is over the limit (1009 `message too big`).
    TooBig,
    /// The nonce counter would run out (1000 `idle timeout`; in practice never).
    Exhausted,
}

impl Refused {
    /// The close the session ends with (§15.1, §2.7), before or after the Handshake.
    pub fn close_reason(self) -> CloseReason {
        match self {
            Refused::Decryption => CloseReason::DecryptionFailed,
            Refused::TooBig => CloseReason::MessageTooBig,
            Refused::Exhausted => CloseReason::IdleTimeout,
        }
    }
}

/// The opening did not complete (1008 `noise handshake failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningFailed;

/// A Noise session in transport mode with its partly reassembled frames. It is
/// `Send`, so that it moves to the owner shard with its socket.
pub struct Channel {
    transport: Box<TransportState>,
    /// Plaintext received and not yet cut into frames, from `start` on.
    inbound: Vec<u8>,
    start: usize,
    frame_bytes_max: usize,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("buffered", &(self.inbound.len() - self.start))
            .finish_non_exhaustive()
    }
}

/// Answers an opening (§15.1): `opening` is the whole first binary message,
/// magic included. Returns the reply message (magic and message 2) and the
/// session, whose frames may be at most `frame_bytes_max` bytes, prefix included.
pub fn respond(
    key: &StaticKey,
    opening: &[u8],
    frame_bytes_max: usize,
) -> Result<(Vec<u8>, Channel), OpeningFailed> {
    let message = opening.strip_prefix(&MAGIC).ok_or(OpeningFailed)?;
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(OpeningFailed);
    }
    // Invariant: PATTERN is a valid name with built-in primitives.
    let params = PATTERN.parse().expect("the NK pattern name");
    let mut responder = snow::Builder::new(params)
        .local_private_key(key.private())
        .and_then(|builder| builder.build_responder())
        .map_err(|_| OpeningFailed)?;
    // Message 1's payload is read and ignored (§15.1).
    let mut ignored = vec![0u8; message.len()];
    responder
        .read_message(message, &mut ignored)
        .map_err(|_| OpeningFailed)?;
    let mut reply = vec![0u8; MAGIC.len() + 48 + TAG_BYTES];
    reply[..MAGIC.len()].copy_from_slice(&MAGIC);
    let written = responder
        .write_message(&[], &mut reply[MAGIC.len()..])
        .map_err(|_| OpeningFailed)?;
    reply.truncate(MAGIC.len() + written);
    let transport = responder.into_transport_mode().map_err(|_| OpeningFailed)?;
    let channel = Channel {
        transport: Box::new(transport),
        inbound: Vec::new(),
        start: 0,
        frame_bytes_max,
    };
    Ok((reply, channel))
}

impl Channel {
    /// Decrypts one transport message (a binary WebSocket message's payload) onto
    /// the frame stream.
    pub fn open(&mut self, message: &[u8]) -> Result<(), Refused> {
        if message.len() > MESSAGE_BYTES_MAX || message.len() < TAG_BYTES {
            return Err(Refused::Decryption);
        }
        self.compact();
        let at = self.inbound.len();
        self.inbound.resize(at + message.len(), 0);
        match self
            .transport
            .read_message(message, &mut self.inbound[at..])
        {
            Ok(n) => {
                self.inbound.truncate(at + n);
                Ok(())
            }
            Err(error) => {
                self.inbound.truncate(at);
                Err(match error {
                    snow::Error::State(_) => Refused::Exhausted,
                    _ => Refused::Decryption,
                })
            }
        }
    }

    /// The next whole frame (prefix included) of the stream, if one is in.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, Refused> {
        let pending = &self.inbound[self.start..];
        let Some(prefix) = pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let frame_len = (u32::from_be_bytes(*prefix) as usize).saturating_add(4);
        if frame_len > self.frame_bytes_max {
            return Err(Refused::TooBig);
        }
        if pending.len() < frame_len {
            return Ok(None);
        }
        let frame = if self.start == 0 && self.inbound.len() == frame_len {
            // The usual case, one frame per message: no copy.
            std::mem::take(&mut self.inbound)
        } else {
            let frame = pending[..frame_len].to_vec();
            self.start += frame_len;
            frame
        };
        Ok(Some(frame))
    }

    /// Whether plaintext is waiting to be cut into frames.
    pub fn has_buffered(&self) -> bool {
        self.inbound.len() > self.start
    }

    /// Drops the frames already taken from the front of the buffer.
    fn compact(&mut self) {
        if self.start == self.inbound.len() {
            self.inbound.clear();
            self.start = 0;
            if self.inbound.capacity() > self.frame_bytes_max.min(2 * PLAINTEXT_BYTES_MAX) {
                self.inbound = Vec::new();
            }
        } else if self.start > 0 {
            self.inbound.drain(..self.start);
            self.start = 0;
        }
    }

    /// Appends `frame`, sealed, to `out` as binary WebSocket frames: one transport
    /// message per 65519 plaintext bytes. On failure `out` is as it was.
    pub fn seal(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), Refused> {
        let before = out.len();
        for chunk in frame.chunks(PLAINTEXT_BYTES_MAX) {
            let sealed = chunk.len() + TAG_BYTES;
            wsframe::write_binary_header(out, sealed);
            let at = out.len();
            out.resize(at + sealed, 0);
            if self.transport.write_message(chunk, &mut out[at..]).is_err() {
                out.truncate(before);
                return Err(Refused::Exhausted);
            }
        }
        Ok(())
    }
}
