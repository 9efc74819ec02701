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
//!
//! This file holds the order of the steps and the table of moved tables; `copy`
//! does step 1, `target` the staging files (steps 1 and 2), `files` the directory
//! (the layout found, steps 3 and 4).

mod copy;
mod files;
mod target;

use std::path::Path;

use crate::config::SqliteSynchronous;
use crate::limits::RESHARD_BATCH_ROWS_MAX;
use files::{read_commit_file, recorded_count, remove_staging, scan, swap, write_commit_file};

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
    let copied = copy::copy(dir, &files.sources, shards, options, &mut steps)?;
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
