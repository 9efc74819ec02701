//! The device-sync messages a shard holds for the identities it owns (§5.6, §5.7,
//! §9): kept whole in memory (the device-sync quota bounds them per identity) and
//! mirrored to storage. Delivery order is (`version`, store order); expired messages
//! are treated as absent at once.

use std::collections::HashMap;

use crate::keyed::mailbox::Quota;
use crate::protocol::Id64;
use crate::storage::DeviceSyncRecord;

/// One message and whether its insert has committed.
#[derive(Debug, Clone)]
pub struct DeviceSyncEntry {
    pub record: DeviceSyncRecord,
    pub committed: bool,
}

impl DeviceSyncEntry {
    fn is_expired(&self, now: u64, ttl_secs: u64) -> bool {
        self.record.created_at_secs.saturating_add(ttl_secs) <= now
    }
}

/// Every identity's messages on one shard, each list in store (key) order.
#[derive(Debug, Default)]
pub struct DeviceSyncIndex {
    by_identity: HashMap<Id64, Vec<DeviceSyncEntry>, ahash::RandomState>,
}

impl DeviceSyncIndex {
    pub fn rebuild(records: Vec<DeviceSyncRecord>) -> DeviceSyncIndex {
        let mut index = DeviceSyncIndex::default();
        for record in records {
            index
                .by_identity
                .entry(record.identity)
                .or_default()
                .push(DeviceSyncEntry {
                    record,
                    committed: true,
                });
        }
        index
    }

    /// The device-sync quota of §9 over unexpired messages (pending ones included).
    pub fn fits_quota(
        &self,
        identity: &Id64,
        payload_len: usize,
        quota: Quota,
        now: u64,
        ttl_secs: u64,
    ) -> bool {
        let (mut count, mut bytes) = (0u64, 0u64);
        for entry in self
            .by_identity
            .get(identity)
            .into_iter()
            .flatten()
            .filter(|e| !e.is_expired(now, ttl_secs))
        {
            count += 1;
            bytes += entry.record.payload.len() as u64;
        }
        (quota.max_blobs == 0 || count < quota.max_blobs)
            && (quota.max_bytes == 0 || bytes + payload_len as u64 <= quota.max_bytes)
    }

    /// Adds a message whose insert is queued.
    pub fn reserve(&mut self, record: DeviceSyncRecord) {
        self.by_identity
            .entry(record.identity)
            .or_default()
            .push(DeviceSyncEntry {
                record,
                committed: false,
            });
    }

    /// Marks a queued insert committed and returns the message, unless it is gone.
    pub fn commit(&mut self, identity: &Id64, key: u64) -> Option<&DeviceSyncRecord> {
        let entry = self
            .by_identity
            .get_mut(identity)?
            .iter_mut()
            .find(|e| e.record.key == key)?;
        entry.committed = true;
        Some(&entry.record)
    }

    /// Removes a message by key (a failed insert).
    pub fn remove_key(&mut self, identity: &Id64, key: u64) {
        self.remove_where(identity, |e| e.record.key == key);
    }

    /// DeviceSyncAck (§5.7): removes the message with this id, identity and target;
    /// returns its storage key.
    pub fn remove_acked(&mut self, identity: &Id64, target: &Id64, id: &uuid::Uuid) -> Option<u64> {
        self.remove_where(identity, |e| {
            e.committed && e.record.target == *target && e.record.id == *id
        })
        .pop()
    }

    /// Committed, unexpired messages of the identity (what a purge reports).
    pub fn count_deliverable(&self, identity: &Id64, now: u64, ttl_secs: u64) -> u64 {
        self.by_identity
            .get(identity)
            .into_iter()
            .flatten()
            .filter(|e| e.committed && !e.is_expired(now, ttl_secs))
            .count() as u64
    }

    /// Purge (§5.11 step 3): removes every message of the identity, for all targets.
    pub fn remove_identity(&mut self, identity: &Id64) -> Vec<u64> {
        self.by_identity
            .remove(identity)
            .into_iter()
            .flatten()
            .map(|e| e.record.key)
            .collect()
    }

    fn remove_where(
        &mut self,
        identity: &Id64,
        matches: impl Fn(&DeviceSyncEntry) -> bool,
    ) -> Vec<u64> {
        let Some(entries) = self.by_identity.get_mut(identity) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        entries.retain(|e| {
            let hit = matches(e);
            if hit {
                removed.push(e.record.key);
            }
            !hit
        });
        if entries.is_empty() {
            self.by_identity.remove(identity);
        }
        removed
    }

    /// Committed, unexpired messages for (identity, target) in delivery order.
    pub fn pending_for(
        &self,
        identity: &Id64,
        target: &Id64,
        now: u64,
        ttl_secs: u64,
    ) -> Vec<DeviceSyncRecord> {
        let mut records: Vec<DeviceSyncRecord> = self
            .by_identity
            .get(identity)
            .into_iter()
            .flatten()
            .filter(|e| e.committed && e.record.target == *target && !e.is_expired(now, ttl_secs))
            .map(|e| e.record.clone())
            .collect();
        records.sort_by_key(|r| (r.version, r.key));
        records
    }

    /// Removes every committed, expired message; returns their storage keys.
    pub fn take_expired(&mut self, now: u64, ttl_secs: u64) -> Vec<u64> {
        let mut expired = Vec::new();
        for entries in self.by_identity.values_mut() {
            entries.retain(|e| {
                let gone = e.committed && e.is_expired(now, ttl_secs);
                if gone {
                    expired.push(e.record.key);
                }
                !gone
            });
        }
        self.by_identity.retain(|_, entries| !entries.is_empty());
        expired
    }
}
