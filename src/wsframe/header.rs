//! What every frame header shares (RFC 6455 §5.2): the opcodes, the longest
//! header and control payload, and how the payload length is written. The reader,
//! the writers and the header walks all read it from here.

/// Longest frame header: 2 fixed bytes, an 8-byte extended length, a 4-byte mask.
pub(super) const HEADER_BYTES_MAX: usize = 14;
/// Longest control frame payload (RFC 6455 §5.5).
pub(super) const CONTROL_PAYLOAD_BYTES_MAX: usize = 125;

pub(super) const OPCODE_CONTINUATION: u8 = 0x0;
pub(super) const OPCODE_TEXT: u8 = 0x1;
pub(super) const OPCODE_BINARY: u8 = 0x2;
pub(super) const OPCODE_CLOSE: u8 = 0x8;
pub(super) const OPCODE_PING: u8 = 0x9;
pub(super) const OPCODE_PONG: u8 = 0xA;

/// The payload length a frame header declares, and how many extended-length bytes
/// (0, 2 or 8) hold it, from the header's first bytes; `None` until they are in.
pub(super) fn declared_length(header: &[u8]) -> Option<(usize, u64)> {
    match *header.get(1)? & 0x7F {
        126 => {
            let be: [u8; 2] = header.get(2..4)?.try_into().ok()?;
            Some((2, u64::from(u16::from_be_bytes(be))))
        }
        127 => {
            let be: [u8; 8] = header.get(2..10)?.try_into().ok()?;
            Some((8, u64::from_be_bytes(be)))
        }
        short => Some((0, u64::from(short))),
    }
}

/// Whether a payload length written with `length_bytes` extended bytes (0, 2 or 8)
/// uses the minimal encoding: 126 and more need the 16-bit form, 65536 and more the
/// 64-bit form, and no longer form may carry a length a shorter one holds.
pub fn minimal_length(length_bytes: usize, declared_len: u64) -> bool {
    match length_bytes {
        2 => declared_len >= 126,
        8 => declared_len > u64::from(u16::MAX),
        _ => true,
    }
}
