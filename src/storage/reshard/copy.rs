//! Step 1, the copy: every source is read in rowid order in bounded batches and
//! each batch goes to its rows' target shards, then the source position is
//! recorded, so that a resumed copy starts where the last one stopped.

use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::Value;

use super::files::sync_dir;
use super::steps::{Options, ReshardError, Steps, failed_sql};
use super::tables::{META_COPIED, META_PROGRESS_PREFIX, META_TABLE, TABLES, Table};
use super::target::Target;
use crate::limits::RESHARD_BATCH_BYTES_MAX;
use crate::protocol::{Id64, shard_of};
use crate::storage::sqlite::shard_file_name;

/// A progress line is logged every this many batches.
const LOG_EVERY_BATCHES: u64 = 64;

/// Copies every source into the staging targets (resuming a previous copy) and
/// finalizes them; returns the rows copied per table.
pub(super) fn copy(
    dir: &Path,
    sources: &[usize],
    shards: usize,
    options: &Options,
    steps: &mut Steps,
) -> Result<[u64; TABLES.len()], ReshardError> {
    let mut targets = Vec::with_capacity(shards);
    for index in 0..shards {
        targets.push(Target::open(dir, index, shards, true)?);
    }
    let mut copy = Copy {
        targets,
        options,
        steps,
        copied: [0; TABLES.len()],
        batches: 0,
    };
    if copy.targets[0].meta_get(META_COPIED)?.is_none() {
        // Refuse before copying anything rather than half-way.
        for &source in sources {
            let path = dir.join(shard_file_name(source));
            let connection = Connection::open(&path).map_err(|e| failed_sql(&path, e))?;
            check_tables(&connection, &path)?;
        }
        for &source in sources {
            copy.source(dir, source)?;
        }
        copy.targets[0].meta_set(META_COPIED, "1")?;
        copy.steps.step()?;
    }
    let Copy {
        targets, copied, ..
    } = copy;
    // Shard 0 holds the progress records: finalize it last, so that the copy is
    // marked done until every target is final.
    for (index, target) in targets.into_iter().enumerate().rev() {
        target.finalize(shards, index == 0)?;
        steps.step()?;
    }
    sync_dir(dir)?;
    Ok(copied)
}

/// A copy under way: the targets, and the rows and batches copied so far.
struct Copy<'a> {
    targets: Vec<Target>,
    options: &'a Options,
    steps: &'a mut Steps,
    copied: [u64; TABLES.len()],
    batches: u64,
}

impl Copy<'_> {
    /// Copies every table of source file `source`.
    fn source(&mut self, dir: &Path, source: usize) -> Result<(), ReshardError> {
        let path = dir.join(shard_file_name(source));
        let connection = Connection::open(&path).map_err(|e| failed_sql(&path, e))?;
        for (slot, table) in TABLES.iter().enumerate() {
            if table.added_later && !has_table(&connection, &path, table.name)? {
                continue;
            }
            self.table(&connection, &path, source, slot)?;
        }
        tracing::info!(
            source,
            blobs = self.copied[0],
            device_sync = self.copied[1],
            proofs = self.copied[2],
            hints = self.copied[3],
            "resharding: source file copied"
        );
        Ok(())
    }

    /// Copies table `TABLES[slot]` of one source, batch by batch from its recorded
    /// position, recording the position after each batch.
    fn table(
        &mut self,
        connection: &Connection,
        path: &Path,
        source: usize,
        slot: usize,
    ) -> Result<(), ReshardError> {
        let table = &TABLES[slot];
        let shards = self.targets.len();
        let progress_key = format!("{META_PROGRESS_PREFIX}{source}_{}", table.name);
        let mut after = self.progress(&progress_key)?;
        let columns = columns(connection, path, table)?;
        loop {
            let batch = read_batch(connection, path, table, &columns, after, self.options)?;
            let Some(last) = batch.last_rowid else { break };
            for (target, rows) in batch.by_target(shards).into_iter().enumerate() {
                if rows.is_empty() {
                    continue;
                }
                self.copied[slot] += self.targets[target].insert(table, &columns, rows)?;
                self.steps.step()?;
            }
            after = last;
            self.targets[0].meta_set(&progress_key, &after.to_string())?;
            self.steps.step()?;
            self.batches += 1;
            if self.batches.is_multiple_of(LOG_EVERY_BATCHES) {
                tracing::info!(
                    blobs = self.copied[0],
                    device_sync = self.copied[1],
                    proofs = self.copied[2],
                    hints = self.copied[3],
                    "resharding: rows copied so far"
                );
            }
        }
        Ok(())
    }

    /// The last source rowid recorded under `progress_key`, or before the first.
    fn progress(&self, progress_key: &str) -> Result<i64, ReshardError> {
        match self.targets[0].meta_get(progress_key)? {
            Some(text) => text.parse::<i64>().map_err(|_| {
                ReshardError::Failed(format!(
                    "{}: bad resharding progress record",
                    self.targets[0].path.display()
                ))
            }),
            None => Ok(i64::MIN),
        }
    }
}

