//! Durable state behind one trait (PROTOCOL.md §10): the `sqlite` backend (one
//! database per shard, WAL) and the `memory` backend, both driven by a writer thread
//! per shard with group commit, so no storage call ever runs on a shard's event loop.
//!
//! Invariant: a `Completion::Committed` with `Ok` is sent only after the transaction
//! that holds its ops has committed; a failed transaction fails every job in it.

pub mod memory;
pub mod reshard;
pub mod sqlite;
pub mod writer;

use crate::protocol::Id64;

pub type BlobId = uuid::Uuid;

/// A stored blob (§7.1). `key` is the shard-local storage key, assigned by the shard
/// in increasing order; it never leaves the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    pub key: u64,
    pub id: BlobId,
    pub recipient: Id64,
    pub data: Vec<u8>,
    pub created_at_secs: u64,
    pub hop_count: u8,
    pub seq: u64,
}

/// A blob without its data: what the shard's in-memory index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobMeta {
    pub key: u64,
    pub id: BlobId,
    pub recipient: Id64,
    pub created_at_secs: u64,
    pub hop_count: u8,
    pub seq: u64,
    pub data_len: u32,
}

/// A stored device-sync message (§5.6, §10.4). `key` orders store order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSyncRecord {
    pub key: u64,
    pub id: uuid::Uuid,
    pub identity: Id64,
    pub target: Id64,
    /// Opaque, at most 256 bytes, returned as received.
    pub sender_device_id: String,
    pub payload: Vec<u8>,
    /// The client's sync version: any u64.
    pub version: u64,
    pub created_at_secs: u64,
}

/// A stored recovery proof (§5.8, §10.4), keyed by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryProofRecord {
    pub key_hash: Id64,
    pub proof_data: Vec<u8>,
    pub created_at_secs: u64,
    pub expires_at_secs: u64,
}

/// A forwarding hint (§5.13, §10.4, §11.7 step 4): the blob `blob_id` of
/// `routing_id` was offloaded to the peer at `relay_url`. `key` is the shard-local
/// storage key, from the same counter as blob keys; it never leaves the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintRecord {
    pub key: u64,
    pub blob_id: BlobId,
    pub routing_id: Id64,
    pub relay_url: String,
    pub created_at_secs: u64,
    pub expires_at_secs: u64,
}

/// One write; a batch of them commits atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    InsertBlob(BlobRecord),
    /// Deleting a key that does not exist is not an error.
    InsertDeviceSync(DeviceSyncRecord),
    DeleteDeviceSync {
        key: u64,
    },
    /// Inserts or replaces the proof for its hash.
    UpsertProof(RecoveryProofRecord),
    DeleteProof {
        key_hash: Id64,
    },
    DeleteBlob {
        key: u64,
    },
    /// Inserting a stored key fails the batch. An offload commits `DeleteBlob` and
    /// `InsertHint` in one batch (§11.7 step 4).
    InsertHint(HintRecord),
    /// Deleting a key that does not exist is not an error.
    DeleteHint {
        key: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// I/O error, disk full, corrupt file: the message is for the log (no ids).
    Unavailable(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Unavailable(why) => write!(f, "storage unavailable: {why}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// One shard's storage. Implementations are used from one thread at a time.
pub trait Store: Send {
    /// Every stored blob without data, ordered by `key` ascending (startup rebuild).
    fn load_blob_index(&mut self) -> Result<Vec<BlobMeta>, StorageError>;
    /// Every stored device-sync message, in `key` order (loaded whole: they are
    /// bounded per identity by the device-sync quota).
    fn load_device_sync(&mut self) -> Result<Vec<DeviceSyncRecord>, StorageError>;
    /// Every stored recovery proof.
    fn load_proofs(&mut self) -> Result<Vec<RecoveryProofRecord>, StorageError>;
    /// Every stored forwarding hint, ordered by `key` ascending (startup rebuild).
    fn load_hints(&mut self) -> Result<Vec<HintRecord>, StorageError>;
    /// Applies every op in one transaction: all or nothing.
    fn commit(&mut self, ops: &[WriteOp]) -> Result<(), StorageError>;
    /// The data of each key, `None` where the key is not stored.
    fn read_blob_data(&mut self, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StorageError>;
}

/// The largest `key`, `created_at_secs`, `expires_at_secs` or `seq` either backend
/// stores. SQLite
/// integers are signed 64-bit; the memory backend refuses the same values so that
/// both backends behave identically (§10.1).
pub const STORED_INTEGER_MAX: u64 = i64::MAX as u64;

/// Checks that `record` fits both backends: integers up to `STORED_INTEGER_MAX`,
/// data length within `BlobMeta::data_len`. The message names fields, never values.
pub(crate) fn check_record(record: &BlobRecord) -> Result<(), StorageError> {
    let integers = [
        ("key", record.key),
        ("created_at_secs", record.created_at_secs),
        ("seq", record.seq),
    ];
    for (field, value) in integers {
        if value > STORED_INTEGER_MAX {
            return Err(StorageError::Unavailable(format!(
                "blob {field} out of range"
            )));
        }
    }
    if u32::try_from(record.data.len()).is_err() {
        return Err(StorageError::Unavailable("blob data too long".to_string()));
    }
    Ok(())
}

/// Checks that `hint` fits both backends: `key`, `created_at_secs` and
/// `expires_at_secs` up to `STORED_INTEGER_MAX`. The message names fields, never
/// values.
pub(crate) fn check_hint(hint: &HintRecord) -> Result<(), StorageError> {
    let integers = [
        ("key", hint.key),
        ("created_at_secs", hint.created_at_secs),
        ("expires_at_secs", hint.expires_at_secs),
    ];
    for (field, value) in integers {
        if value > STORED_INTEGER_MAX {
            return Err(StorageError::Unavailable(format!(
                "hint {field} out of range"
            )));
        }
    }
    Ok(())
}
