//! The nonce replay cache of §4.3 step 4: (public key, nonce) pairs recorded for at
//! least 120 s, bounded; while full, new pairs are refused rather than forgetting
//! old ones. Each shard holds the pairs of the keys it owns (`shard_of(key)`), so
//! the check covers every connection and shard. Time is passed in.

use std::collections::{HashMap, VecDeque};

use crate::limits::NONCE_RETENTION_SECS;
use crate::protocol::Id64;

/// The verdict on one (key, nonce) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceVerdict {
    /// First use: now recorded.
    Fresh,
    /// Seen within the retention window.
    Replayed,
    /// The cache is full of unexpired entries: refuse with 1013 (§4.3).
    Full,
}

#[derive(Debug)]
pub struct NonceCache {
    capacity: usize,
    seen: HashMap<(Id64, [u8; 32]), u64, ahash::RandomState>,
    /// (recorded at, pair) in recording order, for expiry.
    order: VecDeque<(u64, (Id64, [u8; 32]))>,
}

impl NonceCache {
    pub fn new(capacity: usize) -> NonceCache {
        NonceCache {
            capacity,
            seen: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Checks and records a pair at unix time `now`.
    pub fn check(&mut self, key: Id64, nonce: [u8; 32], now: u64) -> NonceVerdict {
        self.expire(now);
        let pair = (key, nonce);
        if self.seen.contains_key(&pair) {
            return NonceVerdict::Replayed;
        }
        if self.seen.len() >= self.capacity {
            return NonceVerdict::Full;
        }
        self.seen.insert(pair, now);
        self.order.push_back((now, pair));
        NonceVerdict::Fresh
    }

    fn expire(&mut self, now: u64) {
        while let Some((at, pair)) = self.order.front().copied() {
            if at + NONCE_RETENTION_SECS > now {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&pair) == Some(&at) {
                self.seen.remove(&pair);
            }
        }
    }
}
