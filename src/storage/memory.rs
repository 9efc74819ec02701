//! The volatile `memory` backend (§10.1): committed = visible; lost at exit.
//! Same semantics as the sqlite backend: a batch is all or nothing, inserting a
//! stored key fails the batch, deleting a missing key is fine.

use std::collections::{BTreeMap, HashMap};

use super::{
    BlobMeta, BlobRecord, DeviceSyncRecord, HintRecord, RecoveryProofRecord, StorageError, Store,
    WriteOp, check_hint, check_record,
};
use crate::protocol::Id64;

/// Blobs by shard-local key, so the index comes out in key order like sqlite's rowid.
#[derive(Debug, Default)]
pub struct MemoryStore {
    blobs: BTreeMap<u64, BlobRecord>,
    device_sync: BTreeMap<u64, DeviceSyncRecord>,
    proofs: HashMap<Id64, RecoveryProofRecord>,
    /// Hints by key, so they come out in key order like sqlite's rowid.
    hints: BTreeMap<u64, HintRecord>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Rejects the batch if any op would fail, before anything is applied. `present`
    /// tracks keys this batch has already touched, so an insert after a delete of the
    /// same key is fine and an insert after an insert is not, as in SQL.
    fn check_batch(&self, ops: &[WriteOp]) -> Result<(), StorageError> {
        let mut present: HashMap<u64, bool> = HashMap::new();
        // The same for hint keys: another table, so another key space.
        let mut present_hints: HashMap<u64, bool> = HashMap::new();
        for op in ops {
            match op {
                WriteOp::InsertBlob(record) => {
                    check_record(record)?;
                    let stored = present
                        .get(&record.key)
                        .copied()
                        .unwrap_or_else(|| self.blobs.contains_key(&record.key));
                    if stored {
                        return Err(StorageError::Unavailable("duplicate blob key".to_string()));
                    }
                    present.insert(record.key, true);
                }
                WriteOp::DeleteBlob { key } => {
                    present.insert(*key, false);
                }
                WriteOp::InsertDeviceSync(record) => {
                    if record.key > super::STORED_INTEGER_MAX
                        || self.device_sync.contains_key(&record.key)
                    {
                        return Err(StorageError::Unavailable(
                            "duplicate device-sync key".to_string(),
                        ));
                    }
                }
                WriteOp::InsertHint(record) => {
                    check_hint(record)?;
                    let stored = present_hints
                        .get(&record.key)
                        .copied()
                        .unwrap_or_else(|| self.hints.contains_key(&record.key));
                    if stored {
                        return Err(StorageError::Unavailable("duplicate hint key".to_string()));
                    }
                    present_hints.insert(record.key, true);
                }
                WriteOp::DeleteHint { key } => {
                    present_hints.insert(*key, false);
                }
                WriteOp::DeleteDeviceSync { .. }
                | WriteOp::UpsertProof(_)
                | WriteOp::DeleteProof { .. } => {}
            }
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn load_blob_index(&mut self) -> Result<Vec<BlobMeta>, StorageError> {
        let mut index = Vec::with_capacity(self.blobs.len());
        for record in self.blobs.values() {
            index.push(BlobMeta {
                key: record.key,
                id: record.id,
                recipient: record.recipient,
                created_at_secs: record.created_at_secs,
                hop_count: record.hop_count,
                seq: record.seq,
                data_len: u32::try_from(record.data.len()).map_err(|_| {
                    StorageError::Unavailable("stored blob data too long".to_string())
                })?,
            });
        }
        Ok(index)
    }

    fn commit(&mut self, ops: &[WriteOp]) -> Result<(), StorageError> {
        self.check_batch(ops)?;
        for op in ops {
            match op {
                WriteOp::InsertBlob(record) => {
                    self.blobs.insert(record.key, record.clone());
                }
                WriteOp::DeleteBlob { key } => {
                    self.blobs.remove(key);
                }
                WriteOp::InsertDeviceSync(record) => {
                    self.device_sync.insert(record.key, record.clone());
                }
                WriteOp::DeleteDeviceSync { key } => {
                    self.device_sync.remove(key);
                }
                WriteOp::UpsertProof(record) => {
                    self.proofs.insert(record.key_hash, record.clone());
                }
                WriteOp::DeleteProof { key_hash } => {
                    self.proofs.remove(key_hash);
                }
                WriteOp::InsertHint(record) => {
                    self.hints.insert(record.key, record.clone());
                }
                WriteOp::DeleteHint { key } => {
                    self.hints.remove(key);
                }
            }
        }
        Ok(())
    }

    fn load_device_sync(&mut self) -> Result<Vec<DeviceSyncRecord>, StorageError> {
        Ok(self.device_sync.values().cloned().collect())
    }

    fn load_proofs(&mut self) -> Result<Vec<RecoveryProofRecord>, StorageError> {
        Ok(self.proofs.values().cloned().collect())
    }

    fn load_hints(&mut self) -> Result<Vec<HintRecord>, StorageError> {
        Ok(self.hints.values().cloned().collect())
    }

    fn read_blob_data(&mut self, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        Ok(keys
            .iter()
            .map(|key| self.blobs.get(key).map(|record| record.data.clone()))
            .collect())
    }
}
