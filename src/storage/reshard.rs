//! Changing the shard count of a sqlite data directory (PROTOCOL.md §10.5): before the
//! listeners bind, every record is moved to `shard_of(key) mod N`.
//!
//! The move never touches the source files until it is committed, so a crash at any
//! point loses nothing:
//!
//! 1. Copy: each target shard is built as `shard-<j>.db.reshard-<N>`, with a unique
//!    index on the record id. Sources are read in rowid order in bounded batches;
//!    each batch is inserted with `ON CONFLICT (id) DO NOTHING` (one transaction per
//!    target, `synchronous = FULL`), then the source position is recorded in staging
//!    shard 0. A resumed copy starts at the recorded position and skips by id what a
//!    crash left half-recorded. New keys are assigned from a per-target counter in
//!    (source, old key) order; all records of one recipient live in one source, so
//!    their keys stay increasing in their old order, and `seq` is copied as is.
//! 2. Finalize: the id indexes are dropped, `shard_count = N` is recorded, each file
//!    is switched to a self-contained rollback journal, closed and fsynced.
//! 3. Commit: the file `reshard.commit` (holding N) is written atomically. From here
//!    the staging files are the data: a restart finishes step 4 before anything else.
//! 4. Swap: old shard files (with their `-wal`/`-shm`) are removed and each staging
//!    file is renamed to `shard-<j>.db`; then the commit file is removed.
//!
//! Staging files without a commit file are leftovers of an interrupted move: they
//! are resumed if N is the same, removed otherwise. When no move is needed, startup
//! costs one directory listing and one meta read (no scan of the data).
//! Progress is logged as counts only (§14.2).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::sqlite::{SqliteStore, shard_file_name};
use crate::config::SqliteSynchronous;
use crate::limits::{RESHARD_BATCH_BYTES_MAX, RESHARD_BATCH_ROWS_MAX, RESHARD_SHARD_FILES_MAX};
use crate::protocol::{Id64, shard_of};

/// A progress line is logged every this many batches.
const LOG_EVERY_BATCHES: u64 = 64;

/// The file that commits a move: its presence means the staging files are the data.
const COMMIT_FILE: &str = "reshard.commit";
const COMMIT_FILE_TEMP: &str = "reshard.commit.tmp";
/// Meta keys of staging shard 0 (removed before the commit).
const META_COPIED: &str = "reshard_copied";
const META_PROGRESS_PREFIX: &str = "reshard_progress_";

/// A table that is moved: rows go to `shard_of(shard_column)`, duplicates are
/// recognised by `dedupe_column`, and `renumbered` tables get new `key`s (from one
/// counter per target shared by all of them, as the serving shard's is).
/// `added_later` tables may be missing from a source written before they existed
/// (only the first source is opened through the store); such a source has none of
/// their rows.
struct Table {
    name: &'static str,
    shard_column: &'static str,
    dedupe_column: &'static str,
    renumbered: bool,
    added_later: bool,
}

/// Every table that holds records; `meta` is per-file and rewritten, not moved.
/// The order is the order of `Outcome::Moved`'s counts.
const TABLES: [Table; 4] = [
    Table {
        name: "blobs",
        shard_column: "recipient",
        dedupe_column: "id",
        renumbered: true,
        added_later: false,
    },
    Table {
        name: "device_sync",
        shard_column: "identity",
        dedupe_column: "id",
        renumbered: true,
        added_later: false,
    },
    Table {
        name: "recovery_proofs",
        shard_column: "key_hash",
        dedupe_column: "key_hash",
        renumbered: false,
        added_later: false,
    },
    Table {
        // A hint's blob id is unique: the blob is deleted in the transaction that
        // writes its hint (§11.7 step 4), so it is never offloaded twice.
        name: "forwarding_hints",
        shard_column: "routing_id",
        dedupe_column: "blob_id",
        renumbered: true,
        added_later: true,
    },
];
const META_TABLE: &str = "meta";

/// What `prepare` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The directory already had the configured layout (or no data).
    Unchanged,
    /// Records were moved from `from` shards; the counts are the rows this run
    /// inserted (rows an interrupted earlier run had copied are not counted again).
    Moved {
        from: usize,
        blobs: u64,
        device_sync: u64,
        proofs: u64,
        hints: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReshardError {
    /// A file or SQLite failure; the message names files and tables, never ids.
    Failed(String),
    /// `Options::stop_after_steps` was reached (tests simulate a crash with it).
    Interrupted,
}

impl std::fmt::Display for ReshardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReshardError::Failed(why) => write!(f, "resharding failed: {why}"),
            ReshardError::Interrupted => write!(f, "resharding interrupted"),
        }
    }
}

