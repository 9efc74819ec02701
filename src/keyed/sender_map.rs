//! The sender map of PROTOCOL.md §7.3: blob id -> (sender routing_id, delivered
//! flag), memory only, bounded; when full the oldest entry is evicted.
//! Each shard holds the entries of the blobs it owns (§10.2).

use std::collections::{HashMap, VecDeque};

use crate::protocol::Id64;
use crate::storage::BlobId;

#[derive(Debug, Clone, Copy)]
struct Sender {
    routing_id: Id64,
    delivered: bool,
    order: u64,
}

/// A bounded, insertion-ordered map.
#[derive(Debug)]
pub struct SenderMap {
    capacity: usize,
    entries: HashMap<BlobId, Sender, ahash::RandomState>,
    /// Insertion order for eviction; may hold stale ids of removed entries, which are
    /// skipped (their `order` no longer matches) and compacted away.
    order: VecDeque<(u64, BlobId)>,
    next_order: u64,
}

impl SenderMap {
    pub fn new(capacity: usize) -> SenderMap {
        assert!(capacity > 0, "sender map capacity must be positive");
        SenderMap {
            capacity,
            entries: HashMap::default(),
            order: VecDeque::new(),
            next_order: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records the sender of a stored blob, evicting the oldest entry when full.
    pub fn insert(&mut self, blob: BlobId, sender: Id64) {
        while self.entries.len() >= self.capacity {
            let Some((order, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&oldest).is_some_and(|s| s.order == order) {
                self.entries.remove(&oldest);
            }
        }
        let order = self.next_order;
        self.next_order += 1;
        self.entries.insert(
            blob,
            Sender {
                routing_id: sender,
                delivered: false,
                order,
            },
        );
        self.order.push_back((order, blob));
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order
                .retain(|(o, id)| entries.get(id).is_some_and(|s| s.order == *o));
        }
    }

    /// Sets the delivered flag; returns the sender when it was not set (§7.3: the
    /// `Delivered` push goes out at most once per blob).
    pub fn mark_delivered(&mut self, blob: &BlobId) -> Option<Id64> {
        let sender = self.entries.get_mut(blob)?;
        if sender.delivered {
            return None;
        }
        sender.delivered = true;
        Some(sender.routing_id)
    }

    /// Removes the entry (blob deleted for any reason); returns the sender.
    pub fn remove(&mut self, blob: &BlobId) -> Option<Id64> {
        self.entries.remove(blob).map(|s| s.routing_id)
    }
}
