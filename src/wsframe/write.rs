//! The server's frame writers: unmasked, final, unfragmented frames (binary data,
//! Close, and the reader's Pongs), their lengths in the shortest form.

use super::header::{CONTROL_PAYLOAD_BYTES_MAX, HEADER_BYTES_MAX, OPCODE_BINARY, OPCODE_CLOSE};

/// An unmasked, final server frame.
pub(super) fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES_MAX + payload.len());
    write_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// An unmasked server Close frame with this code and reason. A reason longer than a
/// control frame allows (123 bytes) is cut at a character boundary.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(CONTROL_PAYLOAD_BYTES_MAX - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    server_frame(OPCODE_CLOSE, &payload)
}

/// An unmasked, final, unfragmented server binary frame.
pub fn server_binary_frame(payload: &[u8]) -> Vec<u8> {
    server_frame(OPCODE_BINARY, payload)
}

/// Appends an unmasked, final, unfragmented binary frame to `out` (no extra copy).
pub fn write_binary_frame(out: &mut Vec<u8>, payload: &[u8]) {
    write_header(out, OPCODE_BINARY, payload.len());
    out.extend_from_slice(payload);
}

/// Appends the header of an unmasked, final binary frame of `len` payload bytes;
/// the caller appends the payload (the Noise transport encrypts it in place).
pub fn write_binary_header(out: &mut Vec<u8>, len: usize) {
    write_header(out, OPCODE_BINARY, len);
}

fn write_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    match len {
        len if len <= CONTROL_PAYLOAD_BYTES_MAX => out.push(len as u8),
        len if len <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}
