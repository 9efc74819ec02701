//! 64-hex identifiers in canonical form (§3.4) and shard assignment (§10.2).

/// A 64-hex identifier (client_id, device_id, routing_token, recipient id, key_hash),
/// held as its 32 raw bytes. Its canonical text form is lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Id64(pub [u8; 32]);

impl Id64 {
    /// Parses exactly 64 characters of `0-9a-fA-F`. Anything else is `None`.
    pub fn parse(text: &str) -> Option<Id64> {
        todo!("helper B: parse {text}")
    }
    /// Canonical (lower-case) 64-character hex text.
    pub fn to_hex(&self) -> String {
        todo!()
    }
}

/// `shard_of(key)` of §10.2: the first 8 bytes of SHA-256 over the ASCII bytes of the
/// lower-case hex text, read as a big-endian u64, modulo `shards`.
pub fn shard_of(key: &Id64, shards: usize) -> usize {
    todo!("helper B {key:?} {shards}")
}
