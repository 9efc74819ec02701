//! The forwarding hints a shard holds for the routing ids it owns (PROTOCOL.md
//! §5.13, §11.8): kept whole in memory, rebuilt from storage at startup and mirrored
//! to it, so storage needs no index on `routing_id`.
//!
//! Invariants: each routing id's hints are in (`expires_at_secs`, `blob_id`, `key`)
//! order, the order §5.13 sends them in; every hint is in both maps, so a hint
//! removed by purge is never handed out again by expiry. A hint expiring at or
//! before `now` is never listed by `unexpired`.
//!
//! Bound: a hint is written only in the transaction that deletes its blob (§11.7
//! step 4), and every hint is gone once its blob's TTL has passed (§10.6), so the
//! index never holds more entries than the blobs offloaded within one
//! `RELAY_BLOB_TTL_SECS`, each of which first held a place in the shard's storage.

use std::collections::{BTreeMap, HashMap};

use crate::protocol::Id64;
use crate::storage::HintRecord;

/// Every routing id's hints on one shard.
#[derive(Debug, Default)]
pub struct HintIndex {
    /// Per routing id, its hints in (`expires_at_secs`, `blob_id`, `key`) order.
    by_routing: HashMap<Id64, Vec<HintRecord>, ahash::RandomState>,
    /// Every hint as (`expires_at_secs`, `key`) -> routing id, so that expiry finds
    /// the expired hints without looking at the others.
    by_expiry: BTreeMap<(u64, u64), Id64>,
}

/// The order of one routing id's hints (§5.13), made total by the key.
fn order(hint: &HintRecord) -> (u64, uuid::Uuid, u64) {
    (hint.expires_at_secs, hint.blob_id, hint.key)
}

impl HintIndex {
    /// The index of every stored hint, expired ones included (expiry removes them).
    pub fn rebuild(records: Vec<HintRecord>) -> HintIndex {
        let mut index = HintIndex::default();
        for record in records {
            index.insert(record);
        }
        index
    }

    /// Adds a hint. Its `key` must not be in the index already: keys come from the
    /// shard's one storage key counter.
    pub fn insert(&mut self, record: HintRecord) {
        self.by_expiry
            .insert((record.expires_at_secs, record.key), record.routing_id);
        let hints = self.by_routing.entry(record.routing_id).or_default();
        let at = hints.partition_point(|h| order(h) < order(&record));
        hints.insert(at, record);
    }

    /// The hints of `routing` with `expires_at_secs` > `now`, in (`expires_at_secs`,
    /// `blob_id`) order.
    pub fn unexpired(&self, routing: &Id64, now: u64) -> Vec<&HintRecord> {
        let Some(hints) = self.by_routing.get(routing) else {
            return Vec::new();
        };
        let first = hints.partition_point(|h| h.expires_at_secs <= now);
        hints[first..].iter().collect()
    }

    /// Removes every hint of `routing`, expired or not (purge, §5.11 step 2), and
    /// returns their keys in (`expires_at_secs`, `blob_id`) order.
    pub fn remove_routing(&mut self, routing: &Id64) -> Vec<u64> {
        let Some(hints) = self.by_routing.remove(routing) else {
            return Vec::new();
        };
        hints
            .into_iter()
            .map(|hint| {
                self.by_expiry.remove(&(hint.expires_at_secs, hint.key));
                hint.key
            })
            .collect()
    }

    /// Removes every hint with `expires_at_secs` ≤ `now` (cleanup, §10.6) and
    /// returns their keys in (`expires_at_secs`, `key`) order. Costs the expired
    /// hints, not the whole index.
    pub fn take_expired(&mut self, now: u64) -> Vec<u64> {
        let expired = match now.checked_add(1) {
            Some(later) => {
                let kept = self.by_expiry.split_off(&(later, 0));
                std::mem::replace(&mut self.by_expiry, kept)
            }
            None => std::mem::take(&mut self.by_expiry),
        };
        let mut keys = Vec::with_capacity(expired.len());
        for ((_, key), routing) in expired {
            keys.push(key);
            // A routing's expired hints are a prefix of its list: the first of them
            // drains them all, the rest find none.
            if let Some(hints) = self.by_routing.get_mut(&routing) {
                let end = hints.partition_point(|h| h.expires_at_secs <= now);
                hints.drain(..end);
                if hints.is_empty() {
                    self.by_routing.remove(&routing);
                }
            }
        }
        keys
    }

    /// The number of hints held, expired ones not yet taken included.
    pub fn len(&self) -> usize {
        self.by_expiry.len()
    }

    /// True when no hint is held.
    pub fn is_empty(&self) -> bool {
        self.by_expiry.is_empty()
    }
}
