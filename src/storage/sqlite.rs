//! The persistent `sqlite` backend (§10.1, §10.3): one database file per shard,
//! `shard-<i>.db` in WAL mode.
//!
//! Invariants: a commit is one `BEGIN IMMEDIATE ... COMMIT` transaction, so a batch is
//! all or nothing; any SQLite failure (disk full, I/O error, constraint) is returned
//! as `StorageError::Unavailable` after rolling back, and the next call starts clean.
//! Blobs are keyed by the shard's `key` (the rowid) with no secondary index: the shard
//! finds a recipient's blobs in its in-memory index, and an index on random
//! recipient ids would cost most of SQLite's insert rate. Forwarding hints are kept
//! the same way (rowid `key`, no index on `routing_id`): the shard indexes them in
//! memory.

use std::path::Path;

use rusqlite::{CachedStatement, Connection, OptionalExtension, params};

use super::{
    BlobMeta, BlobRecord, DeviceSyncRecord, HintRecord, RecoveryProofRecord, StorageError, Store,
    WriteOp, check_hint, check_record,
};
use crate::config::SqliteSynchronous;

/// `data` is the last column so that reading the index (every column but `data`,
/// plus `length(data)` from the record header) never walks a large blob's overflow
/// pages.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS blobs (
        key INTEGER PRIMARY KEY,
        id BLOB NOT NULL,
        recipient BLOB NOT NULL,
        created_at_secs INTEGER NOT NULL,
        hop_count INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS device_sync (
        key INTEGER PRIMARY KEY,
        id BLOB NOT NULL,
        identity BLOB NOT NULL,
        target BLOB NOT NULL,
        sender_device_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        created_at_secs INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS recovery_proofs (
        key_hash BLOB PRIMARY KEY,
        created_at_secs INTEGER NOT NULL,
        expires_at_secs INTEGER NOT NULL,
        proof_data BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS forwarding_hints (
        key INTEGER PRIMARY KEY,
        blob_id BLOB NOT NULL,
        routing_id BLOB NOT NULL,
        created_at_secs INTEGER NOT NULL,
        expires_at_secs INTEGER NOT NULL,
        relay_url TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
";

const INSERT_BLOB: &str = "INSERT INTO blobs (key, id, recipient, created_at_secs, hop_count, \
     seq, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const DELETE_BLOB: &str = "DELETE FROM blobs WHERE key = ?1";
const SELECT_DATA: &str = "SELECT data FROM blobs WHERE key = ?1";
const SELECT_INDEX: &str = "SELECT key, id, recipient, created_at_secs, hop_count, seq, \
     length(data) FROM blobs ORDER BY key";
const INSERT_DEVICE_SYNC: &str = "INSERT INTO device_sync (key, id, identity, target, \
     sender_device_id, version, created_at_secs, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const DELETE_DEVICE_SYNC: &str = "DELETE FROM device_sync WHERE key = ?1";
const SELECT_DEVICE_SYNC: &str = "SELECT key, id, identity, target, sender_device_id, version, \
     created_at_secs, payload FROM device_sync ORDER BY key";
const UPSERT_PROOF: &str = "INSERT INTO recovery_proofs (key_hash, created_at_secs, \
     expires_at_secs, proof_data) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key_hash) DO UPDATE SET \
     created_at_secs = excluded.created_at_secs, expires_at_secs = excluded.expires_at_secs, \
     proof_data = excluded.proof_data";
const DELETE_PROOF: &str = "DELETE FROM recovery_proofs WHERE key_hash = ?1";
const SELECT_PROOFS: &str =
    "SELECT key_hash, created_at_secs, expires_at_secs, proof_data FROM recovery_proofs";
const INSERT_HINT: &str = "INSERT INTO forwarding_hints (key, blob_id, routing_id, \
     created_at_secs, expires_at_secs, relay_url) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const DELETE_HINT: &str = "DELETE FROM forwarding_hints WHERE key = ?1";
const SELECT_HINTS: &str = "SELECT key, blob_id, routing_id, created_at_secs, expires_at_secs, \
     relay_url FROM forwarding_hints ORDER BY key";
const SELECT_META: &str = "SELECT value FROM meta WHERE key = ?1";
const UPSERT_META: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// The file name of shard `index`'s database in `RELAY_DATA_DIR` (§10.4).
pub fn shard_file_name(index: usize) -> String {
    format!("shard-{index}.db")
}

/// One shard's database connection. Used from the shard's writer thread only.
pub struct SqliteStore {
    connection: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` in WAL mode with the given
    /// `synchronous` level, and creates the tables (a file written before a table
    /// existed gets it here).
    pub fn open(path: &Path, synchronous: SqliteSynchronous) -> Result<SqliteStore, StorageError> {
        let connection = Connection::open(path).map_err(unavailable)?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(unavailable)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Unavailable(format!(
                "journal mode is {mode}, WAL is required"
            )));
        }
        let level = match synchronous {
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
        };
        connection
            .pragma_update(None, "synchronous", level)
            .map_err(unavailable)?;
        connection.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(SqliteStore { connection })
    }

    /// The value recorded under `key` in the meta table (e.g. the shard count, §10.4).
    pub fn meta_get(&mut self, key: &str) -> Result<Option<String>, StorageError> {
        self.end_open_transaction()?;
        self.connection
            .prepare_cached(SELECT_META)
            .and_then(|mut select| select.query_row([key], |row| row.get(0)).optional())
            .map_err(unavailable)
    }

    /// Records `value` under `key`, durably (its own transaction).
    pub fn meta_set(&mut self, key: &str, value: &str) -> Result<(), StorageError> {
        self.end_open_transaction()?;
        self.connection
            .prepare_cached(UPSERT_META)
            .and_then(|mut upsert| upsert.execute([key, value]))
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Rolls back a transaction left open by an earlier failure (a failed COMMIT or
    /// ROLLBACK can leave one), so that one error does not poison every later call.
    fn end_open_transaction(&mut self) -> Result<(), StorageError> {
        if self.connection.is_autocommit() {
            return Ok(());
        }
        self.connection
            .execute_batch("ROLLBACK")
            .map_err(unavailable)
    }
}

impl Store for SqliteStore {
    fn load_blob_index(&mut self) -> Result<Vec<BlobMeta>, StorageError> {
        self.end_open_transaction()?;
        let mut select = self
            .connection
            .prepare_cached(SELECT_INDEX)
            .map_err(unavailable)?;
        let rows = select
            .query_map([], |row| {
                Ok(BlobMeta {
                    key: unsigned(row, 0)?,
                    id: uuid::Uuid::from_bytes(row.get::<_, [u8; 16]>(1)?),
                    recipient: crate::protocol::Id64(row.get::<_, [u8; 32]>(2)?),
                    created_at_secs: unsigned(row, 3)?,
                    hop_count: row.get(4)?,
                    seq: unsigned(row, 5)?,
                    data_len: row.get(6)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<rusqlite::Result<Vec<BlobMeta>>>()
            .map_err(unavailable)
    }

    fn load_device_sync(&mut self) -> Result<Vec<DeviceSyncRecord>, StorageError> {
        self.end_open_transaction()?;
        let mut select = self
            .connection
            .prepare_cached(SELECT_DEVICE_SYNC)
            .map_err(unavailable)?;
        let rows = select
            .query_map([], |row| {
                Ok(DeviceSyncRecord {
                    key: unsigned(row, 0)?,
                    id: uuid::Uuid::from_bytes(row.get::<_, [u8; 16]>(1)?),
                    identity: crate::protocol::Id64(row.get::<_, [u8; 32]>(2)?),
                    target: crate::protocol::Id64(row.get::<_, [u8; 32]>(3)?),
                    sender_device_id: row.get(4)?,
                    // Stored bit for bit: a client version may exceed i64::MAX.
                    version: row.get::<_, i64>(5)? as u64,
                    created_at_secs: unsigned(row, 6)?,
                    payload: row.get(7)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)
    }

    fn load_proofs(&mut self) -> Result<Vec<RecoveryProofRecord>, StorageError> {
        self.end_open_transaction()?;
        let mut select = self
            .connection
            .prepare_cached(SELECT_PROOFS)
            .map_err(unavailable)?;
        let rows = select
            .query_map([], |row| {
                Ok(RecoveryProofRecord {
                    key_hash: crate::protocol::Id64(row.get::<_, [u8; 32]>(0)?),
                    created_at_secs: unsigned(row, 1)?,
                    expires_at_secs: unsigned(row, 2)?,
                    proof_data: row.get(3)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)
    }

    fn load_hints(&mut self) -> Result<Vec<HintRecord>, StorageError> {
        self.end_open_transaction()?;
        let mut select = self
            .connection
            .prepare_cached(SELECT_HINTS)
            .map_err(unavailable)?;
        let rows = select
            .query_map([], |row| {
                Ok(HintRecord {
                    key: unsigned(row, 0)?,
                    blob_id: uuid::Uuid::from_bytes(row.get::<_, [u8; 16]>(1)?),
                    routing_id: crate::protocol::Id64(row.get::<_, [u8; 32]>(2)?),
                    created_at_secs: unsigned(row, 3)?,
                    expires_at_secs: unsigned(row, 4)?,
                    relay_url: row.get(5)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)
    }

    fn commit(&mut self, ops: &[WriteOp]) -> Result<(), StorageError> {
        for op in ops {
            match op {
                WriteOp::InsertBlob(record) => check_record(record)?,
                WriteOp::InsertHint(record) => check_hint(record)?,
                _ => {}
            }
        }
        self.end_open_transaction()?;
        self.connection
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(unavailable)?;
        let applied =
            apply(&self.connection, ops).and_then(|()| self.connection.execute_batch("COMMIT"));
        if let Err(error) = applied {
            // SQLite rolls back by itself on some errors (disk full, I/O error), not
            // on others (a constraint, a failed COMMIT); either way none of the batch
            // may stay. A failed ROLLBACK is retried at the start of the next call.
            let _ = self.end_open_transaction();
            return Err(unavailable(error));
        }
        Ok(())
    }

    fn read_blob_data(&mut self, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.end_open_transaction()?;
        // One read transaction: every key sees the same snapshot, one lock round.
        let transaction = self.connection.transaction().map_err(unavailable)?;
        let data = {
            let mut select = transaction
                .prepare_cached(SELECT_DATA)
                .map_err(unavailable)?;
            let mut data = Vec::with_capacity(keys.len());
            for &key in keys {
                let Ok(key) = i64::try_from(key) else {
                    // Beyond `STORED_INTEGER_MAX`: such a key is never stored.
                    data.push(None);
                    continue;
                };
                let blob = select
                    .query_row([key], |row| row.get::<_, Vec<u8>>(0))
                    .optional()
                    .map_err(unavailable)?;
                data.push(blob);
            }
            data
        };
        transaction.commit().map_err(unavailable)?;
        Ok(data)
    }
}

/// Runs `ops` inside the caller's open transaction, stopping at the first failure.
fn apply(connection: &Connection, ops: &[WriteOp]) -> rusqlite::Result<()> {
    let mut insert = connection.prepare_cached(INSERT_BLOB)?;
    let mut delete = connection.prepare_cached(DELETE_BLOB)?;
    for op in ops {
        match op {
            WriteOp::InsertBlob(record) => insert_blob(&mut insert, record)?,
            WriteOp::DeleteBlob { key } => {
                // A key beyond `STORED_INTEGER_MAX` is never stored: nothing to delete.
                if let Ok(key) = i64::try_from(*key) {
                    delete.execute([key])?;
                }
            }
            WriteOp::InsertDeviceSync(record) => insert_device_sync(connection, record)?,
            WriteOp::DeleteDeviceSync { key } => {
                if let Ok(key) = i64::try_from(*key) {
                    connection
                        .prepare_cached(DELETE_DEVICE_SYNC)?
                        .execute([key])?;
                }
            }
            WriteOp::UpsertProof(record) => {
                connection.prepare_cached(UPSERT_PROOF)?.execute(params![
                    &record.key_hash.0[..],
                    signed(record.created_at_secs)?,
                    signed(record.expires_at_secs)?,
                    &record.proof_data[..],
                ])?;
            }
            WriteOp::DeleteProof { key_hash } => {
                connection
                    .prepare_cached(DELETE_PROOF)?
                    .execute([&key_hash.0[..]])?;
            }
            WriteOp::InsertHint(record) => {
                connection.prepare_cached(INSERT_HINT)?.execute(params![
                    signed(record.key)?,
                    &record.blob_id.as_bytes()[..],
                    &record.routing_id.0[..],
                    signed(record.created_at_secs)?,
                    signed(record.expires_at_secs)?,
                    &record.relay_url,
                ])?;
            }
            WriteOp::DeleteHint { key } => {
                // A key beyond `STORED_INTEGER_MAX` is never stored: nothing to delete.
                if let Ok(key) = i64::try_from(*key) {
                    connection.prepare_cached(DELETE_HINT)?.execute([key])?;
                }
            }
        }
    }
    Ok(())
}

/// One blob row, through the statement `apply` keeps prepared for the whole batch
/// (blobs are most of every batch).
fn insert_blob(insert: &mut CachedStatement<'_>, record: &BlobRecord) -> rusqlite::Result<()> {
    insert.execute(params![
        signed(record.key)?,
        &record.id.as_bytes()[..],
        &record.recipient.0[..],
        signed(record.created_at_secs)?,
        record.hop_count,
        signed(record.seq)?,
        &record.data[..],
    ])?;
    Ok(())
}

/// One device-sync row, the widest of the records.
fn insert_device_sync(connection: &Connection, record: &DeviceSyncRecord) -> rusqlite::Result<()> {
    connection
        .prepare_cached(INSERT_DEVICE_SYNC)?
        .execute(params![
            signed(record.key)?,
            &record.id.as_bytes()[..],
            &record.identity.0[..],
            &record.target.0[..],
            &record.sender_device_id,
            record.version as i64,
            signed(record.created_at_secs)?,
            &record.payload[..],
        ])?;
    Ok(())
}

/// A u64 as SQLite's signed integer. `check_record` and `check_hint` have already
/// refused values above `STORED_INTEGER_MAX`, so this fails only if that check is
/// bypassed.
fn signed(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value).map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
}

/// Column `index` as a u64; a negative value (never written by this store) is an error.
fn unsigned(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// Turns any SQLite error into the storage error. rusqlite's messages name the
/// failure and the table or column, never a bound value, so no id reaches the log.
fn unavailable(error: rusqlite::Error) -> StorageError {
    StorageError::Unavailable(error.to_string())
}
