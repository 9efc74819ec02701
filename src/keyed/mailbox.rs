//! The per-recipient blob index a shard keeps in memory (PROTOCOL.md §7, §9): which
//! blobs each routing_id has, their order (`created_at_secs`, `seq`), sizes for the
//! quotas, and whether each has committed. Blob data stays in storage; the index is
//! rebuilt from it at startup, so storage needs no secondary index on recipients.
//!
//! Invariants: entries of a mailbox are in storage-key order; `seq` increases
//! strictly per recipient; an expired entry is never returned by `snapshot`, never
//! counted by the quota check, and never matched by an ack.

use std::collections::{HashMap, VecDeque};

use crate::protocol::Id64;
use crate::storage::{BlobId, BlobMeta};

/// One blob as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: u64,
    pub id: BlobId,
    pub created_at_secs: u64,
    pub hop_count: u8,
    pub seq: u64,
    pub data_len: u32,
    /// False while its insert is queued in storage and not yet committed.
    pub committed: bool,
}

impl Entry {
    pub fn is_expired(&self, now: u64, ttl_secs: u64) -> bool {
        self.created_at_secs.saturating_add(ttl_secs) <= now
    }
}

#[derive(Debug, Default)]
struct Mailbox {
    next_seq: u64,
    entries: VecDeque<Entry>,
    /// Sum of `data_len` over `entries` (expired ones included).
    bytes: u64,
}

/// Per-recipient quotas (§9); 0 means unlimited.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub max_blobs: u64,
    pub max_bytes: u64,
}

/// Every mailbox of one shard.
#[derive(Debug, Default)]
pub struct Mailboxes {
    boxes: HashMap<Id64, Mailbox, ahash::RandomState>,
    blob_count: u64,
    data_bytes: u64,
}

impl Mailboxes {
    /// Rebuilds the index from storage (metas in key order, all committed).
    pub fn rebuild(metas: Vec<BlobMeta>) -> Mailboxes {
        let mut index = Mailboxes::default();
        for meta in metas {
            let mailbox = index.boxes.entry(meta.recipient).or_default();
            mailbox.next_seq = mailbox.next_seq.max(meta.seq + 1);
            mailbox.entries.push_back(Entry {
                key: meta.key,
                id: meta.id,
                created_at_secs: meta.created_at_secs,
                hop_count: meta.hop_count,
                seq: meta.seq,
                data_len: meta.data_len,
                committed: true,
            });
            mailbox.bytes += u64::from(meta.data_len);
            index.blob_count += 1;
            index.data_bytes += u64::from(meta.data_len);
        }
        index
    }

    /// Blobs indexed now, expired ones not yet cleaned up included.
    pub fn blob_count(&self) -> u64 {
        self.blob_count
    }

    /// Sum of indexed data lengths.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// True if a new blob of `data_len` bytes fits the recipient's quota, counting
    /// unexpired blobs only (pending inserts included, so concurrent senders cannot
    /// overshoot).
    pub fn fits_quota(
        &self,
        recipient: &Id64,
        data_len: usize,
        quota: Quota,
        now: u64,
        ttl_secs: u64,
    ) -> bool {
        let Some(mailbox) = self.boxes.get(recipient) else {
            return quota.max_bytes == 0 || data_len as u64 <= quota.max_bytes;
        };
        // Fast path: counting expired entries too can only overestimate, so a blob
        // that fits these totals fits the exact quota.
        let all = mailbox.entries.len() as u64;
        if (quota.max_blobs == 0 || all < quota.max_blobs)
            && (quota.max_bytes == 0 || mailbox.bytes + data_len as u64 <= quota.max_bytes)
        {
            return true;
        }
        let (mut count, mut bytes) = (0u64, 0u64);
        for entry in mailbox
            .entries
            .iter()
            .filter(|e| !e.is_expired(now, ttl_secs))
        {
            count += 1;
            bytes += u64::from(entry.data_len);
        }
        let count_ok = quota.max_blobs == 0 || count < quota.max_blobs;
        let bytes_ok = quota.max_bytes == 0 || bytes + data_len as u64 <= quota.max_bytes;
        count_ok && bytes_ok
    }

    /// Adds a not-yet-committed entry and returns its `seq`.
    pub fn reserve(
        &mut self,
        recipient: Id64,
        key: u64,
        id: BlobId,
        created_at_secs: u64,
        hop_count: u8,
        data_len: u32,
    ) -> u64 {
        let mailbox = self.boxes.entry(recipient).or_default();
        let seq = mailbox.next_seq;
        mailbox.next_seq += 1;
        mailbox.entries.push_back(Entry {
            key,
            id,
            created_at_secs,
            hop_count,
            seq,
            data_len,
            committed: false,
        });
        mailbox.bytes += u64::from(data_len);
        self.blob_count += 1;
        self.data_bytes += u64::from(data_len);
        seq
    }

    /// Marks a reserved entry committed. False if it is gone (deleted meanwhile).
    pub fn commit(&mut self, recipient: &Id64, key: u64) -> bool {
        let Some(mailbox) = self.boxes.get_mut(recipient) else {
            return false;
        };
        match mailbox.entries.iter_mut().rev().find(|e| e.key == key) {
            Some(entry) => {
                entry.committed = true;
                true
            }
            None => false,
        }
    }

    /// Removes the entry with this key (a failed insert, or a deletion by key).
    pub fn remove_key(&mut self, recipient: &Id64, key: u64) -> Option<Entry> {
        self.remove_where(recipient, |e| e.key == key)
    }