/// Refuses a source with a non-empty table this module does not know: moving it
/// would need its sharding key, and skipping it would lose its rows.
fn check_tables(connection: &Connection, path: &Path) -> Result<(), ReshardError> {
    let mut select = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .map_err(|e| failed_sql(path, e))?;
    let names = select
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .map_err(|e| failed_sql(path, e))?;
    for name in names {
        if name == META_TABLE || TABLES.iter().any(|t| t.name == name) {
            continue;
        }
        let quoted = name.replace('"', "\"\"");
        let rows: bool = connection
            .query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM \"{quoted}\")"),
                [],
                |row| row.get(0),
            )
            .map_err(|e| failed_sql(path, e))?;
        if rows {
            return Err(ReshardError::Failed(format!(
                "{}: table {name} holds rows that resharding does not know how to move",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Whether the source has table `name`.
fn has_table(connection: &Connection, path: &Path, name: &str) -> Result<bool, ReshardError> {
    connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [name],
            |row| row.get(0),
        )
        .map_err(|e| failed_sql(path, e))
}

/// The source table's columns, `key` first for renumbered tables (as `insert`
/// expects).
fn columns(
    connection: &Connection,
    path: &Path,
    table: &Table,
) -> Result<Vec<String>, ReshardError> {
    let mut select = connection
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{}')",
            table.name
        ))
        .map_err(|e| failed_sql(path, e))?;
    let mut names = select
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .map_err(|e| failed_sql(path, e))?;
    if !names.iter().any(|n| n == table.shard_column) {
        return Err(ReshardError::Failed(format!(
            "{}: table {} has no column {}",
            path.display(),
            table.name,
            table.shard_column
        )));
    }
    if table.renumbered {
        let Some(at) = names.iter().position(|n| n == "key") else {
            return Err(ReshardError::Failed(format!(
                "{}: table {} has no key column",
                path.display(),
                table.name
            )));
        };
        names.swap(0, at);
    }
    Ok(names)
}

/// One batch of source rows in rowid order, with each row's owner shard key.
struct Batch {
    rows: Vec<(Id64, Vec<Value>)>,
    last_rowid: Option<i64>,
}

impl Batch {
    /// The rows grouped by target shard, each group in source order.
    fn by_target(self, shards: usize) -> Vec<Vec<Vec<Value>>> {
        let mut groups = vec![Vec::new(); shards];
        for (key, row) in self.rows {
            groups[shard_of(&key, shards)].push(row);
        }
        groups
    }
}

fn read_batch(
    connection: &Connection,
    path: &Path,
    table: &Table,
    columns: &[String],
    after: i64,
    options: &Options,
) -> Result<Batch, ReshardError> {
    let shard_at = columns
        .iter()
        .position(|c| c == table.shard_column)
        .ok_or_else(|| ReshardError::Failed(format!("{}: no shard column", path.display())))?;
    let mut select = connection
        .prepare_cached(&format!(
            "SELECT rowid, {} FROM {} WHERE rowid > ?1 ORDER BY rowid",
            columns.join(", "),
            table.name
        ))
        .map_err(|e| failed_sql(path, e))?;
    let mut rows = select.query([after]).map_err(|e| failed_sql(path, e))?;
    let mut batch = Batch {
        rows: Vec::new(),
        last_rowid: None,
    };
    let mut bytes = 0usize;
    while batch.rows.len() < options.batch_rows_max.max(1) && bytes < RESHARD_BATCH_BYTES_MAX {
        let Some(row) = rows.next().map_err(|e| failed_sql(path, e))? else {
            break;
        };
        let rowid: i64 = row.get(0).map_err(|e| failed_sql(path, e))?;
        let mut values = Vec::with_capacity(columns.len());
        for at in 0..columns.len() {
            let value: Value = row.get(at + 1).map_err(|e| failed_sql(path, e))?;
            bytes += match &value {
                Value::Blob(b) => b.len(),
                Value::Text(t) => t.len(),
                _ => 8,
            };
            values.push(value);
        }
        let key = match &values[shard_at] {
            Value::Blob(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Id64),
            _ => None,
        };
        let Some(key) = key else {
            return Err(ReshardError::Failed(format!(
                "{}: table {} has a {} that is not a 32-byte id",
                path.display(),
                table.name,
                table.shard_column
            )));
        };
        batch.rows.push((key, values));
        batch.last_rowid = Some(rowid);
    }
    Ok(batch)
}
