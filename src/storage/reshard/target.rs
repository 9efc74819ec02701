//! One staging target of the copy (step 1) and its finalization (step 2): the
//! serving store's schema plus a unique index on each renumbered table's id, the
//! per-target key counter, and the progress records kept in staging shard 0.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::files::staging_path;
use super::steps::{ReshardError, failed, failed_io, failed_sql};
use super::tables::{META_COPIED, META_PROGRESS_PREFIX, TABLES, Table};
use crate::config::SqliteSynchronous;
use crate::storage::sqlite::SqliteStore;

/// One staging target: its connection and the next key to assign.
pub(super) struct Target {
    pub(super) path: PathBuf,
    connection: Connection,
    next_key: i64,
}

impl Target {
    pub(super) fn open(
        dir: &Path,
        index: usize,
        shards: usize,
        with_indexes: bool,
    ) -> Result<Target, ReshardError> {
        let path = staging_path(dir, index, shards);
        // The schema is the serving store's own: create it through `SqliteStore`.
        drop(SqliteStore::open(&path, SqliteSynchronous::Full).map_err(|e| failed(&path, e))?);
        let connection = Connection::open(&path).map_err(|e| failed_sql(&path, e))?;
        // FULL: the progress record must never be durable before the rows it covers.
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(|e| failed_sql(&path, e))?;
        if with_indexes {
            for table in TABLES.iter().filter(|t| t.renumbered) {
                connection
                    .execute_batch(&format!(
                        "CREATE UNIQUE INDEX IF NOT EXISTS reshard_{0}_{1} ON {0} ({1})",
                        table.name, table.dedupe_column
                    ))
                    .map_err(|e| failed_sql(&path, e))?;
            }
        }
        let highest: i64 = connection
            .query_row(
                "SELECT max(coalesce((SELECT max(key) FROM blobs), 0), \
                 coalesce((SELECT max(key) FROM device_sync), 0), \
                 coalesce((SELECT max(key) FROM forwarding_hints), 0))",
                [],
                |row| row.get(0),
            )
            .map_err(|e| failed_sql(&path, e))?;
        Ok(Target {
            path,
            connection,
            next_key: highest + 1,
        })
    }

    pub(super) fn meta_get(&self, key: &str) -> Result<Option<String>, ReshardError> {
        self.connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| failed_sql(&self.path, e))
    }

    pub(super) fn meta_set(&self, key: &str, value: &str) -> Result<(), ReshardError> {
        self.connection
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(|e| failed_sql(&self.path, e))
    }

    /// Inserts `rows` (columns as `columns`; `key` first if renumbered) in one
    /// transaction, skipping ids already present; returns the rows inserted.
    pub(super) fn insert(
        &mut self,
        table: &Table,
        columns: &[String],
        rows: Vec<Vec<Value>>,
    ) -> Result<u64, ReshardError> {
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING",
            table.name,
            columns.join(", "),
            vec!["?"; columns.len()].join(", "),
            table.dedupe_column
        );
        let path = &self.path;
        let transaction = self
            .connection
            .transaction()
            .map_err(|e| failed_sql(path, e))?;
        let mut inserted = 0u64;
        {
            let mut statement = transaction
                .prepare_cached(&sql)
                .map_err(|e| failed_sql(path, e))?;
            for mut values in rows {
                if table.renumbered {
                    values[0] = Value::Integer(self.next_key);
                }
                let changed = statement
                    .execute(params_from_iter(values))
                    .map_err(|e| failed_sql(path, e))?;
                if changed > 0 && table.renumbered {
                    self.next_key += 1;
                }
                inserted += changed as u64;
            }
        }
        transaction.commit().map_err(|e| failed_sql(path, e))?;
        Ok(inserted)
    }

    /// Drops the copy's indexes, records the count and leaves a self-contained,
    /// fsynced file.
    pub(super) fn finalize(self, shards: usize, first: bool) -> Result<(), ReshardError> {
        let path = self.path.clone();
        let mut sql = String::from("BEGIN IMMEDIATE;");
        for table in TABLES.iter().filter(|t| t.renumbered) {
            sql.push_str(&format!(
                "DROP INDEX IF EXISTS reshard_{}_{};",
                table.name, table.dedupe_column
            ));
        }
        if first {
            sql.push_str(&format!(
                "DELETE FROM meta WHERE key = '{META_COPIED}' OR key LIKE '{META_PROGRESS_PREFIX}%';"
            ));
        }
        sql.push_str(&format!(
            "INSERT INTO meta (key, value) VALUES ('shard_count', '{shards}') \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value; COMMIT;"
        ));
        self.connection
            .execute_batch(&sql)
            .map_err(|e| failed_sql(&path, e))?;
        // Leaving WAL mode checkpoints and deletes the -wal file, so the renamed
        // file never depends on a journal under another name.
        let mode: String = self
            .connection
            .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
            .map_err(|e| failed_sql(&path, e))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(ReshardError::Failed(format!(
                "{}: cannot leave WAL mode",
                path.display()
            )));
        }
        self.connection
            .close()
            .map_err(|(_, e)| failed_sql(&path, e))?;
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| failed_io("cannot sync", &path, e))
    }
}