    /// Removes the committed, unexpired entry with this blob id (an ack, §5.4).
    pub fn remove_id(
        &mut self,
        recipient: &Id64,
        id: &BlobId,
        now: u64,
        ttl_secs: u64,
    ) -> Option<Entry> {
        self.remove_where(recipient, |e| {
            e.committed && e.id == *id && !e.is_expired(now, ttl_secs)
        })
    }

    fn remove_where(
        &mut self,
        recipient: &Id64,
        matches: impl Fn(&Entry) -> bool,
    ) -> Option<Entry> {
        let mailbox = self.boxes.get_mut(recipient)?;
        let position = mailbox.entries.iter().position(matches)?;
        let entry = mailbox.entries.remove(position)?;
        mailbox.bytes -= u64::from(entry.data_len);
        self.blob_count -= 1;
        self.data_bytes -= u64::from(entry.data_len);
        if mailbox.entries.is_empty() {
            self.boxes.remove(recipient);
        }
        Some(entry)
    }

    /// Removes every entry of a recipient (purge), pending ones included.
    pub fn remove_all(&mut self, recipient: &Id64) -> Vec<Entry> {
        let Some(mailbox) = self.boxes.remove(recipient) else {
            return Vec::new();
        };
        let entries: Vec<Entry> = mailbox.entries.into();
        for entry in &entries {
            self.blob_count -= 1;
            self.data_bytes -= u64::from(entry.data_len);
        }
        entries
    }

    /// True if the committed entry with this key is still indexed and unexpired.
    pub fn is_deliverable(&self, recipient: &Id64, key: u64, now: u64, ttl_secs: u64) -> bool {
        self.deliverable(recipient, key, now, ttl_secs).is_some()
    }

    /// The committed, unexpired entry with this key, if it is still indexed.
    pub fn deliverable(
        &self,
        recipient: &Id64,
        key: u64,
        now: u64,
        ttl_secs: u64,
    ) -> Option<Entry> {
        self.boxes.get(recipient).and_then(|m| {
            m.entries
                .iter()
                .find(|e| e.key == key && e.committed && !e.is_expired(now, ttl_secs))
                .copied()
        })
    }

    /// Committed, unexpired entries with `key > after_key`, in delivery order
    /// (`created_at_secs`, `seq`).
    pub fn snapshot(
        &self,
        recipient: &Id64,
        after_key: Option<u64>,
        now: u64,
        ttl_secs: u64,
    ) -> Vec<Entry> {
        let Some(mailbox) = self.boxes.get(recipient) else {
            return Vec::new();
        };
        let mut entries: Vec<Entry> = mailbox
            .entries
            .iter()
            .filter(|e| {
                e.committed && after_key.is_none_or(|k| e.key > k) && !e.is_expired(now, ttl_secs)
            })
            .copied()
            .collect();
        entries.sort_by_key(|e| (e.created_at_secs, e.seq));
        entries
    }

    /// The oldest offload candidates of this shard (§11.7 step 2): committed,
    /// unexpired, `hop_count` 0 and not `excluded`, up to `limit`, ordered by
    /// (`created_at_secs`, `seq`). One pass over the mailboxes; per mailbox only its
    /// first `limit` candidates can matter, since its hop-0 entries are stored in
    /// creation order.
    pub fn oldest_offloadable(
        &self,
        limit: usize,
        now: u64,
        ttl_secs: u64,
        excluded: impl Fn(&BlobId) -> bool,
    ) -> Vec<(Id64, Entry)> {
        let mut best: std::collections::BinaryHeap<(u64, u64, u64, Id64)> =
            std::collections::BinaryHeap::new();
        let mut entries: HashMap<u64, (Id64, Entry), ahash::RandomState> = HashMap::default();
        if limit == 0 {
            return Vec::new();
        }
        for (recipient, mailbox) in &self.boxes {
            let candidates = mailbox
                .entries
                .iter()
                .filter(|e| {
                    e.committed
                        && e.hop_count == 0
                        && !e.is_expired(now, ttl_secs)
                        && !excluded(&e.id)
                })
                .take(limit);
            for entry in candidates {
                let rank = (entry.created_at_secs, entry.seq, entry.key, *recipient);
                if best.len() < limit {
                    best.push(rank);
                } else if best.peek().is_some_and(|worst| rank < *worst) {
                    if let Some(worst) = best.pop() {
                        entries.remove(&worst.2);
                    }
                    best.push(rank);
                } else {
                    continue;
                }
                entries.insert(entry.key, (*recipient, *entry));
            }
        }
        let mut ranked = best.into_sorted_vec();
        ranked.truncate(limit);
        ranked
            .into_iter()
            .filter_map(|(_, _, key, _)| entries.remove(&key))
            .collect()
    }

    /// Removes every committed, expired entry; returns them with their recipients.
    pub fn take_expired(&mut self, now: u64, ttl_secs: u64) -> Vec<(Id64, Entry)> {
        let mut expired = Vec::new();
        for (recipient, mailbox) in self.boxes.iter_mut() {
            let bytes = &mut mailbox.bytes;
            mailbox.entries.retain(|e| {
                let gone = e.committed && e.is_expired(now, ttl_secs);
                if gone {
                    *bytes -= u64::from(e.data_len);
                    expired.push((*recipient, *e));
                }
                !gone
            });
        }
        self.boxes.retain(|_, m| !m.entries.is_empty());
        for (_, entry) in &expired {
            self.blob_count -= 1;
            self.data_bytes -= u64::from(entry.data_len);
        }
        expired
    }
}