impl std::error::Error for ReshardError {}

/// Tuning and fault injection for `prepare_with`.
#[derive(Debug, Clone)]
pub struct Options {
    pub batch_rows_max: usize,
    /// Stop with `Interrupted` right after this many durable steps (commits, the
    /// commit file, file removals and renames), as a crash there would.
    pub stop_after_steps: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch_rows_max: RESHARD_BATCH_ROWS_MAX,
            stop_after_steps: None,
        }
    }
}

/// Brings the sqlite files in `dir` to `shards` shards (§10.5), completing or
/// discarding whatever an interrupted earlier run left.
pub fn prepare(
    dir: &Path,
    shards: usize,
    synchronous: SqliteSynchronous,
) -> Result<Outcome, ReshardError> {
    prepare_with(dir, shards, synchronous, &Options::default())
}

/// `prepare` with explicit options.
pub fn prepare_with(
    dir: &Path,
    shards: usize,
    synchronous: SqliteSynchronous,
    options: &Options,
) -> Result<Outcome, ReshardError> {
    assert!(shards > 0, "shard count must be positive");
    let mut steps = Steps {
        taken: 0,
        limit: options.stop_after_steps,
    };
    if let Some(committed) = read_commit_file(dir)? {
        tracing::info!(shards = committed, "resharding: finishing a committed move");
        swap(dir, committed, &mut steps)?;
    }
    let files = scan(dir)?;
    let Some(&highest) = files.sources.last() else {
        remove_staging(&files.staging, None, &mut steps)?;
        return Ok(Outcome::Unchanged);
    };
    let recorded = recorded_count(dir, files.sources[0], synchronous)?;
    let from = recorded.unwrap_or(highest + 1);
    if from == shards && highest < shards {
        if !files.staging.is_empty() {
            tracing::info!(
                files = files.staging.len(),
                "resharding: removing the files of an abandoned move"
            );
        }
        remove_staging(&files.staging, None, &mut steps)?;
        return Ok(Outcome::Unchanged);
    }
    tracing::info!(
        from,
        to = shards,
        source_files = files.sources.len(),
        "resharding the data directory"
    );
    remove_staging(&files.staging, Some(shards), &mut steps)?;
    let copied = copy(dir, &files.sources, shards, options, &mut steps)?;
    write_commit_file(dir, shards)?;
    steps.step()?;
    swap(dir, shards, &mut steps)?;
    tracing::info!(
        from,
        to = shards,
        blobs = copied[0],
        device_sync = copied[1],
        proofs = copied[2],
        hints = copied[3],
        "resharding done"
    );
    Ok(Outcome::Moved {
        from,
        blobs: copied[0],
        device_sync: copied[1],
        proofs: copied[2],
        hints: copied[3],
    })
}

/// Counts durable steps and stops at the injected limit.
struct Steps {
    taken: u64,
    limit: Option<u64>,
}

impl Steps {
    fn step(&mut self) -> Result<(), ReshardError> {
        self.taken += 1;
        if self.limit.is_some_and(|limit| self.taken >= limit) {
            return Err(ReshardError::Interrupted);
        }
        Ok(())
    }
}

/// The shard files present: sources `shard-<i>.db` (sorted) and staging files
/// `shard-<j>.db.reshard-<n>` with their journals, as (path, n).
struct Files {
    sources: Vec<usize>,
    staging: Vec<(PathBuf, usize)>,
}

