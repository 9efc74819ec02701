//! 64-hex identifiers in canonical form (§3.4) and shard assignment (§10.2).
//! An `Id64` always holds exactly 32 bytes, so its text form is always canonical.

use std::cell::RefCell;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::limits::RANDOM_POOL_BYTES;

const HEX_DIGITS_LOWER: &[u8; 16] = b"0123456789abcdef";

/// A 64-hex identifier (client_id, device_id, routing_token, recipient id, key_hash),
/// held as its 32 raw bytes. Its canonical text form is lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Id64(pub [u8; 32]);

impl Id64 {
    /// Parses exactly 64 characters of `0-9a-fA-F`. Anything else is `None`.
    pub fn parse(text: &str) -> Option<Id64> {
        decode_hex::<32>(text).map(Id64)
    }

    /// Canonical (lower-case) 64-character hex text.
    pub fn to_hex(&self) -> String {
        let mut text = String::with_capacity(64);
        for byte in self.0 {
            text.push(char::from(HEX_DIGITS_LOWER[usize::from(byte >> 4)]));
            text.push(char::from(HEX_DIGITS_LOWER[usize::from(byte & 0x0f)]));
        }
        text
    }

    /// Appends the canonical hex text to `out` without an intermediate `String`.
    pub(crate) fn write_hex(&self, out: &mut Vec<u8>) {
        for byte in self.0 {
            out.push(HEX_DIGITS_LOWER[usize::from(byte >> 4)]);
            out.push(HEX_DIGITS_LOWER[usize::from(byte & 0x0f)]);
        }
    }
}

impl fmt::Display for Id64 {
    /// The canonical (lower-case) hex text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::with_capacity(64);
        self.write_hex(&mut text);
        // write_hex only writes ASCII hex digits, so the text is valid UTF-8.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// Decodes exactly `2 * N` hex digits of either case into `N` bytes.
pub(crate) fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(bytes)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// `shard_of(key)` of §10.2: the first 8 bytes of SHA-256 over the ASCII bytes of the
/// lower-case hex text, read as a big-endian u64, modulo `shards`.
pub fn shard_of(key: &Id64, shards: usize) -> usize {
    assert!(shards > 0, "shard count must be positive");
    let mut text = Vec::with_capacity(64);
    key.write_hex(&mut text);
    let digest = Sha256::digest(&text);
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    let value = u64::from_be_bytes(prefix);
    // The remainder is below `shards`, which is a usize, so it fits in one.
    (value % shards as u64) as usize
}

/// Kernel randomness (getrandom(2)) not yet handed out, per thread.
struct RandomPool {
    bytes: [u8; RANDOM_POOL_BYTES],
    next: usize,
}

impl RandomPool {
    /// The next 16 unused bytes, refilling the pool when it is spent; `None` if the
    /// kernel would not fill it.
    fn take16(&mut self) -> Option<[u8; 16]> {
        if self.next + 16 > RANDOM_POOL_BYTES {
            let mut filled = 0;
            while filled < RANDOM_POOL_BYTES {
                let rest = &mut self.bytes[filled..];
                // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`.
                let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
                match got {
                    n if n > 0 => filled += n as usize,
                    _ if std::io::Error::last_os_error().kind()
                        == std::io::ErrorKind::Interrupted => {}
                    _ => return None,
                }
            }
            self.next = 0;
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&self.bytes[self.next..self.next + 16]);
        // Handed-out bytes are not kept.
        self.bytes[self.next..self.next + 16].fill(0);
        self.next += 16;
        Some(out)
    }
}

thread_local! {
    static RANDOM_POOL: RefCell<RandomPool> = const {
        RefCell::new(RandomPool { bytes: [0; RANDOM_POOL_BYTES], next: RANDOM_POOL_BYTES })
    };
}

/// A random (version 4) UUID for blob and message ids. Same source as
/// `Uuid::new_v4` (the kernel's CSPRNG), fetched 4 KiB at a time per thread: with two
/// ids per stored message, one getrandom(2) call per id was about 4 % of the relay's
/// CPU in the store benchmark.
pub fn random_uuid() -> uuid::Uuid {
    match RANDOM_POOL.with(|pool| pool.borrow_mut().take16()) {
        Some(bytes) => uuid::Builder::from_random_bytes(bytes).into_uuid(),
        None => uuid::Uuid::new_v4(),
    }
}
