//! A minimal writer of compact JSON frames (§3.1, §3.5) for the encode hot path:
//! one pre-sized buffer, a 4-byte placeholder patched with the exact length at the
//! end, integers written without formatting machinery, and strings escaped exactly as
//! serde_json escapes them.

use super::ids::Id64;

/// The decimal text of every byte value, so that a `bytes` array costs one table
/// lookup per element. Each entry is (digits, digit count).
const BYTE_TEXT: [([u8; 3], u8); 256] = byte_text_table();

const fn byte_text_table() -> [([u8; 3], u8); 256] {
    let mut table = [([0u8; 3], 0u8); 256];
    let mut value = 0;
    while value < 256 {
        let hundreds = (value / 100) as u8;
        let tens = ((value / 10) % 10) as u8;
        let ones = (value % 10) as u8;
        table[value] = if value >= 100 {
            ([b'0' + hundreds, b'0' + tens, b'0' + ones], 3)
        } else if value >= 10 {
            ([b'0' + tens, b'0' + ones, 0], 2)
        } else {
            ([b'0' + ones, 0, 0], 1)
        };
        value += 1;
    }
    table
}

/// Two decimal digits for every value 0..100, for the integer writer.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

const HEX_DIGITS_LOWER: &[u8; 16] = b"0123456789abcdef";

/// One frame being written: the 4-byte prefix placeholder, then compact JSON.
pub(crate) struct FrameWriter {
    buffer: Vec<u8>,
}

impl FrameWriter {
    /// A writer with room for `json_bytes` of JSON; more is allocated if needed.
    pub(crate) fn with_capacity(json_bytes: usize) -> FrameWriter {
        let mut buffer = Vec::with_capacity(4 + json_bytes);
        buffer.extend_from_slice(&[0; 4]);
        FrameWriter { buffer }
    }

    /// Starts an envelope up to and including the payload's `"type"` member. The
    /// payload's other members follow as `,"name":value`; `finish` closes both objects.
    pub(crate) fn envelope(
        json_bytes: usize,
        version: u64,
        message_id: &str,
        timestamp: u64,
        payload_type: &str,
    ) -> FrameWriter {
        let mut frame = FrameWriter::with_capacity(json_bytes);
        frame.literal("{\"version\":");
        frame.number(version);
        frame.literal(",\"message_id\":");
        frame.string(message_id);
        frame.literal(",\"timestamp\":");
        frame.number(timestamp);
        frame.literal(",\"payload\":{\"type\":");
        frame.string(payload_type);
        frame
    }

    /// Closes the payload and the envelope and patches in the exact length prefix.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.literal("}}");
        let json_bytes = self.buffer.len() - 4;
        // A frame is bounded by the message size limit, far below 4 GiB; a longer one
        // would be a programmer error that must not be sent with a wrapped prefix.
        let length = u32::try_from(json_bytes).expect("frame JSON exceeds u32::MAX bytes");
        self.buffer[..4].copy_from_slice(&length.to_be_bytes());
        self.buffer
    }

    /// JSON text written as is: member names, punctuation, constant values.
    pub(crate) fn literal(&mut self, text: &str) {
        self.buffer.extend_from_slice(text.as_bytes());
    }

    /// A quoted JSON string, escaped as serde_json does: `\"`, `\\`, the short forms
    /// `\b \t \n \f \r`, `\u00XX` for other control characters, everything else as is.
    pub(crate) fn string(&mut self, text: &str) {
        let bytes = text.as_bytes();
        self.buffer.push(b'"');
        let mut start = 0;
        for (index, &byte) in bytes.iter().enumerate() {
            let short = match byte {
                b'"' => b'"',
                b'\\' => b'\\',
                0x08 => b'b',
                b'\t' => b't',
                b'\n' => b'n',
                0x0c => b'f',
                b'\r' => b'r',
                0x00..=0x1f => b'u',
                _ => continue,
            };
            // Escaped characters are ASCII, so `index` is a character boundary.
            self.buffer.extend_from_slice(&bytes[start..index]);
            start = index + 1;
            if short == b'u' {
                self.buffer.extend_from_slice(b"\\u00");
                self.buffer.push(HEX_DIGITS_LOWER[usize::from(byte >> 4)]);
                self.buffer.push(HEX_DIGITS_LOWER[usize::from(byte & 0x0f)]);
            } else {
                self.buffer.extend_from_slice(&[b'\\', short]);
            }
        }
        self.buffer.extend_from_slice(&bytes[start..]);
        self.buffer.push(b'"');
    }

    /// An unsigned integer in decimal.
    pub(crate) fn number(&mut self, mut value: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        // Every index below is under 100 * 2, so the `as usize` casts are exact.
        while value >= 100 {
            let pair = (value % 100) as usize * 2;
            value /= 100;
            start -= 2;
            digits[start..start + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        }
        if value >= 10 {
            let pair = value as usize * 2;
            start -= 2;
            digits[start..start + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        } else {
            start -= 1;
            // value < 10 here, so the cast is exact.
            digits[start] = b'0' + value as u8;
        }
        self.buffer.extend_from_slice(&digits[start..]);
    }

    /// `true` or `false` (§3.3).
    pub(crate) fn boolean(&mut self, value: bool) {
        self.literal(if value { "true" } else { "false" });
    }

    /// `bytes` (§3.3): a JSON array of integers 0–255.
    pub(crate) fn bytes(&mut self, data: &[u8]) {
        self.buffer.push(b'[');
        for (index, &byte) in data.iter().enumerate() {
            if index > 0 {
                self.buffer.push(b',');
            }
            let (digits, count) = &BYTE_TEXT[usize::from(byte)];
            self.buffer
                .extend_from_slice(&digits[..usize::from(*count)]);
        }
        self.buffer.push(b']');
    }

    /// A 64-hex id as a quoted string in canonical (lower-case) form.
    pub(crate) fn id(&mut self, id: &Id64) {
        self.buffer.push(b'"');
        id.write_hex(&mut self.buffer);
        self.buffer.push(b'"');
    }
}
