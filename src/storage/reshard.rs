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
//! This file holds the order of the steps; `tables` the table of moved tables,
//! `steps` the error, options and step count they all share; `copy` does step 1,
//! `target` the staging files (steps 1 and 2), `files` the directory (the layout
//! found, steps 3 and 4).

mod copy;
mod files;
mod steps;
mod tables;
mod target;

use std::path::Path;

use crate::config::SqliteSynchronous;
use files::{read_commit_file, recorded_count, remove_staging, scan, swap, write_commit_file};
use steps::Steps;
pub use steps::{Options, ReshardError};

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
    let mut steps = Steps::new(options.stop_after_steps);
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
