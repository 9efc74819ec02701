//! Open connections per client address (§2.10): what counts as one address, and
//! the counts, shared by every shard so that the limit is exact whichever shard
//! the kernel gives a connection to. The counts live in memory only, one entry per
//! address with a connection open (so they are bounded by the open connections),
//! and are never logged or written anywhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::limits::ADDRESS_COUNT_STRIPES;

/// One client address as the limit counts it: an IPv4 address (IPv4-mapped IPv6
/// addresses included), or the first `RELAY_IPV6_PREFIX_LEN` bits of an IPv6 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressKey {
    V4(u32),
    V6(u128),
}

impl AddressKey {
    pub fn of(ip: IpAddr, ipv6_prefix_len: u8) -> AddressKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddressKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u32::from(ipv6_prefix_len.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                AddressKey::V6(u128::from(v6) & mask)
            }
        }
    }

    fn stripe(&self) -> usize {
        let folded = match *self {
            AddressKey::V4(v4) => u64::from(v4),
            AddressKey::V6(v6) => (v6 >> 64) as u64 ^ v6 as u64,
        };
        // Fibonacci hashing: the high bits of the product spread nearby addresses.
        (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % ADDRESS_COUNT_STRIPES
    }
}

/// The open connections of each address, split over `ADDRESS_COUNT_STRIPES` locks
/// so that shards rarely wait on each other.
pub struct AddressCounts {
    limit: u64,
    ipv6_prefix_len: u8,
    stripes: Box<[Mutex<HashMap<AddressKey, u64, ahash::RandomState>>]>,
}

impl AddressCounts {
    /// Counts against `limit` (at least 1) connections per address, IPv6
    /// addresses grouped by their first `ipv6_prefix_len` bits.
    pub fn new(limit: u64, ipv6_prefix_len: u8) -> AddressCounts {
        AddressCounts {
            limit: limit.max(1),
            ipv6_prefix_len,
            stripes: (0..ADDRESS_COUNT_STRIPES)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
        }
    }

    /// The address `ip` counts as.
    pub fn key(&self, ip: IpAddr) -> AddressKey {
        AddressKey::of(ip, self.ipv6_prefix_len)
    }

    /// Counts one more connection of `key`, or refuses it at the limit.
    pub fn try_add(&self, key: AddressKey) -> bool {
        let mut counts = self.lock(key);
        let count = counts.entry(key).or_insert(0);
        if *count >= self.limit {
            return false;
        }
        *count += 1;
        true
    }

    /// One connection of `key` has closed.
    pub fn remove(&self, key: AddressKey) {
        let mut counts = self.lock(key);
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }

    /// Open connections of `key` now.
    pub fn count(&self, key: AddressKey) -> u64 {
        self.lock(key).get(&key).copied().unwrap_or(0)
    }

    /// Addresses with a connection open now.
    pub fn addresses(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    fn lock(
        &self,
        key: AddressKey,
    ) -> std::sync::MutexGuard<'_, HashMap<AddressKey, u64, ahash::RandomState>> {
        self.stripes[key.stripe()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