fn scan(dir: &Path) -> Result<Files, ReshardError> {
    let entries = fs::read_dir(dir).map_err(|e| failed_io("cannot list", dir, e))?;
    let mut files = Files {
        sources: Vec::new(),
        staging: Vec::new(),
    };
    for entry in entries {
        let entry = entry.map_err(|e| failed_io("cannot list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == COMMIT_FILE_TEMP {
            // A commit file that was never renamed into place commits nothing.
            fs::remove_file(entry.path()).map_err(|e| failed_io("cannot remove", dir, e))?;
            continue;
        }
        let Some(rest) = name.strip_prefix("shard-") else {
            continue;
        };
        if let Some((index, target)) = rest.split_once(".db.reshard-") {
            let target = target
                .strip_suffix("-wal")
                .or_else(|| target.strip_suffix("-shm"))
                .unwrap_or(target);
            if let (Some(_), Some(target)) = (decimal(index), decimal(target)) {
                files.staging.push((entry.path(), target));
            }
        } else if let Some(index) = rest.strip_suffix(".db").and_then(decimal) {
            files.sources.push(index);
        }
        if files.sources.len() + files.staging.len() > RESHARD_SHARD_FILES_MAX {
            return Err(ReshardError::Failed(format!(
                "{} holds more than {RESHARD_SHARD_FILES_MAX} shard files",
                dir.display()
            )));
        }
    }
    files.sources.sort_unstable();
    Ok(files)
}

/// A canonical decimal number (no sign, no leading zeros but "0").
fn decimal(text: &str) -> Option<usize> {
    let value = text.parse::<usize>().ok()?;
    (value.to_string() == text).then_some(value)
}

/// The shard count recorded in the first source file, if any.
fn recorded_count(
    dir: &Path,
    first: usize,
    synchronous: SqliteSynchronous,
) -> Result<Option<usize>, ReshardError> {
    let path = dir.join(shard_file_name(first));
    let mut store = SqliteStore::open(&path, synchronous).map_err(|e| failed(&path, e))?;
    let value = store
        .meta_get("shard_count")
        .map_err(|e| failed(&path, e))?;
    match value.map(|v| v.parse::<usize>()) {
        None => Ok(None),
        Some(Ok(count)) if count > 0 => Ok(Some(count)),
        Some(_) => Err(ReshardError::Failed(format!(
            "{}: the recorded shard_count is not a positive number",
            path.display()
        ))),
    }
}

/// Removes staging files, all of them or those of a move to another count than
/// `keep`.
fn remove_staging(
    staging: &[(PathBuf, usize)],
    keep: Option<usize>,
    steps: &mut Steps,
) -> Result<(), ReshardError> {
    for (path, target) in staging {
        if Some(*target) != keep {
            remove_if_present(path)?;
            steps.step()?;
        }
    }
    Ok(())
}

fn staging_path(dir: &Path, index: usize, shards: usize) -> PathBuf {
    dir.join(format!("{}.reshard-{shards}", shard_file_name(index)))
}

/// One staging target: its connection and the next key to assign.
struct Target {
    path: PathBuf,
    connection: Connection,
    next_key: i64,
}

impl Target {
    fn open(
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

    fn meta_get(&self, key: &str) -> Result<Option<String>, ReshardError> {
        self.connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| failed_sql(&self.path, e))
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), ReshardError> {
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
    fn insert(
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
    fn finalize(self, shards: usize, first: bool) -> Result<(), ReshardError> {
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

/// Copies every source into the staging targets (resuming a previous copy) and
/// finalizes them; returns the rows copied per table.
fn copy(
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
    let mut copied = [0u64; TABLES.len()];
    if targets[0].meta_get(META_COPIED)?.is_none() {
        // Refuse before copying anything rather than half-way.
        for &source in sources {
            let path = dir.join(shard_file_name(source));
            let connection = Connection::open(&path).map_err(|e| failed_sql(&path, e))?;
            check_tables(&connection, &path)?;
        }
        let mut batches = 0u64;
        for &source in sources {
            let path = dir.join(shard_file_name(source));
            let connection = Connection::open(&path).map_err(|e| failed_sql(&path, e))?;
            for (slot, table) in TABLES.iter().enumerate() {
                if table.added_later && !has_table(&connection, &path, table.name)? {
                    continue;
                }
                let progress_key = format!("{META_PROGRESS_PREFIX}{source}_{}", table.name);
                let mut after = match targets[0].meta_get(&progress_key)? {
                    Some(text) => text.parse::<i64>().map_err(|_| {
                        ReshardError::Failed(format!(
                            "{}: bad resharding progress record",
                            targets[0].path.display()
                        ))
                    })?,
                    None => i64::MIN,
                };
                let columns = columns(&connection, &path, table)?;
                loop {
                    let batch = read_batch(&connection, &path, table, &columns, after, options)?;
                    let Some(last) = batch.last_rowid else { break };
                    for (target, rows) in batch.by_target(shards).into_iter().enumerate() {
                        if rows.is_empty() {
                            continue;
                        }
                        copied[slot] += targets[target].insert(table, &columns, rows)?;
                        steps.step()?;
                    }
                    after = last;
                    targets[0].meta_set(&progress_key, &after.to_string())?;
                    steps.step()?;
                    batches += 1;
                    if batches.is_multiple_of(LOG_EVERY_BATCHES) {
                        tracing::info!(
                            blobs = copied[0],
                            device_sync = copied[1],
                            proofs = copied[2],
                            hints = copied[3],
                            "resharding: rows copied so far"
                        );
                    }
                }
            }
            tracing::info!(
                source,
                blobs = copied[0],
                device_sync = copied[1],
                proofs = copied[2],
                hints = copied[3],
                "resharding: source file copied"
            );
        }
        targets[0].meta_set(META_COPIED, "1")?;
        steps.step()?;
    }
    // Shard 0 holds the progress records: finalize it last, so that the copy is
    // marked done until every target is final.
    for (index, target) in targets.into_iter().enumerate().rev() {
        target.finalize(shards, index == 0)?;
        steps.step()?;
    }
    sync_dir(dir)?;
    Ok(copied)
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

fn read_commit_file(dir: &Path) -> Result<Option<usize>, ReshardError> {
    let path = dir.join(COMMIT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(shards) if shards > 0 => Ok(Some(shards)),
            _ => Err(ReshardError::Failed(format!(
                "{} does not hold a shard count",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed_io("cannot read", &path, e)),
    }
}

/// Writes the commit file atomically and durably (temp file, fsync, rename, fsync
/// of the directory).
fn write_commit_file(dir: &Path, shards: usize) -> Result<(), ReshardError> {
    let temp = dir.join(COMMIT_FILE_TEMP);
    let written = File::create(&temp).and_then(|mut file| {
        file.write_all(format!("{shards}\n").as_bytes())?;
        file.sync_all()
    });
    written.map_err(|e| failed_io("cannot write", &temp, e))?;
    let path = dir.join(COMMIT_FILE);
    fs::rename(&temp, &path).map_err(|e| failed_io("cannot rename", &path, e))?;
    sync_dir(dir)
}

/// Step 4: replaces the old layout by the committed staging files. Idempotent: a
/// staging file still present has not been renamed yet; one absent already has.
fn swap(dir: &Path, shards: usize, steps: &mut Steps) -> Result<(), ReshardError> {
    for index in scan(dir)?.sources.into_iter().filter(|&i| i >= shards) {
        for path in with_journals(&dir.join(shard_file_name(index)))
            .into_iter()
            .rev()
        {
            remove_if_present(&path)?;
            steps.step()?;
        }
    }
    for index in 0..shards {
        let staging = staging_path(dir, index, shards);
        if !staging.exists() {
            continue;
        }
        let live = dir.join(shard_file_name(index));
        // The old journals must go first: SQLite would apply an old -wal to the
        // new file.
        for journal in with_journals(&live).into_iter().skip(1) {
            remove_if_present(&journal)?;
            steps.step()?;
        }
        for journal in with_journals(&staging).into_iter().skip(1) {
            remove_if_present(&journal)?;
        }
        fs::rename(&staging, &live).map_err(|e| failed_io("cannot rename", &staging, e))?;
        steps.step()?;
    }
    sync_dir(dir)?;
    remove_if_present(&dir.join(COMMIT_FILE))?;
    sync_dir(dir)?;
    // Staging files of another count are now leftovers.
    remove_staging(&scan(dir)?.staging, None, steps)
}

/// A database path followed by its `-wal` and `-shm` companions.
fn with_journals(path: &Path) -> [PathBuf; 3] {
    let text = path.as_os_str().to_owned();
    let mut wal = text.clone();
    wal.push("-wal");
    let mut shm = text;
    shm.push("-shm");
    [path.to_path_buf(), PathBuf::from(wal), PathBuf::from(shm)]
}

fn remove_if_present(path: &Path) -> Result<(), ReshardError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed_io("cannot remove", path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ReshardError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed_io("cannot sync", dir, e))
}

fn failed(path: &Path, error: impl std::fmt::Display) -> ReshardError {
    ReshardError::Failed(format!("{}: {error}", path.display()))
}

/// rusqlite's messages name the failure, table or column, never a bound value.
fn failed_sql(path: &Path, error: rusqlite::Error) -> ReshardError {
    failed(path, error)
}

fn failed_io(what: &str, path: &Path, error: std::io::Error) -> ReshardError {
    ReshardError::Failed(format!("{what} {}: {error}", path.display()))
}
